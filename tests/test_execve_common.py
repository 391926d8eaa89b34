"""EXECVE records in their common form (``argc=N a0 .. a{N-1}``, each argument whole) take a
shorter path: it must give what the field-by-field reading gives."""

from __future__ import annotations

import pytest

from forwarder.audit.execve import execve_args
from forwarder.audit.record import Record, parse_line
from forwarder.generate import GeneratorOptions, generate_lines
from tests.corpus import all_logs


def _field_by_field(fields: dict[str, str]) -> tuple[list[str], list[str]]:
    """execve_args on the same fields with argc last: the common-form path does not apply."""
    reordered = {key: value for key, value in fields.items() if key != "argc"}
    if "argc" in fields:
        reordered["argc"] = fields["argc"]
    return execve_args(reordered)


def _execve_records() -> list[Record]:
    found: list[Record] = []
    lines: list[bytes] = list(generate_lines(GeneratorOptions(seed=11, records=6_000)))
    for path in all_logs():
        lines.extend(path.read_bytes().splitlines())
    for line in lines:
        parsed = parse_line(line)
        if isinstance(parsed, Record) and parsed.type == "EXECVE":
            found.append(parsed)
    return found


def test_common_records_read_as_field_by_field() -> None:
    records = _execve_records()
    assert len(records) > 200
    for record in records:
        assert execve_args(record.fields) == _field_by_field(record.fields), record.text


@pytest.mark.parametrize(
    "body",
    [
        'argc=3 a0="ls" a1="-l" a2=2F737276206D792066696C65',  # hex among quoted
        'argc=2 a0="a" a1="unterminated',  # a truncated last argument
        'argc=2 a0="" a1="x"',  # an empty argument
        'argc=3 a0="a" a1="b"',  # one missing: not the common form
        'argc=1 a0="a" a1="b"',  # one beyond argc
        'argc="2" a0="a" a1="b"',  # quoted argc
        'argc=2 a1="b" a0="a"',  # out of order
        "argc=2 a0=41 a1=4",  # odd-length hex stays as written
    ],
)
def test_unusual_records_read_as_field_by_field(body: str) -> None:
    record = parse_line(f"type=EXECVE msg=audit(1.001:1): {body}")
    assert isinstance(record, Record)
    assert execve_args(record.fields) == _field_by_field(record.fields)
