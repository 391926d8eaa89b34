"""libvirt guests and their audit records (``docs/virt-audit.md`` §1): VIRT_MACHINE_ID, VIRT_RESOURCE,
VIRT_CONTROL, plus the kernel records a guest's life causes (tap promiscuous mode, qemu's execve
and image opens, svirt/AppArmor denials, qemu crashes).

Three record styles (``libvirt_style``):

* ``modern``: current ``domain_audit.c`` - ``virt=``, ``vm-pid=`` (0 after a stop or failed start),
  one MACHINE_ID per security label with ``model=``, every resource kind.
* ``legacy``: the same layout as written by 0.9.x-5.x releases: ``vm-pid=-1`` after a stop, no
  tpm/shmem/evdev/iothread records.
* ``old``: libvirt 0.8.x ``qemu_audit.c`` - no ``virt=``/``vm-pid=``, MACHINE_ID without ``model=``,
  nets as ``old-net='?' new-net='MAC'``, cgroup ``item=`` without ``cgroup=``, hostdev ``type=``.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Final

from forwarder.generate.encoding import encode_nv, untrusted
from forwarder.generate.kernel import (
    abend_record,
    apparmor_avc_event,
    execve_event,
    file_event,
    kill_event,
    network_event,
    promiscuous_event,
    selinux_avc_event,
)
from forwarder.generate.model import UNSET, Actor, Draft, HostState, Step
from forwarder.generate.userspace import Sender, user_message

#: Domain type written in ``virt=``.
VIRT_TYPE: Final = "kvm"

#: Images live here (the default storage pool).
IMAGE_DIR: Final = "/var/lib/libvirt/images"

#: An install medium whose path has a space, so ``new-disk=`` is hex (as in ``docs/virt-audit.md`` §1.7).
INSTALL_ISO: Final = "/var/lib/libvirt/images/ISO Images/rhel-9.3-x86_64-boot.iso"

#: Device nodes every QEMU guest is allowed in its devices cgroup: (path, rdev as ``%02X:%02X``).
CGROUP_DEFAULT_DEVICES: Final[tuple[tuple[str, str], ...]] = (
    ("/dev/null", "01:03"),
    ("/dev/full", "01:07"),
    ("/dev/zero", "01:05"),
    ("/dev/random", "01:08"),
    ("/dev/urandom", "01:09"),
    ("/dev/ptmx", "05:02"),
    ("/dev/kvm", "0A:E8"),
)

#: The tun clone device and vhost-net: (path, rdev).
TUN_DEVICE: Final = ("/dev/net/tun", "0A:C8")
VHOST_NET_DEVICE: Final = ("/dev/vhost-net", "0A:EE")

#: ``maj=`` of the pty category is printed ``%02X``: major 136 -> ``88``.
PTY_MAJOR_HEX: Final = "88"

#: Guest names.  Plain ones are written ``vm="name"``; the others are hex-encoded (space, quote,
#: non-ASCII) per ``docs/virt-audit.md`` §1.2.
PLAIN_NAMES: Final = (
    "web01",
    "web02",
    "db-primary",
    "db-replica",
    "build-agent",
    "mail",
    "dns1",
    "k8s-node-1",
    "k8s-node-2",
    "monitoring",
    "jenkins",
    "gitlab",
    "ldap",
    "proxy",
    "win2022-dc",
    "fedora39",
)
SPACED_NAMES: Final = ("my test vm", "Windows Server 2022", "ci runner 7", "Ubuntu 22.04 desktop")
NON_ASCII_NAMES: Final = ("win11-Büro", "テスト-vm", "fileserver-Zürich", "dev-Ωmega")
QUOTED_NAMES: Final = ('lab "blue"', 'web "staging"')

#: Memory sizes (KiB) and vCPU counts of guests.
MEMORY_SIZES_KIB: Final = (1048576, 2097152, 4194304, 8388608, 16777216)
VCPU_COUNTS: Final = (1, 2, 2, 4, 8)

#: PCI functions passed through to guests (an SR-IOV NIC's virtual functions).
PCI_DEVICES: Final = ("0000:3b:00.1", "0000:3b:00.2", "0000:3b:00.3", "0000:af:00.0")


@dataclass(slots=True)
class Guest:
    """One libvirt domain: its definition and its run-time state."""

    uuid: str
    name: str
    disks: list[str]
    block_disks: list[tuple[str, str]]
    macs: list[str]
    filesystem: str | None = None
    channel: bool = True
    rng_device: bool = True
    tpm: bool = False
    shmem: bool = False
    evdev: str | None = None
    hostdev: str | None = None
    cdrom: str | None = None
    mem_kib: int = 2097152
    vcpus: int = 2
    iothreads: int = 0
    running: bool = False
    vm_pid: int = 0
    mcs: tuple[int, int] | None = None
    domain_id: int = 0
    taps: list[str] = field(default_factory=list)
    attached: list[str] = field(default_factory=list)
    saved: bool = False
    away: bool = False
    started_ms: int = 0


@dataclass(slots=True)
class Libvirtd:
    """The libvirt daemon of one host boot (``libvirtd`` or the modular ``virtqemud``)."""

    pid: int
    exe: str
    role: str
    subj: str | None
    style: str
    security: str
    qemu_uid: int
    qemu_exe: str

    @property
    def actor(self) -> Actor:
        comm = self.exe.rsplit("/", 1)[-1][:15]
        return Actor(self.pid, 1, 0, 0, UNSET, UNSET, comm, self.exe, self.subj)

    def message(self, record_type: str, text: str, success: bool = True) -> Draft:
        """A libvirt audit message: ``TEXT exe=... hostname=? addr=? terminal=? res=...``."""
        sender = Sender(self.pid, 0, UNSET, UNSET, self.subj)
        return user_message(
            record_type,
            sender,
            f"{text} exe={untrusted(self.exe)} hostname=? addr=? terminal=?",
            success=success,
        )


def make_guests(host: HostState, count: int) -> list[Guest]:
    """The host's guests: names with every encoding case, two guests sharing a name.

    Guest 1 has a name with spaces, guest 2 a non-ASCII name, guest 3 the same name as guest 0
    (another uuid), guest 4 a name with a double quote; later ones are plain.
    """
    rng = host.rng
    guests: list[Guest] = []
    plain = list(PLAIN_NAMES)
    rng.shuffle(plain)
    for index in range(count):
        if index == 1:
            name = rng.choice(SPACED_NAMES)
        elif index == 2:
            name = rng.choice(NON_ASCII_NAMES)
        elif index == 3:
            name = guests[0].name
        elif index == 4:
            name = rng.choice(QUOTED_NAMES)
        else:
            name = plain[index % len(plain)]
            if index >= len(plain):
                name = f"{name}-{index}"
        guests.append(_new_guest(host, index, name))
    return guests


def _new_guest(host: HostState, index: int, name: str) -> Guest:
    rng = host.rng
    uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
    stem = name if index != 3 else f"{name}-{uuid[:8]}"
    disks = [f"{IMAGE_DIR}/{stem}.qcow2"]
    block: list[tuple[str, str]] = []
    if rng.random() < 0.3:
        volume = re.sub(r"[^A-Za-z0-9_-]", "", name) or "vm"
        block.append((f"/dev/vg_vms/{volume}-data", f"FD:{index + 4:02X}"))
    macs = [_mac(host) for _ in range(1 if rng.random() < 0.7 else 2)]
    return Guest(
        uuid=uuid,
        name=name,
        disks=disks,
        block_disks=block,
        macs=macs,
        filesystem="/srv/share/" + (re.sub(r"[^A-Za-z0-9_-]", "", name) or "vm")
        if rng.random() < 0.2
        else None,
        channel=rng.random() < 0.8,
        rng_device=rng.random() < 0.7,
        tpm=index == 2 or rng.random() < 0.2,
        shmem=rng.random() < 0.1,
        evdev="/dev/input/event3" if rng.random() < 0.1 else None,
        hostdev=PCI_DEVICES[index % len(PCI_DEVICES)] if index == 0 or rng.random() < 0.15 else None,
        cdrom=INSTALL_ISO if index in (1, 2) or rng.random() < 0.2 else None,
        mem_kib=rng.choice(MEMORY_SIZES_KIB),
        vcpus=rng.choice(VCPU_COUNTS),
        iothreads=rng.choice((0, 0, 1, 2)),
    )


def _mac(host: HostState) -> str:
    tail = host.rng.getrandbits(24)
    return f"52:54:00:{tail >> 16:02x}:{(tail >> 8) & 0xFF:02x}:{tail & 0xFF:02x}"


# ---------------------------------------------------------------- record texts


def _vm(guest: Guest) -> str:
    return f"{encode_nv('vm', guest.name)} uuid={guest.uuid}"


def _virt(daemon: Libvirtd) -> str:
    return "" if daemon.style == "old" else f"virt={VIRT_TYPE} "


def control_record(daemon: Libvirtd, guest: Guest, op: str, reason: str, success: bool = True) -> Draft:
    """VIRT_CONTROL op=start|stop (``vm-pid`` is reset to 0 / -1 after a stop or a failed start)."""
    text = f"{_virt(daemon)}op={op} reason={reason} {_vm(guest)}"
    if daemon.style != "old":
        running_pid = op == "start" and success
        reset = "-1" if daemon.style == "legacy" else "0"
        text += f" vm-pid={guest.vm_pid if running_pid else reset}"
    return daemon.message("VIRT_CONTROL", text, success)


def machine_id_records(daemon: Libvirtd, guest: Guest) -> list[Draft]:
    """VIRT_MACHINE_ID, one per security label (SELinux/AppArmor first, then DAC)."""
    labels: list[tuple[str, str, str]] = []
    if daemon.security == "selinux" and guest.mcs is not None:
        level = f"s0:c{guest.mcs[0]},c{guest.mcs[1]}"
        labels.append(
            ("selinux", f"system_u:system_r:svirt_t:{level}", f"system_u:object_r:svirt_image_t:{level}")
        )
    elif daemon.security == "apparmor":
        labels.append(("apparmor", f"libvirt-{guest.uuid}", f"libvirt-{guest.uuid}"))
    if daemon.style == "old":
        return [
            daemon.message("VIRT_MACHINE_ID", f"{_vm(guest)} vm-ctx={vm_ctx} img-ctx={img_ctx}")
            for _, vm_ctx, img_ctx in labels
        ]
    if daemon.security != "none":
        dac = f"+{daemon.qemu_uid}:+{daemon.qemu_uid}"
        labels.append(("dac", dac, dac))
    return [
        daemon.message(
            "VIRT_MACHINE_ID",
            f"{_virt(daemon)}{_vm(guest)} vm-ctx={vm_ctx} img-ctx={img_ctx} model={model}",
        )
        for model, vm_ctx, img_ctx in labels
    ]


def scope_path(guest: Guest) -> str:
    """The guest's cgroup directory (systemd machine scope, ``-`` escaped as ``\\x2d``)."""
    valid = re.sub(r"[^A-Za-z0-9_.-]", "", guest.name)[:20]
    machine = f"qemu-{guest.domain_id}-{valid}".replace("-", "\\x2d")
    return f"/sys/fs/cgroup/machine.slice/machine-{machine}.scope/libvirt/"


