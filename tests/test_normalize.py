"""Unit tests of the ECS normalizer, one record family at a time."""

from __future__ import annotations

from typing import Any

import pytest

from forwarder.audit.assemble import Assembler
from forwarder.audit.record import Event, Record, parse_line
from forwarder.ecs.fields import check_document
from forwarder.ecs.normalize import NormalizeOptions, command_line, document_id, normalize, timestamp

OPTIONS = NormalizeOptions(host_name="hv1")
GS = "\x1d"  # ENRICHED separator


def _event(*lines: str) -> Event:
    assembler = Assembler()
    events: list[Event] = []
    for line in lines:
        record = parse_line(line)
        assert isinstance(record, Record), record
        events.extend(assembler.feed(record))
    events.extend(assembler.flush())
    assert len(events) == 1, events
    return events[0]


def _doc(*lines: str, options: NormalizeOptions = OPTIONS) -> dict[str, Any]:
    doc = normalize(_event(*lines), options)
    assert check_document(doc) == []
    return doc


def _syscall(
    serial: int,
    syscall: int,
    extra: str = "",
    success: str = "yes",
    exit_: str = "0",
    stamp: str = "1700000000.123",
) -> str:
    return (
        f"type=SYSCALL msg=audit({stamp}:{serial}): arch=c000003e syscall={syscall} "
        f"success={success} exit={exit_} a0=3 a1=7ffd1234 a2=10 a3=0 items=1 ppid=1 pid=4242 auid=1000 "
        f'uid=1000 gid=1000 euid=0 suid=0 fsuid=0 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=7 comm="tool" '
        f'exe="/usr/bin/tool" subj=unconfined_u:unconfined_r:unconfined_t:s0 key="watch"{extra}'
    )


# Base fields --------------------------------------------------------------------------------


def test_base_fields() -> None:
    doc = _doc(_syscall(10, 59))
    assert doc["@timestamp"] == "2023-11-14T22:13:20.123Z"
    assert doc["ecs"]["version"]
    assert doc["event"]["kind"] == "event"
    assert doc["event"]["module"] == "auditd"
    assert doc["event"]["dataset"] == "auditd_manager.auditd"
    assert doc["event"]["sequence"] == 10
    assert doc["data_stream"] == {"type": "logs", "dataset": "auditd_manager.auditd", "namespace": "default"}
    assert doc["host"]["name"] == "hv1"
    assert doc["host"]["os"]["type"] == "linux"
    assert doc["host"]["architecture"] == "x86_64"
    assert doc["tags"] == ["watch"]
    assert doc["auditd"]["session"] == "7"
    assert doc["auditd"]["message_type"] == "syscall"
    assert doc["auditd"]["user"]["audit"]["id"] == "1000"
    assert doc["auditd"]["user"]["selinux"]["domain"] == "unconfined_t"
    assert doc["user"]["id"] == "1000"
    assert doc["user"]["effective"]["id"] == "0"
    assert doc["user"]["group"]["id"] == "1000"
    assert doc["auditd"]["data"]["a1"] == "7ffd1234"
    assert doc["auditd"]["data"]["syscall"] == "execve"
    assert doc["auditd"]["data"]["tty"] == "pts0"
    assert "event.original" not in doc["event"]
    for raw_key in ("uid", "pid", "comm", "exe", "ses", "key", "auid", "subj"):
        assert raw_key not in doc["auditd"]["data"]


def test_timestamp_and_dataset_options() -> None:
    options = NormalizeOptions(host_name="h", dataset="custom.audit", namespace="prod", include_original=True)
    line = _syscall(11, 2)
    doc = _doc(line, options=options)
    assert doc["data_stream"]["dataset"] == "custom.audit"
    assert doc["data_stream"]["namespace"] == "prod"
    assert doc["event"]["dataset"] == "custom.audit"
    assert doc["event"]["original"] == line
    assert timestamp(0, 7) == "1970-01-01T00:00:00.007Z"


