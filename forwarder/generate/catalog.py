"""Data tables of the simulated hypervisor: commands people and services run, files the audit
rules watch, network peers, units, cron jobs.  Builders pick from these; nothing here has logic.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Command(NamedTuple):
    """A program and one way it is called."""

    exe: str
    argv: tuple[str, ...]


#: What administrators run through sudo on a hypervisor.
ADMIN_COMMANDS: Final[tuple[Command, ...]] = (
    Command("/usr/bin/virsh", ("virsh", "list", "--all")),
    Command("/usr/bin/virsh", ("virsh", "dominfo", "web01")),
    Command("/usr/bin/virsh", ("virsh", "snapshot-create-as", "db-primary", "before upgrade")),
    Command("/usr/bin/systemctl", ("systemctl", "restart", "libvirtd")),
    Command("/usr/bin/systemctl", ("systemctl", "status", "virtqemud.service")),
    Command("/usr/bin/qemu-img", ("qemu-img", "info", "/var/lib/libvirt/images/web01.qcow2")),
    Command(
        "/usr/bin/qemu-img",
        ("qemu-img", "create", "-f", "qcow2", "/var/lib/libvirt/images/scratch.qcow2", "20G"),
    ),
    Command("/usr/bin/vim", ("vim", "/etc/libvirt/qemu.conf")),
    Command("/usr/bin/cat", ("cat", "/var/log/libvirt/qemu/web01.log")),
    Command("/usr/sbin/ip", ("ip", "-br", "link", "show", "master", "virbr0")),
    Command("/usr/bin/dnf", ("dnf", "-y", "update", "qemu-kvm", "libvirt-daemon")),
    Command("/usr/bin/journalctl", ("journalctl", "-u", "virtqemud", "--since", "1 hour ago")),
    Command("/usr/sbin/ausearch", ("ausearch", "-m", "VIRT_CONTROL", "-ts", "today")),
    Command("/usr/bin/rm", ("rm", "-f", "/var/lib/libvirt/images/old disk.img")),
)

#: What administrators run in their own shell.
USER_COMMANDS: Final[tuple[Command, ...]] = (
    Command("/usr/bin/ls", ("ls", "-la")),
    Command("/usr/bin/ls", ("ls", "--color=auto", "/var/lib/libvirt/images")),
    Command("/usr/bin/grep", ("grep", "-r", "error: internal", "/var/log/libvirt")),
    Command("/usr/bin/top", ("top",)),
    Command("/usr/bin/ssh", ("ssh", "backup01", "df -h /srv")),
    Command("/usr/bin/git", ("git", "-C", "/home/alice/ansible", "pull")),
    Command("/usr/bin/python3.11", ("python3", "/home/alice/bin/vm-report.py", "--format", "csv")),
    Command("/usr/bin/less", ("less", "/etc/libvirt/qemu/web01.xml")),
    Command("/usr/bin/virsh", ("virsh", "-c", "qemu:///system", "domstats", "--list-active")),
)

#: Programs system services start (runner comm, exe, argv, runner role, uid).
SERVICE_COMMANDS: Final[tuple[tuple[str, Command, str, int], ...]] = (
    (
        "systemd",
        Command("/usr/lib/systemd/systemd-hostnamed", ("/usr/lib/systemd/systemd-hostnamed",)),
        "init",
        0,
    ),
    ("systemd", Command("/usr/sbin/chronyd", ("/usr/sbin/chronyd", "-F", "2")), "init", 0),
    (
        "libvirtd",
        Command(
            "/usr/sbin/dnsmasq",
            (
                "/usr/sbin/dnsmasq",
                "--conf-file=/var/lib/libvirt/dnsmasq/default.conf",
                "--leasefile-ro",
                "--dhcp-script=/usr/libexec/libvirt_leaseshelper",
            ),
        ),
        "libvirtd",
        0,
    ),
    (
        "libvirtd",
        Command(
            "/usr/bin/qemu-img",
            ("/usr/bin/qemu-img", "info", "-U", "--output=json", "/var/lib/libvirt/images/base.qcow2"),
        ),
        "libvirtd",
        0,
    ),
    ("libvirtd", Command("/usr/sbin/tc", ("/usr/sbin/tc", "qdisc", "show", "dev", "vnet0")), "libvirtd", 0),
    (
        "systemd",
        Command(
            "/usr/bin/node_exporter",
            ("/usr/bin/node_exporter", "--collector.systemd", "--web.listen-address=:9100"),
        ),
        "service",
        65534,
    ),
)

#: Cron jobs (exe, argv) run as root.
CRON_JOBS: Final[tuple[Command, ...]] = (
    Command("/usr/bin/sh", ("/bin/sh", "-c", "run-parts /etc/cron.hourly")),
    Command("/usr/sbin/logrotate", ("/usr/sbin/logrotate", "/etc/logrotate.conf")),
    Command("/usr/lib64/sa/sa1", ("/usr/lib64/sa/sa1", "1", "1")),
    Command(
        "/usr/bin/sh", ("/bin/sh", "-c", "/usr/local/sbin/vm-backup.sh --all > /var/log/vm-backup.log 2>&1")
    ),
)


class WatchedFile(NamedTuple):
    """A file the audit rules watch: path, mode as the kernel prints it, owner, rule key."""

    path: str
    mode: str
    owner: tuple[int, int]
    key: str


#: Files under ``-w`` watches (``-k identity``, ``-k libvirt-config`` ...).
WATCHED_FILES: Final[tuple[WatchedFile, ...]] = (
    WatchedFile("/etc/shadow", "0100000", (0, 0), "identity"),
    WatchedFile("/etc/passwd", "0100644", (0, 0), "identity"),
    WatchedFile("/etc/sudoers", "0100440", (0, 0), "privileged"),
    WatchedFile("/etc/libvirt/qemu/web01.xml", "0100600", (0, 0), "libvirt-config"),
    WatchedFile("/etc/libvirt/qemu.conf", "0100600", (0, 0), "libvirt-config"),
    WatchedFile("/etc/libvirt/qemu/networks/default.xml", "0100600", (0, 0), "libvirt-config"),
    WatchedFile("/etc/ssh/sshd_config", "0100600", (0, 0), "sshd-config"),
    WatchedFile("/var/lib/libvirt/images/base.qcow2", "0100644", (107, 107), "vm-images"),
    WatchedFile("/var/lib/libvirt/images/ISO Images/virtio-win.iso", "0100644", (107, 107), "vm-images"),
    WatchedFile("/home/alice/.ssh/authorized_keys", "0100600", (1000, 1000), "ssh-keys"),
)

#: Outbound TCP peers: (family, address, port, exe, argv, role, uid).
OUTBOUND_PEERS: Final[tuple[tuple[str, str, int, Command, str, int], ...]] = (
    ("inet", "10.0.0.53", 53, Command("/usr/sbin/chronyd", ("/usr/sbin/chronyd", "-F", "2")), "service", 0),
    (
        "inet",
        "10.0.1.21",
        16514,
        Command("/usr/bin/virsh", ("virsh", "-c", "qemu+tls://kvm02/system", "list")),
        "admin",
        1000,
    ),
    (
        "inet6",
        "2001:db8:0:1::80",
        443,
        Command("/usr/bin/dnf", ("dnf", "makecache", "--timer")),
        "service",
        0,
    ),
    (
        "inet",
        "192.0.2.44",
        443,
        Command("/usr/bin/curl", ("curl", "-sS", "https://mirror.example.net/fedora/")),
        "admin",
        1001,
    ),
    (
        "inet6",
        "2001:db8:10::42",
        22,
        Command("/usr/bin/ssh", ("ssh", "carol@2001:db8:10::42")),
        "admin",
        1002,
    ),
)

#: Unix sockets clients connect to (path, client exe/argv, role).
UNIX_SOCKETS: Final[tuple[tuple[str, Command, str], ...]] = (
    ("/run/libvirt/libvirt-sock", Command("/usr/bin/virsh", ("virsh", "list")), "admin"),
    ("/run/libvirt/virtqemud-sock", Command("/usr/bin/virsh", ("virsh", "domstats")), "admin"),
    ("/run/systemd/journal/socket", Command("/usr/sbin/crond", ("/usr/sbin/crond", "-n")), "cron"),
    ("/var/run/nscd/socket", Command("/usr/sbin/sshd", ("sshd: alice [priv]",)), "sshd"),
)

#: Services systemd starts and stops during the day (unit names).
TRANSIENT_UNITS: Final = (
    "dnf-makecache",
    "systemd-tmpfiles-clean",
    "fstrim",
    "man-db-cache-update",
    "sysstat-collect",
    "libvirt-guests",
    "user-runtime-dir@1000",
    "user@1000",
    "NetworkManager-dispatcher",
)

#: Units started at boot, in order, before the libvirt daemon.
BOOT_UNITS: Final = (
    "systemd-journald",
    "systemd-udevd",
    "auditd",
    "systemd-update-utmp",
    "NetworkManager",
    "chronyd",
    "sshd",
    "crond",
    "virtlogd",
)

#: Kernel modules loaded by admins (name).
MODULES: Final = ("vfio_pci", "vhost_net", "kvm_intel", "nbd", "br_netfilter")

#: Audit rule keys loaded at boot by auditctl/augenrules (CONFIG_CHANGE op=add_rule).
BOOT_RULE_KEYS: Final = (
    "exec",
    "identity",
    "libvirt-config",
    "vm-images",
    "network",
    "modules",
    "privileged",
)

#: Files an unprivileged user is refused (EACCES) when poking around.
FORBIDDEN_FILES: Final = ("/etc/shadow", "/var/log/audit/audit.log", "/etc/libvirt/qemu/web01.xml")

#: Long shell scripts passed with ``sh -c`` (the kernel splits the argument into aN[k] chunks).
LONG_SCRIPT_LINE: Final = 'for vm in $(virsh list --name); do virsh domblkstat "$vm" --human; done; '

#: SSH brute-force sources and the account names they try.
ATTACKERS: Final = ("203.0.113.9", "198.51.100.77", "2001:db8:bad::7")
GUESSED_ACCOUNTS: Final = ("root", "admin", "oracle", "test", "ubuntu")
