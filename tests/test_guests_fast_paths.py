"""The fast paths of guest attribution give what the plain reading of the plans gives.

:class:`GuestRegistry` looks records up through dedicated code for SYSCALL/CWD/PATH, derived keys
remembered per raw value (:mod:`forwarder.virt.index_keys`) and a single read of ordinary
syscall events.  Here an independent, straightforward interpretation of the plans
(``guests._PLANS``: which field of which record is evidence of what) is run on the registry's
state after every event and compared with what :meth:`GuestRegistry.observe` answered, over
generated hypervisor logs and the real logs.
"""

from __future__ import annotations

import random
import re
import threading
from typing import Any

import pytest

from forwarder.audit import values
from forwarder.audit.assemble import Assembler, assemble_lines
from forwarder.audit.record import Event, Record, parse_line
from forwarder.generate import GeneratorOptions, generate_lines
from forwarder.virt import guests as guests_module
from forwarder.virt.guests import GuestRegistry
from forwarder.virt.index_keys import label_keys, path_keys, scope_of, scope_path_key
from forwarder.virt.memo import BoundedMemo
from tests.corpus import all_logs

UUID_A = "6f1c2a7e-3d4b-4e8a-9c1f-2b7d5e9a0c13"
UUID_B = "9a7d2c61-5e3f-4b08-b1d4-c6e8f0a2b357"
UUID_C = "3b9d6c52-2f0e-4c65-a1a4-9f5b1f0e2d11"

_PROFILE = re.compile(r'"?libvirt-([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})')
_LABEL_KINDS = {guests_module._LABEL_SOURCE, guests_module._LABEL_TARGET}
_PID_KINDS = {guests_module._PID_SOURCE, guests_module._PID_TARGET, guests_module._PARENT}
_MAC_KINDS = {guests_module._MAC_SOURCE, guests_module._MAC_TARGET}

#: An attribution as compared here: (uuid, name, method, side).
Answer = list[tuple[str, str | None, str, str]]


def reference_answer(registry: GuestRegistry, event: Event) -> Answer:
    """The guests ``event`` concerns, read field by field from the plans (no tap lookups)."""
    host: Any = registry._hosts.get(event.node)
    guests: dict[str, Any] = host.guests if host is not None else {}
    found: list[tuple[int, Any]] = []
    for record in event.records:
        plan = guests_module._PLANS.get(record.type_id, guests_module._DEFAULT_PLAN)
        for key, kind in plan:
            raw = record.fields.get(key)
            if raw is not None:
                found.extend(_evidence(host, guests, kind, raw))
    found.sort(key=lambda item: item[0])
    answer: Answer = []
    seen: set[str] = set()
    for kind, guest in found:
        if guest.uuid not in seen:
            seen.add(guest.uuid)
            answer.append((guest.uuid, guest.name, *guests_module._KINDS[kind]))
    return answer[: guests_module.MAX_GUESTS_PER_EVENT]


def _evidence(host: Any, guests: dict[str, Any], kind: int, raw: str) -> list[tuple[int, Any]]:
    if kind in _LABEL_KINDS:
        parts = raw.split(":", 3)
        if host is not None and host.by_level and len(parts) == 4:
            guest = host.by_level.get(parts[3])
            return [(kind, guest)] if guest is not None else []
        match = _PROFILE.match(raw)
        if match is None:
            return []
        uuid = match.group(1).lower()
        return [(kind, guests.get(uuid) or guests_module.Guest(uuid))]
    if host is None:
        return []
    if kind in _PID_KINDS:
        guest = host.by_pid.get(raw)
        return [(kind, guest)] if guest is not None else []
    if kind in _MAC_KINDS:
        guest = host.by_mac.get(values.unquote(raw).lower())
        return [(kind, guest)] if guest is not None else []
    path = values.decode_value(raw)
    if kind == guests_module._PATH:
        if not path.startswith("/"):
            return []
        found = [(guests_module._PATH, holder) for holder in host.by_image.get(path, [])]
        if path in host.by_device:
            found.append((guests_module._DEVICE_PATH, host.by_device[path]))
        scope = scope_of(path)
        if scope is not None and scope in host.by_scope:
            found.append((guests_module._SCOPE_PATH, host.by_scope[scope]))
        return found
    assert kind == guests_module._SCOPE_PATH
    path = path if path.startswith("/") else "/" + path
    scope = scope_of(path) if "/machine.slice/" in path else path[1:]
    guest = host.by_scope.get(scope) if scope is not None else None
    return [(kind, guest)] if guest is not None else []