def test_document_id_is_deterministic() -> None:
    event = _event(_syscall(12, 2))
    assert document_id("hv1", event) == document_id("hv1", _event(_syscall(12, 2)))
    assert document_id("hv1", event) != document_id("hv2", event)
    assert document_id("hv1", event) != document_id("hv1", _event(_syscall(13, 2)))
    assert normalize(event, OPTIONS)["event"]["id"] == document_id("hv1", event)
    assert len(document_id("hv1", event)) == 20


def test_user_effective_omitted_when_equal() -> None:
    line = _syscall(14, 2).replace("euid=0", "euid=1000")
    doc = _doc(line)
    assert "effective" not in doc["user"]


# Families -----------------------------------------------------------------------------------


def test_execve_with_args() -> None:
    doc = _doc(
        _syscall(20, 59),
        'type=EXECVE msg=audit(1700000000.123:20): argc=3 a0="ls" a1="-l" a2=2F7372762F6D792066696C65',
        'type=CWD msg=audit(1700000000.123:20): cwd="/home/alice"',
        'type=PATH msg=audit(1700000000.123:20): item=0 name="/usr/bin/ls" inode=12 dev=fd:00 '
        "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL",
        'type=PATH msg=audit(1700000000.123:20): item=1 name="/lib64/ld.so" inode=13 dev=fd:00 '
        "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL",
        "type=PROCTITLE msg=audit(1700000000.123:20): proctitle=6C73002D6C002F7372762F6D792066696C65",
    )
    assert doc["event"]["action"] == "executed"
    assert doc["event"]["category"] == ["process"]
    assert doc["event"]["type"] == ["start"]
    assert doc["event"]["outcome"] == "success"
    process = doc["process"]
    assert process["args"] == ["ls", "-l", "/srv/my file"]
    assert process["args_count"] == 3
    assert process["command_line"] == 'ls -l "/srv/my file"'
    assert process["title"] == "ls -l /srv/my file"
    assert process["working_directory"] == "/home/alice"
    assert process["pid"] == 4242
    assert process["parent"]["pid"] == 1
    assert process["name"] == "tool"
    assert process["executable"] == "/usr/bin/tool"
    assert doc["file"]["path"] == "/usr/bin/ls"
    assert doc["file"]["name"] == "ls"
    assert doc["file"]["directory"] == "/usr/bin"
    assert doc["file"]["mode"] == "0755"
    assert doc["auditd"]["summary"]["object"] == {"type": "file", "primary": "/usr/bin/ls"}
    assert [p["name"] for p in doc["auditd"]["paths"]] == ["/usr/bin/ls", "/lib64/ld.so"]
    assert doc["auditd"]["data"]["argc"] == "3"


def test_command_line_quoting() -> None:
    assert command_line(["a", "b c", "", 'd"e f']) == 'a "b c" "" "d\\"e f"'


def test_openat_failure_with_errno() -> None:
    doc = _doc(
        _syscall(21, 257, success="no", exit_="-13"),
        'type=CWD msg=audit(1700000000.123:21): cwd="/"',
        'type=PATH msg=audit(1700000000.123:21): item=0 name="/etc/" inode=1 dev=fd:00 mode=040755 '
        "ouid=0 ogid=0 rdev=00:00 nametype=PARENT",
        'type=PATH msg=audit(1700000000.123:21): item=1 name="/etc/shadow.tar.gz" inode=2 dev=fd:00 '
        "mode=0100640 ouid=0 ogid=42 rdev=00:00 nametype=NORMAL",
    )
    assert doc["event"]["action"] == "opened-file"
    assert doc["event"]["category"] == ["file"]
    assert doc["event"]["outcome"] == "failure"
    assert doc["auditd"]["result"] == "fail"
    assert doc["auditd"]["data"]["exit"] == "EACCES"
    assert doc["auditd"]["data"]["syscall"] == "openat"
    assert doc["file"]["path"] == "/etc/shadow.tar.gz"  # the PARENT record is skipped
    assert doc["file"]["extension"] == "gz"
    assert doc["file"]["gid"] == "42"


