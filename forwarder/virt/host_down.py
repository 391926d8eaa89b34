"""Host shutdowns and crashes close running guest sessions (``auditfwd sessions --host-down``).

auvirt up to audit 2.7 ended every open session at a ``SYSTEM_SHUTDOWN`` record and listed a
``down`` entry; audit 2.8 dropped that, so auvirt 3.0.9 shows a guest that was running when its
host went away as running forever.  :class:`HostDownBuilder` restores the old semantics on top of
:class:`forwarder.virt.sessions.SessionBuilder` and goes further, recognizing crashes too:

* ``SYSTEM_SHUTDOWN``: a clean shutdown at the record's time.
* A boot marker (``DAEMON_START`` or ``SYSTEM_BOOT``) begins a new host period when the
  current period already had a marker of that kind, or had none yet (the first marker of the
  log, or the first after a shutdown).  A new period that no ``SYSTEM_SHUTDOWN`` announced is
  a crash, when events were seen before it: the host is taken as down at the latest event time
  seen before the marker.  So a boot's ``DAEMON_START`` and ``SYSTEM_BOOT`` (in either order)
  reveal one crash, not two; a log that starts with a boot marker has no down.
* ``DAEMON_END`` then ``DAEMON_START`` inside a running period is an auditd restart, not a down.

A down walks back over the successful entries up to the previous down and ends every open
START and resource assignment (end = the down time, proof = the shutdown or boot record), then
appends a :attr:`EntryKind.DOWN` entry: no guest, the record's ``uid`` as user, the down time
as start, ``success`` from the record's ``res`` (always true for a crash).  The text output
prints it like auvirt's other entries (type ``down``, with ``--all-events``).  Downs obey
``--start``/``--end`` (by the down time) and pass ``--vm``/``--uuid`` (they name no guest),
like other events without those fields.  Without ``--host-down`` this module is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from forwarder.audit.record import Event
from forwarder.virt.auparse_fields import FieldCursor
from forwarder.virt.sessions import Entry, EntryKind, EventId, SessionBuilder, SessionFilter

#: Record types of the host's lifecycle (``linux/audit.h``).
SYSTEM_BOOT: Final = 1127
SYSTEM_SHUTDOWN: Final = 1128
DAEMON_START: Final = 1200
DAEMON_END: Final = 1201
_BOOT_MARKERS: Final = frozenset({SYSTEM_BOOT, DAEMON_START})

#: The line auvirt 2.x printed in ``--summary`` for downs, before the failed operations.
SHUTDOWNS_LABEL: Final = "Number of host shutdowns:       "
_FAILED_LABEL: Final = b"Number of failed operations:"


@dataclass(slots=True)
class HostDown:
    """One host down.

    Attributes:
        entry: its DOWN entry in the session list.
        crash: the host went away without a shutdown record.
        marker: the record that revealed it (SYSTEM_SHUTDOWN, or the DAEMON_START / SYSTEM_BOOT
            of the next boot).
        closed: the START entries it ended.
    """

    entry: Entry
    crash: bool
    marker: EventId
    closed: list[Entry]


class HostDownBuilder(SessionBuilder):
    """:class:`SessionBuilder` that also ends sessions at host shutdowns and crashes.

    Args:
        event_filter: the command line's filters.
        users: uid -> user name for user ids without an ENRICHED interpretation.
        host_down: track downs; ``False`` makes this builder behave exactly as its base.

    Read :attr:`downs` (in list order) besides :attr:`entries`.
    """

    def __init__(
        self, event_filter: SessionFilter, users: Mapping[int, str] | None = None, host_down: bool = True
    ) -> None:
        super().__init__(event_filter, users)
        self.host_down = host_down
        self.downs: list[HostDown] = []
        #: START entries ended by a down -> that down.
        self.closed_by: dict[Entry, HostDown] = {}
        self._latest_sec: int | None = None
        #: Boot markers seen in the current host period.
        self._period: set[int] = set()
        self._after_shutdown = False
        self._daemon_ended = False

    def add(self, event: Event) -> None:
        """Process one event: host lifecycle first (when tracked), then auvirt's handlers."""
        if self.host_down and event.records:
            self._track(event)
            if self._latest_sec is None or event.sec > self._latest_sec:
                self._latest_sec = event.sec
        super().add(event)

    def note_time(self, sec: int) -> None:
        """Count an event time seen without its event (a source that gives only some events, such
        as an index query, tells the latest time before a boot marker this way)."""
        if self._latest_sec is None or sec > self._latest_sec:
            self._latest_sec = sec

    def _track(self, event: Event) -> None:
        type_id = event.records[0].type_id
        if type_id == SYSTEM_SHUTDOWN:
            self._down(event, event.sec, crash=False)
            self._period.clear()
            self._after_shutdown = True
        elif type_id == DAEMON_END:
            self._daemon_ended = True
        elif type_id in _BOOT_MARKERS:
            self._boot_marker(event, type_id)

    def _boot_marker(self, event: Event, type_id: int) -> None:
        restart = type_id == DAEMON_START and self._daemon_ended and self._period and not self._after_shutdown
        self._daemon_ended = False
        if not restart and (type_id in self._period or not self._period):
            if not self._after_shutdown and self._latest_sec is not None:
                self._down(event, self._latest_sec, crash=True)
            self._period.clear()
            self._after_shutdown = False
        self._period.add(type_id)

    def _in_window(self, sec: int) -> bool:
        wanted = self.filter
        return not (wanted.start_time and sec < wanted.start_time) and not (wanted.end_time and sec > wanted.end_time)

    def _down(self, event: Event, sec: int, crash: bool) -> None:
        if not self._in_window(sec):
            return
        cursor = FieldCursor(event, self.users)
        user = cursor.interpret() if cursor.find("uid") is not None else None
        success = True
        if not crash:
            cursor.first_record()
            success = cursor.find("res") == "success"
        marker = EventId(event.node, event.sec, event.msec, event.serial)
        closed: list[Entry] = []
        for entry in reversed(self.entries):
            if not entry.success:
                continue
            if entry.kind is EntryKind.DOWN:
                break
            if entry.kind in (EntryKind.START, EntryKind.RESOURCE) and entry.end == 0:
                entry.end = sec
                entry.add_proof(marker)
                if entry.kind is EntryKind.START:
                    closed.append(entry)
        down_entry = Entry(EntryKind.DOWN, sec, user, None, None, success)
        down_entry.add_proof(marker)
        self.entries.append(down_entry)
        down = HostDown(down_entry, crash, marker, closed[::-1])
        self.downs.append(down)
        for session in closed:
            self.closed_by[session] = down


def with_shutdown_count(summary_text: bytes, downs: int) -> bytes:
    """auvirt's ``--summary`` text with auvirt 2.x's host-shutdown line before the failures."""
    line = f"{SHUTDOWNS_LABEL}{downs}\n".encode("ascii")
    at = summary_text.find(_FAILED_LABEL)
    if at < 0:
        return summary_text + line
    return summary_text[:at] + line + summary_text[at:]
