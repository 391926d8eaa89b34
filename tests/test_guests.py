"""Guest registry and enrichment (``forwarder.virt.guests``, ``forwarder.virt.enrich``)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from functools import cache
from typing import Any

import pytest

from forwarder.audit.assemble import Assembler, assemble_lines
from forwarder.audit.record import Event, Record, parse_line
from forwarder.ecs.fields import check_document
from forwarder.ecs.normalize import NormalizeOptions, normalize
from forwarder.generate import GeneratorOptions, generate_lines
from forwarder.virt.enrich import enrich
from forwarder.virt.guests import (
    DOWN,
    FORGET_STOPPED_AFTER_SECONDS,
    MIGRATED,
    RUNNING,
    START_FAILED,
    STOPPED,
    GuestRegistry,
    scope_of,
)
from tests.corpus import all_logs

OPTIONS = NormalizeOptions(host_name="hv1")

UUID_A = "6f1c2a7e-3d4b-4e8a-9c1f-2b7d5e9a0c13"
UUID_B = "9a7d2c61-5e3f-4b08-b1d4-c6e8f0a2b357"
UUID_C = "3b9d6c52-2f0e-4c65-a1a4-9f5b1f0e2d11"
DAEMON = "1187"
LEVEL = "s0:c112,c877"
OTHER_LEVEL = "s0:c5,c6"
DISK_A = "/var/lib/libvirt/images/web01.qcow2"
SPACED_DISK = "/var/lib/libvirt/images/ISO Images/rhel.iso"
SCOPE_A = r"machine-qemu\x2d1\x2dweb01.scope"
MAC_A = "52:54:00:3b:5f:3d"


class Log:
    """Audit lines written with increasing serials and times."""

    def __init__(self, node: str | None = None) -> None:
        self.serial = 100
        self.sec = 1_710_000_000
        self.lines: list[str] = []
        self.prefix = f"node={node} " if node else ""

    def _header(self, record_type: str) -> str:
        return f"{self.prefix}type={record_type} msg=audit({self.sec}.000:{self.serial}): "

    def event(self, *records: tuple[str, str], seconds: int = 1) -> None:
        """One event of ``(type, body)`` records."""
        self.sec += seconds
        self.serial += 1
        self.lines.extend(self._header(kind) + body for kind, body in records)

    def libvirt(self, record_type: str, text: str, res: str = "success", seconds: int = 1) -> None:
        body = (
            f"pid={DAEMON} uid=0 auid=4294967295 ses=4294967295 "
            f"subj=system_u:system_r:virtqemud_t:s0-s0:c0.c1023 msg='{text} "
            f'exe="/usr/sbin/virtqemud" hostname=? addr=? terminal=? res={res}\''
        )
        self.event((record_type, body), seconds=seconds)

    def machine_id(self, uuid: str, name: str, level: str) -> None:
        self.libvirt(
            "VIRT_MACHINE_ID",
            f'virt=kvm vm="{name}" uuid={uuid} vm-ctx=system_u:system_r:svirt_t:{level} '
            f"img-ctx=system_u:object_r:svirt_image_t:{level} model=selinux",
        )

    def resource(self, uuid: str, name: str, tail: str, reason: str = "start", res: str = "success") -> None:
        self.libvirt(
            "VIRT_RESOURCE",
            f'virt=kvm {tail.split(" ", 1)[0]} reason={reason} vm="{name}" uuid={uuid} ' + tail.split(" ", 1)[1],
            res=res,
        )

    def control(self, uuid: str, name: str, op: str, reason: str, pid: int, res: str = "success") -> None:
        self.libvirt("VIRT_CONTROL", f'virt=kvm op={op} reason={reason} vm="{name}" uuid={uuid} vm-pid={pid}', res)

    def syscall(
        self,
        pid: int,
        *,
        ppid: int = 1,
        subj: str = "unconfined_u:unconfined_r:unconfined_t:s0",
        exe: str = "/usr/bin/cat",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        body = (
            f"arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=1 a2=0 a3=0 items=1 ppid={ppid} "
            f"pid={pid} auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 "
            f'comm="x" exe="{exe}" subj={subj} key=(null)'
        )
        self.event(("SYSCALL", body), *extra)

    def start(self, uuid: str, name: str, pid: int, level: str = LEVEL, disk: str = DISK_A) -> None:
        """A whole guest start: label, cgroup, tap, disk, net, start record."""
        self.machine_id(uuid, name, level)
        self.resource(
            uuid,
            name,
            f'resrc=cgroup cgroup="/sys/fs/cgroup/machine.slice/{scope(name)}/libvirt/" class=all',
            reason="deny",
        )
        self.resource(uuid, name, f'resrc=net net={MAC_A} path="/dev/net/tun" rdev=0A:C8', reason="open")
        self.event(
            ("ANOM_PROMISCUOUS", "dev=vnet0 prom=256 old_prom=0 auid=4294967295 uid=0 gid=0 ses=4294967295"),
            ("SYSCALL", f'arch=c000003e syscall=16 success=yes exit=0 ppid=1 pid={DAEMON} comm="virtqemud"'),
        )
        self.resource(uuid, name, f'resrc=disk old-disk="?" new-disk={encode(disk)}')
        self.resource(uuid, name, f'resrc=net old-net="?" new-net="{MAC_A}"')
        self.control(uuid, name, "start", "booted", pid)

    def events(self) -> list[Event]:
        assembler = Assembler()
        found: list[Event] = []
        for line in self.lines:
            record = parse_line(line)
            assert isinstance(record, Record), line
            found.extend(assembler.feed(record))
        found.extend(assembler.flush())
        return found


def scope(name: str) -> str:
    return f"machine-qemu\\x2d1\\x2d{name}.scope"


def encode(text: str) -> str:
    """libvirt's encoding: quoted, or hex when a byte needs it."""
    if any(c in text for c in ' "') or not text.isascii():
        return text.encode().hex().upper()
    return f'"{text}"'


