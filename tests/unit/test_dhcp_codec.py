"""DHCP codec: golden bytes (RFC 2131 §2, RFC 2132, RFC 3396, RFC 4702), truncated and garbage input."""
from __future__ import annotations

import random
import struct

import pytest

from pytest_vpro.probes import dhcp

MAC = bytes.fromhex("020000aabbcc")
XID = 0x1234ABCD

# option area expected for build_inform(ciaddr=127.93.1.1, fqdn=pc0001.vprolab.test)
GOLDEN_INFORM_OPTIONS = bytes.fromhex(
    "63825363"                                  # magic cookie 99.130.83.99
    "350108"                                    # 53 message type = DHCPINFORM
    "3d0701020000aabbcc"                        # 61 client id = htype 1 + MAC
    "5118" "050000"                             # 81 len 24, flags S|E, rcode1, rcode2
    "06706330303031" "077670726f6c6162" "0474657374" "00"  # pc0001.vprolab.test wire format
    "3705" "0103060f51"                         # 55 params: 1, 3, 6, 15, 81
    "ff")                                       # END


def _reply(options: bytes, *, op: int = 2, xid: int = XID, sname: bytes = b"", file: bytes = b"",
           cookie: bytes = dhcp.MAGIC_COOKIE) -> bytes:
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, 0,
                         bytes([127, 93, 1, 1]), bytes(4), bytes([127, 0, 0, 1]), bytes(4),
                         MAC, sname, file)
    return header + cookie + options


def _golden_ack() -> bytes:
    """A DHCPACK as dnsmasq 2.90 sent it to the lab probe (options in its order)."""
    fqdn = bytes.fromhex("05ffff") + bytes.fromhex("06706330303031077670726f6c6162047465737400")
    opts = (bytes.fromhex("350105" "36047f000001" "0104ffff0000" "1c047f5dffff")
            + bytes([81, len(fqdn)]) + fqdn
            + bytes([15, 12]) + b"vprolab.test"
            + bytes.fromhex("06047f5d000a")
            + b"\xff")
    return _reply(opts)


def test_inform_header_golden_fields():
    pkt = dhcp.build_inform(ciaddr="127.93.1.1", xid=XID, chaddr=MAC, fqdn="pc0001.vprolab.test")
    assert len(pkt) == dhcp.MIN_PACKET
    assert pkt[0:4] == bytes([1, 1, 6, 0])              # BOOTREQUEST, ethernet, hlen 6, hops 0
    assert pkt[4:8] == bytes.fromhex("1234abcd")        # xid
    assert pkt[8:12] == bytes(4)                        # secs, flags (unicast)
    assert pkt[12:16] == bytes([127, 93, 1, 1])         # ciaddr (RFC 2131 §3.4)
    assert pkt[16:28] == bytes(12)                      # yiaddr, siaddr, giaddr zero
    assert pkt[28:44] == MAC + bytes(10)                # chaddr padded to 16
    assert pkt[44:236] == bytes(192)                    # sname, file
    opts = pkt[236:236 + len(GOLDEN_INFORM_OPTIONS)]
    assert opts == GOLDEN_INFORM_OPTIONS
    assert pkt[236 + len(GOLDEN_INFORM_OPTIONS):] == bytes(dhcp.MIN_PACKET - 236 - len(GOLDEN_INFORM_OPTIONS))


def test_inform_round_trips_through_parser():
    pkt = dhcp.build_inform(ciaddr="10.0.0.5", xid=7, chaddr=MAC, fqdn="amt.example.test",
                            fqdn_flags=dhcp.FQDN_E)
    msg = dhcp.parse_message(pkt)
    assert (msg.op, msg.xid, msg.ciaddr, msg.chaddr) == (1, 7, "10.0.0.5", MAC)
    assert msg.message_type == dhcp.DHCPINFORM
    assert msg.client_fqdn == dhcp.ClientFqdn(flags=dhcp.FQDN_E, rcode1=0, rcode2=0, name="amt.example.test")


def test_inform_without_fqdn_has_no_option_81():
    msg = dhcp.parse_message(dhcp.build_inform(ciaddr="10.0.0.5", xid=1))
    assert dhcp.OPT_CLIENT_FQDN not in msg.options
    assert msg.options[dhcp.OPT_PARAM_REQUEST] == bytes([1, 3, 6, 15, 81])


