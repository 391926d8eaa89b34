"""Guest sessions from indexed documents of many hypervisors (``auditfwd sessions --index``).

The pure core of ``--index``: documents (as ``auditfwd run`` wrote them) in, per-host session
lists and the guests' cross-host timelines out.  The engine query is the shell's
(:mod:`forwarder.sessions_index`).

From documents to the builder
=============================

Each hypervisor's documents go through the same builder as a log
(:class:`~forwarder.virt.sessions_json.DetailedSessionBuilder`, which without ``--host-down``
behaves exactly as auvirt's :class:`~forwarder.virt.sessions.SessionBuilder`), one builder per
``host.name``, fed in ``@timestamp`` then ``event.sequence`` order.  The builder reads libvirt's
fields through libauparse's cursor, so :func:`document_event` gives it an audit
:class:`~forwarder.audit.record.Event` again:

* with ``event.original`` (``auditfwd run`` with the original records kept), the raw lines
  themselves: the entries are exactly those of ``auditfwd sessions --file`` on that host's log;
* without it, one line per record rebuilt from the normalized fields (``auditd.data``,
  ``user.id``/``user.name``, ``process.pid``/``name``/``executable``, ``auditd.result``, the
  subject's SELinux parts) in the layout the kernel and libvirt write: user-space messages
  (libvirt's VIRT_* records, user anomalies, host lifecycle) as
  ``pid= uid= subj= msg='DATA exe= res='``, kernel records with their SYSCALL record after them
  (AVC, ANOM_PROMISCUOUS ...) or alone (ANOM_ABEND).  libvirt's encoded values are written hex
  encoded, which the cursor decodes to the same text.  What the layout cannot restore: records
  written in another field order than the usual one (auvirt's forward-only cursor then finds
  other fields), an AVC that came after its SYSCALL record, and fields that the normalizer
  stored elsewhere than ``auditd.data``.  Keep ``event.original`` for exact results.

Ordering: documents of one host are fed in time order.  Within one millisecond auditd's own
records (DAEMON_*, numbered by auditd, not by the kernel) come first, as auditd writes them
first.  ``--host-down`` needs the latest event time before each boot marker, among *all* the
host's events; the shell asks the engine for it and passes it as ``latest_before``.

Migrations
==========

A guest (same uuid) that stops with ``reason=migrated`` on host A and starts with
``reason=migrated`` on another host B within :data:`MIGRATION_WINDOW_SECONDS` (either order:
the destination usually logs its start a moment before the source logs the stop) migrated from
A to B.  Each stop pairs with the nearest such start not paired yet.  A guest's timeline is
every session of its uuid on every host, in start order, each with its host.

Text output
===========

auvirt's lines (:mod:`forwarder.virt.auvirt_format`), each prefixed with the host column
(``%-20.20s`` then a tab); the entries of all hosts merged by time, each host's entries in its
own order, so the lines of one host, without the column, are what ``auditfwd sessions --file``
prints for that host's log.  With ``--all-events``, a migration adds the line
``HOST<tab>migr   NAME<tab>[UUID<tab>]USER<tab>TIME<tab>-> TO-HOST`` at the stop's time (HOST is
the source, USER the stop record's user, TIME the stop's ``ctime`` date and minute).
``--summary`` adds ``Number of hosts:`` and ``Number of migrations:`` after auvirt's lines.
"""

from __future__ import annotations

import calendar
import datetime
import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from forwarder.audit.record import Event, Record
from forwarder.audit.tables.record_types import RECORD_TYPE_NUMBERS
from forwarder.virt.auparse_fields import ESCAPED_FIELDS, TEXT_ERRORS
from forwarder.virt.auparse_lines import auparse_record
from forwarder.virt.auvirt_format import (
    Localtime,
    RenderOptions,
    column,
    ctime_text,
    render_entry,
    render_summary,
    summarize,
)
from forwarder.virt.host_down import DAEMON_END, DAEMON_START, SYSTEM_BOOT, SYSTEM_SHUTDOWN, with_shutdown_count
from forwarder.virt.sessions import (
    AVC,
    KERNEL_ANOMALIES,
    USER_ANOMALIES,
    VIRT_CONTROL,
    VIRT_MACHINE_ID,
    VIRT_RESOURCE,
    Entry,
    EntryKind,
    SessionFilter,
)
from forwarder.virt.sessions_json import DetailedSessionBuilder, iso_time, json_text, proof_id, sessions_document

