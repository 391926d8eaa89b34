"""Print libauparse's interpretation of every field of the given audit logs, as JSON lines.

Run with a Python that has libauparse's bindings (Debian package python3-audit)::

    python3 tests/oracles/auparse_fields.py LOG [LOG ...]

Each output line is ``[log, record type, field name, raw value, interpreted value]``.
Escaping is turned off (raw mode), so the interpretation holds the decoded bytes themselves;
bytes that are not UTF-8 come out as ``\\xNN`` escapes.  The tests compare these values with
:mod:`forwarder.audit.values`.  Fields auparse cannot read are skipped.
"""

from __future__ import annotations

import json
import sys

import auparse  # type: ignore[import-not-found]


def fields_of(path: str) -> None:
    parser = auparse.AuParser(auparse.AUSOURCE_FILE, path)
    parser.set_escape_mode(auparse.AUPARSE_ESC_RAW)
    out = sys.stdout
    while parser.parse_next_event():
        parser.first_record()
        while True:
            try:
                record_type = parser.get_type_name()
            except LookupError:  # a type number libaudit has no name for
                record_type = f"UNKNOWN[{parser.get_type()}]"
            parser.first_field()
            while True:
                try:
                    name = parser.get_field_name()
                    raw = parser.get_field_str()
                    interpreted = parser.interpret_field()
                except (UnicodeDecodeError, RuntimeError, TypeError, LookupError):
                    name = None
                if name is not None:
                    out.write(json.dumps([path, record_type, name, raw, interpreted]) + "\n")
                if not parser.next_field():
                    break
            if not parser.next_record():
                break


if __name__ == "__main__":
    for log in sys.argv[1:]:
        fields_of(log)