def cgroup_record(daemon: Libvirtd, guest: Guest, reason: str, detail: str) -> Draft:
    """VIRT_RESOURCE resrc=cgroup.  ``detail`` starts with the class: ``all``, ``major ...``, ``path ...``."""
    if daemon.style == "old":
        text = f"resrc=cgroup reason={reason} {_vm(guest)} item={detail}"
    else:
        cgroup = encode_nv("cgroup", scope_path(guest))
        text = f"{_virt(daemon)}resrc=cgroup reason={reason} {_vm(guest)} {cgroup} class={detail}"
    return daemon.message("VIRT_RESOURCE", text)


def device_record(
    daemon: Libvirtd,
    guest: Guest,
    resrc: str,
    reason: str,
    old: str | None,
    new: str | None,
    success: bool = True,
) -> Draft:
    """VIRT_RESOURCE of a generic device (disk fs net chardev rng): ``old-T=`` ``new-T=``."""
    if daemon.style == "old" and resrc == "net":
        pair = f"old-net='{old or '?'}' new-net='{new or '?'}'"
    else:
        pair = f"{encode_nv('old-' + resrc, old)} {encode_nv('new-' + resrc, new)}"
    text = f"{_virt(daemon)}resrc={resrc} reason={reason} {_vm(guest)} {pair}"
    return daemon.message("VIRT_RESOURCE", text, success)


