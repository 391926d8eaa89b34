"""Field value interpretation, with libauparse's interpretation as the differential oracle."""

from __future__ import annotations

import functools
import json
import pathlib
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forwarder.audit.record import Record, parse_line
from forwarder.audit.tables.errnos import ERRNO_NAMES
from forwarder.audit.tables.signals import SIGNAL_NAMES
from forwarder.audit.tables.syscalls import ARCH_NAMES, SYSCALL_NAMES
from forwarder.audit.values import (
    ENCODED_FIELDS,
    UNSET_VALUES,
    arch_name,
    audit_id,
    decode_proctitle,
    decode_value,
    errno_name,
    file_mode,
    is_unset,
    selinux_context,
    split_keys,
    syscall_name,
    unquote,
)
from tests.corpus import FIXTURES, REPO, all_logs
from tests.oracles import ORACLE_PYTHON, OracleMissing


def hexed(text: str | bytes) -> str:
    """Hex as the kernel writes it (upper case)."""
    data = text.encode() if isinstance(text, str) else text
    return data.hex().upper()


# --- generated tables ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("c000003e", "x86_64"),
        ("40000003", "i386"),
        ("c00000b7", "aarch64"),
        ("40000028", "arm"),
        ("c0000015", "ppc64le"),
        ("80000015", "ppc64"),
        ("80000016", "s390x"),
        ("16", "s390"),
        ("c00000f3", "riscv64"),
        ("C000003E", "x86_64"),
        ("x86_64", "x86_64"),
        ("deadbeef", None),
        ("", None),
    ],
)
def test_arch_name(raw: str, name: str | None) -> None:
    assert arch_name(raw) == name


def test_every_syscall_table_belongs_to_a_known_arch() -> None:
    assert set(SYSCALL_NAMES) <= set(ARCH_NAMES.values())
    assert {"x86_64", "i386", "aarch64", "arm", "ppc64le", "ppc64", "s390x", "s390"} <= set(SYSCALL_NAMES)
    # ppc64le and ppc64 use one table (ausyscall has one for the ppc family).
    assert SYSCALL_NAMES["ppc64le"] is SYSCALL_NAMES["ppc64"]


@pytest.mark.parametrize(
    ("arch", "number", "name"),
    [
        ("x86_64", "59", "execve"),
        ("x86_64", "0", "read"),
        ("i386", "11", "execve"),
        ("i386", "102", "socketcall"),
        ("aarch64", "221", "execve"),
        ("arm", "11", "execve"),
        ("ppc64le", "11", "execve"),
        ("s390x", "11", "execve"),
        ("x86_64", "execve", "execve"),
        ("x86_64", "99999", None),
        ("x86_64", "-1", None),
        ("x86_64", "", None),
        ("x86_64", "٣", None),  # a digit, but not an ASCII one
        ("riscv64", "221", None),  # no table for it
        (None, "59", None),
    ],
)
def test_syscall_name(arch: str | None, number: str, name: str | None) -> None:
    assert syscall_name(arch, number) == name


@pytest.mark.parametrize(
    ("raw", "name"),
    [("-13", "EACCES"), ("-2", "ENOENT"), ("-111", "ECONNREFUSED"), ("-133", "EHWPOISON"), ("0", None),
     ("13", None), ("-", None), ("-99999", None), ("-1x", None), ("", None)],
)  # fmt: skip
def test_errno_name(raw: str, name: str | None) -> None:
    assert errno_name(raw) == name


def test_errno_and_signal_tables() -> None:
    assert ERRNO_NAMES[1] == "EPERM"
    assert ERRNO_NAMES[11] == "EAGAIN"
    assert SIGNAL_NAMES[9] == "SIGKILL"
    assert SIGNAL_NAMES[17] == "SIGCHLD"
    assert set(SIGNAL_NAMES) == set(range(32))


