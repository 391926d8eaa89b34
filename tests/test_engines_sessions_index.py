"""``auditfwd sessions --index`` against real Elasticsearch and OpenSearch nodes.

Three generated hypervisor logs (``node=hv-a``, ``node=hv-b``, and one without ``node=`` whose
documents get ``host.name`` hv-c) end with a guest that migrates from hv-a to hv-b (the
destination logs its start two seconds before the source logs the stop) and on to hv-c.  They
are shipped with the engine sink into two fresh data streams: one with ``event.original``, one
without (sessions rebuilt from the normalized fields).  Then, with pages far smaller than the
documents read (many ``search_after`` rounds):

* every host's lines of the text output (any option set, ``--host-down`` included) and its
  sessions in the JSON document equal ``auditfwd sessions --file`` on that host's log;
* the migrated guest is one timeline over the three hosts with both migrations;
* ``--vm``, ``--uuid``, ``--start``/``--end`` give what the same filters give on the logs;
* the page size changes nothing.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from forwarder.audit.record import Malformed, parse_line
from forwarder.ecs.normalize import NormalizeOptions
from forwarder.generate import GeneratorOptions, generate_lines
from forwarder.sessions_command import run
from forwarder.virt.index_sessions import wanted_message_types
from tests.engines import ENGINES, Node
from tests.engines import request as call
from tests.sessions_logs import LogBuilder, host_lines
from tests.test_engines_sinks import as_documents, deliver, drop_stream, engine_url, normalized, setup, sink_for

pytestmark = pytest.mark.usefixtures("utc_timezone")

#: Documents per search request in the tests: far fewer than the documents read.
PAGE_SIZE = 40

MIGRANT_UUID = "c0ffee00-1234-4abc-8def-0123456789ab"
MIGRANT = "migrant-01"

#: host -> (generator options, whether the lines carry node=).
HOSTS = {
    "hv-a": GeneratorOptions(seed=31, records=2500, node="hv-a", security="selinux", enriched=True),
    "hv-b": GeneratorOptions(seed=32, records=2500, node="hv-b", security="apparmor", libvirt_style="legacy"),
    "hv-c": GeneratorOptions(seed=33, records=2500, security="dac", host_reboots=True),
}


def _last(lines: Sequence[bytes]) -> tuple[int, int]:
    """The latest second and the highest serial of a log."""
    sec = serial = 0
    for line in lines:
        record = parse_line(line.rstrip(b"\n"))
        if not isinstance(record, Malformed):
            sec, serial = max(sec, record.sec), max(serial, record.serial)
    return sec, serial


def fleet_logs(directory: Path) -> dict[str, Path]:
    """The three hosts' logs, each ending with its part of the migrant's journey."""
    generated = {host: list(generate_lines(options)) for host, options in HOSTS.items()}
    t0 = max(_last(lines)[0] for lines in generated.values()) + 600
    vm = f'"{MIGRANT}"'
    paths: dict[str, Path] = {}
    for host, lines in generated.items():
        tail = LogBuilder(node=HOSTS[host].node)
        tail.serial = _last(lines)[1] + 1000
        if host == "hv-a":
            tail.machine_id(t0, vm, MIGRANT_UUID, "system_u:system_r:svirt_t:s0:c17,c42")
            tail.resource(t0 + 1, "disk", "start", vm, MIGRANT_UUID, '"?"', '"/var/lib/libvirt/images/migrant.qcow2"')
            tail.control(t0 + 2, "start", "booted", vm, MIGRANT_UUID, "7001")
            tail.control(t0 + 600, "stop", "migrated", vm, MIGRANT_UUID, "0")
        elif host == "hv-b":
            tail.control(t0 + 598, "start", "migrated", vm, MIGRANT_UUID, "8001")
            tail.control(t0 + 1800, "stop", "migrated", vm, MIGRANT_UUID, "0")
        else:
            tail.control(t0 + 1801, "start", "migrated", vm, MIGRANT_UUID, "9001")
            tail.control(t0 + 3600, "stop", "shutdown", vm, MIGRANT_UUID, "0")
        path = directory / f"{host}.log"
        path.write_bytes(b"".join(lines) + tail.text())
        paths[host] = path
    return paths


@dataclass(frozen=True)
class Shipped:
    """A node holding the fleet's documents."""

    node: Node
    logs: dict[str, Path]
    #: data stream with event.original, and one without.
    with_original: str
    rebuilt: str
    #: documents of the types the sessions read (without AVCs and anomalies).
    session_documents: int


def _ship(node: Node, logs: dict[str, Path], original: bool) -> tuple[str, int]:
    namespace = f"sessions{'orig' if original else 'plain'}{uuid.uuid4().hex[:8]}"
    lines: list[bytes] = []
    for host, path in logs.items():
        options = NormalizeOptions(host_name=host, namespace=namespace, include_original=original)
        lines.extend(normalized([path], options))

    async def send() -> None:
        sink = sink_for(node)
        try:
            results = await deliver(sink, as_documents(lines))
        finally:
            await sink.close()
        assert len(results) == len(lines)

    asyncio.run(send())
    stream = f"logs-auditd_manager.auditd-{namespace}"
    call(node, "POST", f"{stream}/_refresh")
    wanted = set(wanted_message_types(False))
    count = sum(1 for line in lines if orjson.loads(line)["auditd"]["message_type"] in wanted)
    return stream, count


