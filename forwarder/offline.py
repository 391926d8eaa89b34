"""`auditfwd parse`: normalize audit logs offline to NDJSON.

The shell around the pure stages: it opens the inputs (``-`` is stdin, ``.gz`` is read
transparently), feeds every line through parse -> assemble -> normalize, writes one JSON document
per event, keeps malformed lines (reported with file and line number, and written to a dead-letter
file when asked) and prints a summary on stderr.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Final

import orjson

from forwarder.audit.assemble import DEFAULT_END_OF_EVENT_TIMEOUT, DEFAULT_MAX_IN_FLIGHT, Assembler
from forwarder.audit.record import Event, Malformed, parse_line
from forwarder.ecs.normalize import NormalizeOptions, normalize
from forwarder.virt.enrich import enrich
from forwarder.virt.guests import GuestRegistry

#: Malformed lines reported one by one on stderr before the rest are only counted; the
#: dead-letter file keeps them all.
MAX_REPORTED_MALFORMED: Final = 20

#: Read size for inputs: large enough that reading costs nothing next to parsing.
READ_BUFFER_BYTES: Final = 1 << 20

#: Lines between two progress-bar updates (updating per line would cost more than parsing).
PROGRESS_EVERY_LINES: Final = 4096


@dataclass(slots=True)
class ParseSummary:
    """What one run read and wrote (printed on stderr at the end)."""

    files: int = 0
    lines: int = 0
    blank: int = 0
    records: int = 0
    events: int = 0
    malformed: int = 0
    forced: int = 0
    seconds: float = 0.0
    malformed_reasons: dict[str, int] = field(default_factory=dict)
    #: Events written under ``--event`` (selected by :class:`EventSelector`).
    matched: int = 0

    def render(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"auditfwd parse: {self.files} file(s), {self.lines} lines, {self.records} records, "
            f"{self.events} events, {self.malformed} malformed, {self.blank} blank, "
            f"{self.forced} events closed early, {self.seconds:.2f} s ({rate:,.0f} records/s)"
        )
        if self.malformed_reasons:
            reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.malformed_reasons.items()))
            text += f"\n  malformed by reason: {reasons}"
        return text


_SELECTOR: Final = re.compile(r"(?:(?:(?P<node>.+):)?(?P<sec>\d{1,19})\.(?P<msec>\d{1,3}):)?(?P<serial>\d{1,19})")


@dataclass(slots=True, frozen=True)
class EventSelector:
    """An ``--event`` value: which events to print raw, like ``ausearch -a SERIAL --raw``.

    Written ``SERIAL`` (any event with that serial, of any time and node),
    ``SEC.MSEC:SERIAL`` (that stamp, any node) or ``NODE:SEC.MSEC:SERIAL`` (the proof ids of
    ``auditfwd sessions --format json``).
    """

    serial: int
    sec: int | None = None
    msec: int | None = None
    node: str | None = None

    def matches(self, event: Event) -> bool:
        """Whether ``event`` is one of the selected ones."""
        return (
            event.serial == self.serial
            and (self.sec is None or (event.sec == self.sec and event.msec == self.msec))
            and (self.node is None or event.node == self.node)
        )


def parse_selector(text: str) -> EventSelector | None:
    """``SERIAL``, ``SEC.MSEC:SERIAL`` or ``NODE:SEC.MSEC:SERIAL``; ``None`` if it is none of them."""
    found = _SELECTOR.fullmatch(text.strip())
    if found is None:
        return None
    serial = int(found["serial"])
    if found["sec"] is None:
        return EventSelector(serial)
    return EventSelector(serial, int(found["sec"]), int(found["msec"]), found["node"])


@dataclass(slots=True)
class ParseSettings:
    normalize: NormalizeOptions
    end_of_event_timeout: int = DEFAULT_END_OF_EVENT_TIMEOUT
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    progress: bool = False
    #: Add the libvirt guest fields (``libvirt.*``, :mod:`forwarder.virt.enrich`).
    guests: bool = True
    #: ``--event``: write only the raw lines of the events these select (nothing normalized).
    events: tuple[EventSelector, ...] = ()


class InputError(Exception):
    """An input could not be opened or read (exit status 2 from the command)."""


class OutputError(Exception):
    """The output could not be written; ``__cause__`` holds the OSError."""


@contextmanager
def open_input(name: str) -> Iterator[IO[bytes]]:
    """Open an input by name: ``-`` is stdin; gzip is recognized by its magic bytes."""
    if name == "-":
        yield sys.stdin.buffer
        return
    try:
        raw = io.BufferedReader(io.FileIO(name, "rb"), buffer_size=READ_BUFFER_BYTES)
    except OSError as exc:
        raise InputError(f"cannot open {name}: {exc.strerror or exc}") from exc
    try:
        if raw.peek(2)[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield io.BufferedReader(unzipped, buffer_size=READ_BUFFER_BYTES)
        else:
            yield raw
    finally:
        raw.close()


def input_size(name: str) -> int | None:
    if name == "-":
        return None
    try:
        return os.path.getsize(name)
    except OSError:
        return None


class DeadLetters:
    """Malformed lines as NDJSON: file, line number, reason and the text."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        self._stream = stream

    def write(self, source: str, line_number: int, malformed: Malformed) -> None:
        if self._stream is not None:
            entry = {"file": source, "line": line_number, "reason": malformed.reason, "text": malformed.text}
            self._stream.write(orjson.dumps(entry) + b"\n")


