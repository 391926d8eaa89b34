"""Interpretation of raw audit field values (as :class:`forwarder.audit.record.Record` keeps them).

The rules follow libauparse, the reference interpreter of audit logs:

* A value of an *encoded* field (:data:`ENCODED_FIELDS`) is either ``"text"`` (quoted: printable
  text without spaces or quotes) or the hex dump of its bytes (written by the kernel's
  ``audit_log_untrustedstring`` and libaudit's ``audit_encode_nv_string`` whenever the text holds
  a space, a quote, a control byte or a non-ASCII byte).  ``(null)`` and ``?`` say "no value".
* Other fields are used as written.

Where this module differs from libauparse on purpose, the docstring says so.  Every function is
pure, never raises on bad input and keeps nothing between calls.
"""

from __future__ import annotations

import re
import stat
from typing import Final

from forwarder.audit.tables.errnos import ERRNO_NAMES
from forwarder.audit.tables.syscalls import ARCH_NAMES, SYSCALL_NAMES

#: Values meaning "no value" (kernel ``(null)``/``(none)``, user space ``?``, empty), also in the
#: quoted forms libaudit writes for a NULL string (``"?"``) and the single-quoted ``'?'`` of
#: libvirt 0.8.x.
UNSET_VALUES: Final[frozenset[str]] = frozenset(
    {"", "?", "(null)", "(none)", '"?"', '""', '"(null)"', '"(none)"', "'?'"}
)

#: Fields whose values may be hex-encoded: libauparse's escaped types (``typetab.h``: ESCAPED,
#: ESCAPED_FILE, ESCAPED_KEY, PROCTITLE, including the AppArmor ones) plus what libvirt encodes
#: with ``audit_encode_nv_string`` (domain names, disk/net/... sources, cgroup paths, devices)
#: and TTY keystroke ``data``.
#: EXECVE arguments (``a0``, ``a1[0]`` ...) are encoded too; :mod:`forwarder.audit.execve`
#: handles them.
ENCODED_FIELDS: Final[frozenset[str]] = frozenset(
    {
        # processes and files (kernel)
        "exe", "comm", "ocomm", "cwd", "name", "path", "file", "dir", "watch", "root_dir",
        "proctitle", "key", "data",
        # user space (libaudit's encoder)
        "cmd", "acct", "grp", "new_group", "sw", "invalid_context", "cgroup", "device",
        # AppArmor
        "apparmor", "operation", "profile", "denied_mask", "requested_mask", "info",
        # libvirt
        "vm", "disk", "chardev",
        "old-disk", "new-disk", "old-fs", "new-fs", "old-net", "new-net",
        "old-chardev", "new-chardev", "old-rng", "new-rng", "old-smartcard", "new-smartcard",
    }
)  # fmt: skip

#: Separator between several keys in one ``key=`` value (libaudit ``AUDIT_KEY_SEPARATOR``).
KEY_SEPARATOR: Final = "\x01"

#: The id the kernel logs for "not set" (``(uid_t)-1``, ``AUDIT_UID_UNSET``, session ``-1``).
UNSET_ID: Final = 4294967295

#: File types of ``st_mode & S_IFMT``, named as this project reports them.
FILE_TYPES: Final[dict[int, str]] = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "directory",
    stat.S_IFCHR: "character-device",
    stat.S_IFBLK: "block-device",
    stat.S_IFIFO: "named-pipe",
    stat.S_IFLNK: "symlink",
    stat.S_IFSOCK: "socket",
}

#: Permission bits kept by :func:`file_mode`: rwx for user/group/other plus SUID, SGID, sticky.
PERMISSION_BITS: Final = 0o7777

#: Architecture names, for logs that carry the name instead of the AUDIT_ARCH number.
_ARCH_NAME_SET: Final[frozenset[str]] = frozenset(ARCH_NAMES.values())
#: Syscall names per architecture, for logs that carry the name instead of the number.
_SYSCALL_NAME_SETS: Final[dict[str, frozenset[str]]] = {
    arch: frozenset(table.values()) for arch, table in SYSCALL_NAMES.items()
}

_APPARMOR_LABEL = re.compile(r"(?P<domain>.*\S)\s+\((?P<mode>[a-z_-]+)\)")
#: Number of colon-separated parts before the MLS/MCS level of an SELinux context.
_SELINUX_PARTS_BEFORE_LEVEL = 3