def compare_with_reference(events: list[Event]) -> dict[str, int]:
    """Observe ``events`` in order; after each, the answer must be the reference answer on the
    state the event left (attribution happens after learning and changes nothing, taps aside).
    Returns counts of the events compared and attributed."""
    registry = GuestRegistry()
    counts = {"compared": 0, "attributed": 0}
    for event in events:
        got = [(a.uuid, a.name, a.method, a.side) for a in registry.observe(event)]
        first = event.records[0].type_id
        if first in guests_module._LEARNERS or any(r.type == "ANOM_PROMISCUOUS" for r in event.records):
            continue
        expected = reference_answer(registry, event)
        if not expected and first == guests_module._SYSCALL:
            execve = guests_module._qemu_execve(event.records)
            if execve is not None:  # qemu's execve alone: the guest it starts, by its uuid
                guest = registry.guest(execve[0], event.node)
                assert guest is not None
                expected = [(guest.uuid, guest.name, "uuid", "target")]
        assert got == expected, "\n".join(record.text for record in event.records)
        counts["compared"] += 1
        counts["attributed"] += bool(got)
    return counts


def generated_events(seed: int, security: str, style: str) -> list[Event]:
    options = GeneratorOptions(
        seed=seed,
        records=5000,
        security=security,
        libvirt_style=style,
        mix={"guest": 6.0, "execve": 2.0, "file": 2.0, "network": 1.0, "login": 1.0, "avc": 1.0, "cron": 1.0},
    )
    assembler = Assembler()
    events: list[Event] = []
    for line in generate_lines(options):
        record = parse_line(line)
        assert isinstance(record, Record)
        events.extend(assembler.feed(record))
    events.extend(assembler.flush())
    return events


@pytest.mark.parametrize(
    ("seed", "security", "style"),
    [(11, "selinux", "modern"), (12, "apparmor", "modern"), (13, "dac", "old"), (14, "selinux", "legacy")],
)
def test_generated_logs_answer_as_the_plans_say(seed: int, security: str, style: str) -> None:
    counts = compare_with_reference(generated_events(seed, security, style))
    assert counts["compared"] > 500 and counts["attributed"] > 20, counts


