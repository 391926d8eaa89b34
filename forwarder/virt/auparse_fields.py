"""Field access exactly as libauparse offers it to auvirt: an event's fields in order, a cursor,
"find X" searches and display interpretations.

auvirt reads its data through libauparse's cursor API, and its results depend on the cursor's
quirks, so :class:`FieldCursor` reproduces them (``docs/virt-audit.md`` §2.1):

* a record's fields are the space-separated ``name=value`` tokens of the line before the
  ENRICHED separator: the ``msg=audit(...)`` header is dropped, a ``msg='`` prefix is cut off,
  tokens without ``=`` and empty values are skipped, trailing ``:`` ``,`` ``'`` and ``)`` are
  cut from values; SELinux AVC records get the unnamed words ``seresult`` and ``seperms``;
* :meth:`FieldCursor.find` looks at the current field, then forward through the rest of the
  event.  A search that runs off the end leaves the cursor nowhere, so every later search
  fails until :meth:`FieldCursor.first_record`; a search that starts on the last field of a
  record fails at once;
* :meth:`FieldCursor.interpret` gives the display form: the record's ENRICHED interpretation of
  that field when there is one, else the field type's rule (user ids by name, escaped fields
  decoded), then bytes below 0x20 written as ``\\ooo``.

Text is handled as ``str`` decoded from the log's bytes with ``surrogateescape``, so every byte
survives and ``value.encode("utf-8", "surrogateescape")`` gives back what a C program sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from forwarder.audit.record import Event, Record

#: How text is turned back into the bytes it came from.
TEXT_ERRORS: Final = "surrogateescape"

#: Separator of auditd's ENRICHED interpretations.
_INTERPRETATION_SEPARATOR: Final = "\x1d"

#: Record types whose unnamed words libauparse names ``seresult`` and ``seperms``.
_SELINUX_AVC_TYPES: Final = frozenset({1400, 1107})  # AVC, USER_AVC

#: Record types with special interpretation rules that matter for the fields read here.
_EXECVE: Final = 1309
_KERN_MODULE: Final = 1330
_TRUSTED_APP: Final = 1121
#: ADD_GROUP, DEL_GROUP, GRP_MGMT: their ``id`` is a group id.
_GROUP_RECORD_TYPES: Final = frozenset({1116, 1117, 1132})

#: libauparse refuses an SELinux permission list longer than its 256-byte buffer.
_MAX_PERMISSIONS_BYTES: Final = 256

#: Separator of several keys in one ``key=`` value (libaudit).
_KEY_SEPARATOR: Final = "\x01"

#: The "not set" user id, ``(uid_t)-1``.
_UNSET_UID: Final = 0xFFFFFFFF

#: glibc's name buffer in libauparse's uid lookup holds 63 bytes and the terminator.
_USER_NAME_BYTES: Final = 63

#: Values that end in ``)`` but keep it.
_PARENTHESIZED_VALUES: Final = frozenset({"(none)", "(null)"})

#: Interpretation kinds of the fields (libauparse ``typetab.h``; only the kinds whose display
#: differs from the raw value).  AppArmor fields are included: Debian builds with AppArmor.
_UID_FIELDS: Final = frozenset(
    {"auid", "uid", "euid", "suid", "fsuid", "ouid", "oauid", "old-auid", "iuid", "id", "inode_uid", "sauid",
     "obj_uid"}
)  # fmt: skip
_ESCAPED_FIELDS: Final = frozenset(
    {
        "path", "comm", "exe", "file", "name", "watch", "cwd", "cmd", "acct", "dir", "key", "vm",
        "old-chardev", "new-chardev", "old-disk", "new-disk", "old-fs", "new-fs", "old-net", "new-net",
        "device", "cgroup", "apparmor", "operation", "denied_mask", "info", "profile", "requested_mask",
        "old-rng", "new-rng", "ocomm", "grp", "new_group", "invalid_context", "sw", "root_dir",
    }
)  # fmt: skip

#: The fields libauparse displays decoded (quoted or hex in the log).
ESCAPED_FIELDS: Final = _ESCAPED_FIELDS

_HEX_RUN: Final = re.compile(r"[0-9A-Fa-f]*")
_INT_PREFIX: Final = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]*)")
_CONTROL_BYTES: Final = re.compile(r"[\x00-\x1f]")


def _c_string(text: str) -> str:
    """What a C string holds: everything before the first NUL."""
    nul = text.find("\0")
    return text if nul < 0 else text[:nul]


def _bytes_to_text(data: bytes) -> str:
    return data.decode("utf-8", TEXT_ERRORS)


def _hex_nibble(char: str) -> int:
    return int(char, 16) if char else 0


def unescape_hex(value: str) -> str | None:
    """libauparse's ``au_unescape``: decode the leading run of hex digits.

    Returns:
        ``(...)`` values up to their ``)`` as they are; otherwise the bytes of the leading hex
        digits (an odd last digit is the high nibble of a last byte), cut at the first NUL;
        ``None`` when there are fewer than 2 leading hex digits or ``(`` is never closed.
    """
    if value.startswith("("):
        close = value.find(")")
        return None if close < 0 else value[: close + 1]
    digits = _HEX_RUN.match(value)
    run = digits.group(0) if digits is not None else ""
    if len(run) < 2:
        return None
    data = bytearray()
    for i in range(0, len(run), 2):
        pair = run[i : i + 2]
        data.append((_hex_nibble(pair[0]) << 4) | _hex_nibble(pair[1:2]))
    return _c_string(_bytes_to_text(bytes(data)))


def print_escaped(value: str) -> str:
    """libauparse's display of an escaped field (before control-byte escaping).

    ``"text"`` -> text up to the next quote (an unterminated quote gives a single space); a
    value starting ``00`` (abstract socket name) is decoded after those digits; other values
    are decoded as leading hex digits, or kept as written when that fails.
    """
    if value.startswith('"'):
        end = value.find('"', 1)
        return " " if end < 0 else value[1:end]
    decoded = unescape_hex(value[2:]) if value.startswith("00") else unescape_hex(value)
    return value if decoded is None else decoded


def escape_controls(text: str) -> str:
    """Bytes below 0x20 as ``\\ooo`` (libauparse's default TTY escape mode)."""
    if _CONTROL_BYTES.search(text) is None:
        return text
    return _CONTROL_BYTES.sub(lambda m: f"\\{ord(m.group(0)):03o}", text)


def c_strtoul(value: str) -> int | None:
    """C ``strtoul(value, NULL, 10)``: the value modulo 2**64, ``None`` on overflow (ERANGE)."""
    match = _INT_PREFIX.match(value)
    sign, digits = match.groups() if match is not None else ("", "")
    if not digits:
        return 0
    number = int(digits)
    if number >= 1 << 64:
        return None
    return (-number) % (1 << 64) if sign == "-" else number


def c_strtol_int(value: str) -> int:
    """libauparse's ``auparse_get_field_int``: C ``strtol`` into an ``int``; -1 on overflow."""
    match = _INT_PREFIX.match(value)
    sign, digits = match.groups() if match is not None else ("", "")
    if not digits:
        return 0
    number = -int(digits) if sign == "-" else int(digits)
    if not -(1 << 63) <= number < 1 << 63:
        return -1
    return _to_c_int(number)


def _to_c_int(number: int) -> int:
    number &= 0xFFFFFFFF
    return number - (1 << 32) if number >= 1 << 31 else number


def user_name(raw: str, users: Mapping[int, str]) -> str:
    """libauparse's display of a user id (``print_uid``).

    Args:
        raw: the field value as written.
        users: uid -> name of the host (a passwd snapshot).

    Returns:
        ``root`` for 0, ``unset`` for 4294967295 (and ``-1``), the passwd name, else
        ``unknown(N)`` with N as a signed 32-bit number; ``conversion error(raw)`` when the
        number does not fit 64 bits.  Non-numeric text reads as 0, as C's ``strtoul`` does.
    """
    number = c_strtoul(raw)
    if number is None:
        return f"conversion error({raw})"
    uid = number & 0xFFFFFFFF
    if uid == _UNSET_UID:
        return "unset"
    if uid == 0:
        return "root"
    name = users.get(uid)
    if name is not None:
        encoded = name.encode("utf-8", TEXT_ERRORS)[:_USER_NAME_BYTES]
        return _bytes_to_text(encoded)
    return f"unknown({_to_c_int(uid)})"


@dataclass(slots=True, frozen=True)
class ParsedRecord:
    """One record as libauparse splits it.

    Attributes:
        type_id: the record type number.
        names: field names in order (``None`` for an unnamed AVC word).
        values: the raw values, same order.
        interpretations: the ENRICHED interpretations, lower-case names, values as written
            (quotes kept); the first of a name wins.
    """

    type_id: int
    names: tuple[str | None, ...]
    values: tuple[str, ...]
    interpretations: Mapping[str, str]


def clean_value(value: str) -> str:
    """Cut libauparse's trailing punctuation: ``:``, ``,``, ``'``, then ``)`` (not of ``(null)``)."""
    for tail in (":", ",", "'"):
        if value.endswith(tail):
            value = value[:-1]
    if value.endswith(")") and value not in _PARENTHESIZED_VALUES:
        value = value[:-1]
    return value


def _virtual_key_count(value: str) -> int:
    decoded = unescape_hex(value)
    if decoded is None:
        return 1
    return sum(1 for part in decoded.split(_KEY_SEPARATOR) if part)


def split_fields(text: str, type_id: int) -> tuple[list[str | None], list[str]]:
    """The fields of one record's text (without the ENRICHED part), as libauparse splits them.

    Args:
        text: the record line up to the ENRICHED separator.
        type_id: the record type (AVC and USER_AVC name their unnamed words).

    Returns:
        Field names and raw values, in order.
    """
    names: list[str | None] = []
    values: list[str] = []
    tokens = [token for token in text.split(" ") if token]
    offset = 0
    index = 0
    count = len(tokens)
    while index < count:
        token = tokens[index]
        index += 1
        equals = token.find("=")
        if equals >= 0:
            if token.startswith("msg="):
                if token[4:5] == "a":
                    continue
                if token[4:5] == "'":
                    token = token[5:]
                    equals = token.find("=")
                    if equals < 0:
                        continue
            name = token[:equals]
            value = token[equals + 1 :]
            if name.startswith("("):
                name = name[1:]
            if not value:
                continue
            value = clean_value(value)
            if name == "key" and not value.startswith("(") and not value.startswith('"'):
                for _ in range(_virtual_key_count(value)):
                    names.append("key")
                    values.append(value)
                continue
            names.append(name)
            values.append(value)
            if len(names) == 1 and name == "node":
                offset = 1
        elif type_id in _SELINUX_AVC_TYPES:
            if len(names) == 1 + offset:
                if token.startswith("avc"):
                    continue
                names.append("seresult")
                values.append(token)
            elif len(names) == 2 + offset:
                if token.startswith("{"):
                    permissions: list[str] = []
                    total = 0
                    while index < count and not tokens[index].startswith("}"):
                        word = tokens[index]
                        index += 1
                        size = len(word.encode("utf-8", TEXT_ERRORS))
                        if size + 1 >= _MAX_PERMISSIONS_BYTES - total:
                            # libauparse gives up on the record: no fields at all.
                            return [], []
                        total += size + (1 if permissions else 0)
                        permissions.append(word)
                    index += 1  # the closing brace
                    names.append("seperms")
                    values.append(",".join(permissions))
                    continue
                names.append(None)
                values.append(token)
    return names, values


def split_interpretations(text: str) -> dict[str, str]:
    """ENRICHED interpretations of one record (the text after the separator)."""
    found: dict[str, str] = {}
    if text.startswith("SADDR="):
        brace = text.find("{", 6)
        if brace >= 0 and text.find("}", brace) >= 0:
            found["saddr"] = text[brace:]
        return found
    for token in text.split(" "):
        if not token:
            continue
        name, equals, value = token.partition("=")
        if equals:
            found.setdefault(name.lower(), value)
    return found


def parse_record(record: Record) -> ParsedRecord:
    """Split a record for cursor access (see :func:`split_fields`)."""
    raw, separator, enriched = _c_string(record.text).partition(_INTERPRETATION_SEPARATOR)
    names, values = split_fields(raw, record.type_id)
    interpretations = split_interpretations(enriched) if separator else {}
    return ParsedRecord(record.type_id, tuple(names), tuple(values), interpretations)


def _field_kind(type_id: int, name: str, value: str) -> str:
    """``uid``, ``escaped`` or ``raw``: how libauparse displays this field of this record type."""
    if type_id == _EXECVE and name.startswith("a") and name != "argc" and "_len" not in name:
        return "escaped"
    if name == "acct":
        return "escaped" if value.startswith('"') or _is_hex(value) else "raw"
    if type_id == _TRUSTED_APP:
        if value.startswith('"'):
            return "escaped"
        if value.isdigit():
            return "raw"
        return "escaped" if _is_hex(value) else "raw"
    if type_id == _KERN_MODULE and name == "name":
        return "escaped"
    if name == "id" and type_id in _GROUP_RECORD_TYPES:
        return "raw"  # a group id there; auvirt never reads it
    if name in _UID_FIELDS:
        return "uid"
    if name in _ESCAPED_FIELDS:
        return "escaped"
    return "raw"


def _is_hex(value: str) -> bool:
    return bool(value) and _HEX_RUN.fullmatch(value) is not None


def interpret_value(record: ParsedRecord, name: str | None, value: str, users: Mapping[int, str]) -> str:
    """The display form of one field of ``record`` (libauparse's default TTY escape mode)."""
    if name is None:
        return escape_controls(value)
    kind = _field_kind(record.type_id, name, value)
    enriched = record.interpretations.get(name)
    if enriched is not None and not enriched.startswith("unknown-"):
        shown = print_escaped(enriched) if kind == "uid" else enriched
    elif kind == "uid":
        shown = user_name(value, users)
    elif kind == "escaped":
        shown = print_escaped(value)
    else:
        shown = value
    return escape_controls(shown)


class FieldCursor:
    """libauparse's field cursor over one event (see the module docstring).

    Args:
        event: the event, records in order.
        users: uid -> name for :meth:`interpret` of user ids without an ENRICHED value.
    """

    __slots__ = ("_field", "_record", "_records", "_searchable", "_users")

    def __init__(self, event: Event, users: Mapping[int, str]) -> None:
        self._records = [parse_record(record) for record in event.records]
        self._users = users
        # libauparse answers no search in an event whose time is 0.
        self._searchable = event.sec != 0 and bool(self._records)
        self._record: int | None = 0
        self._field = 0

    def first_record(self) -> None:
        """Back to the first field of the first record."""
        self._record = 0
        self._field = 0

    def find(self, name: str) -> str | None:
        """The raw value of the next field called ``name``, from the current field on."""
        if not self._searchable or self._record is None:
            return None
        record = self._records[self._record]
        if record.names and record.names[self._field] == name:
            return record.values[self._field]
        # Step off the current field; a search from a record's last field ends here.
        if self._field >= len(record.names) - 1:
            return None
        self._field += 1
        while True:
            names = record.names
            for index in range(self._field, len(names)):
                if names[index] == name:
                    self._field = index
                    return record.values[index]
            next_record = self._record + 1
            if next_record >= len(self._records):
                self._record = None
                return None
            self._record = next_record
            self._field = 0
            record = self._records[next_record]

    def value(self) -> str | None:
        """The raw value of the current field."""
        if not self._searchable or self._record is None:
            return None
        record = self._records[self._record]
        return record.values[self._field] if record.values else None

    def interpret(self) -> str | None:
        """The display form of the current field."""
        if not self._searchable or self._record is None:
            return None
        record = self._records[self._record]
        if not record.values:
            return None
        return interpret_value(record, record.names[self._field], record.values[self._field], self._users)

    def find_interpreted(self, name: str) -> str | None:
        """:meth:`find` then :meth:`interpret`; ``None`` when the field is not found."""
        if self.find(name) is None:
            return None
        return self.interpret()

    def find_int(self, name: str) -> int | None:
        """:meth:`find` then the value as libauparse's ``auparse_get_field_int`` reads it."""
        raw = self.find(name)
        return None if raw is None else c_strtol_int(raw)
