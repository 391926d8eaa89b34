"""One audit log line -> a :class:`Record`, or a :class:`Malformed` value saying why not.

The parser is pure: bytes in, values out, no I/O and no exceptions leaving :func:`parse_line`.

Line layout (``auditd.conf(5)``, ``docs/virt-audit.md`` §1.1)::

    [node=NAME ]type=NAME msg=audit(SEC.MSEC:SERIAL): BODY[\\x1dENRICHED]

Field values are kept **as written** (``fields["exe"] == '"/usr/bin/sudo"'``, hex stays hex,
``(null)`` and ``?`` stay) so that interpretation can follow auparse's rules, which depend on
whether a value was quoted.  :mod:`forwarder.audit.values` interprets them.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Final

from forwarder.audit.tables.record_types import RECORD_TYPE_NUMBERS

#: Separator between the raw fields and auditd's ENRICHED interpretations (``log_format = ENRICHED``).
ENRICHED_SEPARATOR: Final = "\x1d"

#: A line longer than this is still parsed; the limit only guards the regex against pathological
#: input.  The kernel caps one record near 8 KiB, but EXECVE records of huge argument lists and
#: glued-together syslog lines reach far beyond; 1 MiB covers every real case seen.
MAX_LINE_BYTES: Final = 1 << 20

_HEADER = re.compile(
    r"(?:node=(?P<node>\S*) )?type=(?P<type>[A-Za-z0-9_\[\]]+) "
    r"msg=audit\((?P<sec>\d+)\.(?P<msec>\d{1,3}):(?P<serial>\d+)\):? ?"
)

# Key and value, one C-level pass per record.  A value is double-quoted (the kernel and libaudit
# never escape a quote inside: such values are hex-encoded instead) or runs to the next space, as
# libauparse splits them.  Keys as they occur in real logs: `a0`, `a1[2]`, `a2_len`, `vm-pid` ...
_FIELD = re.compile(r'([^ =]+)=("[^"]*"|[^ ]*)')
# ENRICHED values may also be `{ ... }` groups with spaces inside (`SADDR={ saddr_fam=inet ... }`).
_ENRICHED_FIELD = re.compile(r'([^ =]+)=("[^"]*"|\{[^}]*\}|[^ ]*)')
# AppArmor subjects carry their mode after a space: `subj=libvirtd (enforce)`.
_APPARMOR_SUBJECT = re.compile(r"subj=([^ ]+ \([a-z]+\))")

# SELinux kernel AVC: `avc:  denied  { read write } for  pid=...` (also `granted`).
_SELINUX_AVC = re.compile(r"avc:\s+(\w+)\s+\{\s*([^}]*?)\s*\}\s+for\s+")
# RHEL 6 LOGIN: `old auid=700 new auid=700 old ses=1 new ses=2`.
_OLD_NEW = re.compile(r"\b(old|new) (auid|ses)=")

#: Record type number of SYSCALL, whose body is parsed in two parts (see :func:`_parse_syscall`).
_SYSCALL_TYPE: Final = 1300

#: Where the task part of a SYSCALL body starts: the kernel writes the per-call values first
#: (``arch syscall success exit a0..a3 items ppid pid``), then the task's identity from ``auid=``
#: on (ids, tty, ses, comm, exe, subj, key), which repeats for every call of a process.
_SYSCALL_TASK_PART: Final = " auid="

#: The per-call part of a SYSCALL body as the kernel writes it (``audit_log_exit``); a body in
#: another layout is split into fields by :data:`_FIELD` instead.
_SYSCALL_CALL_KEYS: Final = ("arch", "syscall", "success", "exit", "a0", "a1", "a2", "a3", "items", "ppid", "pid")
_SYSCALL_CALL_PART: Final = re.compile(" ".join(f"{key}=([^ ]*)" for key in _SYSCALL_CALL_KEYS))

#: A parsed body: ``(fields, enriched, message, duplicates)``.
_Body = tuple[dict[str, str], dict[str, str], str | None, list[tuple[str, str]] | None]

#: A parsed body with its remembered part (:attr:`Record.shared`).
_Parsed = tuple[dict[str, str], dict[str, str], str | None, list[tuple[str, str]] | None, dict[str, str] | None]


class _BodyMemo:
    """Parsed bodies by ``(type id, text after the header)``, bounded in entries and characters.

    The same bodies recur all the time (the same binaries, directories and command lines), so
    records with equal bodies share their parsed ``fields``/``enriched`` dicts and
    ``duplicates`` list, which is why those are read-only.  When full, the oldest entries go.
    """

    __slots__ = ("_chars", "_entries", "_lock", "_max_chars", "_max_entries")

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self._entries: dict[tuple[int, str], _Body] = {}
        self._chars = 0
        self._max_entries = max_entries
        self._max_chars = max_chars
        # Lines may be parsed in several threads at once: changes to the memo (on a miss only)
        # take turns, so that its bound holds and no thread sees it change while evicting.
        self._lock = threading.Lock()

    def parse(self, type_id: int, rest: str) -> _Body:
        """:func:`_parse_body` of ``rest``, remembered (the result is shared)."""
        key = (type_id, rest)
        body = self._entries.get(key)
        if body is None:
            body = _parse_body(type_id, rest)
            with self._lock:
                entries = self._entries
                if key not in entries:
                    self._chars += len(rest)
                    while entries and (len(entries) >= self._max_entries or self._chars > self._max_chars):
                        oldest = next(iter(entries))
                        del entries[oldest]
                        self._chars -= len(oldest[1])
                    entries[key] = body
        return body


#: Bodies up to this length go to the memo of short bodies (PATH, CWD, PROCTITLE, most EXECVE
#: records, SYSCALL task parts), longer ones to the memo of long bodies (argument lists of guest
#: starts and build jobs), so that a run of distinct long bodies never pushes out the short ones.
_SHORT_BODY_MAX_CHARS: Final = 1024

#: Bodies longer than this are never remembered: one alone would take a large part of the memo.
_LONG_BODY_MAX_CHARS: Final = 64 << 10

#: The parser's memos (module state: they only ever hold what parsing would give again).  Two
#: thousand short bodies cover a host's routine; the long ones are limited by their characters
#: (512 Ki characters, with their parsed copies a few MiB: a long body is mostly many short
#: fields, each a string object of its own).  Both are full after some ten thousand records, so
#: memory does not grow with the input.
_SHORT_BODIES: Final = _BodyMemo(max_entries=2048, max_chars=2048 * _SHORT_BODY_MAX_CHARS)
_LONG_BODIES: Final = _BodyMemo(max_entries=128, max_chars=512 << 10)


@dataclass(slots=True)
class Record:
    """One audit record.

    Attributes:
        node: the ``node=`` prefix, or ``None``.
        type: record type name as auditd writes it (``SYSCALL``, ``UNKNOWN[1420]``).
        type_id: the record type number, ``-1`` when neither name nor number is known.
        sec, msec, serial: the ``msg=audit(SEC.MSEC:SERIAL)`` header.
        fields: raw fields in log order, values as written (quotes kept).  For user-space
            messages the fields inside ``msg='...'`` follow the outer ones.  A key seen twice
            keeps its first value here; later values go to ``duplicates``.  Read-only: records
            with the same body may share one dict (as ``enriched`` and ``duplicates``).
        enriched: ENRICHED interpretations (upper-case keys, quotes stripped).
        text: the line as read, without the line end.
        message: for user-space records the text inside ``msg='...'``, else ``None``.
        duplicates: ``(key, value)`` pairs of repeated keys, in order.
        warnings: what the parser noticed but could live with (invalid UTF-8 ...).
        shared: the part of ``fields`` the parser remembered, one dict shared by every record
            with the same text there (so equal parts are recognized by identity): the task part
            of a SYSCALL record (``auid=`` on), the ``msg='...'`` fields of a user message, all
            of ``fields`` for other records with a remembered body; ``None`` when the body was
            parsed whole.  Its keys and values are also in ``fields``.  Read-only.
    """

    node: str | None
    type: str
    type_id: int
    sec: int
    msec: int
    serial: int
    fields: dict[str, str]
    enriched: dict[str, str]
    text: str
    message: str | None = None
    duplicates: list[tuple[str, str]] | None = None
    warnings: list[str] | None = None
    shared: dict[str, str] | None = None

    @property
    def key(self) -> tuple[str | None, int, int, int]:
        """The event this record belongs to: ``(node, sec, msec, serial)``."""
        return (self.node, self.sec, self.msec, self.serial)


@dataclass(slots=True, frozen=True)
class Malformed:
    """A line that is not an audit record, with the reason.  Kept for the dead-letter file."""

    text: str
    reason: str


@dataclass(slots=True)
class Event:
    """Records that share ``(node, sec, msec, serial)``, in the order they were read."""

    node: str | None
    sec: int
    msec: int
    serial: int
    records: list[Record] = field(default_factory=list)
    #: True when the assembler had to close the event early (in-flight cap or end of input
    #: before an end-of-event record): the event may be missing records.
    forced: bool = False
    #: True when an earlier kernel event of this stream had the same key: records that arrived
    #: after their event was complete, which libauparse (and so the assembler) makes an event of
    #: their own.  The document id tells such a fragment from the event it belongs to.
    fragment: bool = False

    @property
    def key(self) -> tuple[str | None, int, int, int]:
        return (self.node, self.sec, self.msec, self.serial)

    @property
    def type(self) -> str:
        """The event's type is its first record's type (as in libauparse)."""
        return self.records[0].type


def is_standalone_type(type_id: int) -> bool:
    """True for record types that always form an event alone (user-space and daemon messages,
    kernel LOGIN, user anomalies, VIRT_*): types below 1300 and from 2100 on.

    The kernel writes LOGIN with the serial of the syscall that caused it, so a LOGIN event and a
    SYSCALL event can share one key; the type tells them apart.
    """
    return type_id < 1300 or type_id >= 2100


def decode_line(line: bytes) -> tuple[str, bool]:
    """Decode one line to text, keeping the meaning of every byte.

    Returns the text and whether the line was valid UTF-8.  Invalid bytes become ``\\xNN``
    escapes, so nothing is lost and the result always encodes to JSON.
    """
    try:
        return line.decode("utf-8"), True
    except UnicodeDecodeError:
        return line.decode("utf-8", "backslashreplace"), False


def parse_line(line: bytes | str) -> Record | Malformed:
    """Parse one log line (with or without its line end).

    Never raises: anything that is not a record comes back as :class:`Malformed`.
    """
    try:
        return _parse(line)
    except Exception as exc:  # the core's promise: no exception leaves it
        text = line if isinstance(line, str) else line.decode("utf-8", "backslashreplace")
        return Malformed(text.rstrip("\r\n"), f"internal parser error: {type(exc).__name__}: {exc}")


def _parse(line: bytes | str) -> Record | Malformed:
    warnings: list[str] | None = None
    if isinstance(line, bytes):
        text, valid = decode_line(line)
        if not valid:
            warnings = ["invalid UTF-8 (bytes kept as \\xNN escapes)"]
    else:
        text = line
    text = text.rstrip("\r\n")
    m = _HEADER.match(text)
    if m is None:
        return Malformed(text, _why_not_a_record(text))
    if len(text) > MAX_LINE_BYTES:
        return Malformed(text, f"line longer than {MAX_LINE_BYTES} bytes")
    node, type_name, sec, msec, serial = m.groups()
    type_id = RECORD_TYPE_NUMBERS.get(type_name)
    if type_id is None:
        type_id = _unknown_type_number(type_name)
    rest = text[m.end() :]
    if type_id == _SYSCALL_TYPE:
        fields, enriched, message, duplicates, shared = _parse_syscall(rest)
    elif _is_kernel_type(type_id):
        fields, enriched, message, duplicates, shared = _remembered_parts(type_id, rest)
    else:
        fields, enriched, message, duplicates, shared = _parse_user_message(type_id, rest)
    return Record(
        node,
        type_name,
        type_id,
        int(sec),
        int(msec),
        int(serial),
        fields,
        enriched,
        text,
        message,
        duplicates,
        warnings,
        shared,
    )


def _remembered_body(type_id: int, rest: str) -> _Body:
    """:func:`_parse_body` through the memo that fits the body's length."""
    length = len(rest)
    if length <= _SHORT_BODY_MAX_CHARS:
        return _SHORT_BODIES.parse(type_id, rest)
    if length <= _LONG_BODY_MAX_CHARS:
        return _LONG_BODIES.parse(type_id, rest)
    return _parse_body(type_id, rest)