def scalar_record(
    daemon: Libvirtd, guest: Guest, resrc: str, reason: str, old: int, new: int, success: bool = True
) -> Draft:
    """VIRT_RESOURCE resrc=mem|vcpu|iothread with ``%lld`` numbers."""
    text = f"{_virt(daemon)}resrc={resrc} reason={reason} {_vm(guest)} old-{resrc}={old} new-{resrc}={new}"
    return daemon.message("VIRT_RESOURCE", text, success)


def extra_record(daemon: Libvirtd, guest: Guest, resrc: str, reason: str, tail: str) -> Draft:
    """VIRT_RESOURCE whose fields after ``uuid=`` are given (dev, tpm, shmem, evdev, net open)."""
    return daemon.message(
        "VIRT_RESOURCE", f"{_virt(daemon)}resrc={resrc} reason={reason} {_vm(guest)} {tail}"
    )


def hostdev_tail(daemon: Libvirtd, address: str) -> str:
    """``bus=pci device=...`` (``type=pci`` in the old style)."""
    bus = "type" if daemon.style == "old" else "bus"
    return f"{bus}=pci {encode_nv('device', address)}"


def net_open_record(daemon: Libvirtd, guest: Guest, mac: str, device: tuple[str, str]) -> Draft:
    """``resrc=net reason=open net=MAC path=DEV rdev=MM:mm`` (tap or vhost-net fd opened)."""
    return extra_record(
        daemon, guest, "net", "open", f"net={mac} {encode_nv('path', device[0])} rdev={device[1]}"
    )


