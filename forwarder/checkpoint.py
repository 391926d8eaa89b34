"""Checkpoints: how far every event has been acknowledged, kept durably across restarts.

Three parts:

* :class:`Checkpoint`, a plain value (JSON with a version) of what a restart needs: the position
  to read again from (the start of the oldest event not yet acknowledged), the ids of events
  already acknowledged that reading from there meets again (so they are not sent twice), how far
  the log had been read (past that point those ids cannot come back), and a ``stages`` object
  where the pure stages keep their state (the guest registry of the enrichment stage lives there).
* :class:`AckTracker`, pure bookkeeping of the events in flight: events interleave in the log, so
  the safe position is the start of the oldest event not acknowledged, not the end of the newest.
* :class:`CheckpointStore`, the shell: load at start, write atomically (temporary file, fsync,
  rename, fsync of the directory) in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from forwarder.tail import FileIdentity, Position, ResumeAt

#: Version of the checkpoint's JSON.  A reader refuses other versions rather than guess.
CHECKPOINT_VERSION: Final = 1

#: File name of the checkpoint in the state directory.
CHECKPOINT_FILE: Final = "checkpoint.json"

#: Acknowledged ids kept for the next start.  They are the events acknowledged while an older event
#: was still open: a busy host writes a few thousand events per second and an event stays open
#: for ``end_of_event_timeout`` (2 s) of log time, so tens of thousands cover the worst case; past
#: the cap the oldest are dropped and those events may be sent again (same ids: no duplicate in the
#: index, only a re-send).
MAX_ACKNOWLEDGED_IDS: Final = 50_000


class CheckpointError(Exception):
    """A checkpoint file exists but cannot be used (damaged, or written by another version)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a restart resumes from.

    Attributes:
        position: read again from here: the start of the oldest event not acknowledged (or the
            end of the last line read when every event was acknowledged).
        read_to: how far the log had been read when the checkpoint was taken.
        acknowledged: ids of events acknowledged that reading from ``position`` up to
            ``read_to`` meets again; a restart skips them.
        stages: state of the pure stages, by stage name (plain JSON values).
        written_at: epoch seconds of the write.
        finished_files: files read before the one of ``position``; if that file is gone at the
            next start, the files of the chain not listed here are read from their start.
    """

    position: ResumeAt
    read_to: ResumeAt
    acknowledged: tuple[str, ...] = ()
    stages: Mapping[str, Any] = field(default_factory=dict)
    written_at: float = 0.0
    finished_files: tuple[FileIdentity, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "position": _resume_json(self.position),
            "read_to": _resume_json(self.read_to),
            "acknowledged": list(self.acknowledged),
            "stages": dict(self.stages),
            "written_at": self.written_at,
            "finished_files": [identity.to_json() for identity in self.finished_files],
        }

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        """Raises :class:`CheckpointError` naming what is wrong."""
        if not isinstance(value, dict):
            raise CheckpointError("a checkpoint is a JSON object")
        version = value.get("version")
        if version != CHECKPOINT_VERSION:
            raise CheckpointError(f"checkpoint version {version!r} is not {CHECKPOINT_VERSION}")
        try:
            position = _resume_from_json(value["position"])
            read_to = _resume_from_json(value.get("read_to", value["position"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint position: {exc}") from None
        acknowledged = value.get("acknowledged", [])
        if not isinstance(acknowledged, list) or not all(isinstance(item, str) for item in acknowledged):
            raise CheckpointError("checkpoint 'acknowledged' must be a list of strings")
        stages = value.get("stages", {})
        if not isinstance(stages, dict):
            raise CheckpointError("checkpoint 'stages' must be an object")
        written_at = value.get("written_at", 0.0)
        if not isinstance(written_at, int | float):
            raise CheckpointError("checkpoint 'written_at' must be a number")
        files = value.get("finished_files", [])
        try:
            if not isinstance(files, list):
                raise ValueError("must be a list")
            finished = tuple(FileIdentity.from_json(item) for item in files)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint 'finished_files': {exc}") from None
        return cls(position, read_to, tuple(acknowledged), stages, float(written_at), finished)


def encode(checkpoint: Checkpoint) -> bytes:
    return orjson.dumps(checkpoint.to_json()) + b"\n"


def decode(data: bytes) -> Checkpoint:
    """Raises :class:`CheckpointError` for anything that is not a checkpoint of this version."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"not JSON: {exc}") from None
    return Checkpoint.from_json(value)