def _remembered_parts(type_id: int, rest: str) -> _Parsed:
    """:func:`_remembered_body`, its fields being the shared part when they were remembered."""
    body = _remembered_body(type_id, rest)
    fields = body[0]
    return fields, body[1], body[2], body[3], fields if len(rest) <= _LONG_BODY_MAX_CHARS else None


def _whole(type_id: int, rest: str) -> _Parsed:
    """:func:`_parse_body`, nothing shared."""
    fields, enriched, message, duplicates = _parse_body(type_id, rest)
    return fields, enriched, message, duplicates, None


def _is_kernel_type(type_id: int) -> bool:
    """Kernel record types (1300-2099) never wrap their text in ``msg='...'``; the others may."""
    return 1300 <= type_id < 2100


def _parse_user_message(type_id: int, rest: str) -> _Parsed:
    """A user-space message: the outer fields (``pid``, ids, ``ses``, ``subj``, different for
    every process) parsed each time, the ``msg='...'`` part remembered.

    Gives exactly what :func:`_parse_body` gives; the split is only taken when it cannot change
    the result (no quote or ENRICHED part in the outer fields, no key met twice, no AppArmor
    subject to mend), otherwise the whole body is parsed at once.
    """
    msg_at = rest.find("msg='")
    if msg_at <= 0:
        return _remembered_parts(type_id, rest)
    outer = rest[:msg_at]
    if ENRICHED_SEPARATOR in outer or "'" in outer or '"' in outer:
        return _whole(type_id, rest)
    fields: dict[str, str] = {}
    if _collect(outer, type_id, fields, None) is not None:
        return _whole(type_id, rest)
    message_fields, enriched, message, message_duplicates = _remembered_body(type_id, rest[msg_at:])
    count = len(fields)
    fields.update(message_fields)
    if message_duplicates is not None or len(fields) != count + len(message_fields):
        return _whole(type_id, rest)
    subject = fields.get("subj")
    if subject is not None and ":" not in subject and " (" in rest:
        return _whole(type_id, rest)
    return fields, enriched, message, None, message_fields if len(rest) - msg_at <= _LONG_BODY_MAX_CHARS else None


