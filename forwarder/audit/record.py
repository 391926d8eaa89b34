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
from collections import deque
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

#: The same header with ASCII digits, capturing the stamp (``msg=audit(...)`` and its colon, the
#: text :data:`_STAMP_TOKEN` reads) and the text after the header too: every line auditd writes,
#: for the lines :func:`parse_line` does not read without a regex (``node=`` ones mostly).  A line
#: it matches, :data:`_HEADER` matches the same way (``[0-9]`` is part of ``\d``, and the digits
#: are followed by the same punctuation); lines with other digits go through :data:`_HEADER`.
_ASCII_LINE = re.compile(
    r"(?:node=(\S*) )?type=([A-Za-z0-9_\[\]]+) (msg=audit\(([0-9]+)\.([0-9]{1,3}):([0-9]+)\):?) ?(.*)",
    re.DOTALL,
)

#: ``int`` of every 1 to 3 ASCII digits, the millisecond part of a stamp (a dict look-up costs
#: less than ``int`` of text).
_MSEC_NUMBERS: Final = {f"{number:0{width}d}": number for width in (1, 2, 3) for number in range(10**width)}

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

#: The per-call keys with empty values, the start of every :attr:`_Remembered.call_template`.
_EMPTY_CALL_PART: Final = dict.fromkeys(_SYSCALL_CALL_KEYS, "")

#: A whole SYSCALL body in the kernel's layout: the per-call values, then the task part from
#: ``auid=`` on.  Its values hold no space, quote, ``=`` or ENRICHED separator, so when it matches,
#: the first `` auid=`` ends the per-call part and that part needs none of the checks of
#: :func:`_parse_syscall` but the ones on the task part (see :attr:`_Remembered.call_template`).
_SYSCALL_LAYOUT: Final = re.compile(
    " ".join(f'{key}=([^ "=\x1d]*)' for key in _SYSCALL_CALL_KEYS) + r" (auid=.*)", re.DOTALL
)

#: A parsed body: ``(fields, enriched, message, duplicates)``.
_Body = tuple[dict[str, str], dict[str, str], str | None, list[tuple[str, str]] | None]

#: A parsed body with its remembered part (:attr:`Record.shared`).
_Parsed = tuple[dict[str, str], dict[str, str], str | None, list[tuple[str, str]] | None, dict[str, str] | None]


class _Remembered:
    """A body in the memo: what :func:`_parse_body` gave for it, shared by every record with it.

    Attributes:
        fields, enriched, message, duplicates: the parsed body (read-only).
        call_template: for a SYSCALL task part (``auid=`` on) that can follow any per-call part
            (no repeated key, none of the per-call keys), a dict of the per-call keys (values
            to be set) followed by the task part's fields: a SYSCALL record's fields are a copy
            of it with the per-call values set, keys in log order.  ``None`` otherwise.
        used: the body was looked up again since it was remembered or last spared (see
            :meth:`_BodyMemo.add`).
    """

    __slots__ = ("call_template", "duplicates", "enriched", "fields", "message", "used")

    def __init__(self, type_id: int, body: _Body) -> None:
        self.fields, self.enriched, self.message, self.duplicates = body
        self.call_template: dict[str, str] | None = None
        if type_id == _SYSCALL_TYPE and self.duplicates is None:
            template = _EMPTY_CALL_PART.copy()
            template.update(self.fields)
            if len(template) == len(_SYSCALL_CALL_KEYS) + len(self.fields):
                self.call_template = template
        self.used = False