def test_generated_tables_are_current(tmp_path: pathlib.Path) -> None:
    """Regenerating the tables with the installed audit userspace changes nothing."""
    try:
        done = subprocess.run(
            [ORACLE_PYTHON, str(REPO / "tools" / "gen_tables.py"), str(tmp_path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except FileNotFoundError as exc:
        raise OracleMissing(f"{ORACLE_PYTHON} not found") from exc
    if done.returncode != 0:
        raise OracleMissing(f"tools/gen_tables.py failed (python3-audit, auditd installed?): {done.stderr}")
    committed = REPO / "forwarder" / "audit" / "tables"
    generated = sorted(tmp_path.glob("*.py"))
    assert {path.name for path in generated} >= {"syscalls.py", "errnos.py", "signals.py", "record_types.py"}
    for path in generated:
        assert path.read_text() == (committed / path.name).read_text(), f"{path.name} is stale"


# --- quoting, unset, ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [('"abc"', "abc"), ("abc", "abc"), ('""', ""), ('"', ""), ('"abc', "abc"), ('a"b"', 'a"b"'),
     ('""x""', '"x"')],
)  # fmt: skip
def test_unquote(raw: str, text: str) -> None:
    assert unquote(raw) == text


def test_unset_values() -> None:
    for raw in ("?", "(null)", "", '"?"', "(none)"):
        assert is_unset(raw)
        assert raw in UNSET_VALUES
    for raw in ("0", "root", "-1", "4294967295", "null"):
        assert not is_unset(raw)


@pytest.mark.parametrize(
    ("raw", "number"),
    [("0", 0), ("1000", 1000), ('"1000"', 1000), ("4294967295", None), ("-1", None), ("?", None),
     ("unset", None), ("", None), ("4294967294", 4294967294), ("99999999999", None), ("1e3", None)],
)  # fmt: skip
def test_audit_id(raw: str, number: int | None) -> None:
    assert audit_id(raw) == number


# --- encoded values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ('"/usr/bin/ls"', "/usr/bin/ls"),
        (hexed("/opt/my tools/bin/tool"), "/opt/my tools/bin/tool"),
        (hexed("/srv/x").lower(), "/srv/x"),
        (hexed("win11-Bürö"), "win11-Bürö"),
        (hexed(b"caf\xe9"), "caf\\xe9"),  # Latin-1 byte: kept as an escape
        (hexed(b"tab\there"), "tab\there"),  # control characters stay characters
        (hexed(b"name\0junk"), "name"),  # a C string ends at the first NUL
        (hexed(b"\0abstract"), "abstract"),  # the leading NUL of an abstract socket name
        ("(null)", "(null)"),
        ("?", "?"),
        ('"?"', "?"),
        ("root", "root"),
        ("ABC", "ABC"),  # odd length: not hex
        ("A", "A"),
        ("41zz", "41zz"),  # only partly hex
        ("12 34", "12 34"),
        ('"a"b"', "a"),  # text ends at the next quote, as in libauparse
        ('"abc', "abc"),
        ("", ""),
    ],
)
def test_decode_value(raw: str, text: str) -> None:
    assert decode_value(raw) == text


@pytest.mark.parametrize(
    ("raw", "args"),
    [
        ('"(systemd)"', ["(systemd)"]),
        (hexed(b"nc\0-l\0-p\0" + b"55555"), ["nc", "-l", "-p", "55555"]),
        (hexed(b"bash\0-c\0\0echo hi\0\0"), ["bash", "-c", "", "echo hi"]),
        (hexed(b"trunc\xc3"), ["trunc\\xc3"]),  # cut inside a character at 128 bytes
        ("(null)", []),
        ("", []),
        ("ABC", ["ABC"]),
    ],
)
def test_decode_proctitle(raw: str, args: list[str]) -> None:
    assert decode_proctitle(raw) == args


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        ("(null)", []),
        ('"(null)"', []),
        ('"passwd_changes"', ["passwd_changes"]),
        (hexed(b"exec\x01priv-esc"), ["exec", "priv-esc"]),
        (hexed(b"one\x01\x01two\x01"), ["one", "two"]),
        (hexed("with space"), ["with space"]),
        ("nohex", ["nohex"]),
    ],
)
def test_split_keys(raw: str, keys: list[str]) -> None:
    assert split_keys(raw) == keys