class _Fuzz:
    """A seeded log of random events whose fields take values that name guests or not, in all the
    forms the plans read (pids, levels, profiles, quoted and hex paths, device nodes, scopes,
    MACs), while guests start and stop."""

    DAEMON = "1187"
    GUESTS = (
        (UUID_A, "web01", "s0:c1,c2", "/var/lib/libvirt/images/web01.qcow2", "52:54:00:00:00:0a", "/dev/vfio/41"),
        (UUID_B, "db 01", "s0:c3,c4", "/var/lib/libvirt/images/shared.iso", "52:54:00:00:00:0b", "/dev/vfio/42"),
        (UUID_C, "ci", "s0:c5,c6", "/var/lib/libvirt/images/shared.iso", "52:54:00:00:00:0c", "/dev/sg3"),
    )

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 1000
        self.sec = 1_710_000_000
        self.lines: list[str] = []
        self.pids = [str(3000 + n) for n in range(len(self.GUESTS))]
        self.running = [False] * len(self.GUESTS)

    def event(self, *records: tuple[str, str]) -> None:
        self.serial += 1
        self.sec += 1
        self.lines.extend(f"type={kind} msg=audit({self.sec}.000:{self.serial}): {body}" for kind, body in records)

    def libvirt(self, kind: str, number: int, text: str) -> None:
        uuid, name = self.GUESTS[number][:2]
        self.event(
            (
                kind,
                f"pid={self.DAEMON} uid=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:virtqemud_t:s0 "
                f'msg=\'virt=kvm {text} vm={self.encode(name)} uuid={uuid} exe="/usr/sbin/virtqemud" '
                "hostname=? addr=? terminal=? res=success'",
            )
        )

    def encode(self, text: str) -> str:
        if " " in text or self.rng.random() < 0.3:
            return text.encode().hex().upper()
        return f'"{text}"'

    def scope(self, number: int) -> str:
        return f"machine-qemu\\x2d{number + 1}\\x2d{self.GUESTS[number][1].replace(' ', '')}.scope"

    def start(self, number: int) -> None:
        _, _, level, disk, mac, device = self.GUESTS[number]
        self.pids[number] = str(int(self.pids[number]) + 10)
        self.libvirt(
            "VIRT_MACHINE_ID",
            number,
            f"vm-ctx=system_u:system_r:svirt_t:{level} img-ctx=system_u:object_r:svirt_image_t:{level} model=selinux",
        )
        cgroup = self.encode(f"/sys/fs/cgroup/machine.slice/{self.scope(number)}/libvirt/")
        self.libvirt("VIRT_RESOURCE", number, f"resrc=cgroup reason=deny cgroup={cgroup} class=all")
        self.libvirt(
            "VIRT_RESOURCE", number, f"resrc=cgroup reason=allow cgroup={cgroup} class=path path={self.encode(device)}"
        )
        self.libvirt("VIRT_RESOURCE", number, f'resrc=disk reason=start old-disk="?" new-disk={self.encode(disk)}')
        self.libvirt("VIRT_RESOURCE", number, f'resrc=net reason=start old-net="?" new-net="{mac}"')
        self.libvirt("VIRT_CONTROL", number, f"op=start reason=booted vm-pid={self.pids[number]}")
        self.running[number] = True

    def stop(self, number: int) -> None:
        self.libvirt("VIRT_CONTROL", number, f"op=stop reason=shutdown vm-pid={self.pids[number]}")
        self.running[number] = False

    def pick(self, *choices: str) -> str:
        return self.rng.choice(choices)

    def pid(self) -> str:
        return self.pick(*self.pids, self.DAEMON, "1", str(self.rng.randrange(100, 200)))

    def label(self) -> str:
        uuid, _, level = self.rng.choice(self.GUESTS)[:3]
        return self.pick(
            f"system_u:system_r:svirt_t:{level}",
            f"system_u:object_r:svirt_image_t:{level}",
            "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023",
            "system_u:object_r:bin_t:s0",
            "system_u:object_r:bin_t",
            f"libvirt-{uuid}",
            f"libvirt-{uuid.upper()}",
            "libvirt-0b9d6c52-2f0e-4c65-a1a4-9f5b1f0e2d99",
            f"libvirt-{uuid}:a:b:{level}",
            "unconfined",
        )

    def path(self) -> str:
        number = self.rng.randrange(len(self.GUESTS))
        disk, _, device = self.GUESTS[number][3:]
        return self.encode(
            self.pick(
                disk,
                device,
                f"/sys/fs/cgroup/machine.slice/{self.scope(number)}/libvirt/emulator",
                "/etc/passwd",
                "relative/name",
                "/var/lib/libvirt/images/other.qcow2",
            )
        )

    def mac(self) -> str:
        mac = self.rng.choice(self.GUESTS)[4]
        return self.pick(mac, mac.upper(), "52:54:00:ff:ff:ff")

    def random_event(self) -> None:
        task = "auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3"
        syscall = (
            "SYSCALL",
            f"arch=c000003e syscall=257 success=yes exit=3 a0=1 a1=2 a2=3 a3=4 items=1 ppid={self.pid()} "
            f'pid={self.pid()} {task} comm="x" exe="/usr/bin/x" subj={self.label()} key=(null)',
        )
        sender = f"pid={self.pid()} uid=0 auid=1000 ses=3 subj={self.label()}"
        kind = self.rng.randrange(9)
        if kind == 0:
            paths = [
                (
                    "PATH",
                    f"item={n} name={self.path()} inode=1 dev=fd:00 mode=0100644 obj={self.label()} nametype=NORMAL",
                )
                for n in range(self.rng.randrange(3))
            ]
            self.event(syscall, ("CWD", f"cwd={self.path()}"), *paths, ("PROCTITLE", "proctitle=6C73"))
        elif kind == 1:
            self.event(
                syscall, ("OBJ_PID", f'opid={self.pid()} oauid=-1 ouid=107 oses=-1 obj={self.label()} ocomm="q"')
            )
        elif kind == 2:
            self.event(
                (
                    "AVC",
                    f'avc:  denied  {{ read }} for  pid={self.pid()} comm="q" name={self.path()} '
                    f"scontext={self.label()} tcontext={self.label()} tclass=file permissive=0",
                ),
                syscall,
            )
        elif kind == 3:
            self.event(
                (
                    "AVC",
                    f'apparmor="DENIED" operation="open" profile="{self.label()}" name={self.path()} '
                    f'pid={self.pid()} comm="q" requested_mask="r" denied_mask="r" peer="{self.label()}"',
                ),
                syscall,
            )
        elif kind == 4:
            self.event(
                (
                    "USER_AVC",
                    f"{sender} msg='avc:  denied  {{ start }} for auid=1000 uid=0 gid=0 "
                    f'scontext={self.label()} tcontext={self.label()} tclass=service exe="/x" res=failed\'',
                )
            )
        elif kind == 5:
            self.event(
                ("NETFILTER_PKT", f"mark=0x0 saddr=10.0.0.1 daddr=10.0.0.2 proto=6 smac={self.mac()} dmac={self.mac()}")
            )
        elif kind == 6:
            unit = self.pick(self.scope(self.rng.randrange(len(self.GUESTS))), "sshd.service")
            self.event(("SERVICE_START", f'{sender} msg=\'unit={unit} comm="systemd" exe="/x" res=success\''))
        elif kind == 7:
            self.event(("USER_START", f'{sender} msg=\'op=PAM:session_open acct="bob" exe="/x" res=success\''))
        else:
            self.event(
                (
                    "ANOM_ABEND",
                    f'auid=1000 uid=0 gid=0 ses=3 subj={self.label()} pid={self.pid()} comm="q" sig=11 res=1',
                )
            )

    def log(self, events: int) -> list[str]:
        for _ in range(events):
            if self.rng.random() < 0.05:
                number = self.rng.randrange(len(self.GUESTS))
                (self.stop if self.running[number] else self.start)(number)
            else:
                self.random_event()
        return self.lines


