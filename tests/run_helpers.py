"""Helpers of the `auditfwd run` tests: logs to write, the ids they must produce, the output read back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from forwarder.audit.assemble import Assembler
from forwarder.audit.record import Malformed, parse_line
from forwarder.config import Config, load_config
from forwarder.ecs.normalize import document_id
from forwarder.generate import GeneratorOptions, generate_lines
from forwarder.pipeline import Pipeline

HOST = "test-host"


def generated(records: int, seed: int = 7, **options: Any) -> list[bytes]:
    """Generated log lines (each ending in a newline)."""
    return list(generate_lines(GeneratorOptions(seed=seed, records=records, **options)))


def closing_line(lines: Iterable[bytes], serial: int = 999_999_999) -> bytes:
    """A single-record event far later in log time than ``lines``: every event open before it is
    complete once it is read, so a test sees everything delivered without waiting for a flush."""
    last = 0
    for line in lines:
        parsed = parse_line(line)
        if not isinstance(parsed, Malformed):
            last = max(last, parsed.sec)
    return (
        f"type=DAEMON_ROTATE msg=audit({last + 100}.000:{serial}): op=rotate-logs auid=0 pid=1 "
        "subj=system_u:system_r:auditd_t:s0 res=success\n"
    ).encode()


def expected_ids(lines: Iterable[bytes], host: str = HOST) -> list[str]:
    """The document ids of every event in ``lines`` (as one assembler run sees them)."""
    assembler = Assembler()
    ids: list[str] = []
    for line in lines:
        parsed = parse_line(line)
        if isinstance(parsed, Malformed):
            continue
        ids.extend(document_id(host, event) for event in assembler.feed(parsed))
    ids.extend(document_id(host, event) for event in assembler.flush())
    return ids


def read_output(path: Path) -> list[bytes]:
    """Complete NDJSON lines of the output (a partial last line of a killed writer is left out)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return data.split(b"\n")[:-1]


def ids_of(documents: Iterable[bytes]) -> list[str]:
    return [orjson.loads(document)["event"]["id"] for document in documents]


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    """A configuration for tests: fast polling, short batches, no metrics port, file output."""
    base = load_config(
        environ={},
        overrides={
            "input": str(tmp_path / "audit.log"),
            "output": f"file:{tmp_path / 'out.ndjson'}",
            "state_dir": str(tmp_path / "state"),
            "host_name": HOST,
            "poll_interval": "0.01",
            "checkpoint_interval": "0.05",
            "batch_max_age": "0.02",
            "idle_flush": "3600",
            "metrics_listen": "",
            "start_from": "checkpoint",
        },
    )
    return replace(base, **overrides)


def append(path: Path, lines: Iterable[bytes]) -> None:
    with open(path, "ab") as handle:
        for line in lines:
            handle.write(line)


def rotate(path: Path, keep: int = 50) -> None:
    """auditd's rotation: .N-1 -> .N ... live -> .1, then an empty live file."""
    for number in range(keep - 1, 0, -1):
        older = Path(f"{path}.{number}")
        if older.exists():
            os.rename(older, f"{path}.{number + 1}")
    os.rename(path, f"{path}.1")
    path.touch()


async def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.02) -> None:
    """Poll ``predicate()`` until true; fails the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


class Running:
    """A pipeline running in the test's event loop."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.task = asyncio.create_task(pipeline.run(install_signals=False))

    async def stop(self) -> int:
        self.pipeline.request_stop()
        return await asyncio.wait_for(self.task, 30)
