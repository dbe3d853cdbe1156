"""IPsec policy filters ([MS-GPIPSEC]): the binary ``ipsecData`` of an ``ipsecFilter`` object, and which packets a
filter matches. Pure: no I/O; the policy objects are read by :mod:`pytest_vpro.facts.ipsec`.

Layout ([MS-GPIPSEC] 2.2.1.5.1 "ipsecFilter{GUID} Object Description"; docs/protocols.md, "Stage 1 network
checks", the IPsec rows):
the 16-byte GUID {80DC20B5-2EC8-11D1-A89E-00A0248D3021} (Windows GUID byte order), a u32 Data-Length1 (footnote
<21>: one byte short on XP SP2/2003, so it is not trusted: the filters are walked by count), a u32
Number-Of-Filters1, then each filter: three u32-length-prefixed UTF-16LE strings (source DNS name, destination DNS
name, description), its 16-byte GUID, a u32 mirrored flag, source address, source mask, destination address,
destination mask and tunnel address (4 bytes each, first octet first), a u32 protocol (0 any), u16 source and
destination ports (0 any), a u8 is-tunnel, a u8 special filter and a u16 options. Integers are little-endian.
Bytes after the last filter (the optional V2 part, not written by Windows 2000/XP/2003, or one pad byte) are left.

Addresses: 0 with mask 0 is "Any IP Address"; 0 with mask 255.255.255.255 is "My IP Address" (the Windows SDK's
``winipsec.h``: ``IP_ADDRESS_ME`` 0, ``IP_ADDRESS_MASK_NONE`` 0xFFFFFFFF; the default "All IP Traffic" filter
Windows and Samba provision is "My IP Address" to "Any IP Address").
"""
from __future__ import annotations

import ipaddress
import struct
import uuid
from dataclasses import dataclass

from .errors import MalformedReply

#: Filter-Policy-ID1: "a legacy filter follows" ([MS-GPIPSEC] 2.2.1.5.1).
FILTER_DATA_ID = uuid.UUID("80DC20B5-2EC8-11D1-A89E-00A0248D3021")
ANY_PROTOCOL, TCP, UDP = 0, 6, 17
MASK_NONE = 0xFFFFFFFF
#: Legacy-Special-Filter: the source (0x01..0x04) or destination (0x81..0x84) is the computer's own server.
SPECIAL = {1: "DNS servers", 2: "WINS servers", 3: "DHCP server", 4: "default gateway"}
_FIXED = struct.Struct("<16sI4s4s4s4s4sIHHBBH")  # 52 bytes after the three strings


@dataclass(frozen=True)
class Endpoint:
    """One side of a filter: an IPv4 address and mask, or a special server of the computer's own."""

    address: int
    mask: int
    special: str = ""  # "DNS servers", ... (Legacy-Special-Filter)

    @property
    def any(self) -> bool:
        return not self.special and self.address == 0 and self.mask == 0

    @property
    def me(self) -> bool:
        return not self.special and self.address == 0 and self.mask == MASK_NONE

    def matches(self, address: str, *, is_me: bool) -> bool | None:
        """Whether a packet's ``address`` (the computer's own when ``is_me``) is on this side; None when it
        cannot be known here (a special server: its address is the computer's own setting)."""
        if self.special:
            return None
        if self.any:
            return True
        if self.me:
            return is_me
        try:
            return int(ipaddress.IPv4Address(address)) & self.mask == self.address & self.mask
        except ValueError:
            return False

    def __str__(self) -> str:
        if self.special:
            return f"the computer's {self.special}"
        if self.any:
            return "any IP address"
        if self.me:
            return "my IP address"
        ip = ipaddress.IPv4Address(self.address)
        if self.mask == MASK_NONE:
            return str(ip)
        return str(ipaddress.IPv4Network(f"{ip}/{ipaddress.IPv4Address(self.mask)}", strict=False))


