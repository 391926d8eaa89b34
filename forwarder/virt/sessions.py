"""Guest sessions from audit events, with the semantics of auvirt 3.0.9 (``docs/virt-audit.md`` §2).

:class:`SessionBuilder` takes events in libauparse's emission order (as
:class:`forwarder.audit.assemble.Assembler` hands them out) and keeps auvirt's single list of
entries: guest starts and stops, security labels (MACHINE_ID), resource assignments, AVC
denials and anomalies, correlated the way auvirt does it - including its quirks, because
scripts parse auvirt's output:

* fields are read through libauparse's forward-only cursor (:class:`FieldCursor`), so a field
  that precedes the one searched before it is not found;
* a stop closes the open resources of the guest's last session by walking back over the list;
  a failed start closes those of the session before it;
* an anomaly is attributed only when the newest entry is the open start of its guest (a loop
  in auvirt looks at the last entry only);
* an SELinux AVC goes to the newest label owner of its *source* context's level; an AppArmor
  AVC to the guest of its ``libvirt-UUID`` profile and, independently, to the newest open
  resource of any guest named like its object (so it may be counted twice).

The builder is pure: no clock, no I/O.  Entries keep every value a renderer needs (auvirt's
text in :mod:`forwarder.virt.auvirt_format`, other formats later).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from forwarder.audit.record import Event
from forwarder.virt.auparse_fields import FieldCursor

#: Record types read by auvirt.
VIRT_CONTROL: Final = 2500
VIRT_RESOURCE: Final = 2501
VIRT_MACHINE_ID: Final = 2502
AVC: Final = 1400
#: Kernel anomalies (ANOM_PROMISCUOUS ...) and user-space anomalies (ANOM_LOGIN_FAILURES ...).
KERNEL_ANOMALIES: Final = range(1700, 1800)
USER_ANOMALIES: Final = range(2100, 2200)

#: auvirt keeps at most this many proof ids per entry (its ``proof[4]`` array).
MAX_PROOFS: Final = 4

#: Resource types whose records carry ``old-T``/``new-T`` values that auvirt tracks.
TRACKED_RESOURCES: Final = frozenset({"disk", "vcpu", "mem", "rng", "net"})
#: The cgroup ACL resource type, tracked with its class, ACL and detail.
CGROUP_RESOURCE: Final = "cgroup"
#: Values that mean "no resource" in ``old-T``/``new-T``.
NO_RESOURCE_VALUES: Final = frozenset({"", "0", "?"})

#: The prefix of the AppArmor profiles libvirt generates: ``libvirt-UUID``.
LIBVIRT_PROFILE_PREFIX: Final = "libvirt-"
#: A SELinux level follows this many ``:`` in a context (``user:role:type:s0:c1,c2``).
_COLONS_BEFORE_LEVEL: Final = 3


class EntryKind(enum.Enum):
    """The kinds of auvirt's entries; the value is the name auvirt prints (``--all-events``)."""

    START = "start"
    STOP = "stop"
    MACHINE_ID = "machine_id"
    RESOURCE = "resrc"
    AVC = "avc"
    ANOMALY = "anom"
    #: A host shutdown or crash; only with ``auditfwd sessions --host-down`` (:mod:`forwarder.virt.host_down`).
    DOWN = "down"


@dataclass(slots=True, frozen=True)
class EventId:
    """Where an entry comes from: the audit event's ``(node, sec, msec, serial)``."""

    node: str | None
    sec: int
    msec: int
    serial: int