class _BodyMemo:
    """Parsed bodies by ``(type id, text after the header)``, bounded in entries and characters.

    The same bodies recur all the time (the same binaries, directories and command lines), so
    records with equal bodies share their parsed ``fields``/``enriched`` dicts and
    ``duplicates`` list, which is why those are read-only.  When full, the oldest entries go,
    but one that was looked up again since it came (or was last spared) is spared once and goes
    to the back ("second chance"): bodies that recur outlive runs of one-off bodies (the task
    parts of short-lived processes, messages naming a new pid).
    """

    __slots__ = ("_chars", "_entries", "_lock", "_max_chars", "_max_entries", "_order")

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self._entries: dict[tuple[int, str], _Remembered] = {}
        # The keys, oldest first (a dict deletes from its front slowly).
        self._order: deque[tuple[int, str]] = deque()
        self._chars = 0
        self._max_entries = max_entries
        self._max_chars = max_chars
        # Lines may be parsed in several threads at once: changes to the memo (on a miss only)
        # take turns, so that its bound holds and no thread sees it change while evicting.
        # Marking an entry used is a single attribute store, safe without the lock.
        self._lock = threading.Lock()

    def get(self, type_id: int, rest: str) -> _Remembered:
        """:func:`_parse_body` of ``rest``, remembered (the result is shared)."""
        key = (type_id, rest)
        remembered = self._entries.get(key)
        if remembered is None:
            return self.add(key)
        remembered.used = True
        return remembered

    def add(self, key: tuple[int, str]) -> _Remembered:
        """Parse the body ``key`` names and remember it (a miss of :meth:`get`)."""
        type_id, rest = key
        remembered = _Remembered(type_id, _parse_body(type_id, rest))
        with self._lock:
            entries = self._entries
            if key in entries:  # another thread was first
                return entries[key]
            order = self._order
            self._chars += len(rest)
            # Each entry is spared at most once here, even if other threads mark entries used
            # meanwhile: the loop ends after at most two rounds.
            spares = len(order)
            while entries and (len(entries) >= self._max_entries or self._chars > self._max_chars):
                oldest = order.popleft()
                candidate = entries[oldest]
                if candidate.used and spares:
                    spares -= 1
                    candidate.used = False
                    order.append(oldest)
                    continue
                del entries[oldest]
                self._chars -= len(oldest[1])
            entries[key] = remembered
            order.append(key)
        return remembered


#: Bodies up to this length go to the memo of short bodies (PATH, CWD, PROCTITLE, most EXECVE
#: records, SYSCALL task parts), longer ones to the memo of long bodies (argument lists of guest
#: starts and build jobs), so that a run of distinct long bodies never pushes out the short ones.
_SHORT_BODY_MAX_CHARS: Final = 1024

#: Bodies longer than this are never remembered: one alone would take a large part of the memo.
_LONG_BODY_MAX_CHARS: Final = 64 << 10

#: The parser's memos (module state: they only ever hold what parsing would give again).  Two
#: thousand short bodies cover a host's routine (a SYSCALL task part also keeps its
#: :attr:`_Remembered.call_template`, a second dict of its size); the long ones are limited by
#: their characters (512 Ki characters, with their parsed copies a few MiB: a long body is mostly
#: many short fields, each a string object of its own).  Both are full after some ten thousand
#: records, so memory does not grow with the input.
_SHORT_BODIES: Final = _BodyMemo(max_entries=2048, max_chars=2048 * _SHORT_BODY_MAX_CHARS)
_LONG_BODIES: Final = _BodyMemo(max_entries=128, max_chars=512 << 10)
#: The short bodies' entries, looked up directly on the hot path (:meth:`_BodyMemo.get` inlined).
_SHORT_REMEMBERED: Final = _SHORT_BODIES._entries


@dataclass(slots=True, init=False)
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

    # Written out (``init=False``) so that the compiled build runs it as native code: the
    # constructor dataclasses generate stays interpreted Python, which sets every attribute
    # through its descriptor and costs more than the rest of a memo hit's parse.
    def __init__(
        self,
        node: str | None,
        type: str,
        type_id: int,
        sec: int,
        msec: int,
        serial: int,
        fields: dict[str, str],
        enriched: dict[str, str],
        text: str,
        message: str | None = None,
        duplicates: list[tuple[str, str]] | None = None,
        warnings: list[str] | None = None,
        shared: dict[str, str] | None = None,
    ) -> None:
        self.node = node
        self.type = type
        self.type_id = type_id
        self.sec = sec
        self.msec = msec
        self.serial = serial
        self.fields = fields
        self.enriched = enriched
        self.text = text
        self.message = message
        self.duplicates = duplicates
        self.warnings = warnings
        self.shared = shared

    @property
    def key(self) -> tuple[str | None, int, int, int]:
        """The event this record belongs to: ``(node, sec, msec, serial)``."""
        return (self.node, self.sec, self.msec, self.serial)


@dataclass(slots=True, frozen=True)
class Malformed:
    """A line that is not an audit record, with the reason.  Kept for the dead-letter file."""

    text: str
    reason: str


