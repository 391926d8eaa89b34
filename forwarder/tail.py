"""Follow an audit log across rotations and yield its lines with their positions.

The tailer is the shell's reader: it polls (portable, and a quiet log costs one ``stat`` per poll)
and hands out batches of :class:`TailLine` values, each naming the file it came from by identity
(:class:`FileIdentity`: device, inode and a fingerprint of the first bytes, so that a reused inode
is not taken for the old file) and the byte offsets where the line starts and ends.

What it follows (``docs/anchors.md`` §0, §7):

* **auditd's rename chain** ``audit.log -> audit.log.1 -> audit.log.2 ...``: the open descriptor
  keeps reading the renamed file to its end (also when it was renamed twice before we finished),
  then the next file is the oldest file of the chain that has not been read yet.  Files only ever
  come to life as the live file, so "not read yet" in the chain means "newer than everything read".
* **copytruncate**: the live file shrinks or its first bytes change; the rest of what we had not
  read is in the copy (found among the rotated files by fingerprint), which is finished first.
* **delete and recreate**: the descriptor finishes the deleted file; the new file, even on the same
  inode, has another fingerprint and is read from its start.
* **a writer that goes on writing to the renamed file** (logrotate's ``create`` mode renames the
  log while auditd still holds it, and auditd reopens only when ``postrotate`` signals it): the
  renamed file is left once the live file has data (the writer moved on) or after it stayed quiet
  for ``renamed_quiet_seconds``, never while the writer may still add to it.
* **a file that does not exist yet**, and **permission errors**: reported once, retried.
* **partial last lines** wait for their end; **very long lines** are cut to ``max_line_bytes``
  (the rest is skipped up to the line end) and marked, so the pipeline can dead-letter them.

Rotated names are the live name plus ``.N`` (auditd's ``num_logs`` scheme) or a date (logrotate's
``dateext``: ``-YYYYMMDD[HH[MM[SS]]]`` or ``-YYYY-MM-DD``), dated ones being the oldest; compressed
archives (``.gz``) are not part of the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

log = logging.getLogger(__name__)

#: Bytes of a file's start that make its fingerprint.  Filebeat fingerprints the first 1024 bytes;
#: an audit line is 100-500 bytes and starts with a millisecond timestamp and a serial, so even a
#: file caught with a single partial line has a fingerprint no other file shares.
FINGERPRINT_BYTES: Final = 1024

#: Identities of files already read that are remembered after they left the rotation chain.
#: auditd keeps ``num_logs`` (default 5, at most 999) files; remembering a thousand more costs
#: little and survives listings that race with a rotation.
MAX_KNOWN_FILES: Final = 2048

#: Listings of the rotation chain taken, at most, until two in a row agree (a rotation in
#: progress renames every file of the chain; auditd finishes it in microseconds).
MAX_LISTING_ATTEMPTS: Final = 20

#: One read.  Large enough that a backlog is read at disk speed, small enough that one batch of
#: lines (a few thousand) keeps the event loop responsive and the queues' bounds meaningful.
READ_CHUNK_BYTES: Final = 1 << 20

#: Longest line kept whole.  The kernel caps a record near 8 KiB; EXECVE records of huge argument
#: lists are split by the kernel too.  4 MiB is far beyond any real record and bounds memory.
MAX_LINE_BYTES: Final = 4 << 20

#: Seconds between two looks at a quiet log.  auditd writes in bursts; a quarter second keeps the
#: delay low and costs one stat() per poll.
DEFAULT_POLL_INTERVAL: Final = 0.25

#: Seconds a renamed or deleted file must stay quiet, while the live file is missing or empty,
#: before it is left.  logrotate signals auditd right after renaming (milliseconds); waiting
#: costs nothing, since the live file has nothing to read meanwhile.
DEFAULT_RENAMED_QUIET_SECONDS: Final = 5.0

#: Seconds between two attempts to open a file we may not read (or that is missing).
DEFAULT_RETRY_INTERVAL: Final = 5.0

_ROTATED_SUFFIX: Final = re.compile(r"\.([0-9]+)\Z")

#: logrotate's ``dateext`` names: ``-YYYYMMDD`` (the default ``dateformat``), optionally with
#: hours, minutes and seconds, or with dashes (``-YYYY-MM-DD``).  Compressed files (``.gz``) do
#: not match: they are archives, not readable copies.
_DATED_SUFFIX: Final = re.compile(r"-([0-9]{8}(?:[0-9]{2}){0,3}|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[-_][0-9]{2}){0,3})\Z")


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file a position is in, independent of its current name.

    Attributes:
        device, inode: ``st_dev`` and ``st_ino`` of the file.
        fingerprint: hex BLAKE2b of the first ``fingerprint_size`` bytes.
        fingerprint_size: bytes hashed (``min(FINGERPRINT_BYTES, size)`` when first read; 0 for a
            file seen empty, which then matches on device and inode alone).
    """

    device: int
    inode: int
    fingerprint: str
    fingerprint_size: int

    def matches(self, device: int, inode: int, head: bytes) -> bool:
        """True when a file with this device, inode and first bytes is this file."""
        return device == self.device and inode == self.inode and self.same_content(head)

    def same_content(self, head: bytes) -> bool:
        """True when ``head`` (a file's first bytes) starts as this file did (copies match too)."""
        size = self.fingerprint_size
        return len(head) >= size and fingerprint(head[:size]) == self.fingerprint

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "inode": self.inode,
            "fingerprint": self.fingerprint,
            "fingerprint_size": self.fingerprint_size,
        }

    @classmethod
    def from_json(cls, value: Any) -> FileIdentity:
        """Raises ``ValueError`` when ``value`` is not what :meth:`to_json` writes."""
        if not isinstance(value, dict):
            raise ValueError("file identity must be an object")
        try:
            device, inode, size = value["device"], value["inode"], value["fingerprint_size"]
            digest = value["fingerprint"]
        except KeyError as exc:
            raise ValueError(f"file identity lacks {exc.args[0]!r}") from None
        if not all(type(number) is int and number >= 0 for number in (device, inode, size)):
            raise ValueError("file identity numbers must be integers >= 0")
        if not isinstance(digest, str):
            raise ValueError("file identity fingerprint must be a string")
        return cls(device, inode, digest, size)