@dataclass(slots=True, eq=False)
class Entry:
    """One entry of the session list.

    Attributes:
        kind: what it is.
        start: event time (whole seconds) of the entry; for a START the session's start.
        end: when the session or assignment ended, 0 while open.
        user: the interpreted ``uid`` of the record (the libvirt daemon's user).
        uuid, name: the guest (``name`` interpreted, ``uuid`` raw).
        success: the record's ``res`` was ``success``.
        pid: ``vm-pid`` of START/STOP, the anomaly's ``pid``, else -1.
        reason, resource_type, resource: of RESOURCE entries.
        cgroup_class, cgroup_acl, cgroup_detail: of cgroup RESOURCE entries.
        seclevel: SELinux level of MACHINE_ID (of ``vm-ctx``) and AVC entries.
        avc_result, avc_operation, comm, target, context: of AVC entries.
        proofs: the events that prove the entry, at most :data:`MAX_PROOFS`.
    """

    kind: EntryKind
    start: int
    user: str | None
    uuid: str | None
    name: str | None
    success: bool = True
    end: int = 0
    pid: int = -1
    reason: str | None = None
    resource_type: str | None = None
    resource: str | None = None
    cgroup_class: str | None = None
    cgroup_acl: str | None = None
    cgroup_detail: str | None = None
    seclevel: str | None = None
    avc_result: str | None = None
    avc_operation: str | None = None
    comm: str | None = None
    target: str | None = None
    context: str | None = None
    proofs: list[EventId] = field(default_factory=list)

    def add_proof(self, proof: EventId) -> None:
        """Record one more proving event; beyond :data:`MAX_PROOFS` they are dropped, as in auvirt."""
        if len(self.proofs) < MAX_PROOFS:
            self.proofs.append(proof)


@dataclass(slots=True, frozen=True)
class SessionFilter:
    """auvirt's event filter.

    Attributes:
        start_time, end_time: keep events with ``start_time <= sec <= end_time``; 0 = no bound.
        vm: keep only events whose ``vm`` field (interpreted) equals this, when they have one.
        uuid: the same for ``uuid``.
        correlate_security: process AVCs and anomalies (auvirt does only with ``--all-events``
            or ``--summary``).
    """

    start_time: int = 0
    end_time: int = 0
    vm: str | None = None
    uuid: str | None = None
    correlate_security: bool = False


def seclevel_of(context: str | None) -> str | None:
    """The text after the 3rd ``:`` of a security context, ``None`` with fewer colons."""
    if context is None:
        return None
    at = -1
    for _ in range(_COLONS_BEFORE_LEVEL):
        at = context.find(":", at + 1)
        if at < 0:
            return None
    return context[at + 1 :]


def is_resource(value: str | None) -> bool:
    """Whether an ``old-T``/``new-T``/``cgroup`` value names a resource."""
    return value is not None and value not in NO_RESOURCE_VALUES


@dataclass(slots=True)
class _Common:
    user: str | None
    name: str | None = None
    uuid: str | None = None
    success: bool = False


