"""NDJSON sinks: one document per line, to standard output or to a file.

File sink fsync policy (``file_fsync``):

* ``true`` (default): every batch is written and fsynced before it is acknowledged, so an
  acknowledged document survives a crash of the machine, and the checkpoint never runs ahead of
  the file;
* ``false``: a batch is acknowledged once written to the operating system: it survives a crash of
  the forwarder (kill -9) but not a power loss; faster on slow disks.

Standard output cannot be synced: a batch is acknowledged once the pipe or terminal took it.
Writes run in a worker thread, so a slow reader of the pipe slows the forwarder down (the queues
fill and the tailer stops reading) without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import BinaryIO

from forwarder.sinks.base import DELIVERED, Document, Result, SinkError


def _lines(documents: Sequence[Document]) -> bytes:
    parts: list[bytes] = []
    for document in documents:
        parts.append(document.body)
        parts.append(b"\n")
    return b"".join(parts)


class StdoutSink:
    """NDJSON on standard output."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer

    def describe(self) -> str:
        return "stdout"

    async def send(self, documents: Sequence[Document]) -> Sequence[Result]:
        data = _lines(documents)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise SinkError(f"cannot write to standard output: {exc}") from exc
        return [DELIVERED] * len(documents)

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._stream.flush)


class FileSink:
    """NDJSON appended to a file (created with mode 0640 when missing).

    Args:
        path: the file.
        fsync: sync each batch before acknowledging it (see the module's documentation).
    """

    def __init__(self, path: str, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._fd: int | None = None

    def describe(self) -> str:
        return f"file:{self.path}"

    async def send(self, documents: Sequence[Document]) -> Sequence[Result]:
        data = _lines(documents)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        return [DELIVERED] * len(documents)

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._fd)

    async def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
