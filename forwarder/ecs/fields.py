"""The one declaration of every field the normalizer emits, with its type.

Index mappings for Elasticsearch and OpenSearch are generated from :data:`FIELDS`, and the tests
check every document against it with :func:`check_document`, so documents and mappings cannot
drift apart.

Types are the engines' field types:

* ``keyword``, ``constant_keyword``, ``wildcard``, ``match_only_text``: strings;
* ``long``: integers (never booleans);
* ``ip``: an IPv4 or IPv6 address as text;
* ``date``: ISO 8601 text;
* ``boolean``;
* ``flattened``: a free-form object (OpenSearch: ``flat_object``), or a list of such objects.
  Anything below it is allowed; its leaves are strings or lists of strings.  Only the fields
  declared ``flattened`` accept keys that are not declared here.

Any field may hold a list of values of its type (the engines index arrays natively).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Final

#: ECS release whose field names and types the documents follow.
ECS_VERSION: Final = "8.17.0"

FIELD_TYPES: Final = frozenset(
    {
        "keyword",
        "constant_keyword",
        "wildcard",
        "match_only_text",
        "long",
        "ip",
        "date",
        "boolean",
        "flattened",
    }
)


@dataclass(frozen=True, slots=True)
class Field:
    """One emitted field.

    Attributes:
        type: the engine field type (one of :data:`FIELD_TYPES`).
        description: what the field holds, one line.
        indexed: False for stored-only fields (``event.original``).
    """

    type: str
    description: str
    indexed: bool = True


def _entity(prefix: str, what: str) -> dict[str, Field]:
    """``<prefix>.id`` and ``<prefix>.name`` of a user or group."""
    return {
        f"{prefix}.id": Field("keyword", f"Numeric id of {what}."),
        f"{prefix}.name": Field("keyword", f"Name of {what} (ENRICHED log or passwd/group snapshot)."),
    }


def _selinux(prefix: str, what: str) -> dict[str, Field]:
    """Parts of a security label: SELinux user/role/domain(type)/level, AppArmor domain (profile)
    and mode, DAC user/group (as :func:`forwarder.audit.values.selinux_context` splits them)."""
    return {
        f"{prefix}.{part}": Field("keyword", f"Security label {part} of {what}.")
        for part in ("user", "role", "domain", "level", "category", "mode", "group")
    }


FIELDS: Final[dict[str, Field]] = {
    # Base
    "@timestamp": Field("date", "Time of the audit event (record header, UTC, millisecond precision)."),
    "ecs.version": Field("keyword", "ECS version the document follows."),
    "tags": Field("keyword", "Audit rule keys (key=) of the event."),
    "error.message": Field("match_only_text", "What could not be interpreted; the raw value is kept."),
    # Event
    "event.kind": Field("keyword", "Always 'event'."),
    "event.category": Field("keyword", "ECS categories from the normalization table."),
    "event.type": Field("keyword", "ECS types from the normalization table."),
    "event.action": Field("keyword", "What happened, in the go-libaudit action vocabulary (executed, ...)."),
    "event.outcome": Field("keyword", "success, failure or unknown (from success= / res=)."),
    "event.module": Field("keyword", "Always 'auditd'."),
    "event.dataset": Field("keyword", "Dataset name, by default auditd_manager.auditd."),
    "event.sequence": Field("long", "Audit serial number of the event."),
    "event.id": Field("keyword", "Deterministic id from (host, node, time, serial); also the document _id."),
    "event.original": Field(
        "keyword", "The raw records of the event, one per line (optional).", indexed=False
    ),
    # Data stream
    "data_stream.type": Field("constant_keyword", "Always 'logs'."),
    "data_stream.dataset": Field("constant_keyword", "Dataset of the data stream."),
    "data_stream.namespace": Field("constant_keyword", "Namespace of the data stream."),
    # Host
    "host.name": Field("keyword", "Host the event comes from (node= name when present, else configured)."),
    "host.hostname": Field("keyword", "Host name, as host.name."),
    "host.architecture": Field("keyword", "Architecture of the audited system call (arch=)."),
    "host.os.type": Field("keyword", "Always 'linux'."),
    # Users and groups
    **_entity("user", "the real user (uid) or the table's subject"),
    **_entity("user.effective", "the effective user (euid)"),
    **_entity("user.target", "the user acted upon (account management)"),
    **_entity("user.changes", "the user identity after a change"),
    **_entity("user.group", "the real group (gid)"),
    **_entity("user.effective.group", "the effective group (egid)"),
    **_entity("group", "the group acted upon (group management)"),
    "related.user": Field("keyword", "All user names seen in the event."),
    "related.ip": Field("ip", "All IP addresses seen in the event."),
    "related.hosts": Field("keyword", "All host names seen in the event."),
    # Process
    "process.pid": Field("long", "Process id (pid=)."),
    "process.name": Field("keyword", "Command name (comm=)."),
    "process.executable": Field("keyword", "Executable path (exe=)."),
    "process.args": Field("keyword", "Arguments from EXECVE records."),
    "process.args_count": Field("long", "Number of arguments."),
    "process.command_line": Field("wildcard", "Arguments joined by spaces, arguments with spaces quoted."),
    "process.title": Field("keyword", "Process title (PROCTITLE, NULs as spaces)."),
    "process.working_directory": Field("keyword", "Working directory (CWD record)."),
    "process.parent.pid": Field("long", "Parent process id (ppid=)."),
    # File
    "file.path": Field(
        "keyword", "Path of the event's object (first PATH record that is not PARENT/UNKNOWN)."
    ),
    "file.name": Field("keyword", "Last component of file.path."),
    "file.directory": Field("keyword", "Directory part of file.path."),
    "file.extension": Field("keyword", "Extension of file.name, without the dot."),
    "file.inode": Field("keyword", "Inode number."),
    "file.device": Field("keyword", "Device (major:minor) holding the file."),
    "file.mode": Field("keyword", "Permission bits in octal, with setuid/setgid/sticky (0755, 4755)."),
    "file.type": Field("keyword", "File type from the mode (file, dir, symlink, ...)."),
    "file.uid": Field("keyword", "Owner user id (ouid=)."),
    "file.gid": Field("keyword", "Owner group id (ogid=)."),
    "file.owner": Field("keyword", "Owner user name."),
    "file.group": Field("keyword", "Owner group name."),
    # Network
    "source.ip": Field("ip", "Source address (SOCKADDR of accept/recv*, or addr= of user messages)."),
    "source.port": Field("long", "Source port."),
    "source.address": Field("keyword", "Source address as written (IP or unix socket path)."),
    "source.domain": Field("keyword", "Source host name (hostname= of user messages)."),
    "destination.ip": Field("ip", "Destination address (SOCKADDR of connect/send*)."),
    "destination.port": Field("long", "Destination port."),
    "destination.address": Field("keyword", "Destination address as written (IP or unix socket path)."),
    "network.direction": Field("keyword", "ingress or egress."),
    "network.type": Field("keyword", "ipv4 or ipv6, from the socket address family."),
    "network.transport": Field("keyword", "Transport protocol when the record tells it."),
    # auditd
    "auditd.message_type": Field(
        "keyword", "Lower-case type of the event's first record (syscall, user_login)."
    ),
    "auditd.result": Field("keyword", "success or fail."),
    "auditd.session": Field("keyword", "Login session id (ses=), omitted when unset."),
    "auditd.node": Field("keyword", "node= prefix of the records, when present."),
    "auditd.summary.actor.primary": Field("keyword", "Who: usually the audit user id."),
    "auditd.summary.actor.secondary": Field("keyword", "Who, second view: usually the real uid or account."),
    "auditd.summary.object.type": Field("keyword", "Kind of object (file, socket, virtual-machine, ...)."),
    "auditd.summary.object.primary": Field("keyword", "The object acted upon."),
    "auditd.summary.object.secondary": Field("keyword", "More about the object (port, vm name, ...)."),
    "auditd.summary.how": Field("keyword", "By what means (executable, terminal, syscall)."),
    "auditd.paths": Field("flattened", "Fields of every PATH record, decoded, in order."),
    "auditd.data": Field("flattened", "Every raw field no other field took (hyphens as underscores)."),
    "auditd.records": Field("flattened", "Per-record view: type and fields of records of unknown types."),
    **_entity("auditd.user.audit", "the login (audit) user (auid)"),
    **_entity("auditd.user.saved", "the saved user (suid)"),
    **_entity("auditd.user.saved.group", "the saved group (sgid)"),
    **_entity("auditd.user.filesystem", "the filesystem user (fsuid)"),
    **_entity("auditd.user.filesystem.group", "the filesystem group (fsgid)"),
    **_selinux("auditd.user.selinux", "the subject (subj=)"),
    **_selinux("auditd.file.selinux", "the file (obj=)"),
    # libvirt guests (forwarder.virt.enrich): the guest an event concerns and libvirt's records
    "libvirt.domain.uuid": Field("keyword", "Uuid of the guest(s) the event concerns."),
    "libvirt.domain.name": Field("keyword", "Name of the guest(s) the event concerns (decoded vm=)."),
    "libvirt.domain.type": Field("keyword", "Domain type of a libvirt record (virt=: kvm, qemu, lxc ...)."),
    "libvirt.attribution.method": Field(
        "keyword", "How the event was tied to the guest: uuid, pid, parent, label, image, device, cgroup, mac, tap."
    ),
    "libvirt.attribution.side": Field(
        "keyword", "source: the acting process is the guest's; target: the object acted upon is."
    ),
    "libvirt.event.op": Field("keyword", "Operation of a VIRT_CONTROL record (start, stop, init)."),
    "libvirt.event.reason": Field("keyword", "reason= of a VIRT_CONTROL/VIRT_RESOURCE record."),
    "libvirt.event.vm_pid": Field("long", "vm-pid= of a VIRT_CONTROL record (0 or -1 after a stop)."),
    "libvirt.event.init_pid": Field("long", "init-pid= of an LXC VIRT_CONTROL op=init record."),
    "libvirt.event.resource.type": Field("keyword", "resrc= of a VIRT_RESOURCE record (disk, net, cgroup ...)."),
    "libvirt.event.resource.old": Field("keyword", "Previous value (old-T=, decoded)."),
    "libvirt.event.resource.new": Field("keyword", "New value (new-T=, decoded)."),
    "libvirt.event.resource.mac": Field("keyword", "MAC address of a tap/vhost open (net=)."),
    "libvirt.event.resource.path": Field("keyword", "Device or file path (path=, decoded)."),
    "libvirt.event.resource.rdev": Field("keyword", "Device number of path (rdev=, MM:mm)."),
    "libvirt.event.resource.cgroup": Field("keyword", "cgroup directory of a cgroup ACL change (decoded)."),
    "libvirt.event.resource.class": Field("keyword", "cgroup ACL class (all, path, major)."),
    "libvirt.event.resource.category": Field("keyword", "Device category of a major-class cgroup ACL (pty)."),
    "libvirt.event.resource.major": Field("keyword", "Device major of a major-class cgroup ACL (maj=, hex)."),
    "libvirt.event.resource.acl": Field("keyword", "Access granted or denied by a cgroup ACL (rw, r ...)."),
    "libvirt.event.resource.bus": Field("keyword", "Bus of a host device (pci, usb, scsi, mdev ...)."),
    "libvirt.event.resource.device": Field("keyword", "Host device address or path (device=, disk=, chardev=)."),
    "libvirt.event.resource.size": Field("keyword", "Size of a shared memory region (size=)."),
    "libvirt.event.security.model": Field("keyword", "Security model of a VIRT_MACHINE_ID label."),
    "libvirt.event.security.vm_context": Field("keyword", "Label of the guest's processes (vm-ctx=)."),
    "libvirt.event.security.image_context": Field("keyword", "Label of the guest's images (img-ctx=)."),
}


def _flattened_prefixes() -> tuple[str, ...]:
    return tuple(name for name, field in FIELDS.items() if field.type == "flattened")


_FLATTENED: Final = frozenset(_flattened_prefixes())


def check_document(document: dict[str, Any]) -> list[str]:
    """Check that a document uses only declared fields with values of the declared types.

    Args:
        document: a normalized document (nested dicts).

    Returns:
        One message per problem; empty when the document conforms.
    """
    problems: list[str] = []
    _check_object(document, "", problems)
    return problems


def _check_object(obj: dict[str, Any], prefix: str, problems: list[str]) -> None:
    for key, value in obj.items():
        if not isinstance(key, str):
            problems.append(f"{prefix}{key!r}: key is not a string")
            continue
        path = prefix + key
        if path in _FLATTENED:
            _check_flattened(value, path, problems)
            continue
        field = FIELDS.get(path)
        if field is not None:
            values = value if isinstance(value, list) else [value]
            for item in values:
                if not _matches(field.type, item):
                    problems.append(f"{path}: {item!r} is not of type {field.type}")
            continue
        if isinstance(value, dict):
            if not value:
                problems.append(f"{path}: empty object")
            _check_object(value, path + ".", problems)
            continue
        problems.append(f"{path}: field not declared")


def _check_flattened(value: Any, path: str, problems: list[str]) -> None:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            problems.append(f"{path}: flattened value must be an object, got {type(item).__name__}")
            continue
        _check_flattened_leaves(item, path, problems)


def _check_flattened_leaves(obj: dict[str, Any], path: str, problems: list[str]) -> None:
    for key, value in obj.items():
        if isinstance(value, dict):
            _check_flattened_leaves(value, f"{path}.{key}", problems)
        elif isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                problems.append(f"{path}.{key}: list leaves of a flattened field must be strings")
        elif not isinstance(value, str):
            problems.append(f"{path}.{key}: leaf of a flattened field must be a string, got {value!r}")


def _matches(field_type: str, value: Any) -> bool:
    if field_type == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if field_type == "boolean":
        return isinstance(value, bool)
    if not isinstance(value, str):
        return False
    if field_type == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return True
    if field_type == "date":
        return len(value) >= 20 and value[4] == "-" and value[10] == "T" and value.endswith("Z")
    return True
