"""Tests of the hypervisor audit-log generator (``forwarder.generate``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tracemalloc
from collections import Counter, defaultdict
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest

from forwarder.audit.record import Malformed, Record, parse_line
from forwarder.generate import GeneratorOptions, generate_lines, write_log
from forwarder.generate.__main__ import main as cli_main
from forwarder.generate.encoding import needs_hex
from forwarder.generate.libvirt import NON_ASCII_NAMES, PLAIN_NAMES, QUOTED_NAMES, SPACED_NAMES

ALL_NAMES = {*PLAIN_NAMES, *SPACED_NAMES, *NON_ASCII_NAMES, *QUOTED_NAMES}
ROOT = Path(__file__).resolve().parent.parent


@cache
def generated(
    seed: int = 1,
    records: int = 3000,
    security: str = "selinux",
    style: str = "modern",
    enriched: bool = False,
    node: str | None = None,
    reboots: bool = True,
) -> tuple[bytes, ...]:
    options = GeneratorOptions(
        seed=seed,
        records=records,
        security=security,
        libvirt_style=style,
        enriched=enriched,
        node=node,
        host_reboots=reboots,
    )
    return tuple(generate_lines(options))


def parsed(lines: tuple[bytes, ...]) -> list[Record]:
    records = []
    for line in lines:
        result = parse_line(line)
        assert not isinstance(result, Malformed), (result.reason, line[:200])
        records.append(result)
    return records


def events(records: list[Record]) -> dict[tuple[str | None, int, int, int], list[Record]]:
    """Records grouped by event key, in file order (interleaved events are put back together)."""
    grouped: dict[tuple[str | None, int, int, int], list[Record]] = {}
    for record in records:
        grouped.setdefault(record.key, []).append(record)
    return grouped


def message_fields(record: Record) -> dict[str, str]:
    assert record.message is not None
    return dict(re.findall(r"([\w-]+)=('[^']*'|\"[^\"]*\"|\S+)", record.message))


# ---------------------------------------------------------------- determinism and size


def test_same_options_give_same_bytes_and_seeds_differ() -> None:
    first = b"".join(generate_lines(GeneratorOptions(seed=7, records=2000)))
    again = b"".join(generate_lines(GeneratorOptions(seed=7, records=2000)))
    other = b"".join(generate_lines(GeneratorOptions(seed=8, records=2000)))
    assert first == again
    assert first != other


@pytest.mark.parametrize("target", [0, 500, 2000, 10_000])
def test_record_count_is_close_to_target(target: int) -> None:
    count = sum(1 for _ in generate_lines(GeneratorOptions(seed=3, records=target)))
    if target == 0:
        assert count == 0
    else:
        assert target <= count <= target * 1.03 + 150


@pytest.mark.parametrize(
    ("security", "style", "enriched", "node"),
    [
        ("selinux", "modern", False, None),
        ("selinux", "old", True, "kvm01"),
        ("apparmor", "modern", True, None),
        ("apparmor", "legacy", False, "kvm-02.example.net"),
        ("dac", "legacy", False, None),
        ("none", "old", True, None),
    ],
)
def test_every_line_is_one_parsable_record(
    security: str, style: str, enriched: bool, node: str | None
) -> None:
    lines = generated(seed=2, security=security, style=style, enriched=enriched, node=node)
    for line in lines:
        assert line.endswith(b"\n") and line.count(b"\n") == 1
    records = parsed(lines)
    assert all(record.type_id > 0 for record in records)
    assert all(record.node == node for record in records)
    assert all(not record.duplicates for record in records), [r.text for r in records if r.duplicates][:2]
    assert records[0].type == "DAEMON_START"


def test_enriched_format() -> None:
    raw = parsed(generated(seed=4))
    enriched = parsed(generated(seed=4, enriched=True, node="hv1"))
    assert all("\x1d" not in record.text for record in raw)
    assert len(raw) == len(enriched)
    for record in enriched:
        assert record.text.startswith("node=hv1 type=")
        has_ids = bool({"uid", "auid", "ouid", "fsuid", "saddr"} & set(record.fields))
        assert ("\x1d" in record.text) == has_ids, record.text[:200]
        if record.type == "SYSCALL":
            assert record.enriched["ARCH"] == "x86_64"
            assert record.enriched["SYSCALL"] in {
                "execve",
                "openat",
                "connect",
                "accept4",
                "bind",
                "unlinkat",
                "chmod",
                "rename",
                "init_module",
                "finit_module",
                "kill",
                "setuid",
                "ioctl",
                "sendto",
                "write",
            }
            assert record.enriched["AUID"] in {"unset", "root", "alice", "bob", "carol"}
        if record.type == "SOCKADDR":
            assert record.enriched["SADDR"].startswith("{ ")
    daemon = enriched[0]
    assert "format=enriched" in daemon.text


# ---------------------------------------------------------------- kernel records

KERNEL_ORDER = ["SYSCALL", "EXECVE", "KERN_MODULE", "SOCKADDR", "OBJ_PID", "CWD", "PATH", "PROCTITLE"]
BEFORE_SYSCALL = {"AVC", "CONFIG_CHANGE", "LOGIN", "ANOM_PROMISCUOUS"}


def test_syscall_events_follow_kernel_record_order() -> None:
    grouped = events(parsed(generated(seed=5, records=6000)))
    checked = Counter()
    for records in grouped.values():
        types = [record.type for record in records]
        if "SYSCALL" not in types:
            continue
        head = types[: types.index("SYSCALL")]
        assert set(head) <= BEFORE_SYSCALL, types
        tail = types[types.index("SYSCALL") :]
        positions = [KERNEL_ORDER.index(t) for t in tail]
        assert positions == sorted(positions), types
        assert types[-1] == "PROCTITLE", types
        syscall = records[types.index("SYSCALL")]
        paths = [record for record in records if record.type == "PATH"]
        assert int(syscall.fields["items"]) == len(paths)
        assert [int(p.fields["item"]) for p in paths] == list(range(len(paths)))
        success = syscall.fields["success"]
        assert (success == "yes") == (not syscall.fields["exit"].startswith("-")), syscall.text
        assert syscall.fields["arch"] == "c000003e"
        checked[syscall.fields["syscall"]] += 1
        assert len({(r.sec, r.msec) for r in records}) == 1
    # execve, openat, connect, accept4, bind, unlinkat, chmod, rename, kill, setuid, ioctl all appear
    for number in ("59", "257", "42", "288", "49", "263", "90", "82", "62", "105", "16"):
        assert checked[number] > 0, number


def test_path_nametypes_keys_and_errors() -> None:
    records = parsed(generated(seed=5, records=6000))
    nametypes = Counter(r.fields.get("nametype") for r in records if r.type == "PATH")
    assert {"NORMAL", "PARENT", "CREATE", "DELETE"} <= set(nametypes)
    keys = Counter(r.fields["key"] for r in records if r.type == "SYSCALL")
    assert keys["(null)"] > 0 and keys['"exec"'] > 0
    assert any(re.fullmatch(r"(?:[0-9A-F]{2})+", key) and "01" in key for key in keys)  # multi-key hex
    exits = {r.fields["exit"] for r in records if r.type == "SYSCALL"}
    assert "-13" in exits
    proctitles = [r.fields["proctitle"] for r in records if r.type == "PROCTITLE"]
    assert any(p.startswith('"') for p in proctitles) and any(
        re.fullmatch(r"[0-9A-F]+", p) for p in proctitles
    )
    for value in proctitles:
        if not value.startswith('"'):
            assert len(value) <= 256  # 128 bytes of command line at most


def test_execve_arguments_are_complete_even_when_split() -> None:
    grouped = events(parsed(generated(seed=6, records=20_000)))
    long_argument = many_records = False
    for records in grouped.values():
        execve = [r for r in records if r.type == "EXECVE"]
        if not execve:
            continue
        argc = int(execve[0].fields["argc"])
        indices = set()
        for record in execve:
            for key in record.fields:
                match = re.fullmatch(r"a(\d+)(?:\[\d+\]|_len)?", key)
                if match:
                    indices.add(int(match.group(1)))
            if any(key.endswith("_len") for key in record.fields):
                long_argument = True
                name = next(key for key in record.fields if key.endswith("_len"))[:-4]
                chunks = "".join(v for r in execve for k, v in r.fields.items() if k.startswith(name + "["))
                assert len(bytes.fromhex(chunks)) == int(record.fields[name + "_len"])
        assert indices == set(range(argc))
        many_records |= len(execve) > 1 and not any("_len" in key for r in execve for key in r.fields)
        assert all(len(r.text) < 8000 for r in execve)
    assert long_argument and many_records


def test_sockaddr_families() -> None:
    records = parsed(generated(seed=5, records=6000, enriched=True))
    families = {r.enriched["SADDR"].split()[1] for r in records if r.type == "SOCKADDR"}
    assert {"saddr_fam=inet", "saddr_fam=inet6", "saddr_fam=local", "fam=netlink"} <= families
    for record in records:
        if record.type == "SOCKADDR" and "saddr_fam=inet " in record.enriched["SADDR"]:
            raw = bytes.fromhex(record.fields["saddr"])
            port = int.from_bytes(raw[2:4], "big")
            assert f"lport={port} " in record.enriched["SADDR"]
            assert f"laddr={'.'.join(str(b) for b in raw[4:8])} " in record.enriched["SADDR"]


def test_events_interleave_and_serials_grow() -> None:
    records = parsed(generated(seed=5, records=6000))
    seen: set[tuple[str | None, int, int, int]] = set()
    last_key = None
    split = 0
    last_serial = 0
    last_time = (0, 0)
    for record in records:
        if record.key != last_key and record.key in seen:
            split += 1
        if record.key not in seen:
            seen.add(record.key)
            if record.type == "DAEMON_START":
                last_serial = 0
            elif record.type != "DAEMON_END":
                assert record.serial > last_serial
                last_serial = record.serial
            assert (record.sec, record.msec) >= last_time
            last_time = (record.sec, record.msec)
        last_key = record.key
    assert split > 0


def test_no_interleave_writes_events_contiguously() -> None:
    lines = tuple(generate_lines(GeneratorOptions(seed=5, records=3000, interleave=False)))
    keys = [(r.sec, r.msec, r.serial) for r in parsed(lines)]
    changes = sum(1 for a, b in pairwise(keys) if a != b)
    assert changes + 1 == len(set(keys))


# ---------------------------------------------------------------- user space and host


def test_user_space_messages() -> None:
    records = parsed(generated(seed=5, records=6000))
    types = Counter(r.type for r in records)
    for name in (
        "USER_AUTH",
        "USER_ACCT",
        "CRED_ACQ",
        "USER_START",
        "USER_END",
        "CRED_DISP",
        "USER_LOGIN",
        "USER_LOGOUT",
        "USER_CMD",
        "LOGIN",
        "SERVICE_START",
        "SERVICE_STOP",
        "SYSTEM_BOOT",
        "SYSTEM_RUNLEVEL",
    ):
        assert types[name] > 0, name
    for record in records:
        if record.type.startswith(("USER_", "CRED_")) and record.type != "USER_AVC":
            assert record.message is not None and record.message.endswith(("res=success", "res=failed"))
            assert {"pid", "uid", "auid", "ses", "subj"} <= set(record.fields)
        if record.type == "USER_CMD":
            cmd = record.fields["cmd"]
            text = cmd[1:-1] if cmd.startswith('"') else bytes.fromhex(cmd).decode()
            assert text and (cmd.startswith('"') != needs_hex(text))
    assert any(r.type == "USER_LOGIN" and r.fields["res"] == "failed" for r in records)


def test_reboots_clean_and_crash() -> None:
    clean = Counter(r.type for r in parsed(generated(seed=1, records=3000)))
    assert clean["DAEMON_START"] == 2 and clean["SYSTEM_SHUTDOWN"] == 1 and clean["DAEMON_END"] == 1
    crash_records = parsed(generated(seed=0, records=3000))
    crash = Counter(r.type for r in crash_records)
    assert crash["DAEMON_START"] == 2 and crash["SYSTEM_BOOT"] == 2 and crash["SYSTEM_SHUTDOWN"] == 0
    # guests running at the crash never get a stop record
    second_boot = [i for i, r in enumerate(crash_records) if r.type == "DAEMON_START"][1]
    state: dict[str, str] = {}
    for record in crash_records[:second_boot]:
        if record.type == "VIRT_CONTROL" and record.fields["res"] == "success":
            state[record.fields["uuid"]] = record.fields["op"]
    assert "start" in state.values()
    none = Counter(r.type for r in parsed(generated(seed=1, records=3000, reboots=False)))
    assert none["DAEMON_START"] == 1 and none["SYSTEM_BOOT"] == 1


def test_daemon_start_format() -> None:
    first = parsed(generated(seed=2))[0]
    assert re.fullmatch(
        r"op=start ver=3\.0\.9 format=raw kernel=\S+ auid=4294967295 pid=\d+ uid=0 ses=4294967295 "
        r"subj=system_u:system_r:auditd_t:s0 res=success",
        first.text.split("): ", 1)[1],
    )


# ---------------------------------------------------------------- libvirt (docs/virt-audit.md §1)

CONTROL = re.compile(
    r"virt=kvm op=(start|stop) reason=(\S+) vm=(\S+) uuid=([0-9a-f-]{36}) vm-pid=(-?\d+) "
    r'exe="/usr/sbin/(?:libvirtd|virtqemud)" hostname=\? addr=\? terminal=\? res=(success|failed)$'
)


def decode_vm(value: str) -> str:
    if value.startswith('"'):
        return value[1:-1]
    return bytes.fromhex(value).decode("utf-8")


@pytest.mark.parametrize("style", ["modern", "legacy"])
def test_virt_control_fields(style: str) -> None:
    records = parsed(generated(seed=8, records=8000, style=style))
    reasons: dict[str, set[str]] = defaultdict(set)
    names_by_uuid: dict[str, str] = {}
    stopped_pid = "0" if style == "modern" else "-1"
    for record in records:
        if record.type != "VIRT_CONTROL":
            continue
        assert record.message is not None
        match = CONTROL.match(record.message)
        assert match, record.message
        op, reason, vm, uuid, pid, res = match.groups()
        reasons[op].add(reason)
        name = decode_vm(vm)
        assert name in ALL_NAMES
        assert vm.startswith('"') != needs_hex(name)
        names_by_uuid[uuid] = name
        if op == "start" and res == "success":
            assert int(pid) > 0
        else:
            assert pid == stopped_pid
        assert record.fields["uid"] == "0" and record.fields["auid"] == "4294967295"
        assert record.fields["ses"] == "4294967295"
    assert {"booted", "migrated", "restored"} <= reasons["start"]
    assert {"shutdown", "destroyed", "migrated"} <= reasons["stop"]
    assert any(needs_hex(name) for name in names_by_uuid.values())
    assert len(set(names_by_uuid.values())) < len(names_by_uuid)  # two guests share a name


def test_guest_start_sequence_selinux() -> None:
    records = parsed(generated(seed=8, records=8000))
    mcs_by_uuid: dict[str, list[str]] = defaultdict(list)
    sequences: dict[str, list[str]] = defaultdict(list)
    rank = {"MACHINE_ID": 0, "cgroup": 1, "open": 2, "resource": 3}
    starts = 0
    for record in records:
        if not record.type.startswith("VIRT_"):
            continue
        fields = message_fields(record)
        sequence = sequences[fields["uuid"]]
        if record.type == "VIRT_MACHINE_ID":
            if fields["model"] == "selinux":
                level = fields["vm-ctx"].split(":", 3)[3]
                assert re.fullmatch(r"s0:c\d+,c\d+", level)
                assert fields["img-ctx"] == f"system_u:object_r:svirt_image_t:{level}"
                mcs_by_uuid[fields["uuid"]].append(level)
                sequence[:] = ["MACHINE_ID"]
            else:
                assert fields["model"] == "dac" and fields["vm-ctx"] == "+107:+107"
        elif record.type == "VIRT_RESOURCE":
            if fields["resrc"] == "cgroup":
                assert fields["cgroup"].startswith('"/sys/fs/cgroup/machine.slice/machine-qemu')
                assert fields["class"] in {"all", "path", "major"}
                if fields["class"] == "major":
                    assert fields["category"] == "pty" and fields["maj"] == "88" and fields["acl"] == "rw"
                if fields["class"] == "path":
                    assert re.fullmatch(r"[0-9A-F]{2}:[0-9A-F]{2}", fields["rdev"])
                sequence.append("cgroup")
            elif fields["reason"] == "open":
                assert fields["path"] in {'"/dev/net/tun"', '"/dev/vhost-net"'}
                assert fields["rdev"] in {"0A:C8", "0A:EE"}
                assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", fields["net"])
                sequence.append("open")
            elif fields["reason"] == "start":
                sequence.append("resource")
        elif fields["op"] == "start" and fields["res"] == "success":
            ranks = [rank[step] for step in sequence]
            assert sequence[0] == "MACHINE_ID" and ranks == sorted(ranks), sequence
            assert {"cgroup", "open", "resource"} <= set(sequence)
            starts += 1
            sequence.clear()
    assert starts > 3
    assert any(len(set(levels)) > 1 for levels in mcs_by_uuid.values())


def test_resource_kinds_and_hotplug() -> None:
    records = parsed(generated(seed=6, records=20_000))
    kinds: Counter[tuple[str, str]] = Counter()
    for record in records:
        if record.type != "VIRT_RESOURCE":
            continue
        fields = message_fields(record)
        kinds[(fields["resrc"], fields["reason"])] += 1
        if fields["resrc"] == "disk":
            for key in ("old-disk", "new-disk"):
                value = fields[key]
                if not value.startswith('"'):
                    assert needs_hex(bytes.fromhex(value).decode())
        if fields["resrc"] == "dev":
            assert fields["bus"] == "pci" and re.fullmatch(r'"0000:[0-9a-f]{2}:00\.\d"', fields["device"])
    for kind in [
        ("disk", "start"),
        ("net", "start"),
        ("net", "open"),
        ("mem", "start"),
        ("vcpu", "start"),
        ("dev", "start"),
        ("rng", "start"),
        ("chardev", "start"),
        ("tpm-emulator", "start"),
        ("disk", "attach"),
        ("disk", "detach"),
        ("net", "attach"),
        ("net", "detach"),
        ("mem", "update"),
        ("cgroup", "deny"),
        ("cgroup", "allow"),
    ]:
        assert kinds[kind] > 0, kind
    assert any(
        r.type == "VIRT_RESOURCE" and "reason=detach" in r.text and "res=failed" in r.text for r in records
    )
    assert any(r.type == "VIRT_CONTROL" and "op=start" in r.text and "res=failed" in r.text for r in records)


def test_qemu_process_and_crash_records() -> None:
    records = parsed(generated(seed=6, records=20_000))
    started = {
        (r.fields["pid"], m.group(1))
        for r in records
        if r.type == "VIRT_CONTROL" and r.fields["res"] == "success"
        for m in [re.search(r" vm-pid=(\d+)", r.message or "")]
        if m and m.group(1) != "0"
    }
    execs = {
        (r.fields["ppid"], r.fields["pid"]): r
        for r in records
        if r.type == "SYSCALL" and r.fields["syscall"] == "59"
    }
    assert started
    for key in started:
        record = execs[key]  # qemu: pid = vm-pid, parent = the libvirt daemon
        assert record.fields["exe"] == '"/usr/libexec/qemu-kvm"' and record.fields["uid"] == "107"
        assert re.fullmatch(r"system_u:system_r:svirt_t:s0:c\d+,c\d+", record.fields["subj"])
    pids = {pid for _, pid in started}
    abends = [r for r in records if r.type == "ANOM_ABEND"]
    assert abends and all(r.fields["pid"] in pids and "svirt_t" in r.fields["subj"] for r in abends)
    avcs = [r for r in records if r.type == "AVC"]
    assert any("scontext=system_u:system_r:svirt_t" in r.text for r in avcs)
    assert any("tcontext=system_u:object_r:svirt_image_t:s0:c" in r.text for r in avcs)


def test_apparmor_host() -> None:
    records = parsed(generated(seed=8, records=8000, security="apparmor"))
    avcs = [r for r in records if r.type == "AVC"]
    assert any(r.fields["profile"].startswith('"libvirt-') for r in avcs)
    for record in avcs:
        assert record.fields["apparmor"] == '"DENIED"' and record.fields["operation"] == '"open"'
        assert {"name", "pid", "comm", "requested_mask", "denied_mask", "fsuid", "ouid"} <= set(record.fields)
    machine = [message_fields(r) for r in records if r.type == "VIRT_MACHINE_ID"]
    assert any(f["model"] == "apparmor" and f["vm-ctx"] == f"libvirt-{f['uuid']}" for f in machine)
    control = next(r for r in records if r.type == "VIRT_CONTROL")
    assert control.fields["subj"] in {"libvirtd (enforce)", "virtqemud (enforce)"}


def test_old_libvirt_style() -> None:
    records = parsed(generated(seed=8, records=6000, style="old"))
    virt = [r for r in records if r.type.startswith("VIRT_")]
    assert virt
    for record in virt:
        assert "virt=" not in (record.message or "") and "vm-pid=" not in (record.message or "")
        assert "model=" not in (record.message or "")
        fields = message_fields(record)
        if fields.get("resrc") == "net":
            assert fields["old-net"].startswith("'") and fields["new-net"].startswith("'")
        if fields.get("resrc") == "cgroup":
            assert "cgroup" not in fields and fields["item"] in {"all", "path", "major"}
        if fields.get("resrc") == "dev":
            assert fields["type"] == "pci" and "bus" not in fields
    assert any(r.fields.get("old-net") == "'?'" for r in virt)


def test_security_none_has_no_labels() -> None:
    records = parsed(generated(seed=8, records=3000, security="none"))
    assert not any(r.type == "VIRT_MACHINE_ID" for r in records)
    assert not any("subj" in r.fields for r in records)
    dac = parsed(generated(seed=8, records=3000, security="dac"))
    assert any(r.type == "VIRT_MACHINE_ID" and "model=dac" in r.text for r in dac)


# ---------------------------------------------------------------- streaming, files, command line


def test_generation_streams_with_bounded_memory() -> None:
    tracemalloc.start()
    try:
        total = 0
        for line in generate_lines(GeneratorOptions(seed=9, records=8_000)):
            total += len(line)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 2_000_000
    assert peak < 1_000_000  # a fraction of the output: nothing accumulates


def test_300k_records_in_bounded_resident_memory() -> None:
    script = (
        "import resource\n"
        "from forwarder.generate import GeneratorOptions, generate_lines\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "size = sum(len(line) for line in generate_lines(GeneratorOptions(seed=9, records=300_000)))\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(size, after - before)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    size, grown_kib = map(int, out.stdout.split())
    assert size > 80_000_000
    assert grown_kib < 30_000


def test_write_log_and_command_line(tmp_path: Path) -> None:
    options = GeneratorOptions(seed=2, records=800, node="hv9", enriched=True, security="apparmor")
    expected = b"".join(generate_lines(options))
    path = tmp_path / "audit.log"
    assert write_log(path, options) == expected.count(b"\n")
    assert path.read_bytes() == expected
    cli_out = tmp_path / "cli.log"
    code = cli_main(
        [
            "--records",
            "800",
            "--seed",
            "2",
            "--node",
            "hv9",
            "--enriched",
            "--security",
            "apparmor",
            "--output",
            str(cli_out),
        ]
    )
    assert code == 0 and cli_out.read_bytes() == expected


def test_invalid_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="security"):
        list(generate_lines(GeneratorOptions(security="tomoyo")))
    with pytest.raises(ValueError, match="mix"):
        list(generate_lines(GeneratorOptions(mix={"execve": 1.0, "teleport": 2.0})))
    only_guests = tuple(generate_lines(GeneratorOptions(seed=1, records=1500, mix={"guest": 1.0})))
    assert not any(b"type=USER_" in line for line in only_guests)
    assert sum(b"type=VIRT_" in line for line in only_guests) > len(only_guests) // 4


# ---------------------------------------------------------------- the real audit tools


def test_auvirt_reports_the_generated_guests(tmp_path: Path) -> None:
    lines = generated(seed=1, records=5000)
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(lines))
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    with log.open("rb") as stdin:
        out = subprocess.run(
            ["auvirt", "--stdin", "--all-events", "--show-uuid"],
            stdin=stdin,
            capture_output=True,
            check=True,
            env=env,
        ).stdout
    reported = {tuple(line.split(b"\t")[:2]) for line in out.splitlines() if line.startswith(b"start ")}
    expected = set()
    for record in parsed(lines):
        if record.type == "VIRT_CONTROL" and "op=start" in record.text and record.fields["res"] == "success":
            name = decode_vm(record.fields["vm"]).encode()[:22]
            expected.add((b"start  " + name.ljust(22), record.fields["uuid"].encode()))
    assert expected and expected <= reported
    with log.open("rb") as stdin:
        summary = subprocess.run(
            ["auvirt", "--stdin", "--summary"], stdin=stdin, capture_output=True, check=True, env=env
        ).stdout.decode()
    assert "Number of related AVCs:" in summary
    assert int(re.search(r"guest starts:\s+(\d+)", summary).group(1)) >= len(expected)  # type: ignore[union-attr]


def test_ausearch_accepts_every_record(tmp_path: Path) -> None:
    lines = generated(seed=2, records=3000, enriched=True, node="hv1")
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(lines))
    out = subprocess.run(["ausearch", "--input", str(log), "--raw"], capture_output=True, check=True).stdout
    assert out.count(b"\n") == len(lines)
    virt = subprocess.run(
        ["ausearch", "-if", str(log), "-m", "VIRT_CONTROL", "--raw"], capture_output=True, check=True
    ).stdout
    assert virt.count(b"type=VIRT_CONTROL") == sum(b"type=VIRT_CONTROL" in line for line in lines)


def test_committed_example_is_current() -> None:
    example = ROOT / "examples" / "hypervisor-audit.log"
    expected = b"".join(generate_lines(GeneratorOptions(seed=1, records=2000)))
    assert example.read_bytes() == expected


@pytest.mark.parametrize("security", ["selinux", "apparmor"])
def test_no_qemu_denial_outside_its_guests_run(security: str) -> None:
    """A qemu process is denied something only while its guest runs: between the start record
    that names its ``vm-pid`` and the guest's stop (a denial written seconds after a stop would
    be a record no real host writes)."""
    running: dict[str, str] = {}  # qemu pid -> guest uuid, while the guest runs
    stopped_pids: set[str] = set()
    denials = 0
    for line in generate_lines(GeneratorOptions(seed=5, records=40_000, security=security)):
        record = parse_line(line.rstrip(b"\n"))
        assert not isinstance(record, Malformed)
        fields = record.fields
        if record.type == "VIRT_CONTROL" and fields.get("res", "").strip("'") == "success":
            pid, uuid = fields.get("vm-pid", "-1"), fields.get("uuid", "")
            if fields.get("op") == "start" and pid not in ("-1", "0"):
                running[pid] = uuid
                stopped_pids.discard(pid)
            elif fields.get("op") == "stop":
                for qemu, owner in list(running.items()):
                    if owner == uuid:
                        del running[qemu]
                        stopped_pids.add(qemu)
        elif record.type == "AVC" and fields.get("pid") in stopped_pids:
            raise AssertionError(f"denial of qemu {fields['pid']} after its guest stopped: {record.text}")
        elif record.type == "AVC" and fields.get("pid") in running:
            denials += 1
    assert denials > 0, "no qemu denial at all: the test would prove nothing"
