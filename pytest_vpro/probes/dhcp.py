"""DHCPINFORM probe: ask a DHCP server for the options an AMT client would get.

The guide (seeds, Stage 1) wants the DHCP scope to hand out option 6 (DNS servers) and
option 15 (domain name), and the DHCP server to support option 81 (client FQDN) so that it
registers the AMT client in DNS. A DHCPINFORM (RFC 2131 §3.4) asks for configuration
parameters without taking a lease, so it is safe against a production server.

Packet layout: RFC 2131 §2 (fixed BOOTP header, magic cookie 99.130.83.99, options),
options: RFC 2132 (3 router, 6 DNS servers, 15 domain name, 52 overload, 53 message type,
54 server identifier, 55 parameter request list, 61 client identifier), RFC 3396 (an option
split into several instances is concatenated), RFC 4702 (option 81: flags S/O/E/N, two
RCODE bytes, the name in canonical wire format when E is set, else ASCII).

Why a small encoder rather than a packet library: scapy is GPL-2.0 and slow to import,
pydhcplib is unmaintained (Python 2 era). The subset needed (one request type, one reply
parser) is ~200 lines, covered by golden-byte tests in ``tests/unit/test_dhcp_codec.py``.

Reply routing: RFC 2131 §4.1 says the server unicasts the DHCPACK for a DHCPINFORM to
``ciaddr`` port 68. dnsmasq (the lab's server) answers a DHCPINFORM at the packet's source
address and port instead, so the probe binds an ephemeral port by default; pass
``client_port=68`` (needs root) for servers that insist on 68.
"""
from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from pytest_vpro.probes.errors import MalformedReply, ProbeError

BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHERNET = 1
MAGIC_COOKIE = b"\x63\x82\x53\x63"
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # RFC 2131 §2, 236 bytes
HEADER_LEN = _HEADER.size
SERVER_PORT, CLIENT_PORT = 67, 68
MIN_PACKET = 300  # RFC 2131 §2 / RFC 1542: pad BOOTP messages to 300 bytes

# RFC 2132 message types (option 53)
DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPDECLINE = 1, 2, 3, 4
DHCPACK, DHCPNAK, DHCPRELEASE, DHCPINFORM = 5, 6, 7, 8

OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS_SERVERS, OPT_HOSTNAME, OPT_DOMAIN_NAME = 1, 3, 6, 12, 15
OPT_OVERLOAD, OPT_MESSAGE_TYPE, OPT_SERVER_ID, OPT_PARAM_REQUEST, OPT_CLIENT_ID = 52, 53, 54, 55, 61
OPT_CLIENT_FQDN = 81

# RFC 4702 §2.1 flags of option 81
FQDN_S, FQDN_O, FQDN_E, FQDN_N = 0x01, 0x02, 0x04, 0x08

DEFAULT_PARAMS = (OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS_SERVERS, OPT_DOMAIN_NAME, OPT_CLIENT_FQDN)
MAX_REPLY = 4096


class DhcpProblem(ProbeError):
    """Base class of what the DHCP probe reports as a finding."""


class MalformedDhcp(DhcpProblem, MalformedReply):
    """The bytes are not a well-formed DHCP message (RFC 2131 §2)."""


class DhcpNoAnswer(DhcpProblem):
    """No matching reply arrived before the timeout."""


@dataclass(frozen=True)
class ClientFqdn:
    """Option 81 contents (RFC 4702 §2)."""

    flags: int
    rcode1: int
    rcode2: int
    name: str

    @property
    def server_updates_a(self) -> bool:
        """S bit: the server (will) perform the A record update (RFC 4702 §2.1)."""
        return bool(self.flags & FQDN_S)

    @property
    def overridden(self) -> bool:
        """O bit: the server overrode the client's S preference."""
        return bool(self.flags & FQDN_O)

    @property
    def no_updates(self) -> bool:
        """N bit: the server will perform no DNS updates at all."""
        return bool(self.flags & FQDN_N)

    @property
    def wire_format(self) -> bool:
        """E bit: the name is in canonical wire format."""
        return bool(self.flags & FQDN_E)


@dataclass(frozen=True)
class DhcpReply:
    """A parsed DHCP message; ``options`` maps option code to its (concatenated) value."""

    op: int
    xid: int
    ciaddr: str
    yiaddr: str
    siaddr: str
    giaddr: str
    chaddr: bytes
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value and len(value) == 1 else None

    @property
    def server_id(self) -> str | None:
        value = self.options.get(OPT_SERVER_ID)
        return str(ipaddress.IPv4Address(value)) if value and len(value) == 4 else None

    @property
    def dns_servers(self) -> list[str]:
        """Option 6 (RFC 2132 §3.8): a list of IPv4 addresses; [] when absent."""
        value = self.options.get(OPT_DNS_SERVERS, b"")
        if len(value) % 4:
            raise MalformedDhcp(f"option 6 length {len(value)} is not a multiple of 4")
        return [str(ipaddress.IPv4Address(value[i:i + 4])) for i in range(0, len(value), 4)]

    @property
    def domain_name(self) -> str | None:
        """Option 15 (RFC 2132 §3.17), trailing NULs stripped; None when absent."""
        value = self.options.get(OPT_DOMAIN_NAME)
        if value is None:
            return None
        return value.rstrip(b"\x00").decode("ascii", errors="replace")

    @property
    def client_fqdn(self) -> ClientFqdn | None:
        value = self.options.get(OPT_CLIENT_FQDN)
        return None if value is None else decode_client_fqdn(value)

    @property
    def client_fqdn_flags(self) -> int | None:
        fqdn = self.client_fqdn
        return None if fqdn is None else fqdn.flags


