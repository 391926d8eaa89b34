"""`auditfwd run`: delivery, restarts, dead letters, back-pressure, retries, graceful stop."""

from __future__ import annotations

import asyncio
import collections
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from forwarder.config import Config
from forwarder.pipeline import DEAD_LETTER_FILE, Pipeline
from forwarder.sinks import DELIVERED, Document, Outcome, Result, SinkError
from tests.corpus import REPO
from tests.run_helpers import (
    Running,
    append,
    closing_line,
    expected_ids,
    generated,
    ids_of,
    make_config,
    read_output,
    rotate,
    wait_until,
)


async def test_every_event_is_delivered_once(tmp_path: Path) -> None:
    lines = generated(3000)
    lines.append(closing_line(lines))
    append(tmp_path / "audit.log", lines)
    expected = expected_ids(lines)
    running = Running(Pipeline(make_config(tmp_path)))
    output = tmp_path / "out.ndjson"
    await wait_until(lambda: len(read_output(output)) >= len(expected))
    assert await running.stop() == 0
    delivered = ids_of(read_output(output))
    assert sorted(delivered) == sorted(expected)
    checkpoint = orjson.loads((tmp_path / "state" / "checkpoint.json").read_bytes())
    assert checkpoint["position"]["offset"] == (tmp_path / "audit.log").stat().st_size


async def run_to_the_end(config: Config) -> Pipeline:
    """Run until everything written is read, then stop gracefully."""
    pipeline = Pipeline(config)
    running = Running(pipeline)
    await wait_until(lambda: pipeline.tailer is not None and pipeline.tailer.idle_position() is not None)
    await wait_until(lambda: pipeline.tailer is not None and pipeline.tailer.bytes_behind() == 0)
    assert await running.stop() == 0
    return pipeline


async def test_graceful_restarts_send_nothing_twice(tmp_path: Path) -> None:
    lines = generated(4000, seed=11)
    lines.append(closing_line(lines))
    log, output = tmp_path / "audit.log", tmp_path / "out.ndjson"
    config = make_config(tmp_path)
    # Stop three times at arbitrary points, with rotations while stopped.
    cuts = [0, 900, 1700, 2900, len(lines)]
    for number, (begin, end) in enumerate(itertools.pairwise(cuts)):
        append(log, lines[begin:end])
        await run_to_the_end(config)
        if number == 1:
            rotate(log)
    # Everything delivered by the last run (the closing line completed every event), each event
    # once: as often as its id occurs in the log (a LOGIN record shares its serial with a SYSCALL).
    assert collections.Counter(ids_of(read_output(output))) == collections.Counter(expected_ids(lines))


async def test_resume_after_the_file_moved_while_stopped(tmp_path: Path) -> None:
    lines = generated(3000, seed=5)
    lines.append(closing_line(lines))
    log, output = tmp_path / "audit.log", tmp_path / "out.ndjson"
    config = make_config(tmp_path)
    append(log, lines[:1000])
    running = Running(Pipeline(config))
    await wait_until(lambda: running.pipeline.stats.lines >= 1000)
    assert await running.stop() == 0
    append(log, lines[1000:1500])
    rotate(log)
    append(log, lines[1500:2200])
    rotate(log)
    append(log, lines[2200:])
    running = Running(Pipeline(config))
    expected = expected_ids(lines)
    await wait_until(lambda: len(read_output(output)) >= len(expected))
    assert await running.stop() == 0
    assert sorted(ids_of(read_output(output))) == sorted(expected)