def documents(log: Log, registry: GuestRegistry | None = None) -> list[dict[str, Any]]:
    registry = registry if registry is not None else GuestRegistry()
    docs = []
    for event in log.events():
        doc = enrich(normalize(event, OPTIONS), event, registry)
        assert not check_document(doc), check_document(doc)
        docs.append(doc)
    return docs


def libvirt(doc: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    """(uuid, method, side) of a document, None when not attributed."""
    section = doc.get("libvirt", {})
    if "attribution" not in section:
        return None
    return section["domain"]["uuid"], section["attribution"]["method"], section["attribution"]["side"]


def last(log: Log, registry: GuestRegistry | None = None) -> tuple[Any, Any, Any] | None:
    return libvirt(documents(log, registry)[-1])


# ------------------------------------------------------------------ libvirt's own records


def test_virt_records_carry_their_guest_and_decoded_name() -> None:
    log = Log()
    log.libvirt(
        "VIRT_CONTROL",
        f"virt=kvm op=start reason=booted vm=77696E31312D42C3BC726F uuid={UUID_B} vm-pid=0",
        res="failed",
    )
    doc = documents(log)[0]
    assert doc["libvirt"]["domain"] == {"uuid": UUID_B, "name": "win11-Büro", "type": "kvm"}
    assert doc["libvirt"]["attribution"] == {"method": "uuid", "side": "target"}
    assert doc["libvirt"]["event"] == {"op": "start", "reason": "booted", "vm_pid": 0}
    assert doc["event"]["type"] == ["start"]
    assert doc["event"]["outcome"] == "failure"
    assert doc["event"]["action"] == "issued-vm-control"


@pytest.mark.parametrize(
    ("tail", "reason", "event_type", "resource"),
    [
        (
            f'resrc=disk old-disk="?" new-disk={encode(SPACED_DISK)}',
            "start",
            "info",
            {"type": "disk", "new": SPACED_DISK},
        ),
        (
            'resrc=disk old-disk="/a.iso" new-disk="/b.iso"',
            "update",
            "change",
            {"type": "disk", "old": "/a.iso", "new": "/b.iso"},
        ),
        (
            "resrc=mem old-mem=2097152 new-mem=1572864",
            "update",
            "change",
            {"type": "mem", "old": "2097152", "new": "1572864"},
        ),
        (
            f'resrc=cgroup cgroup="/sys/fs/cgroup/machine.slice/{SCOPE_A}/libvirt/" class=path path="/dev/null" '
            "rdev=01:03 acl=rw",
            "allow",
            "change",
            {
                "type": "cgroup",
                "cgroup": f"/sys/fs/cgroup/machine.slice/{SCOPE_A}/libvirt/",
                "class": "path",
                "path": "/dev/null",
                "rdev": "01:03",
                "acl": "rw",
            },
        ),
        (
            f'resrc=net net={MAC_A} path="/dev/vhost-net" rdev=0A:EE',
            "open",
            "info",
            {"type": "net", "mac": MAC_A, "path": "/dev/vhost-net", "rdev": "0A:EE"},
        ),
        (
            'resrc=dev bus=pci device="0000:3b:00.1"',
            "detach",
            "change",
            {"type": "dev", "bus": "pci", "device": "0000:3b:00.1"},
        ),
    ],
)
def test_resource_documents(tail: str, reason: str, event_type: str, resource: dict[str, str]) -> None:
    log = Log()
    log.resource(UUID_A, "web01", tail, reason=reason)
    doc = documents(log)[0]
    assert doc["libvirt"]["event"] == {"reason": reason, "resource": resource}
    assert doc["event"]["type"] == [event_type]
    assert doc["event"]["action"] == "assigned-vm-resource"
    assert libvirt(doc) == (UUID_A, "uuid", "target")


def test_machine_id_and_stop_documents() -> None:
    log = Log()
    log.machine_id(UUID_A, "web01", LEVEL)
    log.control(UUID_A, "web01", "stop", "destroyed", -1)
    machine, stop = documents(log)
    assert machine["libvirt"]["event"]["security"] == {
        "model": "selinux",
        "vm_context": f"system_u:system_r:svirt_t:{LEVEL}",
        "image_context": f"system_u:object_r:svirt_image_t:{LEVEL}",
    }
    assert machine["event"]["action"] == "assigned-vm-id"
    assert stop["event"]["type"] == ["end"]
    assert stop["libvirt"]["event"] == {"op": "stop", "reason": "destroyed", "vm_pid": -1}


def test_container_engine_virt_record_is_left_alone() -> None:
    log = Log()
    log.event(
        (
            "VIRT_CONTROL",
            "pid=1431 uid=0 auid=100 ses=3 msg='user=root reason=api op=create vm=? vm-pid=? "
            'hostname=? exe="/usr/bin/dockerd-current" addr=? terminal=? res=success\'',
        )
    )
    doc = documents(log)[0]
    assert "libvirt" not in doc


def test_same_name_different_uuid_are_two_guests() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.start(UUID_B, "web01", 2301, level=OTHER_LEVEL, disk="/var/lib/libvirt/images/web01-b.qcow2")
    log.syscall(2201)
    log.syscall(2301)
    registry = GuestRegistry()
    docs = documents(log, registry)
    assert libvirt(docs[-2]) == (UUID_A, "pid", "source")
    assert libvirt(docs[-1]) == (UUID_B, "pid", "source")
    assert {g.uuid for g in registry.guests()} == {UUID_A, UUID_B}
    assert {g.name for g in registry.guests()} == {"web01"}


# ------------------------------------------------------------------ process attribution


def test_qemu_pid_while_running_only() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.syscall(2201)
    log.event(
        (
            "ANOM_ABEND",
            'auid=4294967295 uid=107 gid=107 ses=4294967295 pid=2201 comm="qemu-kvm" '
            'exe="/usr/libexec/qemu-kvm" sig=11 res=1',
        )
    )
    log.control(UUID_A, "web01", "stop", "failed", 0)
    log.syscall(2201)
    registry = GuestRegistry()
    docs = documents(log, registry)
    assert libvirt(docs[-4]) == (UUID_A, "pid", "source")
    assert libvirt(docs[-3]) == (UUID_A, "pid", "source")
    assert libvirt(docs[-1]) is None
    guest = registry.guest(UUID_A)
    assert guest is not None and guest.state == "failed" and guest.pids == []


def test_qemu_execve_names_its_guest_before_the_start_record() -> None:
    log = Log()
    args = ["/usr/libexec/qemu-kvm", "-name", "guest=web01,debug-threads=on", "-uuid", UUID_A, "-S"]
    execve = " ".join(f"a{i}={encode(arg)}" for i, arg in enumerate(args))
    log.syscall(2201, ppid=int(DAEMON), exe="/usr/libexec/qemu-kvm", extra=(("EXECVE", f"argc={len(args)} {execve}"),))
    log.syscall(2201, exe="/usr/libexec/qemu-kvm")
    registry = GuestRegistry()
    docs = documents(log, registry)
    assert libvirt(docs[0]) == (UUID_A, "pid", "source")
    assert docs[0]["libvirt"]["domain"]["name"] == "web01"
    assert libvirt(docs[1]) == (UUID_A, "pid", "source")
    guest = registry.guest(UUID_A)
    assert guest is not None and guest.state == "starting" and guest.pids == ["2201"]


def test_execve_of_other_programs_teaches_nothing() -> None:
    log = Log()
    args = ["/usr/bin/uuidgen", "-uuid", UUID_A]
    execve = " ".join(f"a{i}={encode(arg)}" for i, arg in enumerate(args))
    log.syscall(4000, extra=(("EXECVE", f"argc=3 {execve}"),))
    registry = GuestRegistry()
    assert libvirt(documents(log, registry)[0]) is None
    assert registry.guests() == []


def test_children_of_qemu_and_kill_of_qemu() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.syscall(2250, ppid=2201, exe="/usr/libexec/qemu-bridge-helper")
    log.event(
        (
            "SYSCALL",
            f"arch=c000003e syscall=62 success=yes exit=0 a0=899 a1=f ppid=1 pid={DAEMON} "
            'comm="virtqemud" exe="/usr/sbin/virtqemud"',
        ),
        ("OBJ_PID", 'opid=2201 oauid=-1 ouid=107 oses=-1 obj=system_u:system_r:svirt_t:s0:c112,c877 ocomm="qemu-kvm"'),
    )
    docs = documents(log)
    assert libvirt(docs[-2]) == (UUID_A, "parent", "source")
    assert libvirt(docs[-1]) == (UUID_A, "pid", "target")


# ------------------------------------------------------------------ labels


def avc(scontext: str, tcontext: str, pid: int = 5000, name: str = "web01.qcow2") -> tuple[str, str]:
    return (
        "AVC",
        f'avc:  denied  {{ read }} for  pid={pid} comm="rsync" name="{name}" dev="dm-3" ino=1 '
        f"scontext={scontext} tcontext={tcontext} tclass=file permissive=0",
    )


def test_avc_both_directions() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    # the guest's process denied (its pid is unknown to the log's records here: a thread of it)
    log.event(avc(f"system_u:system_r:svirt_t:{LEVEL}", "unconfined_u:object_r:user_home_t:s0", pid=2299))
    # another process denied the guest's image
    log.event(avc("system_u:system_r:rsync_t:s0", f"system_u:object_r:svirt_image_t:{LEVEL}"))
    # neither side is a guest's
    log.event(avc("system_u:system_r:rsync_t:s0", "system_u:object_r:svirt_image_t:s0:c1,c2"))
    docs = documents(log)
    assert libvirt(docs[-3]) == (UUID_A, "label", "source")
    assert libvirt(docs[-2]) == (UUID_A, "label", "target")
    assert libvirt(docs[-1]) is None


def test_avc_between_two_guests_names_both() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.start(UUID_B, "db", 2301, level=OTHER_LEVEL, disk="/var/lib/libvirt/images/db.qcow2")
    log.event(avc(f"system_u:system_r:svirt_t:{LEVEL}", f"system_u:object_r:svirt_image_t:{OTHER_LEVEL}", pid=2201))
    doc = documents(log)[-1]
    assert libvirt(doc) == ([UUID_A, UUID_B], ["pid", "label"], ["source", "target"])
    assert doc["libvirt"]["domain"]["name"] == ["web01", "db"]


def test_label_reused_by_a_later_guest_attributes_to_the_running_one() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.control(UUID_A, "web01", "stop", "shutdown", 0)
    log.event(avc(f"system_u:system_r:svirt_t:{LEVEL}", "system_u:object_r:var_t:s0"))  # stale: nobody
    log.start(UUID_B, "db", 2301, disk="/var/lib/libvirt/images/db.qcow2")  # same MCS pair again
    log.event(avc(f"system_u:system_r:svirt_t:{LEVEL}", "system_u:object_r:var_t:s0"))
    registry = GuestRegistry()
    docs = documents(log, registry)
    stale = next(d for d in docs if d["auditd"]["message_type"] == "avc")
    assert libvirt(stale) is None
    assert libvirt(docs[-1]) == (UUID_B, "label", "source")
    a = registry.guest(UUID_A)
    assert a is not None and a.level is None and a.state == STOPPED


def test_label_reused_while_the_first_guest_still_runs_goes_to_the_latest() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.machine_id(UUID_B, "db", LEVEL)  # a new start got the same pair (MCS collision)
    log.event(avc(f"system_u:system_r:svirt_t:{LEVEL}", "system_u:object_r:var_t:s0"))
    assert last(log) == (UUID_B, "label", "source")


def test_apparmor_profile_and_image_of_another_guest() -> None:
    log = Log()
    log.start(UUID_B, "db", 2301, disk="/var/lib/libvirt/images/db.qcow2")
    body = (
        f'apparmor="DENIED" operation="open" profile="libvirt-{UUID_C}" name="/var/lib/libvirt/images/db.qcow2" '
        'pid=7000 comm="qemu-system-x86" requested_mask="r" denied_mask="r" fsuid=64055 ouid=64055'
    )
    log.event(("AVC", body))
    doc = documents(log)[-1]
    # UUID_C was never seen: its profile names it all the same (without a name)
    assert libvirt(doc) == ([UUID_C, UUID_B], ["label", "image"], ["source", "target"])
    assert doc["libvirt"]["domain"]["name"] == ["db"]


def test_apparmor_subject_of_a_guest_process() -> None:
    log = Log()
    log.syscall(7001, subj=f"libvirt-{UUID_C} (enforce)", exe="/usr/bin/qemu-system-x86_64")
    assert last(log) == (UUID_C, "label", "source")


# ------------------------------------------------------------------ resources


def test_disk_image_path_hex_encoded_and_detach() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201, disk=SPACED_DISK)
    path = f"item=0 name={encode(SPACED_DISK)} inode=7 dev=fd:03 mode=0100644 ouid=107 ogid=107 nametype=NORMAL"
    log.syscall(6000, extra=(("PATH", path),))
    log.resource(UUID_A, "web01", f'resrc=disk old-disk={encode(SPACED_DISK)} new-disk="?"', reason="detach")
    log.syscall(6000, extra=(("PATH", path),))
    docs = documents(log)
    assert libvirt(docs[-3]) == (UUID_A, "image", "target")
    assert libvirt(docs[-1]) is None