@pytest.mark.parametrize(
    ("saddr", "expected", "network_type"),
    [
        (
            "02000050C0A801020000000000000000",
            {"ip": "192.168.1.2", "address": "192.168.1.2", "port": 80},
            "ipv4",
        ),
        (
            "0A0001BB00000000200106F8000000000000000000000001" + "00000000",
            {"ip": "2001:6f8::1", "address": "2001:6f8::1", "port": 443},
            "ipv6",
        ),
        ("01002F72756E2F6170702E736F636B00", {"address": "/run/app.sock"}, None),
    ],
)
def test_connect_with_sockaddr(saddr: str, expected: dict[str, Any], network_type: str | None) -> None:
    doc = _doc(
        _syscall(22, 42),
        f"type=SOCKADDR msg=audit(1700000000.123:22): saddr={saddr}",
    )
    assert doc["event"]["action"] == "connected-to"
    assert doc["event"]["category"] == ["network"]
    assert doc["event"]["type"] == ["connection", "start"]
    assert doc["destination"] == expected
    assert doc["network"]["direction"] == "egress"
    assert doc["network"].get("type") == network_type
    assert doc["auditd"]["data"]["socket"]["family"] in ("ipv4", "ipv6", "unix")
    assert "source" not in doc
    if "ip" in expected:
        assert doc["related"]["ip"] == [expected["ip"]]


def test_accept_is_ingress() -> None:
    doc = _doc(
        _syscall(23, 43), "type=SOCKADDR msg=audit(1700000000.123:23): saddr=02000050C0A801020000000000000000"
    )
    assert doc["source"]["ip"] == "192.168.1.2"
    assert doc["network"]["direction"] == "ingress"
    assert doc["event"]["action"] == "accepted-connection-from"


def test_user_login_with_addr() -> None:
    doc = _doc(
        "type=USER_LOGIN msg=audit(1700000001.000:30): pid=900 uid=0 auid=1000 ses=5 "
        'subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg=\'op=login id=1000 exe="/usr/sbin/sshd" '
        "hostname=client.example addr=203.0.113.9 terminal=/dev/pts/1 res=success'"
    )
    assert doc["event"]["action"] == "logged-in"
    assert doc["event"]["category"] == ["authentication"]
    assert doc["event"]["type"] == ["start"]
    assert doc["event"]["outcome"] == "success"
    assert doc["source"] == {"ip": "203.0.113.9", "address": "203.0.113.9", "domain": "client.example"}
    assert doc["network"]["direction"] == "ingress"
    assert doc["related"]["ip"] == ["203.0.113.9"]
    assert doc["auditd"]["data"]["addr"] == "203.0.113.9"
    assert doc["auditd"]["data"]["terminal"] == "/dev/pts/1"
    assert doc["auditd"]["summary"]["object"]["primary"] == "/dev/pts/1"
    assert doc["user"]["id"] == "1000"  # the audit user acts (table mapping)
    assert doc["process"]["executable"] == "/usr/sbin/sshd"


def test_failed_login_of_unknown_account() -> None:
    doc = _doc(
        "type=USER_LOGIN msg=audit(1700000001.000:31): pid=900 uid=0 auid=4294967295 ses=4294967295 "
        'msg=\'op=login acct="mallory" exe="/usr/sbin/sshd" hostname=? addr=198.51.100.7 terminal=ssh '
        "res=failed'"
    )
    assert doc["event"]["outcome"] == "failure"
    assert "id" not in doc.get("user", {})  # unset audit user
    assert doc["user"]["effective"]["name"] == "mallory"
    assert "mallory" in doc["related"]["user"]
    assert "session" not in doc["auditd"]


