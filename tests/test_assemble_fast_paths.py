"""The assembler's memory of recent event keys (fragments), against a plain model of the rules."""

from __future__ import annotations

import random

import pytest

from forwarder.audit.assemble import Assembler
from forwarder.audit.record import Record, parse_line

#: A short memory, so that both of its limits are reached often.
MEMORY_SECONDS = 5
MEMORY_KEYS = 6


def _expected_fragments(creations: list[tuple[tuple[str | None, int, int, int], int]]) -> list[bool]:
    """The fragment rule as written down: a kernel event whose key is among the remembered keys
    of earlier kernel events is a fragment; each new key forgets at most the oldest key, when it
    is older than the memory's seconds or the memory holds more keys than allowed."""
    recent: dict[tuple[str | None, int, int, int], int] = {}
    fragments = []
    for key, sec in creations:
        if key in recent:
            fragments.append(True)
            continue
        recent[key] = sec
        oldest = next(iter(recent))
        if recent[oldest] < sec - MEMORY_SECONDS or len(recent) > MEMORY_KEYS:
            del recent[oldest]
        fragments.append(False)
    return fragments


@pytest.mark.parametrize("seed", range(20))
def test_fragments_follow_the_memory_of_recent_keys(seed: int) -> None:
    rng = random.Random(seed)
    assembler = Assembler(fragment_memory_seconds=MEMORY_SECONDS, fragment_memory_keys=MEMORY_KEYS)
    creations = []
    fragments = []
    sec = 1_000
    for _ in range(400):
        sec += rng.choice([0, 0, 1, 2, 7])
        key = (rng.choice([None, "hv1"]), sec - rng.randrange(12), rng.randrange(3), rng.randrange(4))
        node, key_sec, msec, serial = key
        prefix = f"node={node} " if node else ""
        # PROCTITLE ends its event at once: every record makes a kernel event of its own, which
        # is handed out right away (nothing else is pending).
        record = parse_line(f"{prefix}type=PROCTITLE msg=audit({key_sec}.{msec:03d}:{serial}): proctitle=6C73")
        assert isinstance(record, Record)
        creations.append((key, key_sec))
        ready = assembler.feed(record)
        assert [event.key for event in ready] == [key]
        fragments += [event.fragment for event in ready]
    assert any(fragments) and not all(fragments)
    assert fragments == _expected_fragments(creations)


def test_a_key_exactly_the_memory_old_is_still_remembered() -> None:
    assembler = Assembler(fragment_memory_seconds=5)
    flags = []
    for sec, serial in ((100, 1), (105, 2), (100, 1), (106, 3), (100, 1)):
        record = parse_line(f"type=PROCTITLE msg=audit({sec}.000:{serial}): proctitle=6C73")
        assert isinstance(record, Record)
        flags += [event.fragment for event in assembler.feed(record)]
    # The second sight of key 1 is 5 s older than the newest key: remembered.  The key of second
    # 106 makes it 6 s old, so it is forgotten (the oldest goes first, one per new key).
    assert flags == [False, False, True, False, False]