# ---------------------------------------------------------------- guest processes


def qemu_actor(daemon: Libvirtd, guest: Guest) -> Actor:
    """The guest's qemu process (runs as the qemu user with the guest's label)."""
    if daemon.security == "selinux" and guest.mcs is not None:
        subj: str | None = f"system_u:system_r:svirt_t:s0:c{guest.mcs[0]},c{guest.mcs[1]}"
    elif daemon.security == "apparmor":
        subj = f"libvirt-{guest.uuid} (enforce)"
    else:
        subj = None
    comm = daemon.qemu_exe.rsplit("/", 1)[-1][:15]
    uid = daemon.qemu_uid
    return Actor(guest.vm_pid, daemon.pid, uid, uid, UNSET, UNSET, comm, daemon.qemu_exe, subj)


def qemu_argv(daemon: Libvirtd, guest: Guest) -> list[str]:
    """qemu's command line as libvirt builds it (JSON ``-blockdev``/``-device`` args contain quotes)."""
    domain_dir = f"/var/lib/libvirt/qemu/domain-{guest.domain_id}-{guest.name[:20]}"
    argv = [
        daemon.qemu_exe,
        "-name",
        f"guest={guest.name},debug-threads=on",
        "-S",
        "-object",
        '{"qom-type":"secret","id":"masterKey0","format":"raw","file":"' + domain_dir + '/master-key.aes"}',
        "-machine",
        "pc-q35-8.2,usb=off,vmport=off,dump-guest-core=off,memory-backend=pc.ram",
        "-accel",
        "kvm",
        "-cpu",
        "host,migratable=on",
        "-m",
        f"size={guest.mem_kib}k",
        "-object",
        '{"qom-type":"memory-backend-ram","id":"pc.ram","size":' + str(guest.mem_kib * 1024) + "}",
        "-overcommit",
        "mem-lock=off",
        "-smp",
        f"{guest.vcpus},sockets={guest.vcpus},cores=1,threads=1",
        "-uuid",
        guest.uuid,
        "-no-user-config",
        "-nodefaults",
        "-chardev",
        "socket,id=charmonitor,fd=31,server=on,wait=off",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control",
        "-rtc",
        "base=utc,driftfix=slew",
        "-no-shutdown",
        "-boot",
        "strict=on",
    ]
    for index, disk in enumerate(guest.disks):
        argv += [
            "-blockdev",
            '{"driver":"file","filename":"' + disk + f'","node-name":"libvirt-{index + 1}-storage"}}',
        ]
    for index, mac in enumerate(guest.macs):
        argv += [
            "-netdev",
            f'{{"type":"tap","fd":"{33 + 2 * index}","vhost":true,"vhostfd":"{34 + 2 * index}",'
            f'"id":"hostnet{index}"}}',
            "-device",
            f'{{"driver":"virtio-net-pci","netdev":"hostnet{index}","id":"net{index}","mac":"{mac}"}}',
        ]
    argv += [
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-msg",
        "timestamp=on",
    ]
    return argv