def fingerprint(head: bytes) -> str:
    """Hex digest of a file's first bytes."""
    return hashlib.blake2b(head, digest_size=8).hexdigest()


class Position(NamedTuple):
    """Where a line is: the file and the byte offsets of its start and of its end (after the
    line end, i.e. where the next line starts)."""

    file: FileIdentity
    start: int
    offset: int


class TailLine(NamedTuple):
    """One line as read.

    Attributes:
        data: the line without its line end.
        position: where it is.
        truncated: the line was longer than ``max_line_bytes``: ``data`` holds its first
            ``max_line_bytes`` and the rest was skipped.
    """

    data: bytes
    position: Position
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class ResumeAt:
    """Start inside a known file (a checkpoint): ``offset`` bytes into the file ``file``."""

    file: FileIdentity
    offset: int


#: Where a tailer starts: a checkpointed position, ``beginning`` (the oldest file of the chain:
#: everything on disk) or ``end`` (the end of the live file: only new lines).
StartPoint = ResumeAt | Literal["beginning", "end"]


@dataclass(frozen=True, slots=True)
class TailOptions:
    """How the tailer polls and reads.

    Attributes:
        poll_interval: seconds between two looks at a quiet log.
        retry_interval: seconds between attempts to open a missing or unreadable file.
        read_chunk_bytes: bytes per read (one batch of lines at most).
        max_line_bytes: longest line kept whole (see :class:`TailLine`).
        renamed_quiet_seconds: how long a renamed or deleted file must stay quiet before it is
            left while the live file is still missing or empty.
    """

    poll_interval: float = DEFAULT_POLL_INTERVAL
    retry_interval: float = DEFAULT_RETRY_INTERVAL
    read_chunk_bytes: int = READ_CHUNK_BYTES
    max_line_bytes: int = MAX_LINE_BYTES
    renamed_quiet_seconds: float = DEFAULT_RENAMED_QUIET_SECONDS


@dataclass(slots=True)
class TailStats:
    """Counters exported as metrics."""

    lines: int = 0
    bytes: int = 0
    files_opened: int = 0
    rotations: int = 0
    truncations: int = 0
    oversize_lines: int = 0
    errors: int = 0