def _parse_syscall(rest: str) -> _Parsed:
    """A SYSCALL body: the per-call part parsed each time, the task part remembered.

    Gives exactly what :func:`_parse_body` gives; the split is only taken when it cannot change
    the result (no quote in the per-call part, no key met in both parts, no ENRICHED part in the
    per-call part), otherwise the whole body is parsed at once.
    """
    cut = rest.find(_SYSCALL_TASK_PART)
    if cut < 0:
        return _whole(_SYSCALL_TYPE, rest)
    head = rest[:cut]
    if '"' in head or ENRICHED_SEPARATOR in head or "subj=" in head:
        return _whole(_SYSCALL_TYPE, rest)
    call = _SYSCALL_CALL_PART.fullmatch(head)
    if call is not None:  # the kernel's layout: distinct keys, values without spaces or quotes
        fields = dict(zip(_SYSCALL_CALL_KEYS, call.groups(), strict=True))
        distinct = True
    else:
        pairs = _FIELD.findall(head)
        fields = dict(pairs)
        distinct = len(fields) == len(pairs)
    task_fields, enriched, _, task_duplicates = _remembered_body(_SYSCALL_TYPE, rest[cut + 1 :])
    count = len(fields)
    fields.update(task_fields)
    if not distinct or task_duplicates is not None or len(fields) != count + len(task_fields):
        return _whole(_SYSCALL_TYPE, rest)
    return fields, enriched, None, None, task_fields if len(rest) - cut <= _LONG_BODY_MAX_CHARS else None