@dataclass(frozen=True)
class IpsecFilter:
    """One filter (Filter-Spec1) of an ipsecFilter object."""

    description: str
    source: Endpoint
    destination: Endpoint
    protocol: int
    source_port: int
    destination_port: int
    mirrored: bool
    tunnel: bool = False
    source_dns: str = ""
    destination_dns: str = ""

    def _one_way(self, src: tuple[str, bool], dst: tuple[str, bool], protocol: int, sport: int | None,
                 dport: int | None) -> bool | None:
        if self.protocol not in (ANY_PROTOCOL, protocol):
            return False
        for want, port in ((self.source_port, sport), (self.destination_port, dport)):
            if want and want != port:  # None: an ephemeral port, matched only by "any port"
                return False
        sides = [self.source.matches(src[0], is_me=src[1]), self.destination.matches(dst[0], is_me=dst[1])]
        if False in sides:
            return False
        return None if None in sides else True

    def matches(self, src: tuple[str, bool], dst: tuple[str, bool], protocol: int, sport: int | None,
                dport: int | None) -> bool | None:
        """Whether the packet ``src`` -> ``dst`` ((address, is the computer itself), protocol, ports; a port None
        is an ephemeral one) matches this filter, or its mirror when mirrored; None when a side is a special
        server whose address is not known here."""
        ways = [self._one_way(src, dst, protocol, sport, dport)]
        if self.mirrored:
            ways.append(self._one_way(dst, src, protocol, dport, sport))
        return True if True in ways else None if None in ways else False

    def __str__(self) -> str:
        proto = {ANY_PROTOCOL: "any protocol", TCP: "TCP", UDP: "UDP"}.get(self.protocol, f"protocol {self.protocol}")
        ports = "" if self.protocol not in (TCP, UDP) else \
            f" port {self.source_port or 'any'} -> port {self.destination_port or 'any'}"
        name = f"'{self.description}' " if self.description else ""
        return (f"{name}{self.source} -> {self.destination}, {proto}{ports}"
                f"{', mirrored' if self.mirrored else ''}{', tunnel' if self.tunnel else ''}")


def _endpoint(raw: bytes, special: int, high: bool) -> Endpoint:
    return Endpoint(int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:], "big"),
                    SPECIAL.get(special & 0x7F, "") if bool(special & 0x80) == high and special else "")


def parse_filter_data(blob: bytes) -> list[IpsecFilter]:
    """The filters of an ipsecFilter ``ipsecData``; MalformedReply when it is not one."""
    if len(blob) < 24 or uuid.UUID(bytes_le=bytes(blob[:16])) != FILTER_DATA_ID:
        raise MalformedReply(f"ipsecData of {len(blob)} bytes does not start with the filter data GUID "
                             f"{{{str(FILTER_DATA_ID).upper()}}}")
    (count,) = struct.unpack_from("<I", blob, 20)
    offset, out = 24, []
    try:
        for _ in range(count):
            strings = []
            for _ in range(3):
                (length,) = struct.unpack_from("<I", blob, offset)
                if offset + 4 + length > len(blob):
                    raise struct.error("string past the end")
                strings.append(blob[offset + 4:offset + 4 + length].decode("utf-16-le").rstrip("\0"))
                offset += 4 + length
            (_guid, mirrored, src, src_mask, dst, dst_mask, _tunnel_address, protocol, sport, dport, tunnel,
             special, _options) = _FIXED.unpack_from(blob, offset)
            offset += _FIXED.size
            out.append(IpsecFilter(strings[2], _endpoint(src + src_mask, special, False),
                                   _endpoint(dst + dst_mask, special, True), protocol, sport, dport,
                                   bool(mirrored), bool(tunnel), strings[0], strings[1]))
    except (struct.error, UnicodeDecodeError) as exc:
        raise MalformedReply(f"ipsecData of {len(blob)} bytes ends inside filter {len(out) + 1} of {count} "
                             f"({exc})") from None
    return out


__all__ = ["FILTER_DATA_ID", "Endpoint", "IpsecFilter", "parse_filter_data", "ANY_PROTOCOL", "TCP", "UDP"]
