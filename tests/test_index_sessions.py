"""``auditfwd sessions --index`` without an engine: documents -> sessions, the migration join, the
text and JSON outputs, the query, and the command line's errors.

The engine side (the same against real Elasticsearch and OpenSearch nodes) is in
``tests/test_engines_sessions_index.py``.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.ecs.normalize import NormalizeOptions
from forwarder.generate import GeneratorOptions, generate_lines
from forwarder.offline import DeadLetters, ParseSettings, parse_files
from forwarder.sessions_command import PASSWD_FILE, _passwd_names, run
from forwarder.sessions_index import search_query
from forwarder.virt.auvirt_format import RenderOptions
from forwarder.virt.index_sessions import (
    MIGRATION_WINDOW_SECONDS,
    HostSessions,
    IndexSessions,
    document_event,
    index_document,
    join_migrations,
    latest_before_markers,
    render_index_entries,
    render_index_summary,
    timelines,
    wanted_message_types,
)
from forwarder.virt.sessions import SessionFilter
from tests.sessions_logs import HAND_MADE_LOGS, T0, UUID_A, UUID_B, LogBuilder, _guest_start, host_lines

pytestmark = pytest.mark.usefixtures("utc_timezone")

REPO = Path(__file__).resolve().parent.parent


def documents(log: bytes, host: str, tmp_path: Path, original: bool) -> list[dict[str, Any]]:
    """What ``auditfwd run`` would index for ``log`` (``auditfwd parse`` gives the same documents)."""
    path = tmp_path / f"{host}-{int(original)}.log"
    path.write_bytes(log)
    out = io.BytesIO()
    options = NormalizeOptions(host_name=host, include_original=original)
    parse_files([str(path)], out, ParseSettings(normalize=options), DeadLetters(None), lambda _line: None)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def reordered(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with ``auditd.data`` in reverse key order: the engines do not keep the order
    (OpenSearch's source filtering changes it), so rebuilt records must not depend on it."""
    data = doc.get("auditd", {}).get("data")
    if isinstance(data, dict):
        doc["auditd"]["data"] = dict(reversed(list(data.items())))
    return doc


