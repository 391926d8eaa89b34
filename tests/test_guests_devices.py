"""Host devices passed through to a guest: their device nodes attribute events to it (``device``).

The registry learns a node from the records that hand it to the guest (cgroup ACL of a VFIO
group, USB address, capability hostdev) and forgets it at hot-unplug, stop, failed start and
host reboot; the state round trip keeps it for a running guest.
"""

from __future__ import annotations

import json

import pytest

from forwarder.virt.guests import BY_DEVICE, GuestRegistry, hostdev_path
from tests.test_guests import UUID_A, UUID_B, Log, documents, encode, last, libvirt, scope

VFIO = "/dev/vfio/42"
USB = "/dev/bus/usb/001/004"


def grant(log: Log, uuid: str, name: str, path: str, reason: str = "allow", res: str = "success") -> None:
    """libvirt's cgroup ACL of one device node (``class=path``)."""
    log.resource(
        uuid,
        name,
        f'resrc=cgroup cgroup="/sys/fs/cgroup/machine.slice/{scope(name)}/libvirt/" class=path '
        f'path="{path}" rdev=F3:02 acl=rw',
        reason=reason,
        res=res,
    )


def opens(log: Log, path: str, pid: int = 7000) -> None:
    """A process (not the guest's qemu) opens ``path``."""
    log.syscall(pid, exe="/usr/bin/lspci", extra=(("PATH", f"item=0 name={encode(path)} nametype=NORMAL"),))


def test_hostdev_path_forms() -> None:
    assert hostdev_path("usb", "001.004") == USB
    assert hostdev_path("usb", "USB redirdev") is None  # USB redirection: no host node
    assert hostdev_path("pci", "0000:3b:00.1") is None  # its VFIO group comes from the cgroup ACL
    assert hostdev_path("hostdev", "/dev/sdb") == "/dev/sdb"
    assert hostdev_path("scsi", "scsi_host0:0:0:0") is None


def test_vfio_group_of_a_pci_device_while_the_guest_runs() -> None:
    log = Log()
    grant(log, UUID_A, "web01", VFIO)
    log.start(UUID_A, "web01", 2201)
    log.resource(UUID_A, "web01", 'resrc=dev bus=pci device="0000:3b:00.1"')
    opens(log, VFIO)
    assert last(log) == (UUID_A, BY_DEVICE, "target")
    log.control(UUID_A, "web01", "stop", "shutdown", 0)
    opens(log, VFIO)
    assert last(log) is None


def test_shared_device_nodes_are_nobodys() -> None:
    log = Log()
    for path in ("/dev/null", "/dev/kvm", "/dev/vfio/vfio", "/dev/urandom"):
        grant(log, UUID_A, "web01", path)
    log.start(UUID_A, "web01", 2201)
    for path in ("/dev/null", "/dev/kvm", "/dev/vfio/vfio", "/dev/urandom"):
        opens(log, path)
    assert [libvirt(doc) for doc in documents(log)[-4:]] == [None] * 4


def test_hot_unplug_by_cgroup_deny_and_by_usb_detach() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    grant(log, UUID_A, "web01", VFIO)
    log.resource(UUID_A, "web01", 'resrc=dev bus=usb device="001.004"', reason="attach")
    opens(log, VFIO)
    opens(log, USB)
    grant(log, UUID_A, "web01", VFIO, reason="deny")
    log.resource(UUID_A, "web01", 'resrc=dev bus=usb device="001.004"', reason="detach")
    opens(log, VFIO)
    opens(log, USB)
    got = [libvirt(doc) for doc in documents(log)]
    assert got[-6:-4] == [(UUID_A, BY_DEVICE, "target")] * 2
    assert got[-2:] == [None, None]


def test_failed_grant_teaches_nothing() -> None:
    log = Log()
    log.start(UUID_A, "web01", 2201)
    grant(log, UUID_A, "web01", VFIO, res="failed")
    opens(log, VFIO)
    assert last(log) is None


def test_capability_hostdev_and_failed_start() -> None:
    log = Log()
    log.machine_id(UUID_A, "web01", "s0:c1,c2")
    log.resource(UUID_A, "web01", 'resrc=hostdev disk="/dev/sdc"')
    opens(log, "/dev/sdc")
    assert last(log) == (UUID_A, BY_DEVICE, "target")
    log.control(UUID_A, "web01", "start", "booted", 0, res="failed")
    opens(log, "/dev/sdc")
    assert last(log) is None


def test_device_moves_to_the_next_guest() -> None:
    log = Log()
    grant(log, UUID_A, "web01", VFIO)
    log.start(UUID_A, "web01", 2201)
    log.control(UUID_A, "web01", "stop", "destroyed", 0)
    grant(log, UUID_B, "db", VFIO)
    log.start(UUID_B, "db", 2301, level="s0:c5,c6", disk="/var/lib/libvirt/images/db.qcow2")
    opens(log, VFIO)
    assert last(log) == (UUID_B, BY_DEVICE, "target")


def test_host_reboot_forgets_devices() -> None:
    log = Log()
    grant(log, UUID_A, "web01", VFIO)
    log.start(UUID_A, "web01", 2201)
    log.event(
        ("SYSTEM_BOOT", "pid=1 uid=0 auid=4294967295 ses=4294967295 msg=' comm=\"systemd-update-utmp\" res=success'")
    )
    opens(log, VFIO)
    assert last(log) is None


@pytest.mark.parametrize("running", [True, False])
def test_state_round_trip_keeps_devices_of_running_guests(running: bool) -> None:
    log = Log()
    grant(log, UUID_A, "web01", VFIO)
    log.start(UUID_A, "web01", 2201)
    if not running:
        log.control(UUID_A, "web01", "stop", "shutdown", 0)
    registry = GuestRegistry()
    documents(log, registry)
    state = registry.to_state()
    restored = GuestRegistry.from_state(json.loads(json.dumps(state)))
    assert restored.to_state() == state
    guest = restored.guest(UUID_A)
    assert guest is not None and guest.devices == ([VFIO] if running else [])
    after = Log()
    after.sec, after.serial = log.sec, log.serial
    opens(after, VFIO)
    assert libvirt(documents(after, restored)[-1]) == ((UUID_A, BY_DEVICE, "target") if running else None)
    # The device is still taken back from the restored registry at the stop.
    if running:
        after.control(UUID_A, "web01", "stop", "shutdown", 0)
        opens(after, VFIO)
        assert libvirt(documents(after, GuestRegistry.from_state(state))[-1]) is None


def test_generated_hostdev_guests_attribute_their_vfio_group() -> None:
    """The generator passes a PCI device (cgroup ACL of /dev/vfio/N) to some guests."""
    from forwarder.audit.assemble import Assembler
    from forwarder.audit.record import Record, parse_line
    from forwarder.generate import GeneratorOptions, generate_lines

    registry = GuestRegistry()
    granted = 0
    assembler = Assembler()
    for line in generate_lines(GeneratorOptions(seed=5, records=3000, host_reboots=False)):
        record = parse_line(line.rstrip(b"\n"))
        assert isinstance(record, Record)
        for event in assembler.feed(record):
            registry.observe(event)
            first = event.records[0]
            if first.type == "VIRT_RESOURCE" and "/dev/vfio/" in first.text and "reason=allow" in first.text:
                granted += 1
    assert granted > 0
    held = [path for guest in registry.guests() if guest.active for path in guest.devices]
    assert all(path.startswith("/dev/vfio/") for path in held)
    stopped = [guest for guest in registry.guests() if not guest.active]
    assert all(not guest.devices for guest in stopped)
