"""What a record field's raw value is looked up as in a host's guest indexes.

:class:`~forwarder.virt.guests.GuestRegistry` ties an event to a guest by dict lookups of its
field values: a security label by its SELinux MCS level or the uuid of its AppArmor profile, a
file path by the path itself (disk images, device nodes) and by the systemd machine scope it lies
in.  This module derives those keys from a value as written (quoted, hex-encoded ...).  The
derivation depends on the value alone, never on what the registry knows, so it is remembered per
value (:class:`~forwarder.virt.memo.BoundedMemo`): ordinary events repeat the same contexts and
paths, and the per-record cost of finding "no guest here" is one lookup per field.
"""

from __future__ import annotations

import re
from typing import Final

from forwarder.audit import values
from forwarder.virt.memo import BoundedMemo

#: A guest uuid as libvirt writes it.
UUID_PATTERN: Final = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
UUID_LENGTH: Final = 36
#: AppArmor profile of a guest: ``libvirt-`` + uuid (``docs/virt-audit.md`` §1.4).
PROFILE_PREFIX: Final = "libvirt-"
_PROFILE_UUID_END: Final = len(PROFILE_PREFIX) + UUID_LENGTH
#: Colon-separated parts of an SELinux context before its MLS/MCS level.
SELINUX_PARTS_BEFORE_LEVEL: Final = 3
#: Directory of systemd's machine scopes in a cgroup path.
MACHINE_SLICE: Final = "/machine.slice/"
_SCOPE_SUFFIX: Final = ".scope"

#: Distinct values remembered per memo.  A host has a few hundred distinct contexts and a few
#: thousand recurring paths; a stream of one-off values only makes a memo start over.
_MAX_VALUES: Final = 4096
#: Characters remembered per memo (values and what was derived from them), a few MiB at most:
#: paths run to 4096 bytes, hex-encoded to twice that.
_MAX_CHARS: Final = 1 << 20

#: The lookup keys of a label: ``(MCS level or None, profile uuid or None)``.
LabelKeys = tuple[str | None, str | None]
#: The lookup keys of a file path: ``(absolute path or None, machine scope or None)``.
PathKeys = tuple[str | None, str | None]

_LABELS: Final[BoundedMemo[str, LabelKeys]] = BoundedMemo(_MAX_VALUES, _MAX_CHARS)
_PATHS: Final[BoundedMemo[str, PathKeys]] = BoundedMemo(_MAX_VALUES, _MAX_CHARS)
_SCOPE_PATHS: Final[BoundedMemo[str, str | None]] = BoundedMemo(_MAX_VALUES, _MAX_CHARS)

#: What :data:`SCOPE_PATH_KEYS` gives for a value not remembered (``None`` is an answer there).
UNSEEN: Final = "\0unseen"

#: Remembered :func:`label_keys`, :func:`path_keys` and :func:`scope_path_key` by raw value: hot
#: loops look here first (``SCOPE_PATH_KEYS`` holds ``None`` answers: look up with a default).
LABEL_KEYS: Final = _LABELS.entries
PATH_KEYS: Final = _PATHS.entries
SCOPE_PATH_KEYS: Final = _SCOPE_PATHS.entries


def label_keys(raw: str) -> LabelKeys:
    """The keys a security label (``subj=``, ``obj=``, ``scontext=``, ``profile=`` ...) is looked
    up by.

    Args:
        raw: the value as written.

    Returns:
        ``(level, uuid)``: ``level`` is what follows the third colon of an SELinux context
        (``s0:c12,c345``), ``None`` without three colons; ``uuid`` is the lower-case uuid of an
        AppArmor profile ``libvirt-UUID`` (also quoted, or followed by `` (enforce)``), else
        ``None``.
    """
    keys = LABEL_KEYS.get(raw)
    if keys is not None:
        return keys
    parts = raw.split(":", SELINUX_PARTS_BEFORE_LEVEL)
    level = parts[SELINUX_PARTS_BEFORE_LEVEL] if len(parts) > SELINUX_PARTS_BEFORE_LEVEL else None
    return _LABELS.remember(raw, (level, profile_uuid(raw)), 2 * len(raw))


def profile_uuid(raw: str) -> str | None:
    """The lower-case uuid of an AppArmor profile ``libvirt-UUID`` (``"libvirt-UUID"``,
    ``libvirt-UUID (enforce)``), ``None`` for any other value."""
    start = 1 if raw[:1] == '"' else 0
    if not raw.startswith(PROFILE_PREFIX, start):
        return None
    uuid = raw[start + len(PROFILE_PREFIX) : start + _PROFILE_UUID_END]
    return uuid.lower() if UUID_PATTERN.fullmatch(uuid) else None


def path_keys(raw: str) -> PathKeys:
    """The keys a file path (PATH ``name=``, AppArmor ``name=``) is looked up by.

    Args:
        raw: the value as written (quoted or hex-encoded).

    Returns:
        ``(path, scope)``: the decoded path when it is absolute (else ``None``: a relative name
        names nothing a guest owns) and the machine scope it lies in (:func:`scope_of`), else
        ``None``.
    """
    keys = PATH_KEYS.get(raw)
    if keys is not None:
        return keys
    path = _decoded_path(raw)
    absolute = path[:1] == "/"
    keys = (path, scope_of(path) if MACHINE_SLICE in path else None) if absolute else (None, None)
    return _PATHS.remember(raw, keys, 2 * len(raw))


def scope_path_key(raw: str) -> str | None:
    """The machine scope key of a cgroup-like path (CWD ``cwd=``, ``unit=``).

    Args:
        raw: the value as written (quoted or hex-encoded).

    Returns:
        The scope of a path inside ``/machine.slice/`` (:func:`scope_of`, ``None`` when it names
        no scope); any other value names a scope itself (``unit=machine-qemu...scope``): the
        value without its leading ``/``.
    """
    scope = SCOPE_PATH_KEYS.get(raw, UNSEEN)
    if scope is not UNSEEN:
        return scope
    path = _decoded_path(raw)
    if path[:1] != "/":
        path = "/" + path  # unit= names a scope without a directory
    scope = scope_of(path) if MACHINE_SLICE in path else path[1:]
    return _SCOPE_PATHS.remember(raw, scope, 2 * len(raw))


def scope_of(path: str) -> str | None:
    """The systemd machine scope a cgroup path lies in, or ``None``.

    ``/sys/fs/cgroup/machine.slice/machine-qemu\\x2d1\\x2dweb01.scope/libvirt/`` (cgroup v2) and
    ``/sys/fs/cgroup/devices/machine.slice/machine-qemu\\x2d1\\x2dweb01.scope`` (v1) both give
    ``machine-qemu\\x2d1\\x2dweb01.scope``.
    """
    at = path.find(MACHINE_SLICE)
    if at < 0:
        return None
    scope = path[at + len(MACHINE_SLICE) :].split("/", 1)[0]
    return scope if scope.endswith(_SCOPE_SUFFIX) else None


def _decoded_path(raw: str) -> str:
    """A path value as text: as written when unquoted and absolute, else decoded."""
    first = raw[:1]
    if first == "/":
        return raw
    if first == '"' and raw[-1] == '"' and raw.find('"', 1) == len(raw) - 1:
        return raw[1:-1]  # what decode_value gives, without the call
    return values.decode_value(raw)
