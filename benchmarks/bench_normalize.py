"""Time the ECS normalizer alone: ``normalize(event, options)`` + ``orjson.dumps`` per event.

    python -m benchmarks.bench_normalize LOG [--repeat 3] [--profile]   (from the repository root)

The log is parsed and assembled once (not timed) into a list of events; then every event is
normalized and serialized, ``--repeat`` times, and the best run is reported as microseconds per
event, overall and per event type (the type of the event's first record).  ``--profile`` runs one
more pass under cProfile and prints the top functions.  A realistic log comes from
``python -m forwarder.generate --records 200000 --seed 7 --output LOG``.  Speed is not a test:
nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import cProfile
import pathlib
import pstats
import time
from collections import defaultdict

import orjson

from forwarder.audit.assemble import assemble_lines
from forwarder.audit.record import Event
from forwarder.ecs.normalize import NormalizeOptions, normalize

#: Event types with fewer events than this are summed into one "other" line.
MIN_EVENTS_PER_LINE = 100


def load_events(path: pathlib.Path) -> list[Event]:
    """Parse and assemble every record of ``path`` (malformed lines skipped)."""
    with path.open("rb") as handle:
        return assemble_lines(handle)


def time_by_type(events: list[Event], options: NormalizeOptions) -> dict[str, float]:
    """Seconds spent per event type in one pass over ``events``."""
    seconds: dict[str, float] = defaultdict(float)
    clock = time.perf_counter
    dumps = orjson.dumps
    for event in events:
        started = clock()
        dumps(normalize(event, options))
        seconds[event.records[0].type] += clock() - started
    return seconds


def time_total(events: list[Event], options: NormalizeOptions) -> float:
    """Seconds for one pass over ``events`` without per-event clock reads."""
    dumps = orjson.dumps
    started = time.perf_counter()
    for event in events:
        dumps(normalize(event, options))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=pathlib.Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one pass")
    args = parser.parse_args()

    events = load_events(args.log)
    options = NormalizeOptions(host_name="bench")
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        counts[event.records[0].type] += 1

    total = min(time_total(events, options) for _ in range(args.repeat))
    per_type: dict[str, float] = {}
    for _ in range(args.repeat):
        for type_name, seconds in time_by_type(events, options).items():
            per_type[type_name] = min(per_type.get(type_name, seconds), seconds)

    print(f"{len(events):,} events: {total / len(events) * 1e6:.2f} µs/event (best of {args.repeat})")
    other_events = 0
    other_seconds = 0.0
    for type_name, count in sorted(counts.items(), key=lambda item: -item[1]):
        if count < MIN_EVENTS_PER_LINE:
            other_events += count
            other_seconds += per_type[type_name]
            continue
        print(f"  {type_name:20s} {count:>8,} events  {per_type[type_name] / count * 1e6:7.2f} µs/event")
    if other_events:
        print(f"  {'(other)':20s} {other_events:>8,} events  {other_seconds / other_events * 1e6:7.2f} µs/event")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        time_total(events, options)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
