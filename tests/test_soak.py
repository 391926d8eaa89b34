"""Soak: 200,000+ events through `auditfwd run` while the log rotates every few thousand lines.

A writer thread appends generated hypervisor activity as fast as it can and rotates the log like
auditd (rename chain) every 4,000 lines; the forwarder runs in the test's event loop with the
fsynced file output.  At the end every event is delivered exactly once, and the whole run stays
under two minutes on two cores.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

from forwarder.audit.assemble import Assembler
from forwarder.audit.record import Malformed, parse_line
from forwarder.ecs.normalize import document_id
from forwarder.generate import GeneratorOptions, generate_lines
from forwarder.pipeline import Pipeline
from tests.run_helpers import HOST, Running, closing_line, ids_of, make_config, read_output, rotate, wait_until

EVENTS = 200_000

#: Lines between two rotations.
ROTATE_EVERY = 4_000

#: Mostly user-space activity (logins, services, cron, sudo: one record per event) with kernel
#: executions and guest lifecycles mixed in: about 0.55 events per line.
MIX = {"login": 3.0, "service": 2.0, "cron": 2.0, "sudo": 2.0, "admin": 1.0, "execve": 1.0, "guest": 1.0}

#: Seconds the whole soak may take.
BUDGET = 120.0


class Writer(threading.Thread):
    """Appends lines until ``EVENTS`` events are written; keeps the ids they must produce."""

    def __init__(self, log: Path) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.ids: list[str] = []
        self.rotations = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _write(self) -> None:
        assembler = Assembler()
        written: list[bytes] = []
        lines = generate_lines(GeneratorOptions(seed=23, records=EVENTS * 3, mix=MIX))
        in_file = 0
        handle = open(self.log, "ab")  # noqa: SIM115
        chunk: list[bytes] = []
        for line in lines:
            parsed = parse_line(line)
            if not isinstance(parsed, Malformed):
                self.ids.extend(document_id(HOST, event) for event in assembler.feed(parsed))
            chunk.append(line)
            in_file += 1
            if len(chunk) >= 500:
                handle.write(b"".join(chunk))
                handle.flush()
                written.extend(chunk[-1:])
                chunk = []
            if in_file >= ROTATE_EVERY:
                handle.write(b"".join(chunk))
                chunk = []
                handle.close()
                rotate(self.log, keep=200)
                self.rotations += 1
                handle = open(self.log, "ab")  # noqa: SIM115
                in_file = 0
            if len(self.ids) >= EVENTS:
                break
        closing = closing_line(written + chunk)
        handle.write(b"".join(chunk) + closing)
        handle.close()
        parsed = parse_line(closing)
        assert not isinstance(parsed, Malformed)
        self.ids.extend(document_id(HOST, event) for event in assembler.feed(parsed))
        self.ids.extend(document_id(HOST, event) for event in assembler.flush())


async def test_soak_200k_events_with_rotations(tmp_path: Path) -> None:
    started = time.monotonic()
    log = tmp_path / "audit.log"
    log.touch()
    config = make_config(tmp_path, poll_interval=0.02, checkpoint_interval=0.5, batch_max_age=0.2)
    running = Running(Pipeline(config))
    writer = Writer(log)
    writer.start()
    await wait_until(lambda: not writer.is_alive(), timeout=BUDGET)
    assert writer.error is None, writer.error
    output = tmp_path / "out.ndjson"
    expected = len(writer.ids)
    pipeline = running.pipeline
    await wait_until(lambda: pipeline.delivery.stats.documents >= expected, timeout=BUDGET, interval=0.2)
    assert await running.stop() == 0
    elapsed = time.monotonic() - started
    assert expected >= EVENTS
    delivered = collections.Counter(ids_of(read_output(output)))
    wanted = collections.Counter(writer.ids)
    # Compared as differences: a plain == on 200k-entry counters makes pytest's diff take minutes.
    missing, extra = wanted - delivered, delivered - wanted
    assert not missing, f"{len(missing)} events never delivered, e.g. {list(missing)[:5]}"
    assert not extra, f"{len(extra)} events delivered twice, e.g. {list(extra)[:5]}"
    assert pipeline.tailer is not None and pipeline.tailer.stats.rotations == writer.rotations >= 40
    assert pipeline.stats.malformed == 0 and pipeline.assembler.stats.forced == 0
    assert elapsed < BUDGET, f"soak took {elapsed:.0f} s"
