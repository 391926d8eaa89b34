"""Shared building blocks of the generator: record drafts, identities, security labels, host state.

A *draft* is a record without its header: ``(type name, body, enrichment)``.  The scenario gives
every event its ``msg=audit(SEC.MSEC:SERIAL)`` header when it writes it out, so builders never
deal with clocks or serial numbers.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Final, NamedTuple

#: ``(uid_t)-1``: the audit "unset" value of auid and ses.
UNSET: Final = 4294967295


class Draft(NamedTuple):
    """One record without header.

    Attributes:
        type: record type name (``SYSCALL``).
        body: the text after ``): ``.
        enrichment: auditd's ENRICHED interpretations (written after 0x1d), ``""`` for none.
    """

    type: str
    body: str
    enrichment: str = ""


#: One event: its records in kernel/daemon order.
EventDraft = list[Draft]


class Step(NamedTuple):
    """An event of an activity and how long after the previous step it happens (milliseconds)."""

    delay_ms: int
    records: EventDraft


#: Accounts of the simulated hypervisor (uid -> name), as ``/etc/passwd`` resolves them.
USER_NAMES: Final[dict[int, str]] = {
    0: "root",
    36: "kvm",
    107: "qemu",
    64055: "libvirt-qemu",
    990: "dnsmasq",
    1000: "alice",
    1001: "bob",
    1002: "carol",
    65534: "nobody",
}

#: Groups (gid -> name).
GROUP_NAMES: Final[dict[int, str]] = {
    0: "root",
    4: "adm",
    36: "kvm",
    42: "shadow",
    107: "qemu",
    64055: "libvirt-qemu",
    990: "dnsmasq",
    1000: "alice",
    1001: "bob",
    1002: "carol",
    65534: "nogroup",
}

#: Administrators who log in and run sudo (name, uid, workstation address).
ADMINS: Final[tuple[tuple[str, int, str], ...]] = (
    ("alice", 1000, "10.0.0.5"),
    ("bob", 1001, "10.0.0.17"),
    ("carol", 1002, "2001:db8:10::42"),
)


def user_name(uid: int) -> str:
    """auparse's interpretation of a uid: name, ``unset`` or ``unknown(N)``."""
    if uid == UNSET:
        return "unset"
    return USER_NAMES.get(uid, f"unknown({uid})")


def group_name(gid: int) -> str:
    """auparse's interpretation of a gid: name, ``unset`` or ``unknown(N)``."""
    if gid == UNSET:
        return "unset"
    return GROUP_NAMES.get(gid, f"unknown({gid})")


#: Process labels per security model and role.  AppArmor labels of confined processes carry the
#: mode in parentheses (the kernel writes them with a space); ``None`` means no ``subj=`` field.
SUBJECTS: Final[dict[str, dict[str, str]]] = {
    "selinux": {
        "admin": "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023",
        "sshd": "system_u:system_r:sshd_t:s0-s0:c0.c1023",
        "init": "system_u:system_r:init_t:s0",
        "auditd": "system_u:system_r:auditd_t:s0",
        "cron": "system_u:system_r:crond_t:s0-s0:c0.c1023",
        "cronjob": "system_u:system_r:unconfined_t:s0-s0:c0.c1023",
        "libvirtd": "system_u:system_r:virtd_t:s0-s0:c0.c1023",
        "virtqemud": "system_u:system_r:virtqemud_t:s0-s0:c0.c1023",
        "service": "system_u:system_r:unconfined_service_t:s0",
        "dnsmasq": "system_u:system_r:dnsmasq_t:s0-s0:c0.c1023",
        "logrotate": "system_u:system_r:logrotate_t:s0-s0:c0.c1023",
        "rsync": "system_u:system_r:rsync_t:s0",
        "udev": "system_u:system_r:udev_t:s0-s0:c0.c1023",
        "insmod": "unconfined_u:unconfined_r:insmod_t:s0-s0:c0.c1023",
    },
    "apparmor": {
        "admin": "unconfined",
        "sshd": "unconfined",
        "init": "unconfined",
        "auditd": "unconfined",
        "cron": "unconfined",
        "cronjob": "unconfined",
        "libvirtd": "libvirtd (enforce)",
        "virtqemud": "virtqemud (enforce)",
        "service": "unconfined",
        "dnsmasq": "libvirt_leaseshelper (enforce)",
        "logrotate": "unconfined",
        "rsync": "unconfined",
        "udev": "unconfined",
        "insmod": "unconfined",
    },
}

