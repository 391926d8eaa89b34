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
            keeps its first value here; later values go to ``duplicates``.
        enriched: ENRICHED interpretations (upper-case keys, quotes stripped).
        text: the line as read, without the line end.
        message: for user-space records the text inside ``msg='...'``, else ``None``.
        duplicates: ``(key, value)`` pairs of repeated keys, in order.
        warnings: what the parser noticed but could live with (invalid UTF-8 ...).
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
    raw, sep, enriched_text = text.partition(ENRICHED_SEPARATOR)
    body = raw[m.end() :]

    fields: dict[str, str] = {}
    duplicates: list[tuple[str, str]] | None = None
    message: str | None = None
    # Only user-space messages (outside the kernel's 1300-2099 range) wrap their text in msg='...'.
    msg_at = body.find("msg='") if not 1300 <= type_id < 2100 else -1
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
    )


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
