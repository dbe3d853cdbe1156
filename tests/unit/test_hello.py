"""The hello packet (docs/protocols.md, "The hello packet"): golden bytes, bad input, round trip."""
from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vpro.probes.hello import (
    HASH_TYPES,
    VERSION_PKI,
    VERSION_PSK,
    Hello,
    MalformedHello,
    decode_hello,
    encode_hello,
)

DEVICE = uuid.UUID("12345678-9abc-def0-1122-334455667788")
# UUID with its first three groups byte-swapped (SMBIOS style)
UUID_BYTES = bytes.fromhex("78563412" "bc9a" "f0de" "1122" "334455667788")
SHA256 = bytes(range(32))

GOLDEN_PKI = (
    b"\x01\x00"            # admin credentials set
    + b"\x03\x00"          # version 3 = PKI
    + b"\x05\x00\x00\x00"  # retry count 5
    + UUID_BYTES
    + b"\x01"              # one hash
    + b"\x02\x20" + SHA256  # SHA-256, 32 bytes
)
GOLDEN_PSK = b"\x00\x00" + b"\x02\x00" + b"\x00\x00\x00\x00" + UUID_BYTES + b"ABCD-EFG"


def test_golden_pki():
    assert encode_hello(DEVICE, admin_credentials_set=True, retry_count=5, hashes=[(2, SHA256)]) == GOLDEN_PKI
    h = decode_hello(GOLDEN_PKI)
    assert h == Hello(DEVICE, VERSION_PKI, True, 5, hashes=((2, SHA256),))
    assert h.mode == "PKI"


def test_golden_psk():
    assert encode_hello(DEVICE, version=VERSION_PSK, pid=b"ABCD-EFG") == GOLDEN_PSK
    h = decode_hello(GOLDEN_PSK)
    assert (h.uuid, h.mode, h.pid, h.hashes) == (DEVICE, "PSK", b"ABCD-EFG", ())


@pytest.mark.parametrize("cut", [0, 1, 8, 23, 24, 25, 26, 40, len(GOLDEN_PKI) - 1])
def test_truncated_pki_is_malformed(cut):
    with pytest.raises(MalformedHello):
        decode_hello(GOLDEN_PKI[:cut])


@pytest.mark.parametrize("data, words", [
    (GOLDEN_PSK[:-1], "8-byte PID"),
    (GOLDEN_PSK + b"x", "8-byte PID"),
    (b"\x00\x00\x09\x00" + GOLDEN_PKI[4:], "unknown hello version 9"),
    (b"\x07\x00" + GOLDEN_PKI[2:], "admin-credentials"),
    (GOLDEN_PKI + b"\x00", "trailing"),
    (GOLDEN_PKI[:24] + b"\x01\x01\x05abcde", "SHA-1 with length 5"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "admin-credentials"),
    (b"\xff" * 20000, "longer"),
])
def test_garbage_is_malformed(data, words):
    with pytest.raises(MalformedHello, match=words):
        decode_hello(data)


def test_encoder_refuses_bad_arguments():
    with pytest.raises(ValueError):
        encode_hello(DEVICE, version=VERSION_PSK, pid=b"short")
    with pytest.raises(ValueError):
        encode_hello(DEVICE, version=7)


_hashes = st.lists(st.sampled_from(sorted(HASH_TYPES)).flatmap(
    lambda t: st.tuples(st.just(t), st.binary(min_size=HASH_TYPES[t][1], max_size=HASH_TYPES[t][1]))), max_size=12)


@given(u=st.uuids(), admin=st.booleans(), retry=st.integers(0, 14), hashes=_hashes)
def test_pki_round_trip(u, admin, retry, hashes):
    h = decode_hello(encode_hello(u, admin_credentials_set=admin, retry_count=retry, hashes=hashes))
    assert (h.uuid, h.admin_credentials_set, h.retry_count, list(h.hashes)) == (u, admin, retry, hashes)


@given(u=st.uuids(), pid=st.binary(min_size=8, max_size=8), retry=st.integers(0, 14))
def test_psk_round_trip(u, pid, retry):
    h = decode_hello(encode_hello(u, version=VERSION_PSK, pid=pid, retry_count=retry))
    assert (h.uuid, h.pid, h.retry_count, h.version) == (u, pid, retry, VERSION_PSK)


@given(st.binary(max_size=300))
def test_decoder_never_crashes_on_random_bytes(data):
    try:
        decode_hello(data)
    except MalformedHello:
        pass
