"""Log lines -> records the way libauparse reads them, for auvirt-compatible processing.

libauparse is more lenient than :func:`forwarder.audit.record.parse_line` about the event
stamp (it reads ``msg=audit(S.M:N)`` with ``strtoul``, so a line cut and glued to the next one
still counts, with serial 0) and stricter elsewhere (milliseconds above 999 drop the line).
auvirt's results depend on which lines form which events, so ``auditfwd sessions`` reads lines
with :func:`auparse_record`.  The records it returns carry the line, the event key and the
type; their ``fields`` stay empty because the sessions code splits fields itself
(:mod:`forwarder.virt.auparse_fields`).
"""

from __future__ import annotations

import re
from typing import Final

from forwarder.audit.record import Record
from forwarder.audit.tables.record_types import RECORD_TYPE_NUMBERS
from forwarder.virt.auparse_fields import c_strtoul, clean_value

#: libauparse looks for the stamp in the first 80 characters (340 when a node name leads).
_STAMP_WINDOW: Final = 80
_STAMP_WINDOW_WITH_NODE: Final = 340
#: A stamp token shorter than this is refused (``strnlen(ptr, 20) > 18``).
_MIN_STAMP_TOKEN: Final = 19
#: ``msg=audit(`` puts the parenthesis here.
_PAREN_AT: Final = 9
#: ``node=`` is this long; a first word longer than it that starts with ``n`` names the node.
_NODE_PREFIX: Final = 5
_MAX_MILLISECONDS: Final = 999
#: ``e->sec > LONG_MAX - eoe_timeout - 1`` is refused; the timeout is small, 2 by default.
_LONG_MAX: Final = (1 << 63) - 1


#: The header as auditd writes it; lines of this shape take the fast path of :func:`auparse_record`.
_CANONICAL_HEADER: Final = re.compile(
    r"(?:node=(?P<node>[^ ]+) )?type=(?P<type>[^ ]+) "
    r"msg=audit\((?P<sec>\d{1,18})\.(?P<msec>\d{1,3}):(?P<serial>\d{1,19})\)"
)


def _words(text: str) -> list[str]:
    return [word for word in text.split(" ") if word]


def event_stamp(line: str, end_of_event_timeout: int) -> tuple[str | None, int, int, int] | None:
    """``(node, sec, msec, serial)`` as libauparse's ``extract_timestamp``, ``None`` for a bad line."""
    window = _STAMP_WINDOW_WITH_NODE if line.startswith("n") else _STAMP_WINDOW
    words = _words(line[:window])
    if not words:
        return None
    node: str | None = None
    at = 1
    if words[0].startswith("n") and len(words[0]) > _NODE_PREFIX:
        node = words[0][_NODE_PREFIX:]
        at = 2
    if at >= len(words) or len(words[at]) < _MIN_STAMP_TOKEN:
        return None
    token = words[at]
    if token[_PAREN_AT : _PAREN_AT + 1] == "(":
        stamp = token[_PAREN_AT + 1 :]
    else:
        paren = token.find("(")
        if paren < 0:
            return None
        stamp = token[paren + 1 :]
    close = stamp.find(")")
    if close >= 0:
        stamp = stamp[:close]
    sec = c_strtoul(stamp)
    if sec is None or sec > _LONG_MAX - end_of_event_timeout - 1:
        return None
    rest = stamp
    msec = 0
    dot = stamp.find(".")
    if dot >= 0:
        rest = stamp[dot + 1 :]
        parsed = c_strtoul(rest)
        if parsed is None or parsed > _MAX_MILLISECONDS:
            return None
        msec = parsed
    serial = 0
    colon = rest.find(":")
    if colon >= 0:
        parsed = c_strtoul(rest[colon + 1 :])
        if parsed is None:
            return None
        serial = parsed
    return node, sec, msec, serial


def type_number(name: str) -> int:
    """libaudit's ``audit_name_to_msg_type``: known name, ``UNKNOWN[N]``, a leading number, else -1."""
    known = RECORD_TYPE_NUMBERS.get(name)
    if known is not None:
        return known
    if name.startswith("UNKNOWN["):
        close = name.find("]", 8)
        if close < 0:
            return -1
        return _c_strtol(name[8 : min(close, 8 + 7)])
    if name[:1].isdigit():
        return _c_strtol(name)
    return -1


def _c_strtol(text: str) -> int:
    """C ``strtol`` of the leading number, clamped to ``long`` and cut to ``int``."""
    body = text.lstrip(" \t\n\v\f\r")
    sign = -1 if body.startswith("-") else 1
    if body[:1] in ("+", "-"):
        body = body[1:]
    digits = len(body) - len(body.lstrip("0123456789"))
    number = sign * int(body[:digits]) if digits else 0
    number = max(min(number, _LONG_MAX), -_LONG_MAX - 1) & 0xFFFFFFFF
    return number - (1 << 32) if number >= 1 << 31 else number


def record_type(line: str) -> tuple[str, int]:
    """The record's type as libauparse sets it: the ``type`` field when it is the first field
    (the second after ``node=``); else ``("", 0)``."""
    text = line.partition("\x1d")[0]
    position = 0
    for word in _words(text):
        name, equals, value = word.partition("=")
        if not equals:
            continue  # words without "=" count only in AVC records, after the type
        if name == "msg" and value[:1] in ("a", "'"):
            if value[:1] == "a":
                continue
            name, equals, value = value[1:].partition("=")
            if not equals:
                continue
        if name.startswith("("):
            name = name[1:]
        if not value:
            continue
        position += 1
        if position == 1 and name == "node":
            continue
        if name == "type":
            cleaned = clean_value(value)
            return cleaned, type_number(cleaned)
        return "", 0
    return "", 0


def auparse_record(line: str, end_of_event_timeout: int) -> Record | None:
    """A log line as a :class:`Record` for the sessions code, ``None`` when libauparse skips it.

    Args:
        line: one line without its line end, decoded with ``surrogateescape``.
        end_of_event_timeout: auditd.conf's value (it bounds the accepted seconds).
    """
    header = _CANONICAL_HEADER.match(line)
    if header is not None:
        node = header.group("node")
        stamp_at = header.start("sec") - len("msg=audit(")
        window = _STAMP_WINDOW_WITH_NODE if node is not None else _STAMP_WINDOW
        # The stamp word must lie in libauparse's window and be long enough to be looked at.
        if header.end() <= window and header.end() - stamp_at >= _MIN_STAMP_TOKEN:
            type_name = clean_value(header.group("type"))
            return Record(
                node,
                type_name,
                type_number(type_name),
                int(header.group("sec")),
                int(header.group("msec")),
                int(header.group("serial")),
                {},
                {},
                line,
            )
    stamp = event_stamp(line, end_of_event_timeout)
    if stamp is None:
        return None
    node, sec, msec, serial = stamp
    type_name, type_id = record_type(line)
    return Record(node, type_name, type_id, sec, msec, serial, {}, {}, line)