@pytest.mark.parametrize("seed", range(6))
def test_random_events_answer_as_the_plans_say(seed: int) -> None:
    lines = _Fuzz(seed).log(1500)
    counts = compare_with_reference(assemble_lines(line.encode() for line in lines))
    assert counts["compared"] > 1000 and counts["attributed"] > 300, counts


LOGS = all_logs()


@pytest.mark.skipif(not LOGS, reason="no logs (neither fixtures nor the shared corpus)")
def test_real_logs_answer_as_the_plans_say() -> None:
    compared = 0
    for path in LOGS:
        with path.open("rb") as lines:
            compared += compare_with_reference(assemble_lines(lines))["compared"]
    assert compared > 100


# ------------------------------------------------------------------ derived lookup keys


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        ("system_u:system_r:svirt_t:s0:c12,c345", ("s0:c12,c345", None)),
        ("unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023", ("s0-s0:c0.c1023", None)),
        ("system_u:object_r:bin_t", (None, None)),
        (f"libvirt-{UUID_A.upper()}", (None, UUID_A)),
        (f'"libvirt-{UUID_A}"', (None, UUID_A)),
        (f"libvirt-{UUID_A} (enforce)", (None, UUID_A)),
        ("libvirt-not-a-uuid", (None, None)),
        ("/usr/sbin/libvirtd (enforce)", (None, None)),
        (f"libvirt-{UUID_A}:a:b:c", ("c", UUID_A)),
    ],
)
def test_label_keys(raw: str, keys: tuple[str | None, str | None]) -> None:
    assert label_keys(raw) == keys
    assert label_keys(raw) == keys  # remembered: the same answer


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        ('"/var/lib/libvirt/images/web01.qcow2"', ("/var/lib/libvirt/images/web01.qcow2", None)),
        ("/dev/vfio/42", ("/dev/vfio/42", None)),
        ("2F7372762F612062", ("/srv/a b", None)),
        ('"relative/name"', (None, None)),
        ("(null)", (None, None)),
        ('"', (None, None)),
        (
            '"/sys/fs/cgroup/machine.slice/machine-qemu\\x2d1\\x2dweb01.scope/libvirt/emulator"',
            (
                "/sys/fs/cgroup/machine.slice/machine-qemu\\x2d1\\x2dweb01.scope/libvirt/emulator",
                "machine-qemu\\x2d1\\x2dweb01.scope",
            ),
        ),
        ('"/machine.slice/not-a-scope/x"', ("/machine.slice/not-a-scope/x", None)),
    ],
)
def test_path_keys(raw: str, keys: tuple[str | None, str | None]) -> None:
    assert path_keys(raw) == keys
    assert path_keys(raw) == keys


@pytest.mark.parametrize(
    ("raw", "scope"),
    [
        ('"/"', ""),
        ("machine-qemu\\x2d1\\x2dweb01.scope", "machine-qemu\\x2d1\\x2dweb01.scope"),
        ('"/sys/fs/cgroup/machine.slice/machine-lxc\\x2d7\\x2dct.scope"', "machine-lxc\\x2d7\\x2dct.scope"),
        ('"/sys/fs/cgroup/machine.slice/other"', None),
    ],
)
def test_scope_path_key(raw: str, scope: str | None) -> None:
    assert scope_path_key(raw) == scope
    assert scope_path_key(raw) == scope  # None answers are remembered too


