"""Records -> events, by auditd's end-of-event rules, in libauparse's emission order.

auditd never writes EOE records to its log file (they exist only for realtime consumers), so an
event read from a file ends by the rules of ``auditd.conf(5)`` (NOTES), which libauparse applies:

* a record of an end-of-event type ends its event: PROCTITLE ("always the last record"), EOE,
  every type below 1300 (user-space and daemon messages), KERNEL, 1406-1419 (labelled networking),
  and every type from 2100 on (user-space anomalies, integrity, VIRT_*, ...);
* otherwise an event ends once a later line is ``end_of_event_timeout`` seconds newer than the
  event, in **log time** (whole seconds of the audit header), so a replayed backlog groups exactly
  as live tailing does.

Emission follows libauparse: only after a line that started a new event (and at :meth:`flush`),
hand out the pending event with the smallest ``(sec, msec, serial)`` while it is complete.  Ties
(the same stamp on two nodes, or a late record of an emitted event) go to the event in the lowest
slot of libauparse's event array, where a new event takes the first free slot; we keep the same
slot numbers so that even ties come out in the same order.

The :class:`Assembler` is pure: no clock, no I/O.  The shell feeds records and takes events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Final

from forwarder.audit.record import Event, Record, parse_line

#: auditd's own default (``end_of_event_timeout = 2`` in auditd.conf) and libauparse's.
DEFAULT_END_OF_EVENT_TIMEOUT: Final = 2

#: Events open at once before the oldest is closed early.  A busy hypervisor has a few dozen
#: events in flight; Auditbeat's reassembler keeps 50, libauparse has no cap at all.  Ten
#: thousand keeps memory bounded (a few MiB) far above anything a healthy log produces.
DEFAULT_MAX_IN_FLIGHT: Final = 10_000

#: How long (log seconds) the keys of emitted kernel events are remembered to recognize records
#: that come after their event was complete.  auditd writes an event's records within
#: milliseconds; a minute covers a stalled kernel backlog many times over.
FRAGMENT_MEMORY_SECONDS: Final = 60
#: Keys remembered at most (bounded memory whatever the log looks like): a minute of a busy
#: host's kernel events.  Each new key forgets at most one old one, so the cost stays O(1).
FRAGMENT_MEMORY_KEYS: Final = 20_000

_EOE: Final = 1320
_PROCTITLE: Final = 1327
_KERNEL: Final = 2000
_FIRST_SYSCALL_TYPE: Final = 1300
_FIRST_USER_ANOMALY: Final = 2100


def ends_event(type_id: int) -> bool:
    """True when a record of this type is the last of its event (auditd.conf(5), NOTES)."""
    return (
        type_id < _FIRST_SYSCALL_TYPE
        or type_id >= _FIRST_USER_ANOMALY
        or type_id in (_PROCTITLE, _EOE, _KERNEL)
        or 1406 <= type_id <= 1419
    )


#: Record type numbers below this have their answer in :data:`_ENDS_EVENT` (every type libaudit
#: knows is below 3000); others, and negative ones, ask :func:`ends_event`.
_ENDS_EVENT_TYPES: Final = 3000

#: :func:`ends_event` of every type number from 0 up to :data:`_ENDS_EVENT_TYPES`, indexed by the
#: number (precomputed for the hot path; a list index needs no ``int`` object in the compiled build).
_ENDS_EVENT: Final[list[bool]] = [ends_event(type_id) for type_id in range(_ENDS_EVENT_TYPES)]


@dataclass(slots=True)
class AssemblerStats:
    """Counters the shell exports as metrics."""

    records: int = 0
    events: int = 0
    #: Events closed early because the in-flight cap was reached.
    forced: int = 0
    #: EOE records that arrived for no open event (libauparse drops them too).
    orphan_eoe: int = 0


#: An event not yet emitted, as kept in the heap: ``(sec, msec, serial, slot, event, state)``,
#: ordered as libauparse hands events out (the slot is unique, so the rest is never compared).
#: ``state`` is a one-item list, ``[True]`` once the event is complete.
_Pending = tuple[int, int, int, int, Event, list[bool]]
_SLOT: Final = 3
_EVENT: Final = 4
_STATE: Final = 5

#: An event still being built: the event and its heap entry's ``state``.  (Not the heap entry
#: itself: the compiled build would pack that tuple, and its ``int`` objects, anew to store it.)
_Building = tuple[Event, list[bool]]

#: The key of an event: ``(node, sec, msec, serial)``.  Typed as a tuple of any length so that the
#: compiled build keeps a key as the one tuple object it is: a fixed-length tuple type is held as
#: its native items, and packed again into a new tuple (and new ``int`` objects) for every dict
#: or set operation.
_Key = tuple[str | int | None, ...]

#: A log second no line reaches (the timeout scan's start when nothing is building).
_NEVER: Final = 1 << 62


class Assembler:
    """Groups records into events.

    Args:
        end_of_event_timeout: seconds of log time after which an open event is complete.
        max_in_flight: open events kept before the oldest is closed early (counted in
            ``stats.forced`` and marked ``Event.forced``).
        fragment_memory_seconds, fragment_memory_keys: how long (log seconds) and how many keys
            of emitted kernel events are remembered to mark later records as fragments
            (:data:`FRAGMENT_MEMORY_SECONDS`, :data:`FRAGMENT_MEMORY_KEYS`).

    Use :meth:`feed` for each record in log order and :meth:`flush` at the end of input.
    """

    def __init__(
        self,
        end_of_event_timeout: int = DEFAULT_END_OF_EVENT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        fragment_memory_seconds: int = FRAGMENT_MEMORY_SECONDS,
        fragment_memory_keys: int = FRAGMENT_MEMORY_KEYS,
    ) -> None:
        if end_of_event_timeout < 0:
            raise ValueError("end_of_event_timeout must be >= 0")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.timeout = end_of_event_timeout
        self.max_in_flight = max_in_flight
        self.fragment_memory_seconds = fragment_memory_seconds
        self.fragment_memory_keys = fragment_memory_keys
        self.stats = AssemblerStats()
        # Events still being built, by key.
        self._building: dict[_Key, _Building] = {}
        # Every event not yet emitted, ordered as libauparse hands them out.
        self._heap: list[_Pending] = []
        # libauparse's slot numbers: a new event takes the lowest free one.
        self._free_slots: list[int] = []
        self._next_slot = 0
        # The log second from which a building event may have timed out: no building event is
        # older than this minus the timeout, so lines before it skip the timeout scan (a scan
        # when nothing is due, or nothing is building, changes nothing).
        self._expire_from = _NEVER
        # Keys of recent kernel events, and the same keys with their seconds in creation order
        # (to forget the oldest first), to mark later fragments.
        self._recent_keys: set[_Key] = set()
        self._recent_order: deque[tuple[_Key, int]] = deque()
        # The event the record before went to (or began) and its state: an event's records come
        # one after another, so the next record mostly belongs to it, which tells without a key
        # or a look-up while the state says it is still building.  None yet: a stand-in, complete.
        self._last_event = Event(None, 0, 0, 0)
        self._last_state = [True]

    @property
    def in_flight(self) -> int:
        """Events read but not yet emitted."""
        return len(self._heap)

    def feed(self, record: Record) -> list[Event]:
        """Add one record; return the events that became ready, in emission order."""
        stats = self.stats
        stats.records += 1
        node = record.node
        sec = record.sec
        msec = record.msec
        serial = record.serial
        type_id = record.type_id
        ends = _ENDS_EVENT[type_id] if 0 <= type_id < _ENDS_EVENT_TYPES else ends_event(type_id)
        building = self._building
        event = self._last_event
        state = self._last_state
        if state[0] or event.serial != serial or event.msec != msec or event.sec != sec or event.node != node:
            key: _Key = (node, sec, msec, serial)
            open_event = building.get(key)
            if open_event is None:  # the record begins an event
                if type_id == _EOE:
                    # Dropped before its time is looked at: it closes nothing by timeout either.
                    stats.orphan_eoe += 1
                    return []
                event = Event(node, sec, msec, serial, [record], False, False)
                if not (type_id < _FIRST_SYSCALL_TYPE or type_id >= _FIRST_USER_ANOMALY):  # not standalone
                    self._remember(key, event)
                free = self._free_slots
                heap = self._heap
                if ends and not heap:
                    # Nothing pending (so nothing building): the event is complete and handed out
                    # at once.  It takes the lowest free slot and frees it again; with nothing
                    # pending every slot is free, so that is slot 0, which only the first event makes.
                    if not free:
                        free.append(0)
                        self._next_slot = 1
                    stats.events += 1
                    return [event]
                if free:
                    slot = heappop(free)
                else:
                    slot = self._next_slot
                    self._next_slot = slot + 1
                state = [ends]
                heappush(heap, (sec, msec, serial, slot, event, state))
                if not ends:
                    if not building or sec + self.timeout < self._expire_from:
                        self._expire_from = sec + self.timeout
                    building[key] = (event, state)
                    self._last_event = event
                    self._last_state = state
                if sec >= self._expire_from:
                    self._expire(sec)
                # A line that started an event: hand out what is ready.
                ready = self._emit()
                if len(heap) > self.max_in_flight:
                    ready.extend(self._force())
                return ready
            event, state = open_event
            self._last_event = event
            self._last_state = state
        event.records.append(record)
        if ends:
            state[0] = True
            del building[(node, sec, msec, serial)]
        if sec >= self._expire_from:
            self._expire(sec)
        return []

    def flush(self) -> list[Event]:
        """End of input: every pending event is complete; return them all in emission order."""
        ready: list[Event] = []
        while self._heap:
            pending = heappop(self._heap)
            ready.append(pending[_EVENT])
        self._building.clear()
        self._last_state = [True]
        self._free_slots.clear()
        self._next_slot = 0
        self._expire_from = _NEVER
        self.stats.events += len(ready)
        return ready

    def _remember(self, key: _Key, event: Event) -> None:
        recent = self._recent_keys
        if key in recent:
            event.fragment = True
            return
        recent.add(key)
        order = self._recent_order
        sec = event.sec
        order.append((key, sec))
        # Keys arrive in (nearly) time order: forget from the oldest end, a step at a time.
        old_key, old_sec = order[0]
        if old_sec < sec - self.fragment_memory_seconds or len(recent) > self.fragment_memory_keys:
            order.popleft()
            recent.discard(old_key)

    def _expire(self, now_sec: int) -> None:
        limit = now_sec - self.timeout
        oldest: int | None = None
        expired = []
        for key, (event, _) in self._building.items():
            sec = event.sec
            if sec <= limit:
                expired.append(key)
            elif oldest is None or sec < oldest:
                oldest = sec
        for key in expired:
            self._building.pop(key)[1][0] = True
        self._expire_from = oldest + self.timeout if oldest is not None else _NEVER

    def _emit(self) -> list[Event]:
        heap = self._heap
        ready: list[Event] = []
        free = self._free_slots
        while heap and heap[0][_STATE][0]:
            entry = heappop(heap)
            heappush(free, entry[_SLOT])
            ready.append(entry[_EVENT])
        self.stats.events += len(ready)
        return ready

    def _force(self) -> list[Event]:
        ready: list[Event] = []
        while len(self._heap) > self.max_in_flight:
            entry = heappop(self._heap)
            heappush(self._free_slots, entry[_SLOT])
            event = entry[_EVENT]
            if not entry[_STATE][0]:
                entry[_STATE][0] = True  # no longer building
                event.forced = True
                self._building.pop(event.key, None)
                self.stats.forced += 1
            ready.append(event)
            self.stats.events += 1
            ready.extend(self._emit())
        return ready


def assemble_lines(lines: Iterable[bytes | str], assembler: Assembler | None = None) -> list[Event]:
    """Every event of a whole log held in memory, in emission order.

    Args:
        lines: the log's lines (line ends are ignored).
        assembler: the assembler to use (its options); a default one when ``None``.

    Returns:
        The events, the assembler flushed at the end.  Malformed lines are skipped: callers
        that must report them parse the lines themselves (``auditfwd parse`` does).
    """
    assembler = assembler if assembler is not None else Assembler()
    events: list[Event] = []
    for line in lines:
        record = parse_line(line)
        if isinstance(record, Record):
            events.extend(assembler.feed(record))
    events.extend(assembler.flush())
    return events
