"""auvirt 3.0.9's text output, byte for byte (``docs/virt-audit.md`` §2.4).

Column widths count bytes, as C's ``printf("%-22.22s")`` does, so a UTF-8 name may be cut in
the middle of a character; the output is therefore built as ``bytes``.  Times are shown in
local time like ``ctime(3)``: the caller passes the conversion (``time.localtime`` in the
command, ``time.gmtime`` by default), which keeps this module pure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from forwarder.virt.auparse_fields import TEXT_ERRORS
from forwarder.virt.sessions import Entry, EntryKind

#: Seconds -> broken-down time (``time.localtime``-like).
Localtime = Callable[[float], time.struct_time]

_DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: Column formats of auvirt: (minimum width, maximum bytes).
_KIND_COLUMN: Final = (6, 5)
_NAME_COLUMN: Final = (22, 22)
_UUID_COLUMN: Final = (36, 36)
_USER_COLUMN: Final = (11, 11)
_PERIOD_COLUMN: Final = (32, 32)
_RESOURCE_TYPE_COLUMN: Final = (12, 12)
_REASON_COLUMN: Final = (10, 10)
_OPERATION_COLUMN: Final = (12, 12)
_RESULT_COLUMN: Final = (10, 10)
#: ``ctime`` text kept for a start (``Mon Mar 11 07:58``) and the ``HH:MM`` of an end.
_CTIME_DATE_MINUTE: Final = 16
_CTIME_TIME_AT: Final = 11
_END_TIME_COLUMN: Final = (7, 5)

_SECONDS_PER_MINUTE: Final = 60
_SECONDS_PER_HOUR: Final = 3600
_SECONDS_PER_DAY: Final = 86400
_MINUTES_PER_HOUR: Final = 60
_HOURS_PER_DAY: Final = 24


@dataclass(slots=True, frozen=True)
class RenderOptions:
    """auvirt's output switches: ``--all-events``, ``--show-uuid``, ``--proof``."""

    all_events: bool = False
    show_uuid: bool = False
    proof: bool = False


def ctime_text(seconds: int, localtime: Localtime = time.gmtime) -> str:
    """``ctime(3)`` without its newline: ``Sat Mar  9 16:00:05 2024``."""
    try:
        moment = localtime(seconds)
    except (OverflowError, OSError, ValueError):
        return ""
    return (
        f"{_DAY_NAMES[moment.tm_wday]} {_MONTH_NAMES[moment.tm_mon - 1]}{moment.tm_mday:3d} "
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} {moment.tm_year}"
    )


def column(text: str | None, width: tuple[int, int]) -> bytes:
    """C ``%-W.Ps`` of ``text`` (``None`` prints empty): cut to P bytes, padded to W bytes."""
    minimum, maximum = width
    data = b"" if text is None else text.encode("utf-8", TEXT_ERRORS)
    return data[:maximum].ljust(minimum)


def _text(value: str | None) -> bytes:
    return b"" if value is None else value.encode("utf-8", TEXT_ERRORS)


def _c_div(numerator: int, denominator: int) -> int:
    quotient = abs(numerator) // denominator
    return quotient if numerator >= 0 else -quotient


def _c_mod(numerator: int, denominator: int) -> int:
    return numerator - denominator * _c_div(numerator, denominator)


def duration_text(seconds: int) -> str:
    """auvirt's ``(hh:mm)`` / ``(d+hh:mm)`` with C's truncating arithmetic (negative allowed)."""
    minutes = _c_mod(_c_div(seconds, _SECONDS_PER_MINUTE), _MINUTES_PER_HOUR)
    hours = _c_mod(_c_div(seconds, _SECONDS_PER_HOUR), _HOURS_PER_DAY)
    days = _c_div(seconds, _SECONDS_PER_DAY)
    if days:
        return f"({days}+{hours:02d}:{minutes:02d})"
    return f"({hours:02d}:{minutes:02d})"


def period_text(entry: Entry, localtime: Localtime = time.gmtime) -> str:
    """The period column before its cut to 32 bytes: start, ``- HH:MM  (dur)`` or ``- failed``."""
    text = ctime_text(entry.start, localtime)[:_CTIME_DATE_MINUTE].ljust(_CTIME_DATE_MINUTE)
    if entry.end:
        end_clock = ctime_text(entry.end, localtime)[_CTIME_TIME_AT:]
        text += " - " + end_clock[: _END_TIME_COLUMN[1]].ljust(_END_TIME_COLUMN[0])
        text += duration_text(entry.end - entry.start)
    elif not entry.success and entry.kind not in (EntryKind.AVC, EntryKind.ANOMALY):
        text += " - failed"
    return text