# ---------------------------------------------------------------- activities


def start_steps(
    daemon: Libvirtd, host: HostState, guest: Guest, reason: str, *, fail: bool = False
) -> list[Step]:
    """The records of starting ``guest`` (``docs/virt-audit.md`` §1.5 "Typical start").

    MACHINE_ID(s) -> cgroup deny all / allow ... -> net open (tap, vhost-net) -> ANOM_PROMISCUOUS
    (+SYSCALL) per tap -> qemu's execve and image opens -> resource records -> VIRT_CONTROL start.
    A failed start stops before qemu runs and ends with ``res=failed``.
    """
    rng = host.rng
    host.domain_id += 1
    guest.domain_id = host.domain_id
    if daemon.security == "selinux":
        low = rng.randint(0, 1022)
        guest.mcs = (low, rng.randint(low + 1, 1023))
    guest.vm_pid = host.new_pid()
    steps: list[Step] = [Step(rng.randint(0, 3), [record]) for record in machine_id_records(daemon, guest)]
    steps.append(Step(rng.randint(5, 60), [cgroup_record(daemon, guest, "deny", "all")]))
    devices = list(CGROUP_DEFAULT_DEVICES) + guest.block_disks
    if guest.hostdev:
        devices.append((f"/dev/vfio/{rng.randint(20, 90)}", f"F3:{rng.randint(1, 40):02X}"))
    for path, rdev in devices:
        steps.append(
            Step(
                rng.randint(0, 4),
                [cgroup_record(daemon, guest, "allow", f"path {encode_nv('path', path)} rdev={rdev} acl=rw")],
            )
        )
    steps.append(
        Step(
            rng.randint(0, 4),
            [cgroup_record(daemon, guest, "allow", f"major category=pty maj={PTY_MAJOR_HEX} acl=rw")],
        )
    )
    if fail:
        steps += _resource_steps(daemon, host, guest, "start")
        steps.append(
            Step(rng.randint(100, 2000), [control_record(daemon, guest, "start", reason, success=False)])
        )
        guest.running = False
        return steps
    guest.taps = []
    for mac in guest.macs:
        tap = f"vnet{host.tap_index}"
        host.tap_index += 1
        guest.taps.append(tap)
        if daemon.style != "old":
            steps.append(Step(rng.randint(5, 40), [net_open_record(daemon, guest, mac, TUN_DEVICE)]))
            steps.append(Step(rng.randint(0, 3), [net_open_record(daemon, guest, mac, VHOST_NET_DEVICE)]))
        steps.append(
            Step(
                rng.randint(5, 30),
                promiscuous_event(host, daemon.actor, tap, [daemon.exe, "--timeout", "120"]),
            )
        )
    qemu = qemu_actor(daemon, guest)
    steps.append(
        Step(rng.randint(10, 80), execve_event(host, qemu, qemu_argv(daemon, guest), "/", keys=("exec",)))
    )
    for disk in guest.disks:
        steps.append(
            Step(
                rng.randint(20, 200),
                file_event(
                    host,
                    qemu,
                    "open",
                    disk,
                    cwd="/",
                    argv=qemu_argv(daemon, guest),
                    owner=(daemon.qemu_uid, daemon.qemu_uid),
                    keys=("vm-images",),
                ),
            )
        )
    steps += _resource_steps(daemon, host, guest, "start")
    steps.append(Step(rng.randint(50, 900), [control_record(daemon, guest, "start", reason)]))
    guest.running = True
    guest.saved = False
    guest.away = False
    return steps