@pytest.fixture(scope="module", params=ENGINES)
def shipped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shipped]:
    node: Node = request.getfixturevalue(f"{request.param}_node")
    asyncio.run(setup(node))
    logs = fleet_logs(tmp_path_factory.mktemp(f"fleet-{request.param}"))
    with_original, count = _ship(node, logs, original=True)
    rebuilt, _ = _ship(node, logs, original=False)
    try:
        yield Shipped(node, logs, with_original, rebuilt, count)
    finally:
        drop_stream(node, with_original)
        drop_stream(node, rebuilt)


def sessions(args: Sequence[str]) -> bytes:
    out, err = io.BytesIO(), io.StringIO()
    status = run(list(args), io.BytesIO(), out, err)
    assert status == 0, err.getvalue()
    assert err.getvalue() == ""
    return out.getvalue()


def from_index(shipped: Shipped, stream: str, args: Sequence[str], page_size: int = PAGE_SIZE) -> bytes:
    url = engine_url(shipped.node)
    return sessions(["--index", url, "--index-pattern", stream, "--page-size", str(page_size), *args])


TEXT_ARGUMENTS = [
    [],
    ["--all-events", "--proof", "--show-uuid"],
    ["--all-events", "--host-down", "--proof"],
]


@pytest.mark.parametrize("original", [True, False], ids=["original", "rebuilt"])
def test_each_hosts_sessions_equal_its_log(shipped: Shipped, original: bool) -> None:
    assert shipped.session_documents > 3 * PAGE_SIZE  # many pages
    stream = shipped.with_original if original else shipped.rebuilt
    for args in TEXT_ARGUMENTS:
        text = from_index(shipped, stream, args)
        for host, log in shipped.logs.items():
            expected = sessions(["--file", str(log), *args])
            assert expected.count(b"\n") > 3, (host, args)
            assert host_lines(text, host) == expected, (host, args)


def test_json_sessions_and_the_migrated_guests_timeline(shipped: Shipped) -> None:
    document = orjson.loads(from_index(shipped, shipped.with_original, ["--format", "json"]))
    assert document["hosts"] == ["hv-a", "hv-b", "hv-c"]
    for host, log in shipped.logs.items():
        expected = orjson.loads(sessions(["--file", str(log), "--format", "json"]))["sessions"]
        mine = [{k: v for k, v in s.items() if k != "host"} for s in document["sessions"] if s["host"] == host]
        assert mine == expected, host
    (timeline,) = [line for line in document["timelines"] if line["guest"]["uuid"] == MIGRANT_UUID]
    assert timeline["guest"]["name"] == MIGRANT
    assert [(s["host"], s["state"]) for s in timeline["segments"]] == [
        ("hv-a", "migrated"),
        ("hv-b", "migrated"),
        ("hv-c", "stopped"),
    ]
    moves = [(m["from_host"], m["to_host"]) for m in timeline["migrations"]]
    assert moves == [("hv-a", "hv-b"), ("hv-b", "hv-c")]
    assert [
        (m["from_host"], m["to_host"]) for m in document["migrations"] if m["guest"]["uuid"] == MIGRANT_UUID
    ] == moves
    text = from_index(shipped, shipped.rebuilt, ["--uuid", MIGRANT_UUID, "--all-events"])
    lines = [line.split(b"\t") for line in text.splitlines()]
    assert [(fields[0].strip(), fields[1][:6].strip()) for fields in lines if fields[1].startswith(b"start")] == [
        (b"hv-a", b"start"),
        (b"hv-b", b"start"),
        (b"hv-c", b"start"),
    ]
    assert [fields[-1] for fields in lines if fields[1].startswith(b"migr")] == [b"-> hv-b", b"-> hv-c"]
    summary = from_index(shipped, shipped.with_original, ["--summary"])
    assert summary.endswith(b"Number of hosts:                3\nNumber of migrations:           2\n")


def _guest_name(log: Path) -> str:
    """The name of a guest that starts in ``log`` (from the file mode's own output)."""
    first = sessions(["--file", str(log)]).splitlines()[0]
    return first[:22].decode().rstrip()


def test_filters_equal_local_filtering(shipped: Shipped) -> None:
    name = _guest_name(shipped.logs["hv-a"])
    starts = sorted(
        record.sec
        for line in shipped.logs["hv-b"].read_bytes().splitlines()
        if not isinstance(record := parse_line(line), Malformed) and record.type == "VIRT_CONTROL"
    )
    middle = starts[len(starts) // 2]
    window = [
        "--start",
        _day(middle - 1800),
        _clock(middle - 1800),
        "--end",
        _day(middle + 1800),
        _clock(middle + 1800),
    ]
    for args in (["--vm", name], ["--uuid", MIGRANT_UUID], window, [*window, "--all-events"]):
        for stream in (shipped.with_original, shipped.rebuilt):
            text = from_index(shipped, stream, args)
            shown = 0
            for host, log in shipped.logs.items():
                expected = sessions(["--file", str(log), *args])
                assert host_lines(text, host) == expected, (host, args)
                shown += expected.count(b"\n")
            assert shown > 0, args
    # The page size changes nothing.
    assert from_index(shipped, shipped.rebuilt, ["--all-events"], page_size=7) == from_index(
        shipped, shipped.rebuilt, ["--all-events"], page_size=5000
    )


def _day(seconds: int) -> str:
    """auvirt's date (``%x`` of the C locale)."""
    return time.strftime("%m/%d/%y", time.localtime(seconds))


def _clock(seconds: int) -> str:
    """auvirt's time (``%X`` of the C locale)."""
    return time.strftime("%H:%M:%S", time.localtime(seconds))
