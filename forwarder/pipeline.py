"""The running forwarder: tail -> parse -> assemble -> normalize -> batch -> sink -> ack -> checkpoint.

Three tasks share one event loop:

* the **reader** takes batches of lines from the :class:`~forwarder.tail.Tailer`, runs the pure
  stages and queues documents in the bounded :class:`~forwarder.sinks.batch.Batcher` (a full queue
  stops it, so a slow sink stops the reading and the log on disk is the buffer);
* the **sender** hands batches to :class:`~forwarder.sinks.delivery.Delivery` and acknowledges each
  event's ticket in the :class:`~forwarder.checkpoint.AckTracker`;
* the **checkpointer** writes the tracker's checkpoint every ``checkpoint_interval``.

Every record remembers the position of its line through its event's ticket (kept beside the
assembler, keyed by the event's first record), so the checkpoint is the start of the oldest event
not acknowledged, whatever the interleaving.

A graceful stop (SIGTERM, SIGINT) stops reading, sends what is queued, waits for the
acknowledgements (at most ``shutdown_timeout``), writes the checkpoint and returns 0.  Events still
open in the assembler are not sent: the checkpoint points before them and the next run reads them
whole.  Malformed lines, over-long lines and documents the output rejects go to the dead-letter
file ``dead-letter.ndjson`` in the state directory with the reason; they never stop the flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

import orjson

from forwarder.accounts import parse_id_names
from forwarder.audit.assemble import Assembler
from forwarder.audit.record import Event, Malformed, parse_line
from forwarder.checkpoint import AckTracker, Checkpoint, CheckpointError, CheckpointStore, Ticket
from forwarder.config import Config, split_listen
from forwarder.ecs.normalize import NormalizeOptions, normalize
from forwarder.metrics import MetricsRegistry, MetricsServer
from forwarder.sinks import Document, Outcome, Sink, create_sink
from forwarder.sinks.batch import Batcher, BatchLimits
from forwarder.sinks.delivery import Delivery, RetryPolicy
from forwarder.tail import Position, StartPoint, Tailer, TailLine, TailOptions
from forwarder.virt.enrich import enrich
from forwarder.virt.guests import GuestRegistry

log = logging.getLogger(__name__)

#: Dead-letter file name in the state directory.
DEAD_LETTER_FILE: Final = "dead-letter.ndjson"

#: Bytes of an over-long line or rejected document kept in its dead-letter entry.
DEAD_LETTER_TEXT_BYTES: Final = 64 << 10

#: The health check fails once the output has failed without a success for this long (seconds):
#: long enough to ride out an engine restart, short enough for an orchestrator to notice.
UNHEALTHY_AFTER_FAILING: Final = 300.0

#: Exit status of a run that stopped on an internal error (configuration errors exit with 2).
EXIT_FAILURE: Final = 1

_Item = tuple[Document, Ticket]


#: Name of the guest registry's state in the checkpoint's ``stages``.
GUESTS_STAGE: Final = "guests"


class StartError(Exception):
    """The run cannot start (damaged checkpoint, unusable state directory)."""


@dataclass(slots=True)
class PipelineStats:
    """Counters of the shell (the stages keep their own)."""

    lines: int = 0
    blank: int = 0
    records: int = 0
    malformed: int = 0
    dead_lettered: int = 0
    events: int = 0
    #: Events met again after a restart that the previous run had delivered (not sent again).
    skipped_delivered: int = 0
    #: Times open events were handed out because the log was quiet for ``idle_flush``.
    idle_flushes: int = 0
    idle_flushed_events: int = 0


class DeadLetters:
    """The dead-letter NDJSON file: one entry per malformed line or rejected document.

    The file moves to ``.1`` (replacing the previous one) when it reaches ``max_bytes``.
    """

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._handle: BinaryIO | None = None
        self._size = 0

    def write(self, kind: str, reason: str, text: bytes | str, position: Position | None = None) -> None:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kind": kind,
            "reason": reason,
        }
        if position is not None:
            entry["file"] = {"device": position.file.device, "inode": position.file.inode}
            entry["offset"] = position.start
        if isinstance(text, bytes):
            text = text[:DEAD_LETTER_TEXT_BYTES].decode("utf-8", "backslashreplace")
        entry["text"] = text[:DEAD_LETTER_TEXT_BYTES]
        line = orjson.dumps(entry) + b"\n"
        handle = self._open()
        handle.write(line)
        self._size += len(line)
        if self._size >= self.max_bytes:
            self._rotate()

    def sync(self) -> None:
        """Flush and fsync (before a checkpoint passes the lines these entries came from)."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self.sync()
            self._handle.close()
            self._handle = None

    def _open(self) -> BinaryIO:
        if self._handle is None:
            self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open for the run
            self._size = self._handle.tell()
        return self._handle

    def _rotate(self) -> None:
        self.close()
        os.replace(self.path, self.path + ".1")
        self._size = 0