def test_image_stays_the_guests_while_it_is_stopped() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.control(UUID_A, "web01", "stop", "shutdown", 0)
    log.syscall(6000, exe="/usr/bin/cp", extra=(("PATH", f'item=0 name="{DISK_A}" nametype=NORMAL'),))
    assert last(log) == (UUID_A, "image", "target")


def test_failed_detach_keeps_the_disk() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.resource(UUID_A, "web01", f'resrc=disk old-disk="{DISK_A}" new-disk="?"', reason="detach", res="failed")
    log.syscall(6000, extra=(("PATH", f'item=0 name="{DISK_A}" nametype=NORMAL'),))
    assert last(log) == (UUID_A, "image", "target")


def test_mac_in_netfilter_records() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.event(
        (
            "NETFILTER_PKT",
            f"mark=0x0 smac={MAC_A.upper()} dmac=ff:ff:ff:ff:ff:ff macproto=0x0800 "
            "saddr=10.0.0.5 daddr=10.0.0.255 proto=17",
        )
    )
    log.event(
        (
            "NETFILTER_PKT",
            f"mark=0x0 smac=52:54:00:00:00:01 dmac={MAC_A} macproto=0x0800 saddr=10.0.0.6 daddr=10.0.0.5 proto=17",
        )
    )
    docs = documents(log)
    assert libvirt(docs[-2]) == (UUID_A, "mac", "source")
    assert libvirt(docs[-1]) == (UUID_A, "mac", "target")


