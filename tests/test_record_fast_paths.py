"""The parser's fast paths: the header read without a regex, the stamp of the line before, the
remembered outer fields of user-space messages and the memo's second chance.  Each must give
what the plain reading gives."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.audit import record as record_module
from forwarder.audit.record import MAX_LINE_BYTES, Malformed, Record, parse_line
from forwarder.audit.tables.record_types import RECORD_TYPE_NUMBERS
from tests.corpus import REPO


def _expected_header(text: str) -> tuple[object, ...]:
    """What the header regex alone reads from ``text`` (the line without its line end)."""
    header = record_module._HEADER.match(text)
    if header is None:
        return ("malformed", record_module._why_not_a_record(text))
    if len(text) > MAX_LINE_BYTES:
        return ("malformed", f"line longer than {MAX_LINE_BYTES} bytes")
    node, type_name, sec, msec, serial = header.groups()
    type_id = RECORD_TYPE_NUMBERS.get(type_name)
    if type_id is None:
        type_id = record_module._unknown_type_number(type_name)
    body = record_module._parse_body(type_id, text[header.end() :])
    return (node, type_name, type_id, int(sec), int(msec), int(serial), body[0], body[1], body[2], body[3])


def _read_header(parsed: Record | Malformed) -> tuple[object, ...]:
    if isinstance(parsed, Malformed):
        return ("malformed", parsed.reason)
    return (
        parsed.node,
        parsed.type,
        parsed.type_id,
        parsed.sec,
        parsed.msec,
        parsed.serial,
        parsed.fields,
        parsed.enriched,
        parsed.message,
        parsed.duplicates,
    )


def _assert_reads_as_the_regex(line: str) -> None:
    for given_line in (line, line + "\n", (line + "\r\n").encode()):
        parsed = parse_line(given_line)
        assert _read_header(parsed) == _expected_header(line), repr(given_line)
        assert parsed.text == line


_NODES = ["", "node=hv1 ", "node= ", "node=a\tb ", "node=hv1  "]
_TYPES = ["type=SYSCALL", "type=PATH", "type=CWD", "type=USER_LOGIN", "type=UNKNOWN[1420]", "type=FOO_BAR", "type="]
_GAPS = [" ", "  ", "\t"]
_STAMPS = [
    "msg=audit(1710000000.123:45):",
    "msg=audit(1710000000.123:45)",
    "msg=audit(1710000000.123:46):",
    "msg=audit(1710000001.123:45):",
    "msg=audit(1710000000.1:45):",
    "msg=audit(1710000000.0123:45):",
    "msg=audit(1710000000.:45):",
    "msg=audit(\u0661\u0667.5:9):",  # Arabic-Indic digits: \d reads them, int() too
    "msg=audit(17.5:\u0669):",
    "msg=audit(1710000000.123:45)::",
    "msg=audit(1710000000.123:45",
    "msg=audit(1710000000.123:45:",
    "msg=audit(1710000000.123.45):",
    "msg=audit1710000000.123:45):",
    "msg=audit(1710000000.123:45):x=1",
]
_AFTER = [" ", "", "  ", "\t"]
_BODIES = ['cwd="/root"', "", "a=1 b=2", "x"]


def test_every_header_layout_reads_as_the_header_regex_reads_it() -> None:
    for node, type_token, gap, stamp, after, body in itertools.product(
        _NODES, _TYPES, _GAPS, _STAMPS, _AFTER, _BODIES[:2]
    ):
        _assert_reads_as_the_regex(f"{node}{type_token}{gap}{stamp}{after}{body}")


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.sampled_from(_NODES),
            st.sampled_from(_TYPES),
            st.sampled_from(_GAPS),
            st.sampled_from(_STAMPS),
            st.sampled_from(_AFTER),
            st.sampled_from(_BODIES),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_headers_in_a_row_read_as_the_header_regex_reads_them(
    parts: list[tuple[str, str, str, str, str, str]],
) -> None:
    # Several lines in a row: the stamp of one line is remembered for the next.
    for node, type_token, gap, stamp, after, body in parts:
        _assert_reads_as_the_regex(f"{node}{type_token}{gap}{stamp}{after}{body}")


def test_a_line_too_long_is_malformed_on_every_path() -> None:
    body = "a=" + "x" * MAX_LINE_BYTES
    for prefix in ("", "node=hv1 "):
        _assert_reads_as_the_regex(f"{prefix}type=PATH msg=audit(1.001:1): {body}")
        _assert_reads_as_the_regex(f"{prefix}type=SYSCALL msg=audit(\u0661.001:1): {body}")


def test_alternating_stamps_keep_their_own_numbers() -> None:
    lines = [
        f"type={kind} msg=audit(17100000{sec}.{msec:03d}:{serial}): x=1"
        for sec, msec, serial in ((10, 5, 7), (10, 5, 8), (10, 6, 8), (11, 6, 8), (10, 5, 7), (10, 5, 7))
        for kind in ("SYSCALL", "PATH")
    ]
    for line in lines:
        _assert_reads_as_the_regex(line)


def test_threads_parsing_at_once_read_their_own_stamps() -> None:
    failures: list[str] = []

    def work(offset: int) -> None:
        for number in range(3_000):
            sec, msec, serial = 1_710_000_000 + offset, number % 1000, number * 7 + offset
            parsed = parse_line(f'type=CWD msg=audit({sec}.{msec:03d}:{serial}): cwd="/"\n'.encode())
            if not isinstance(parsed, Record) or (parsed.sec, parsed.msec, parsed.serial) != (sec, msec, serial):
                failures.append(repr(parsed))

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize(
    "body",
    [
        # Per-call values the kernel layout of _SYSCALL_LAYOUT does not take: the general path.
        "arch=c000003e syscall=59 success=yes exit=a=b a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0 uid=0",
        "arch=c000003e syscall=59 success=yes exit=subj=1 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0 uid=0",
        'arch=c000003e syscall=59 success=yes exit=0 a0="1" a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0 uid=0',
        'arch=c000003e syscall=59 success=yes exit=0 a0="1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0 comm="x"',
        "arch=c000003e syscall=59 success=yes exit=0 a0=1\x1dX a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0",
        "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5  auid=0 uid=0",
        # A task part repeating a per-call key, or a key of its own: no template.
        "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0 a0=9",
        "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0 auid=1",
        # The kernel's layout, plain and ENRICHED.
        "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0 uid=0",
        'arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0 comm="x"'
        '\x1dARCH=x86_64 SYSCALL=execve AUID="root"',
        # A long task part (the short memo's limit) and an empty one.
        "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=0 "
        + " ".join(f"k{index}=v" for index in range(400)),
        "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 pid=5 auid=",
    ],
)
def test_syscall_bodies_read_as_the_plain_parse(body: str) -> None:
    for serial in (1, 2):  # the second time from the memo
        line = f"type=SYSCALL msg=audit(1.001:{serial}): {body}"
        _assert_reads_as_the_regex(line)
        parsed = parse_line(line)
        assert isinstance(parsed, Record)
        if parsed.shared is not None and parsed.shared is not parsed.fields:
            # The task part comes last, after the per-call part, with no key in both.
            assert list(parsed.fields)[len(parsed.fields) - len(parsed.shared) :] == list(parsed.shared)


@pytest.mark.parametrize(
    "body",
    [
        "pid=5 uid=0 auid=1000 ses=1 msg='op=login res=success'",
        "pid=5 uid=0 auid=1000 ses=1  msg='op=login res=success'",
        "pid=5 uid=0 comm=\"x\" msg='op=login res=success'",
        "pid=5 uid=0 pid=6 msg='op=login res=success'",
        "pid=5 uid=0 subj=sshd (enforce) msg='op=login res=success'",
        "pid=5 uid=0 msg='op=login subj=sshd (enforce) res=success'",
        "pid=5 uid=0 msg='op=login pid=6 res=success'",
        "x msg='op=login res=success'",
        "pid=5 " * 100 + "msg='op=login res=success'",
        "pid=5 msg='" + "a=1 " * 300 + "'",
    ],
)
def test_user_messages_read_as_the_plain_parse(body: str) -> None:
    for kind in ("USER_LOGIN", "USER_AVC", "LOGIN", "VIRT_CONTROL"):
        for serial in (1, 2):
            _assert_reads_as_the_regex(f"type={kind} msg=audit(1.001:{serial}): {body}")


def test_equal_outer_fields_are_remembered_once_and_stay_within_bounds() -> None:
    memo = record_module._OUTER_FIELDS
    first = parse_line("type=USER_START msg=audit(1.001:1): pid=77 uid=0 ses=1 msg='op=a res=success'")
    again = parse_line("type=USER_END msg=audit(1.001:2): pid=77 uid=0 ses=1 msg='op=b res=success'")
    assert isinstance(first, Record) and isinstance(again, Record)
    assert memo._entries["pid=77 uid=0 ses=1 "] == {"pid": "77", "uid": "0", "ses": "1"}
    assert first.fields["op"] == "a" and again.fields["op"] == "b"
    for pid in range(3 * memo._max_entries):
        parse_line(f"type=USER_END msg=audit(1.001:{pid}): pid={pid} uid=0 msg='op=b res=success'")
    assert len(memo._entries) <= memo._max_entries
    assert list(memo._order) == list(memo._entries)


def test_a_body_looked_up_again_outlives_one_off_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Second chance: a recurring body stays while a run of bodies seen once goes by."""
    memo = record_module._SHORT_BODIES
    # Start empty (the memo only holds what parsing gives again).
    memo._entries.clear()
    memo._order.clear()
    memo._chars = 0
    monkeypatch.setattr(memo, "_max_entries", 16)
    parse_line('type=CWD msg=audit(1.001:1): cwd="/kept"')
    parse_line('type=CWD msg=audit(1.001:2): cwd="/kept"')  # looked up again: used
    parse_line('type=CWD msg=audit(1.001:3): cwd="/once"')
    # Enough to push out the oldest bodies, not enough for a second round past the spared one.
    for number in range(20):
        parse_line(f'type=CWD msg=audit(1.001:{number + 10}): cwd="/run/{number}"')
    assert (1307, 'cwd="/kept"') in memo._entries
    assert (1307, 'cwd="/once"') not in memo._entries
    assert len(memo._entries) <= 16
    assert sorted(memo._order) == sorted(memo._entries)
    assert memo._chars == sum(len(key[1]) for key in memo._entries)


def test_a_missing_stamp_is_malformed_on_the_first_line_of_a_process_too() -> None:
    """The stamp of the line before starts as a text no token equals: an empty token (two spaces
    after the type) on the very first line parsed is no stamp, as on any later line."""
    line = "type=SYSCALL  arch=c000003e syscall=59"
    script = (
        "import sys\n"
        "from forwarder.audit.record import Malformed, parse_line\n"
        f"parsed = parse_line({line!r})\n"
        "sys.stdout.write(type(parsed).__name__ + ' ' + getattr(parsed, 'reason', ''))\n"
    )
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    later = parse_line(line)
    assert isinstance(later, Malformed)
    assert first.stdout == f"Malformed {later.reason}"