def test_encoded_fields_cover_libauparse_and_libvirt() -> None:
    for name in ("exe", "comm", "cwd", "name", "proctitle", "cmd", "acct", "path", "vm", "key", "data",
                 "old-disk", "new-net", "old-chardev", "new-rng", "new-smartcard", "cgroup", "device",
                 "watch", "dir", "file", "ocomm", "grp", "new_group", "root_dir", "sw",
                 "invalid_context", "profile", "operation", "apparmor"):  # fmt: skip
        assert name in ENCODED_FIELDS
    for name in ("uid", "uuid", "res", "subj", "vm-ctx", "old-mem", "msg", "saddr"):
        assert name not in ENCODED_FIELDS


# --- modes and labels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "result"),
    [
        ("0100644", ("0644", "file")),
        ("0104755", ("4755", "file")),
        ("041777", ("1777", "directory")),
        ("040755", ("0755", "directory")),
        ("020620", ("0620", "character-device")),
        ("060660", ("0660", "block-device")),
        ("010600", ("0600", "named-pipe")),
        ("0120777", ("0777", "symlink")),
        ("0140777", ("0777", "socket")),
        ("0644", ("0644", "")),
        ("0", ("0000", "")),
        ("0170644", ("0644", "")),
        ("0100648", None),
        ("rw-r--r--", None),
        ("", None),
    ],
)
def test_file_mode(raw: str, result: tuple[str, str] | None) -> None:
    assert file_mode(raw) == result


@pytest.mark.parametrize(
    ("raw", "parts"),
    [
        ("system_u:system_r:svirt_t:s0:c12,c345",
         {"user": "system_u", "role": "system_r", "domain": "svirt_t", "level": "s0:c12,c345"}),
        ("system_u:system_r:virtqemud_t:s0-s0:c0.c1023",
         {"user": "system_u", "role": "system_r", "domain": "virtqemud_t", "level": "s0-s0:c0.c1023"}),
        ("user_u:user_r:user_t", {"user": "user_u", "role": "user_r", "domain": "user_t"}),
        ("libvirtd (enforce)", {"domain": "libvirtd", "mode": "enforce"}),
        ('"/usr/sbin/cupsd (complain)"', {"domain": "/usr/sbin/cupsd", "mode": "complain"}),
        ("libvirt-3b9d6c52-2f0e", {"domain": "libvirt-3b9d6c52-2f0e"}),
        ("unconfined", {"domain": "unconfined"}),
        ("+107:+107", {"user": "+107", "group": "+107"}),
        ("?", {}),
        ("", {}),
    ],
)  # fmt: skip
def test_selinux_context(raw: str, parts: dict[str, str]) -> None:
    assert selinux_context(raw) == parts


# --- real records --------------------------------------------------------------------------------


def _records(path: pathlib.Path) -> list[Record]:
    parsed = (parse_line(line) for line in path.read_bytes().splitlines())
    return [record for record in parsed if isinstance(record, Record)]


def test_fixture_records_decode() -> None:
    records = _records(FIXTURES / "values.log")
    syscall = records[0]
    assert decode_value(syscall.fields["comm"]) == "my tool"
    assert decode_value(syscall.fields["exe"]) == "/opt/my tools/bin/tool"
    assert split_keys(syscall.fields["key"]) == ["exec", "priv-esc"]
    assert syscall_name(arch_name(syscall.fields["arch"]), syscall.fields["syscall"]) == "execve"
    assert audit_id(syscall.fields["auid"]) == 1000
    by_type: dict[str, Record] = {}
    for record in records:
        by_type.setdefault(record.type, record)
    assert decode_value(by_type["CWD"].fields["cwd"]) == "/home/user/my dir"
    assert decode_proctitle(by_type["PROCTITLE"].fields["proctitle"]) == ["tool", "--config=x", "two words"]
    assert file_mode(by_type["PATH"].fields["mode"]) == ("4755", "file")
    machine = by_type["VIRT_MACHINE_ID"]
    assert decode_value(machine.fields["vm"]) == "win11-Bürö"
    assert selinux_context(machine.fields["vm-ctx"])["level"] == "s0:c12,c345"
    assert audit_id(machine.fields["auid"]) is None
    resource = by_type["VIRT_RESOURCE"]
    assert is_unset(resource.fields["old-disk"])
    assert decode_value(resource.fields["new-disk"]) == "/var/lib/libvirt/images/win 11.qcow2"
    assert selinux_context(by_type["VIRT_CONTROL"].fields["subj"]) == {
        "domain": "libvirtd",
        "mode": "enforce",
    }
    assert decode_value(by_type["USER_CMD"].fields["cmd"]) == "systemctl restart libvirtd"
    errors = [errno_name(r.fields["exit"]) for r in records if r.type == "SYSCALL"]
    assert errors == [None, None, "EACCES", "ECONNREFUSED", None]


