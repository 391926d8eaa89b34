"""SOCKADDR decoding, with libauparse's interpretation of the corpus as the differential oracle."""

from __future__ import annotations

import functools
import json
import pathlib
import re
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forwarder.audit.record import Record, parse_line
from forwarder.audit.sockaddr import decode_sockaddr
from tests.corpus import FIXTURES, REPO, all_logs
from tests.oracles import ORACLE_PYTHON, OracleMissing


def sockaddr(*parts: bytes) -> str:
    return b"".join(parts).hex().upper()


def le16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def be16(value: int) -> bytes:
    return value.to_bytes(2, "big")


DOC_ADDRESS = bytes.fromhex("20010db8000000000000000000000001")
MAPPED_ADDRESS = bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1])


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        # inet, little-endian host: family 02 00, port and address in network order
        ("02000050A9FEA9FE0000000000000000", {"family": "ipv4", "address": "169.254.169.254", "port": 80}),
        # inet from a big-endian host (ppc64, s390x): family 00 02
        ("0002D903000000000000000000000000", {"family": "ipv4", "address": "0.0.0.0", "port": 55555}),
        # lower-case hex is hex too
        ("02000016c0a87a0b0000000000000000", {"family": "ipv4", "address": "192.168.122.11", "port": 22}),
        # inet6 without and with flow label and scope id
        (sockaddr(le16(10), (22).to_bytes(2, "big"), bytes(4), bytes(15) + b"\x01", bytes(4)),
         {"family": "ipv6", "address": "::1", "port": 22}),
        (sockaddr(le16(10), (443).to_bytes(2, "big"), (0x12345).to_bytes(4, "big"),
                  bytes.fromhex("fe800000000000000211223344556677"), (3).to_bytes(4, "little")),
         {"family": "ipv6", "address": "fe80::211:2233:4455:6677", "port": 443, "flowinfo": 0x12345,
          "scope_id": 3}),
        # the older 24-byte sockaddr_in6 has no scope id
        (sockaddr(le16(10), be16(80), bytes(4), DOC_ADDRESS),
         {"family": "ipv6", "address": "2001:db8::1", "port": 80}),
        (sockaddr(le16(10), be16(80), bytes(4), MAPPED_ADDRESS),
         {"family": "ipv6", "address": "::ffff:10.0.0.1", "port": 80}),
        # unix: path ends at the first NUL; abstract names start with NUL
        (sockaddr(le16(1), b"/dev/log", bytes(100)), {"family": "unix", "path": "/dev/log"}),
        (sockaddr(le16(1), b"/run/systemd/private"), {"family": "unix", "path": "/run/systemd/private"}),
        (sockaddr(le16(1), b"public/pickup", bytes(10)), {"family": "unix", "path": "public/pickup"}),
        (sockaddr(le16(1), b"\0/run/.X11-unix/X0"), {"family": "unix", "path": "@/run/.X11-unix/X0"}),
        (sockaddr(le16(1), b"\0name\0with\0nul", bytes(4)), {"family": "unix", "path": "@name@with@nul"}),
        (sockaddr(le16(1), "/run/wärme".encode()), {"family": "unix", "path": "/run/wärme"}),
        ("0100", {"family": "unix"}),  # unnamed socket
        # netlink: pid and groups in host order
        ("100000000000000000000000", {"family": "netlink", "pid": 0, "groups": 0}),
        (sockaddr(le16(16), bytes(2), (1234).to_bytes(4, "little"), (1).to_bytes(4, "little")),
         {"family": "netlink", "pid": 1234, "groups": 1}),
        (sockaddr((16).to_bytes(2, "big"), bytes(2), (1234).to_bytes(4, "big"), (5).to_bytes(4, "big")),
         {"family": "netlink", "pid": 1234, "groups": 5}),
        # other families: name and raw
        ("00000000000000000000000000000000", {"family": "unspec", "raw": "00000000000000000000000000000000"}),
        ("11000300020000000000000000000000", {"family": "packet", "raw": "11000300020000000000000000000000"}),
        ("2800000000000000", {"family": "vsock", "raw": "2800000000000000"}),
        ("FFFF0000", {"family": "65535", "raw": "FFFF0000"}),
        # truncated: what can be read, plus raw
        ("020000", {"family": "ipv4", "raw": "020000"}),
        ("0A0000500000", {"family": "ipv6", "raw": "0A0000500000"}),
        ("1000", {"family": "netlink", "raw": "1000"}),
        # not a sockaddr at all
        ("02", {"raw": "02"}),
        ("", {"raw": ""}),
        ("020", {"raw": "020"}),
        ("zz00", {"raw": "zz00"}),
        ("?", {"raw": "?"}),
    ],
)  # fmt: skip
def test_decode_sockaddr(raw: str, decoded: dict[str, str | int]) -> None:
    assert decode_sockaddr(raw) == decoded