def _parse_body(type_id: int, rest: str) -> _Body:
    """The fields of a record's text after its header (fresh dicts; see :class:`_BodyMemo`)."""
    raw, sep, enriched_text = rest.partition(ENRICHED_SEPARATOR)
    body = raw

    fields: dict[str, str] = {}
    duplicates: list[tuple[str, str]] | None = None
    message: str | None = None
    # Only user-space messages (outside the kernel's 1300-2099 range) wrap their text in msg='...'.
    msg_at = body.find("msg='") if not _is_kernel_type(type_id) else -1
    if msg_at >= 0:
        close = body.rfind("'")
        if close > msg_at + 4:
            message = body[msg_at + 5 : close]
            outer = body[:msg_at]
            tail = body[close + 1 :]
        else:  # unterminated: keep what is there
            message = body[msg_at + 5 :]
            outer, tail = body[:msg_at], ""
        duplicates = _collect(outer, type_id, fields, duplicates)
        duplicates = _collect(message, type_id, fields, duplicates)
        if tail.strip():
            duplicates = _collect(tail, type_id, fields, duplicates)
    else:
        duplicates = _collect(body, type_id, fields, duplicates)
    subject = fields.get("subj")
    if subject is not None and ":" not in subject and " (" in body:
        apparmor = _APPARMOR_SUBJECT.search(body)
        if apparmor is not None:
            fields["subj"] = apparmor.group(1)

    enriched: dict[str, str] = {}
    if sep:
        for key, value in _ENRICHED_FIELD.findall(enriched_text):
            if value[:1] == '"' and value[-1:] == '"' and len(value) >= 2:
                value = value[1:-1]
            enriched.setdefault(key, value)
    return fields, enriched, message, duplicates