# --- no exceptions -------------------------------------------------------------------------------

_hexish = st.text(alphabet='0123456789abcdefABCDEF"()? -\x00\x01', max_size=40)
_any_text = st.one_of(st.text(max_size=60), _hexish)


@given(_any_text, st.one_of(st.none(), st.sampled_from(sorted(SYSCALL_NAMES)), st.text(max_size=8)))
def test_value_functions_never_raise(raw: str, arch: str | None) -> None:
    assert isinstance(unquote(raw), str)
    assert isinstance(is_unset(raw), bool)
    assert isinstance(decode_value(raw), str)
    assert all(isinstance(arg, str) for arg in decode_proctitle(raw))
    assert all(isinstance(key, str) and key for key in split_keys(raw))
    number = audit_id(raw)
    assert number is None or 0 <= number < 4294967295
    arch_name(raw)
    syscall_name(arch, raw)
    errno_name(raw)
    mode = file_mode(raw)
    assert mode is None or len(mode[0]) == 4
    assert all(isinstance(value, str) for value in selinux_context(raw).values())


@given(st.binary(max_size=64))
def test_hex_round_trip(data: bytes) -> None:
    """Any bytes written as hex come back as their text, up to the first NUL."""
    if len(data) == 0:
        return
    expected = data[1:] if data.startswith(b"\0") else data
    expected = expected.split(b"\0", 1)[0]
    assert decode_value(hexed(data)) == expected.decode("utf-8", "backslashreplace")


# --- differential: libauparse --------------------------------------------------------------------

#: Fields libauparse 3.0.9 decodes as encoded text (typetab.h ESCAPED/ESCAPED_FILE, AppArmor ones
#: included).  ``data``, ``disk``, ``chardev`` and the smartcard fields are encoded by their
#: writers but libauparse shows them raw or as keystrokes; ``key`` and ``proctitle`` are compared
#: apart.
_COMPARED_ESCAPED = ENCODED_FIELDS - {"data", "disk", "chardev", "old-smartcard", "new-smartcard", "key",
                                      "proctitle"}  # fmt: skip
_ORACLE_FIELDS = sorted(_COMPARED_ESCAPED | {"key", "proctitle", "syscall", "exit", "arch", "a*"})

#: Deliberate differences from libauparse, each with its reason (checked by _difference_reason).
DELIBERATE_DIFFERENCES = {
    "unterminated quote": "libauparse splits fields at spaces, so a quoted value holding a space "
    "reaches it cut and it returns ' '; our parser keeps the whole value",
    "partial hex": "libauparse decodes the leading run of hex digits of a value like '41zz' or of an "
    "odd-length one; such a value is not an encoding, we keep it as written",
    "glued enrichment": "a corpus file lost its 0x1d separator, gluing ENRICHED text to the key "
    "(key=(null)ARCH=x86_64); libauparse stops at ')'",
    "arch position": "libauparse takes arch only at the field positions of current SYSCALL/SECCOMP "
    "records and so misses it in older SECCOMP records; we use the record's arch wherever it is",
    "arch by name": "some tools write arch=x86_64 and syscall=execve; we accept the names",
    "socketcall refinement": "libauparse adds the socketcall/ipc operation, syscall_name returns the "
    "system call itself",
}
# Not differences: libauparse splits a hex key holding several keys into several `key` fields
# before interpreting, so the oracle shows each key on its own (split_keys is tested above);
# and it appends strerror() to an errno name (_theirs strips it).


