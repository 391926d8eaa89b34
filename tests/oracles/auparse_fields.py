"""Print libauparse's interpretation of every field of the given audit logs, as JSON lines.

Runs under the system Python that has Debian's `python3-audit` bindings:

    /usr/bin/python3 tests/oracles/auparse_fields.py [--fields NAME,NAME,...] LOG [LOG ...]

Each output line is ``[log, record type, field name, raw value, interpreted value, arch]``, where
arch is the raw ``arch=`` value of the same record (``null`` if it has none: libauparse then
falls back to the host's architecture for syscall names).  Escaping is turned off (raw mode), so
an interpretation holds the decoded text itself.  With ``--fields`` only those fields are
printed; ``a*`` there stands for every field whose name starts with ``a`` (EXECVE arguments).
Fields whose text the bindings cannot return (not UTF-8) are left out.
"""

from __future__ import annotations

import contextlib
import json
import sys

import auparse  # type: ignore[import-not-found]

#: What the bindings raise for a field they cannot return.
_UNREADABLE = (UnicodeDecodeError, RuntimeError, TypeError, LookupError)


def _record_type(parser: auparse.AuParser) -> str:
    try:
        return str(parser.get_type_name())
    except LookupError:  # a type number libaudit has no name for
        return f"UNKNOWN[{parser.get_type()}]"


def _record_fields(parser: auparse.AuParser) -> list[tuple[str, str, str | None]]:
    found = []
    parser.first_field()
    while True:
        with contextlib.suppress(*_UNREADABLE):
            found.append((parser.get_field_name(), parser.get_field_str(), parser.interpret_field()))
        if not parser.next_field():
            return found


def fields_of(path: str, wanted: set[str] | None) -> None:
    parser = auparse.AuParser(auparse.AUSOURCE_FILE, path)
    parser.set_escape_mode(auparse.AUPARSE_ESC_RAW)
    write = sys.stdout.write
    while parser.parse_next_event():
        parser.first_record()
        while True:
            record_type = _record_type(parser)
            fields = _record_fields(parser)
            arch = next((raw for name, raw, _ in fields if name == "arch"), None)
            for name, raw, interpreted in fields:
                if wanted is None or name in wanted or ("a*" in wanted and name.startswith("a")):
                    write(json.dumps([path, record_type, name, raw, interpreted, arch]) + "\n")
            if not parser.next_record():
                break


def main(argv: list[str]) -> None:
    wanted = None
    if argv[:1] == ["--fields"]:
        wanted = set(argv[1].split(","))
        argv = argv[2:]
    for log in argv:
        fields_of(log, wanted)


if __name__ == "__main__":
    main(sys.argv[1:])