def _resume_json(resume: ResumeAt) -> dict[str, Any]:
    return {"file": resume.file.to_json(), "offset": resume.offset}


def _resume_from_json(value: Any) -> ResumeAt:
    if not isinstance(value, dict):
        raise ValueError("a position is an object")
    offset = value.get("offset")
    if type(offset) is not int or offset < 0:
        raise ValueError("offset must be an integer >= 0")
    return ResumeAt(FileIdentity.from_json(value.get("file")), offset)


# ------------------------------------------------------------------------- tracking (pure)


class Ticket:
    """One event in flight, from its first record read to its acknowledgement."""

    __slots__ = ("acknowledged", "emitted_seq", "seq", "start")

    def __init__(self, start: ResumeAt, seq: int) -> None:
        #: Where the event's first line starts.
        self.start = start
        #: Number of that line in this run's read order.
        self.seq = seq
        #: Line number read when the event was handed to the sink (all its lines are before).
        self.emitted_seq = seq
        self.acknowledged = False


class AckTracker:
    """The position up to which every event is acknowledged, and the ids a restart may skip.

    Lines are numbered in read order (``seq``).  An event's ticket opens at its first line and is
    acknowledged by the sink in any order; the checkpoint position is the start of the oldest
    ticket not acknowledged, or the end of the last line read when none is open.

    Args:
        resume: the checkpoint this run started from, if any: its acknowledged ids are skipped
            when met again, and carried into new checkpoints until the log is read past its
            ``read_to``.
    """

    def __init__(self, resume: Checkpoint | None = None) -> None:
        self._open: deque[Ticket] = deque()
        #: Acknowledged ids with the line number at which their event was emitted.
        self._acknowledged: dict[str, int] = {}
        self._read_to: ResumeAt | None = resume.read_to if resume is not None else None
        self._read_seq = 0
        self._resumed_from = resume.position if resume is not None else None
        self._skip: set[str] = set(resume.acknowledged) if resume is not None else set()
        self._horizon = resume.read_to if resume is not None and self._skip else None
        #: Line number at which the horizon was passed (None while not yet).
        self._horizon_seq: int | None = None

    @property
    def in_flight(self) -> int:
        """Tickets not yet acknowledged (and acknowledged ones not yet passed)."""
        return len(self._open)

    @property
    def watching_horizon(self) -> bool:
        """True while lines must be shown to :meth:`passed` (a resume's ids may still come)."""
        return self._horizon is not None and self._horizon_seq is None

    def line_read(self, seq: int, position: Position) -> None:
        """The line numbered ``seq`` was read and every record in it fed on."""
        self._read_seq = seq
        self._read_to = ResumeAt(position.file, position.offset)

    def passed(self, seq: int, position: Position, alias: FileIdentity | None = None) -> None:
        """Check whether ``position`` is at or past the resumed checkpoint's ``read_to``.

        Args:
            alias: the identity under which the tailer found the horizon's file, when it found
                it as a copy under another identity.
        """
        horizon = self._horizon
        if horizon is None or self._horizon_seq is not None:
            return
        if (position.file == horizon.file or position.file == alias) and position.offset >= horizon.offset:
            self._horizon_seq = seq

    def open(self, position: Position, seq: int) -> Ticket:
        """An event starts on the line ``seq`` at ``position``."""
        ticket = Ticket(ResumeAt(position.file, position.start), seq)
        self._open.append(ticket)
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The record that opened ``ticket`` belongs to no event (the assembler dropped it)."""
        ticket.acknowledged = True
        ticket.emitted_seq = -1

    def emitted(self, ticket: Ticket, seq: int, doc_id: str) -> bool:
        """The event of ``ticket`` is complete, read up to line ``seq``.

        Returns:
            False when a previous run already had it acknowledged: it is then acknowledged here
            and must not be sent.
        """
        ticket.emitted_seq = seq
        if self._skip and doc_id in self._skip:
            self._skip.discard(doc_id)
            ticket.acknowledged = True
            # Still acknowledged for the next run, which may read this event again too.
            self._acknowledged[doc_id] = seq
            return False
        return True

    def acknowledge(self, ticket: Ticket, doc_id: str) -> None:
        """The sink acknowledged (or dead-lettered) the event of ``ticket``."""
        ticket.acknowledged = True
        self._acknowledged[doc_id] = ticket.emitted_seq

    def checkpoint(
        self, stages: Mapping[str, Any] | None = None, now: Callable[[], float] = time.time
    ) -> Checkpoint | None:
        """The checkpoint to write now, or None before anything was read."""
        opened = self._open
        while opened and opened[0].acknowledged:
            opened.popleft()
        read_to = self._read_to
        if read_to is None:
            return None
        if opened:
            oldest = opened[0]
            position, position_seq = oldest.start, oldest.seq
        else:
            position, position_seq = read_to, self._read_seq + 1
        acknowledged = self._acknowledged
        stale = [doc_id for doc_id, seq in acknowledged.items() if seq < position_seq]
        for doc_id in stale:
            del acknowledged[doc_id]
        ids = list(acknowledged)
        if self._skip:
            if self._horizon_seq is None or position_seq <= self._horizon_seq:
                ids.extend(self._skip)
                read_to = self._horizon_later(read_to)
            else:
                self._skip.clear()
        if len(ids) > MAX_ACKNOWLEDGED_IDS:
            ids = ids[-MAX_ACKNOWLEDGED_IDS:]
        return Checkpoint(position, read_to, tuple(ids), dict(stages or {}), now())

    def _horizon_later(self, read_to: ResumeAt) -> ResumeAt:
        """The resumed horizon while it is not passed (it is then later than ``read_to``)."""
        if self._horizon is not None and self._horizon_seq is None:
            return self._horizon
        return read_to


# ------------------------------------------------------------------------- storage (shell)


class CheckpointStore:
    """The checkpoint file of a state directory.

    Args:
        state_dir: the directory (created with mode 0700 when missing).
        before_rename: called between writing the temporary file and renaming it (tests use it
            to simulate a crash there).
    """

    def __init__(self, state_dir: str, before_rename: Callable[[str], None] | None = None) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, CHECKPOINT_FILE)
        self._before_rename = before_rename
        self.last_written: float | None = None
        self.writes = 0

    def load(self) -> Checkpoint | None:
        """The checkpoint, or None when there is none.

        Raises:
            CheckpointError: the file exists but is damaged or of another version.
            OSError: the file cannot be read.
        """
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        return decode(data)

    def save_now(self, checkpoint: Checkpoint) -> None:
        """Write synchronously (temporary file, fsync, rename, fsync of the directory)."""
        write_atomic(self.path, encode(checkpoint), self._before_rename)
        self.last_written = time.monotonic()
        self.writes += 1

    async def save(self, checkpoint: Checkpoint) -> None:
        """Write in a worker thread (fsync blocks)."""
        await asyncio.to_thread(self.save_now, checkpoint)


def write_atomic(path: str, data: bytes, before_rename: Callable[[str], None] | None = None) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content, whole.

    The data goes to ``path.tmp`` in the same directory, is fsynced, renamed over ``path``, and
    the directory is fsynced so that the rename itself is durable.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = f"{path}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if before_rename is not None:
        before_rename(temporary)
    os.replace(temporary, path)
    directory_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a directory
            os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
