"""``auditfwd sessions --format json``: guest sessions as one JSON document.

The document is built from the same entry list as auvirt's text (:mod:`forwarder.virt.sessions`,
with :mod:`forwarder.virt.host_down` under ``--host-down``), so every time, user, value and proof
agrees with the text output.  Layout (``orjson`` indented by 2, one trailing newline)::

    {"sessions": [SESSION...], "host_downs": [DOWN...], "unattached": [ITEM...], "summary": {...}}

SESSION (one per START entry, failed starts included, in list order)::

    guest {name, uuid}, user, start, start_epoch, end, end_epoch, state, start_reason,
    stop_reason, success, qemu_pid, labels [{level, time, time_epoch, proofs}],
    resources [{type, reason, value, success, attached, attached_epoch, detached,
                detached_epoch, cgroup {class, acl, detail} | null, proofs}],
    avcs [{time, time_epoch, user, operation, result, comm, target, context, proofs}],
    anomalies [{time, time_epoch, user, pid, proofs}],
    stops [{time, time_epoch, user, success, reason, qemu_pid, proofs}],
    proofs

Times are ISO 8601 UTC (``2024-03-09T16:00:05Z``) with the epoch seconds beside them; an open
end is ``null``.  ``state``: ``failed`` (the start failed), ``running`` (no end),
``host-shutdown`` / ``host-crash`` (ended by a down, ``--host-down`` only), else from the
stop's reason (:data:`STATE_OF_STOP_REASON`, default ``stopped``).  A proof is
``{node, sec, msec, serial, id}`` where ``id`` (``[NODE:]SEC.MSEC:SERIAL``) is what
``auditfwd parse --event`` takes; an entry keeps at most four proofs, as auvirt does.

Which session an entry belongs to (per guest uuid, in list order): labels, resources, AVCs and
anomalies logged while a session of that uuid runs belong to it; those logged while none runs
(libvirt labels and assigns resources *before* it logs the start) wait for the next START of the
uuid; a successful stop or a down ends the running session.  What never finds a session is
listed in ``unattached`` with its ``kind``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from forwarder.audit.record import Event
from forwarder.virt.auparse_fields import TEXT_ERRORS, FieldCursor
from forwarder.virt.auvirt_format import summarize
from forwarder.virt.host_down import HostDown, HostDownBuilder
from forwarder.virt.sessions import Entry, EntryKind, EventId, SessionFilter

#: Session state after a successful stop, by the stop record's ``reason`` (libvirt's values);
#: other reasons (shutdown, destroyed, failed, daemon, ...) give ``stopped``.
STATE_OF_STOP_REASON: Final[dict[str, str]] = {
    "crashed": "crashed",
    "migrated": "migrated",
    "saved": "saved",
}
DEFAULT_STOPPED_STATE: Final = "stopped"
STATE_FAILED: Final = "failed"
STATE_RUNNING: Final = "running"
STATE_OF_DOWN: Final[dict[bool, str]] = {False: "host-shutdown", True: "host-crash"}

_JSON_OPTIONS: Final = orjson.OPT_INDENT_2


class DetailedSessionBuilder(HostDownBuilder):
    """:class:`HostDownBuilder` that also keeps the ``reason`` of start and stop records.

    Read :attr:`control_reasons` (START/STOP entry -> ``reason``) besides the base's lists.
    """

    def __init__(
        self, event_filter: SessionFilter, users: Mapping[int, str] | None = None, host_down: bool = False
    ) -> None:
        super().__init__(event_filter, users, host_down)
        self.control_reasons: dict[Entry, str] = {}

    def add(self, event: Event) -> None:
        """Process one event; note the ``reason`` of a START or STOP it appended."""
        before = len(self.entries)
        super().add(event)
        for entry in self.entries[before:]:
            if entry.kind in (EntryKind.START, EntryKind.STOP):
                reason = FieldCursor(event, self.users).find("reason")
                if reason is not None:
                    self.control_reasons[entry] = reason


def _text(value: str | None) -> str | None:
    """A value as valid UTF-8 for JSON: undecodable bytes become ``\\xNN``."""
    if value is None:
        return None
    return value.encode("utf-8", TEXT_ERRORS).decode("utf-8", "backslashreplace")


def json_text(value: str | None) -> str | None:
    """A value as valid UTF-8 for JSON (undecodable bytes as ``\\xNN``); ``None`` stays."""
    return _text(value)


def iso_time(seconds: int) -> str | None:
    """``seconds`` as ISO 8601 UTC, ``None`` when out of range."""
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return None


def proof_id(proof: EventId) -> str:
    """``[NODE:]SEC.MSEC:SERIAL``, the selector of ``auditfwd parse --event``."""
    stamp = f"{proof.sec}.{proof.msec:03d}:{proof.serial}"
    return stamp if proof.node is None else f"{proof.node}:{stamp}"


def _proofs(entry: Entry) -> list[dict[str, Any]]:
    return [
        {"node": _text(p.node), "sec": p.sec, "msec": p.msec, "serial": p.serial, "id": _text(proof_id(p))}
        for p in entry.proofs
    ]


def _moment(name: str, seconds: int) -> dict[str, Any]:
    """``{name: ISO, name_epoch: seconds}``; 0 (auvirt's "none") gives nulls."""
    if not seconds:
        return {name: None, f"{name}_epoch": None}
    return {name: iso_time(seconds), f"{name}_epoch": seconds}


def _pid(value: int) -> int | None:
    return value if value >= 0 else None


def _label(entry: Entry) -> dict[str, Any]:
    return {"level": _text(entry.seclevel), **_moment("time", entry.start), "proofs": _proofs(entry)}


def _resource(entry: Entry) -> dict[str, Any]:
    cgroup = None
    if entry.resource_type == "cgroup":
        cgroup = {
            "class": _text(entry.cgroup_class),
            "acl": _text(entry.cgroup_acl),
            "detail": _text(entry.cgroup_detail),
        }
    return {
        "type": _text(entry.resource_type),
        "reason": _text(entry.reason),
        "value": _text(entry.resource),
        "success": entry.success,
        **_moment("attached", entry.start),
        **_moment("detached", entry.end),
        "cgroup": cgroup,
        "proofs": _proofs(entry),
    }


def _avc(entry: Entry) -> dict[str, Any]:
    return {
        **_moment("time", entry.start),
        "user": _text(entry.user),
        "operation": _text(entry.avc_operation),
        "result": _text(entry.avc_result),
        "comm": _text(entry.comm),
        "target": _text(entry.target),
        "context": _text(entry.context),
        "proofs": _proofs(entry),
    }


def _anomaly(entry: Entry) -> dict[str, Any]:
    return {**_moment("time", entry.start), "user": _text(entry.user), "pid": _pid(entry.pid), "proofs": _proofs(entry)}


@dataclass(slots=True)
class _Session:
    start: Entry
    labels: list[Entry] = field(default_factory=list)
    resources: list[Entry] = field(default_factory=list)
    avcs: list[Entry] = field(default_factory=list)
    anomalies: list[Entry] = field(default_factory=list)
    stops: list[Entry] = field(default_factory=list)

    def take(self, entry: Entry) -> None:
        _LISTS[entry.kind](self).append(entry)


_LISTS: Final = {
    EntryKind.MACHINE_ID: lambda session: session.labels,
    EntryKind.RESOURCE: lambda session: session.resources,
    EntryKind.AVC: lambda session: session.avcs,
    EntryKind.ANOMALY: lambda session: session.anomalies,
    EntryKind.STOP: lambda session: session.stops,
}

_UNATTACHED: Final = {
    EntryKind.MACHINE_ID: _label,
    EntryKind.RESOURCE: _resource,
    EntryKind.AVC: _avc,
    EntryKind.ANOMALY: _anomaly,
}


def group_sessions(entries: list[Entry]) -> tuple[list[_Session], list[Entry]]:
    """Sessions in START order and the entries that belong to none (see the module's rules)."""
    sessions: list[_Session] = []
    running: dict[str | None, _Session] = {}
    waiting: dict[str | None, list[Entry]] = {}
    unattached: list[Entry] = []
    for entry in entries:
        kind = entry.kind
        if kind is EntryKind.DOWN:
            running.clear()
        elif kind is EntryKind.START:
            session = _Session(entry)
            for pending in waiting.pop(entry.uuid, []):
                session.take(pending)
            sessions.append(session)
            if entry.success:
                running[entry.uuid] = session
            else:
                running.pop(entry.uuid, None)
        elif kind is EntryKind.STOP:
            current = running.get(entry.uuid)
            if current is None:
                unattached.append(entry)
                continue
            current.take(entry)
            if entry.success:
                del running[entry.uuid]
        else:
            current = running.get(entry.uuid)
            if current is not None:
                current.take(entry)
            else:
                waiting.setdefault(entry.uuid, []).append(entry)
    for pending_entries in waiting.values():
        unattached.extend(pending_entries)
    order = {id(entry): at for at, entry in enumerate(entries)}
    unattached.sort(key=lambda entry: order[id(entry)])
    return sessions, unattached


def _state(session: _Session, reasons: Mapping[Entry, str], closed_by: Mapping[Entry, HostDown]) -> str:
    start = session.start
    if not start.success:
        return STATE_FAILED
    down = closed_by.get(start)
    if down is not None:
        return STATE_OF_DOWN[down.crash]
    if not start.end:
        return STATE_RUNNING
    stop_reason = _stop_reason(session, reasons)
    return STATE_OF_STOP_REASON.get(stop_reason or "", DEFAULT_STOPPED_STATE)


def _stop_reason(session: _Session, reasons: Mapping[Entry, str]) -> str | None:
    for stop in reversed(session.stops):
        if stop.success:
            return reasons.get(stop)
    return None


def _stop(entry: Entry, reasons: Mapping[Entry, str]) -> dict[str, Any]:
    return {
        **_moment("time", entry.start),
        "user": _text(entry.user),
        "success": entry.success,
        "reason": _text(reasons.get(entry)),
        "qemu_pid": _pid(entry.pid),
        "proofs": _proofs(entry),
    }


def _session(session: _Session, reasons: Mapping[Entry, str], closed_by: Mapping[Entry, HostDown]) -> dict[str, Any]:
    start = session.start
    return {
        "guest": {"name": _text(start.name), "uuid": _text(start.uuid)},
        "user": _text(start.user),
        **_moment("start", start.start),
        **_moment("end", start.end),
        "state": _state(session, reasons, closed_by),
        "start_reason": _text(reasons.get(start)),
        "stop_reason": _text(_stop_reason(session, reasons)),
        "success": start.success,
        "qemu_pid": _pid(start.pid),
        "labels": [_label(entry) for entry in session.labels],
        "resources": [_resource(entry) for entry in session.resources],
        "avcs": [_avc(entry) for entry in session.avcs],
        "anomalies": [_anomaly(entry) for entry in session.anomalies],
        "stops": [_stop(entry, reasons) for entry in session.stops],
        "proofs": _proofs(start),
    }


def _down(down: HostDown) -> dict[str, Any]:
    return {
        **_moment("time", down.entry.start),
        "crash": down.crash,
        "user": _text(down.entry.user),
        "success": down.entry.success,
        "closed_sessions": [
            {"name": _text(start.name), "uuid": _text(start.uuid), **_moment("start", start.start)}
            for start in down.closed
        ],
        "proofs": _proofs(down.entry),
    }


def _unattached(entry: Entry, reasons: Mapping[Entry, str]) -> dict[str, Any]:
    render = _UNATTACHED.get(entry.kind)
    body = _stop(entry, reasons) if render is None else render(entry)
    return {"kind": entry.kind.value, "guest": {"name": _text(entry.name), "uuid": _text(entry.uuid)}, **body}


def sessions_document(builder: DetailedSessionBuilder) -> dict[str, Any]:
    """The JSON document (as plain data) of everything ``builder`` has seen."""
    sessions, unattached = group_sessions(builder.entries)
    reasons = builder.control_reasons
    counts = summarize(builder.entries)
    return {
        "sessions": [_session(session, reasons, builder.closed_by) for session in sessions],
        "host_downs": [_down(down) for down in builder.downs],
        "unattached": [_unattached(entry, reasons) for entry in unattached],
        "summary": {
            **_moment("first", counts.first),
            **_moment("last", counts.last),
            "starts": counts.starts,
            "stops": counts.stops,
            "resources": counts.resources,
            "avcs": counts.avcs,
            "anomalies": counts.anomalies,
            "host_downs": len(builder.downs),
            "failures": counts.failures,
        },
    }


def render_json(builder: DetailedSessionBuilder) -> bytes:
    """:func:`sessions_document` serialized (indented, with a final newline)."""
    return orjson.dumps(sessions_document(builder), option=_JSON_OPTIONS) + b"\n"
