"""Value encodings used by the kernel, auditd and libvirt when they write audit records.

Two writers, one rule: a value is written in upper-case hex (no quotes) when any byte is ``"``,
below ``0x21`` (space and control bytes), ``0x7f`` or above it (every non-ASCII byte); otherwise
it is written in double quotes.  The kernel calls this ``audit_string_contains_control`` and
libvirt goes through libaudit's ``audit_encode_nv_string`` (``docs/virt-audit.md`` §1.2).
"""

from __future__ import annotations

import re
from typing import Final

#: Bytes that force hex encoding (matched on text, so every non-ASCII character counts).
_NEEDS_HEX: Final = re.compile(r'[\x00-\x20"\x7f-\U0010ffff]')

#: The kernel keeps at most this many bytes of ``/proc/PID/cmdline`` in a PROCTITLE record
#: (``MAX_PROCTITLE_AUDIT_LEN`` in ``kernel/auditsc.c``).
PROCTITLE_MAX_BYTES: Final = 128

#: Separator of several rule keys in one ``key=`` field (``AUDIT_KEY_SEPARATOR``).
KEY_SEPARATOR: Final = "\x01"


def needs_hex(value: str) -> bool:
    """Whether ``value`` must be hex-encoded (see the module docstring)."""
    return _NEEDS_HEX.search(value) is not None


def hex_upper(value: str | bytes) -> str:
    """Upper-case hex of the UTF-8 bytes of ``value``."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return data.hex().upper()


def untrusted(value: str) -> str:
    """A value as the kernel writes untrusted strings: ``"value"`` or bare upper-case hex."""
    if _NEEDS_HEX.search(value) is not None:
        return hex_upper(value)
    return f'"{value}"'


def encode_nv(key: str, value: str | None) -> str:
    """libaudit's ``audit_encode_nv_string``: ``key="value"``, ``key=HEX`` or ``key="?"`` for None."""
    if value is None:
        return f'{key}="?"'
    return f"{key}={untrusted(value)}"


def proctitle(argv: list[str]) -> str:
    """The ``proctitle=`` value: the NUL-joined command line cut to 128 bytes, quoted or hex.

    Args:
        argv: the process's arguments.

    Returns:
        ``"word"`` when the (cut) command line is one argument without special bytes, else hex.
    """
    data = "\0".join(argv).encode("utf-8")[:PROCTITLE_MAX_BYTES]
    text = data.decode("utf-8", "replace")
    if b"\0" in data or _NEEDS_HEX.search(text) is not None:
        return data.hex().upper()
    return f'"{text}"'


def rule_key(keys: tuple[str, ...]) -> str:
    """The ``key=`` value: ``(null)``, ``"one"``, or hex of several keys joined by 0x01."""
    if not keys:
        return "(null)"
    if len(keys) == 1:
        return untrusted(keys[0])
    return hex_upper(KEY_SEPARATOR.join(keys))