class SessionBuilder:
    """auvirt's entry list, built event by event.

    Args:
        event_filter: the command line's filters.
        users: uid -> user name for user ids without an ENRICHED interpretation.

    Feed events with :meth:`add` (or :meth:`add_all`); read :attr:`entries`.
    """

    def __init__(self, event_filter: SessionFilter, users: Mapping[int, str] | None = None) -> None:
        self.filter = event_filter
        self.users: Mapping[int, str] = users if users is not None else {}
        self.entries: list[Entry] = []
        # The newest MACHINE_ID entry per SELinux level (entries are only ever appended).
        self._labels: dict[str, Entry] = {}

    def add_all(self, events: Iterable[Event]) -> None:
        """:meth:`add` each event in order."""
        for event in events:
            self.add(event)

    def add(self, event: Event) -> None:
        """Process one event (auvirt's dispatch on the type of its first record)."""
        if not event.records:
            return
        type_id = event.records[0].type_id
        if type_id == VIRT_MACHINE_ID:
            handler = self._machine_id
        elif type_id == VIRT_CONTROL:
            handler = self._control
        elif type_id == VIRT_RESOURCE:
            handler = self._resource
        elif self.filter.correlate_security and type_id == AVC:
            handler = self._avc
        elif self.filter.correlate_security and (type_id in KERNEL_ANOMALIES or type_id in USER_ANOMALIES):
            handler = self._anomaly
        else:
            return
        cursor = FieldCursor(event, self.users)
        if not self._passes(event, cursor):
            return
        handler(event, cursor)

    # -- common pieces -------------------------------------------------------------------------

    def _passes(self, event: Event, cursor: FieldCursor) -> bool:
        wanted = self.filter
        if wanted.start_time and event.sec < wanted.start_time:
            return False
        if wanted.end_time and event.sec > wanted.end_time:
            return False
        if wanted.vm is not None and cursor.find("vm") is not None:
            shown = cursor.interpret()
            if shown is not None and shown != wanted.vm:
                return False
        if wanted.uuid is not None and cursor.find("uuid") is not None:
            shown = cursor.interpret()
            if shown is not None and shown != wanted.uuid:
                return False
        cursor.first_record()
        return True

    @staticmethod
    def _common(cursor: FieldCursor, full: bool) -> _Common | None:
        """auvirt's ``extract_virt_fields``: uid, then (``full``) vm, uuid and res, in order."""
        cursor.first_record()
        if cursor.find("uid") is None:
            return None
        common = _Common(cursor.interpret())
        if not full:
            return common
        if cursor.find("vm") is None:
            return None
        common.name = cursor.interpret()
        if cursor.find("uuid") is None:
            return None
        common.uuid = cursor.value()
        result = cursor.find("res")
        if result is None:
            return None
        common.success = result == "success"
        return common

    @staticmethod
    def _proof(event: Event) -> EventId:
        return EventId(event.node, event.sec, event.msec, event.serial)

    def _new_entry(self, kind: EntryKind, event: Event, common: _Common) -> Entry:
        return Entry(kind, event.sec, common.user, common.uuid, common.name, common.success)

    def _walk_back(self, uuid: str | None) -> Iterable[Entry]:
        """Successful entries of this guest, newest first."""
        for entry in reversed(self.entries):
            if entry.success and entry.uuid is not None and entry.uuid == uuid:
                yield entry

    def _newest_label(self, seclevel: str) -> Entry | None:
        return self._labels.get(seclevel)

    # -- handlers ------------------------------------------------------------------------------

    def _machine_id(self, event: Event, cursor: FieldCursor) -> None:
        seclevel = seclevel_of(cursor.find("vm-ctx"))
        if cursor.find("model") == "dac":
            return
        common = self._common(cursor, full=True)
        if common is None:
            return
        entry = self._new_entry(EntryKind.MACHINE_ID, event, common)
        entry.seclevel = seclevel
        entry.add_proof(self._proof(event))
        self.entries.append(entry)
        if seclevel is not None:
            self._labels[seclevel] = entry

    def _control(self, event: Event, cursor: FieldCursor) -> None:
        operation = cursor.find("op")
        if operation == "start":
            self._start(event, cursor)
        elif operation == "stop":
            self._stop(event, cursor)

    def _start(self, event: Event, cursor: FieldCursor) -> None:
        common = self._common(cursor, full=True)
        if common is None:
            return
        proof = self._proof(event)
        if not common.success:
            # A failed start closes what is left open of the guest's previous session.
            for entry in self._walk_back(common.uuid):
                if entry.kind in (EntryKind.STOP, EntryKind.MACHINE_ID):
                    break
                if entry.kind is EntryKind.RESOURCE and entry.end == 0:
                    entry.end = event.sec
                    entry.add_proof(proof)
        start = self._new_entry(EntryKind.START, event, common)
        cursor.first_record()
        pid = cursor.find_int("vm-pid")
        if pid is not None:
            start.pid = pid
        start.add_proof(proof)
        self.entries.append(start)

    def _stop(self, event: Event, cursor: FieldCursor) -> None:
        common = self._common(cursor, full=True)
        if common is None:
            return
        proof = self._proof(event)
        session: Entry | None = None
        for entry in self._walk_back(common.uuid):
            if entry.kind is EntryKind.START:
                if entry.end or session is not None:
                    break
                session = entry
            elif entry.kind in (EntryKind.STOP, EntryKind.MACHINE_ID):
                break
            elif entry.kind is EntryKind.RESOURCE and entry.end == 0:
                entry.end = event.sec
                entry.add_proof(proof)
        if session is None:
            return
        stop = self._new_entry(EntryKind.STOP, event, common)
        cursor.first_record()
        pid = cursor.find_int("vm-pid")
        if pid is not None:
            stop.pid = pid
        stop.add_proof(proof)
        self.entries.append(stop)
        if common.success:
            session.end = event.sec
            session.add_proof(proof)

    def _resource(self, event: Event, cursor: FieldCursor) -> None:
        common = self._common(cursor, full=True)
        if common is None:
            return
        cursor.first_record()
        resource_type = cursor.find("resrc")
        reason = cursor.find("reason")
        if resource_type is None:
            return
        if resource_type in TRACKED_RESOURCES:
            old = cursor.find_interpreted(f"old-{resource_type}")
            if common.success and is_resource(old):
                self._close_resource(event, common.uuid, resource_type, old)
            new = cursor.find_interpreted(f"new-{resource_type}")
            if is_resource(new):
                self._append_resource(event, cursor, common, reason, resource_type, new)
        elif resource_type == CGROUP_RESOURCE:
            cursor.first_record()
            cgroup = cursor.find_interpreted("cgroup")
            if is_resource(cgroup):
                self._append_resource(event, cursor, common, reason, resource_type, cgroup)

    def _close_resource(self, event: Event, uuid: str | None, resource_type: str, value: str | None) -> None:
        for entry in reversed(self.entries):
            if (
                entry.kind is EntryKind.RESOURCE
                and entry.success
                and entry.uuid is not None
                and entry.uuid == uuid
                and entry.resource_type == resource_type
                and entry.resource == value
            ):
                entry.end = event.sec
                entry.add_proof(self._proof(event))
                return

    def _append_resource(
        self,
        event: Event,
        cursor: FieldCursor,
        common: _Common,
        reason: str | None,
        resource_type: str,
        value: str | None,
    ) -> None:
        entry = self._new_entry(EntryKind.RESOURCE, event, common)
        entry.reason = reason
        entry.resource_type = resource_type
        entry.resource = value
        entry.add_proof(self._proof(event))
        if resource_type == CGROUP_RESOURCE:
            entry.cgroup_class = cursor.find("class")
            if entry.cgroup_class == "path":
                entry.cgroup_detail = cursor.find_interpreted("path")
            elif entry.cgroup_class == "major":
                entry.cgroup_detail = cursor.find("category")
            entry.cgroup_acl = cursor.find("acl")
        self.entries.append(entry)

    def _avc(self, event: Event, cursor: FieldCursor) -> None:
        if cursor.find("scontext") is not None:
            self._avc_selinux(event, cursor)
            return
        cursor.first_record()
        if cursor.find("apparmor") is not None:
            cursor.first_record()
            self._avc_apparmor_profile(event, cursor)
            cursor.first_record()
            self._avc_apparmor_object(event, cursor)

    def _avc_entry(self, event: Event, owner: Entry, user: str | None) -> Entry:
        # auvirt leaves `success` of AVC and anomaly entries at 0: walks never stop at them.
        entry = Entry(EntryKind.AVC, event.sec, user, owner.uuid, owner.name, success=False)
        entry.proofs = list(owner.proofs)
        return entry

    def _avc_selinux(self, event: Event, cursor: FieldCursor) -> None:
        seclevel = seclevel_of(cursor.find("scontext"))
        if seclevel is None:
            return
        common = self._common(cursor, full=False)
        if common is None:
            return
        label = self._newest_label(seclevel)
        if label is None:
            return
        entry = self._avc_entry(event, label, common.user)
        entry.seclevel = seclevel
        cursor.first_record()
        entry.avc_result = cursor.find("seresult")
        entry.avc_operation = cursor.find("seperms")
        entry.comm = cursor.find_interpreted("comm")
        entry.target = cursor.find_interpreted("name")
        if entry.avc_operation is not None:
            if entry.avc_operation == "relabelfrom":
                entry.context = cursor.find("scontext")
            elif entry.avc_operation == "relabelto":
                entry.context = cursor.find("tcontext")
        entry.add_proof(self._proof(event))
        self.entries.append(entry)

    @staticmethod
    def _apparmor_result(cursor: FieldCursor) -> str | None:
        shown = cursor.find_interpreted("apparmor")
        if shown is None:
            return None
        # C tolower() byte by byte: ASCII letters only (auvirt runs in the C locale here).
        return shown.translate(_ASCII_LOWER)

    def _avc_apparmor_profile(self, event: Event, cursor: FieldCursor) -> None:
        profile = cursor.find_interpreted("profile")
        if profile is None:
            return
        basename = profile[profile.rfind("/") + 1 :]
        if not basename.startswith(LIBVIRT_PROFILE_PREFIX):
            return
        uuid = basename[len(LIBVIRT_PROFILE_PREFIX) :]
        label: Entry | None = None
        for entry in reversed(self.entries):
            if entry.success and entry.uuid is not None and entry.uuid == uuid:
                if entry.kind is EntryKind.MACHINE_ID:
                    label = entry
                    break
                if entry.kind is EntryKind.STOP:
                    break
        if label is None:
            return
        common = self._common(cursor, full=False)
        if common is None:
            return
        entry = self._avc_entry(event, label, common.user)
        cursor.first_record()
        entry.avc_result = self._apparmor_result(cursor)
        entry.avc_operation = cursor.find_interpreted("operation")
        entry.target = cursor.find_interpreted("name")
        entry.comm = cursor.find_interpreted("comm")
        entry.add_proof(self._proof(event))
        self.entries.append(entry)

    def _avc_apparmor_object(self, event: Event, cursor: FieldCursor) -> None:
        target = cursor.find_interpreted("name")
        if target is None:
            return
        owner: Entry | None = None
        for entry in reversed(self.entries):
            if (
                entry.success
                and entry.kind is EntryKind.RESOURCE
                and entry.end == 0
                and entry.resource is not None
                and entry.resource == target
            ):
                owner = entry
                break
        if owner is None:
            return
        common = self._common(cursor, full=False)
        if common is None:
            return
        entry = self._avc_entry(event, owner, common.user)
        cursor.first_record()
        entry.avc_result = self._apparmor_result(cursor)
        entry.avc_operation = cursor.find_interpreted("operation")
        entry.target = target
        entry.comm = cursor.find_interpreted("comm")
        entry.add_proof(self._proof(event))
        self.entries.append(entry)

    def _anomaly(self, event: Event, cursor: FieldCursor) -> None:
        found_pid = cursor.find_int("pid")
        pid = -1 if found_pid is None else found_pid
        newest = self.entries[-1] if self.entries else None
        session: Entry | None = None
        # auvirt means to walk back but steps forward from the last entry: only it is examined.
        if pid >= 0 and newest is not None and newest.pid == pid and newest.success:
            session = self._open_start(newest)
        if session is None:
            seclevel = seclevel_of(cursor.find("subj"))
            if seclevel is None:
                return
            label = self._newest_label(seclevel)
            if label is None:
                return
            if (
                newest is not None
                and newest.success
                and label.uuid is not None
                and newest.uuid is not None
                and label.uuid == newest.uuid
            ):
                session = self._open_start(newest)
        if session is None:
            return
        common = self._common(cursor, full=False)
        if common is None:
            return
        entry = Entry(EntryKind.ANOMALY, event.sec, common.user, session.uuid, session.name, False, pid=pid)
        entry.proofs = list(session.proofs)
        entry.add_proof(self._proof(event))
        self.entries.append(entry)

    @staticmethod
    def _open_start(entry: Entry) -> Entry | None:
        return entry if entry.kind is EntryKind.START and entry.end == 0 else None


_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def build_sessions(
    events: Iterable[Event], event_filter: SessionFilter, users: Mapping[int, str] | None = None
) -> list[Entry]:
    """auvirt's entry list for ``events`` (in libauparse's emission order)."""
    builder = SessionBuilder(event_filter, users)
    builder.add_all(events)
    return builder.entries