#: A migrated stop and the migrated start on the other host are paired when this close in time.
#: Both are logged when the migration completes, within seconds of each other (the destination
#: often first); five minutes also cover clock skew between hosts and a slow confirm phase.
MIGRATION_WINDOW_SECONDS: Final = 300

#: The reason libvirt gives to both ends of a migration.
MIGRATED: Final = "migrated"

#: The host column of the text output: auvirt's name column is 22 bytes; host names are shorter.
HOST_COLUMN: Final = (20, 20)
#: The kind column of migration lines (auvirt's ``%-5.5s`` kinds).
MIGRATION_KIND: Final = "migr"
_KIND_COLUMN: Final = (6, 5)
_NAME_COLUMN: Final = (22, 22)
_UUID_COLUMN: Final = (36, 36)
_USER_COLUMN: Final = (11, 11)
_CTIME_DATE_MINUTE: Final = 16
_PERIOD_COLUMN: Final = (32, 32)

#: The fields of a document that sessions read (the query's ``_source``).
SOURCE_FIELDS: Final = (
    "@timestamp",
    "event.sequence",
    "event.original",
    "host.name",
    "auditd.node",
    "auditd.message_type",
    "auditd.result",
    "auditd.data",
    "auditd.user.selinux",
    "user.id",
    "user.name",
    "process.pid",
    "process.name",
    "process.executable",
)

#: Host lifecycle record types read under ``--host-down``.
LIFECYCLE_TYPES: Final = (SYSTEM_BOOT, SYSTEM_SHUTDOWN, DAEMON_START, DAEMON_END)
#: Boot markers, before which ``--host-down`` needs the latest event time.
BOOT_MARKER_TYPES: Final = (SYSTEM_BOOT, DAEMON_START)
#: auditd's own records: numbered by auditd, written first within their millisecond.
_DAEMON_TYPES: Final = frozenset({DAEMON_START, DAEMON_END})

_TYPE_NAMES: Final = {number: name for name, number in RECORD_TYPE_NUMBERS.items()}


def message_type(type_id: int) -> str:
    """``auditd.message_type`` of a record type number (lower-case name)."""
    return _TYPE_NAMES.get(type_id, f"UNKNOWN[{type_id}]").lower()


def wanted_message_types(correlate_security: bool) -> list[str]:
    """The ``auditd.message_type`` values the sessions read (without the host lifecycle).

    Args:
        correlate_security: AVCs and anomalies are read too (``--all-events``, ``--summary``,
            ``--format json``).
    """
    numbers = [VIRT_CONTROL, VIRT_RESOURCE, VIRT_MACHINE_ID]
    if correlate_security:
        numbers.append(AVC)
        numbers.extend(n for n in sorted(_TYPE_NAMES) if n in KERNEL_ANOMALIES or n in USER_ANOMALIES)
    return [message_type(number) for number in numbers]


def lifecycle_message_types(markers_only: bool = False) -> list[str]:
    """``auditd.message_type`` of the host lifecycle records (``--host-down``)."""
    return [message_type(number) for number in (BOOT_MARKER_TYPES if markers_only else LIFECYCLE_TYPES)]