def test_sudo_user_cmd() -> None:
    doc = _doc(
        "type=USER_CMD msg=audit(1700000002.000:40): pid=1600 uid=1000 auid=1000 ses=3 "
        'msg=\'cwd="/home/alice" cmd=73797374656D63746C2072657374617274206C69627669727464 '
        'exe="/usr/bin/sudo" terminal=pts/0 res=success\''
    )
    assert doc["event"]["action"] == "ran-command"
    assert doc["event"]["type"] == ["start"]
    assert doc["auditd"]["data"]["cmd"] == "systemctl restart libvirtd"
    assert doc["auditd"]["summary"]["object"]["primary"] == "systemctl restart libvirtd"
    assert doc["process"]["working_directory"] == "/home/alice"


def test_add_user() -> None:
    doc = _doc(
        "type=ADD_USER msg=audit(1700000003.000:50): pid=2000 uid=0 auid=1000 ses=2 "
        "msg='op=adding user id=1001 exe=\"/usr/sbin/useradd\" hostname=? addr=? terminal=pts/0 res=success'",
        options=NormalizeOptions(host_name="hv1", users={"1001": "bob", "1000": "alice"}),
    )
    assert doc["event"]["action"] == "added-user-account"
    assert doc["event"]["category"] == ["iam"]
    assert doc["event"]["type"] == ["user", "creation"]
    assert doc["user"]["target"] == {"id": "1001", "name": "bob"}
    assert doc["user"]["id"] == "1000"
    assert doc["user"]["name"] == "alice"
    assert set(doc["related"]["user"]) == {"alice", "bob"}


def test_avc_selinux() -> None:
    doc = _doc(
        'type=AVC msg=audit(1700000004.000:60): avc:  denied  { read } for  pid=3000 comm="qemu-kvm" '
        'name="disk.img" dev="dm-0" ino=99 scontext=system_u:system_r:svirt_t:s0:c1,c2 '
        "tcontext=system_u:object_r:virt_image_t:s0 tclass=file permissive=0",
        _syscall(60, 2, success="no", exit_="-13", stamp="1700000004.000"),
    )
    assert doc["event"]["action"] == "violated-selinux-policy"
    assert doc["auditd"]["message_type"] == "avc"
    assert doc["auditd"]["summary"]["actor"]["primary"] == "system_u:system_r:svirt_t:s0:c1,c2"
    assert doc["auditd"]["summary"]["object"]["primary"] == "system_u:object_r:virt_image_t:s0"
    assert doc["auditd"]["data"]["seresult"] == "denied"
    assert doc["auditd"]["data"]["seperms"] == "read"
    assert doc["event"]["category"] == ["file"]  # from the open syscall
    assert doc["event"]["outcome"] == "failure"


def test_avc_apparmor() -> None:
    doc = _doc(
        'type=AVC msg=audit(1700000004.000:61): apparmor="DENIED" operation="open" '
        'profile="libvirt-5c1e2d3f" name="/etc/passwd" pid=3001 comm="qemu-system-x86" '
        'requested_mask="r" denied_mask="r" fsuid=64055 ouid=0'
    )
    assert doc["event"]["action"] == "violated-apparmor-policy"
    assert doc["auditd"]["summary"]["object"] == {"type": "policy", "primary": "open", "secondary": "r"}
    assert doc["auditd"]["data"]["profile"] == "libvirt-5c1e2d3f"


