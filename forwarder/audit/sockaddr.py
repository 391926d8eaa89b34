"""Decoding of the ``saddr=`` hex dump of a SOCKADDR record (a ``struct sockaddr`` as the program
passed it to bind/connect/sendto ...).

The family is in host byte order, so its first two bytes read little-endian on x86 and ARM and
big-endian on s390x and ppc64.  The log does not say which; a value that is no family when read
little-endian but one when read big-endian is taken as big-endian, and the other host-order
numbers (netlink pid/groups, IPv6 scope) are read the same way.  Ports, addresses and the IPv6
flow label are in network byte order on every host.
"""

from __future__ import annotations

import ipaddress
from typing import Final, Literal

from forwarder.audit.tables.families import ADDRESS_FAMILY_NAMES
from forwarder.audit.values import decode_hex, decode_text

#: Address families with a decoder here, and the names reported for them.
AF_UNIX: Final = 1
AF_INET: Final = 2
AF_INET6: Final = 10
AF_NETLINK: Final = 16
DECODED_FAMILY_NAMES: Final[dict[int, str]] = {
    AF_UNIX: "unix",
    AF_INET: "ipv4",
    AF_INET6: "ipv6",
    AF_NETLINK: "netlink",
}

#: Sizes of the fixed parts (bytes): sockaddr_in = family 2 + port 2 + address 4;
#: sockaddr_in6 = family 2 + port 2 + flowinfo 4 + address 16 (+ scope id 4 since Linux 2.4);
#: sockaddr_nl = family 2 + pad 2 + pid 4 + groups 4.
FAMILY_SIZE: Final = 2
INET_SIZE: Final = 8
INET6_SIZE: Final = 24
INET6_SCOPE_SIZE: Final = 28
NETLINK_SIZE: Final = 12

#: First 12 bytes of an IPv4-mapped IPv6 address (::ffff:a.b.c.d).
_IPV4_MAPPED_PREFIX: Final = bytes(10) + b"\xff\xff"

#: An abstract unix socket name starts with a NUL byte; it is shown as ``@name`` (as ``ss`` does),
#: NUL bytes inside the name as ``@`` too.
ABSTRACT_MARK: Final = "@"

ByteOrder = Literal["little", "big"]


def decode_sockaddr(raw_hex: str) -> dict[str, str | int]:
    """Decode a ``saddr=`` value.

    Args:
        raw_hex: the value as written (hex digits).

    Returns:
        * unix: ``{"family": "unix", "path": ...}`` (``@name`` for abstract names; no path for
          an unnamed socket);
        * inet: ``{"family": "ipv4", "address": "a.b.c.d", "port": n}``;
        * inet6: ``{"family": "ipv6", "address", "port"}`` plus ``flowinfo`` and ``scope_id``
          when not zero;
        * netlink: ``{"family": "netlink", "pid", "groups"}``;
        * any other family: ``{"family": name or number as text, "raw": raw_hex}``.

        A value too short for its family gives the family and ``"raw"``; a value that is not
        hex or shorter than a family gives only ``{"raw": raw_hex}``.  Never raises.
    """
    data = decode_hex(raw_hex)
    if data is None or len(data) < FAMILY_SIZE:
        return {"raw": raw_hex}
    order: ByteOrder = "little"
    family = int.from_bytes(data[:FAMILY_SIZE], "little")
    if family not in ADDRESS_FAMILY_NAMES:
        swapped = int.from_bytes(data[:FAMILY_SIZE], "big")
        if swapped in ADDRESS_FAMILY_NAMES:
            order, family = "big", swapped
    if family == AF_UNIX:
        return _unix(data)
    if family == AF_INET and len(data) >= INET_SIZE:
        return _inet(data)
    if family == AF_INET6 and len(data) >= INET6_SIZE:
        return _inet6(data, order)
    if family == AF_NETLINK and len(data) >= NETLINK_SIZE:
        return _netlink(data, order)
    name = DECODED_FAMILY_NAMES.get(family) or ADDRESS_FAMILY_NAMES.get(family) or str(family)
    return {"family": name, "raw": raw_hex}


def _unix(data: bytes) -> dict[str, str | int]:
    result: dict[str, str | int] = {"family": DECODED_FAMILY_NAMES[AF_UNIX]}
    path = data[FAMILY_SIZE:]
    if path.startswith(b"\0"):
        name = path[1:].rstrip(b"\0")
        if name:
            result["path"] = ABSTRACT_MARK + decode_text(name).replace("\0", ABSTRACT_MARK)
    else:
        end = path.find(b"\0")
        if end >= 0:
            path = path[:end]
        if path:
            result["path"] = decode_text(path)
    return result


def _inet(data: bytes) -> dict[str, str | int]:
    return {
        "family": DECODED_FAMILY_NAMES[AF_INET],
        "address": ".".join(str(octet) for octet in data[4:8]),
        "port": int.from_bytes(data[2:4], "big"),
    }


def _inet6(data: bytes, order: ByteOrder) -> dict[str, str | int]:
    raw_address = data[8:24]
    if raw_address.startswith(_IPV4_MAPPED_PREFIX):
        # Written out the same way on every Python version.
        address = "::ffff:" + ".".join(str(octet) for octet in raw_address[12:])
    else:
        address = ipaddress.IPv6Address(raw_address).compressed
    result: dict[str, str | int] = {
        "family": DECODED_FAMILY_NAMES[AF_INET6],
        "address": address,
        "port": int.from_bytes(data[2:4], "big"),
    }
    flowinfo = int.from_bytes(data[4:8], "big")
    if flowinfo:
        result["flowinfo"] = flowinfo
    if len(data) >= INET6_SCOPE_SIZE:
        scope_id = int.from_bytes(data[24:28], order)
        if scope_id:
            result["scope_id"] = scope_id
    return result


def _netlink(data: bytes, order: ByteOrder) -> dict[str, str | int]:
    return {
        "family": DECODED_FAMILY_NAMES[AF_NETLINK],
        "pid": int.from_bytes(data[4:8], order),
        "groups": int.from_bytes(data[8:12], order),
    }