def unquote(raw: str) -> str:
    """Strip one pair of surrounding double quotes.

    Args:
        raw: a field value as written.

    Returns:
        The value without its quotes; an unterminated opening quote (a truncated line) is
        dropped as well.  Unquoted values come back unchanged.
    """
    if raw.startswith('"'):
        return raw[1:-1] if len(raw) > 1 and raw.endswith('"') else raw[1:]
    return raw


def is_unset(raw: str) -> bool:
    """Whether ``raw`` is one of :data:`UNSET_VALUES` ("no value")."""
    return raw in UNSET_VALUES


def decode_hex(raw: str) -> bytes | None:
    """The bytes of an even-length hex string of at least 2 digits (either case), else ``None``."""
    length = len(raw)
    if length < 2 or length % 2:
        return None
    try:
        data = bytes.fromhex(raw)
    except ValueError:  # a character that is no hex digit
        return None
    # bytes.fromhex skips white space between bytes: only a string of hex digits alone gives
    # exactly one byte per two characters.
    return data if len(data) * 2 == length else None


def decode_text(data: bytes) -> str:
    """Bytes to text: UTF-8, invalid bytes kept as ``\\xNN`` escapes."""
    return data.decode("utf-8", "backslashreplace")


def decode_value(raw: str) -> str:
    """Interpret the value of an encoded field (:data:`ENCODED_FIELDS`).

    Args:
        raw: the value as written.

    Returns:
        * ``"text"`` -> ``text`` (up to the next quote, as libauparse does);
        * even-length hex of at least 2 digits -> the decoded bytes as UTF-8 text (invalid
          bytes as ``\\xNN``).  Like libauparse the text ends at the first NUL byte (the kernel
          copies C strings, so nothing after a NUL is part of the name), except that one
          leading NUL is skipped (the mark of an abstract unix socket name);
        * anything else (``(null)``, ``?``, odd-length or non-hex text) unchanged.

    Differences from libauparse, on purpose: a value that is only partly hex (``41zz``) or of
    odd length is returned as written where libauparse decodes its leading hex digits; control
    characters are kept as characters (JSON escapes them) where libauparse's default display
    mode writes them as ``\\ooo``.
    """
    if raw.startswith('"'):
        end = raw.find('"', 1)
        return raw[1:end] if end > 0 else raw[1:]
    data = decode_hex(raw)
    if data is None:
        return raw
    if data.startswith(b"\0"):
        data = data[1:]
    end = data.find(b"\0")
    if end >= 0:
        data = data[:end]
    return decode_text(data)


def decode_proctitle(raw: str) -> list[str]:
    """The command line of a PROCTITLE record's ``proctitle=`` value.

    Args:
        raw: the value as written.

    Returns:
        ``"text"`` -> ``[text]``; hex -> the NUL-separated arguments, trailing empty ones
        dropped (the kernel keeps the NUL after the last argument); unset -> ``[]``;
        anything else -> ``[raw]``.  libauparse shows the same arguments joined by spaces.
    """
    if raw.startswith('"'):
        return [unquote(raw)]
    if is_unset(raw):
        return []
    data = decode_hex(raw)
    if data is None:
        return [raw]
    args = data.decode("utf-8", "backslashreplace").split("\0")
    while args and not args[-1]:
        args.pop()
    return args


def split_keys(raw: str) -> list[str]:
    """The rule keys of a ``key=`` value.

    Args:
        raw: the value as written.

    Returns:
        ``(null)`` / unset / empty -> ``[]``; ``"text"`` -> ``[text]``; hex -> the decoded keys, split
        at the 0x01 separator (empty parts dropped); anything else -> ``[raw]``.
    """
    if is_unset(raw):
        return []
    if raw.startswith('"'):
        text = unquote(raw)
        return [text] if text else []
    data = decode_hex(raw)
    if data is None:
        return [raw]
    return [key for key in decode_text(data.split(b"\0", 1)[0]).split(KEY_SEPARATOR) if key]


def audit_id(raw: str) -> int | None:
    """A uid/auid/gid/ses value as a number; ``None`` when unset or not a number.

    Args:
        raw: the value as written (``1000``, ``4294967295``, ``-1``, ``"1000"``).

    Returns:
        The id, or ``None`` for 4294967295 and -1 (the kernel's "unset") and for anything that
        is not a non-negative decimal number.
    """
    text = unquote(raw)
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return None if number >= UNSET_ID else number