# ------------------------------------------------------------------ documents -> events


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def document_time(doc: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(sec, msec)`` of the document's ``@timestamp``, ``None`` when missing or malformed."""
    stamp = doc.get("@timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return calendar.timegm(moment.utctimetuple()), moment.microsecond // 1000


def document_host(doc: Mapping[str, Any]) -> str:
    """The hypervisor of a document (``host.name``; empty when absent)."""
    host = _get(doc, "host", "name")
    return host if isinstance(host, str) else ""


def document_type(doc: Mapping[str, Any]) -> int | None:
    """The record type number of ``auditd.message_type``, ``None`` when unknown."""
    name = _get(doc, "auditd", "message_type")
    if not isinstance(name, str):
        return None
    upper = name.upper()
    number = RECORD_TYPE_NUMBERS.get(upper)
    if number is None and upper.startswith("UNKNOWN[") and upper.endswith("]") and upper[8:-1].isdigit():
        number = int(upper[8:-1])
    return number


#: Fields the cursor decodes for display (libvirt's ``virAuditEncode`` values, names, paths):
#: rebuilt hex encoded, which decodes to the same text.
_ENCODED_KEYS: Final = ESCAPED_FIELDS

#: Keys of a SYSCALL record: in an event with one, these data keys are rebuilt in it.
_SYSCALL_KEYS: Final = frozenset(
    {"arch", "syscall", "success", "exit", "a0", "a1", "a2", "a3", "items", "ppid", "pid", "auid", "uid", "gid",
     "euid", "suid", "fsuid", "egid", "sgid", "fsgid", "tty", "ses", "comm", "exe", "subj", "key"}
)  # fmt: skip

#: The order in which libvirt's records (``docs/virt-audit.md`` §1.3-1.5) and AVC records write
#: their fields.  The cursor only reads forward, so the rebuilt record must keep it; the engines
#: do not keep the key order of ``auditd.data`` (OpenSearch's source filtering reorders it).
#: ``old-``/``new-`` stand for every ``old-T``/``new-T``; fields not listed follow in any order.
_OLD_PREFIX: Final = "old-"
_NEW_PREFIX: Final = "new-"
FIELD_ORDER: Final = (
    "virt", "resrc", "op", "reason", "vm", "uuid", "vm-pid", "init-pid", "pid-ns", _OLD_PREFIX, _NEW_PREFIX,
    "vm-ctx", "img-ctx", "model", "net", "cgroup", "class", "item", "path", "rdev", "category", "maj", "acl",
    "bus", "type", "device", "disk", "chardev", "size",
    "apparmor", "operation", "info", "error", "profile", "name", "pid", "comm", "requested_mask", "denied_mask",
    "fsuid", "ouid", "peer", "dev", "ino", "scontext", "tcontext", "tclass", "permissive",
)  # fmt: skip
_FIELD_RANKS: Final = {key: rank for rank, key in enumerate(FIELD_ORDER)}

#: Record type numbers written by user space (``audit_log_user_message``): the kernel wraps them
#: as ``pid= uid= auid= ses= subj= msg='TEXT'``.
_USER_MESSAGE_RANGES: Final = (range(1100, 1300), range(2100, 3000))

_RESULTS: Final = {"success": "success", "fail": "failed"}
#: What libvirt writes for an unset value (left out of ``auditd.data`` by the normalizer).
_UNSET: Final = "?"


def _first(value: Any) -> str | None:
    """A data value as text (the first of a list of conflicting values)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bool) or value is None:
        return None
    return str(value)


def _hex(text: str) -> str:
    return text.encode("utf-8", TEXT_ERRORS).hex().upper()


def _field(key: str, value: str) -> str:
    """``key=value`` with the value as the log would carry it for the cursor to read back."""
    if value[:1] == "'" and " " not in value:
        return f"{key}={value}"  # libvirt 0.8's single quotes: the cursor keeps the leading one
    if key in _ENCODED_KEYS or not value or " " in value:
        return f"{key}={_hex(value)}" if value else f'{key}=""'
    return f"{key}={value}"


def _subject(doc: Mapping[str, Any]) -> str | None:
    selinux = _get(doc, "auditd", "user", "selinux")
    if not isinstance(selinux, Mapping):
        return None
    parts = [selinux.get(name) for name in ("user", "role", "domain", "level")]
    if not all(isinstance(part, str) for part in parts[:3]):
        return None
    return ":".join(str(part) for part in parts if isinstance(part, str))


def _field_rank(key: str) -> int:
    rank = _FIELD_RANKS.get(key)
    if rank is not None:
        return rank
    if key.startswith(_OLD_PREFIX):
        return _FIELD_RANKS[_OLD_PREFIX]
    if key.startswith(_NEW_PREFIX):
        return _FIELD_RANKS[_NEW_PREFIX]
    return len(_FIELD_RANKS)


def _data_fields(data: Mapping[str, Any], hyphens: bool) -> list[tuple[str, str]]:
    """The data fields in the order the records write them (:data:`FIELD_ORDER`; others after)."""
    fields: list[tuple[str, str]] = []
    for key, raw in data.items():
        value = _first(raw)
        if value is None or isinstance(raw, Mapping):
            continue
        fields.append((key.replace("_", "-") if hyphens else key, value))
    fields.sort(key=lambda item: _field_rank(item[0]))
    return fields


def _with_unset_sides(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """VIRT_RESOURCE fields with ``old-T``/``new-T`` restored as ``?`` where the normalizer left
    the unset side out: auvirt's forward-only cursor reads ``new-T`` after ``old-T``, and a
    missing ``old-T`` would leave it nowhere."""
    kinds = [value for key, value in fields if key == "resrc"]
    if not kinds:
        return fields
    old, new = f"old-{kinds[0]}", f"new-{kinds[0]}"
    keys = [key for key, _ in fields]
    if (old in keys and new in keys) or (old not in keys and new not in keys):
        return fields
    present = fields[keys.index(new if old not in keys else old)][1]
    # libvirt 0.8 wrote both sides in single quotes ('?' when unset), which the cursor keeps.
    unset = f"'{_UNSET}'" if present[:1] == "'" else _UNSET
    if old not in keys:
        at = keys.index(new)
        return [*fields[:at], (old, unset), *fields[at:]]
    at = keys.index(old) + 1
    return [*fields[:at], (new, unset), *fields[at:]]


def _identity(doc: Mapping[str, Any]) -> dict[str, str]:
    """pid, uid, comm, exe, subj and res of the document, as raw fields (absent ones left out)."""
    found: dict[str, str] = {}
    for key, path in (
        ("pid", ("process", "pid")),
        ("uid", ("user", "id")),
        ("comm", ("process", "name")),
        ("exe", ("process", "executable")),
    ):
        value = _get(doc, *path)
        if isinstance(value, int | str) and not isinstance(value, bool):
            found[key] = str(value)
    subject = _subject(doc)
    if subject is not None:
        found["subj"] = subject
    result = _get(doc, "auditd", "result")
    if isinstance(result, str) and result in _RESULTS:
        found["res"] = _RESULTS[result]
    return found


def _enriched_uid(doc: Mapping[str, Any]) -> str:
    name = _get(doc, "user", "name")
    if isinstance(name, str) and name and " " not in name and '"' not in name:
        return f'\x1dUID="{name}"'
    return ""


def _join(fields: Iterable[tuple[str, str]]) -> str:
    return " ".join(_field(key, value) for key, value in fields)


def _user_message(type_id: int, doc: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    ids = _identity(doc)
    outer: list[tuple[str, str]] = [(key, ids[key]) for key in ("pid", "uid") if key in ids]
    if "subj" in ids:
        outer.append(("subj", ids["subj"]))
    hyphens = VIRT_CONTROL <= type_id <= VIRT_MACHINE_ID
    inner = _data_fields(data, hyphens)
    if type_id == VIRT_RESOURCE:
        inner = _with_unset_sides(inner)
    if "exe" in ids:
        inner.append(("exe", ids["exe"]))
    text = _join(inner)
    result = f" res={ids['res']}" if "res" in ids else ""
    return [f"{_join(outer)} msg='{text}{result}'{_enriched_uid(doc)}"]


def _kernel_records(type_id: int, doc: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    ids = _identity(doc)
    with_syscall = "syscall" in data
    own = [(key, value) for key, value in _data_fields(data, False) if not (with_syscall and key in _SYSCALL_KEYS)]
    process = [(key, ids[key]) for key in ("pid", "comm") if key in ids]
    if type_id == AVC and "seresult" in data:
        result = dict(own)
        permissions = " ".join(result.get("seperms", "").split(","))
        rest = [(key, value) for key, value in own if key not in ("seresult", "seperms")]
        first = f"avc:  {result.get('seresult', '')}  {{ {permissions} }} for  {_join(process + rest)}"
    elif type_id == AVC:
        keys = [key for key, _ in own]
        at = keys.index("name") + 1 if "name" in keys else len(own)
        first = _join(own[:at] + process + own[at:])
    elif with_syscall:
        uid = [("uid", ids["uid"])] if "uid" in ids else []
        first = _join(own + uid)
    else:  # a kernel record alone (ANOM_ABEND): uid, subj, then the process, then its data
        head = [(key, ids[key]) for key in ("uid", "subj", "pid", "comm", "exe") if key in ids]
        return [_join(head + own) + _enriched_uid(doc)]
    if not with_syscall:
        return [first]
    syscall = [(key, ids[key]) for key in ("pid", "uid", "comm", "exe", "subj") if key in ids]
    return [first, _join(syscall) + _enriched_uid(doc)]


def _rebuilt_lines(type_id: int, doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(type name, body)`` of each record rebuilt from the normalized fields."""
    data = _get(doc, "auditd", "data")
    if not isinstance(data, Mapping):
        data = {}
    name = _TYPE_NAMES.get(type_id, f"UNKNOWN[{type_id}]")
    if any(type_id in user_range for user_range in _USER_MESSAGE_RANGES):
        return [(name, body) for body in _user_message(type_id, doc, data)]
    bodies = _kernel_records(type_id, doc, data)
    names = [name] + ["SYSCALL"] * (len(bodies) - 1)
    return list(zip(names, bodies, strict=True))


def document_event(doc: Mapping[str, Any], end_of_event_timeout: int = 2) -> Event | None:
    """The audit event a document was made of, as the sessions builder reads it.

    Args:
        doc: a document's ``_source`` (at least :data:`SOURCE_FIELDS`).
        end_of_event_timeout: auditd.conf's value (bounds the accepted seconds, as for a log).

    Returns:
        The event from ``event.original`` when the document has it, else rebuilt from the
        normalized fields (see the module's documentation); ``None`` without a time or type.
    """
    moment = document_time(doc)
    type_id = document_type(doc)
    if moment is None or type_id is None:
        return None
    sec, msec = moment
    sequence = _get(doc, "event", "sequence")
    serial = sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else 0
    node_value = _get(doc, "auditd", "node")
    node = node_value if isinstance(node_value, str) and node_value else None
    original = _get(doc, "event", "original")
    records: list[Record] = []
    if isinstance(original, str) and original:
        for line in original.split("\n"):
            record = auparse_record(line, end_of_event_timeout)
            if record is not None:
                records.append(record)
        if records:
            first = records[0]
            return Event(first.node, first.sec, first.msec, first.serial, records)
    prefix = f"node={node} " if node is not None else ""
    for name, body in _rebuilt_lines(type_id, doc):
        line = f"{prefix}type={name} msg=audit({sec}.{msec:03d}:{serial}): {body}"
        record = auparse_record(line, end_of_event_timeout)
        if record is not None:
            records.append(record)
    return Event(node, sec, msec, serial, records) if records else None


def latest_before_markers(docs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int, int, int], int | None]:
    """What the shell asks the engine for under ``--host-down``, computed from all documents.

    Returns:
        Boot marker ``(host, sec, msec, serial)`` -> the latest second among the host's documents
        strictly before the marker's millisecond, ``None`` when there is none.
    """
    times: dict[str, list[tuple[int, int]]] = {}
    markers: list[tuple[str, int, int, int]] = []
    for doc in docs:
        moment = document_time(doc)
        if moment is None:
            continue
        host = document_host(doc)
        times.setdefault(host, []).append(moment)
        if document_type(doc) in BOOT_MARKER_TYPES:
            sequence = _get(doc, "event", "sequence")
            if isinstance(sequence, int):
                markers.append((host, moment[0], moment[1], sequence))
    latest: dict[tuple[str, int, int, int], int | None] = {}
    for host, sec, msec, serial in markers:
        before = [moment for moment in times[host] if moment < (sec, msec)]
        latest[(host, sec, msec, serial)] = max(before)[0] if before else None
    return latest


# ------------------------------------------------------------------ per-host builders


@dataclass(slots=True)
class HostSessions:
    """One hypervisor's session list.

    Attributes:
        host: its ``host.name``.
        builder: the builder fed with its events.
        pending: events of the latest millisecond, held back to be fed in auditd's order
            (``(rank, arrival, event)``).
        pending_at: that millisecond ``(sec, msec)``.
    """

    host: str
    builder: DetailedSessionBuilder
    pending: list[tuple[int, int, Event]] = field(default_factory=list)
    pending_at: tuple[int, int] | None = None


class IndexSessions:
    """Session lists of every host, fed with documents in ``@timestamp``, ``event.sequence`` order.

    Args:
        event_filter: the command line's filters (applied by each builder, as for a log).
        users: uid -> name for user ids without a name in the record.
        host_down: ``--host-down``.
        latest_before: for ``--host-down``: ``(host, sec, msec, serial)`` of a boot marker ->
            the latest event time (epoch seconds) of that host before it, ``None`` if none.
        end_of_event_timeout: auditd.conf's value (see :func:`document_event`).
    """

    def __init__(
        self,
        event_filter: SessionFilter,
        users: Mapping[int, str] | None = None,
        host_down: bool = False,
        latest_before: Mapping[tuple[str, int, int, int], int | None] | None = None,
        end_of_event_timeout: int = 2,
    ) -> None:
        self.filter = event_filter
        self.users: Mapping[int, str] = users if users is not None else {}
        self.host_down = host_down
        self.latest_before: Mapping[tuple[str, int, int, int], int | None] = latest_before or {}
        self.timeout = end_of_event_timeout
        self.hosts: dict[str, HostSessions] = {}

    def add(self, doc: Mapping[str, Any]) -> None:
        """Take the next document (documents of one host in time order)."""
        event = document_event(doc, self.timeout)
        if event is None or not event.records:
            return
        host = document_host(doc)
        sessions = self.hosts.get(host)
        if sessions is None:
            builder = DetailedSessionBuilder(self.filter, self.users, host_down=self.host_down)
            sessions = self.hosts[host] = HostSessions(host, builder)
        at = (event.sec, event.msec)
        if sessions.pending_at != at:
            self._flush(sessions)
            sessions.pending_at = at
        rank = 0 if event.records[0].type_id in _DAEMON_TYPES else 1
        sessions.pending.append((rank, len(sessions.pending), event))

    def add_all(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """:meth:`add` each document."""
        for doc in docs:
            self.add(doc)

    def finish(self) -> dict[str, HostSessions]:
        """Process what is still held back; returns :attr:`hosts`."""
        for sessions in self.hosts.values():
            self._flush(sessions)
        return self.hosts

    def _flush(self, sessions: HostSessions) -> None:
        pending = sessions.pending
        if not pending:
            return
        pending.sort(key=lambda item: (item[0], item[1]))
        builder = sessions.builder
        for _, _, event in pending:
            if self.host_down and event.records[0].type_id in BOOT_MARKER_TYPES:
                latest = self.latest_before.get((sessions.host, event.sec, event.msec, event.serial))
                if latest is not None:
                    builder.note_time(latest)
            builder.add(event)
        pending.clear()


# ------------------------------------------------------------------ migrations and timelines


@dataclass(frozen=True, slots=True)
class Migration:
    """A guest that left one host for another.

    Attributes:
        uuid, name: the guest.
        from_host, to_host: the hosts.
        stop: the STOP entry (``reason=migrated``) on ``from_host``.
        start: the START entry (``reason=migrated``) on ``to_host``.
    """

    uuid: str | None
    name: str | None
    from_host: str
    to_host: str
    stop: Entry
    start: Entry


@dataclass(slots=True)
class Segment:
    """One session of a guest on one host."""

    host: str
    start: Entry


@dataclass(slots=True)
class Timeline:
    """Every session of one guest (uuid) on every host, in start order, and its migrations."""

    uuid: str | None
    name: str | None
    segments: list[Segment] = field(default_factory=list)
    migrations: list[Migration] = field(default_factory=list)

    @property
    def hosts(self) -> list[str]:
        """The hosts of its segments, in first-seen order."""
        return list(dict.fromkeys(segment.host for segment in self.segments))


def join_migrations(hosts: Mapping[str, HostSessions]) -> list[Migration]:
    """Pair each migrated stop with the nearest migrated start of its guest on another host.

    Returns:
        The migrations in the stops' time order.
    """
    stops: list[tuple[int, str, Entry]] = []
    starts: dict[str | None, list[tuple[str, Entry]]] = {}
    for host, sessions in hosts.items():
        reasons = sessions.builder.control_reasons
        for entry in sessions.builder.entries:
            if not entry.success or reasons.get(entry) != MIGRATED:
                continue
            if entry.kind is EntryKind.STOP:
                stops.append((entry.start, host, entry))
            elif entry.kind is EntryKind.START:
                starts.setdefault(entry.uuid, []).append((host, entry))
    stops.sort(key=lambda item: (item[0], item[1]))
    paired: set[int] = set()
    migrations: list[Migration] = []
    for when, host, stop in stops:
        best: tuple[int, int, str, Entry] | None = None
        for other_host, start in starts.get(stop.uuid, []):
            distance = abs(start.start - when)
            if other_host == host or id(start) in paired or distance > MIGRATION_WINDOW_SECONDS:
                continue
            candidate = (distance, start.start, other_host, start)
            if best is None or candidate[:3] < best[:3]:
                best = candidate
        if best is None:
            continue
        start = best[3]
        paired.add(id(start))
        migrations.append(Migration(stop.uuid, stop.name or start.name, host, best[2], stop, start))
    return migrations


def timelines(hosts: Mapping[str, HostSessions], migrations: Iterable[Migration]) -> list[Timeline]:
    """One timeline per guest uuid: its sessions on every host, in start order (ties by host)."""
    by_uuid: dict[str | None, Timeline] = {}
    for host, sessions in sorted(hosts.items()):
        for entry in sessions.builder.entries:
            if entry.kind is EntryKind.START:
                line = by_uuid.get(entry.uuid)
                if line is None:
                    line = by_uuid[entry.uuid] = Timeline(entry.uuid, entry.name)
                line.segments.append(Segment(host, entry))
                if entry.name is not None:
                    line.name = entry.name
    for line in by_uuid.values():
        line.segments.sort(key=lambda segment: segment.start.start)
    for migration in migrations:
        line = by_uuid.get(migration.uuid)
        if line is not None:
            line.migrations.append(migration)
    return sorted(by_uuid.values(), key=lambda line: (line.segments[0].start.start, line.uuid or ""))


# ------------------------------------------------------------------ text output


def _merged(hosts: Mapping[str, HostSessions], migrations: list[Migration]) -> Iterator[tuple[str, Entry | Migration]]:
    """Every entry of every host (and the migrations) by time; each host's entries in its order."""
    streams: list[list[tuple[int, int, int, str, Entry | Migration]]] = []
    for rank, (host, sessions) in enumerate(sorted(hosts.items())):
        streams.append([(entry.start, rank, at, host, entry) for at, entry in enumerate(sessions.builder.entries)])
    ranks = {host: rank for rank, host in enumerate(sorted(hosts))}
    # A migration line follows the entries of its source host at the same second.
    after_entries = 1 << 62
    streams.append(
        [
            (migration.stop.start, ranks.get(migration.from_host, 0), after_entries, migration.from_host, migration)
            for migration in migrations
        ]
    )
    for _, _, _, host, item in heapq.merge(*streams, key=lambda item: item[:3]):
        yield host, item


def _migration_line(migration: Migration, options: RenderOptions, localtime: Localtime) -> bytes:
    parts = [column(MIGRATION_KIND, _KIND_COLUMN) + b" ", column(migration.name, _NAME_COLUMN)]
    if options.show_uuid:
        parts.append(b"\t" + column(migration.uuid, _UUID_COLUMN))
    parts.append(b"\t" + column(migration.stop.user, _USER_COLUMN))
    moment = ctime_text(migration.stop.start, localtime)[:_CTIME_DATE_MINUTE]
    parts.append(b"\t" + column(moment, _PERIOD_COLUMN))
    parts.append(b"\t-> " + migration.to_host.encode("utf-8", TEXT_ERRORS) + b"\n")
    if options.proof:
        serials = ",".join(str(proof.serial) for proof in (*migration.stop.proofs[-1:], *migration.start.proofs[:1]))
        parts.append(f"    Proof:{serials}\n\n".encode("ascii"))
    return b"".join(parts)


def render_index_entries(
    hosts: Mapping[str, HostSessions],
    migrations: list[Migration],
    options: RenderOptions,
    localtime: Localtime,
) -> bytes:
    """The text output of ``--index`` (see the module's documentation)."""
    out: list[bytes] = []
    for host, item in _merged(hosts, migrations):
        if isinstance(item, Migration):
            text = _migration_line(item, options, localtime) if options.all_events else b""
        else:
            text = render_entry(item, options, localtime)
        if text:
            out.append(column(host, HOST_COLUMN) + b"\t" + text)
    return b"".join(out)


def render_index_summary(
    hosts: Mapping[str, HostSessions], migrations: list[Migration], host_down: bool, localtime: Localtime
) -> bytes:
    """auvirt's ``--summary`` over every host, plus the hosts and migrations."""
    entries = [entry for sessions in hosts.values() for entry in sessions.builder.entries]
    text = render_summary(summarize(entries), localtime)
    if host_down:
        text = with_shutdown_count(text, sum(len(sessions.builder.downs) for sessions in hosts.values()))
    extra = f"Number of hosts:                {len(hosts)}\nNumber of migrations:           {len(migrations)}\n"
    return text + extra.encode("ascii")


# ------------------------------------------------------------------ JSON output


def _moment(name: str, seconds: int) -> dict[str, Any]:
    if not seconds:
        return {name: None, f"{name}_epoch": None}
    return {name: iso_time(seconds), f"{name}_epoch": seconds}


def _proof_list(entry: Entry) -> list[str | None]:
    return [json_text(proof_id(proof)) for proof in entry.proofs]


def _migration(migration: Migration) -> dict[str, Any]:
    return {
        "guest": {"name": json_text(migration.name), "uuid": json_text(migration.uuid)},
        "from_host": migration.from_host,
        "to_host": migration.to_host,
        **_moment("time", migration.stop.start),
        **_moment("started", migration.start.start),
        "stop_proofs": _proof_list(migration.stop),
        "start_proofs": _proof_list(migration.start),
    }


def index_document(hosts: Mapping[str, HostSessions], migrations: list[Migration]) -> dict[str, Any]:
    """The ``--format json`` document of ``--index`` (plain data).

    Layout: ``{"hosts", "sessions", "timelines", "migrations", "host_downs", "unattached",
    "summary"}``: ``sessions``, ``host_downs`` and ``unattached`` are those of
    :func:`forwarder.virt.sessions_json.sessions_document` for each host with ``host`` added,
    by time; a timeline is ``{guest, hosts, segments [{host, start, start_epoch, end,
    end_epoch, state}], migrations}``; a migration is ``{guest, from_host, to_host, time,
    time_epoch, started, started_epoch, stop_proofs, start_proofs}``.
    """
    sessions: list[dict[str, Any]] = []
    downs: list[dict[str, Any]] = []
    unattached: list[dict[str, Any]] = []
    states: dict[int, str] = {}
    for host, host_sessions in sorted(hosts.items()):
        document = sessions_document(host_sessions.builder)
        starts = [entry for entry in host_sessions.builder.entries if entry.kind is EntryKind.START]
        for session, start in zip(document["sessions"], starts, strict=True):
            states[id(start)] = session["state"]
            sessions.append({"host": host, **session})
        downs.extend({"host": host, **down} for down in document["host_downs"])
        unattached.extend({"host": host, **item} for item in document["unattached"])
    sessions.sort(key=lambda item: item["start_epoch"] or 0)
    downs.sort(key=lambda item: item["time_epoch"] or 0)
    lines = timelines(hosts, migrations)
    entries = [entry for host_sessions in hosts.values() for entry in host_sessions.builder.entries]
    counts = summarize(entries)
    return {
        "hosts": sorted(hosts),
        "sessions": sessions,
        "timelines": [
            {
                "guest": {"name": json_text(line.name), "uuid": json_text(line.uuid)},
                "hosts": line.hosts,
                "segments": [
                    {
                        "host": segment.host,
                        **_moment("start", segment.start.start),
                        **_moment("end", segment.start.end),
                        "state": states.get(id(segment.start)),
                    }
                    for segment in line.segments
                ],
                "migrations": [_migration(migration) for migration in line.migrations],
            }
            for line in lines
        ],
        "migrations": [_migration(migration) for migration in migrations],
        "host_downs": downs,
        "unattached": unattached,
        "summary": {
            **_moment("first", counts.first),
            **_moment("last", counts.last),
            "hosts": len(hosts),
            "starts": counts.starts,
            "stops": counts.stops,
            "resources": counts.resources,
            "avcs": counts.avcs,
            "anomalies": counts.anomalies,
            "host_downs": len(downs),
            "migrations": len(migrations),
            "failures": counts.failures,
        },
    }


def render_index_json(hosts: Mapping[str, HostSessions], migrations: list[Migration]) -> bytes:
    """:func:`index_document` serialized (indented by 2, with a final newline)."""
    return orjson.dumps(index_document(hosts, migrations), option=orjson.OPT_INDENT_2) + b"\n"
