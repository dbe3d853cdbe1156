"""Issue 16, item 2: AMT_AuthorizationService's KerberosUserSid is the base64 of a binary SID (MS-DTYP
2.4.2.2).

The worked vectors (docs/protocols.md, "Classes the checks read") follow the layout MeshCommander's GetSidString decodes: revision,
sub-authority count, a 48-bit big-endian identifier authority, then little-endian u32 sub-authorities. ldap3's own
SID formatter (an independent reading of MS-DTYP, the one the LDAP probe uses for objectSid) must agree.
"""
from __future__ import annotations

import base64

import pytest
from ldap3.protocol.formatters.formatters import format_sid

from pytest_vpro.probes.amt import SidError, realm_exists, sid_from_wire, sid_to_wire

VECTORS = [
    ("S-1-5-21-1004336348-1177238915-682003330-512",
     "010500000000000515000000dcf4dc3b833d2b46828ba62800020000", "AQUAAAAAAAUVAAAA3PTcO4M9K0aCi6YoAAIAAA=="),
    ("S-1-5-32-544", "01020000000000052000000020020000", "AQIAAAAAAAUgAAAAIAIAAA=="),
]


@pytest.mark.parametrize("text,hexbytes,wire", VECTORS)
def test_worked_vectors_decode_and_encode(text, hexbytes, wire):
    assert base64.b64decode(wire).hex() == hexbytes
    assert sid_from_wire(wire) == text
    assert sid_to_wire(text) == wire
    assert format_sid(bytes.fromhex(hexbytes)) == text  # ldap3 agrees


def test_the_identifier_authority_is_48_bit_big_endian():
    sid = "S-1-281474976710655-7"  # every authority byte set: a reader of byte 7 alone would say 255
    assert sid_from_wire(sid_to_wire(sid)) == sid
    assert base64.b64decode(sid_to_wire("S-1-16-12288"))[2:8] == b"\0\0\0\0\0\x10"  # mandatory label, high


@pytest.mark.parametrize("wire,words", [
    ("S-1-5-21-1-2-3-1105", "not base64"),          # text, as the old lab sent it: not what AMT sends
    (base64.b64encode(b"\x01\x05\0\0").decode(), "shorter than a SID header"),
    (base64.b64encode(bytes.fromhex("0102000000000005200000002002")).decode(), "not a SID"),  # count says 2, 1.5 there
    (base64.b64encode(bytes.fromhex("02010000000000050a000000")).decode(), "revision 2"),
])
def test_what_is_not_a_binary_sid_is_said_so(wire, words):
    with pytest.raises(SidError, match=words):
        sid_from_wire(wire)


def test_realms_20_and_21_exist_only_from_amt_4():
    assert not realm_exists(20, (3, 2, 1)) and not realm_exists(21, (3, 2, 1))
    assert realm_exists(20, (4, 0, 0)) and realm_exists(21, (5, 2, 70))
    assert realm_exists(2, (3, 2, 1)) and not realm_exists(23, (5, 0)) and realm_exists(23, (5, 1))