def arch_name(raw_hex: str) -> str | None:
    """The architecture of an ``arch=`` value.

    Args:
        raw_hex: the AUDIT_ARCH value as written (hex, ``c000003e``); an architecture name
            (``x86_64``, as some tools write it) is accepted as it is.

    Returns:
        The name (``x86_64``), ``None`` if unknown.
    """
    name = ARCH_NAMES.get(raw_hex)
    if name is None:
        name = ARCH_NAMES.get(raw_hex.lower().removeprefix("0x").lstrip("0"))
    if name is None and raw_hex in _ARCH_NAME_SET:
        name = raw_hex
    return name


def syscall_name(arch: str | None, number: str) -> str | None:
    """The name of a system call.

    Args:
        arch: the architecture name (from :func:`arch_name`), ``None`` if unknown.
        number: the ``syscall=`` value as written (decimal); a syscall name of that
            architecture (as some tools write it) is accepted as it is.

    Returns:
        The name (``execve``), or ``None`` when the architecture or the number is unknown.
        Unlike libauparse there is no guess from the host's architecture when the record has
        none, and ``socketcall``/``ipc`` are not refined by their first argument.
    """
    if arch is None:
        return None
    table = SYSCALL_NAMES.get(arch)
    if table is None:
        return None
    if not number.isascii() or not number.isdigit():
        return number if number in _SYSCALL_NAME_SETS[arch] else None
    return table.get(int(number))


def errno_name(exit_raw: str) -> str | None:
    """The errno name of a negative ``exit=`` value (``-13`` -> ``EACCES``), else ``None``."""
    if not exit_raw.startswith("-"):
        return None
    digits = exit_raw[1:]
    if not digits.isascii() or not digits.isdigit():
        return None
    return ERRNO_NAMES.get(int(digits))


def file_mode(raw: str) -> tuple[str, str] | None:
    """Permissions and file type of an octal ``mode=`` value.

    Args:
        raw: the value as written (``0100644``).

    Returns:
        ``(permissions, type)``: permissions as 4 octal digits with SUID/SGID/sticky kept
        (``0100644`` -> ``"0644"``, ``0104755`` -> ``"4755"``); type one of ``file``,
        ``directory``, ``character-device``, ``block-device``, ``named-pipe``, ``symlink``,
        ``socket``, or ``""`` when the mode has no (known) file type bits.  ``None`` when the
        value is not octal.
    """
    text = unquote(raw)
    if not text or not text.isascii() or not text.isdigit() or "8" in text or "9" in text:
        return None
    mode = int(text, 8)
    return format(mode & PERMISSION_BITS, "04o"), FILE_TYPES.get(stat.S_IFMT(mode), "")


def selinux_context(raw: str) -> dict[str, str]:
    """The parts of a security label (``subj=``, ``obj=``, ``scontext=``, ``vm-ctx=`` ...).

    Args:
        raw: the value as written.

    Returns:
        * SELinux ``user:role:type[:level]`` -> ``{"user", "role", "domain", "level"}`` where
          level is everything after the third colon (``s0-s0:c0.c1023``), absent without MLS;
        * AppArmor ``profile (mode)`` -> ``{"domain": profile, "mode": mode}``;
        * DAC ``owner:group`` (libvirt's ``+107:+107``) -> ``{"user", "group"}``;
        * any other label (an AppArmor profile without mode, ``unconfined``) ->
          ``{"domain": label}``;
        * unset -> ``{}``.
    """
    text = unquote(raw).strip()
    if is_unset(text):
        return {}
    apparmor = _APPARMOR_LABEL.fullmatch(text)
    if apparmor:
        return {"domain": apparmor["domain"], "mode": apparmor["mode"]}
    parts = text.split(":", _SELINUX_PARTS_BEFORE_LEVEL)
    if len(parts) > _SELINUX_PARTS_BEFORE_LEVEL:
        return {"user": parts[0], "role": parts[1], "domain": parts[2], "level": parts[3]}
    if len(parts) == _SELINUX_PARTS_BEFORE_LEVEL:
        return {"user": parts[0], "role": parts[1], "domain": parts[2]}
    if len(parts) == 2:
        return {"user": parts[0], "group": parts[1]}
    return {"domain": text}