def test_parse_golden_ack():
    reply = dhcp.parse_message(_golden_ack())
    assert reply.op == dhcp.BOOTREPLY and reply.xid == XID
    assert reply.message_type == dhcp.DHCPACK
    assert reply.server_id == "127.0.0.1"
    assert reply.dns_servers == ["127.93.0.10"]
    assert reply.domain_name == "vprolab.test"
    fqdn = reply.client_fqdn
    assert fqdn.name == "pc0001.vprolab.test" and (fqdn.rcode1, fqdn.rcode2) == (255, 255)
    assert reply.client_fqdn_flags == 0x05
    assert fqdn.server_updates_a and fqdn.wire_format and not fqdn.no_updates and not fqdn.overridden


def test_absent_options_are_empty_or_none():
    reply = dhcp.parse_message(_reply(bytes.fromhex("350105ff")))
    assert reply.dns_servers == [] and reply.domain_name is None
    assert reply.client_fqdn is None and reply.client_fqdn_flags is None and reply.server_id is None


def test_domain_name_nul_terminated_and_ascii_fqdn():
    """Microsoft-style NUL-terminated option 15; option 81 with E=0 carries ASCII (RFC 4702 §2.3)."""
    opts = bytes([15, 13]) + b"vprolab.test\x00" + bytes([81, 7, 0x03, 0, 0]) + b"pc01" + b"\xff"
    reply = dhcp.parse_message(_reply(opts))
    assert reply.domain_name == "vprolab.test"
    assert reply.client_fqdn == dhcp.ClientFqdn(flags=0x03, rcode1=0, rcode2=0, name="pc01")


def test_multiple_dns_servers_and_pad_options():
    opts = b"\x00\x00" + bytes([6, 8, 10, 0, 0, 1, 10, 0, 0, 2]) + b"\x00\xff"
    assert dhcp.parse_message(_reply(opts)).dns_servers == ["10.0.0.1", "10.0.0.2"]


def test_split_option_is_concatenated_rfc3396():
    opts = bytes([15, 4]) + b"vpro" + bytes([15, 8]) + b"lab.test" + b"\xff"
    assert dhcp.parse_message(_reply(opts)).domain_name == "vprolab.test"


def test_option_overload_into_file_field_rfc2132_9_3():
    file = bytes([15, 12]) + b"vprolab.test" + b"\xff"
    reply = dhcp.parse_message(_reply(bytes([52, 1, 1, 53, 1, 5, 255]), file=file))
    assert reply.domain_name == "vprolab.test"


def test_long_option_split_on_encode():
    area = dhcp.encode_options([(43, bytes(300))])
    assert area[4:6] == bytes([43, 255]) and area[261:263] == bytes([43, 45])


@pytest.mark.parametrize("data, message", [
    (b"", "shorter"),
    (_golden_ack()[:200], "shorter"),
    (_reply(b"\x35\x01\x05", cookie=b"\x00\x00\x00\x00"), "cookie"),
    (_reply(b"\x35\x01\x05"), "no END"),
    (_reply(b"\x35\x05\x05\xff"), "runs past"),
    (_reply(b"\x35"), "no length"),
    (_reply(b"\xff", op=9), "op 9"),
])
def test_malformed(data, message):
    with pytest.raises(dhcp.MalformedDhcp, match=message):
        dhcp.parse_message(data)


def test_bad_option_values_are_malformed():
    with pytest.raises(dhcp.MalformedDhcp):
        dhcp.parse_message(_reply(bytes([6, 5, 1, 2, 3, 4, 5, 255]))).dns_servers
    with pytest.raises(dhcp.MalformedDhcp):
        dhcp.parse_message(_reply(bytes([81, 2, 5, 0, 255]))).client_fqdn
    with pytest.raises(dhcp.MalformedDhcp):
        dhcp.parse_message(_reply(bytes([81, 5, 5, 0, 0, 9, 97, 255]))).client_fqdn


def test_garbage_only_raises_malformed():
    rng = random.Random(2131)
    base = _golden_ack()
    for _ in range(2000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(236, len(data))] = rng.randrange(256)
        data = bytes(data[:rng.randint(0, len(data))]) if rng.random() < 0.3 else bytes(data)
        try:
            reply = dhcp.parse_message(data)
            reply.domain_name, reply.server_id, reply.message_type
            try:
                reply.dns_servers, reply.client_fqdn
            except dhcp.MalformedDhcp:
                pass
        except dhcp.MalformedDhcp:
            pass
    for _ in range(500):
        with pytest.raises(dhcp.MalformedDhcp):
            dhcp.parse_message(rng.randbytes(rng.randint(0, 239)))


def test_encode_dns_name_rejects_bad_labels():
    assert dhcp.encode_dns_name("a.b.") == b"\x01a\x01b\x00"
    with pytest.raises(ValueError):
        dhcp.encode_dns_name("a..b")
    with pytest.raises(ValueError):
        dhcp.encode_dns_name("x" * 64 + ".test")
