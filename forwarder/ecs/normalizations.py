"""The declared table: system call or record type -> what the event means.

Each entry says what happened (``action``, in the vocabulary of libauparse's normalizer as used by
go-libaudit and Auditbeat, so Elastic's prebuilt rules and dashboards match), which ECS
``event.category``/``event.type`` it belongs to, and where the summary's actor, object and "how"
come from.  The code in :mod:`forwarder.ecs.normalize` reads this table; it holds no per-type
``if`` chains.

Selection (same as the established normalizers):

* the event's leading record is its first record, except that a SYSCALL first record gives way
  to a later record type with an entry (an AVC written after its SYSCALL);
* an event led by SYSCALL uses the system call's entry (:data:`SYSCALLS`, falling back to
  :data:`SYSCALL_FALLBACK`);
* any other event uses its leading record type's entry (:data:`RECORD_TYPES`; a type with several
  entries picks the one whose ``requires`` field is present, e.g. SELinux vs AppArmor AVC), and
  when the event also carries a SYSCALL record, that call's categories and types are appended;
* a record type without an entry uses :data:`RECORD_TYPE_FALLBACK`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final

#: Where a user mapping reads its value: the summary's actor/object, or a raw field.
SUMMARY_SOURCES: Final = frozenset(
    {"subject.primary", "subject.secondary", "object.primary", "object.secondary"}
)
#: Where a user mapping writes: an ECS user or group entity.
MAPPING_TARGETS: Final = frozenset({"user", "user.effective", "user.target", "user.changes", "group"})


@dataclass(frozen=True, slots=True)
class Normalization:
    """Meaning of one system call or record type.

    Attributes:
        action: ``event.action`` (None: no action, only categorization).
        category, type: ECS ``event.category`` / ``event.type``.
        object_type: ``auditd.summary.object.type``; ``file``/``filesystem`` take the object
            from the PATH records, ``socket`` from the SOCKADDR record.
        object_primary, object_secondary: field names tried in order for the object.
        subject_primary, subject_secondary: field names tried in order for the actor.
        how: field names tried in order for ``summary.how`` (``syscall`` = the call's name);
            empty: the executable (or comm for interpreters).
        path_index: index of the PATH record to start from when choosing the file object.
        source_from_addr: the ``addr=`` of the message is the remote peer (network.direction
            ingress).
        socket_role: where a SOCKADDR goes: ``destination`` (egress), ``source`` (ingress) or
            None (no side, e.g. bind).
        mappings: ``(from, to)`` pairs filling ECS user entities; ``from`` is one of
            :data:`SUMMARY_SOURCES` or ``field:<name>`` (a raw field), ``to`` one of
            :data:`MAPPING_TARGETS`.
        requires: for record types with several entries, a field that must be present.
        type_by_op: ECS ``event.type`` chosen by the ``op=`` value (VIRT_CONTROL start/stop).
    """

    action: str | None
    category: tuple[str, ...]
    type: tuple[str, ...]
    object_type: str | None = None
    object_primary: tuple[str, ...] = ()
    object_secondary: tuple[str, ...] = ()
    subject_primary: tuple[str, ...] = ("auid",)
    subject_secondary: tuple[str, ...] = ("uid",)
    how: tuple[str, ...] = ()
    path_index: int = 0
    source_from_addr: bool = False
    socket_role: str | None = None
    mappings: tuple[tuple[str, str], ...] = ()
    requires: str | None = None
    type_by_op: MappingProxyType[str, tuple[str, ...]] | None = None


def _n(
    action: str | None, category: str | tuple[str, ...], type_: str | tuple[str, ...], **kw: object
) -> Normalization:
    cats = (category,) if isinstance(category, str) else category
    types = (type_,) if isinstance(type_, str) else type_
    return Normalization(action, cats, types, **kw)  # type: ignore[arg-type]


# Shared shapes ------------------------------------------------------------------------------

#: PAM / login messages: who is the audit user and the account, the object is the terminal.
_SESSION: Final = {
    "subject_primary": ("auid",),
    "subject_secondary": ("acct", "id", "uid"),
    "object_type": "user-session",
    "object_primary": ("terminal",),
    "object_secondary": ("addr", "hostname"),
    "how": ("exe", "terminal"),
}
#: Authentication messages: the audit user acts, the account is the effective user.
_AUTH_MAPPINGS: Final = (("subject.primary", "user"), ("subject.secondary", "user.effective"))
#: Account management: the account acted upon is the target.
_USER_ADMIN: Final = {
    "object_type": "account",
    "object_primary": ("id", "acct"),
    "mappings": (
        ("subject.primary", "user"),
        ("subject.secondary", "user.effective"),
        ("object.primary", "user.target"),
    ),
}
_GROUP_ADMIN: Final = {
    "object_type": "account",
    "object_primary": ("id", "acct"),
    "mappings": (
        ("subject.primary", "user"),
        ("subject.secondary", "user.effective"),
        ("object.primary", "group"),
    ),
}
_FILE: Final = {"object_type": "file"}
_SOCKET: Final = {"object_type": "socket"}
_VM: Final = {"object_type": "virtual-machine"}
_PROCESS_OBJECT: Final = {"object_type": "process"}
_ALERT_PROCESS: Final = ("process", "intrusion_detection")

# System calls -------------------------------------------------------------------------------

_SYSCALL_GROUPS: Final[tuple[tuple[tuple[str, ...], Normalization], ...]] = (
    (("execve", "execveat"), _n("executed", "process", "start", **_FILE)),
    (
        ("open", "openat", "openat2", "readlink", "readlinkat", "open_by_handle_at"),
        _n("opened-file", "file", "info", **_FILE),
    ),
    (("creat",), _n("opened-file", "file", "creation", **_FILE)),
    (("fallocate", "truncate", "ftruncate"), _n("opened-file", "file", "change", **_FILE)),
    (("read",), _n("read-file", "file", "info", **_FILE)),
    (("write",), _n("wrote-to-file", "file", "change", **_FILE)),
    (
        ("setxattr", "fsetxattr", "lsetxattr", "removexattr", "fremovexattr", "lremovexattr"),
        _n("changed-file-attributes-of", "file", "change", **_FILE),
    ),
    (
        ("chmod", "fchmod", "fchmodat", "fchmodat2"),
        _n("changed-file-permissions-of", "file", "change", **_FILE),
    ),
    (
        ("chown", "fchown", "fchownat", "lchown", "chown32", "fchown32", "lchown32"),
        _n("changed-file-ownership-of", "file", "change", **_FILE),
    ),
    (
        ("init_module", "finit_module"),
        _n("loaded-kernel-module", "driver", "start", object_type="file", object_primary=("name",)),
    ),
    (("delete_module",), _n("unloaded-kernel-module", "driver", "end", **_FILE)),
    (("mkdir", "mkdirat"), _n("created-directory", "file", "creation", path_index=1, **_FILE)),
    (
        ("mount", "fsmount", "move_mount"),
        _n("mounted", "file", "creation", object_type="filesystem", path_index=1),
    ),
    (("umount", "umount2"), _n("unmounted", "file", "deletion", object_type="filesystem")),
    (("rename", "renameat", "renameat2"), _n("renamed", "file", "change", path_index=2, **_FILE)),
    (
        (
            "access",
            "faccessat",
            "faccessat2",
            "stat",
            "stat64",
            "fstat",
            "fstat64",
            "lstat",
            "lstat64",
            "fstatat",
            "fstatat64",
            "newfstatat",
            "statx",
            "getxattr",
            "lgetxattr",
            "fgetxattr",
        ),
        _n("checked-metadata-of", "file", "info", **_FILE),
    ),
    (
        ("statfs", "fstatfs", "statfs64", "fstatfs64"),
        _n("checked-filesystem-metadata-of", "file", "info", object_type="filesystem"),
    ),
    (("link", "linkat"), _n("linked", "file", "creation", **_FILE)),
    (("symlink", "symlinkat"), _n("symlinked", "file", "creation", **_FILE)),
    (("unlink", "unlinkat", "rmdir"), _n("deleted", "file", "deletion", **_FILE)),
    (
        ("utime", "utimes", "futimesat", "futimens", "utimensat"),
        _n("changed-timestamp-of", "file", "info", **_FILE),
    ),
    (("mknod", "mknodat"), _n("make-device", "file", "creation", **_FILE)),
    (("listen",), _n("listen-for-connections", "network", "start", **_SOCKET)),
    (
        ("accept", "accept4"),
        _n("accepted-connection-from", "network", ("connection", "start"), socket_role="source", **_SOCKET),
    ),
    (("bind",), _n("bound-socket", "network", "start", **_SOCKET)),
    (
        ("connect",),
        _n("connected-to", "network", ("connection", "start"), socket_role="destination", **_SOCKET),
    ),
    (
        ("recv", "recvfrom", "recvmsg", "recvmmsg"),
        _n("received-from", "network", ("connection", "info"), socket_role="source", **_SOCKET),
    ),
    (
        ("send", "sendto", "sendmsg", "sendmmsg"),
        _n("sent-to", "network", ("connection", "info"), socket_role="destination", **_SOCKET),
    ),
    (("kill", "tkill", "tgkill", "pidfd_send_signal"), _n("killed-pid", "process", "end", **_PROCESS_OBJECT)),
    (
        (
            "setuid",
            "seteuid",
            "setfsuid",
            "setreuid",
            "setresuid",
            "setgid",
            "setegid",
            "setfsgid",
            "setregid",
            "setresgid",
            "setuid32",
            "setreuid32",
            "setresuid32",
            "setfsuid32",
            "setgid32",
            "setregid32",
            "setresgid32",
            "setfsgid32",
        ),
        _n("changed-identity-of", "process", "change", how=("syscall",), **_PROCESS_OBJECT),
    ),
    (
        ("settimeofday", "clock_settime", "stime", "adjtimex", "clock_adjtime"),
        _n("changed-system-time", "host", "change", object_type="system"),
    ),
    (("sethostname", "setdomainname"), _n("changed-system-name", "host", "change", object_type="system")),
    (("mmap", "mmap2", "brk"), _n("allocated-memory", "process", "info", object_type="memory")),
    (
        ("sched_setparam", "sched_setscheduler", "sched_setattr"),
        _n("adjusted-scheduling-policy-of", "process", "change", how=("syscall",), **_PROCESS_OBJECT),
    ),
    (("exit_group",), _n("end", "process", "end", how=("syscall",))),
)

#: System call name -> normalization.
SYSCALLS: Final[MappingProxyType[str, Normalization]] = MappingProxyType(
    {name: norm for names, norm in _SYSCALL_GROUPS for name in names}
)
#: Any other system call: some process activity.
SYSCALL_FALLBACK: Final = _n(None, "process", "info")

# Record types -------------------------------------------------------------------------------

_VIRT_CONTROL_TYPES: Final = MappingProxyType(
    {
        "start": ("start",),
        "stop": ("end",),
        "create": ("creation",),
        "destroy": ("deletion",),
        "delete": ("deletion",),
    }
)

_RECORD_GROUPS: Final[tuple[tuple[tuple[str, ...], Normalization], ...]] = (
    # Identity and access management
    (("ACCT_LOCK",), _n("locked-account", "iam", ("user", "info"))),
    (("ACCT_UNLOCK",), _n("unlocked-account", "iam", ("user", "info"))),
    (("ADD_USER",), _n("added-user-account", "iam", ("user", "creation"), **_USER_ADMIN)),
    (("DEL_USER",), _n("deleted-user-account", "iam", ("user", "deletion"), **_USER_ADMIN)),
    (("ADD_GROUP",), _n("added-group-account-to", "iam", ("group", "creation"), **_GROUP_ADMIN)),
    (("DEL_GROUP",), _n("deleted-group-account-from", "iam", ("group", "deletion"), **_GROUP_ADMIN)),
    (
        ("GRP_MGMT",),
        _n(
            "modified-group-account",
            "iam",
            ("group", "change"),
            object_type="account",
            object_primary=("id", "acct"),
            mappings=(
                ("subject.primary", "user"),
                ("subject.secondary", "group"),
                ("field:uid", "user.effective"),
            ),
        ),
    ),
    (
        ("ROLE_ASSIGN",),
        _n(
            "assigned-user-role-to",
            "iam",
            ("user", "change"),
            object_type="account",
            object_primary=("id", "acct"),
        ),
    ),
    (
        ("ROLE_REMOVE",),
        _n(
            "removed-user-role-from",
            "iam",
            ("user", "change"),
            object_type="account",
            object_primary=("id", "acct"),
        ),
    ),
    (("ROLE_MODIFY",), _n("modified-role", "iam", "change")),
    (
        ("USER_MGMT",),
        _n(
            "modified-user-account",
            "iam",
            ("user", "change"),
            **{
                **_SESSION,
                "mappings": (
                    ("subject.primary", "user"),
                    ("subject.secondary", "user.target"),
                    ("field:uid", "user.effective"),
                ),
            },
        ),
    ),
    (
        ("USER_CHAUTHTOK",),
        _n(
            "changed-password",
            "iam",
            ("user", "change"),
            **{
                **_SESSION,
                "mappings": (
                    ("subject.primary", "user"),
                    ("field:uid", "user.effective"),
                    ("subject.secondary", "user.target"),
                ),
            },
        ),
    ),
    (
        ("GRP_CHAUTHTOK",),
        _n(
            "changed-group-password",
            "iam",
            ("group", "change"),
            **{
                **_SESSION,
                "object_primary": ("acct",),
                "mappings": (
                    ("subject.primary", "user"),
                    ("field:uid", "user.effective"),
                    ("subject.secondary", "group"),
                ),
            },
        ),
    ),
    # Authentication and sessions
    (
        ("CRED_ACQ",),
        _n("acquired-credentials", "authentication", "info", mappings=_AUTH_MAPPINGS, **_SESSION),
    ),
    (
        ("CRED_DISP",),
        _n("disposed-credentials", "authentication", "info", mappings=_AUTH_MAPPINGS, **_SESSION),
    ),
    (
        ("CRED_REFR",),
        _n("refreshed-credentials", "authentication", "info", mappings=_AUTH_MAPPINGS, **_SESSION),
    ),
    (("GRP_AUTH",), _n("authenticated-to-group", "authentication", "info", mappings=_AUTH_MAPPINGS)),
    (
        ("LOGIN",),
        _n(
            "changed-login-id-to",
            "authentication",
            "start",
            subject_primary=("old_auid", "old-auid"),
            subject_secondary=("uid",),
            object_type="user-session",
            object_primary=("new-auid", "new_auid", "auid"),
            mappings=(("subject.primary", "user"), ("object.primary", "user.effective")),
        ),
    ),
    (("USER_ACCT",), _n("was-authorized", "authentication", "info", mappings=_AUTH_MAPPINGS, **_SESSION)),
    (("USER_AUTH",), _n("authenticated", "authentication", "info", mappings=_AUTH_MAPPINGS, **_SESSION)),
    (
        ("USER_START",),
        _n("started-session", "session", "start", mappings=_AUTH_MAPPINGS, source_from_addr=True, **_SESSION),
    ),
    (("USER_END",), _n("ended-session", "session", "end", mappings=_AUTH_MAPPINGS, **_SESSION)),
    (
        ("USER_ERR",),
        _n("error", "authentication", "info", mappings=_AUTH_MAPPINGS, source_from_addr=True, **_SESSION),
    ),
    (
        ("USER_LOGIN",),
        _n(
            "logged-in", "authentication", "start", mappings=_AUTH_MAPPINGS, source_from_addr=True, **_SESSION
        ),
    ),
    (("USER_LOGOUT",), _n("logged-out", "authentication", "end", mappings=_AUTH_MAPPINGS, **_SESSION)),
    (
        ("USER_ROLE_CHANGE",),
        _n(
            "changed-role-to",
            "iam",
            ("user", "change"),
            **{**_SESSION, "object_primary": ("selected-context",)},
        ),
    ),
    # Virtualization (libvirt)
    (
        ("VIRT_CONTROL",),
        _n(
            "issued-vm-control",
            "host",
            "info",
            object_primary=("op",),
            object_secondary=("vm",),
            type_by_op=_VIRT_CONTROL_TYPES,
            **_VM,
        ),
    ),
    (
        ("VIRT_RESOURCE",),
        _n(
            "assigned-vm-resource", "host", "info", object_primary=("resrc",), object_secondary=("vm",), **_VM
        ),
    ),
    (("VIRT_MACHINE_ID",), _n("assigned-vm-id", "host", "info", object_primary=("vm",), **_VM)),
    (("VIRT_CREATE",), _n("created-vm-image", "host", "creation", object_primary=("vm",), **_VM)),
    (("VIRT_DESTROY",), _n("deleted-vm-image", "host", "deletion", object_primary=("vm",), **_VM)),
    (("VIRT_INTEGRITY_CHECK",), _n("checked-integrity-of", "host", "info", object_primary=("vm",), **_VM)),
    (("VIRT_MIGRATE_IN",), _n("migrated-vm-from", "host", "info", object_primary=("vm",), **_VM)),
    (("VIRT_MIGRATE_OUT",), _n("migrated-vm-to", "host", "info", object_primary=("vm",), **_VM)),
    # User-space process messages
    (("CHGRP_ID",), _n("changed-group", "process", "change")),
    (("CHUSER_ID",), _n("changed-user-id", "process", "change")),
    (("TEST",), _n("sent-test", "process", "info")),
    (("TRUSTED_APP",), _n("unknown", "process", "info")),
    (("USER_CMD",), _n("ran-command", "process", "start", object_type="process", object_primary=("cmd",))),
    (("USER",), _n("sent-message", "process", "info", object_primary=("addr",))),
    (
        ("SOFTWARE_UPDATE",),
        _n("package-updated", "package", "info", object_type="package", object_primary=("sw",)),
    ),
    (
        ("USER_DEVICE",),
        _n("changed-device", "host", "change", object_type="device", object_primary=("device",)),
    ),
    # Host
    (("SYSTEM_BOOT",), _n("booted-system", "host", "start", object_type="system")),
    (
        ("SYSTEM_RUNLEVEL",),
        _n("changed-to-runlevel", "host", "change", object_type="system", object_primary=("new-level",)),
    ),
    (("SYSTEM_SHUTDOWN",), _n("shutdown-system", "host", "end", object_type="system")),
    (
        ("SERVICE_START",),
        _n("started-service", "process", "start", object_type="service", object_primary=("unit",)),
    ),
    (
        ("SERVICE_STOP",),
        _n("stopped-service", "process", "end", object_type="service", object_primary=("unit",)),
    ),
    (("TIME_ADJNTPVAL", "TIME_INJOFFSET"), _n("changed-system-time", "host", "change", object_type="system")),
    # The audit system itself
    (
        ("CONFIG_CHANGE",),
        _n(
            "changed-audit-configuration",
            ("process", "configuration"),
            "change",
            object_type="audit-config",
            object_primary=(
                "op",
                "key",
                "audit_enabled",
                "audit_pid",
                "audit_backlog_limit",
                "audit_failure",
            ),
        ),
    ),
    (("DAEMON_ABORT",), _n("aborted-auditd-startup", "process", "end", object_type="service")),
    (
        ("DAEMON_ACCEPT",),
        _n("remote-audit-connected", "network", ("connection", "start"), object_type="service"),
    ),
    (
        ("DAEMON_CLOSE",),
        _n("remote-audit-disconnected", "network", ("connection", "end"), object_type="service"),
    ),
    (
        ("DAEMON_CONFIG",),
        _n("changed-auditd-configuration", ("process", "configuration"), "change", object_type="service"),
    ),
    (("DAEMON_END",), _n("shutdown-audit", "process", "end", object_type="service")),
    (("DAEMON_ERR",), _n("audit-error", "process", "info", object_type="service")),
    (("DAEMON_RESUME",), _n("resumed-audit-logging", "process", "change", object_type="service")),
    (("DAEMON_ROTATE",), _n("rotated-audit-logs", "process", "change", object_type="service")),
    (("DAEMON_START",), _n("started-audit", "process", "start", object_type="service")),
    (("KERNEL",), _n("initialized-audit-subsystem", "process", "info")),
    (
        ("USYS_CONFIG",),
        _n("changed-configuration", "configuration", "change", object_type="system", object_primary=("op",)),
    ),
    (
        ("NETFILTER_CFG",),
        _n(
            "loaded-firewall-rule-to",
            "configuration",
            "change",
            object_type="firewall",
            object_primary=("table",),
        ),
    ),
    (
        ("FEATURE_CHANGE",),
        _n(
            "changed-audit-feature",
            "configuration",
            "change",
            object_type="system",
            object_primary=("feature",),
        ),
    ),
    (
        ("KERN_MODULE",),
        _n("loaded-kernel-module", "driver", "start", object_type="file", object_primary=("name",)),
    ),
    (
        ("TTY", "USER_TTY"),
        _n(
            "typed",
            "process",
            "info",
            object_type="keystrokes",
            object_primary=("data",),
            how=("comm", "exe"),
        ),
    ),
    # Mandatory access control
    (
        ("MAC_CONFIG_CHANGE",),
        _n(
            "changed-selinux-boolean",
            "configuration",
            "change",
            object_type="mac-config",
            object_primary=("bool",),
        ),
    ),
    (("MAC_POLICY_LOAD",), _n("loaded-selinux-policy", "configuration", "access", object_type="mac-config")),
    (
        ("MAC_STATUS",),
        _n(
            "changed-selinux-enforcement",
            "configuration",
            "change",
            object_type="mac-config",
            object_primary=("enforcing",),
        ),
    ),
    (
        ("USER_MAC_CONFIG_CHANGE",),
        _n("changed-mac-configuration", "configuration", "change", object_type="mac-config"),
    ),
    (("USER_MAC_POLICY_LOAD",), _n("loaded-mac-policy", "configuration", "access", object_type="mac-config")),
    (("FS_RELABEL",), _n("relabeled-filesystem", "configuration", "change", object_type="mac-config")),
    (
        ("LABEL_LEVEL_CHANGE",),
        _n(
            "modified-level-of", "configuration", "change", object_type="printer", object_primary=("printer",)
        ),
    ),
    (("LABEL_OVERRIDE",), _n("overrode-label-of", "configuration", "change", object_type="mac-config")),
    (("MAC_CHECK",), _n("mac-permission", "process", "access")),
    (("USER_AVC",), _n("access-permission", "process", "access")),
    (("USER_SELINUX_ERR",), _n("access-error", "process", "error")),
    (("SELINUX_ERR",), _n("caused-mac-policy-error", "process", "error", object_type="system")),
    (
        ("SECCOMP",),
        _n(
            "violated-seccomp-policy", "process", "denied", object_type="process", object_primary=("syscall",)
        ),
    ),
    (("DAC_CHECK",), _n("access-result", "process", "access")),
    (
        ("CRYPTO_KEY_USER",),
        _n(
            "negotiated-crypto-key",
            "process",
            "info",
            source_from_addr=True,
            **{**_SESSION, "object_primary": ("fp",), "object_secondary": ("addr", "hostname")},
        ),
    ),
    (
        ("CRYPTO_SESSION",),
        _n(
            "started-crypto-session",
            "process",
            "info",
            source_from_addr=True,
            **{**_SESSION, "object_primary": ("addr",), "object_secondary": ("rport",)},
        ),
    ),
    (("CRYPTO_LOGIN",), _n("crypto-officer-logged-in", "authentication", "start")),
    (("CRYPTO_LOGOUT",), _n("crypto-officer-logged-out", "authentication", "end")),
    # Anomalies (kernel and user space)
    (
        ("ANOM_ABEND",),
        _n(
            "crashed-program",
            _ALERT_PROCESS,
            ("end", "info"),
            object_type="process",
            object_primary=("comm", "exe"),
            object_secondary=("pid",),
            how=("sig",),
        ),
    ),
    (
        ("ANOM_EXEC",),
        _n(
            "attempted-execution-of-forbidden-program",
            _ALERT_PROCESS,
            ("start", "info"),
            object_type="process",
            object_primary=("cmd",),
            how=("terminal",),
        ),
    ),
    (("ANOM_LINK",), _n("used-suspicious-link", ("file", "intrusion_detection"), ("access", "info"))),
    (("ANOM_CREAT",), _n("created-suspicious-file", ("file", "intrusion_detection"), ("creation", "info"))),
    (
        ("ANOM_PROMISCUOUS",),
        _n(
            "changed-promiscuous-mode-on-device",
            "intrusion_detection",
            ("info", "change"),
            object_type="network-device",
            object_primary=("dev",),
        ),
    ),
    (
        ("ANOM_LOGIN_FAILURES",),
        _n(
            "failed-log-in-too-many-times-to",
            ("authentication", "intrusion_detection"),
            ("start", "denied"),
            **_SESSION,
        ),
    ),
    (
        ("ANOM_LOGIN_LOCATION",),
        _n(
            "attempted-log-in-from-unusual-place-to",
            ("authentication", "intrusion_detection"),
            ("start", "denied"),
            **_SESSION,
        ),
    ),
    (
        ("ANOM_LOGIN_SESSIONS",),
        _n(
            "opened-too-many-sessions-to",
            ("authentication", "intrusion_detection"),
            ("start", "denied"),
            **_SESSION,
        ),
    ),
    (
        ("ANOM_LOGIN_TIME",),
        _n(
            "attempted-log-in-during-unusual-hour-to",
            ("authentication", "intrusion_detection"),
            ("start", "denied"),
            **_SESSION,
        ),
    ),
    (
        ("ANOM_LOGIN_ACCT",),
        _n(
            "attempted-log-in-to-watched-account",
            ("authentication", "intrusion_detection"),
            ("start", "denied"),
        ),
    ),
    (
        ("ANOM_LOGIN_SERVICE",),
        _n("service-account-attempted-login", ("authentication", "intrusion_detection"), ("start", "denied")),
    ),
    (
        ("ANOM_ROOT_TRANS",),
        _n("user-became-root", ("authentication", "intrusion_detection"), ("start", "info")),
    ),
    (
        ("ANOM_RBAC_INTEGRITY_FAIL",),
        _n(
            "tested-file-system-integrity-of",
            "intrusion_detection",
            "info",
            object_type="filesystem",
            object_primary=("hostname",),
        ),
    ),
    (
        ("ANOM_MAX_DAC",),
        _n("max-discretionary-access-control-failures-reached", "intrusion_detection", "info"),
    ),
    (("ANOM_MAX_MAC",), _n("max-mandatory-access-control-failures-reached", "intrusion_detection", "info")),
    (("ANOM_AMTU_FAIL",), _n("abstract-machine-test-utility-failure", "intrusion_detection", "info")),
    (("ANOM_RBAC_FAIL",), _n("rbac-self-test-failure", "intrusion_detection", "info")),
    (("ANOM_CRYPTO_FAIL",), _n("crypto-system-test-failure", "intrusion_detection", "info")),
    (("ANOM_MK_EXEC",), _n("made-an-executable", ("file", "intrusion_detection"), ("change", "info"))),
    (
        ("ANOM_ACCESS_FS",),
        _n("accessed-watched-file-or-directory", ("file", "intrusion_detection"), ("access", "info")),
    ),
    (
        ("ANOM_ADD_ACCT",),
        _n("added-user-account", ("iam", "intrusion_detection"), ("user", "creation", "info")),
    ),
    (
        ("ANOM_DEL_ACCT",),
        _n("deleted-user-account", ("iam", "intrusion_detection"), ("user", "deletion", "info")),
    ),
    (
        ("ANOM_MOD_ACCT",),
        _n("modified-user-account", ("iam", "intrusion_detection"), ("user", "change", "info")),
    ),
)

#: AVC has two meanings, told apart by a field (first match wins).
_AVC: Final = (
    _n(
        "violated-selinux-policy",
        (),
        (),
        subject_primary=("scontext",),
        object_primary=("tcontext",),
        object_secondary=("tclass",),
        requires="seresult",
    ),
    _n(
        "violated-apparmor-policy",
        (),
        (),
        object_type="policy",
        object_primary=("operation",),
        object_secondary=("requested_mask", "denied_mask", "capname"),
        requires="apparmor",
    ),
)

#: Record type name -> candidate normalizations (one unless told apart by ``requires``).
RECORD_TYPES: Final[MappingProxyType[str, tuple[Normalization, ...]]] = MappingProxyType(
    {
        **{name: (norm,) for names, norm in _RECORD_GROUPS for name in names},
        "AVC": _AVC,
    }
)
#: A record type without an entry: no action, no category (kept searchable under auditd.*).
RECORD_TYPE_FALLBACK: Final = _n(None, (), ())
#: A SYSCALL record type name without a known syscall: same as the fallback.
SYSCALL_RECORD: Final = "SYSCALL"


def with_types(norm: Normalization, types: tuple[str, ...]) -> Normalization:
    """A copy of ``norm`` with other ECS types (for ``type_by_op``)."""
    return replace(norm, type=types)


def _validate() -> None:
    """Fail at import when the table is inconsistent (a programming error, not bad input)."""
    seen: set[str] = set()
    for names, _norm in _SYSCALL_GROUPS:
        for name in names:
            if name in seen:
                raise ValueError(f"system call {name} declared twice")
            seen.add(name)
    seen.clear()
    for names, _norm in _RECORD_GROUPS:
        for name in names:
            if name in seen:
                raise ValueError(f"record type {name} declared twice")
            seen.add(name)
    every = [n for _, n in _SYSCALL_GROUPS] + [n for _, n in _RECORD_GROUPS] + list(_AVC)
    for norm in every:
        for source, target in norm.mappings:
            if target not in MAPPING_TARGETS:
                raise ValueError(f"{norm.action}: unknown mapping target {target}")
            if source not in SUMMARY_SOURCES and not source.startswith("field:"):
                raise ValueError(f"{norm.action}: unknown mapping source {source}")
        if norm.socket_role not in (None, "source", "destination"):
            raise ValueError(f"{norm.action}: bad socket_role {norm.socket_role}")


_validate()