def test_fixture_sockaddrs() -> None:
    parsed = (parse_line(line) for line in (FIXTURES / "values.log").read_bytes().splitlines())
    saddrs = [r.fields["saddr"] for r in parsed if isinstance(r, Record) and r.type == "SOCKADDR"]
    assert [decode_sockaddr(raw)["family"] for raw in saddrs] == ["ipv4", "unix", "ipv6", "netlink"]
    assert decode_sockaddr(saddrs[0]) == {"family": "ipv4", "address": "192.168.122.11", "port": 22}


@given(st.text(max_size=80))
def test_never_raises_on_text(raw: str) -> None:
    assert isinstance(decode_sockaddr(raw), dict)


@given(st.binary(max_size=120))
def test_never_raises_on_bytes(data: bytes) -> None:
    decoded = decode_sockaddr(data.hex())
    assert "family" in decoded or decoded == {"raw": data.hex()}
    assert all(isinstance(value, str | int) for value in decoded.values())


# --- differential: libauparse --------------------------------------------------------------------

_AUPARSE_SOCKADDR = re.compile(r"\{ (?:saddr_)?fam=(\S+) (.*?) ?\}")
_AUPARSE_FAMILY = {"inet": "ipv4", "inet6": "ipv6", "local": "unix", "netlink": "netlink"}

#: Deliberate differences, by raw value, with the reason.
DELIBERATE_DIFFERENCES = {
    # An anonymised test log: its raw hex was edited but not the ENRICHED text after it, which
    # libauparse prefers to decoding.  The raw bytes hold ::2a02:cf40:0.
    "0A00DE9900000000000000000000000000002a02cf40000000000000": "stale ENRICHED text",
}


@functools.cache
def _oracle() -> tuple[tuple[str, str], ...]:
    try:
        done = subprocess.run(
            [ORACLE_PYTHON, str(REPO / "tests" / "oracles" / "auparse_fields.py"), "--fields", "saddr",
             *map(str, all_logs())],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise OracleMissing(f"{ORACLE_PYTHON} not found") from exc
    if done.returncode != 0:
        raise OracleMissing(f"libauparse oracle failed (is python3-audit installed?): {done.stderr[-2000:]}")
    rows = (json.loads(line) for line in done.stdout.splitlines())
    return tuple((row[3], row[4] or "") for row in rows if row[1] == "SOCKADDR")


def _from_auparse(text: str) -> dict[str, str | int] | None:
    """libauparse's ``{ saddr_fam=inet laddr=1.2.3.4 lport=80 }`` in our terms (None: not decoded)."""
    match = _AUPARSE_SOCKADDR.fullmatch(text)
    if match is None or match[1] not in _AUPARSE_FAMILY:
        return None
    parts = dict(part.split("=", 1) for part in match[2].split(" ") if "=" in part)
    family = _AUPARSE_FAMILY[match[1]]
    if family in ("ipv4", "ipv6"):
        # libauparse appends the scope as %interface, looked up on the machine reading the log.
        return {"family": family, "address": parts["laddr"].split("%")[0], "port": int(parts["lport"])}
    if family == "unix":
        return {"family": family, "path": parts["path"]} if "path" in parts else {"family": family}
    return {"family": family, "pid": int(parts["nlnk-pid"])}


def test_decode_sockaddr_equals_libauparse() -> None:
    compared = 0
    unexplained = []
    for raw, interpreted in _oracle():
        theirs = _from_auparse(interpreted)
        if theirs is None:
            continue
        ours = decode_sockaddr(raw)
        ours_comparable = {key: value for key, value in ours.items() if key in theirs}
        compared += 1
        if ours_comparable != theirs and raw not in DELIBERATE_DIFFERENCES:
            unexplained.append((raw, interpreted, ours))
    assert compared > 0
    assert not unexplained, unexplained[:10]


def test_big_endian_sockaddr_is_read_where_libauparse_is_not() -> None:
    """The one place we decode more than libauparse: a big-endian host's family."""
    rows = dict(_oracle())
    raw = "00020016C0A87A0B0000000000000000"
    assert rows[raw].startswith("unknown-family")
    assert decode_sockaddr(raw)["address"] == "192.168.122.11"


def test_corpus_examples_when_present() -> None:
    """Real SOCKADDR values of the corpus (or the fixture without one) decode to a family."""
    for path in all_logs():
        for line in pathlib.Path(path).read_bytes().splitlines():
            if b"type=SOCKADDR" not in line:
                continue
            record = parse_line(line)
            if isinstance(record, Record) and "saddr" in record.fields:
                decoded = decode_sockaddr(record.fields["saddr"])
                assert "family" in decoded, (path, record.fields["saddr"])