def test_old_style_single_quoted_net() -> None:
    log = Log()
    log.libvirt("VIRT_RESOURCE", f"resrc=net reason=start vm=\"web01\" uuid={UUID_A} old-net='?' new-net='{MAC_A}'")
    log.event(("NETFILTER_PKT", f"mark=0x0 smac={MAC_A} dmac=ff:ff:ff:ff:ff:ff macproto=0x0800"))
    docs = documents(log)
    assert docs[0]["libvirt"]["event"]["resource"] == {"type": "net", "new": MAC_A}
    assert libvirt(docs[-1]) == (UUID_A, "mac", "source")


def test_tap_learned_from_the_daemons_promiscuous_switch() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    promisc = ("ANOM_PROMISCUOUS", "dev=vnet0 prom=256 old_prom=0 auid=1000 uid=0 gid=0 ses=3")
    tcpdump = ("SYSCALL", 'arch=c000003e syscall=54 success=yes exit=0 ppid=900 pid=8000 comm="tcpdump"')
    log.event(promisc, tcpdump)  # an admin sniffing the guest's tap
    log.control(UUID_A, "web01", "stop", "shutdown", 0)
    log.event(promisc, tcpdump)  # the name is free again
    docs = documents(log)
    first_promisc = next(d for d in docs if d["auditd"]["message_type"] == "anom_promiscuous")
    assert libvirt(first_promisc) == (UUID_A, "tap", "target")
    assert libvirt(docs[-3]) == (UUID_A, "tap", "target")
    assert libvirt(docs[-1]) is None


