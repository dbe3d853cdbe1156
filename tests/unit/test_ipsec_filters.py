"""The ipsecData of an ipsecFilter object, decoded by pytest_vpro.probes.ipsec.

The blobs are built here from the layout of [MS-GPIPSEC] 2.2.1.5.1 "ipsecFilter{GUID} Object Description"
(https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-gpipsec/094f0323-1cae-4b1a-bb46-326bdeb5e77e),
not copied from anyone's file. Two of them have the shapes of real public blobs (docs/protocols.md, "IPsec policy
filters"): the default "All IP Traffic" filter list Samba provisions (Samba ``source4/setup/provision.ldif``:
Data-Length1 74 for 70 bytes of filter, then one pad byte, as footnote <21> says of XP SP2/2003) and a Reg.exe
export of a list of many filters (Data-Length1 70 x N, no pad byte); the lab test reads the real Samba one.
"""
from __future__ import annotations

import struct
import uuid

import pytest

from pytest_vpro.probes import ipsec
from pytest_vpro.probes.errors import MalformedReply

GUID = bytes.fromhex("b520dc80c82ed111a89e00a0248d3021")  # {80DC20B5-2EC8-11D1-A89E-00A0248D3021}, bytes_le
SP, CLIENT, OTHER = "10.0.0.11", "10.0.1.5", "10.0.9.9"


def text(s: str) -> bytes:
    raw = (s + "\0").encode("utf-16-le")
    return struct.pack("<I", len(raw)) + raw


def spec(src="0.0.0.0", src_mask="0.0.0.0", dst="0.0.0.0", dst_mask="0.0.0.0", *, proto=0, sport=0, dport=0,
         mirrored=1, description="", special=0) -> bytes:
    addresses = b"".join(bytes(map(int, a.split("."))) for a in (src, src_mask, dst, dst_mask, "0.0.0.0"))
    guid = uuid.uuid5(uuid.NAMESPACE_OID, repr((src, src_mask, dst, dst_mask, proto, sport, dport, description)))
    # a filter GUID derived from the filter, not random: test ids (blobs) must be the same in every xdist worker
    return (text("") + text("") + text(description) + guid.bytes_le + struct.pack("<I", mirrored)
            + addresses + struct.pack("<IHHBBH", proto, sport, dport, 0, special, 0))


def blob(*specs: bytes, length: int | None = None, tail: bytes = b"") -> bytes:
    body = b"".join(specs)
    return GUID + struct.pack("<II", len(body) if length is None else length, len(specs)) + body + tail


def test_all_ip_traffic_as_samba_provisions_it_is_me_to_any_mirrored_any_protocol():
    data = blob(spec(src_mask="255.255.255.255"), length=74, tail=b"\0")  # footnote <21>: the length says 74
    assert len(data) == 95  # as the provisioned value: 16 + 4 + 75
    (only,) = ipsec.parse_filter_data(data)
    assert only.source.me and only.destination.any and only.mirrored and only.protocol == ipsec.ANY_PROTOCOL
    assert str(only) == "my IP address -> any IP address, any protocol, mirrored"


def test_a_list_of_many_filters_is_walked_by_count_and_the_fields_are_read_in_their_byte_order():
    specs = [spec(dst="192.168.0.255", dst_mask="255.255.255.255", proto=6, dport=port) for port in (22, 445)]
    specs.append(spec(src="10.0.0.1", src_mask="255.255.255.255", proto=17, sport=1701, mirrored=0,
                      description="L2TP"))
    filters = ipsec.parse_filter_data(blob(*specs, length=70 * 3 + 8))  # Data-Length1 is not trusted
    assert [f.destination_port for f in filters] == [22, 445, 0]
    assert str(filters[0].destination) == "192.168.0.255" and filters[0].protocol == ipsec.TCP
    last = filters[2]
    assert (last.description, last.source_port, last.mirrored, str(last.source)) == ("L2TP", 1701, False, "10.0.0.1")
    assert str(ipsec.parse_filter_data(blob(spec(dst="10.0.1.0", dst_mask="255.255.255.0")))[0].destination) == \
        "10.0.1.0/24"


def test_special_servers_are_on_the_side_the_high_bit_names():
    source_dns, destination_gateway = (ipsec.parse_filter_data(blob(spec(special=s)))[0] for s in (0x01, 0x84))
    assert source_dns.source.special == "DNS servers" and not source_dns.destination.special
    assert destination_gateway.destination.special == "default gateway" and not destination_gateway.source.special


@pytest.mark.parametrize("data, says", [
    (b"", "does not start with the filter data GUID"),
    (bytes(16) + struct.pack("<II", 0, 1), "does not start with the filter data GUID"),
    (blob(spec())[:-10], "ends inside filter 1 of 1"),
    (GUID + struct.pack("<II", 70, 2) + spec(), "ends inside filter 2 of 2"),
    (GUID + struct.pack("<III", 0, 1, 1000), "ends inside filter 1 of 1"),
])
def test_a_blob_that_is_not_filter_data_is_a_malformed_reply(data, says):
    with pytest.raises(MalformedReply, match=says):
        ipsec.parse_filter_data(data)


def amt(f: ipsec.IpsecFilter, port: int = 16993, client: str = CLIENT) -> bool | None:
    """The service point's connection to ``client``'s ``port``, either direction (the check's question)."""
    out = f.matches((SP, True), (client, False), ipsec.TCP, None, port)
    back = f.matches((client, False), (SP, True), ipsec.TCP, port, None)
    return True if True in (out, back) else None if None in (out, back) else False


def one(**kw) -> ipsec.IpsecFilter:
    return ipsec.parse_filter_data(blob(spec(**kw)))[0]


def test_which_filters_match_the_service_points_amt_traffic():
    assert amt(one(src_mask="255.255.255.255"))  # all IP traffic
    assert amt(one(proto=6, dport=16993))  # any to any, TCP to 16993
    assert amt(one(src="10.0.1.0", src_mask="255.255.255.0", proto=6, sport=16993, mirrored=0))  # the reply way
    assert amt(one(dst="10.0.1.0", dst_mask="255.255.255.0", mirrored=0))
    assert not amt(one(proto=6, dport=445))
    assert not amt(one(proto=17))
    assert not amt(one(dst=OTHER, dst_mask="255.255.255.255", proto=6))
    assert amt(one(dst=CLIENT, dst_mask="255.255.255.255", mirrored=0))
    assert amt(one(src=CLIENT, src_mask="255.255.255.255", dst_mask="255.255.255.255", mirrored=0))  # the reply
    assert not amt(one(src=CLIENT, src_mask="255.255.255.255", dst=OTHER, dst_mask="255.255.255.255"))
    assert not amt(one(src_mask="255.255.255.255", proto=6, sport=16993, mirrored=0))  # from my own 16993
    assert amt(one(proto=6, special=0x81)) is None  # to the computer's DNS servers: their addresses are not known


def test_a_non_mirrored_filter_matches_one_direction_only():
    out_only = one(src_mask="255.255.255.255", dst=CLIENT, dst_mask="255.255.255.255", mirrored=0)
    assert out_only.matches((SP, True), (CLIENT, False), ipsec.TCP, None, 16992)
    assert not out_only.matches((CLIENT, False), (SP, True), ipsec.TCP, 16992, None)
