"""The tailer: lines and positions, partial and long lines, every rotation kind, resume by identity."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from forwarder.tail import FileIdentity, ResumeAt, Tailer, TailLine, TailOptions, fingerprint
from tests.run_helpers import rotate

FAST = TailOptions(poll_interval=0.005, retry_interval=0.01)


def line(number: int, width: int = 40) -> bytes:
    return f"type=USER_CMD msg=audit(1700000000.{number % 1000:03d}:{number}): n={number} ".ljust(width, "x").encode()


class Reader:
    """Drives a tailer in the background and collects its lines."""

    def __init__(self, tailer: Tailer) -> None:
        self.tailer = tailer
        self.lines: list[TailLine] = []
        self.idle = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.tailer.batches():
            if batch:
                self.lines.extend(batch)
            else:
                self.idle.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[bytes]:
        async def reach() -> None:
            while len(self.lines) < count:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(reach(), timeout)
        return [item.data for item in self.lines]

    async def settle(self) -> None:
        """Wait until the tailer was idle after everything written so far."""
        self.idle.clear()
        await asyncio.wait_for(self.idle.wait(), 5.0)
        self.idle.clear()
        await asyncio.wait_for(self.idle.wait(), 5.0)

    async def stop(self) -> list[bytes]:
        self.tailer.stop()
        await asyncio.wait_for(self._task, 5.0)
        return [item.data for item in self.lines]


@pytest.fixture
async def reader_of() -> AsyncIterator[Callable[[Tailer], Reader]]:
    readers: list[Reader] = []

    def make(tailer: Tailer) -> Reader:
        reader = Reader(tailer)
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        await reader.stop()


def append(path: Path, *lines: bytes, end: bytes = b"\n") -> None:
    with open(path, "ab") as handle:
        for item in lines:
            handle.write(item + end)


async def test_lines_carry_positions(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    append(log, line(1), line(2), line(3))
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    await reader.wait_for(3)
    status = os.stat(log)
    first, second, third = reader.lines
    assert first.position.start == 0 and first.position.offset == len(line(1)) + 1
    assert second.position.start == first.position.offset
    assert third.position.offset == status.st_size
    assert first.position.file.inode == status.st_ino and first.position.file.device == status.st_dev
    assert first.position.file.fingerprint == fingerprint(log.read_bytes()[:1024])


async def test_partial_line_waits_for_its_end(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    append(log, line(1))
    with open(log, "ab") as handle:
        handle.write(line(2)[:10])
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    await reader.wait_for(1)
    await reader.settle()
    assert len(reader.lines) == 1
    with open(log, "ab") as handle:
        handle.write(line(2)[10:] + b"\n")
    assert await reader.wait_for(2) == [line(1), line(2)]


async def test_file_that_does_not_exist_yet(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    await asyncio.sleep(0.05)
    append(log, line(1), line(2))
    assert await reader.wait_for(2) == [line(1), line(2)]


async def test_rename_rotation_finishes_the_old_file_first(
    tmp_path: Path, reader_of: Callable[[Tailer], Reader]
) -> None:
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(10)))
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    await reader.wait_for(10)
    append(log, *(line(n) for n in range(10, 20)))  # written just before the rotation
    rotate(log)
    append(log, *(line(n) for n in range(20, 30)))
    assert await reader.wait_for(30) == [line(n) for n in range(30)]
    await reader.settle()
    assert len(reader.lines) == 30
    assert reader.tailer.stats.rotations == 1


async def test_writer_that_goes_on_writing_to_the_renamed_file(
    tmp_path: Path, reader_of: Callable[[Tailer], Reader]
) -> None:
    """logrotate's ``create`` mode with ``dateext``: the log is renamed while auditd still holds
    it and goes on writing there until ``postrotate`` makes it reopen; only then does the new
    live file (created empty) get lines.  Nothing written to the renamed file may be lost."""
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(10)))
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    await reader.wait_for(10)
    with open(log, "ab") as held:  # the writer's descriptor, kept across the rename
        os.rename(log, tmp_path / "audit.log-20261128")
        log.touch()
        for number in range(10, 20):
            await asyncio.sleep(0.02)  # many polls of the reader see the renamed file
            held.write(line(number) + b"\n")
            held.flush()
    append(log, *(line(n) for n in range(20, 30)))  # reopened: the new file
    assert await reader.wait_for(30) == [line(n) for n in range(30)]
    await reader.settle()
    assert len(reader.lines) == 30
    assert reader.tailer.stats.rotations == 1


async def test_a_renamed_file_is_left_after_it_stays_quiet(
    tmp_path: Path, reader_of: Callable[[Tailer], Reader]
) -> None:
    """No writer comes back: the renamed file's unterminated last line is handed out once the
    file has stayed quiet for ``renamed_quiet_seconds`` (the live file stays empty)."""
    log = tmp_path / "audit.log"
    append(log, line(0))
    append(log, line(1), end=b"")
    options = TailOptions(poll_interval=0.005, retry_interval=0.01, renamed_quiet_seconds=0.3)
    reader = reader_of(Tailer(str(log), "beginning", options))
    await reader.wait_for(1)
    os.rename(log, tmp_path / "audit.log-20261128")
    log.touch()
    await asyncio.sleep(0.1)
    assert len(reader.lines) == 1, "the renamed file was left before it had been quiet long enough"
    assert await reader.wait_for(2, timeout=5) == [line(0), line(1)]
    assert reader.tailer.stats.rotations == 1


async def test_two_rotations_before_the_reader_finished(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(50)))
    # One small read per batch: the reader is slow.
    tailer = Tailer(str(log), "beginning", TailOptions(poll_interval=0.005, read_chunk_bytes=100))
    batches = tailer.batches()
    first = await anext(batches)
    assert 0 < len(first) < 50
    rotate(log)
    append(log, *(line(n) for n in range(50, 80)))
    rotate(log)
    append(log, *(line(n) for n in range(80, 100)))
    lines = [item.data for item in first]
    while len(lines) < 100:
        lines.extend(item.data for item in await asyncio.wait_for(anext(batches), 5))
    tailer.stop()
    await batches.aclose()
    assert lines == [line(n) for n in range(100)]


@pytest.mark.parametrize("copy_suffix", [".1", "-20261128", "-2026112803", "-2026-11-28"])
async def test_copytruncate(copy_suffix: str, tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    """auditd-style and logrotate ``dateext`` copies: the lines only the copy holds are read."""
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(10)))
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    await reader.wait_for(10)
    await reader.settle()
    # Lines the reader has not seen yet go into the copy only.
    append(log, *(line(n) for n in range(10, 15)))
    shutil.copyfile(log, f"{log}{copy_suffix}")
    os.truncate(log, 0)
    append(log, *(line(n) for n in range(15, 25)))
    assert await reader.wait_for(25) == [line(n) for n in range(25)]
    await reader.settle()
    assert len(reader.lines) == 25
    assert reader.tailer.stats.truncations == 1


async def test_truncation_noticed_after_the_file_grew_again(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(5)))
    tailer = Tailer(str(log), "beginning", FAST)
    batches = tailer.batches()
    assert [item.data for item in await anext(batches)] == [line(n) for n in range(5)]
    # Truncated and rewritten longer than before between two reads, no copy kept.
    os.truncate(log, 0)
    append(log, *(line(n, 60) for n in range(100, 110)))
    lines: list[bytes] = []
    while len(lines) < 10:
        lines.extend(item.data for item in await asyncio.wait_for(anext(batches), 5))
    tailer.stop()
    await batches.aclose()
    assert lines == [line(n, 60) for n in range(100, 110)]


async def test_delete_and_recreate(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(5)))
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    await reader.wait_for(5)
    append(log, line(5))
    os.unlink(log)
    append(log, line(6), line(7))
    assert await reader.wait_for(8) == [line(n) for n in range(8)]


async def test_unterminated_last_line_of_a_rotated_file(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    append(log, line(1))
    append(log, line(2), end=b"")
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    await reader.wait_for(1)
    rotate(log)
    append(log, line(3))
    assert await reader.wait_for(3) == [line(1), line(2), line(3)]


async def test_long_lines(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    long_kept = b"a" * 5000
    too_long = b"b" * 9000
    append(log, line(1), long_kept, too_long, line(2))
    options = TailOptions(poll_interval=0.005, read_chunk_bytes=1024, max_line_bytes=6000)
    reader = reader_of(Tailer(str(log), "beginning", options))
    await reader.wait_for(4)
    kept, cut = reader.lines[1], reader.lines[2]
    assert kept.data == long_kept and not kept.truncated
    assert cut.truncated and cut.data == too_long[:6000]
    assert cut.position.offset - cut.position.start == 9001
    assert reader.lines[3].data == line(2) and reader.lines[3].position.start == cut.position.offset


async def test_permission_error_is_reported_and_retried(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    reader_of: Callable[[Tailer], Reader],
) -> None:
    log = tmp_path / "audit.log"
    append(log, line(1))
    real_open = os.open
    refusals = {"left": 3}

    def refusing_open(path: str, flags: int, *args: int) -> int:
        if str(path) == str(log) and refusals["left"] > 0:
            refusals["left"] -= 1
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    assert await reader.wait_for(1) == [line(1)]
    assert refusals["left"] == 0
    assert reader.tailer.stats.errors == 3
    errors = [record for record in caplog.records if "Permission denied" in record.getMessage()]
    assert len(errors) == 1  # reported once, not at every retry


async def test_start_at_end_skips_what_is_there(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    append(log, line(1), line(2))
    append(log, line(3)[:5], end=b"")
    reader = reader_of(Tailer(str(log), "end", FAST))
    await reader.settle()
    append(log, line(3)[5:], line(4))
    # The partial line was started before we came: it is read whole, from its start.
    assert await reader.wait_for(2) == [line(3), line(4)]


async def test_resume_finds_the_file_after_it_moved(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(10)))
    first = Tailer(str(log), "beginning", FAST)
    batches = first.batches()
    seen = await anext(batches)
    resume = ResumeAt(seen[3].position.file, seen[3].position.offset)  # after the 4th line
    first.stop()
    await batches.aclose()
    # While we are down: more lines, two rotations.
    append(log, *(line(n) for n in range(10, 12)))
    rotate(log)
    append(log, *(line(n) for n in range(12, 15)))
    rotate(log)
    append(log, *(line(n) for n in range(15, 17)))
    reader = reader_of(Tailer(str(log), resume, FAST))
    assert await reader.wait_for(13) == [line(n) for n in range(4, 17)]
    await reader.settle()
    assert len(reader.lines) == 13


async def test_resume_after_dated_rotations(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    """logrotate with ``dateext`` renamed the checkpointed file, then renamed the next one too,
    while we were down (and left a compressed archive beside them, which is not read): reading
    resumes in the first, goes on in the second, then the live file, in time order."""
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(10)))
    first = Tailer(str(log), "beginning", FAST)
    batches = first.batches()
    seen = await anext(batches)
    resume = ResumeAt(seen[3].position.file, seen[3].position.offset)
    first.stop()
    await batches.aclose()
    append(log, *(line(n) for n in range(10, 12)))
    os.rename(log, f"{log}-20261127")
    append(log, *(line(n) for n in range(12, 15)))
    os.rename(log, f"{log}-20261128")
    append(log, *(line(n) for n in range(15, 17)))
    Path(f"{log}-20261126.gz").write_bytes(b"\x1f\x8b not read")
    reader = reader_of(Tailer(str(log), resume, FAST))
    assert await reader.wait_for(13) == [line(n) for n in range(4, 17)]
    await reader.settle()
    assert len(reader.lines) == 13


async def test_resume_in_a_copy_after_copytruncate(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(6)))
    status = os.stat(log)
    head = log.read_bytes()[:1024]
    identity = FileIdentity(status.st_dev, status.st_ino, fingerprint(head), len(head))
    offset = 3 * (len(line(0)) + 1)
    shutil.copyfile(log, f"{log}.1")
    os.truncate(log, 0)
    append(log, line(6))
    reader = reader_of(Tailer(str(log), ResumeAt(identity, offset), FAST))
    assert await reader.wait_for(4) == [line(n) for n in range(3, 7)]
    assert reader.tailer.resumed_as is not None


async def test_inode_reuse_is_not_the_old_file(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    append(log, line(1))
    status = os.stat(log)
    head = log.read_bytes()
    identity = FileIdentity(status.st_dev, status.st_ino, fingerprint(head), len(head))
    other = line(2)
    assert identity.matches(status.st_dev, status.st_ino, head + b"more")
    assert not identity.matches(status.st_dev, status.st_ino, other)
    assert not identity.matches(status.st_dev, status.st_ino, head[:-1])
    assert FileIdentity.from_json(identity.to_json()) == identity
    with pytest.raises(ValueError):
        FileIdentity.from_json({"device": 1})


async def test_bytes_behind_counts_unread_files(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    append(log, *(line(n) for n in range(20)))
    tailer = Tailer(str(log), "beginning", TailOptions(poll_interval=0.005, read_chunk_bytes=205))
    batches = tailer.batches()
    await anext(batches)
    rotate(log)
    append(log, line(99))
    size_old = os.stat(f"{log}.1").st_size
    assert tailer.bytes_behind() == size_old - 205 + len(line(99)) + 1
    tailer.stop()
    await batches.aclose()


async def test_beginning_reads_the_whole_chain(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    append(log, line(1))
    rotate(log)
    append(log, line(2))
    rotate(log)
    append(log, line(3))
    reader = reader_of(Tailer(str(log), "beginning", FAST))
    assert await reader.wait_for(3) == [line(1), line(2), line(3)]


async def test_copytruncate_of_a_file_only_seen_empty(tmp_path: Path, reader_of: Callable[[Tailer], Reader]) -> None:
    log = tmp_path / "audit.log"
    log.touch()
    tailer = Tailer(str(log), "beginning", FAST)
    batches = tailer.batches()
    assert await anext(batches) == []  # the empty live file is open
    append(log, line(1), line(2))
    shutil.copyfile(log, f"{log}.1")
    os.truncate(log, 0)
    append(log, line(3))
    lines: list[bytes] = []
    while len(lines) < 3:
        lines.extend(item.data for item in await asyncio.wait_for(anext(batches), 5))
    tailer.stop()
    await batches.aclose()
    assert lines == [line(1), line(2), line(3)]


async def test_lost_checkpointed_file_reads_only_newer_files(
    tmp_path: Path, reader_of: Callable[[Tailer], Reader]
) -> None:
    log = tmp_path / "audit.log"
    append(log, line(1))
    rotate(log)
    append(log, line(2))
    first = Tailer(str(log), "beginning", FAST)
    batches = first.batches()
    seen = [item async for batch in _take(batches, 2) for item in batch]
    position = seen[-1].position
    finished = first.older_files(position.file)
    first.stop()
    await batches.aclose()
    assert finished is not None and len(finished) == 1
    # While stopped: the checkpointed live file is deleted, a new one written.
    os.unlink(log)
    append(log, line(3))
    reader = reader_of(Tailer(str(log), ResumeAt(position.file, position.offset), FAST, finished))
    assert await reader.wait_for(1) == [line(3)]
    await reader.settle()
    assert len(reader.lines) == 1


async def _take(batches: AsyncIterator[list[TailLine]], count: int) -> AsyncIterator[list[TailLine]]:
    lines = 0
    async for batch in batches:
        yield batch
        lines += len(batch)
        if lines >= count:
            return


async def test_fast_rotations_while_reading_lose_and_repeat_nothing(
    tmp_path: Path, reader_of: Callable[[Tailer], Reader]
) -> None:
    """A writer that rotates faster than the reader reads, in another thread: directory listings
    race with the renames (a file moves from .N to .N+1 between listdir and stat), and a file
    missed by one listing must not be taken for a new one and read again."""
    import threading

    log = tmp_path / "audit.log"
    log.touch()
    written = [line(number) for number in range(60_000)]
    tailer = Tailer(str(log), "beginning", FAST)
    reader = reader_of(tailer)

    def write() -> None:
        for start in range(0, len(written), 2_000):
            with open(log, "ab") as handle:
                for chunk in range(start, start + 2_000, 500):
                    handle.write(b"".join(item + b"\n" for item in written[chunk : chunk + 500]))
                    handle.flush()
            rotate(log, keep=100)

    thread = threading.Thread(target=write)
    thread.start()
    await reader.wait_for(len(written), timeout=60)
    thread.join()
    await reader.settle()
    assert await reader.stop() == written