def test_tap_not_learned_from_other_processes_or_concurrent_starts() -> None:
    log = Log()
    log.resource(UUID_A, "web01", f'resrc=net net={MAC_A} path="/dev/net/tun" rdev=0A:C8', reason="open")
    log.event(
        ("ANOM_PROMISCUOUS", "dev=vnet7 prom=256 old_prom=0 auid=1000 uid=0 gid=0 ses=3"),
        ("SYSCALL", 'arch=c000003e syscall=54 success=yes exit=0 ppid=900 pid=8000 comm="tcpdump"'),
    )
    log.resource(UUID_B, "db", 'resrc=net net=52:54:00:00:00:02 path="/dev/net/tun" rdev=0A:C8', reason="open")
    log.event(
        ("ANOM_PROMISCUOUS", "dev=vnet8 prom=256 old_prom=0 auid=4294967295 uid=0 gid=0 ses=4294967295"),
        ("SYSCALL", f'arch=c000003e syscall=16 success=yes exit=0 ppid=1 pid={DAEMON} comm="virtqemud"'),
    )
    docs = documents(log)
    assert libvirt(docs[1]) is None
    assert libvirt(docs[3]) is None


def test_cgroup_scope_paths() -> None:
    assert scope_of(f"/sys/fs/cgroup/machine.slice/{SCOPE_A}/libvirt/") == SCOPE_A
    assert scope_of(f"/sys/fs/cgroup/devices/machine.slice/{SCOPE_A}") == SCOPE_A
    assert scope_of("/sys/fs/cgroup/machine.slice/") is None
    assert scope_of("/sys/fs/cgroup/system.slice/sshd.service") is None
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.syscall(
        6100,
        exe="/usr/bin/cat",
        extra=(
            ("CWD", 'cwd="/root"'),
            ("PATH", f'item=0 name="/sys/fs/cgroup/machine.slice/{scope("web01")}/libvirt/cpu.max" nametype=NORMAL'),
        ),
    )
    log.syscall(
        6101,
        exe="/usr/bin/cat",
        extra=(
            (
                "PATH",
                'item=0 name="/sys/fs/cgroup/machine.slice/machine-qemu\\x2d9\\x2dother.scope/cpu.max" nametype=NORMAL',
            ),
        ),
    )
    docs = documents(log)
    assert libvirt(docs[-2]) == (UUID_A, "cgroup", "target")
    assert libvirt(docs[-1]) is None


