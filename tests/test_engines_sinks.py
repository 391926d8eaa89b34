"""The Elasticsearch and OpenSearch sinks against real nodes.

* The shared corpus (each file as its own host) and a generated hypervisor log (through the
  whole `auditfwd run` pipeline: tail, assemble, normalize, batch, sink) reach each engine: one
  document per distinct document id, no rejection, the live mapping has the declared types,
  searches by time range, ``event.action`` and guest (``libvirt.domain.uuid`` / ``.name``) find the
  right events.
* A node stopped mid-stream and started again (same data, same port): every event arrives,
  each once.
* A node with a write queue of one and eight concurrent senders: items are refused with 429
  and retried; nothing is lost.
* A document the mapping refuses goes to the dead-letter file with the engine's reason; the
  others are indexed.

The stop/start and storm tests use a node of their own (``pytest-fragile-<engine>-<pid>``), so
the session's shared nodes are never stopped.  They run on both engines (about 80 s each);
``AUDITFWD_FRAGILE_ENGINES`` may name fewer for a quick local run (``elasticsearch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.ecs.fields import FIELDS
from forwarder.ecs.normalize import DEFAULT_DATASET, NormalizeOptions
from forwarder.engine_commands import SetupReport, setup_engine
from forwarder.mappings import leaf_mappings
from forwarder.offline import DeadLetters, ParseSettings, parse_files
from forwarder.pipeline import DEAD_LETTER_FILE, Pipeline
from forwarder.sinks import Document, Outcome, Result, SinkError
from forwarder.sinks.bulk import BulkSink
from forwarder.sinks.delivery import Delivery, RetryPolicy
from forwarder.sinks.engines import create_client, create_engine_sink, output_settings, register_engine_sinks
from tests.corpus import all_logs
from tests.engines import ENGINES, ENGINES_DIR, START_TIMEOUT_SECONDS, EngineError, Node, live_leaves
from tests.engines import request as call
from tests.run_helpers import HOST, Running, append, closing_line, expected_ids, generated, make_config, wait_until

register_engine_sinks()

#: Retries in the tests: quick, so an outage's end is noticed within a second.
FAST_RETRIES = RetryPolicy(initial_backoff=0.05, max_backoff=1.0)

#: Documents per batch where a test wants many requests in flight or many batches.
SMALL_BATCH = 200

#: Engines of the stop/start and storm tests (see the module's documentation).
FRAGILE_ENGINES = [
    engine for engine in os.environ.get("AUDITFWD_FRAGILE_ENGINES", ",".join(ENGINES)).split(",") if engine in ENGINES
]


def _stream(namespace: str) -> str:
    return f"logs-{DEFAULT_DATASET}-{namespace}"


def _namespace(prefix: str) -> str:
    """A namespace of its own for each run (nodes given by URL outlive the test session)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def engine_url(node: Node) -> str:
    """``elasticsearch+http://127.0.0.1:PORT`` for a node."""
    return f"{node.engine}+{node.url}"


def sink_for(node: Node) -> BulkSink:
    return create_engine_sink(output_settings(engine_url(node), None, environ={}))


async def setup(node: Node) -> SetupReport:
    """Install the templates on a node (what `auditfwd setup` does)."""
    client = create_client(output_settings(engine_url(node), None, environ={}))
    try:
        report = await setup_engine(client)
    finally:
        await client.close()
    assert report.ok, report.render()
    return report


def stored_ids(node: Node, stream: str) -> list[str]:
    """Every ``_id`` in a data stream (with repetitions, if there were any)."""
    call(node, "POST", f"{stream}/_refresh")
    answer = call(node, "POST", f"{stream}/_search?scroll=1m", {"size": 5000, "_source": False, "sort": ["_doc"]})
    ids: list[str] = []
    while answer["hits"]["hits"]:
        ids.extend(hit["_id"] for hit in answer["hits"]["hits"])
        answer = call(node, "POST", "_search/scroll", {"scroll": "1m", "scroll_id": answer["_scroll_id"]})
    call(node, "DELETE", "_search/scroll", {"scroll_id": answer["_scroll_id"]}, ok=(200, 404))
    return ids


def search_ids(node: Node, stream: str, query: dict[str, Any]) -> set[str]:
    answer = call(node, "POST", f"{stream}/_search", {"query": query, "size": 10000, "_source": False})
    return {hit["_id"] for hit in answer["hits"]["hits"]}


def drop_stream(node: Node, stream: str) -> None:
    with contextlib.suppress(EngineError):
        call(node, "DELETE", f"_data_stream/{stream}", ok=(200, 404))


def normalized(paths: Sequence[Path], options: NormalizeOptions) -> list[bytes]:
    """What `auditfwd parse` writes for ``paths`` (one assembler over them), one line each."""
    output = io.BytesIO()
    parse_files(
        [str(path) for path in paths], output, ParseSettings(normalize=options), DeadLetters(None), lambda _line: None
    )
    return output.getvalue().splitlines()