def _why_not_a_record(text: str) -> str:
    if not text.strip():
        return "empty line"
    if text.startswith("#"):
        return "comment line"
    if "msg=audit(" in text:
        return "unparsable audit header"
    return "no msg=audit(SEC.MSEC:SERIAL) header"


def _collect(
    text: str,
    type_id: int,
    fields: dict[str, str],
    duplicates: list[tuple[str, str]] | None,
) -> list[tuple[str, str]] | None:
    """Add the ``key=value`` pairs of ``text`` to ``fields``; return the (new) duplicates list."""
    if type_id == 1400 or type_id == 1107:  # AVC, USER_AVC
        avc = _SELINUX_AVC.search(text)
        if avc is not None:
            fields.setdefault("seresult", avc.group(1))
            fields.setdefault("seperms", ",".join(avc.group(2).split()))
            text = text[avc.end() :]
    elif type_id == 1006 and "old " in text:  # LOGIN, RHEL 6 form
        text = _OLD_NEW.sub(r"\1-\2=", text)
    pairs = _FIELD.findall(text)
    if not fields and duplicates is None:
        fields.update(pairs)
        if len(fields) == len(pairs):
            return None
        fields.clear()
    for key, value in pairs:
        if key in fields:
            if duplicates is None:
                duplicates = []
            duplicates.append((key, value))
        else:
            fields[key] = value
    return duplicates


def _unknown_type_number(name: str) -> int:
    """``UNKNOWN[1420]`` -> 1420; any other name libaudit does not know -> -1."""
    if name.startswith("UNKNOWN[") and name.endswith("]"):
        digits = name[8:-1]
        if digits.isdigit():
            return int(digits)
    return -1