# ------------------------------------------------------------------ host reboots, nodes


def test_host_reboot_ends_pid_attribution() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.event(
        (
            "SYSTEM_BOOT",
            'pid=904 uid=0 auid=4294967295 ses=4294967295 msg=\' comm="systemd-update-utmp" '
            'exe="/usr/lib/systemd/systemd-update-utmp" hostname=? addr=? terminal=? res=success\'',
        )
    )
    log.syscall(2201)  # the pid now belongs to some other process
    log.event(avc(f"system_u:system_r:svirt_t:{LEVEL}", "system_u:object_r:var_t:s0"))
    registry = GuestRegistry()
    docs = documents(log, registry)
    assert libvirt(docs[-2]) is None
    assert libvirt(docs[-1]) is None
    guest = registry.guest(UUID_A)
    assert guest is not None and guest.state == DOWN and guest.stopped is not None


DAEMON_START = (
    "DAEMON_START",
    "op=start ver=3.0.9 format=raw kernel=6.1.0 auid=4294967295 pid=889 uid=0 ses=4294967295 res=success",
)
DAEMON_END = ("DAEMON_END", "op=terminate auid=0 uid=0 ses=4294967295 pid=1 res=success")


@pytest.mark.parametrize(
    ("before", "ends"),
    [
        ([], True),  # auditd starting without a clean end: the host crashed
        ([DAEMON_END], False),  # auditd restarted on a running host
        ([("SYSTEM_SHUTDOWN", "pid=1 uid=0 msg=' res=success'"), DAEMON_END], True),
    ],
)
def test_daemon_start(before: list[tuple[str, str]], ends: bool) -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    for record in before:
        log.event(record)
    log.event(DAEMON_START)
    log.syscall(2201)
    assert (last(log) is None) == ends


def test_nodes_are_separate_hosts() -> None:
    log_a = Log(node="hv-a")
    log_a.start(UUID_A, "web01", 2201)
    log_b = Log(node="hv-b")
    log_b.syscall(2201)
    log_b.event(avc(f"system_u:system_r:svirt_t:{LEVEL}", "system_u:object_r:var_t:s0"))
    log_a.lines += log_b.lines
    docs = documents(log_a)
    assert libvirt(docs[-2]) is None
    assert libvirt(docs[-1]) is None


def test_migration_and_failed_start_states() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.control(UUID_A, "web01", "stop", "migrated", 0)
    log.control(UUID_B, "db", "start", "booted", 0, res="failed")
    registry = GuestRegistry()
    documents(log, registry)
    a, b = registry.guest(UUID_A), registry.guest(UUID_B)
    assert a is not None and a.state == MIGRATED and a.stop_reason == "migrated" and a.started is not None
    assert b is not None and b.state == START_FAILED and b.pids == []


# ------------------------------------------------------------------ state


def test_state_round_trip_keeps_every_attribution() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201, disk=SPACED_DISK)
    log.start(UUID_B, "db", 2301, level=OTHER_LEVEL, disk="/var/lib/libvirt/images/db.qcow2")
    log.control(UUID_B, "db", "stop", "shutdown", 0)
    registry = GuestRegistry()
    documents(log, registry)
    state = registry.to_state()
    restored = GuestRegistry.from_state(json.loads(json.dumps(state)))
    assert restored.to_state() == state
    after = Log()
    after.sec, after.serial = log.sec, log.serial
    after.syscall(2201)
    after.event(avc("system_u:system_r:rsync_t:s0", f"system_u:object_r:svirt_image_t:{LEVEL}"))
    after.syscall(6000, extra=(("PATH", 'item=0 name="/var/lib/libvirt/images/db.qcow2" nametype=NORMAL'),))
    after.event(("ANOM_PROMISCUOUS", "dev=vnet0 prom=0 old_prom=256 auid=1000 uid=0 gid=0 ses=3"))
    after.syscall(2301)
    got = [libvirt(d) for d in documents(after, restored)]
    assert got == [
        (UUID_A, "pid", "source"),
        (UUID_A, "label", "target"),
        (UUID_B, "image", "target"),
        (UUID_A, "tap", "target"),
        None,
    ]