async def test_malformed_lines_go_to_the_dead_letter_file(tmp_path: Path) -> None:
    lines = generated(300, seed=3)
    garbage = [b"this is not an audit record\n", b"type=SYSCALL msg=audit(nonsense): x=1\n", b"\n"]
    mixed = lines[:100] + garbage + lines[100:]
    mixed.append(closing_line(lines))
    append(tmp_path / "audit.log", mixed)
    running = Running(Pipeline(make_config(tmp_path)))
    expected = expected_ids(mixed)
    await wait_until(lambda: len(read_output(tmp_path / "out.ndjson")) >= len(expected))
    assert await running.stop() == 0
    stats = running.pipeline.stats
    assert (stats.malformed, stats.blank, stats.dead_lettered) == (2, 1, 2)
    entries = [orjson.loads(line) for line in (tmp_path / "state" / DEAD_LETTER_FILE).read_bytes().splitlines()]
    assert [entry["text"] for entry in entries] == [garbage[0].decode().strip(), garbage[1].decode().strip()]
    assert all(entry["kind"] == "malformed" and entry["reason"] for entry in entries)
    assert entries[0]["offset"] == sum(map(len, lines[:100]))


async def test_quiet_log_flushes_open_events(tmp_path: Path) -> None:
    # A SYSCALL record alone: no PROCTITLE and no later line ever closes it.
    line = b'type=SYSCALL msg=audit(1700000000.100:42): arch=c000003e syscall=59 success=yes exit=0 pid=1 comm="x"\n'
    append(tmp_path / "audit.log", [line])
    running = Running(Pipeline(make_config(tmp_path, idle_flush=0.2)))
    await wait_until(lambda: len(read_output(tmp_path / "out.ndjson")) == 1)
    assert await running.stop() == 0
    assert running.pipeline.stats.idle_flushes == 1


