"""Checkpoints: the JSON value, the acknowledgement bookkeeping, atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from forwarder.checkpoint import (
    CHECKPOINT_VERSION,
    AckTracker,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    decode,
    encode,
)
from forwarder.tail import FileIdentity, Position, ResumeAt
from tests.corpus import REPO

FILE = FileIdentity(2049, 131, "00112233aabbccdd", 1024)
OTHER = FileIdentity(2049, 140, "ffeeddccbbaa9988", 300)


def pos(start: int, end: int, file: FileIdentity = FILE) -> Position:
    return Position(file, start, end)


def sample(offset: int = 100) -> Checkpoint:
    return Checkpoint(ResumeAt(FILE, offset), ResumeAt(OTHER, 7), ("id-a", "id-b"), {"guests": {"n": 1}}, 12.5)


def test_round_trip() -> None:
    checkpoint = sample()
    assert decode(encode(checkpoint)) == checkpoint
    assert checkpoint.to_json()["version"] == CHECKPOINT_VERSION


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"version": 99}', "version 99"),
        (b'{"version": 1, "position": {"file": {}, "offset": 3}}', "position"),
        (orjson.dumps({**sample().to_json(), "position": {"file": FILE.to_json(), "offset": -1}}), "offset"),
        (orjson.dumps({**sample().to_json(), "acknowledged": [1, 2]}), "acknowledged"),
    ],
)
def test_damaged_checkpoints_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(CheckpointError, match=problem):
        decode(data)


def test_position_is_the_start_of_the_oldest_unacknowledged_event() -> None:
    tracker = AckTracker()
    # Lines 1-4: event A starts on line 1, event B on line 2 (interleaved), C on line 4.
    a = tracker.open(pos(0, 10), 1)
    b = tracker.open(pos(10, 20), 2)
    tracker.line_read(3, pos(20, 30))
    c = tracker.open(pos(30, 40), 4)
    tracker.line_read(4, pos(30, 40))
    first = tracker.checkpoint()
    assert first is not None and first.position == ResumeAt(FILE, 0)
    assert first.read_to == ResumeAt(FILE, 40)
    # B and C acknowledged first: A still holds the position back.
    for ticket, doc_id in ((b, "B"), (c, "C")):
        assert tracker.emitted(ticket, 4, doc_id)
        tracker.acknowledge(ticket, doc_id)
    held = tracker.checkpoint()
    assert held is not None and held.position == ResumeAt(FILE, 0)
    assert set(held.acknowledged) == {"B", "C"}  # met again when reading from 0: skip them
    assert tracker.emitted(a, 4, "A")
    tracker.acknowledge(a, "A")
    done = tracker.checkpoint()
    assert done is not None and done.position == ResumeAt(FILE, 40)
    assert done.acknowledged == ()


def test_nothing_read_gives_no_checkpoint() -> None:
    assert AckTracker().checkpoint() is None


def test_resume_skips_acknowledged_ids_until_past_the_horizon() -> None:
    resume = Checkpoint(ResumeAt(FILE, 0), ResumeAt(FILE, 40), ("B", "C"))
    tracker = AckTracker(resume)
    a = tracker.open(pos(0, 10), 1)
    b = tracker.open(pos(10, 20), 2)
    tracker.line_read(2, pos(10, 20))
    assert not tracker.emitted(b, 2, "B")  # delivered by the previous run
    assert tracker.emitted(a, 2, "A")
    # Checkpoint before the horizon: C (not met yet) is carried on.
    early = tracker.checkpoint()
    assert early is not None and "C" in early.acknowledged and early.read_to == ResumeAt(FILE, 40)
    tracker.acknowledge(a, "A")
    for seq, start in ((3, 20), (4, 30), (5, 40)):
        tracker.passed(seq, pos(start, start + 10))
        tracker.line_read(seq, pos(start, start + 10))
    late = tracker.checkpoint()
    assert late is not None and late.position == ResumeAt(FILE, 50)
    assert late.acknowledged == ()


def test_cancelled_ticket_does_not_hold_the_position() -> None:
    tracker = AckTracker()
    ticket = tracker.open(pos(0, 10), 1)
    tracker.line_read(1, pos(0, 10))
    tracker.cancel(ticket)
    checkpoint = tracker.checkpoint()
    assert checkpoint is not None and checkpoint.position == ResumeAt(FILE, 10)


def test_store_writes_and_loads(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "state"))
    assert store.load() is None
    store.save_now(sample())
    assert store.load() == sample()
    assert oct(os.stat(store.path).st_mode & 0o777) == "0o600"
    assert store.writes == 1 and store.last_written is not None


def test_crash_between_write_and_rename_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    state = tmp_path / "state"
    CheckpointStore(str(state)).save_now(sample(100))

    class Crash(Exception):
        pass

    def crash(temporary: str) -> None:
        assert decode(Path(temporary).read_bytes()) == sample(200)  # the new one is complete on disk
        raise Crash

    with pytest.raises(Crash):
        CheckpointStore(str(state), before_rename=crash).save_now(sample(200))
    store = CheckpointStore(str(state))
    assert store.load() == sample(100)
    # The next write replaces the leftover temporary file.
    store.save_now(sample(300))
    assert store.load() == sample(300)
    assert sorted(path.name for path in state.iterdir()) == ["checkpoint.json"]


def test_kill_during_writes_leaves_a_whole_checkpoint(tmp_path: Path) -> None:
    """kill -9 of a process writing checkpoints in a loop: the file is always one whole checkpoint."""
    state = tmp_path / "state"
    program = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from forwarder.checkpoint import Checkpoint, CheckpointStore
        from forwarder.tail import FileIdentity, ResumeAt
        store = CheckpointStore({str(state)!r})
        file = FileIdentity(1, 2, "ab", 2)
        offset = 0
        while True:
            offset += 1
            store.save_now(Checkpoint(ResumeAt(file, offset), ResumeAt(file, offset), ("x",) * (offset % 500)))
            if offset == 5:
                print("writing", flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"writing\n"
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    checkpoint = CheckpointStore(str(state)).load()
    assert checkpoint is not None and checkpoint.position.offset >= 5
    assert len(checkpoint.acknowledged) == checkpoint.position.offset % 500