@pytest.mark.parametrize(
    "state",
    [
        None,
        {},
        {"version": 999, "hosts": []},
        {"version": 1, "hosts": "x"},
        {"version": 1, "hosts": [{"node": 5}, "junk", {"node": None, "guests": [{"uuid": "nope"}, 7]}]},
    ],
)
def test_bad_state_gives_an_empty_or_partial_registry(state: Any) -> None:
    registry = GuestRegistry.from_state(state)
    assert all(not registry.guests(node) for node in registry.nodes())


def test_stopped_guests_are_forgotten_after_the_retention() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    log.control(UUID_A, "web01", "stop", "shutdown", 0)
    log.libvirt(
        "VIRT_MACHINE_ID",
        f'virt=kvm vm="db" uuid={UUID_B} vm-ctx=+107:+107 img-ctx=+107:+107 model=dac',
        seconds=FORGET_STOPPED_AFTER_SECONDS + 7200,
    )
    log.syscall(6000, extra=(("PATH", f'item=0 name="{DISK_A}" nametype=NORMAL'),))
    registry = GuestRegistry()
    docs = documents(log, registry)
    assert registry.guest(UUID_A) is None
    assert registry.guest(UUID_B) is not None
    assert libvirt(docs[-1]) is None


def test_guest_count_is_capped() -> None:
    log = Log()
    uuids = [f"00000000-0000-4000-8000-{index:012x}" for index in range(60)]
    for uuid in uuids:
        log.control(uuid, "t", "stop", "shutdown", 0)
    log.start(UUID_A, "web01", 2201)
    registry = GuestRegistry(max_guests_per_host=20)
    documents(log, registry)
    known = {guest.uuid for guest in registry.guests()}
    assert len(known) <= 20
    assert UUID_A in known and uuids[-1] in known and uuids[0] not in known
    guest = registry.guest(UUID_A)
    assert guest is not None and guest.state == RUNNING


# ------------------------------------------------------------------ real logs


LOGS = all_logs()


@pytest.mark.skipif(not LOGS, reason="no logs (neither fixtures nor the shared corpus)")
def test_real_logs_enrich_with_declared_fields_only() -> None:
    """Every log of the fixtures and the corpus: enrichment never fails, documents stay declared,
    and every libvirt record with a uuid names its guest."""
    virt_records = 0
    for path in LOGS:
        registry = GuestRegistry()
        with path.open("rb") as lines:
            events = assemble_lines(lines)
        for event in events:
            doc = enrich(normalize(event, OPTIONS), event, registry)
            assert not check_document(doc), (path.name, check_document(doc))
            first = event.records[0]
            uuid = first.fields.get("uuid", "")
            if first.type.startswith("VIRT_") and re.fullmatch(r"[0-9a-f-]{36}", uuid):
                virt_records += 1
                assert doc["libvirt"]["domain"]["uuid"] == uuid, first.text
    assert virt_records > 0


# ------------------------------------------------------------------ generated hypervisor logs


@cache
def generated_docs(seed: int, security: str, style: str) -> tuple[list[Event], list[dict[str, Any]]]:
    options = GeneratorOptions(
        seed=seed,
        records=6000,
        security=security,
        libvirt_style=style,
        mix={
            "guest": 6.0,
            "execve": 2.0,
            "file": 2.0,
            "network": 1.0,
            "login": 1.0,
            "sudo": 1.0,
            "avc": 1.0,
            "admin": 1.0,
            "cron": 1.0,
        },
    )
    assembler = Assembler()
    events: list[Event] = []
    for line in generate_lines(options):
        record = parse_line(line)
        assert isinstance(record, Record)
        events.extend(assembler.feed(record))
    events.extend(assembler.flush())
    registry = GuestRegistry()
    docs = [enrich(normalize(event, OPTIONS), event, registry) for event in events]
    return events, docs


_QEMU_EXE = re.compile(r'exe="[^"]*qemu[^"]*"')