def as_documents(lines: Sequence[bytes]) -> list[Document]:
    return [Document(orjson.loads(line)["event"]["id"], line) for line in lines]


async def deliver(sink: BulkSink, documents: Sequence[Document], batch: int = 1000) -> list[Result]:
    delivery = Delivery(sink, FAST_RETRIES)
    results: list[Result] = []
    for start in range(0, len(documents), batch):
        results.extend(await delivery.deliver(documents[start : start + batch]))
    return results


# ---------------------------------------------------------------------------- shared nodes


@pytest.fixture(scope="module", params=ENGINES)
def prepared(request: pytest.FixtureRequest) -> tuple[Node, dict[str, str]]:
    """A shared node with the templates installed, and the type fallbacks it needed."""
    node: Node = request.getfixturevalue(f"{request.param}_node")
    return node, asyncio.run(setup(node)).fallbacks


async def test_corpus_reaches_the_engine_whole(prepared: tuple[Node, dict[str, str]]) -> None:
    node, fallbacks = prepared
    namespace = _namespace("corpus")
    documents: list[Document] = []
    for path in all_logs():
        # Each file is another machine's log: its own host name keeps their events apart.
        host = str(path.relative_to(path.parents[1]))
        documents.extend(as_documents(normalized([path], NormalizeOptions(host_name=host, namespace=namespace))))
    assert len(documents) >= 10
    sink = sink_for(node)
    try:
        results = await deliver(sink, documents)
    finally:
        await sink.close()
    rejected = [
        (doc.id, result.reason)
        for doc, result in zip(documents, results, strict=True)
        if result.outcome is Outcome.REJECTED
    ]
    assert rejected == []
    assert all(result.outcome is Outcome.DELIVERED for result in results)
    stream = _stream(namespace)
    try:
        stored = stored_ids(node, stream)
        # One document per id; events that share an id (see the report of document ids) are one.
        assert len(stored) == len(set(stored))
        assert set(stored) == {doc.id for doc in documents}
        assert sink.stats.indexed == len(stored)
        assert sink.stats.already_indexed == len(documents) - len(stored)
        live = live_leaves(next(iter(call(node, "GET", f"{stream}/_mapping").values()))["mappings"]["properties"])
        expected = leaf_mappings(node.engine, fallbacks=fallbacks)
        assert sorted(live) == sorted(FIELDS)
        for name, declared in expected.items():
            assert {key: live[name].get(key) for key in declared} == declared, (name, live[name])
    finally:
        drop_stream(node, stream)