def parse_files(
    names: list[str],
    output: IO[bytes],
    settings: ParseSettings,
    dead_letters: DeadLetters,
    report: Callable[[str], None],
) -> ParseSummary:
    """Normalize every input in order into ``output``; one assembler spans all inputs.

    Raises:
        InputError: an input cannot be opened or read.
        OutputError: the output cannot be written (a closed pipe included).
    """
    summary = ParseSummary()
    started = time.perf_counter()
    assembler = Assembler(settings.end_of_event_timeout, settings.max_in_flight)
    options = settings.normalize
    write = output.write
    dumps = orjson.dumps
    # One call per document: orjson adds the line end itself.
    ndjson_line = orjson.OPT_APPEND_NEWLINE

    registry = GuestRegistry() if settings.guests else None

    def emit(events: list[Event]) -> None:
        try:
            for event in events:
                document = normalize(event, options)
                if registry is not None:
                    enrich(document, event, registry)
                write(dumps(document, option=ndjson_line))
        except OSError as exc:
            raise OutputError(str(exc)) from exc

    # Under --event only the selected events are written, as raw lines.
    sink = _raw_event_writer(write, settings.events, summary) if settings.events else emit

    for name in names:
        summary.files += 1
        with open_input(name) as stream:
            progress = _progress_bar(name, settings.progress)
            try:
                _parse_stream(name, stream, assembler, sink, summary, dead_letters, report, progress)
            except OSError as exc:
                raise InputError(f"cannot read {name}: {exc}") from exc
            finally:
                if progress is not None:
                    progress.close()
    sink(assembler.flush())
    summary.events = assembler.stats.events
    summary.forced = assembler.stats.forced
    summary.seconds = time.perf_counter() - started
    return summary


def _raw_event_writer(
    write: Callable[[bytes], object], selectors: tuple[EventSelector, ...], summary: ParseSummary
) -> Callable[[list[Event]], None]:
    """An emitter that writes the lines of the selected events as read, in emission order."""
    by_serial: dict[int, list[EventSelector]] = {}
    for selector in selectors:
        by_serial.setdefault(selector.serial, []).append(selector)

    def emit(events: list[Event]) -> None:
        try:
            for event in events:
                wanted = by_serial.get(event.serial)
                if wanted is None or not any(selector.matches(event) for selector in wanted):
                    continue
                summary.matched += 1
                for record in event.records:
                    write(record.text.encode("utf-8", "surrogateescape"))
                    write(b"\n")
        except OSError as exc:
            raise OutputError(str(exc)) from exc

    return emit


def _parse_stream(
    name: str,
    stream: IO[bytes],
    assembler: Assembler,
    emit: Callable[[list[Event]], None],
    summary: ParseSummary,
    dead_letters: DeadLetters,
    report: Callable[[str], None],
    progress: Any,
) -> None:
    feed = assembler.feed
    line_number = 0
    records = 0
    pending_bytes = 0
    for line in stream:
        line_number += 1
        parsed = parse_line(line)
        if type(parsed) is Malformed:
            if parsed.reason == "empty line":
                summary.blank += 1
            else:
                _malformed(name, line_number, parsed, summary, dead_letters, report)
        else:
            records += 1
            ready = feed(parsed)  # type: ignore[arg-type]
            if ready:
                emit(ready)
        if progress is not None:
            pending_bytes += len(line)
            if line_number % PROGRESS_EVERY_LINES == 0:
                progress.update(pending_bytes)
                pending_bytes = 0
    if progress is not None:
        progress.update(pending_bytes)
    summary.lines += line_number
    summary.records += records


def _malformed(
    name: str,
    line_number: int,
    malformed: Malformed,
    summary: ParseSummary,
    dead_letters: DeadLetters,
    report: Callable[[str], None],
) -> None:
    summary.malformed += 1
    reasons = summary.malformed_reasons
    reasons[malformed.reason] = reasons.get(malformed.reason, 0) + 1
    dead_letters.write(name, line_number, malformed)
    if summary.malformed <= MAX_REPORTED_MALFORMED:
        report(f"{name}:{line_number}: malformed line skipped: {malformed.reason}")
    elif summary.malformed == MAX_REPORTED_MALFORMED + 1:
        report("further malformed lines are only counted (--dead-letter FILE keeps them all)")


def _progress_bar(name: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm  # type: ignore[import-untyped]

    return tqdm(
        total=input_size(name),
        desc=os.path.basename(name) if name != "-" else "stdin",
        unit="B",
        unit_scale=True,
        file=sys.stderr,
        leave=False,
    )