def normalize_options(config: Config) -> NormalizeOptions:
    """The normalizer's options from the configuration (reads the passwd/group snapshots)."""
    users = parse_id_names(_read_text(config.passwd_file)) if config.passwd_file else {}
    groups = parse_id_names(_read_text(config.group_file)) if config.group_file else {}
    return NormalizeOptions(
        host_name=config.host_name or socket.gethostname(),
        include_original=config.include_original,
        users=users,
        groups=groups,
    )


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        raise StartError(f"cannot read {path}: {exc.strerror or exc}") from None


class Pipeline:
    """One run of the forwarder.

    Args:
        config: the validated configuration.
        sink: the output (default: made from ``config.output``).
        options: normalizer options (default: from the configuration).
        store: the checkpoint store (default: in ``config.state_dir``).
    """

    def __init__(
        self,
        config: Config,
        sink: Sink | None = None,
        options: NormalizeOptions | None = None,
        store: CheckpointStore | None = None,
    ) -> None:
        self.config = config
        try:
            self.sink = sink if sink is not None else create_sink(config.output, config)
        except ValueError as exc:
            raise StartError(f"output: {exc}") from None
        self.options = options if options is not None else normalize_options(config)
        #: The guests learned so far (enrichment); persisted with every checkpoint.
        self.registry = GuestRegistry()
        self.store = store if store is not None else CheckpointStore(config.state_dir)
        self.stats = PipelineStats()
        self.assembler = Assembler(config.end_of_event_timeout, config.max_in_flight)
        self.batcher: Batcher[_Item] = Batcher(
            BatchLimits(config.batch_max_documents, config.batch_max_bytes, config.batch_max_age),
            config.queue_max_documents,
        )
        self.delivery = Delivery(self.sink, RetryPolicy(config.retry_initial_backoff, config.retry_max_backoff))
        self.dead_letters = DeadLetters(os.path.join(config.state_dir, DEAD_LETTER_FILE), config.dead_letter_max_bytes)
        self.metrics = MetricsRegistry()
        self.metrics_address: tuple[str, int] | None = None
        self.tracker = AckTracker()
        self.tailer: Tailer | None = None
        self._stop = asyncio.Event()
        self._stopping = False
        self._started = time.monotonic()
        self._tickets: dict[int, Ticket] = {}
        self._seq = 0
        self._last_line = time.monotonic()
        self._last_checkpoint: Checkpoint | None = None
        self._resumed: Checkpoint | None = None
        self._register_metrics()

    # ---------------------------------------------------------------- control

    def request_stop(self) -> None:
        """Begin a graceful stop (safe to call from a signal handler)."""
        if not self._stop.is_set():
            log.info("stopping: finishing what was read, waiting for acknowledgements")
        self._stop.set()
        if self.tailer is not None:
            self.tailer.stop()

    def start_point(self) -> tuple[StartPoint, Checkpoint | None]:
        """Where to start reading, and the checkpoint resumed (if any).

        Raises:
            StartError: a damaged checkpoint (the message tells how to start anyway).
        """
        mode = self.config.start_from
        if mode != "checkpoint":
            return ("beginning" if mode == "beginning" else "end"), None
        try:
            checkpoint = self.store.load()
        except (CheckpointError, OSError) as exc:
            raise StartError(
                f"the checkpoint {self.store.path} cannot be used: {exc}; "
                "start with --from beginning or --from end to replace it"
            ) from None
        if checkpoint is None:
            log.info(
                "no checkpoint in %s: reading %s and its rotations from the oldest",
                self.config.state_dir,
                self.config.input,
            )
            return "beginning", None
        return checkpoint.position, checkpoint

    async def run(self, install_signals: bool = True) -> int:
        """Run until stopped; returns the exit status."""
        config = self.config
        try:
            os.makedirs(config.state_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StartError(f"cannot create the state directory {config.state_dir}: {exc.strerror or exc}") from None
        start, checkpoint = self.start_point()
        self.tracker = AckTracker(checkpoint)
        self.tailer = Tailer(
            config.input,
            start,
            TailOptions(config.poll_interval, config.retry_interval, max_line_bytes=config.max_line_bytes),
            checkpoint.finished_files if checkpoint is not None else (),
        )
        self._resumed = checkpoint
        if checkpoint is not None and GUESTS_STAGE in checkpoint.stages:
            self.registry = GuestRegistry.from_state(checkpoint.stages[GUESTS_STAGE])
        loop = asyncio.get_running_loop()
        if install_signals:
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(number, self.request_stop)
        server: MetricsServer | None = None
        if config.metrics_listen:
            server = MetricsServer(self.metrics, self.health)
            host, port = split_listen(config.metrics_listen)
            try:
                self.metrics_address = await server.start(host, port)
            except OSError as exc:
                raise StartError(f"cannot listen on {config.metrics_listen}: {exc.strerror or exc}") from None
            log.info("metrics on http://%s:%d/metrics", *self.metrics_address)
        log.info("forwarding %s to %s", config.input, self.sink.describe())
        reader = asyncio.create_task(self._read(), name="reader")
        sender = asyncio.create_task(self._send(), name="sender")
        checkpointer = asyncio.create_task(self._checkpoints(), name="checkpointer")
        status = 0
        try:
            status = await self._supervise(reader, sender)
        finally:
            checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpointer
            await self._write_checkpoint()
            await self.sink.close()
            self.dead_letters.close()
            if server is not None:
                await server.close()
            if install_signals:
                for number in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(number)
        log.info(
            "stopped: %d lines, %d events, %d delivered, %d dead letters",
            self.stats.lines,
            self.stats.events,
            self.delivery.stats.documents,
            self.stats.dead_lettered,
        )
        return status

    async def _supervise(self, reader: asyncio.Task[None], sender: asyncio.Task[None]) -> int:
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait({reader, sender, stop}, return_when=asyncio.FIRST_COMPLETED)
        status = 0
        for task in (reader, sender):
            if task in done and task.exception() is not None:
                log.error("the %s failed", task.get_name(), exc_info=task.exception())
                status = EXIT_FAILURE
        self.request_stop()
        stop.cancel()
        deadline = time.monotonic() + self.config.shutdown_timeout
        # Stop reading: the reader ends after its batch (or is cancelled when the queue stays full).
        if not await _wait(reader, deadline):
            log.warning("the output did not take the queued documents in time; they will be read again")
        await self.batcher.close()
        if not await _wait(sender, deadline):
            log.warning("acknowledgements did not come in time; unacknowledged events will be read again")
        for task in (reader, sender):
            if task.done() and not task.cancelled() and task.exception() is not None and status == 0:
                log.error("the %s failed", task.get_name(), exc_info=task.exception())
                status = EXIT_FAILURE
        return status

    # ---------------------------------------------------------------- reader

    async def _read(self) -> None:
        assert self.tailer is not None
        tracker = self.tracker
        async for batch in self.tailer.batches():
            if batch:
                self._last_line = time.monotonic()
                items = self._process(batch)
                last = batch[-1].position
                tracker.line_read(self._seq, last)
            else:
                items = self._idle()
            put = self.batcher.put
            for item in items:
                await put(item, len(item[0].body))
            # Let the sender, the checkpointer and the metrics server run between batches.
            await asyncio.sleep(0)

    def _idle(self) -> list[_Item]:
        """At the end of the log: move the read position on, flush open events after a quiet time."""
        assert self.tailer is not None
        position = self.tailer.idle_position()
        if position is not None:
            self.tracker.line_read(self._seq, position)
        if not self.assembler.in_flight or time.monotonic() - self._last_line < self.config.idle_flush:
            return []
        events = self.assembler.flush()
        self.stats.idle_flushes += 1
        self.stats.idle_flushed_events += len(events)
        return self._documents(events)

    def _process(self, batch: Sequence[TailLine]) -> list[_Item]:
        """The pure stages over one batch of lines; returns the documents to send."""
        stats = self.stats
        assembler = self.assembler
        feed = assembler.feed
        tracker = self.tracker
        tickets = self._tickets
        open_ticket = tracker.open
        watching = tracker.watching_horizon
        alias = self.tailer.resumed_as if self.tailer is not None else None
        items: list[_Item] = []
        seq = self._seq
        records = 0
        for data, position, truncated in batch:
            seq += 1
            if watching:
                tracker.passed(seq, position, alias)
                watching = tracker.watching_horizon
            if truncated:
                self._dead_letter("oversize", f"line longer than {self.config.max_line_bytes} bytes", data, position)
                continue
            parsed = parse_line(data)
            if type(parsed) is Malformed:
                if parsed.reason == "empty line":
                    stats.blank += 1
                else:
                    stats.malformed += 1
                    self._dead_letter("malformed", parsed.reason, parsed.text, position)
                continue
            records += 1
            before = assembler.in_flight
            ready = feed(parsed)  # type: ignore[arg-type]
            if assembler.in_flight + len(ready) > before:
                # This record started an event: its ticket opens at this line.
                tickets[id(parsed)] = open_ticket(position, seq)
            if ready:
                self._seq = seq
                items.extend(self._documents(ready))
        self._seq = seq
        stats.lines += len(batch)
        stats.records += records
        return items

    def _documents(self, events: list[Event]) -> list[_Item]:
        tickets = self._tickets
        tracker = self.tracker
        options = self.options
        registry = self.registry
        seq = self._seq
        dumps = orjson.dumps
        items: list[_Item] = []
        for event in events:
            ticket = tickets.pop(id(event.records[0]))
            document = normalize(event, options)
            enrich(document, event, registry)
            doc_id: str = document["event"]["id"]
            if tracker.emitted(ticket, seq, doc_id):
                items.append((Document(doc_id, dumps(document)), ticket))
            else:
                self.stats.skipped_delivered += 1
        self.stats.events += len(events)
        return items

    def _dead_letter(self, kind: str, reason: str, text: bytes | str, position: Position | None) -> None:
        try:
            self.dead_letters.write(kind, reason, text, position)
            self.stats.dead_lettered += 1
        except OSError as exc:
            log.error("cannot write the dead-letter file %s: %s", self.dead_letters.path, exc.strerror or exc)

    # ---------------------------------------------------------------- sender

    async def _send(self) -> None:
        tracker = self.tracker
        while True:
            batch = await self.batcher.next_batch()
            if batch is None:
                return
            results = await self.delivery.deliver([document for document, _ in batch])
            for (document, ticket), result in zip(batch, results, strict=True):
                if result.outcome is Outcome.REJECTED:
                    self._dead_letter("rejected", result.reason, document.body, None)
                tracker.acknowledge(ticket, document.id)

    # ---------------------------------------------------------------- checkpoints

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.config.checkpoint_interval)
            await self._write_checkpoint()

    async def _write_checkpoint(self) -> None:
        checkpoint = self.tracker.checkpoint()
        if checkpoint is None:
            return
        finished = self.tailer.older_files(checkpoint.position.file) if self.tailer is not None else None
        if finished is None:
            # The tailer has not opened that file in this run: keep what the last checkpoint knew.
            previous = self._last_checkpoint or self._resumed
            finished = list(previous.finished_files) if previous is not None else []
        checkpoint = dataclasses.replace(
            checkpoint, finished_files=tuple(finished), stages={GUESTS_STAGE: self.registry.to_state()}
        )
        if _same(checkpoint, self._last_checkpoint):
            return
        try:
            await asyncio.to_thread(self.dead_letters.sync)
            await self.store.save(checkpoint)
            self._last_checkpoint = checkpoint
        except OSError as exc:
            log.error("cannot write the checkpoint %s: %s", self.store.path, exc.strerror or exc)

    # ---------------------------------------------------------------- operations

    def health(self) -> tuple[bool, str]:
        """``/healthz``: unhealthy while stopping, or when the output has been failing too long."""
        if self._stop.is_set():
            return False, "stopping"
        failing = self.delivery.stats.failing_since
        if failing is not None and time.monotonic() - failing > UNHEALTHY_AFTER_FAILING:
            return False, f"the output has been failing for {time.monotonic() - failing:.0f} s"
        return True, "ok"

    def _register_metrics(self) -> None:
        add = self.metrics.add
        stats = self.stats
        delivery = self.delivery.stats
        assembler = self.assembler

        def tail_stat(name: str) -> Callable[[], float]:
            return lambda: getattr(self.tailer.stats, name) if self.tailer is not None else 0

        add("auditfwd_lines_total", "counter", "Lines read from the audit log.", lambda: stats.lines)
        add("auditfwd_records_total", "counter", "Audit records parsed.", lambda: stats.records)
        add("auditfwd_events_total", "counter", "Events assembled.", lambda: stats.events)
        add("auditfwd_malformed_lines_total", "counter", "Lines that are not audit records.", lambda: stats.malformed)
        add(
            "auditfwd_dead_lettered_total",
            "counter",
            "Entries written to the dead-letter file.",
            lambda: stats.dead_lettered,
        )
        add(
            "auditfwd_assembler_forced_events_total",
            "counter",
            "Events closed early because too many were open (records may be missing).",
            lambda: assembler.stats.forced,
        )
        add(
            "auditfwd_assembler_idle_flushes_total",
            "counter",
            "Times open events were sent because the log was quiet.",
            lambda: stats.idle_flushes,
        )
        add("auditfwd_events_in_flight", "gauge", "Events read and not yet assembled.", lambda: assembler.in_flight)
        add(
            "auditfwd_events_skipped_total",
            "counter",
            "Events met again after a restart and not sent again (already delivered).",
            lambda: stats.skipped_delivered,
        )
        add(
            "auditfwd_bytes_behind",
            "gauge",
            "Bytes of the log and its rotations not read yet.",
            lambda: self.tailer.bytes_behind() if self.tailer is not None else 0,
        )
        add("auditfwd_rotations_total", "counter", "Rotated or removed files finished.", tail_stat("rotations"))
        add(
            "auditfwd_truncations_total",
            "counter",
            "Truncations of the log seen (copytruncate).",
            tail_stat("truncations"),
        )
        add("auditfwd_read_errors_total", "counter", "Failures to open the log (retried).", tail_stat("errors"))
        add("auditfwd_batches_total", "counter", "Batches delivered to the output.", lambda: delivery.batches)
        add(
            "auditfwd_documents_total",
            "counter",
            "Documents delivered or rejected by the output.",
            lambda: delivery.documents,
        )
        add("auditfwd_retries_total", "counter", "Retries of batches or documents.", lambda: delivery.retries)
        add(
            "auditfwd_rejected_total",
            "counter",
            "Documents the output rejected (dead-lettered).",
            lambda: delivery.rejected,
        )
        add("auditfwd_queued_documents", "gauge", "Documents waiting for the output.", lambda: self.batcher.queued)
        add("auditfwd_checkpoint_writes_total", "counter", "Checkpoints written.", lambda: self.store.writes)
        add(
            "auditfwd_checkpoint_age_seconds",
            "gauge",
            "Seconds since the last checkpoint was written (since the start before the first).",
            lambda: time.monotonic() - (self.store.last_written or self._started),
        )


def _same(first: Checkpoint, second: Checkpoint | None) -> bool:
    return (
        second is not None
        and first.position == second.position
        and first.read_to == second.read_to
        and first.acknowledged == second.acknowledged
        and first.stages == second.stages
        and first.finished_files == second.finished_files
    )


async def _wait(task: asyncio.Task[None], deadline: float) -> bool:
    """Wait for ``task`` until ``deadline`` (monotonic); cancel it then.  True when it ended."""
    remaining = max(0.0, deadline - time.monotonic())
    done, _ = await asyncio.wait({task}, timeout=remaining)
    if task in done:
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False