def test_virt_control_start_with_hex_vm_name() -> None:
    doc = _doc(
        "type=VIRT_CONTROL msg=audit(1700000005.000:70): pid=1342 uid=0 auid=4294967295 ses=4294967295 "
        "subj=system_u:system_r:virtd_t:s0-s0:c0.c1023 msg='virt=kvm op=start reason=booted "
        "vm=77696E31312D42C3BC72C3B6 uuid=0f5a9c2e-7b1d-4c3e-8a6f-1d2e3f4a5b6c vm-pid=2201 "
        'exe="/usr/sbin/libvirtd" hostname=? addr=? terminal=? res=success\''
    )
    assert doc["event"]["action"] == "issued-vm-control"
    assert doc["event"]["category"] == ["host"]
    assert doc["event"]["type"] == ["start"]
    data = doc["auditd"]["data"]
    assert data["vm"] == "win11-Bürö"
    assert data["vm_pid"] == "2201"
    assert data["uuid"] == "0f5a9c2e-7b1d-4c3e-8a6f-1d2e3f4a5b6c"
    assert data["op"] == "start"
    assert data["reason"] == "booted"
    assert doc["auditd"]["summary"]["object"] == {
        "type": "virtual-machine",
        "primary": "start",
        "secondary": "win11-Bürö",
    }


def test_virt_control_stop_is_end() -> None:
    doc = _doc(
        "type=VIRT_CONTROL msg=audit(1700000005.000:71): pid=1342 uid=0 auid=4294967295 ses=4294967295 "
        'msg=\'virt=kvm op=stop reason=shutdown vm="focal" uuid=5c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f '
        'vm-pid=0 exe="/usr/sbin/libvirtd" hostname=? addr=? terminal=? res=success\''
    )
    assert doc["event"]["type"] == ["end"]
    assert doc["auditd"]["data"]["vm"] == "focal"


def test_virt_resource_and_machine_id() -> None:
    resource = _doc(
        "type=VIRT_RESOURCE msg=audit(1700000005.000:72): pid=1187 uid=0 auid=4294967295 ses=4294967295 "
        'msg=\'virt=kvm resrc=disk reason=start vm="focal" uuid=5c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f '
        'old-disk="?" new-disk=2F7661722F6C69622F696D616765732F77696E2031312E71636F7732 '
        'exe="/usr/sbin/virtqemud" hostname=? addr=? terminal=? res=success\''
    )
    assert resource["event"]["action"] == "assigned-vm-resource"
    assert resource["auditd"]["data"]["new_disk"] == "/var/lib/images/win 11.qcow2"
    assert "old_disk" not in resource["auditd"]["data"]
    assert resource["auditd"]["summary"]["object"]["primary"] == "disk"
    machine = _doc(
        "type=VIRT_MACHINE_ID msg=audit(1700000005.000:73): pid=1187 uid=0 auid=4294967295 ses=4294967295 "
        'msg=\'virt=kvm vm="focal" uuid=5c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f '
        "vm-ctx=system_u:system_r:svirt_t:s0:c12,c345 img-ctx=system_u:object_r:svirt_image_t:s0:c12,c345 "
        'model=selinux exe="/usr/sbin/virtqemud" hostname=? addr=? terminal=? res=success\''
    )
    assert machine["event"]["action"] == "assigned-vm-id"
    assert machine["auditd"]["data"]["vm_ctx"] == "system_u:system_r:svirt_t:s0:c12,c345"
    assert machine["auditd"]["data"]["img_ctx"] == "system_u:object_r:svirt_image_t:s0:c12,c345"
    assert machine["auditd"]["data"]["model"] == "selinux"