class SlowSink:
    """Takes batches only when allowed."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.documents: list[Document] = []

    def describe(self) -> str:
        return "slow"

    async def send(self, documents: Sequence[Document]) -> Sequence[Result]:
        await self.open.wait()
        self.documents.extend(documents)
        return [DELIVERED] * len(documents)

    async def close(self) -> None:
        return None


async def test_a_slow_sink_stops_the_reading(tmp_path: Path) -> None:
    lines = generated(6000, seed=9)
    lines.append(closing_line(lines))
    append(tmp_path / "audit.log", lines)
    sink = SlowSink()
    config = make_config(tmp_path, queue_max_documents=20, batch_max_documents=10)
    running = Running(Pipeline(config, sink=sink))
    pipeline = running.pipeline
    await wait_until(lambda: pipeline.batcher.queued >= 20)
    await asyncio.sleep(0.2)
    # Blocked: the queue holds its bound, the rest stays on disk.
    assert pipeline.batcher.queued == 20
    assert pipeline.tailer is not None and pipeline.tailer.bytes_behind() > 0
    assert pipeline.stats.lines < len(lines)
    sink.open.set()
    expected = expected_ids(lines)
    await wait_until(lambda: len(sink.documents) >= len(expected))
    assert await running.stop() == 0
    assert sorted(document.id for document in sink.documents) == sorted(expected)


class FlakySink:
    """Fails whole batches, asks for single documents again, rejects one document."""

    def __init__(self, reject: str) -> None:
        self.failures = 2
        self.retried: set[str] = set()
        self.reject = reject
        self.delivered: list[str] = []

    def describe(self) -> str:
        return "flaky"

    async def send(self, documents: Sequence[Document]) -> Sequence[Result]:
        if self.failures:
            self.failures -= 1
            raise SinkError("connection refused")
        results: list[Result] = []
        for document in documents:
            if document.id == self.reject:
                results.append(Result(Outcome.REJECTED, "mapper_parsing_exception"))
            elif document.id not in self.retried:
                self.retried.add(document.id)
                results.append(Result(Outcome.RETRY, "429 too many requests"))
            else:
                self.delivered.append(document.id)
                results.append(DELIVERED)
        return results

    async def close(self) -> None:
        return None


async def test_failures_are_retried_and_rejections_dead_lettered(tmp_path: Path) -> None:
    lines = generated(200, seed=4)
    lines.append(closing_line(lines))
    append(tmp_path / "audit.log", lines)
    expected = expected_ids(lines)
    sink = FlakySink(reject=expected[3])
    config = make_config(tmp_path, retry_initial_backoff=0.001, retry_max_backoff=0.01)
    running = Running(Pipeline(config, sink=sink))
    await wait_until(lambda: len(sink.delivered) >= len(expected) - 1)
    assert await running.stop() == 0
    assert sorted(sink.delivered) == sorted(expected[:3] + expected[4:])
    delivery = running.pipeline.delivery.stats
    assert delivery.retries >= 3 and delivery.rejected == 1
    entries = (tmp_path / "state" / DEAD_LETTER_FILE).read_bytes().splitlines()
    rejected = orjson.loads(entries[0])
    assert rejected["kind"] == "rejected" and rejected["reason"] == "mapper_parsing_exception"
    assert orjson.loads(rejected["text"])["event"]["id"] == expected[3]
    checkpoint = orjson.loads((tmp_path / "state" / "checkpoint.json").read_bytes())
    assert checkpoint["position"]["offset"] == (tmp_path / "audit.log").stat().st_size


def _start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _terminate(process: subprocess.Popen[str]) -> str:
    try:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return stderr


def test_sigterm_stops_gracefully(tmp_path: Path) -> None:
    lines = generated(2000, seed=2)
    log, output, state = tmp_path / "audit.log", tmp_path / "out.ndjson", tmp_path / "state"
    append(log, lines)
    command = [
        sys.executable, "-m", "forwarder", "run", "--input", str(log), "--output", f"file:{output}",
        "--state-dir", str(state), "--set", "poll_interval=0.01", "--set", "metrics_listen=",
        "--set", "host_name=test-host", "--set", "checkpoint_interval=0.05",
    ]  # fmt: skip
    first = _start(command)
    _wait_for(lambda: len(read_output(output)) > 100)
    stderr = _terminate(first)
    assert first.returncode == 0, stderr
    assert "stopping" in stderr and "stopped:" in stderr
    assert (state / "checkpoint.json").exists()
    # The checkpoint covers what was delivered: the next run sends the rest, nothing twice.
    lines.append(closing_line(lines))
    append(log, lines[-1:])
    expected = expected_ids(lines)
    second = _start(command)
    _wait_for(lambda: len(read_output(output)) >= len(expected))
    stderr = _terminate(second)
    assert second.returncode == 0, stderr
    delivered = ids_of(read_output(output))
    assert sorted(delivered) == sorted(expected)


async def test_guest_attribution_survives_restarts(tmp_path: Path) -> None:
    """The guest registry travels in the checkpoint: after a restart, events of a guest started
    before it (its qemu pid, its svirt label) are still attributed to it, exactly as one
    uninterrupted pass over the whole log attributes them."""
    import io

    from forwarder.ecs.normalize import NormalizeOptions
    from forwarder.offline import DeadLetters, ParseSettings, parse_files
    from tests.run_helpers import HOST

    mix = {"guest": 10.0, "avc": 4.0, "execve": 3.0, "file": 1.0}
    lines = generated(3000, seed=3, mix=mix)
    lines.append(closing_line(lines))
    log, output = tmp_path / "audit.log", tmp_path / "out.ndjson"
    config = make_config(tmp_path)
    for begin, end in itertools.pairwise([0, 1000, 2000, len(lines)]):
        append(log, lines[begin:end])
        await run_to_the_end(config)

    whole = io.BytesIO()
    parse_files([str(log)], whole, ParseSettings(NormalizeOptions(host_name=HOST)), DeadLetters(None), print)
    expected = {doc["event"]["id"]: doc.get("libvirt") for doc in map(orjson.loads, whole.getvalue().splitlines())}
    delivered = {doc["event"]["id"]: doc.get("libvirt") for doc in map(orjson.loads, read_output(output))}
    attributed = [doc_id for doc_id, libvirt in expected.items() if libvirt]
    assert len(attributed) > 100
    assert delivered == expected
