"""The normalizer remembers repeated records (PATH, EXECVE, PROCTITLE): a remembered answer must be
the answer computed afresh, documents must not share mutable parts, and name tables of one set of
options must not leak into another."""

from __future__ import annotations

from typing import Any

import orjson

from forwarder.audit.assemble import Assembler
from forwarder.audit.record import Event, Record, parse_line
from forwarder.ecs.normalize import NormalizeOptions, normalize


def _event(serial: int, *bodies: tuple[str, str]) -> Event:
    assembler = Assembler()
    events: list[Event] = []
    for record_type, body in bodies:
        record = parse_line(f"type={record_type} msg=audit(1700000000.{serial % 1000:03d}:{serial}): {body}")
        assert isinstance(record, Record), record
        events.extend(assembler.feed(record))
    events.extend(assembler.flush())
    assert len(events) == 1
    return events[0]


def _exec_event(serial: int, title: str = "2F62696E2F6C73002D6C") -> Event:
    return _event(
        serial,
        (
            "SYSCALL",
            "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 "
            f"pid={serial} auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 "
            'sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="ls" exe="/bin/ls" key="exec"',
        ),
        ("EXECVE", 'argc=3 a0="ls" a1="-l" a2=2F737276206D792066696C65'),
        ("CWD", 'cwd="/root"'),
        (
            "PATH",
            'item=0 name="/bin/ls" inode=42 dev=fd:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 '
            "obj=system_u:object_r:bin_t:s0 nametype=NORMAL",
        ),
        ("PROCTITLE", f"proctitle={title}"),
    )


def _dump(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def test_repeated_records_give_the_same_document_parts() -> None:
    options = NormalizeOptions(host_name="hv1")
    first = normalize(_exec_event(1), options)
    again = normalize(_exec_event(2), options)
    for part in ("file", "user"):
        assert first[part] == again[part]
    assert first["auditd"]["paths"] == again["auditd"]["paths"]
    assert first["process"]["args"] == ["ls", "-l", "/srv my file"]
    assert first["process"]["command_line"] == 'ls -l "/srv my file"'
    assert again["process"]["pid"] == 2
    assert first["process"]["title"] == again["process"]["title"] == "/bin/ls -l"


def test_documents_do_not_share_mutable_parts() -> None:
    options = NormalizeOptions(host_name="hv1")
    first = normalize(_exec_event(3), options)
    expected = _dump(normalize(_exec_event(4), options))
    # A consumer changing one document must not change the next one.
    first["file"]["path"] = "changed"
    first["process"]["args"].append("changed")
    first["auditd"]["paths"][0]["name"] = "changed"
    first["auditd"]["file"]["selinux"]["domain"] = "changed"
    assert _dump(normalize(_exec_event(4), options)) == expected


def test_name_tables_stay_with_their_options() -> None:
    plain = NormalizeOptions(host_name="hv1")
    named = NormalizeOptions(host_name="hv1", users={"0": "root"}, groups={"0": "wheel"})
    assert "owner" not in normalize(_exec_event(5), plain)["file"]
    file = normalize(_exec_event(5), named)["file"]
    assert (file["owner"], file["group"]) == ("root", "wheel")
    assert "owner" not in normalize(_exec_event(5), plain)["file"]


def test_empty_quoted_title_is_kept() -> None:
    options = NormalizeOptions(host_name="hv1")
    for _ in range(2):  # computed, then remembered
        assert normalize(_exec_event(6, title='""'), options)["process"]["title"] == ""
        assert "title" not in normalize(_exec_event(7, title="00"), options)["process"]


def _long_exec_event(serial: int, variant: int, count: int = 600) -> Event:
    args = " ".join(f'a{i}="arg{variant}-{i}"' for i in range(count))
    return _event(
        serial,
        (
            "SYSCALL",
            "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 ppid=1 "
            f"pid={serial} auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 "
            'sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="make" exe="/usr/bin/make" key="exec"',
        ),
        ("EXECVE", f"argc={count} {args}"),
        ("PROCTITLE", "proctitle=6D616B65"),
    )


def test_long_argument_lists_are_remembered_and_memory_stays_bounded() -> None:
    from forwarder.ecs import normalize as normalize_module

    options = NormalizeOptions(host_name="hv1")
    first = normalize(_long_exec_event(10, 0), options)
    again = normalize(_long_exec_event(11, 0), options)
    assert first["process"]["args"] == again["process"]["args"] == [f"arg0-{i}" for i in range(600)]
    assert first["process"]["command_line"] == " ".join(f"arg0-{i}" for i in range(600))
    assert first["process"]["args"] is not again["process"]["args"]
    # Many distinct long lists: the memo by identity keeps a bounded number of fields.
    for variant in range(1, 60):
        doc = normalize(_long_exec_event(100 + variant, variant), options)
        assert doc["process"]["args"][-1] == f"arg{variant}-599"
    memo = normalize_module._EXECVE_BY_IDENTITY
    assert memo._fields <= normalize_module._IDENTITY_MEMO_MAX_FIELDS
    assert sum(entry[2] for entry in memo._entries.values()) == memo._fields
    assert len(memo._entries) <= normalize_module._MEMO_MAX_ENTRIES


def test_a_record_equal_to_a_remembered_one_but_not_the_same_object_gives_the_same_answer() -> None:
    options = NormalizeOptions(host_name="hv1")
    event = _exec_event(20)
    expected = _dump(normalize(event, options))
    twin = _exec_event(20)
    for record in twin.records:  # equal content, other dict objects
        record.fields = dict(record.fields)
        record.enriched = dict(record.enriched)
    assert _dump(normalize(twin, options)) == expected
