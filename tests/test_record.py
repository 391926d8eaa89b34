"""The line parser: every form real logs contain, and no exception ever."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.audit.record import MAX_LINE_BYTES, Malformed, Record, parse_line


def record(line: bytes | str) -> Record:
    parsed = parse_line(line)
    assert isinstance(parsed, Record), parsed
    return parsed


def test_syscall_raw_fields_are_kept_as_written() -> None:
    r = record(
        b'type=SYSCALL msg=audit(1710143914.824:247): arch=c000003e syscall=59 success=yes exit=0 '
        b'a0=55d1 items=2 ppid=1 pid=2201 auid=4294967295 comm="qemu-kvm" exe="/usr/bin/qemu-kvm" '
        b"subj=system_u:system_r:svirt_t:s0:c1,c2 key=(null)\n"
    )
    assert (r.node, r.type, r.type_id, r.sec, r.msec, r.serial) == (None, "SYSCALL", 1300, 1710143914, 824, 247)
    assert r.fields["exe"] == '"/usr/bin/qemu-kvm"'
    assert r.fields["key"] == "(null)"
    assert r.fields["subj"] == "system_u:system_r:svirt_t:s0:c1,c2"
    assert list(r.fields)[:3] == ["arch", "syscall", "success"]
    assert r.enriched == {}
    assert r.text.endswith("key=(null)")


def test_enriched_fields_are_separate_and_unquoted() -> None:
    r = record(
        b'type=SYSCALL msg=audit(1.002:3): arch=c000003e syscall=59 auid=1000 uid=0 key=(null)'
        b'\x1dARCH=x86_64 SYSCALL=execve AUID="alice" UID="root"'
    )
    assert r.fields["key"] == "(null)"  # the separator does not leak into the last raw field
    assert r.enriched == {"ARCH": "x86_64", "SYSCALL": "execve", "AUID": "alice", "UID": "root"}


def test_enriched_saddr_braces_stay_one_value() -> None:
    r = record(
        b"type=SOCKADDR msg=audit(1.1:2): saddr=02000050C0A80001\x1dSADDR={ saddr_fam=inet laddr=192.168.0.1 lport=80 }"
    )
    assert r.enriched["SADDR"] == "{ saddr_fam=inet laddr=192.168.0.1 lport=80 }"


def test_node_prefix() -> None:
    r = record(b"node=hv-01.example type=PROCTITLE msg=audit(5.000:9): proctitle=2F62696E2F6C73")
    assert r.node == "hv-01.example"
    assert r.key == ("hv-01.example", 5, 0, 9)


def test_user_message_inner_fields_follow_outer_ones() -> None:
    r = record(
        b"type=VIRT_CONTROL msg=audit(1710143914.824:247): pid=1187 uid=0 auid=4294967295 ses=4294967295 "
        b"subj=system_u:system_r:virtqemud_t:s0-s0:c0.c1023 msg='virt=kvm op=start reason=booted "
        b'vm="web01" uuid=6f1c2a7e-3d4b-4e8a-9c1f-2b7d5e9a0c13 vm-pid=2201 exe="/usr/sbin/virtqemud" '
        b"hostname=? addr=? terminal=? res=success'\x1dUID=\"root\" AUID=\"unset\""
    )
    assert list(r.fields)[:5] == ["pid", "uid", "auid", "ses", "subj"]
    assert r.fields["vm"] == '"web01"'
    assert r.fields["vm-pid"] == "2201"
    assert r.fields["res"] == "success"
    assert r.message is not None and r.message.startswith("virt=kvm op=start")
    assert r.enriched == {"UID": "root", "AUID": "unset"}


def test_old_libvirt_single_quotes_inside_msg() -> None:
    r = record(
        b"type=VIRT_RESOURCE msg=audit(1.1:2): pid=1 uid=0 auid=0 ses=1 msg='resrc=net reason=start "
        b"vm=\"vm1\" uuid=u old-net='?' new-net='52:54:00:aa:bb:cc' exe=\"/usr/sbin/libvirtd\" "
        b"hostname=? addr=? terminal=? res=success'"
    )
    assert r.fields["new-net"] == "'52:54:00:aa:bb:cc'"
    assert r.fields["res"] == "success"


def test_apparmor_subject_with_mode_in_parentheses() -> None:
    r = record(b"type=VIRT_MACHINE_ID msg=audit(1.1:2): pid=1 uid=0 subj=libvirtd (enforce) msg='vm=\"a\" res=success'")
    assert r.fields["subj"] == "libvirtd (enforce)"


def test_selinux_avc_permissions_and_result() -> None:
    r = record(
        b'type=AVC msg=audit(1.1:2): avc:  denied  { read write } for  pid=3 comm="qemu-kvm" name="disk.img" '
        b"scontext=system_u:system_r:svirt_t:s0:c1,c2 tcontext=system_u:object_r:svirt_image_t:s0:c3,c4 "
        b"tclass=file permissive=0"
    )
    assert r.fields["seresult"] == "denied"
    assert r.fields["seperms"] == "read,write"
    assert r.fields["tclass"] == "file"


def test_apparmor_avc() -> None:
    r = record(
        b'type=AVC msg=audit(1.1:2): apparmor="DENIED" operation="open" profile="libvirt-3b9d" '
        b'name="/etc/shadow" pid=9 comm="qemu-system-x86" requested_mask="r" denied_mask="r" fsuid=64055 ouid=0'
    )
    assert r.fields["apparmor"] == '"DENIED"'
    assert r.fields["profile"] == '"libvirt-3b9d"'


def test_rhel6_login_old_new_pairs() -> None:
    r = record(b"type=LOGIN msg=audit(1.1:2): login pid=1 uid=0 old auid=700 new auid=701 old ses=1 new ses=2")
    pairs = (r.fields["old-auid"], r.fields["new-auid"], r.fields["old-ses"], r.fields["new-ses"])
    assert pairs == ("700", "701", "1", "2")


def test_unknown_type_number() -> None:
    r = record(b"type=UNKNOWN[1420] msg=audit(1.1:2): subj_apparmor=unconfined")
    assert (r.type, r.type_id) == ("UNKNOWN[1420]", 1420)
    odd = record(b"type=CKADDR msg=audit(1.1:2): x=1")
    assert odd.type_id == -1


def test_execve_fragments_are_separate_keys() -> None:
    r = record(b'type=EXECVE msg=audit(1.1:2): argc=3 a0="ls" a1_len=10 a1[0]=6162 a1[1]=6364 a2=2D6C')
    assert r.fields["a1_len"] == "10"
    assert r.fields["a1[0]"] == "6162" and r.fields["a1[1]"] == "6364"


def test_header_without_colon_and_odd_spacing() -> None:
    r = record(b"type=DAEMON_END msg=audit(1162862354.005:5730) auditd normal halt, sending auid=4294967295 pid=8144")
    assert r.fields["pid"] == "8144"


def test_repeated_keys_are_kept_as_duplicates() -> None:
    r = record(b"type=NETFILTER_CFG msg=audit(1.1:2): table=filter family=2 entries=1 family=10")
    assert r.fields["family"] == "2"
    assert r.duplicates == [("family", "10")]


def test_crlf_and_trailing_spaces() -> None:
    r = record(b'type=CWD msg=audit(1.1:2): cwd="/root"\r\n')
    assert r.fields["cwd"] == '"/root"'
    assert not r.text.endswith("\r")


def test_invalid_utf8_keeps_the_bytes_meaning() -> None:
    r = record(b'type=PATH msg=audit(1.1:2): item=0 name="/tmp/\xff\xfeabc" nametype=NORMAL')
    assert r.fields["name"] == '"/tmp/\\xff\\xfeabc"'
    assert r.warnings and "UTF-8" in r.warnings[0]


def test_very_long_lines() -> None:
    arg = "41" * 40_000  # 80 KB of hex
    r = record(f"type=EXECVE msg=audit(1.1:2): argc=1 a0={arg}".encode())
    assert len(r.fields["a0"]) == 80_000
    too_long = parse_line(b"type=EXECVE msg=audit(1.1:2): a0=" + b"4" * (MAX_LINE_BYTES + 10))
    assert isinstance(too_long, Malformed) and "longer" in too_long.reason


def test_garbage_comments_and_blank_lines_are_malformed_with_a_reason() -> None:
    cases = {
        b"\n": "empty line",
        b"# a comment\n": "comment line",
        b"hello world\n": "no msg=audit",
        b"type=SYSCALL msg=audit(12:3): x=1\n": "unparsable audit header",
        b"host=dhcppc2 type=AVC msg=audit(1.1:2): x=1\n": "unparsable audit header",
        b"type=UNKNOWN[1329] msg=g\x05\n": "no msg=audit",
    }
    for line, reason in cases.items():
        parsed = parse_line(line)
        assert isinstance(parsed, Malformed), line
        assert reason in parsed.reason


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    assert isinstance(parse_line(data), Record | Malformed)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_on_text_after_a_valid_header(body: str) -> None:
    parsed = parse_line("node=x type=USER_CMD msg=audit(1.1:2): " + body)
    assert isinstance(parsed, Record)