def in_index_order(docs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The order the engine query returns: ``@timestamp``, ``event.sequence``, ``event.id``."""
    return sorted(docs, key=lambda doc: (doc["@timestamp"], doc["event"]["sequence"], doc["event"]["id"]))


def file_output(log: bytes, tmp_path: Path, args: Sequence[str]) -> bytes:
    path = tmp_path / "file-mode.log"
    path.write_bytes(log)
    out = io.BytesIO()
    assert run(["--file", str(path), *args], io.BytesIO(), out, io.StringIO()) == 0
    return out.getvalue()


def index_hosts(docs: Sequence[Mapping[str, Any]], args: Sequence[str]) -> dict[str, HostSessions]:
    host_down = "--host-down" in args
    correlate = bool({"--all-events", "--summary"} & set(args))
    sessions = IndexSessions(
        SessionFilter(correlate_security=correlate),
        _passwd_names(PASSWD_FILE),  # as the command reads them
        host_down=host_down,
        latest_before=latest_before_markers(docs) if host_down else None,
    )
    sessions.add_all(in_index_order(docs))
    return sessions.finish()


# ------------------------------------------------------------------ documents -> the log's sessions

GENERATED = [
    GeneratorOptions(seed=1, records=3000, node="hv-a", security="selinux", enriched=True),
    GeneratorOptions(seed=2, records=3000, node="hv-b", security="apparmor", libvirt_style="legacy"),
    GeneratorOptions(seed=3, records=3000, node="hv-c", security="dac", libvirt_style="old", enriched=True),
    GeneratorOptions(seed=4, records=3000, security="none", host_reboots=True),
]
ARGUMENTS = [[], ["--all-events", "--proof", "--show-uuid"], ["--all-events", "--host-down", "--proof"]]


@pytest.mark.parametrize("options", GENERATED, ids=lambda o: f"seed{o.seed}-{o.security}-{o.libvirt_style}")
@pytest.mark.parametrize("original", [True, False], ids=["original", "rebuilt"])
def test_documents_give_the_sessions_of_the_log(options: GeneratorOptions, original: bool, tmp_path: Path) -> None:
    log = b"".join(generate_lines(options))
    host = options.node or "hv-plain"
    docs = documents(log, host, tmp_path, original)
    if not original:
        docs = [reordered(doc) for doc in docs]
    for args in ARGUMENTS:
        hosts = index_hosts(docs, args)
        assert list(hosts) == [host]
        render = RenderOptions(
            all_events="--all-events" in args, show_uuid="--show-uuid" in args, proof="--proof" in args
        )
        text = render_index_entries(hosts, join_migrations(hosts), render, time.localtime)
        expected = file_output(log, tmp_path, args)
        assert expected.count(b"\n") > 5
        assert host_lines(text, host) == expected, args


#: Hand-made logs whose sessions depend on the file's order, which an index (time order, one host
#: per node) does not keep: "grouping" has timestamps going back and two nodes in one file,
#: "names" ends with a guest stopped before it started.
FILE_ORDER_LOGS = frozenset({"grouping", "names"})


@pytest.mark.parametrize("name", sorted(set(HAND_MADE_LOGS) - FILE_ORDER_LOGS))
def test_hand_made_logs_with_their_original_records(name: str, tmp_path: Path) -> None:
    log = HAND_MADE_LOGS[name]()
    docs = documents(log, "hv-x", tmp_path, original=True)
    for args in ARGUMENTS:
        hosts = index_hosts(docs, args)
        render = RenderOptions(
            all_events="--all-events" in args, show_uuid="--show-uuid" in args, proof="--proof" in args
        )
        text = render_index_entries(hosts, [], render, time.localtime)
        (host,) = hosts  # node= names the host when the records carry it
        assert host_lines(text, host) == file_output(log, tmp_path, args), args


def test_rebuilt_event_reads_like_the_record(tmp_path: Path) -> None:
    log = LogBuilder(node="hv-a")
    log.control(T0, "start", "booted", "7765622030312D5AC3BC72696368", UUID_A, "2201")
    log.resource(T0 + 5, "disk", "detach", '"web"', UUID_A, '"/var/lib/libvirt/images/a b.img"', '"?"')
    docs = documents(log.text(), "hv-a", tmp_path, original=False)
    assert all("original" not in doc["event"] for doc in docs)
    start = document_event(docs[0])
    assert start is not None and start.node == "hv-a" and (start.sec, start.serial) == (T0, 101)
    text = start.records[0].text
    assert "op=start reason=booted" in text and "vm-pid=2201" in text and "res=success" in text
    detach = document_event(docs[1])
    assert detach is not None
    # The unset side comes back so that the forward-only cursor still finds new-disk after old-disk.
    assert "old-disk=" in detach.records[0].text and "new-disk=3F" in detach.records[0].text
    assert document_event({"@timestamp": "bad", "auditd": {"message_type": "virt_control"}}) is None
    assert document_event({"@timestamp": "2024-03-11T07:58:00.000Z", "auditd": {}}) is None


# ------------------------------------------------------------------ migrations


def migration_logs(stop_to_start: int, reason_in: str = "migrated") -> dict[str, bytes]:
    """hv-a runs the guest, it migrates to hv-b (``stop_to_start`` seconds from the stop to the
    start on hv-b), then on to hv-c; hv-b also runs a guest that never leaves."""
    a, b, c = LogBuilder(node="hv-a"), LogBuilder(node="hv-b"), LogBuilder(node="hv-c")
    b.serial = 500
    c.serial = 900
    _guest_start(a, T0, '"web01"', UUID_A, 2201, "s0:c1,c2", '"/var/lib/libvirt/images/web01.qcow2"')
    _guest_start(b, T0 + 30, '"db"', UUID_B, 3301, "s0:c3,c4", '"/var/lib/libvirt/images/db.qcow2"')
    a.control(T0 + 600, "stop", "migrated", '"web01"', UUID_A, "0")
    b.machine_id(T0 + 600 + stop_to_start - 1, '"web01"', UUID_A, "system_u:system_r:svirt_t:s0:c7,c8")
    b.control(T0 + 600 + stop_to_start, "start", reason_in, '"web01"', UUID_A, "4401")
    b.control(T0 + 1800, "stop", "migrated", '"web01"', UUID_A, "0")
    c.control(T0 + 1799, "start", "migrated", '"web01"', UUID_A, "5501")
    c.control(T0 + 3600, "stop", "shutdown", '"web01"', UUID_A, "0")
    return {"hv-a": a.text(), "hv-b": b.text(), "hv-c": c.text()}


def fleet(logs: Mapping[str, bytes], tmp_path: Path, args: Sequence[str] = ()) -> dict[str, HostSessions]:
    docs = [doc for host, log in logs.items() for doc in documents(log, host, tmp_path, original=True)]
    return index_hosts(docs, args)


def test_migrations_join_one_timeline_across_hosts(tmp_path: Path) -> None:
    hosts = fleet(migration_logs(stop_to_start=-2), tmp_path)
    migrations = join_migrations(hosts)
    assert [(m.from_host, m.to_host, m.stop.start, m.start.start) for m in migrations] == [
        ("hv-a", "hv-b", T0 + 600, T0 + 598),
        ("hv-b", "hv-c", T0 + 1800, T0 + 1799),
    ]
    lines = timelines(hosts, migrations)
    web = next(line for line in lines if line.uuid == UUID_A)
    assert [(s.host, s.start.start, s.start.end) for s in web.segments] == [
        ("hv-a", T0 + 2, T0 + 600),
        ("hv-b", T0 + 598, T0 + 1800),
        ("hv-c", T0 + 1799, T0 + 3600),
    ]
    assert web.hosts == ["hv-a", "hv-b", "hv-c"] and len(web.migrations) == 2
    db = next(line for line in lines if line.uuid == UUID_B)
    assert db.hosts == ["hv-b"] and db.migrations == []


@pytest.mark.parametrize(
    ("stop_to_start", "reason", "joined"),
    [
        (3, "migrated", True),
        (MIGRATION_WINDOW_SECONDS, "migrated", True),
        (MIGRATION_WINDOW_SECONDS + 1, "migrated", False),
        (3, "booted", False),
    ],
)
def test_migration_needs_both_ends_close_in_time(stop_to_start: int, reason: str, joined: bool, tmp_path: Path) -> None:
    migrations = join_migrations(fleet(migration_logs(stop_to_start, reason), tmp_path))
    assert [(m.from_host, m.to_host) for m in migrations] == [("hv-a", "hv-b")] * joined + [("hv-b", "hv-c")]


def test_migration_back_to_the_same_host_is_no_join(tmp_path: Path) -> None:
    log = LogBuilder(node="hv-a")
    _guest_start(log, T0, '"web01"', UUID_A, 2201, None, '"/img"')
    log.control(T0 + 100, "stop", "migrated", '"web01"', UUID_A, "0")
    log.control(T0 + 101, "start", "migrated", '"web01"', UUID_A, "2301")
    hosts = fleet({"hv-a": log.text()}, tmp_path)
    assert join_migrations(hosts) == []
    assert [s.host for s in timelines(hosts, [])[0].segments] == ["hv-a", "hv-a"]


def test_nearest_start_wins_when_two_hosts_start_the_guest(tmp_path: Path) -> None:
    a, b, c = LogBuilder(node="hv-a"), LogBuilder(node="hv-b"), LogBuilder(node="hv-c")
    _guest_start(a, T0, '"web01"', UUID_A, 2201, None, '"/img"')
    a.control(T0 + 600, "stop", "migrated", '"web01"', UUID_A, "0")
    b.control(T0 + 650, "start", "migrated", '"web01"', UUID_A, "3301")
    c.control(T0 + 605, "start", "migrated", '"web01"', UUID_A, "4401")
    migrations = join_migrations(fleet({"hv-a": a.text(), "hv-b": b.text(), "hv-c": c.text()}, tmp_path))
    assert [(m.from_host, m.to_host) for m in migrations] == [("hv-a", "hv-c")]


def test_text_output_has_the_host_column_and_migration_lines(tmp_path: Path) -> None:
    logs = migration_logs(stop_to_start=-2)
    hosts = fleet(logs, tmp_path, ["--all-events"])
    migrations = join_migrations(hosts)
    text = render_index_entries(hosts, migrations, RenderOptions(all_events=True, proof=True), time.gmtime)
    migr = [line for line in text.splitlines() if b"\tmigr " in line]
    assert migr == [
        b"hv-a                \tmigr   web01                 \troot       \tMon Mar 11 08:08                \t-> hv-b",
        b"hv-b                \tmigr   web01                 \troot       \tMon Mar 11 08:28                \t-> hv-c",
    ]
    for host, log in logs.items():
        assert host_lines(text, host) == file_output(log, tmp_path, ["--all-events", "--proof"])
    starts = render_index_entries(hosts, migrations, RenderOptions(), time.gmtime).splitlines()
    assert [line.split(b"\t")[0].strip() for line in starts] == [b"hv-a", b"hv-b", b"hv-b", b"hv-c"]
    assert all(b"migr" not in line for line in starts)
    summary = render_index_summary(hosts, migrations, False, time.gmtime)
    assert summary.endswith(b"Number of hosts:                3\nNumber of migrations:           2\n")
    assert b"Number of guest starts:         4\n" in summary


def test_json_document_has_hosts_timelines_and_migrations(tmp_path: Path) -> None:
    logs = migration_logs(stop_to_start=-2)
    hosts = fleet(logs, tmp_path, ["--all-events"])
    document = index_document(hosts, join_migrations(hosts))
    assert document["hosts"] == ["hv-a", "hv-b", "hv-c"]
    starts = [session["start_epoch"] for session in document["sessions"]]
    assert starts == sorted(starts)
    for host, log in logs.items():
        mine = [{k: v for k, v in s.items() if k != "host"} for s in document["sessions"] if s["host"] == host]
        assert mine == orjson.loads(file_output(log, tmp_path, ["--format", "json"]))["sessions"]
    web = next(line for line in document["timelines"] if line["guest"]["uuid"] == UUID_A)
    assert [(s["host"], s["state"]) for s in web["segments"]] == [
        ("hv-a", "migrated"),
        ("hv-b", "migrated"),
        ("hv-c", "stopped"),
    ]
    assert [(m["from_host"], m["to_host"]) for m in web["migrations"]] == [("hv-a", "hv-b"), ("hv-b", "hv-c")]
    first = document["migrations"][0]
    assert first["time_epoch"] == T0 + 600 and first["started_epoch"] == T0 + 598
    assert first["stop_proofs"][0].startswith("hv-a:") and first["start_proofs"][0].startswith("hv-b:")
    assert document["summary"]["migrations"] == 2 and document["summary"]["hosts"] == 3


# ------------------------------------------------------------------ the query


def test_query_reads_only_what_sessions_need() -> None:
    plain = search_query(SessionFilter(), host_down=False)
    assert plain == {"bool": {"filter": [{"terms": {"auditd.message_type": wanted_message_types(False)}}]}}
    assert wanted_message_types(False) == ["virt_control", "virt_resource", "virt_machine_id"]
    correlated = wanted_message_types(True)
    assert {"avc", "anom_abend", "anom_promiscuous", "anom_login_failures"} <= set(correlated)
    assert "user_avc" not in correlated and "syscall" not in correlated
    filtered = search_query(SessionFilter(start_time=100, end_time=200, vm="web01", uuid=UUID_A), host_down=True)
    text = orjson.dumps(filtered).decode()
    assert '"gte":100000' in text and '"lt":201000' in text
    assert '"auditd.data.vm":"web01"' in text and f'"auditd.data.uuid":"{UUID_A}"' in text
    assert '"system_boot"' in text and '"daemon_start"' in text
    escaped = orjson.dumps(search_query(SessionFilter(vm="a\\033b"), host_down=False)).decode()
    assert "auditd.data.vm" not in escaped  # auvirt's escaped form is compared locally only


# ------------------------------------------------------------------ command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--index", "elasticsearch+http://localhost:9200", "--file", "x"], '"--index" and "--file" or "--stdin"'),
        (["--index", "elasticsearch+http://localhost:9200", "--stdin"], '"--index" and "--file" or "--stdin"'),
        (["--index-pattern", "logs-*"], '"--index-pattern" option requires "--index".'),
        (["--page-size", "10"], '"--page-size" option requires "--index".'),
        (["--index", "elasticsearch+http://h", "--page-size", "0"], "Invalid page size: 0"),
        (["--index"], '"--index" option requires an argument.'),
    ],
)
def test_index_option_errors(args: list[str], message: str) -> None:
    err = io.StringIO()
    assert run(args, io.BytesIO(), io.BytesIO(), err) == 1
    assert message in err.getvalue()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_unreachable_engine_is_a_clear_error_without_secrets(engine: str) -> None:
    secret = "s3cr3t-Passw0rd-never-shown"
    environment = {
        **os.environ,
        "AUDITFWD_OUTPUT_USERNAME": "auditor",
        "AUDITFWD_OUTPUT_PASSWORD": secret,
        "AUDITFWD_OUTPUT_REQUEST_TIMEOUT": "5",
        "PYTHONPATH": str(REPO),
    }
    url = f"{engine}+http://127.0.0.1:{_free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "sessions", "--index", url],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    # A warning that credentials would go without TLS may come first; the error is the last line.
    assert result.stderr.splitlines()[-1].startswith(f"Error: {url}: ")
    assert "Traceback" not in result.stderr and secret not in result.stderr + result.stdout


def test_not_an_engine_url_is_an_error() -> None:
    err = io.StringIO()
    assert run(["--index", "https://127.0.0.1:9200"], io.BytesIO(), io.BytesIO(), err) == 1
    assert err.getvalue().startswith("Error: https: not an engine URL")