def test_enriched_names() -> None:
    line = _syscall(80, 59) + (
        f'{GS}ARCH=x86_64 SYSCALL=execve AUID="alice" UID="alice" GID="staff" EUID="root" SUID="root" '
        'FSUID="root" EGID="staff" SGID="staff" FSGID="staff"'
    )
    options = NormalizeOptions(host_name="hv1", users={"1000": "from-passwd"})
    doc = _doc(line, options=options)
    assert doc["user"]["name"] == "alice"  # ENRICHED wins over the snapshot
    assert doc["user"]["group"]["name"] == "staff"
    assert doc["user"]["effective"]["name"] == "root"
    assert doc["auditd"]["user"]["audit"]["name"] == "alice"
    assert doc["auditd"]["user"]["saved"]["name"] == "root"
    assert set(doc["related"]["user"]) == {"alice", "root"}

    def keys(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [k for key, value in node.items() for k in (key, *keys(value))]
        return []

    assert not [key for key in keys(doc) if key.isupper()]


def test_names_from_snapshot_without_enriched() -> None:
    options = NormalizeOptions(host_name="hv1", users={1000: "alice", 0: "root"}, groups={1000: "staff"})
    doc = _doc(_syscall(81, 59), options=options)
    assert doc["user"]["name"] == "alice"
    assert doc["user"]["group"]["name"] == "staff"
    assert doc["user"]["effective"]["name"] == "root"


def test_node_prefix() -> None:
    doc = _doc("node=hv7 " + _syscall(90, 59))
    assert doc["host"]["name"] == "hv7"
    assert doc["auditd"]["node"] == "hv7"
    plain = normalize(_event(_syscall(90, 59)), OPTIONS)
    assert doc["event"]["id"] != plain["event"]["id"]


def test_unknown_record_type() -> None:
    doc = _doc("type=UNKNOWN[1334] msg=audit(1700000006.000:100): prog-id=12 op=LOAD some-key=value")
    assert doc["auditd"]["message_type"] == "unknown[1334]"
    assert "action" not in doc["event"]
    assert doc["auditd"]["data"] == {"prog_id": "12", "op": "LOAD", "some_key": "value"}
    assert doc["event"]["outcome"] == "unknown"


def test_repeated_keys_are_kept() -> None:
    doc = _doc(
        "type=NETFILTER_CFG msg=audit(1700000006.000:101): table=filter family=2 entries=10",
        "type=NETFILTER_CFG msg=audit(1700000006.000:101): table=nat family=2 entries=5",
        _syscall(101, 54, stamp="1700000006.000"),
    )
    assert doc["auditd"]["data"]["table"] == ["filter", "nat"]
    assert doc["auditd"]["data"]["entries"] == ["10", "5"]
    assert doc["auditd"]["data"]["family"] == "2"
    assert doc["event"]["action"] == "loaded-firewall-rule-to"


@pytest.mark.parametrize(
    ("change", "field", "raw"),
    [
        ("pid=4242", "pid", "abc"),
        ("ppid=1", "ppid", "-x"),
        ("ses=7", "ses", "seven"),
        ("success=yes", "success", "maybe"),
    ],
)
def test_garbage_values_keep_the_raw_value(change: str, field: str, raw: str) -> None:
    doc = _doc(_syscall(110, 59).replace(change, f"{field}={raw}"))
    assert doc["auditd"]["data"][field] == raw
    assert any(field in message for message in doc["error"]["message"])


def test_garbage_in_special_records_never_raises() -> None:
    doc = _doc(
        "type=SYSCALL msg=audit(1700000007.000:111): arch=zzzz syscall=notanumber success=yes exit=-99999 "
        'pid=1 uid=x auid=-1 ses=-1 comm=ABC exe="/bin/x',
        "type=SOCKADDR msg=audit(1700000007.000:111): saddr=ZZ",
        "type=PATH msg=audit(1700000007.000:111): item=0 name=414 mode=0999 ouid=q nametype=NORMAL",
        "type=EXECVE msg=audit(1700000007.000:111): argc=5 a0=4",
    )
    data = doc["auditd"]["data"]
    assert data["arch"] == "zzzz"
    assert data["syscall"] == "notanumber"
    assert data["exit"] == "-99999"
    assert data["socket"]["saddr"] == "ZZ"
    assert doc["error"]["message"]
    assert "mode" not in doc.get("file", {})


def test_forced_event_is_flagged() -> None:
    event = _event(_syscall(120, 59))
    event.forced = True
    doc = normalize(event, OPTIONS)
    assert any("missing" in message for message in doc["error"]["message"])
