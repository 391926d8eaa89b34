"""EXECVE argument lists: whole, split into fragments, spread over several records."""

from __future__ import annotations

import json
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forwarder.audit.execve import execve_args, execve_args_from_records
from forwarder.audit.record import Record, parse_line
from tests.corpus import FIXTURES, all_logs, corpus_dir


def hexed(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return data.hex().upper()


def _records(path: pathlib.Path) -> list[Record]:
    parsed = (parse_line(line) for line in path.read_bytes().splitlines())
    return [record for record in parsed if isinstance(record, Record)]


def _execve_events(path: pathlib.Path) -> dict[tuple[str | None, int, int, int], list[dict[str, str]]]:
    events: dict[tuple[str | None, int, int, int], list[dict[str, str]]] = {}
    for record in _records(path):
        if record.type == "EXECVE":
            events.setdefault(record.key, []).append(record.fields)
    return events


def _corpus_file(relative: str) -> pathlib.Path:
    root = corpus_dir()
    if root is None or not (root / relative).is_file():
        pytest.skip(f"shared corpus file {relative} not available")
    return root / relative


# --- hand-written --------------------------------------------------------------------------------


def test_quoted_and_hex_arguments() -> None:
    fields = {"argc": "3", "a0": '"sh"', "a1": '"-c"', "a2": hexed('echo "hi there"')}
    assert execve_args(fields) == (["sh", "-c", 'echo "hi there"'], [])


def test_empty_argument_and_non_utf8() -> None:
    fields = {"argc": "3", "a0": '"printf"', "a1": '""', "a2": hexed(b"caf\xe9\n")}
    assert execve_args(fields) == (["printf", "", "caf\\xe9\n"], [])


def test_fragments_are_joined_before_decoding() -> None:
    text = "x" * 5 + "€" + "y" * 5  # the euro sign's 3 bytes are cut between fragments
    encoded = hexed(text)
    fields = {"argc": "2", "a0": '"echo"', "a1_len": str(len(encoded)), "a1[0]": encoded[:12],
              "a1[1]": encoded[12:20], "a1[2]": encoded[20:]}  # fmt: skip
    assert execve_args(fields) == (["echo", text], [])


def test_fragment_length_in_bytes_is_accepted() -> None:
    encoded = hexed("z" * 10)
    fields = {"argc": "1", "a0_len": "10", "a0[0]": encoded[:8], "a0[1]": encoded[8:]}
    assert execve_args(fields) == (["z" * 10], [])


def test_quoted_fragments() -> None:
    fields = {"argc": "1", "a0_len": "8", "a0[0]": '"abcd"', "a0[1]": '"efgh"'}
    assert execve_args(fields) == (["abcdefgh"], [])


def test_missing_arguments_are_warnings() -> None:
    fields = {"argc": "6", "a0": '"a"', "a1": '"b"', "a4": '"e"'}
    args, warnings = execve_args(fields)
    assert args == ["a", "b", "e"]
    assert warnings == ["EXECVE arguments missing: 2-3, 5"]


def test_missing_argc_uses_the_highest_argument() -> None:
    args, warnings = execve_args({"a0": '"ls"', "a1": '"-l"'})
    assert args == ["ls", "-l"]
    assert warnings == ["EXECVE argc missing"]


def test_bad_argc_and_extra_arguments() -> None:
    args, warnings = execve_args({"argc": "x", "a0": '"ls"'})
    assert (args, warnings) == (["ls"], ["EXECVE argc is not a number: 'x'"])
    args, warnings = execve_args({"argc": "1", "a0": '"ls"', "a1": '"-l"', "a2": '"/"'})
    assert (args, warnings) == (["ls"], ["EXECVE arguments beyond argc=1 ignored: 1-2"])


def test_missing_fragment_and_wrong_length() -> None:
    args, warnings = execve_args({"argc": "1", "a0_len": "8", "a0[1]": hexed("abcd")})
    assert args == ["abcd"]
    assert warnings == ["EXECVE a0 fragments missing: 0"]
    args, warnings = execve_args({"argc": "1", "a0_len": "99", "a0[0]": hexed("abcd")})
    assert args == ["abcd"]
    assert warnings == ["EXECVE a0 has 4 bytes, a0_len=99"]
    args, warnings = execve_args({"argc": "1", "a0[0]": '"abcd"'})
    assert (args, warnings) == (["abcd"], ["EXECVE a0_len missing"])


def test_zero_arguments() -> None:
    assert execve_args({"argc": "0"}) == ([], [])
    assert execve_args({}) == ([], ["EXECVE argc missing"])


def test_other_fields_are_ignored() -> None:
    fields = {"argc": "1", "a0": '"true"', "arch": "c000003e", "auid": "0", "a": "x", "a1x": "y"}
    assert execve_args(fields) == (["true"], [])


def test_records_are_merged_in_order() -> None:
    first = {"argc": "3", "a0": '"cp"', "a1_len": "8", "a1[0]": hexed("ab")}
    second = {"a1[1]": hexed("cd"), "a2": '"/srv"'}
    assert execve_args_from_records([first, second]) == (["cp", "abcd", "/srv"], [])
    args, warnings = execve_args_from_records([first, {"a0": '"mv"'}, second])
    assert args == ["cp", "abcd", "/srv"]
    assert warnings == ["EXECVE fields repeated with other values (first kept): a0"]


def test_fixture_event() -> None:
    events = _execve_events(FIXTURES / "values.log")
    (fields,) = events.values()
    long_argument = "--config=" + "x" * 40 + " ü€ " + "y" * 30
    assert execve_args_from_records(fields) == (["tool", long_argument, "two words", ""], [])


# --- real logs -----------------------------------------------------------------------------------


def test_long_argument_over_three_records() -> None:
    path = _corpus_file("laurel/src/testdata/record-execve-long.txt")
    (fields,) = _execve_events(path).values()
    args, warnings = execve_args_from_records(fields)
    assert warnings == []
    assert args[0] == "/bin/echo"
    assert len(args) == 2
    assert len(args[1]) == 8192  # a1_len=16384 hex digits
    # Each fragment of the test argument starts with a marker letter: b, d, f.
    assert args[1][0] == "b" and args[1][3732] == "d" and args[1][3732 + 3746] == "f"


def test_oversized_execve_split_over_records() -> None:
    pipeline = "integrations/packages/auditd/data_stream/log/_dev/test/pipeline"
    path = _corpus_file(f"{pipeline}/test-oversized-execve.log")
    (fields,) = _execve_events(path).values()
    args, warnings = execve_args_from_records(fields)
    assert warnings == []
    assert len(args) == 18
    assert args[:2] == ["awk", "-v"]
    assert args[17].startswith("\n") and "function f101(a,b)" in args[17]
    assert len(args[17].encode()) == 7067  # a17_len=7067, here in bytes


def test_hex_argument_equals_expected_output() -> None:
    log = _corpus_file("beats/filebeat/module/auditd/log/test/execve-hex-arg.log")
    expected = json.loads(log.with_name("execve-hex-arg-expected.json").read_text())
    (fields,) = _execve_events(log).values()
    assert execve_args_from_records(fields) == (expected[0]["process.args"], [])


def test_fragments_of_a_huge_list_give_warnings_not_errors() -> None:
    """Records of a 10,000-argument list seen alone: what is there, and what is missing."""
    log = _corpus_file("beats/filebeat/module/auditd/log/test/rare.log")
    records = [record for record in _records(log) if record.type == "EXECVE"]
    args, warnings = execve_args(records[0].fields)
    assert args == ["8", "9", "\x10", "\x11"]  # bare 10 and 11 are hex (a kernel never writes them)
    assert "EXECVE arguments missing: 0-7" in warnings
    args, warnings = execve_args(records[1].fields)
    assert args[0] == "/redacted/path/for/arg10517"
    assert "EXECVE arguments missing: 0-10516" in warnings


def test_every_execve_event_of_every_log() -> None:
    """No exception, and an event with complete argc and arguments has one arg per count."""
    complete = 0
    for path in all_logs():
        for fields in _execve_events(path).values():
            args, warnings = execve_args_from_records(fields)
            if not warnings:
                assert len(args) == int(fields[0]["argc"]), path
                complete += 1
    assert complete > 0


# --- no exceptions -------------------------------------------------------------------------------

_keys = st.one_of(
    st.sampled_from(["argc", "a0", "a1", "a2", "a0_len", "a1_len", "a0[0]", "a0[1]", "a1[0]", "a99"]),
    st.from_regex(r"a[0-9]{1,3}(_len|\[[0-9]{1,2}\])?", fullmatch=True),
    st.text(max_size=6),
)
_values = st.one_of(st.text(max_size=20), st.from_regex(r'"[^"]*"|[0-9A-F]{0,16}|[0-9]{1,3}', fullmatch=True))


@given(st.lists(st.dictionaries(_keys, _values, max_size=8), max_size=3))
def test_never_raises(records: list[dict[str, str]]) -> None:
    args, warnings = execve_args_from_records(records)
    assert all(isinstance(arg, str) for arg in args)
    assert all(isinstance(warning, str) for warning in warnings)