def test_bounded_memo_starts_over_when_full() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(max_entries=3, max_chars=10)
    for number in range(10):
        assert memo.remember(str(number), number, 1) == number
        assert len(memo.entries) <= 3
    assert memo.entries == {"9": 9}  # started over at 3 and at 6 and at 9
    memo.remember("wide", 1, 8)
    memo.remember("wider", 2, 8)  # would exceed the characters: starts over
    assert memo.entries == {"wider": 2}
    assert memo.remember("huge", 3, 11) == 3 and "huge" not in memo.entries


def test_bounded_memo_keeps_its_bounds_across_threads() -> None:
    memo: BoundedMemo[int, int] = BoundedMemo(max_entries=50, max_chars=1 << 20)

    def fill(start: int) -> None:
        for number in range(start, start + 5000):
            memo.remember(number, number, 1)

    threads = [threading.Thread(target=fill, args=(n * 10_000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0 < len(memo.entries) <= 50
    assert all(key == value for key, value in memo.entries.items())


# ------------------------------------------------------------------ qemu's execve


def _record(line: str) -> Record:
    record = parse_line(line)
    assert isinstance(record, Record)
    return record


def test_execve_without_uuid_is_remembered_by_its_body() -> None:
    plain = 'argc=3 a0="tar" a1="czf" a2="/srv/backup/logs.tgz"'
    first = _record(f"type=EXECVE msg=audit(1710000000.001:10): {plain}")
    again = _record(f"type=EXECVE msg=audit(1710000001.001:11): {plain}")
    assert not guests_module._may_name_uuid(first)
    assert not guests_module._may_name_uuid(again)
    qemu = _record(f'type=EXECVE msg=audit(1710000002.001:12): argc=3 a0="qemu-kvm" a1="-uuid" a2="{UUID_A}"')
    assert guests_module._may_name_uuid(qemu)
    # a node name may hold the quoted word: the whole line decides, as it always did
    named = _record(f'node="-uuid" type=EXECVE msg=audit(1710000003.001:13): {plain}')
    assert guests_module._may_name_uuid(named)


def _line(sec: int, serial: int, record_type: str, body: str) -> str:
    return f"type={record_type} msg=audit({sec}.000:{serial}): {body}"


def test_qemu_execve_is_learned_before_a_tap_in_the_same_event_is_looked_up() -> None:
    """A SYSCALL event holding a promiscuous switch and qemu's execve: the guest is learned first
    (the event's pid is its qemu), then the tap goes to the guest whose start hinted it."""
    daemon = "1187"
    sender = f"pid={daemon} uid=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:virtqemud_t:s0 msg='virt=kvm "
    tail = ' exe="/usr/sbin/virtqemud" hostname=? addr=? terminal=? res=success\''
    args = ["/usr/libexec/qemu-kvm", "-name", "guest=web02", "-uuid", UUID_B]
    execve = " ".join(f'a{n}="{arg}"' for n, arg in enumerate(args))
    lines = [
        _line(
            1710000000,
            1,
            "VIRT_RESOURCE",
            sender + f'resrc=net reason=open vm="web01" uuid={UUID_A} '
            'net=52:54:00:3b:5f:3d path="/dev/net/tun" rdev=0A:C8' + tail,
        ),
        _line(
            1710000001,
            2,
            "SYSCALL",
            "arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 "
            f"ppid=1 pid={daemon} auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 "
            'tty=(none) ses=4294967295 comm="qemu-kvm" exe="/usr/libexec/qemu-kvm" key=(null)',
        ),
        _line(1710000001, 2, "ANOM_PROMISCUOUS", "dev=vnet7 prom=256 old_prom=0 auid=4294967295 uid=0 gid=0 ses=1"),
        _line(1710000001, 2, "EXECVE", f"argc={len(args)} {execve}"),
        _line(1710000001, 2, "PROCTITLE", "proctitle=71656D75"),
    ]
    registry = GuestRegistry()
    answers = [registry.observe(event) for event in assemble_lines(line.encode() for line in lines)]
    assert [(a.uuid, a.method, a.side) for a in answers[-1]] == [(UUID_B, "pid", "source"), (UUID_A, "tap", "target")]
    guest = registry.guest(UUID_A)
    assert guest is not None and guest.taps == ["vnet7"]