#: SELinux file types of the paths the generator touches (prefix -> type); first match wins.
SELINUX_FILE_TYPES: Final[tuple[tuple[str, str], ...]] = (
    ("/etc/shadow", "shadow_t"),
    ("/etc/passwd", "passwd_file_t"),
    ("/etc/sudoers", "etc_t"),
    ("/etc/libvirt", "virt_etc_t"),
    ("/etc/ssh", "sshd_key_t"),
    ("/var/lib/libvirt/images", "virt_image_t"),
    ("/var/lib/libvirt/qemu", "qemu_var_run_t"),
    ("/var/log/libvirt", "virt_log_t"),
    ("/var/log", "var_log_t"),
    ("/run/libvirt", "virt_var_run_t"),
    ("/home", "user_home_t"),
    ("/root", "admin_home_t"),
    ("/dev", "device_t"),
    ("/usr/lib/modules", "modules_object_t"),
    ("/usr/libexec/qemu-kvm", "qemu_exec_t"),
    ("/usr/sbin/libvirtd", "virtd_exec_t"),
    ("/usr", "bin_t"),
    ("/lib64", "ld_so_t"),
    ("/etc", "etc_t"),
)


@dataclass(frozen=True, slots=True)
class Security:
    """The host's security model: labels of processes and files.

    Attributes:
        model: ``selinux``, ``apparmor``, ``dac`` or ``none``.
    """

    model: str

    def subject(self, role: str) -> str | None:
        """Label of a process of ``role``, or ``None`` when there is no LSM."""
        table = SUBJECTS.get(self.model)
        return None if table is None else table[role]

    def file_object(self, path: str) -> str | None:
        """SELinux label of ``path`` (``obj=`` of PATH records); ``None`` on other hosts."""
        if self.model != "selinux":
            return None
        for prefix, setype in SELINUX_FILE_TYPES:
            if path.startswith(prefix):
                user = "unconfined_u" if prefix in ("/home", "/root") else "system_u"
                return f"{user}:object_r:{setype}:s0"
        return "system_u:object_r:default_t:s0"


@dataclass(slots=True)
class Actor:
    """The task a kernel record describes (the credentials part of SYSCALL)."""

    pid: int
    ppid: int
    uid: int
    gid: int
    auid: int
    ses: int
    comm: str
    exe: str
    subj: str | None
    tty: str = "(none)"
    euid: int | None = None
    egid: int | None = None

    @property
    def effective_uid(self) -> int:
        return self.uid if self.euid is None else self.euid

    @property
    def effective_gid(self) -> int:
        return self.gid if self.egid is None else self.egid


def inode_of(path: str) -> int:
    """A stable inode number for ``path`` (same path, same inode, no randomness consumed)."""
    return 131072 + zlib.crc32(path.encode("utf-8")) % 8_000_000


#: Linux pid_max default on 64-bit hosts with many CPUs (``/proc/sys/kernel/pid_max``).
PID_MAX: Final = 4_194_304


@dataclass(slots=True)
class HostState:
    """What the generated host knows at a moment: its randomness, labels and counters.

    Attributes:
        rng: the only source of randomness (seeded; never the global ``random``).
        security: labels of this host.
        next_pid: the next process id the kernel hands out.
        session: the next audit session id.
        kernel: ``uname -r`` of the current boot.
    """

    rng: random.Random
    security: Security
    kernel: str
    next_pid: int = 300
    session: int = 1
    tap_index: int = 0
    domain_id: int = 0
    pty_index: int = 0

    def new_pid(self) -> int:
        """A fresh pid: pids grow by a few at a time (other tasks fork too) and wrap at pid_max."""
        pid = self.next_pid
        self.next_pid += self.rng.randint(1, 9)
        if self.next_pid >= PID_MAX:
            self.next_pid = 300
        return pid

    def new_session(self) -> int:
        """A fresh audit session id (they only grow within one boot)."""
        ses = self.session
        self.session += 1
        return ses

    def new_tty(self) -> str:
        """The next pseudo terminal, ``pts0``, ``pts1`` ... (wrapping like a busy host)."""
        tty = f"pts{self.pty_index}"
        self.pty_index = (self.pty_index + 1) % 12
        return tty

    def pointer(self, stack: bool = False) -> str:
        """A plausible user-space address for a0..a3 (heap ``55..`` or stack ``7ff..``)."""
        if stack:
            return f"7ff{self.rng.getrandbits(36):09x}"
        return f"55{self.rng.getrandbits(40):010x}"