class Truth:
    """What the generated log says about its guests, read without the registry: the qemu pid of
    each guest from qemu's execve (``-uuid``) until its stop, per host boot; the MCS level of each
    start; the disks of each guest."""

    def __init__(self) -> None:
        self.boot = 0
        self.qemu: dict[tuple[int, str], str] = {}
        self.level: dict[str, str] = {}
        self.disks: dict[str, set[str]] = defaultdict(set)

    def learn(self, event: Event) -> None:
        first = event.records[0]
        if first.type == "SYSTEM_BOOT":
            self.boot += 1
        fields = first.fields
        if first.type == "VIRT_MACHINE_ID" and "svirt_t" in fields.get("vm-ctx", ""):
            self.level[fields["uuid"]] = fields["vm-ctx"].split(":", 3)[3]
        if first.type == "VIRT_RESOURCE" and fields.get("resrc") == "disk":
            for key in ("old-disk", "new-disk"):
                raw = fields.get(key, '"?"')
                if raw != '"?"':
                    text = raw[1:-1] if raw.startswith('"') else bytes.fromhex(raw).decode()
                    self.disks[fields["uuid"]].add(text)
        if first.type == "VIRT_CONTROL" and (fields.get("op") == "stop" or "res=failed" in first.text):
            # the qemu is gone (the generator may still write a denial of it that was in flight)
            self.qemu = {key: uuid for key, uuid in self.qemu.items() if uuid != fields["uuid"]}
        for record in event.records:
            if record.type == "EXECVE" and '"-uuid"' in record.text:
                args = [value for key, value in record.fields.items() if re.fullmatch(r"a\d+", key)]
                uuid = args[args.index('"-uuid"') + 1].strip('"')
                self.qemu[(self.boot, first.fields["pid"])] = uuid

    def qemu_guest(self, event: Event) -> str | None:
        """The guest whose qemu acts in this event (by the actor's pid, qemu executables only)."""
        for record in event.records:
            if record.type in ("SYSCALL", "ANOM_ABEND") and _QEMU_EXE.search(record.text):
                return self.qemu.get((self.boot, record.fields["pid"]))
        return None


CASES = [
    (seed, security, style)
    for seed in (1, 2, 3)
    for security in ("selinux", "apparmor", "dac")
    for style in ("modern", "old")
] + [(4, "none", "legacy"), (5, "selinux", "legacy")]


@pytest.mark.parametrize(("seed", "security", "style"), CASES)
def test_generated_logs_attribute_every_guest_event_and_nothing_else(seed: int, security: str, style: str) -> None:
    events, docs = generated_docs(seed, security, style)
    truth = Truth()
    counts: dict[str, int] = defaultdict(int)
    for event, doc in zip(events, docs, strict=True):
        truth.learn(event)
        assert not check_document(doc), check_document(doc)
        got = libvirt(doc)
        first = event.records[0]
        uuids = [got[0]] if got is not None and isinstance(got[0], str) else (got[0] if got else [])
        methods = [got[1]] if got is not None and isinstance(got[1], str) else (got[1] if got else [])
        if first.type.startswith("VIRT_"):
            assert got == (first.fields["uuid"], "uuid", "target"), first.text
            counts["virt"] += 1
            continue
        actor = truth.qemu_guest(event)
        if actor is not None:
            assert uuids and uuids[0] == actor and methods[0] == "pid", (first.text, got)
            counts["qemu"] += 1
            continue
        for uuid, method in zip(uuids, methods, strict=True):
            counts[method] += 1
            text = "\n".join(record.text for record in event.records)
            if method == "label":
                # the event names the guest's current level (SELinux) or its profile (AppArmor)
                assert truth.level.get(uuid, uuid) in text or f"libvirt-{uuid}" in text, (text, got)
            elif method == "image":
                assert any(disk in text or disk.encode().hex().upper() in text for disk in truth.disks[uuid]), text
            elif method == "tap":
                assert first.type == "ANOM_PROMISCUOUS", text
            elif method == "pid":  # a signal to the guest's qemu
                targets = [r.fields["opid"] for r in event.records if r.type == "OBJ_PID"]
                assert any(truth.qemu.get((truth.boot, pid)) == uuid for pid in targets), text
            else:
                pytest.fail(f"unexpected attribution {got} of a non-guest process: {text}")
    assert counts["virt"] > 50 and counts["qemu"] > 10, counts
    if security != "none" and style != "old":
        assert counts["tap"] > 0, counts


@pytest.mark.parametrize(
    ("security", "method", "side"), [("selinux", "label", "target"), ("apparmor", "image", "target")]
)
def test_generated_logs_have_denials_against_guest_images(security: str, method: str, side: str) -> None:
    """Another process denied a guest's image (SELinux), a qemu denied another guest's image (AppArmor)."""
    found = 0
    for seed in (1, 2, 3):
        _, docs = generated_docs(seed, security, "modern")
        for doc in docs:
            got = libvirt(doc)
            if doc["auditd"]["message_type"] == "avc" and got is not None:
                methods = got[1] if isinstance(got[1], list) else [got[1]]
                sides = got[2] if isinstance(got[2], list) else [got[2]]
                found += (method, side) in zip(methods, sides, strict=True)
    assert found > 0