async def test_generated_log_through_the_pipeline(prepared: tuple[Node, dict[str, str]], tmp_path: Path) -> None:
    node, _ = prepared
    namespace = _namespace("generated")
    lines = generated(5000, seed=21)
    lines.append(closing_line(lines))
    log = tmp_path / "audit.log"
    append(log, lines)
    expected = expected_ids(lines)
    options = NormalizeOptions(host_name=HOST, namespace=namespace)
    documents = [orjson.loads(line) for line in normalized([log], options)]
    # The pipeline's documents are the offline ones (the closing event stays open in the pipeline).
    assert [doc["event"]["id"] for doc in documents][: len(expected)] == expected
    documents = documents[: len(expected)]
    config = make_config(tmp_path, output=engine_url(node), batch_max_documents=SMALL_BATCH)
    pipeline = Pipeline(config, options=options)
    assert isinstance(pipeline.sink, BulkSink)
    running = Running(pipeline)
    stream = _stream(namespace)
    try:
        await wait_until(lambda: pipeline.delivery.stats.documents >= len(expected), timeout=60)
        assert await running.stop() == 0
        assert pipeline.delivery.stats.rejected == 0
        assert not (tmp_path / "state" / DEAD_LETTER_FILE).exists()
        stored = stored_ids(node, stream)
        assert len(stored) == len(set(stored)) == len(set(expected))
        assert set(stored) == set(expected)

        by_action: dict[str, set[str]] = {}
        for doc in documents:
            by_action.setdefault(doc["event"]["action"], set()).add(doc["event"]["id"])
        assert len(by_action) >= 5
        for action, ids in sorted(by_action.items())[:12]:
            assert search_ids(node, stream, {"term": {"event.action": action}}) == ids, action

        stamps = sorted({doc["@timestamp"] for doc in documents})
        low, high = stamps[len(stamps) // 4], stamps[len(stamps) // 2]
        inside = {doc["event"]["id"] for doc in documents if low <= doc["@timestamp"] < high}
        assert 0 < len(inside) < len(set(expected))
        assert search_ids(node, stream, {"range": {"@timestamp": {"gte": low, "lt": high}}}) == inside

        # "What happened to guest X?": by uuid and by name, every event attributed to the guest.
        by_guest: dict[tuple[str, str], set[str]] = {}
        for doc in documents:
            domain = doc.get("libvirt", {}).get("domain", {})
            for field in ("uuid", "name"):
                values = domain.get(field, [])
                for value in values if isinstance(values, list) else [values]:
                    by_guest.setdefault((f"libvirt.domain.{field}", value), set()).add(doc["event"]["id"])
        assert sum(1 for field, _ in by_guest if field == "libvirt.domain.uuid") >= 2
        for (field, value), ids in sorted(by_guest.items()):
            assert search_ids(node, stream, {"term": {field: value}}) == ids, (field, value)
    finally:
        if not running.task.done():
            await running.stop()
        drop_stream(node, stream)


@dataclass
class Tampering:
    """A sink that spoils chosen documents before the engine sees them."""

    inner: BulkSink
    spoil: dict[str, bytes]

    def describe(self) -> str:
        return self.inner.describe()

    async def send(self, documents: Sequence[Document]) -> Sequence[Result]:
        return await self.inner.send([Document(doc.id, self.spoil.get(doc.id, doc.body)) for doc in documents])

    async def close(self) -> None:
        await self.inner.close()


async def test_rejected_documents_go_to_the_dead_letter_file(
    prepared: tuple[Node, dict[str, str]], tmp_path: Path
) -> None:
    node, _ = prepared
    namespace = _namespace("dead")
    lines = generated(1500, seed=8)
    lines.append(closing_line(lines))
    append(tmp_path / "audit.log", lines)
    expected = expected_ids(lines)
    options = NormalizeOptions(host_name=HOST, namespace=namespace)
    bodies = {orjson.loads(line)["event"]["id"]: line for line in normalized([tmp_path / "audit.log"], options)}
    undeclared, mistyped = expected[10], expected[len(expected) // 2]
    spoil = {
        # A field the mapping does not declare (dynamic: strict).
        undeclared: bodies[undeclared].replace(b'"event":{', b'"event":{"undeclared_field":"x",', 1),
        # A date that is not a date.
        mistyped: bodies[mistyped].replace(b'"@timestamp":"', b'"@timestamp":"not a date ', 1),
    }
    assert all(spoil[key] != bodies[key] for key in spoil)
    config = make_config(tmp_path, output=engine_url(node), batch_max_documents=SMALL_BATCH)
    sink = Tampering(sink_for(node), spoil)
    pipeline = Pipeline(config, sink=sink, options=options)
    running = Running(pipeline)
    stream = _stream(namespace)
    try:
        await wait_until(lambda: pipeline.delivery.stats.documents >= len(expected), timeout=60)
        assert await running.stop() == 0
        entries = [orjson.loads(line) for line in (tmp_path / "state" / DEAD_LETTER_FILE).read_bytes().splitlines()]
        # The pipeline keeps its own copy of the document (the one before the spoiling).
        reasons = {orjson.loads(entry["text"])["event"]["id"]: entry["reason"] for entry in entries}
        assert sorted(reasons) == sorted(spoil)
        assert reasons[undeclared].startswith("400 strict_dynamic_mapping_exception"), reasons
        assert "undeclared_field" in reasons[undeclared]
        assert reasons[mistyped].startswith("400 "), reasons
        assert "@timestamp" in reasons[mistyped] or "date" in reasons[mistyped], reasons
        assert all(entry["kind"] == "rejected" for entry in entries)
        stored = set(stored_ids(node, stream))
        assert stored == set(expected) - set(spoil)
    finally:
        if not running.task.done():
            await running.stop()
        drop_stream(node, stream)


# ---------------------------------------------------------------------------- a node of our own


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class FragileNode:
    """A node with a write queue of one, on a fixed port, with its data in a directory that
    survives a stop (so it can be started again with its data)."""

    engine: str
    name: str
    settings: list[str]
    node: Node | None = None

    def start(self) -> Node:
        command = [str(ENGINES_DIR / "start.sh"), self.engine, self.name, *(f"-E{s}" for s in self.settings)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS, check=False)
        if result.returncode != 0:
            raise EngineError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
        self.node = Node(self.engine, result.stdout.strip().splitlines()[-1], self.name)
        return self.node

    def stop(self) -> None:
        subprocess.run([str(ENGINES_DIR / "stop.sh"), self.engine, self.name], timeout=120, check=False)


@pytest.fixture(scope="module", params=FRAGILE_ENGINES)
def fragile(request: pytest.FixtureRequest) -> Iterator[FragileNode]:
    engine: str = request.param
    data = tempfile.mkdtemp(prefix=f"auditfwd-fragile-{engine}-")
    if os.geteuid() == 0:
        # The start script runs the node as this user (the engines refuse to run as root).
        account = pwd.getpwnam(os.environ.get("AUDITFWD_ENGINES_USER", "nobody"))
        os.chown(data, account.pw_uid, account.pw_gid)
    settings = [
        f"http.port={_free_port()}",
        f"path.data={data}",
        "thread_pool.write.size=1",
        "thread_pool.write.queue_size=1",
    ]
    # Named after this process: test sessions running at once must not stop each other's node.
    fragile = FragileNode(engine, f"pytest-fragile-{engine}-{os.getpid()}", settings)
    try:
        node = fragile.start()
        # A new node: everything is created (or skipped where the build lacks lifecycle
        # management); a second setup changes nothing.
        first = asyncio.run(setup(node))
        assert {step.action for step in first.steps} <= {"created", "skipped"}, first.render()
        assert sum(step.action == "created" for step in first.steps) >= 3, first.render()
        again = asyncio.run(setup(node))
        assert [step.action for step in again.steps] == [
            "unchanged" if step.action == "created" else step.action for step in first.steps
        ], again.render()
        yield fragile
    finally:
        fragile.stop()
        shutil.rmtree(data, ignore_errors=True)


async def test_write_rejection_storm_loses_nothing(fragile: FragileNode) -> None:
    assert fragile.node is not None
    node = fragile.node
    namespace = _namespace("storm")
    lines = generated(6000, seed=31)
    documents = as_documents(normalized_lines(lines, NormalizeOptions(host_name=HOST, namespace=namespace)))
    senders = 8
    sinks = [sink_for(node) for _ in range(senders)]
    shares = [documents[index::senders] for index in range(senders)]
    try:
        outcomes = await asyncio.gather(
            *(deliver(sink, share, batch=SMALL_BATCH) for sink, share in zip(sinks, shares, strict=True))
        )
    finally:
        for sink in sinks:
            await sink.close()
    assert all(result.outcome is Outcome.DELIVERED for results in outcomes for result in results)
    refused = sum(sink.stats.retry_items for sink in sinks)
    # The storm happened: the node refused items (429), and they were sent again.
    assert refused > 0
    stream = _stream(namespace)
    stored = stored_ids(node, stream)
    assert len(stored) == len(set(stored))
    assert set(stored) == {doc.id for doc in documents}
    drop_stream(node, stream)


def normalized_lines(lines: Sequence[bytes], options: NormalizeOptions) -> list[bytes]:
    with tempfile.NamedTemporaryFile(suffix=".log") as handle:
        handle.write(b"".join(lines))
        handle.flush()
        return normalized([Path(handle.name)], options)


async def test_engine_stopped_and_started_mid_stream(fragile: FragileNode, tmp_path: Path) -> None:
    assert fragile.node is not None
    node = fragile.node
    namespace = _namespace("outage")
    lines = generated(7000, seed=41)
    lines.append(closing_line(lines))
    append(tmp_path / "audit.log", lines)
    expected = expected_ids(lines)
    config = make_config(
        tmp_path,
        output=engine_url(node),
        batch_max_documents=100,
        retry_initial_backoff=0.05,
        retry_max_backoff=1.0,
        queue_max_documents=500,
    )
    pipeline = Pipeline(config, options=NormalizeOptions(host_name=HOST, namespace=namespace))
    running = Running(pipeline)
    stream = _stream(namespace)
    try:
        await wait_until(lambda: pipeline.delivery.stats.documents >= len(expected) // 5, timeout=60)
        await asyncio.to_thread(fragile.stop)
        stopped_at = pipeline.delivery.stats.documents
        await wait_until(lambda: pipeline.delivery.stats.failing_since is not None, timeout=30)
        assert stopped_at < len(expected), "the node was stopped after the end of the stream"
        node = await asyncio.to_thread(fragile.start)
        assert engine_url(node) == config.output
        await wait_until(lambda: pipeline.delivery.stats.documents >= len(expected), timeout=90)
        assert await running.stop() == 0
        assert pipeline.delivery.stats.rejected == 0
        assert pipeline.delivery.stats.retries > 0
        stored = stored_ids(node, stream)
        assert len(stored) == len(set(stored)), "a document was indexed twice"
        assert set(stored) == set(expected)
    finally:
        if not running.task.done():
            await running.stop()
        drop_stream(node, stream)


@pytest.mark.parametrize("engine", ENGINES)
async def test_refused_connection_is_a_sink_error(engine: str) -> None:
    """No node on the port: the whole batch fails with a SinkError (and is tried again later)."""
    sink = sink_for(Node(engine, f"http://127.0.0.1:{_free_port()}", None))
    try:
        with pytest.raises(SinkError, match="Connection"):
            await sink.send([Document("x", b'{"@timestamp":"2024-01-01T00:00:00Z"}')])
    finally:
        await sink.close()