@functools.cache
def _oracle() -> tuple[tuple[str, str, str, str, str | None, str | None], ...]:
    logs = [str(path) for path in all_logs()]
    try:
        done = subprocess.run(
            [ORACLE_PYTHON, str(REPO / "tests" / "oracles" / "auparse_fields.py"),
             "--fields", ",".join(_ORACLE_FIELDS), *logs],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise OracleMissing(f"{ORACLE_PYTHON} not found") from exc
    if done.returncode != 0:
        raise OracleMissing(f"libauparse oracle failed (is python3-audit installed?): {done.stderr[-2000:]}")
    rows = (tuple(json.loads(line)) for line in done.stdout.splitlines())
    return tuple(row for row in rows if _compared(row[1], row[2]))


def _compared(record_type: str, name: str) -> bool:
    """`a*` also brings SYSCALL's a0..a3 and EXECVE's argc and aN_len, numbers all."""
    if not name.startswith("a") or name in _ORACLE_FIELDS:
        return True
    return record_type == "EXECVE" and name != "argc" and not name.endswith("_len")


def _ours(name: str, raw: str, arch: str | None) -> str | None:
    """Our interpretation, rendered the way libauparse renders it."""
    if name == "proctitle":
        return " ".join(decode_proctitle(raw))
    if name == "key":
        keys = split_keys(raw)
        return "\x01".join(keys) if keys else "(null)"
    if name == "syscall":
        return syscall_name(arch_name(arch) if arch else None, raw)
    if name == "exit":
        return errno_name(raw) or raw
    if name == "arch":
        return arch_name(raw)
    return decode_value(raw)


def _theirs(name: str, interpreted: str | None) -> str | None:
    """libauparse's text without what it adds for display: the strerror() text of an exit."""
    if name == "exit" and interpreted and interpreted.startswith("E") and "(" in interpreted:
        return interpreted.split("(", 1)[0]
    return interpreted


def _difference_reason(name: str, raw: str, theirs: str | None, ours: str | None) -> str | None:
    """Which of DELIBERATE_DIFFERENCES explains a difference, if any."""
    if raw.startswith('"') and (len(raw) == 1 or not raw.endswith('"')):
        return "unterminated quote"
    if name == "key" and "=" in raw:
        return "glued enrichment"
    if name == "arch" and theirs is not None and theirs.startswith("unknown-elf-type") and ours == raw:
        return "arch by name"
    if name == "syscall" and theirs is not None and ours is not None:
        if not raw.isdigit():
            return "arch by name"
        if theirs.startswith("unknown-syscall"):
            return "arch position"
        if theirs.startswith(f"{ours}("):
            return "socketcall refinement"
    hex_run = len(raw) - len(raw.lstrip("0123456789abcdefABCDEF"))
    if not raw.startswith('"') and hex_run >= 2 and (hex_run < len(raw) or len(raw) % 2):
        return "partial hex"
    return None


def test_interpretation_equals_libauparse() -> None:
    counted: dict[str, int] = {}
    unexplained: list[tuple[str, str, str, str, str | None, str | None]] = []
    for path, record_type, name, raw, interpreted, arch in _oracle():
        ours, theirs = _ours(name, raw, arch), _theirs(name, interpreted)
        if ours == theirs:
            counted[name] = counted.get(name, 0) + 1
            continue
        reason = _difference_reason(name, raw, theirs, ours)
        assert reason is None or reason in DELIBERATE_DIFFERENCES
        if reason is None:
            unexplained.append((pathlib.Path(path).name, record_type, name, raw[:80], theirs, ours))
    assert not unexplained, f"{len(unexplained)} differences, first: {unexplained[:10]}"
    # Every kind of value was compared on the fixture at least.
    for name in ("exe", "comm", "cwd", "name", "vm", "new-disk", "cmd", "key", "proctitle", "syscall",
                 "exit", "arch", "a0", "a2"):  # fmt: skip
        assert counted.get(name, 0) > 0, name


def test_oracle_reads_the_fixture_as_we_do() -> None:
    """Guards the comparison against a silently empty or misread oracle."""
    rows = {(pathlib.Path(row[0]).name, row[2], row[3]): row[4] for row in _oracle()}
    assert rows[("values.log", "vm", hexed("win11-Bürö"))] == "win11-Bürö"
    assert rows[("values.log", "syscall", "327")] == "bind"
    assert rows[("values.log", "a2", hexed("two words"))] == "two words"