@dataclass(slots=True)
class _Chained:
    """A file of the chain as listed: its name, stat and first bytes."""

    path: str
    device: int
    inode: int
    size: int
    head: bytes


@dataclass(slots=True)
class _OpenFile:
    path: str
    fd: int
    identity: FileIdentity
    #: Bytes of the file consumed into lines or ``partial``.
    read_offset: int
    #: Where ``partial`` starts (the start of the next line).
    line_start: int
    partial: bytes = b""
    #: Inside an over-long line: its first bytes, kept until its end is found.
    oversize: bytes | None = None
    oversize_start: int = 0
    device: int = 0
    inode: int = 0
    #: Monotonic time since which the file, renamed or deleted, has not grown (None: not moved,
    #: or it grew since).
    moved_quiet_since: float | None = None


class Tailer:
    """Follows ``path`` and its rotations.

    Args:
        path: the live log (``/var/log/audit/audit.log``).
        start: where to begin (a checkpoint, or the start or end of the live file).
        options: polling and reading limits.

    ``finished`` lists the files read before the checkpointed one (:meth:`older_files` at the
    checkpoint): when the checkpointed file is gone, the chain is read from its oldest file not
    among them.

    Use ``async for batch in tailer.batches()``; a batch is a list of :class:`TailLine` in file
    order, and an empty list each time the tailer is idle at the end of the log (so that the
    caller can run its timers).  :meth:`stop` ends the iteration after the current batch.
    """

    def __init__(
        self,
        path: str,
        start: StartPoint = "beginning",
        options: TailOptions | None = None,
        finished: Sequence[FileIdentity] = (),
    ) -> None:
        self.path = os.path.abspath(path)
        self.options = options or TailOptions()
        self.stats = TailStats()
        self._start: StartPoint | None = start
        self._current: _OpenFile | None = None
        #: Identities of files already read (or older than where we started), by (device, inode).
        self._known: dict[tuple[int, int], list[FileIdentity]] = {}
        #: Read order of the known files (0: older than where we started).
        self._order: dict[FileIdentity, int] = {}
        self._next_order = 1
        #: Files read before the checkpointed one (from the checkpoint), skipped if it is gone.
        self._finished = tuple(finished)
        self._stopping = asyncio.Event()
        self._reported: dict[str, str] = {}
        #: The unterminated last line of a file just finished, to hand out next.
        self._pending_tail: list[TailLine] = []
        #: Set when the checkpointed file was found under another identity (a copy).
        self.resumed_as: FileIdentity | None = None

    # ---------------------------------------------------------------- public

    def stop(self) -> None:
        """End :meth:`batches` after the batch being read."""
        self._stopping.set()

    @property
    def current_file(self) -> str | None:
        """Name under which the file being read was last found."""
        return self._current.path if self._current is not None else None

    def older_files(self, identity: FileIdentity) -> list[FileIdentity] | None:
        """Files read (or skipped as older) before the file ``identity``; None if it is unknown."""
        order = self._order.get(identity)
        if order is None:
            return None
        return [other for other, number in self._order.items() if number < order]

    def idle_position(self) -> Position | None:
        """Where reading stands between lines (None inside a partial line or between files):
        lets a checkpoint move on to a new file before it has a complete line."""
        current = self._current
        if current is None or current.partial or current.oversize is not None:
            return None
        return Position(current.identity, current.read_offset, current.read_offset)

    def bytes_behind(self) -> int:
        """Bytes written to the log and not read yet: the rest of the current file and every
        file of the chain not read yet."""
        behind = 0
        current = self._current
        if current is not None:
            with contextlib.suppress(OSError):
                behind += max(0, os.fstat(current.fd).st_size - current.read_offset)
        try:
            chain = self._list_chain()
        except OSError:
            return behind
        for entry in chain:
            if current is not None and (entry.device, entry.inode) == (current.device, current.inode):
                continue
            if not self._is_known(entry):
                behind += entry.size
        return behind

    async def batches(self) -> AsyncIterator[list[TailLine]]:
        """Batches of lines, forever (until :meth:`stop`)."""
        try:
            while not self._stopping.is_set():
                if self._pending_tail:
                    tail, self._pending_tail = self._pending_tail, []
                    yield tail
                    continue
                current = self._current
                if current is None:
                    if not self._open_next():
                        failed = bool(self._reported)
                        yield []
                        await self._sleep(self.options.retry_interval if failed else self.options.poll_interval)
                    continue
                batch = self._read(current)
                if batch is None:
                    continue  # truncation handled, the file changed
                if batch:
                    yield batch
                    continue
                if self._follow(current):
                    continue
                yield batch
                await self._sleep(self.options.poll_interval)
        finally:
            self._close_current()

    # ---------------------------------------------------------------- reading

    def _read(self, current: _OpenFile) -> list[TailLine] | None:
        """Read one chunk of ``current`` into lines; ``None`` when it turned out truncated."""
        try:
            data = os.pread(current.fd, self.options.read_chunk_bytes, current.read_offset)
        except OSError as exc:
            self._report("read", f"cannot read {current.path}: {exc.strerror or exc}")
            return []
        if not data:
            return []
        if current.identity.fingerprint_size == 0:
            # The first bytes of a file seen empty: were other bytes copied away before them?
            if self._copied_while_empty(current):
                return None
            self._set_identity(current, self._identify(current.fd, current.device, current.inode))
        elif self._head_changed(current):
            # Checked after the read, so that data of a file truncated meanwhile is not taken.
            self._truncated(current)
            return None
        return self._split(current, data)

    def _split(self, current: _OpenFile, data: bytes) -> list[TailLine]:
        identity = current.identity
        max_line = self.options.max_line_bytes
        lines: list[TailLine] = []
        current.read_offset += len(data)
        self.stats.bytes += len(data)
        start = current.line_start
        if current.oversize is not None:
            end = data.find(b"\n")
            if end < 0:
                current.line_start += len(data)
                return lines
            skipped_to = start + end + 1
            lines.append(TailLine(current.oversize, Position(identity, current.oversize_start, skipped_to), True))
            self.stats.oversize_lines += 1
            current.oversize = None
            data = data[end + 1 :]
            start = skipped_to
        buffer = current.partial + data if current.partial else data
        parts = buffer.split(b"\n")
        rest = parts.pop()
        append = lines.append
        for line in parts:
            end = start + len(line) + 1
            if len(line) > max_line:
                append(TailLine(line[:max_line], Position(identity, start, end), True))
                self.stats.oversize_lines += 1
            else:
                append(TailLine(line, Position(identity, start, end)))
            start = end
        if len(rest) > max_line:
            current.oversize = rest[:max_line]
            current.oversize_start = start
            start += len(rest)
            rest = b""
        current.partial = rest
        current.line_start = start
        self.stats.lines += len(parts)
        return lines

    def _finish(self, current: _OpenFile) -> list[TailLine]:
        """The file will not grow again: its unterminated last line is a line."""
        lines: list[TailLine] = []
        if current.oversize is not None:
            end = current.read_offset
            position = Position(current.identity, current.oversize_start, end)
            lines.append(TailLine(current.oversize, position, True))
            self.stats.oversize_lines += 1
            current.oversize = None
        elif current.partial:
            end = current.line_start + len(current.partial)
            lines.append(TailLine(current.partial, Position(current.identity, current.line_start, end)))
            self.stats.lines += 1
        current.partial = b""
        current.line_start = current.read_offset
        return lines

    # ---------------------------------------------------------------- following

    def _follow(self, current: _OpenFile) -> bool:
        """At the end of ``current``: look for truncation and rotation.

        Returns:
            True when something changed and reading should go on at once.
        """
        try:
            status = os.fstat(current.fd)
        except OSError:
            return False
        if status.st_size < current.read_offset or self._head_changed(current):
            self._truncated(current)
            return True
        try:
            live = os.stat(self.path)
            moved = (live.st_dev, live.st_ino) != (current.device, current.inode)
            live_has_data = moved and live.st_size > 0
        except FileNotFoundError:
            moved, live_has_data = True, False
        except OSError as exc:
            self._report("stat", f"cannot look at {self.path}: {exc.strerror or exc}")
            return False
        if not moved:
            return current.identity.fingerprint_size == 0 and self._copied_while_empty(current)
        # Renamed or deleted.  Once the live file has data the writer has moved on, and what it
        # wrote before is in this file now: read to the end once more, then leave.  While the
        # live file is missing or empty the writer may still hold this one (logrotate renamed
        # it and has not signalled yet): keep it until it has been quiet for a while.
        if os.fstat(current.fd).st_size > current.read_offset:
            current.moved_quiet_since = None
            return True
        if not live_has_data and not self._newer_file_has_data(current):
            now = time.monotonic()
            if current.moved_quiet_since is None:
                current.moved_quiet_since = now
            if now - current.moved_quiet_since < self.options.renamed_quiet_seconds:
                return False
        self._pending_tail = self._finish(current)
        self._remember(current.identity)
        self.stats.rotations += 1
        log.info("finished %s (rotated or removed) at offset %d", current.path, current.read_offset)
        self._close_current()
        return True

    def _newer_file_has_data(self, current: _OpenFile) -> bool:
        """A file of the chain newer than ``current`` (not read yet) has data: the writer moved
        on (rotated more than once since), so nothing more will be added to ``current``."""
        try:
            chain = self._list_chain()
        except OSError:
            return False
        ours = (current.device, current.inode)
        return any(
            entry.size > 0 and (entry.device, entry.inode) != ours and not self._is_known(entry) for entry in chain
        )

    def _copied_while_empty(self, current: _OpenFile) -> bool:
        """copytruncate of a file we only saw empty: neither its size nor its first bytes tell.
        A rotated file we do not know, appearing while the live file is still ours, can only be
        its copy (a rename would have moved our file): read it first."""
        try:
            live = os.stat(self.path)
            chain = self._list_chain()
        except OSError:
            return False
        if (live.st_dev, live.st_ino) != (current.device, current.inode):
            return False  # our file was renamed (rotation), not copied: nothing to read first
        for entry in chain:
            if (entry.device, entry.inode) == (current.device, current.inode):
                continue
            if entry.path != self.path and not self._is_known(entry) and entry.size > 0:
                log.info("%s was copied and truncated before we read it; reading the copy %s", self.path, entry.path)
                self.stats.truncations += 1
                self._forget(current.identity)
                self._close_current()
                return self._open_entry(entry, 0) or True
        return False

    def _truncated(self, current: _OpenFile) -> None:
        """The live file was truncated (copytruncate): finish its copy if there is one."""
        self.stats.truncations += 1
        copy = None
        try:
            for entry in self._list_chain():
                other_file = (entry.device, entry.inode) != (current.device, current.inode)
                if other_file and entry.size >= current.line_start and _is_copy_of(current.identity, entry):
                    copy = entry
                    break
        except OSError:
            copy = None
        old_identity = current.identity
        self._remember(old_identity)
        self._close_current()
        if copy is None:
            log.warning(
                "%s was truncated at offset %d and no copy was found beside it; reading it again from its start",
                self.path,
                current.read_offset,
            )
            return
        log.info("%s was truncated (copytruncate); finishing its copy %s", self.path, copy.path)
        copy_identity = FileIdentity(copy.device, copy.inode, old_identity.fingerprint, old_identity.fingerprint_size)
        self._open(copy.path, copy_identity, current.line_start)

    # ---------------------------------------------------------------- opening

    def _open_next(self) -> bool:
        """Open the file to read next; False when there is none yet."""
        start = self._start
        try:
            chain = self._stable_chain()
        except OSError as exc:
            self._report("list", f"cannot list the directory of {self.path}: {exc.strerror or exc}")
            return False
        if start is not None:
            return self._open_first(chain, start)
        for entry in chain:
            if not self._is_known(entry):
                return self._open_entry(entry, 0)
        return False

    def _open_first(self, chain: list[_Chained], start: StartPoint) -> bool:
        if not chain:
            self._report("missing", f"waiting for {self.path} to exist")
            return False
        if isinstance(start, ResumeAt):
            index = _find(chain, start.file)
            if index is None:
                index = _find_copy(chain, start.file, start.offset)
                if index is not None:
                    entry = chain[index]
                    self.resumed_as = FileIdentity(
                        entry.device, entry.inode, start.file.fingerprint, start.file.fingerprint_size
                    )
            if index is None:
                return self._open_after_lost(chain, start)
            identity = self.resumed_as or start.file
            return self._open_from(chain, index, start.offset, identity)
        live = len(chain) - 1
        if chain[live].path != self.path:
            self._report("missing", f"waiting for {self.path} to exist")
            return False
        if start == "beginning":
            return self._open_from(chain, 0, 0, None)
        return self._open_from(chain, live, _last_line_end(chain[live].path, chain[live].size), None)

    def _open_after_lost(self, chain: list[_Chained], start: ResumeAt) -> bool:
        """The checkpointed file is gone: read the chain from its oldest file not read before it."""
        log.warning(
            "the checkpointed file (device %d, inode %d) is no longer beside %s; reading the files "
            "not read before it from their start (events may be sent again)",
            start.file.device,
            start.file.inode,
            self.path,
        )
        for identity in self._finished:
            self._remember(identity, 0)
        self._start = None
        for index, entry in enumerate(chain):
            if not self._is_known(entry):
                return self._open_from(chain, index, 0, None)
        return False

    def _open_from(self, chain: list[_Chained], index: int, offset: int, identity: FileIdentity | None) -> bool:
        entry = chain[index]
        if not self._open_entry(entry, offset, identity):
            return False
        for older in chain[:index]:
            if not self._is_known(older):
                self._remember(FileIdentity(older.device, older.inode, *_fingerprint_of(older.head)), 0)
        self._start = None
        return True

    def _open_entry(self, entry: _Chained, offset: int, identity: FileIdentity | None = None) -> bool:
        if identity is None:
            identity = FileIdentity(entry.device, entry.inode, *_fingerprint_of(entry.head))
        return self._open(entry.path, identity, offset)

    def _open(self, path: str, identity: FileIdentity, offset: int) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            self.stats.errors += 1
            self._report(
                "open", f"cannot open {path}: {exc.strerror or exc}; retrying every {self.options.retry_interval:g} s"
            )
            return False
        status = os.fstat(fd)
        if (status.st_dev, status.st_ino) != (identity.device, identity.inode):
            # Renamed again between listing and opening: list again.
            os.close(fd)
            return False
        self._reported.clear()
        self._current = _OpenFile(path, fd, identity, offset, offset, device=status.st_dev, inode=status.st_ino)
        if identity.fingerprint_size == 0 and status.st_size > 0:
            self._set_identity(self._current, self._identify(fd, status.st_dev, status.st_ino))
        self._remember(self._current.identity)
        self.stats.files_opened += 1
        log.info("reading %s from offset %d", path, offset)
        return True

    def _close_current(self) -> None:
        current = self._current
        if current is not None:
            self._current = None
            with contextlib.suppress(OSError):
                os.close(current.fd)

    # ---------------------------------------------------------------- identities

    def _identify(self, fd: int, device: int, inode: int) -> FileIdentity:
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        return FileIdentity(device, inode, *_fingerprint_of(head))

    def _set_identity(self, current: _OpenFile, identity: FileIdentity) -> None:
        order = self._order.get(current.identity)
        self._forget(current.identity)
        current.identity = identity
        self._remember(identity, order)

    def _head_changed(self, current: _OpenFile) -> bool:
        identity = current.identity
        if identity.fingerprint_size == 0:
            return False
        try:
            head = os.pread(current.fd, identity.fingerprint_size, 0)
        except OSError:
            return False
        return not identity.same_content(head)

    def _remember(self, identity: FileIdentity, order: int | None = None) -> None:
        known = self._known.setdefault((identity.device, identity.inode), [])
        if identity not in known:
            known.append(identity)
        if identity not in self._order:
            if order is None:
                order = self._next_order
                self._next_order += 1
            self._order[identity] = order

    def _forget(self, identity: FileIdentity) -> None:
        known = self._known.get((identity.device, identity.inode))
        if known and identity in known:
            known.remove(identity)
        self._order.pop(identity, None)

    def _is_known(self, entry: _Chained) -> bool:
        known = self._known.get((entry.device, entry.inode))
        return bool(known) and any(identity.same_content(entry.head) for identity in known or ())

    def _stable_chain(self) -> list[_Chained]:
        """:meth:`_list_chain` taken until two listings in a row agree.

        A listing taken while the chain is being renamed can miss a file or see it twice; the
        next file to read is chosen only from a listing that a second one confirms.
        """
        chain = self._list_chain()
        for _ in range(MAX_LISTING_ATTEMPTS):
            again = self._list_chain()
            if [(e.device, e.inode) for e in again] == [(e.device, e.inode) for e in chain]:
                return again
            chain = again
        return chain

    def _list_chain(self) -> list[_Chained]:
        """The live file and its rotations, oldest first (dated ones, ``.N`` ... ``.1``, live).

        Known identities of files that left the chain are forgotten here, which bounds them.
        """
        directory, base = os.path.split(self.path)
        numbered: list[tuple[int, str]] = []
        dated: list[tuple[str, str]] = []
        for name in os.listdir(directory):
            if name.startswith(base) and len(name) > len(base) + 1:
                match = _ROTATED_SUFFIX.match(name, len(base))
                if match is not None:
                    numbered.append((int(match.group(1)), os.path.join(directory, name)))
                elif (match := _DATED_SUFFIX.match(name, len(base))) is not None:
                    # Digits of one date format sort in time order.
                    dated.append((match.group(1).replace("-", "").replace("_", ""), os.path.join(directory, name)))
        numbered.sort(reverse=True)
        dated.sort()
        chain: list[_Chained] = []
        for path in [*(path for _, path in dated), *(path for _, path in numbered), self.path]:
            entry = _look(path)
            if entry is not None:
                chain.append(entry)
        if len(self._known) > MAX_KNOWN_FILES:
            # Forget the files read longest ago that left the chain.  Never merely because one
            # listing missed them: a listing taken while auditd renames the chain can miss a file
            # (it moved from .N to .N+1 between listdir and stat), which must not be read again.
            present = {(entry.device, entry.inode) for entry in chain}
            current = self._current
            if current is not None:
                present.add((current.device, current.inode))
            gone = sorted(
                (min(self._order.get(identity, 0) for identity in identities), key)
                for key, identities in self._known.items()
                if key not in present
            )
            for _, key in gone[: len(self._known) - MAX_KNOWN_FILES]:
                for identity in self._known.pop(key):
                    self._order.pop(identity, None)
        return chain

    # ---------------------------------------------------------------- helpers

    def _report(self, what: str, message: str) -> None:
        """Log a problem once until it changes (a retried error is not repeated every poll)."""
        if self._reported.get(what) != message:
            self._reported[what] = message
            log.log(logging.WARNING if what == "missing" else logging.ERROR, message)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _fingerprint_of(head: bytes) -> tuple[str, int]:
    head = head[:FINGERPRINT_BYTES]
    return fingerprint(head), len(head)