def _is_shown(entry: Entry, options: RenderOptions) -> bool:
    if entry.kind is EntryKind.MACHINE_ID:
        return False
    return options.all_events or entry.kind is EntryKind.START


def render_entry(entry: Entry, options: RenderOptions, localtime: Localtime = time.gmtime) -> bytes:
    """One entry as auvirt prints it (with its proof lines under ``--proof``); ``b""`` if hidden."""
    if not _is_shown(entry, options):
        return b""
    parts: list[bytes] = []
    if options.all_events:
        parts.append(column(entry.kind.value, _KIND_COLUMN) + b" ")
    parts.append(column(entry.name, _NAME_COLUMN))
    if options.show_uuid:
        parts.append(b"\t" + column(entry.uuid, _UUID_COLUMN))
    parts.append(b"\t" + column(entry.user, _USER_COLUMN))
    parts.append(b"\t" + column(period_text(entry, localtime), _PERIOD_COLUMN))
    if entry.kind is EntryKind.RESOURCE:
        parts.append(b"\t" + column(entry.resource_type, _RESOURCE_TYPE_COLUMN))
        parts.append(b"\t" + column(entry.reason, _REASON_COLUMN))
        if entry.resource_type != "cgroup":
            parts.append(b"\t" + _text(entry.resource))
        else:
            parts.append(b"\t" + b"\t".join(map(_text, (entry.cgroup_class, entry.cgroup_acl, entry.cgroup_detail))))
    elif entry.kind is EntryKind.AVC:
        parts.append(b"\t" + column(entry.avc_operation, _OPERATION_COLUMN))
        parts.append(b"\t" + column(entry.avc_result, _RESULT_COLUMN))
        parts.append(b"\t" + b"\t".join(map(_text, (entry.comm, entry.target, entry.context))))
    parts.append(b"\n")
    if options.proof:
        serials = ",".join(str(proof.serial) for proof in entry.proofs if proof.sec)
        parts.append(f"    Proof:{serials}\n\n".encode("ascii"))
    return b"".join(parts)


def render_entries(entries: Iterable[Entry], options: RenderOptions, localtime: Localtime = time.gmtime) -> bytes:
    """Every shown entry in list order (auvirt does not sort)."""
    return b"".join(render_entry(entry, options, localtime) for entry in entries)


@dataclass(slots=True)
class Summary:
    """auvirt's ``--summary`` counts and time range (0 = undefined)."""

    first: int = 0
    last: int = 0
    starts: int = 0
    stops: int = 0
    resources: int = 0
    avcs: int = 0
    anomalies: int = 0
    failures: int = 0


_COUNTED: Final = {
    EntryKind.START: "starts",
    EntryKind.STOP: "stops",
    EntryKind.RESOURCE: "resources",
    EntryKind.AVC: "avcs",
    EntryKind.ANOMALY: "anomalies",
}
#: Kinds whose failures count as failed operations (and only there).
_FAILABLE: Final = frozenset({EntryKind.START, EntryKind.STOP, EntryKind.RESOURCE})


def summarize(entries: Iterable[Entry]) -> Summary:
    """Count the entries as auvirt's summary does; MACHINE_ID entries only widen the range."""
    summary = Summary()
    for entry in entries:
        if not entry.success and entry.kind in _FAILABLE:
            summary.failures += 1
        else:
            counter = _COUNTED.get(entry.kind)
            if counter is not None:
                setattr(summary, counter, getattr(summary, counter) + 1)
        for moment in (entry.start, entry.end):
            if moment:
                if summary.first == 0 or moment < summary.first:
                    summary.first = moment
                if summary.last == 0 or moment > summary.last:
                    summary.last = moment
    return summary


def render_summary(summary: Summary, localtime: Localtime = time.gmtime) -> bytes:
    """The ``--summary`` report."""

    def moment(seconds: int) -> str:
        return ctime_text(seconds, localtime)[:_CTIME_DATE_MINUTE] if seconds else "undef"

    lines = (
        f"Range of time for report:       {moment(summary.first)} - {moment(summary.last)}",
        f"Number of guest starts:         {summary.starts}",
        f"Number of guest stops:          {summary.stops}",
        f"Number of resource assignments: {summary.resources}",
        f"Number of related AVCs:         {summary.avcs}",
        f"Number of related anomalies:    {summary.anomalies}",
        f"Number of failed operations:    {summary.failures}",
    )
    return ("\n".join(lines) + "\n").encode("ascii")
