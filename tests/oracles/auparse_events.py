"""Print libauparse's event grouping of log files as JSON (the differential oracle).

Runs under the system Python that has Debian's `python3-audit` bindings:

    /usr/bin/python3 tests/oracles/auparse_events.py FILE...

One output line per file: {"path": FILE, "events": [[node, sec, msec, serial, [type, ...]], ...]}.
Record types are numbers rather than names: libaudit raises for names it does not know.
"""

import json
import sys

import auparse  # type: ignore[import-not-found]


def events(path: str) -> list:
    parser = auparse.AuParser(auparse.AUSOURCE_FILE, path)
    found = []
    while parser.parse_next_event():
        stamp = parser.get_timestamp()
        types = []
        count = parser.get_num_records()
        for index in range(count):
            parser.goto_record_num(index)
            types.append(parser.get_type())
        found.append([stamp.host, stamp.sec, stamp.milli, stamp.serial, types])
    return found


if __name__ == "__main__":
    for name in sys.argv[1:]:
        sys.stdout.write(json.dumps({"path": name, "events": events(name)}) + "\n")