def _look(path: str) -> _Chained | None:
    """Stat and first bytes of one file, or None when it is gone or unreadable."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    head = b""
    try:
        with open(path, "rb") as handle:
            head = handle.read(FINGERPRINT_BYTES)
    except OSError:
        # Unreadable: listed by device and inode; opening it reports the error.
        head = b""
    return _Chained(path, status.st_dev, status.st_ino, status.st_size, head)


def _is_copy_of(identity: FileIdentity, entry: _Chained) -> bool:
    return identity.fingerprint_size > 0 and identity.same_content(entry.head)


def _find(chain: list[_Chained], identity: FileIdentity) -> int | None:
    for index, entry in enumerate(chain):
        if identity.matches(entry.device, entry.inode, entry.head):
            return index
    return None


def _find_copy(chain: list[_Chained], identity: FileIdentity, offset: int) -> int | None:
    """A file with the same first bytes and at least ``offset`` bytes (a copytruncate copy, or
    the same file on a device that got another number)."""
    if identity.fingerprint_size == 0:
        return None
    for index, entry in enumerate(chain):
        if entry.size >= offset and identity.same_content(entry.head):
            return index
    return None


def _last_line_end(path: str, size: int) -> int:
    """Offset just after the last line end before ``size`` (0 when there is none)."""
    block = 1 << 16
    try:
        with open(path, "rb") as handle:
            end = size
            while end > 0:
                begin = max(0, end - block)
                handle.seek(begin)
                chunk = handle.read(end - begin)
                found = chunk.rfind(b"\n")
                if found >= 0:
                    return begin + found + 1
                end = begin
    except OSError:
        return 0
    return 0