def _resource_steps(daemon: Libvirtd, host: HostState, guest: Guest, reason: str) -> list[Step]:
    """``virDomainAuditStart`` order: disks, fs, nets, hostdevs, chardevs, rng, tpm, shmem, input,
    mem, vcpu, iothreads.  Old and legacy releases lack the later kinds."""
    rng = host.rng
    records: list[Draft] = []
    for disk in [*guest.disks, *(path for path, _ in guest.block_disks), *guest.attached]:
        records.append(device_record(daemon, guest, "disk", reason, None, disk))
    if guest.cdrom:
        records.append(device_record(daemon, guest, "disk", reason, None, guest.cdrom))
    if guest.filesystem and daemon.style != "old":
        records.append(device_record(daemon, guest, "fs", reason, None, guest.filesystem))
    for mac in guest.macs:
        records.append(device_record(daemon, guest, "net", reason, None, mac))
    if guest.hostdev:
        records.append(extra_record(daemon, guest, "dev", reason, hostdev_tail(daemon, guest.hostdev)))
    if daemon.style != "old":
        if guest.channel:
            channel = (
                f"/var/lib/libvirt/qemu/channel/target/domain-{guest.domain_id}-{guest.name[:20]}"
                "/org.qemu.guest_agent.0"
            )
            records.append(device_record(daemon, guest, "chardev", reason, None, channel))
        if guest.rng_device:
            records.append(device_record(daemon, guest, "rng", reason, None, "/dev/urandom"))
    if daemon.style == "modern":
        if guest.tpm:
            sock = f"/run/libvirt/qemu/swtpm/{guest.domain_id}-{guest.name[:20]}-swtpm.sock"
            records.append(extra_record(daemon, guest, "tpm-emulator", reason, encode_nv("device", sock)))
        if guest.shmem:
            records.append(
                extra_record(daemon, guest, "shmem", reason, "size=4194304 path=/dev/shm/ivshmem0")
            )
        if guest.evdev:
            records.append(extra_record(daemon, guest, "evdev", reason, f"path={guest.evdev}"))
    if daemon.style != "old":
        records.append(scalar_record(daemon, guest, "mem", reason, 0, guest.mem_kib))
        records.append(scalar_record(daemon, guest, "vcpu", reason, 0, guest.vcpus))
        if guest.iothreads and daemon.style == "modern":
            records.append(scalar_record(daemon, guest, "iothread", reason, 0, guest.iothreads))
    return [Step(rng.randint(0, 3), [record]) for record in records]


#: Stop reasons and how often they happen, given a running guest.
STOP_REASONS: Final[tuple[tuple[str, float], ...]] = (
    ("shutdown", 0.45),
    ("destroyed", 0.2),
    ("failed", 0.08),
    ("crashed", 0.04),
    ("saved", 0.1),
    ("migrated", 0.13),
)


