"""The parser remembers record bodies and parses SYSCALL records and user-space messages in two
parts: whatever path a line takes, its Record must be the one a plain parse of the whole body
gives, and records of equal bodies may share their (read-only) dicts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.audit import record as record_module
from forwarder.audit.record import Record, parse_line
from forwarder.generate import GeneratorOptions, generate_lines
from tests.corpus import all_logs


def _plain(line: bytes | str) -> tuple[object, ...]:
    """What a record holds when its body is parsed at once, without memo or split."""
    parsed = parse_line(line)
    assert isinstance(parsed, Record), parsed
    header = record_module._HEADER.match(parsed.text)
    assert header is not None
    rest = parsed.text[header.end() :]
    fields, enriched, message, duplicates = record_module._parse_body(parsed.type_id, rest)
    return fields, enriched, message, duplicates


def _held(parsed: Record) -> tuple[object, ...]:
    return parsed.fields, parsed.enriched, parsed.message, parsed.duplicates


def _assert_same_as_plain(line: bytes | str) -> None:
    parsed = parse_line(line)
    if not isinstance(parsed, Record):
        return
    expected = _plain(line)
    assert _held(parsed) == expected
    # Order matters too: documents list fields in log order.
    assert list(parsed.fields) == list(expected[0])  # type: ignore[call-overload]
    assert list(parsed.enriched) == list(expected[1])  # type: ignore[call-overload]
    # The remembered part is a part of the fields, with the same values.
    if parsed.shared is not None:
        assert {key: parsed.fields.get(key) for key in parsed.shared} == parsed.shared


SYSCALL = (
    "type=SYSCALL msg=audit(1710000000.{msec}:{serial}): arch=c000003e syscall=59 success=yes exit=0 "
    "a0=55d1 a1=7ffd a2=7ffe a3=0 items=2 ppid=1 pid={pid} auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 "
    'egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm="ls" exe="/usr/bin/ls" '
    'subj=unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023 key="exec"'
)
USER = (
    "type=USER_END msg=audit(1710000000.{msec}:{serial}): pid={pid} uid=0 auid=1000 ses=3 "
    "subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='op=PAM:session_close grantors=pam_unix "
    'acct="bob" exe="/usr/sbin/sshd" hostname=10.0.0.17 addr=10.0.0.17 terminal=ssh res=success\''
)


@pytest.mark.parametrize("template", [SYSCALL, USER])
def test_repeated_bodies_parse_as_the_first_and_share_their_remembered_part(template: str) -> None:
    first = parse_line(template.format(msec=1, serial=10, pid=100))
    again = parse_line(template.format(msec=2, serial=11, pid=200))
    assert isinstance(first, Record) and isinstance(again, Record)
    assert first.fields["pid"] == "100" and again.fields["pid"] == "200"
    assert {k: v for k, v in first.fields.items() if k != "pid"} == {
        k: v for k, v in again.fields.items() if k != "pid"
    }
    assert list(first.fields) == list(again.fields)
    # The per-call values differ, so each record has its own fields dict; the rest is shared.
    assert first.fields is not again.fields
    assert first.shared is not None and first.shared is again.shared
    assert "pid" not in first.shared and "exe" in first.shared
    _assert_same_as_plain(template.format(msec=3, serial=12, pid=300))


def test_equal_bodies_share_their_dicts() -> None:
    line = 'type=CWD msg=audit(1710000000.{}:{}): cwd="/root"'
    first = parse_line(line.format(1, 20))
    again = parse_line(line.format(2, 21))
    assert isinstance(first, Record) and isinstance(again, Record)
    assert first.fields is again.fields
    assert first.shared is first.fields
    assert (first.sec, first.msec, first.serial) != (again.sec, again.msec, again.serial)


@pytest.mark.parametrize(
    "line",
    [
        # A key of the per-call part repeated in the task part: the split is not taken.
        "type=SYSCALL msg=audit(1.001:1): arch=c000003e syscall=2 success=no exit=-2 a0=1 a1=2 a2=3 a3=4 "
        'items=1 ppid=1 pid=5 auid=0 pid=6 comm="x"',
        # A quote in the per-call part.
        'type=SYSCALL msg=audit(1.001:2): arch=c000003e syscall="2" pid=5 auid=0 uid=0 comm="x"',
        # Another layout of the per-call part (no success/exit).
        "type=SYSCALL msg=audit(1.001:3): arch=40000003 syscall=11 per=400000 items=0 ppid=1 pid=2 auid=0 uid=0",
        # AppArmor subject with its mode after a space, in the task part and in the outer fields.
        "type=SYSCALL msg=audit(1.001:4): arch=c000003e syscall=2 success=yes exit=3 a0=1 a1=2 a2=3 a3=4 "
        'items=1 ppid=1 pid=5 auid=0 uid=0 comm="x" subj=libvirtd (enforce) key=(null)',
        "type=USER_START msg=audit(1.001:5): pid=5 uid=0 subj=/usr/sbin/sshd (enforce) "
        "msg='op=PAM:session_open acct=\"root\" res=success'",
        # A key of the outer fields repeated inside msg='...'.
        "type=USER_CMD msg=audit(1.001:6): pid=5 uid=0 auid=1000 ses=1 msg='cwd=\"/\" uid=7 res=success'",
        # A key repeated inside msg='...'.
        "type=USER_ACCT msg=audit(1.001:7): pid=5 uid=0 msg='op=a op=b res=success'",
        # Unterminated message, text after the message, ENRICHED part.
        "type=USER_LOGIN msg=audit(1.001:8): pid=5 uid=0 msg='op=login acct=root",
        "type=USER_LOGIN msg=audit(1.001:9): pid=5 uid=0 msg='op=login res=success' extra=1",
        'type=USER_AUTH msg=audit(1.001:10): pid=5 uid=0 auid=1000 ses=1 msg=\'op=PAM:auth acct="bob" '
        'res=success\'\x1dUID="root" AUID="bob"',
        # SELinux user AVC inside msg='...'.
        "type=USER_AVC msg=audit(1.001:11): pid=1 uid=0 auid=4294967295 ses=4294967295 "
        'msg=\'avc:  denied  { status } for auid=-1 uid=0 gid=0 cmdline="x" scontext=a:b:c:s0 '
        'tcontext=a:b:c:s0 tclass=system exe="/usr/lib/systemd/systemd" sauid=0 hostname=? addr=? terminal=?\'',
        # ENRICHED SYSCALL.
        "type=SYSCALL msg=audit(1.001:12): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 "
        'items=2 ppid=1 pid=7 auid=1000 uid=0 comm="ls" exe="/bin/ls" key=(null)'
        '\x1dARCH=x86_64 SYSCALL=execve AUID="alice" UID="root"',
    ],
)
def test_unusual_bodies_parse_as_a_plain_parse(line: str) -> None:
    for _ in range(2):  # the second time through the memo
        _assert_same_as_plain(line)


def test_generated_and_corpus_logs_parse_as_a_plain_parse() -> None:
    checked = 0
    for options in (
        GeneratorOptions(seed=3, records=3_000),
        GeneratorOptions(seed=4, records=3_000, enriched=True, node="hv1", security="apparmor"),
        GeneratorOptions(seed=5, records=2_000, libvirt_style="old", security="dac"),
    ):
        for line in generate_lines(options):
            _assert_same_as_plain(line)
            checked += 1
    logs: list[Path] = all_logs()
    for path in logs:
        for line in path.read_bytes().splitlines():
            _assert_same_as_plain(line)
            checked += 1
    assert checked > 8_000


_TOKENS = st.sampled_from(
    ["a", "pid", "uid", "auid", "subj", "msg", "=", "'", '"', " ", "(", ")", "x:y", "\x1d", "1", "key", "res"]
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["SYSCALL", "USER_END", "USER_AVC", "CWD"]),
    tokens=st.lists(_TOKENS, max_size=30),
)
def test_any_body_parses_as_a_plain_parse(kind: str, tokens: list[str]) -> None:
    body = "".join(tokens)
    for prefix in ("", "arch=c000003e syscall=1 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=0 ppid=1 pid=2 "):
        line = f"type={kind} msg=audit(1.001:1): {prefix}{body}"
        for _ in range(2):
            _assert_same_as_plain(line)


def test_the_memos_stay_within_their_bounds() -> None:
    short, long = record_module._SHORT_BODIES, record_module._LONG_BODIES
    for number in range(5_000):
        parse_line(f'type=CWD msg=audit(1.001:{number}): cwd="/srv/{number}"')
        if number % 10 == 0:
            args = " ".join(f'a{i}="{number}-{i}"' for i in range(300))
            parse_line(f"type=EXECVE msg=audit(1.001:{number}): argc=300 {args}")
    for memo in (short, long):
        assert 0 < len(memo._entries) <= memo._max_entries
        assert memo._chars == sum(len(key[1]) for key in memo._entries)
        assert memo._chars <= memo._max_chars
    # The newest bodies are the ones kept.
    assert (1307, 'cwd="/srv/4999"') in short._entries


def test_lines_parsed_in_several_threads_at_once_are_never_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memos change on every miss; threads parsing at once must all get their records.

    A small memo (evictions all the time) and thread switches as often as possible make a race
    likely to show."""
    import sys
    import threading

    monkeypatch.setattr(record_module._SHORT_BODIES, "_max_entries", 64)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    failures: list[object] = []

    def work(offset: int) -> None:
        for number in range(offset, offset + 6_000):
            line = f'type=CWD msg=audit(1.001:{number}): cwd="/srv/{number % 3_000}"'
            parsed = parse_line(line)
            if not isinstance(parsed, Record) or parsed.fields["cwd"] != f'"/srv/{number % 3_000}"':
                failures.append(parsed)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in (0, 1_000, 2_000, 3_000)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert failures == []
    short = record_module._SHORT_BODIES
    assert len(short._entries) <= short._max_entries
    assert short._chars == sum(len(key[1]) for key in short._entries)