@dataclass(slots=True, init=False)
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

    # Written out for the compiled build, as Record's constructor.
    def __init__(
        self,
        node: str | None,
        sec: int,
        msec: int,
        serial: int,
        records: list[Record] | None = None,
        forced: bool = False,
        fragment: bool = False,
    ) -> None:
        self.node = node
        self.sec = sec
        self.msec = msec
        self.serial = serial
        self.records = [] if records is None else records
        self.forced = forced
        self.fragment = fragment

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
    """Decode one line to text, keeping the meaning of every byte (as :func:`parse_line` does).

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
        warnings: list[str] | None = None
        if isinstance(line, bytes):
            try:
                text = line.decode()
            except UnicodeDecodeError:
                text = line.decode("utf-8", "backslashreplace")
                warnings = [_INVALID_UTF8]
        else:
            text = line
        text = text.rstrip("\r\n")
        # Most lines: ``type=NAME msg=audit(SEC.MSEC:SERIAL): BODY`` of a known type, often with
        # the stamp of the line before.  Read without a regex; see _TYPE_TOKENS and _read_stamp
        # for why this reads the header exactly as _HEADER does.
        parts = text.split(" ", 2)
        if len(parts) == 3:
            known = _TYPE_TOKENS.get(parts[0])
            if known is not None and len(text) <= MAX_LINE_BYTES:
                last = _last_stamp
                stamp = last if parts[1] == last[0] else _read_stamp(parts[1])
                if stamp[0]:  # not _NOT_A_STAMP
                    return _record(None, known[0], known[1], stamp[2], stamp[3], stamp[4], text, parts[2], warnings)
        return _parse_any_header(text, warnings)
    except Exception as exc:  # the core's promise: no exception leaves it
        text = line if isinstance(line, str) else line.decode("utf-8", "backslashreplace")
        return Malformed(text.rstrip("\r\n"), f"internal parser error: {type(exc).__name__}: {exc}")


#: The warning of a line that is not valid UTF-8.
_INVALID_UTF8: Final = "invalid UTF-8 (bytes kept as \\xNN escapes)"

#: The reason a line longer than :data:`MAX_LINE_BYTES` is not parsed.
_TOO_LONG: Final = f"line longer than {MAX_LINE_BYTES} bytes"

#: ``type=NAME`` of every known type -> ``(NAME, number)``.  A line's text up to its first space
#: found here is what :data:`_HEADER` reads as its type: the text starts with ``type=`` (so no
#: ``node=`` part), and the name is made of the characters the regex allows.
_TYPE_TOKENS: Final = {
    f"type={name}": (name, number)
    for name, number in RECORD_TYPE_NUMBERS.items()
    if re.fullmatch(r"[A-Za-z0-9_\[\]]+", name)
}

#: The stamp between the type and the body, as :data:`_ASCII_LINE` reads it, without the space
#: that may follow (``\):? ?`` in the regex: a line split at its spaces has the space after it).
_STAMP_TOKEN: Final = re.compile(r"msg=audit\(([0-9]+)\.([0-9]{1,3}):([0-9]+)\):?")

#: A stamp read: ``(text, SEC as text, SEC, MSEC, SERIAL)`` (see :data:`_last_stamp`).
_Stamp = tuple[str, str, int, int, int]

#: What :func:`_read_stamp` gives for a token that is not a stamp: its text is empty, which a
#: stamp's never is.  (A value rather than ``None``: the compiled build holds a stamp as its
#: items, but would make an optional one a new tuple, with new ``int`` objects, at every line.)
_NOT_A_STAMP: Final[_Stamp] = ("", "", 0, 0, 0)

#: The stamp of the last line parsed: ``(text, SEC as text, SEC, MSEC, SERIAL)``, the text being
#: ``msg=audit(...)`` with the colon after it, if any.  An event's records are written one after
#: another, so most lines repeat the stamp of the line before and need no ``int``.  Replaced
#: whole, so that threads parsing at once always read a stamp that belongs together.  Before
#: the first stamp, a text with a space, which no token of a line split at its spaces equals.
_last_stamp: _Stamp = (" ", "", 0, 0, 0)


def _read_stamp(token: str) -> _Stamp:
    """The stamp of ``token`` (see :data:`_last_stamp`), remembered as the last one;
    :data:`_NOT_A_STAMP` when ``token`` is not a stamp as :data:`_STAMP_TOKEN` reads it."""
    global _last_stamp
    match = _STAMP_TOKEN.fullmatch(token)
    if match is None:
        return _NOT_A_STAMP
    # Typed as text (the groups all took part in the match): the compiled build then compares
    # and converts them with its own string operations instead of generic calls.
    sec_text: str
    msec_text: str
    serial_text: str
    sec_text, msec_text, serial_text = match.groups()
    last = _last_stamp
    sec = last[2] if sec_text == last[1] else int(sec_text)
    stamp = _last_stamp = (token, sec_text, sec, _MSEC_NUMBERS[msec_text], int(serial_text))
    return stamp


def _parse_any_header(text: str, warnings: list[str] | None) -> Record | Malformed:
    """:func:`parse_line` of a line in another layout: with ``node=``, of an unknown type, with
    other digits than ASCII ones in its stamp, too long, or not a record."""
    header = _ASCII_LINE.match(text)
    if header is not None:
        # Typed (``node=`` is the only group that may not take part): the compiled build then
        # uses its own string operations on them.
        node: str | None
        type_name: str
        stamp_text: str
        rest: str
        node, type_name, stamp_text, _, _, _, rest = header.groups()
        last = _last_stamp
        stamp = last if stamp_text == last[0] else _read_stamp(stamp_text)
        if stamp[0]:  # always: _STAMP_TOKEN reads what _ASCII_LINE read
            if len(text) > MAX_LINE_BYTES:
                return Malformed(text, _TOO_LONG)
            type_id = RECORD_TYPE_NUMBERS.get(type_name)
            if type_id is None:
                type_id = _unknown_type_number(type_name)
            return _record(node, type_name, type_id, stamp[2], stamp[3], stamp[4], text, rest, warnings)
    header = _HEADER.match(text)
    if header is None:
        return Malformed(text, _why_not_a_record(text))
    if len(text) > MAX_LINE_BYTES:
        return Malformed(text, _TOO_LONG)
    node, type_name, sec, msec, serial = header.groups()
    type_id = RECORD_TYPE_NUMBERS.get(type_name)
    if type_id is None:
        type_id = _unknown_type_number(type_name)
    return _record(node, type_name, type_id, int(sec), int(msec), int(serial), text, text[header.end() :], warnings)


def _record(
    node: str | None,
    type_name: str,
    type_id: int,
    sec: int,
    msec: int,
    serial: int,
    text: str,
    rest: str,
    warnings: list[str] | None,
) -> Record:
    """The record of a line whose header is read; ``rest`` is the text after the header.

    The common cases are handled here from the memos: a kernel record of a short body, a
    SYSCALL record in the kernel's layout (:data:`_SYSCALL_LAYOUT`) with a short task part that
    can follow any per-call part (:attr:`_Remembered.call_template`), and a user-space message
    with short outer fields and a short ``msg='...'`` part.  The others go through
    :func:`_parse_syscall`, :func:`_remembered_parts` and :func:`_parse_user_message`, which
    give the same results (tests/test_record_memo.py compares every path with a plain parse).
    """
    message: str | None = None
    duplicates: list[tuple[str, str]] | None = None
    shared: dict[str, str] | None
    if type_id == _SYSCALL_TYPE:
        call = _SYSCALL_LAYOUT.match(rest)
        template = None
        if call is not None:
            values: tuple[str, ...] = call.groups()  # every group takes part: all text
            task = values[-1]
            if len(task) <= _SHORT_BODY_MAX_CHARS:
                key = (_SYSCALL_TYPE, task)
                remembered = _SHORT_REMEMBERED.get(key)
                if remembered is None:
                    remembered = _SHORT_BODIES.add(key)
                else:
                    remembered.used = True
                template = remembered.call_template
                enriched = remembered.enriched
                shared = remembered.fields
        if template is not None:
            fields = template.copy()
            # The keys of _SYSCALL_CALL_KEYS, in order (the copy keeps the template's order).
            (
                fields["arch"],
                fields["syscall"],
                fields["success"],
                fields["exit"],
                fields["a0"],
                fields["a1"],
                fields["a2"],
                fields["a3"],
                fields["items"],
                fields["ppid"],
                fields["pid"],
                _,
            ) = values
        else:
            fields, enriched, message, duplicates, shared = _parse_syscall(rest)
    elif 1300 <= type_id < 2100:  # _is_kernel_type
        if len(rest) <= _SHORT_BODY_MAX_CHARS:
            key = (type_id, rest)
            remembered = _SHORT_REMEMBERED.get(key)
            if remembered is None:
                remembered = _SHORT_BODIES.add(key)
            else:
                remembered.used = True
            fields = shared = remembered.fields
            enriched = remembered.enriched
            message = remembered.message
            duplicates = remembered.duplicates
        else:
            fields, enriched, message, duplicates, shared = _remembered_parts(type_id, rest)
    else:
        msg_at = rest.find("msg='")
        outer_fields = None
        if (
            0 < msg_at <= _OUTER_MAX_CHARS
            and len(rest) - msg_at <= _SHORT_BODY_MAX_CHARS
            and type_id not in _SPECIAL_OUTER_TYPES
        ):
            outer = rest[:msg_at]
            outer_fields = _REMEMBERED_OUTER.get(outer)
            if outer_fields is None:
                outer_fields = _OUTER_FIELDS.add(outer)
        if outer_fields is None:
            fields, enriched, message, duplicates, shared = _parse_user_message(type_id, rest)
        elif outer_fields is _UNSPLIT:
            fields, enriched, message, duplicates, shared = _whole(type_id, rest)
        else:
            key = (type_id, rest[msg_at:])
            remembered = _SHORT_REMEMBERED.get(key)
            if remembered is None:
                remembered = _SHORT_BODIES.add(key)
            else:
                remembered.used = True
            shared = remembered.fields
            fields = outer_fields.copy()
            fields.update(shared)
            # The conditions of _parse_user_message for the split to give the plain parse.
            if (
                remembered.duplicates is not None
                or len(fields) != len(outer_fields) + len(shared)
                or _mends_subject(fields, rest)
            ):
                fields, enriched, message, duplicates, shared = _whole(type_id, rest)
            else:
                enriched = remembered.enriched
                message = remembered.message
    return Record(
        node, type_name, type_id, sec, msec, serial, fields, enriched, text, message, duplicates, warnings, shared
    )


def _remembered_body(type_id: int, rest: str) -> _Remembered | None:
    """The memo entry of ``rest`` in the memo that fits its length, ``None`` when too long."""
    length = len(rest)
    if length <= _SHORT_BODY_MAX_CHARS:
        return _SHORT_BODIES.get(type_id, rest)
    if length <= _LONG_BODY_MAX_CHARS:
        return _LONG_BODIES.get(type_id, rest)
    return None


def _remembered_parts(type_id: int, rest: str) -> _Parsed:
    """:func:`_parse_body` through the memo, its fields being the shared part when remembered."""
    remembered = _remembered_body(type_id, rest)
    if remembered is None:
        return _whole(type_id, rest)
    fields = remembered.fields
    return fields, remembered.enriched, remembered.message, remembered.duplicates, fields


def _whole(type_id: int, rest: str) -> _Parsed:
    """:func:`_parse_body`, nothing shared."""
    fields, enriched, message, duplicates = _parse_body(type_id, rest)
    return fields, enriched, message, duplicates, None


def _is_kernel_type(type_id: int) -> bool:
    """Kernel record types (1300-2099) never wrap their text in ``msg='...'``; the others may."""
    return 1300 <= type_id < 2100


#: Record types whose fields before ``msg='`` are not split by :data:`_FIELD` alone (see
#: :func:`_collect`): USER_AVC and LOGIN.
_SPECIAL_OUTER_TYPES: Final = frozenset((1107, 1006))


def _parse_user_message(type_id: int, rest: str) -> _Parsed:
    """A user-space message: the outer fields (``pid``, ids, ``ses``, ``subj``, different for
    every process, the same for its messages) and the ``msg='...'`` part, each remembered.

    Gives exactly what :func:`_parse_body` gives; the split is only taken when it cannot change
    the result (no quote or ENRICHED part in the outer fields, no key met twice, no AppArmor
    subject to mend), otherwise the whole body is parsed at once.
    """
    msg_at = rest.find("msg='")
    if msg_at <= 0:
        return _remembered_parts(type_id, rest)
    outer = rest[:msg_at]
    if type_id in _SPECIAL_OUTER_TYPES:
        outer_fields = _outer_fields(outer, type_id)
    elif msg_at <= _OUTER_MAX_CHARS:
        outer_fields = _OUTER_FIELDS.get(outer)
    else:
        outer_fields = _outer_fields(outer, type_id)
    if outer_fields is _UNSPLIT:
        return _whole(type_id, rest)
    message_length = len(rest) - msg_at
    if message_length > _LONG_BODY_MAX_CHARS:
        # Not remembered: the plain parse gives the same fields and shares nothing.
        return _whole(type_id, rest)
    remembered = _remembered_body(type_id, rest[msg_at:])
    assert remembered is not None  # message_length <= _LONG_BODY_MAX_CHARS
    message_fields = remembered.fields
    fields = outer_fields.copy()
    count = len(fields)
    fields.update(message_fields)
    if remembered.duplicates is not None or len(fields) != count + len(message_fields):
        return _whole(type_id, rest)
    if _mends_subject(fields, rest):
        return _whole(type_id, rest)
    return fields, remembered.enriched, remembered.message, None, message_fields


def _mends_subject(fields: dict[str, str], rest: str) -> bool:
    """True when :func:`_parse_body` may mend the subject of ``rest`` (an AppArmor one, with its
    mode after a space), which a split parse would not: such a body is parsed at once."""
    subject = fields.get("subj")
    return subject is not None and ":" not in subject and " (" in rest


def _outer_fields(outer: str, type_id: int) -> dict[str, str]:
    """The fields of a user-space message before its ``msg='``, :data:`_UNSPLIT` when the body
    must be parsed at once (a quote or ENRICHED part in them, or a key met twice)."""
    if ENRICHED_SEPARATOR in outer or "'" in outer or '"' in outer:
        return _UNSPLIT
    fields: dict[str, str] = {}
    if _collect(outer, type_id, fields, None) is not None:
        return _UNSPLIT
    return fields


#: What :func:`_outer_fields` gives when the body must be parsed at once (told by identity).
_UNSPLIT: Final[dict[str, str]] = {}


class _OuterMemo:
    """:func:`_outer_fields` by the outer text (of types outside :data:`_SPECIAL_OUTER_TYPES`,
    for which the type does not matter), bounded in entries; the oldest go first.

    A process writes several messages (a login: authentication, account, credentials, session
    start and end), so the same outer fields come back; the dicts are shared and read-only.
    """

    __slots__ = ("_entries", "_lock", "_max_entries", "_order")

    def __init__(self, max_entries: int) -> None:
        self._entries: dict[str, dict[str, str]] = {}
        self._order: deque[str] = deque()
        self._max_entries = max_entries
        self._lock = threading.Lock()  # as in _BodyMemo: changes take turns

    def get(self, outer: str) -> dict[str, str]:
        """:func:`_outer_fields` of ``outer`` (a type of no special meaning), remembered (the
        result is shared)."""
        fields = self._entries.get(outer)
        return self.add(outer) if fields is None else fields

    def add(self, outer: str) -> dict[str, str]:
        """Work out and remember the fields of ``outer``, which :meth:`get` did not find."""
        fields = _outer_fields(outer, _PLAIN_TYPE)
        with self._lock:
            entries = self._entries
            known = entries.get(outer)
            if known is not None:  # another thread was first
                return known
            while len(entries) >= self._max_entries:
                del entries[self._order.popleft()]
            entries[outer] = fields
            self._order.append(outer)
        return fields


#: A type number :func:`_collect` gives no special treatment (an unknown type's).
_PLAIN_TYPE: Final = -1

#: Outer fields longer than this are not remembered (real ones are under 200 characters).
_OUTER_MAX_CHARS: Final = 512

#: Outer fields remembered: the processes of a few hundred logins and guest operations.
_OUTER_FIELDS: Final = _OuterMemo(max_entries=1024)
#: Its entries, looked up directly on the hot path.
_REMEMBERED_OUTER: Final = _OUTER_FIELDS._entries


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
    if len(rest) - cut > _LONG_BODY_MAX_CHARS:
        # Not remembered: the plain parse gives the same fields and shares nothing.
        return _whole(_SYSCALL_TYPE, rest)
    call = _SYSCALL_CALL_PART.fullmatch(head)
    if call is not None:  # the kernel's layout: distinct keys, values without spaces or quotes
        fields = dict(zip(_SYSCALL_CALL_KEYS, call.groups(), strict=True))
        distinct = True
    else:
        pairs = _FIELD.findall(head)
        fields = dict(pairs)
        distinct = len(fields) == len(pairs)
    remembered = _remembered_body(_SYSCALL_TYPE, rest[cut + 1 :])
    assert remembered is not None  # len(rest) - cut - 1 < _LONG_BODY_MAX_CHARS
    task_fields = remembered.fields
    count = len(fields)
    fields.update(task_fields)
    if not distinct or remembered.duplicates is not None or len(fields) != count + len(task_fields):
        return _whole(_SYSCALL_TYPE, rest)
    return fields, remembered.enriched, None, None, task_fields


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