def stop_steps(daemon: Libvirtd, host: HostState, guest: Guest, reason: str) -> list[Step]:
    """Stopping a running guest; ``destroyed`` kills qemu first, ``failed`` follows its crash."""
    rng = host.rng
    qemu = qemu_actor(daemon, guest)
    steps: list[Step] = []
    if reason == "destroyed":
        steps.append(
            Step(
                rng.randint(100, 2000),
                kill_event(host, daemon.actor, qemu, 15, [daemon.exe, "--timeout", "120"]),
            )
        )
    elif reason == "failed":
        steps.append(Step(rng.randint(100, 2000), [abend_record(qemu, rng.choice((6, 11, 11)))]))
    elif reason == "migrated":
        peer = rng.choice(("10.0.1.21", "10.0.1.22", "10.0.1.23"))
        steps.append(
            Step(
                rng.randint(100, 2000),
                network_event(
                    host,
                    qemu,
                    "connect",
                    "inet",
                    peer,
                    rng.randint(49152, 49215),
                    argv=qemu_argv(daemon, guest),
                    exit_code=-115,
                ),
            )
        )
    steps.append(
        Step(
            rng.randint(50, 3000) if reason != "migrated" else rng.randint(5000, 60000),
            [control_record(daemon, guest, "stop", reason)],
        )
    )
    guest.running = False
    guest.saved = reason == "saved"
    guest.away = reason == "migrated"
    guest.vm_pid = 0
    guest.taps = []
    return steps


def hotplug_steps(daemon: Libvirtd, host: HostState, guest: Guest) -> list[Step]:
    """One hot-plug on a running guest: disk/net attach or detach (sometimes a failed detach),
    a cdrom media change, a balloon (mem) or vcpu update."""
    rng = host.rng
    delay = rng.randint(200, 3000)
    choice = rng.random()
    if choice < 0.3:
        if guest.attached and rng.random() < 0.6:
            disk = guest.attached[-1]
            failed = rng.random() < 0.25
            if not failed:
                guest.attached.pop()
            return [
                Step(delay, [device_record(daemon, guest, "disk", "detach", disk, None, success=not failed)])
            ]
        disk = f"{IMAGE_DIR}/{guest.uuid[:8]}-scratch{len(guest.attached)}.qcow2"
        guest.attached.append(disk)
        qemu = qemu_actor(daemon, guest)
        return [
            Step(delay, [device_record(daemon, guest, "disk", "attach", None, disk)]),
            Step(
                rng.randint(5, 60),
                file_event(
                    host,
                    qemu,
                    "open",
                    disk,
                    cwd="/",
                    argv=qemu_argv(daemon, guest),
                    owner=(daemon.qemu_uid, daemon.qemu_uid),
                    keys=("vm-images",),
                ),
            ),
        ]
    if choice < 0.45:
        mac = _mac(host)
        tap = f"vnet{host.tap_index}"
        host.tap_index += 1
        steps = []
        if daemon.style != "old":
            steps.append(Step(delay, [net_open_record(daemon, guest, mac, TUN_DEVICE)]))
            steps.append(Step(rng.randint(0, 3), [net_open_record(daemon, guest, mac, VHOST_NET_DEVICE)]))
        steps.append(
            Step(
                rng.randint(5, 30),
                promiscuous_event(host, daemon.actor, tap, [daemon.exe, "--timeout", "120"]),
            )
        )
        steps.append(Step(rng.randint(5, 90), [device_record(daemon, guest, "net", "attach", None, mac)]))
        steps.append(
            Step(rng.randint(10000, 600000), [device_record(daemon, guest, "net", "detach", mac, None)])
        )
        return steps
    if choice < 0.6 and guest.cdrom is not None:
        new = f"{IMAGE_DIR}/ISO Images/virtio-win-0.1.{rng.randint(200, 250)}.iso"
        old, guest.cdrom = guest.cdrom, new
        return [Step(delay, [device_record(daemon, guest, "disk", "update", old, new)])]
    if choice < 0.8 and daemon.style != "old":
        new_mem = max(524288, guest.mem_kib + rng.choice((-1, 1)) * 524288)
        old_mem, guest.mem_kib = guest.mem_kib, new_mem
        return [Step(delay, [scalar_record(daemon, guest, "mem", "update", old_mem, new_mem)])]
    if daemon.style != "old":
        new_vcpus = max(1, guest.vcpus + rng.choice((-1, 1, 2)))
        failed = new_vcpus > 8
        record = scalar_record(daemon, guest, "vcpu", "update", guest.vcpus, new_vcpus, success=not failed)
        if not failed:
            guest.vcpus = new_vcpus
        return [Step(delay, [record])]
    return []