# --------------------------------------------------------------------------- encoding

def encode_dns_name(name: str) -> bytes:
    """Canonical wire format (RFC 1035 §3.1), as RFC 4702 §2.3.1 asks for with E=1."""
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label {label!r} in {name!r}")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def decode_dns_name(data: bytes) -> str:
    """Inverse of :func:`encode_dns_name`; a name without the root label is partial."""
    labels, i = [], 0
    while i < len(data):
        length = data[i]
        if length == 0:
            break
        if length > 63 or i + 1 + length > len(data):
            raise MalformedDhcp("bad label in option 81 wire-format name")
        labels.append(data[i + 1:i + 1 + length].decode("ascii", errors="replace"))
        i += 1 + length
    return ".".join(labels)


def encode_client_fqdn(name: str, flags: int = FQDN_S | FQDN_E) -> bytes:
    """Option 81 value: flags, RCODE1 = RCODE2 = 0 (RFC 4702 §2.2), then the name."""
    body = encode_dns_name(name) if flags & FQDN_E else name.encode("ascii")
    return bytes([flags & 0x0F, 0, 0]) + body


def decode_client_fqdn(value: bytes) -> ClientFqdn:
    if len(value) < 3:
        raise MalformedDhcp(f"option 81 shorter than 3 bytes ({len(value)})")
    flags, rc1, rc2, body = value[0], value[1], value[2], value[3:]
    name = decode_dns_name(body) if flags & FQDN_E else body.rstrip(b"\x00").decode("ascii", "replace")
    return ClientFqdn(flags=flags, rcode1=rc1, rcode2=rc2, name=name)


def encode_options(options: list[tuple[int, bytes]]) -> bytes:
    """Options area: cookie, code/length/value triples, END. Values >255 bytes split (RFC 3396)."""
    out = bytearray(MAGIC_COOKIE)
    for code, value in options:
        if not 0 < code < 255:
            raise ValueError(f"option code {code} cannot carry a value")
        chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [b""]
        for chunk in chunks:
            out += bytes([code, len(chunk)]) + chunk
    out.append(OPT_END)
    return bytes(out)


def build_inform(*, ciaddr: str, xid: int, chaddr: bytes = b"\x02\x00\x00\x00\x00\x01",
                 fqdn: str | None = None, fqdn_flags: int = FQDN_S | FQDN_E,
                 params: tuple[int, ...] = DEFAULT_PARAMS, giaddr: str = "0.0.0.0") -> bytes:
    """A DHCPINFORM per RFC 2131 §3.4 / Table 5: ciaddr set, yiaddr 0, no requested address.

    ``fqdn`` adds option 81 (RFC 4702) as an AMT client would send it, asking the server to
    do the A record update itself when ``fqdn_flags`` has S set.
    """
    if len(chaddr) > 16:
        raise ValueError("chaddr longer than 16 bytes")
    header = _HEADER.pack(
        BOOTREQUEST, HTYPE_ETHERNET, len(chaddr), 0, xid & 0xFFFFFFFF, 0, 0,
        ipaddress.IPv4Address(ciaddr).packed, bytes(4), bytes(4),
        ipaddress.IPv4Address(giaddr).packed, chaddr.ljust(16, b"\x00"), bytes(64), bytes(128))
    options: list[tuple[int, bytes]] = [
        (OPT_MESSAGE_TYPE, bytes([DHCPINFORM])),
        (OPT_CLIENT_ID, bytes([HTYPE_ETHERNET]) + chaddr),
    ]
    if fqdn:
        options.append((OPT_CLIENT_FQDN, encode_client_fqdn(fqdn, fqdn_flags)))
    options.append((OPT_PARAM_REQUEST, bytes(params)))
    packet = header + encode_options(options)
    return packet.ljust(MIN_PACKET, b"\x00")


# --------------------------------------------------------------------------- decoding

