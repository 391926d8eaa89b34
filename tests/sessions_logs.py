"""Hand-made hypervisor logs for the sessions tests: the edge cases of auvirt's correlation.

Each builder returns the log as bytes.  Lines follow the formats of ``docs/virt-audit.md`` §1;
some are deliberately odd (names needing escapes, fields out of order, timestamps going back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forwarder.virt.index_sessions import HOST_COLUMN

#: 2024-03-11 07:58:00 UTC: the day the hand-made logs start.
T0 = 1_710_143_880

DAEMON_SUBJECT = "system_u:system_r:virtd_t:s0-s0:c0.c1023"
APPARMOR_SUBJECT = "libvirtd (enforce)"

UUID_A = "6f1c2a7e-3d4b-4e8a-9c1f-2b7d5e9a0c13"
UUID_B = "9a7d2c61-5e3f-4b08-b1d4-c6e8f0a2b357"
UUID_C = "3b9d6c52-2f0e-4c65-a1a4-9f5b1f0e2d11"


def hex_name(text: str | bytes) -> str:
    """libaudit's encoding of a value that needs it: upper-case hex of the bytes."""
    data = text.encode() if isinstance(text, str) else text
    return data.hex().upper()


@dataclass
class LogBuilder:
    """Writes records with increasing serials.

    Attributes:
        node: ``node=`` prefix of every line, or ``None``.
        subject: the daemon's ``subj``.
        exe: the daemon's executable.
    """

    node: str | None = None
    subject: str = DAEMON_SUBJECT
    exe: str = '"/usr/sbin/libvirtd"'
    serial: int = 100
    lines: list[str] = field(default_factory=list)

    def _header(self, type_name: str, sec: int, serial: int, msec: int) -> str:
        prefix = f"node={self.node} " if self.node else ""
        return f"{prefix}type={type_name} msg=audit({sec}.{msec:03d}:{serial}): "

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def user(
        self,
        type_name: str,
        sec: int,
        body: str,
        res: str = "success",
        uid: str = "0",
        enriched: str | None = None,
        serial: int | None = None,
        msec: int = 0,
    ) -> int:
        """A user-space record (libvirt's wrapping); returns its serial."""
        number = self.next_serial() if serial is None else serial
        line = (
            self._header(type_name, sec, number, msec)
            + f"pid=1187 uid={uid} auid=4294967295 ses=4294967295 subj={self.subject} "
            + f"msg='{body} exe={self.exe} hostname=? addr=? terminal=? res={res}'"
        )
        if enriched is not None:
            line += "\x1d" + enriched
        self.lines.append(line)
        return number

    def kernel(self, type_name: str, sec: int, body: str, serial: int, msec: int = 0) -> None:
        """A kernel record of event ``serial``."""
        self.lines.append(self._header(type_name, sec, serial, msec) + body)

    def raw(self, line: str) -> None:
        self.lines.append(line)

    # libvirt records -------------------------------------------------------------------------

    def machine_id(self, sec: int, vm: str, uuid: str, ctx: str, model: str = "selinux", res: str = "success") -> int:
        image = ctx.replace("svirt_t", "svirt_image_t").replace("system_r", "object_r")
        model_field = f" model={model}" if model else ""
        return self.user(
            "VIRT_MACHINE_ID", sec, f"virt=kvm vm={vm} uuid={uuid} vm-ctx={ctx} img-ctx={image}{model_field}", res
        )

    def control(self, sec: int, op: str, reason: str, vm: str, uuid: str, pid: str, res: str = "success") -> int:
        return self.user("VIRT_CONTROL", sec, f"virt=kvm op={op} reason={reason} vm={vm} uuid={uuid} vm-pid={pid}", res)

    def resource(
        self, sec: int, resrc: str, reason: str, vm: str, uuid: str, old: str, new: str, res: str = "success"
    ) -> int:
        return self.user(
            "VIRT_RESOURCE",
            sec,
            f"virt=kvm resrc={resrc} reason={reason} vm={vm} uuid={uuid} old-{resrc}={old} new-{resrc}={new}",
            res,
        )

    def cgroup(self, sec: int, reason: str, vm: str, uuid: str, detail: str, res: str = "success") -> int:
        path = '"/sys/fs/cgroup/machine.slice/machine-qemu.scope/libvirt/"'
        return self.user(
            "VIRT_RESOURCE",
            sec,
            f"virt=kvm resrc=cgroup reason={reason} vm={vm} uuid={uuid} cgroup={path} {detail}",
            res,
        )

    def text(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode("utf-8", "surrogateescape")


def _guest_start(log: LogBuilder, sec: int, vm: str, uuid: str, pid: int, level: str | None, disk: str) -> None:
    if level is not None:
        log.machine_id(sec, vm, uuid, f"system_u:system_r:svirt_t:{level}")
    log.cgroup(sec, "deny", vm, uuid, "class=all")
    log.cgroup(sec, "allow", vm, uuid, 'class=path path="/dev/null" rdev=01:03 acl=rw')
    log.cgroup(sec, "allow", vm, uuid, "class=major category=pty maj=88 acl=rw")
    log.resource(sec + 1, "disk", "start", vm, uuid, '"?"', disk)
    log.resource(sec + 1, "net", "start", vm, uuid, '"?"', "52:54:00:12:34:56")
    log.resource(sec + 1, "mem", "start", vm, uuid, "0", "1048576")
    log.resource(sec + 1, "vcpu", "start", vm, uuid, "0", "2")
    log.control(sec + 2, "start", "booted", vm, uuid, str(pid))


def lifecycle_log() -> bytes:
    """Sessions, hot-plug, failed starts, crashes without stops, reboots, duplicates."""
    log = LogBuilder()
    web = '"web01"'
    _guest_start(log, T0, web, UUID_A, 2201, "s0:c112,c877", '"/var/lib/libvirt/images/web01.qcow2"')
    # hot-plug: attach and detach a disk, a NIC, memory and vcpu changes, a failed detach
    log.resource(T0 + 600, "disk", "attach", web, UUID_A, '"?"', '"/srv/extra.img"')
    log.resource(T0 + 900, "disk", "detach", web, UUID_A, '"/srv/extra.img"', '"?"')
    log.resource(T0 + 950, "net", "attach", web, UUID_A, '"?"', "52:54:00:aa:bb:cc")
    log.resource(T0 + 990, "net", "detach", web, UUID_A, "52:54:00:aa:bb:cc", '"?"', res="failed")
    log.resource(T0 + 1000, "mem", "update", web, UUID_A, "1048576", "2097152")
    log.resource(T0 + 1010, "vcpu", "update", web, UUID_A, "2", "4")
    log.resource(T0 + 1020, "rng", "attach", web, UUID_A, '"?"', '"/dev/urandom"')
    log.resource(T0 + 1030, "disk", "attach", web, UUID_A, '"?"', '"/srv/failed.img"', res="failed")
    # a second guest with the same name and another uuid; a failed start without security labels
    _guest_start(log, T0 + 1200, web, UUID_B, 2300, "s0:c5,c6", '"/var/lib/libvirt/images/web01-b.qcow2"')
    log.control(T0 + 1500, "stop", "shutdown", web, UUID_B, "0")
    log.control(T0 + 1501, "stop", "shutdown", web, UUID_B, "0")  # duplicate stop: dropped
    log.control(T0 + 1600, "start", "booted", web, UUID_B, "0", res="failed")
    # a stop long after (days) and a stop without start
    log.control(T0 + 2 * 86400 + 3 * 3600 + 17 * 60, "stop", "destroyed", web, UUID_A, "-1")
    log.control(T0 + 2 * 86400 + 4000, "stop", "shutdown", '"ghost"', UUID_C, "0")
    # crash: a guest starts, the host reboots without a stop, the guest starts again
    db = hex_name("db 01")
    _guest_start(log, T0 + 3 * 86400, db, UUID_C, 4000, None, '"/srv/db.img"')
    log.user("SYSTEM_BOOT", T0 + 3 * 86400 + 500, 'comm="systemd-update-utmp"')
    log.user("DAEMON_START", T0 + 3 * 86400 + 501, "op=start ver=3.0.9 format=enriched")
    _guest_start(log, T0 + 3 * 86400 + 600, db, UUID_C, 4100, None, '"/srv/db.img"')
    # failed start with no labels walks back into the open session and closes its resources
    log.control(T0 + 3 * 86400 + 700, "start", "booted", db, UUID_C, "-1", res="failed")
    # other ops and odd records that auvirt ignores or skips
    log.user("VIRT_CONTROL", T0 + 3 * 86400 + 800, f"virt=lxc op=init vm={db} uuid={UUID_C} vm-pid=4200 init-pid=4201")
    log.user("VIRT_CONTROL", T0 + 3 * 86400 + 801, f"virt=kvm op=start reason=booted uuid={UUID_A} vm={web} vm-pid=9")
    log.user("VIRT_CONTROL", T0 + 3 * 86400 + 802, f"virt=kvm reason=booted vm={web} uuid={UUID_A} vm-pid=9")
    log.user("VIRT_RESOURCE", T0 + 3 * 86400 + 803, f"virt=kvm reason=start vm={web} uuid={UUID_A} old-disk=x")
    log.user("VIRT_RESOURCE", T0 + 3 * 86400 + 804, f"virt=kvm resrc=dev reason=attach vm={web} uuid={UUID_A} bus=pci")
    log.machine_id(T0 + 3 * 86400 + 805, web, UUID_A, "+107:+107", model="dac")
    log.machine_id(T0 + 3 * 86400 + 806, '"nomodel"', UUID_A, "system_u:system_r:svirt_t:s0:c1,c2", model="")
    return log.text()


def names_log() -> bytes:
    """Guest names and values that need libauparse's decoding and escaping rules."""
    log = LogBuilder(node="hv-01")
    names = [
        hex_name("überlange-名前-mit-vielen-bytes"),  # UTF-8 cut at 22 bytes
        hex_name(b"tab\there\nnewline"),  # control bytes -> \ooo
        hex_name('quote"name'),
        '"CAFE"',  # quoted hex-looking text stays text
        "rawname",  # unquoted non-hex: as written
        "00414243",  # leading 00: abstract-socket rule
        "41424",  # odd number of hex digits
        "4142zz",  # leading hex digits only
        '"unterminated',
        "(null)",
        "A",  # a single hex digit
    ]
    uuids = [f"00000000-0000-4000-8000-{index:012d}" for index in range(len(names))]
    for index, (name, uuid) in enumerate(zip(names, uuids, strict=True)):
        sec = T0 + index * 100
        log.machine_id(sec, name, uuid, f"system_u:system_r:svirt_t:s0:c{index},c{index + 100}")
        log.resource(sec, "disk", "start", name, uuid, '"?"', hex_name(f"/images/{index} disk.img"))
        log.control(sec + 1, "start", "booted", name, uuid, str(5000 + index))
        if index % 2:
            log.control(sec + 50, "stop", "shutdown", name, uuid, "0")
    # a name too long for the column, stopped after a negative interval (timestamps go back)
    log.control(T0 + 5000, "start", "booted", '"a-very-long-guest-name-for-columns"', UUID_A, "77")
    log.control(T0 + 4000, "stop", "shutdown", '"a-very-long-guest-name-for-columns"', UUID_A, "0")
    return log.text()


def users_log() -> bytes:
    """User ids: ENRICHED names, the host's passwd, unset, unknown, odd numbers."""
    log = LogBuilder()
    cases = [
        ("0", None),
        ("0", 'UID="qemu-daemon-user-long" AUID="unset"'),
        ("4294967295", None),
        ("99999", None),
        ("3000000000", None),
        ("abc", None),
        ("-1", None),
        ("1", None),
        ("107", 'UID="unknown-107" AUID="unset"'),
        ("65534", None),
        ("18446744073709551616", None),
        ("5", 'AUID="unset" UID=plain'),
    ]
    for index, (uid, enriched) in enumerate(cases):
        uuid = f"11111111-0000-4000-8000-{index:012d}"
        log.user(
            "VIRT_CONTROL",
            T0 + index * 60,
            f'virt=kvm op=start reason=booted vm="user{index}" uuid={uuid} vm-pid={100 + index}',
            uid=uid,
            enriched=enriched,
        )
    return log.text()


def security_log() -> bytes:
    """AVCs and anomalies: SELinux levels (stale and reused), AppArmor double attribution."""
    log = LogBuilder()
    web, db = '"web01"', '"db01"'
    _guest_start(log, T0, web, UUID_A, 2201, "s0:c1,c2", '"/images/web.img"')
    # anomaly right after the start: attributed by pid
    serial = log.next_serial()
    log.kernel(
        "ANOM_ABEND",
        T0 + 10,
        "auid=4294967295 uid=107 gid=107 ses=4294967295 "
        'subj=system_u:system_r:svirt_t:s0:c1,c2 pid=2201 comm="qemu-kvm" exe="/usr/bin/qemu-kvm" sig=11 res=1',
        serial,
    )
    # an AVC of the guest's process (source level), with SYSCALL and PROCTITLE
    serial = log.next_serial()
    log.kernel(
        "AVC",
        T0 + 20,
        'avc:  denied  { read write } for  pid=2201 comm="qemu-kvm" name="disk.img" '
        'dev="dm-0" ino=42 scontext=system_u:system_r:svirt_t:s0:c1,c2 '
        "tcontext=system_u:object_r:svirt_image_t:s0:c3,c4 tclass=file permissive=0",
        serial,
    )
    log.kernel(
        "SYSCALL",
        T0 + 20,
        "arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=1 a2=2 a3=0 "
        "items=1 ppid=1 pid=2201 auid=4294967295 uid=107 gid=107 euid=107 suid=107 fsuid=107 egid=107 "
        'sgid=107 fsgid=107 tty=(none) ses=4294967295 comm="qemu-kvm" exe="/usr/bin/qemu-kvm" '
        "subj=system_u:system_r:svirt_t:s0:c1,c2 key=(null)",
        serial,
    )
    log.kernel("PROCTITLE", T0 + 20, "proctitle=71656D75", serial)
    # anomaly now: the newest entry is the AVC, so auvirt's loop misses it
    serial = log.next_serial()
    log.kernel(
        "ANOM_PROMISCUOUS", T0 + 30, "dev=vnet0 prom=256 old_prom=0 auid=4294967295 uid=0 gid=0 ses=4294967295", serial
    )
    log.kernel(
        "SYSCALL",
        T0 + 30,
        "arch=c000003e syscall=16 success=yes exit=0 a0=1f a1=89a2 a2=7ffd a3=0 items=0 "
        "ppid=1 pid=1187 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 "
        'tty=(none) ses=4294967295 comm="libvirtd" exe="/usr/sbin/libvirtd" '
        "subj=system_u:system_r:virtd_t:s0-s0:c0.c1023 key=(null)",
        serial,
    )
    log.kernel("PROCTITLE", T0 + 30, "proctitle=6C69627669727464", serial)
    # relabel AVCs (context column), an AVC without SYSCALL (dropped), a stale label
    for sec, perm in ((T0 + 40, "relabelfrom"), (T0 + 41, "relabelto")):
        serial = log.next_serial()
        log.kernel(
            "AVC",
            sec,
            f'avc:  denied  {{ {perm} }} for  pid=1187 comm="libvirtd" name="web.img" '
            "scontext=system_u:system_r:svirt_t:s0:c1,c2 tcontext=system_u:object_r:svirt_image_t:s0:c1,c2 "
            "tclass=file permissive=0",
            serial,
        )
        log.kernel(
            "SYSCALL",
            sec,
            "arch=c000003e syscall=188 success=no exit=-13 pid=1187 auid=4294967295 uid=0 "
            'comm="libvirtd" exe="/usr/sbin/libvirtd" key=(null)',
            serial,
        )
    serial = log.next_serial()
    log.kernel(
        "AVC",
        T0 + 50,
        'avc:  denied  { open } for  pid=2201 comm="qemu-kvm" path="/x" '
        "scontext=system_u:system_r:svirt_t:s0:c1,c2 tcontext=system_u:object_r:etc_t:s0 tclass=file "
        "permissive=0",
        serial,
    )
    log.control(T0 + 100, "stop", "shutdown", web, UUID_A, "0")
    # the stale level still maps to web01 after its stop
    serial = log.next_serial()
    log.kernel(
        "AVC",
        T0 + 110,
        'avc:  denied  { getattr } for  pid=1 comm="x" name="y" '
        "scontext=system_u:system_r:svirt_t:s0:c1,c2 tcontext=system_u:object_r:etc_t:s0 tclass=file",
        serial,
    )
    log.kernel("SYSCALL", T0 + 110, 'arch=c000003e syscall=4 success=no exit=-13 pid=1 uid=4294967295 comm="x"', serial)
    # AppArmor: the profile names db01, the object is web02's open disk -> two entries
    log.subject = APPARMOR_SUBJECT
    _guest_start(log, T0 + 200, db, UUID_B, 3300, None, '"/images/db.img"')
    log.machine_id(T0 + 199, db, UUID_B, f"libvirt-{UUID_B}", model="apparmor")
    _guest_start(log, T0 + 210, '"web02"', UUID_C, 3400, None, '"/images/shared.img"')
    serial = log.next_serial()
    log.kernel(
        "AVC",
        T0 + 220,
        f'apparmor="DENIED" operation="open" profile="libvirt-{UUID_B}" '
        'name="/images/shared.img" pid=3300 comm="qemu-system-x86" requested_mask="r" denied_mask="r" '
        "fsuid=64055 ouid=64055",
        serial,
    )
    log.kernel(
        "SYSCALL",
        T0 + 220,
        "arch=c000003e syscall=257 success=no exit=-13 pid=3300 uid=64055 "
        'comm="qemu-system-x86" exe="/usr/bin/qemu-system-x86_64"',
        serial,
    )
    serial = log.next_serial()
    log.kernel(
        "AVC",
        T0 + 230,
        'apparmor="STATUS" operation="profile_replace" profile="unconfined" '
        f'name="libvirt-{UUID_B}" pid=3299 comm="apparmor_parser"',
        serial,
    )
    log.kernel(
        "SYSCALL", T0 + 230, 'arch=c000003e syscall=1 success=yes exit=0 pid=3299 uid=0 comm="apparmor_parser"', serial
    )
    # an anomaly of db01's pid while the newest entry is web02's start: missed
    serial = log.next_serial()
    log.kernel(
        "ANOM_ABEND",
        T0 + 240,
        "auid=4294967295 uid=64055 gid=64055 ses=4294967295 subj=libvirt-x (enforce) "
        'pid=3300 comm="qemu" exe="/usr/bin/qemu" sig=6 res=1',
        serial,
    )
    # web02's pid right after its own start... but the AVC entries came in between: missed too;
    # a user-space anomaly with a subject level
    log.user("ANOM_LOGIN_FAILURES", T0 + 250, 'pam_faillock uid=1000 exe="/usr/bin/login"', uid="0")
    return log.text()


def grouping_log() -> bytes:
    """Timestamps going back, events waiting for a timeout, two nodes with one serial, sec 0."""
    log = LogBuilder()
    web = '"web01"'
    # an AVC without PROCTITLE stays open until a line 2 s newer: later events wait for it
    log.machine_id(T0, web, UUID_A, "system_u:system_r:svirt_t:s0:c7,c8")
    log.kernel(
        "AVC",
        T0,
        'avc:  denied  { read } for  pid=1 comm="x" name="a" '
        "scontext=system_u:system_r:svirt_t:s0:c7,c8 tcontext=system_u:object_r:etc_t:s0 tclass=file",
        900,
    )
    log.control(T0 + 1, "start", "booted", web, UUID_A, "10")
    log.kernel("SYSCALL", T0, 'arch=c000003e syscall=2 success=no exit=-13 pid=1 uid=0 comm="x"', 900)
    log.control(T0 - 50, "stop", "shutdown", web, UUID_A, "0")  # older stamp, file order
    log.control(T0 + 5, "start", "booted", web, UUID_A, "11")
    log.raw("garbage line without a header")
    log.raw(
        'type=VIRT_CONTROL msg=audit(0.000:5): pid=1 uid=0 msg=\'virt=kvm op=start reason=booted vm="zero" '
        f'uuid={UUID_B} vm-pid=1 exe="/x" hostname=? addr=? terminal=? res=success\''
    )
    for node in ("hv-a", "hv-b"):
        log.raw(
            f"node={node} type=VIRT_CONTROL msg=audit({T0 + 9}.500:777): pid=1 uid=0 msg='virt=kvm op=start "
            f'reason=booted vm="{node}-guest" uuid={UUID_C} vm-pid=12 exe="/x" hostname=? addr=? terminal=? '
            "res=success'"
        )
    log.control(T0 + 86400 * 40, "stop", "shutdown", '"hv-b-guest"', UUID_C, "0")
    return log.text()


HAND_MADE_LOGS = {
    "lifecycle": lifecycle_log,
    "names": names_log,
    "users": users_log,
    "security": security_log,
    "grouping": grouping_log,
}


def host_lines(text: bytes, host: str) -> bytes:
    """One host's lines of ``sessions --index``'s text output, without the host column and the
    migration lines (proof lines follow their entry): what ``sessions --file`` prints for that
    host's log."""
    kept: list[bytes] = []
    keep = False
    width = HOST_COLUMN[0] + 1
    for line in text.splitlines(keepends=True):
        if line.startswith(b"    Proof:") or line == b"\n":
            if keep:
                kept.append(line)
            continue
        keep = line[: HOST_COLUMN[0]].rstrip() == host.encode() and not line[width:].startswith(b"migr ")
        if keep:
            kept.append(line[width:])
    return b"".join(kept)