def guest_io_steps(daemon: Libvirtd, host: HostState, guest: Guest) -> list[Step]:
    """qemu reopening one of its images (e.g. after a block job): an openat with its PATH."""
    qemu = qemu_actor(daemon, guest)
    disk = host.rng.choice(guest.disks)
    return [
        Step(
            host.rng.randint(100, 5000),
            file_event(
                host,
                qemu,
                "open",
                disk,
                cwd="/",
                argv=qemu_argv(daemon, guest),
                owner=(daemon.qemu_uid, daemon.qemu_uid),
                keys=("vm-images",),
            ),
        )
    ]


#: Files a confined qemu tries to open and is denied: (path, SELinux target context, class).
QEMU_DENIED_FILES: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "/home/alice/Downloads/Fedora-Workstation-Live-x86_64-39.iso",
        "unconfined_u:object_r:user_home_t:s0",
        "file",
    ),
    ("/home/bob/vm images/win10.qcow2", "unconfined_u:object_r:user_home_t:s0", "file"),
    ("/dev/sdb", "system_u:object_r:fixed_disk_device_t:s0", "blk_file"),
    ("/srv/scratch/guest-agent.log", "system_u:object_r:var_t:s0", "file"),
)


def denial_steps(daemon: Libvirtd, host: HostState, guest: Guest, others: list[Guest]) -> list[Step]:
    """A denial involving a guest: its qemu denied a file, or (SELinux) another process denied the
    guest's image (``svirt_image_t`` with the guest's MCS pair)."""
    rng = host.rng
    qemu = qemu_actor(daemon, guest)
    delay = rng.randint(100, 20000)
    argv = qemu_argv(daemon, guest)
    if daemon.security == "selinux" and guest.mcs is not None:
        if rng.random() < 0.35:
            image = guest.disks[0]
            level = f"s0:c{guest.mcs[0]},c{guest.mcs[1]}"
            backup = Actor(
                host.new_pid(),
                1,
                0,
                0,
                UNSET,
                UNSET,
                "rsync",
                "/usr/bin/rsync",
                host.security.subject("rsync"),
            )
            return [
                Step(
                    delay,
                    selinux_avc_event(
                        host,
                        backup,
                        perms="read",
                        target=image,
                        tcontext=f"system_u:object_r:svirt_image_t:{level}",
                        tclass="file",
                        argv=["rsync", "-a", IMAGE_DIR + "/", "backup01:/srv/vm-backup/"],
                    ),
                )
            ]
        path, tcontext, tclass = rng.choice(QEMU_DENIED_FILES)
        perms = "read" if tclass == "file" else "read write"
        return [
            Step(
                delay,
                selinux_avc_event(
                    host, qemu, perms=perms, target=path, tcontext=tcontext, tclass=tclass, argv=argv
                ),
            )
        ]
    if daemon.security == "apparmor":
        if others and rng.random() < 0.3:
            target, owner = rng.choice(others).disks[0], daemon.qemu_uid
        else:
            target, _, _ = rng.choice(QEMU_DENIED_FILES)
            owner = 1000 if target.startswith("/home/alice") else 0
        return [
            Step(
                delay,
                apparmor_avc_event(
                    host,
                    qemu,
                    profile=f"libvirt-{guest.uuid}",
                    target=target,
                    mask=rng.choice(("r", "r", "rw")),
                    owner=owner,
                    argv=argv,
                ),
            )
        ]
    return []