def _walk_options(area: bytes, into: dict[int, bytes], where: str) -> None:
    """Parse one options area (RFC 2132 §2): PAD skipped, stops at END, RFC 3396 concatenation."""
    i = 0
    while i < len(area):
        code = area[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return
        if i + 1 >= len(area):
            raise MalformedDhcp(f"option {code} truncated (no length) in {where}")
        length = area[i + 1]
        if i + 2 + length > len(area):
            raise MalformedDhcp(f"option {code} length {length} runs past the end of {where}")
        into[code] = into.get(code, b"") + area[i + 2:i + 2 + length]
        i += 2 + length
    if where == "options":
        raise MalformedDhcp("options area has no END option")


def parse_message(data: bytes) -> DhcpReply:
    """Parse a DHCP message (RFC 2131 §2), honouring option overload (RFC 2132 §9.3)."""
    if len(data) < HEADER_LEN + len(MAGIC_COOKIE):
        raise MalformedDhcp(f"message of {len(data)} bytes is shorter than the fixed header")
    (op, htype, hlen, _hops, xid, _secs, _flags, ciaddr, yiaddr, siaddr, giaddr,
     chaddr, sname, filename) = _HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedDhcp(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if hlen > 16:
        raise MalformedDhcp(f"hlen {hlen} exceeds 16")
    if data[HEADER_LEN:HEADER_LEN + 4] != MAGIC_COOKIE:
        raise MalformedDhcp("missing DHCP magic cookie")
    options: dict[int, bytes] = {}
    _walk_options(data[HEADER_LEN + 4:], options, "options")
    overload = options.get(OPT_OVERLOAD)
    if overload:
        if overload[0] & 1:
            _walk_options(filename, options, "file")
        if overload[0] & 2:
            _walk_options(sname, options, "sname")
    ip = ipaddress.IPv4Address
    return DhcpReply(op=op, xid=xid, ciaddr=str(ip(ciaddr)), yiaddr=str(ip(yiaddr)),
                     siaddr=str(ip(siaddr)), giaddr=str(ip(giaddr)), chaddr=chaddr[:hlen],
                     options=options)


# --------------------------------------------------------------------------- network

def inform(server: str, *, client_address: str, port: int = SERVER_PORT, client_port: int = 0,
           fqdn: str | None = None, fqdn_flags: int = FQDN_S | FQDN_E,
           chaddr: bytes | None = None, timeout: float = 2.0, attempts: int = 2) -> DhcpReply:
    """Send a unicast DHCPINFORM to ``server:port`` from ``client_address`` and return the ACK.

    ``client_address`` is both the socket's source address and ``ciaddr``. ``timeout`` bounds
    the whole exchange; it is split over ``attempts`` sends (RFC 2131 §4.1 retransmission).
    Only a BOOTREPLY with our ``xid`` from ``server``'s address (any of its name's addresses; on loopback, any
    loopback address: one host) is the answer: a stray datagram (malformed, a reply to another client, from
    another address) is counted and ignored, and the wait goes on within the deadline.
    Raises :class:`DhcpNoAnswer` on timeout (naming what was ignored).
    """
    xid = int.from_bytes(os.urandom(4), "big")
    chaddr = chaddr or b"\x02" + os.urandom(5)
    packet = build_inform(ciaddr=client_address, xid=xid, chaddr=chaddr, fqdn=fqdn,
                          fqdn_flags=fqdn_flags)
    deadline = time.monotonic() + timeout
    ignored: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((client_address, client_port))
        server_ips = _addresses(server)
        for attempt in range(max(1, attempts)):
            sock.sendto(packet, (server, port))
            slot_end = min(deadline, time.monotonic() + timeout / max(1, attempts))
            while (left := slot_end - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                try:
                    data, peer = sock.recvfrom(MAX_REPLY)
                except OSError as exc:  # e.g. ICMP port unreachable reported on the next receive
                    ignored.append(f"a socket error ({exc.strerror or exc})")
                    continue
                if not _from_server(peer[0], server_ips):
                    ignored.append(f"a datagram from {peer[0]}:{peer[1]}, not the server")
                    continue
                try:
                    reply = parse_message(data)
                except MalformedDhcp as exc:
                    ignored.append(f"a malformed datagram from {peer[0]} ({exc})")
                    continue
                if reply.op == BOOTREPLY and reply.xid == xid:
                    return reply
                ignored.append(f"a DHCP message from {peer[0]} for another transaction")
    why = f"; ignored {len(ignored)}: " + "; ".join(ignored[:3]) if ignored else ""
    raise DhcpNoAnswer(f"no DHCP reply from {server}:{port} within {timeout:.1f}s{why}")


def _from_server(source: str, server_ips: set[str]) -> bool:
    """Whether a datagram from ``source`` may be the server's answer: from one of its addresses, or, for a server
    on this machine's loopback (127.0.0.0/8 is one host), from another loopback address: a server bound to the
    wildcard answers from the interface's first address (dnsmasq: 127.0.0.1, with that as its identifier)."""
    if source in server_ips:
        return True
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    try:
        return ipaddress.IPv4Address(source) in loopback and any(ipaddress.IPv4Address(a) in loopback
                                                                   for a in server_ips)
    except ValueError:
        return False


def _addresses(server: str) -> set[str]:
    """The IPv4 addresses a reply from ``server`` may come from."""
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(server, None, socket.AF_INET, socket.SOCK_DGRAM)}
    except (socket.gaierror, UnicodeError):
        return {server}
