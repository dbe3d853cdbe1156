"""Issue 14, item 4: bounded memory per reply, on every protocol, and a clear finding when a reply is refused for
size.

The case that found it: an SMB server that sends a 4-byte length of 4 GiB made smbprotocol allocate about 4 GB
before reading a byte of it, and the finding read "Connection timeout". Each case here has a server announce or
send far more than the probe accepts; the probe must refuse it with :class:`ReplyTooLarge` (or, where the
protocol's own parser gives up first, a :class:`MalformedReply`), with Python's peak allocation (tracemalloc,
all threads) far below what was announced.
"""
from __future__ import annotations

import importlib
import socket
import struct
import threading
import time
import tracemalloc
import uuid

import pytest
from servers import Server, ber_message_id, http_head, ldap_reply, read_http_request, tls

from pytest_vpro.environment import Credential
from pytest_vpro.probes import errors, hello, hello_listener, ldap, smb, wsman, x509
from pytest_vpro.secrets import SecretRef

MB = 1024 * 1024
PASSWORD = "Hostile-Estate-Pw-2"


def measured(fn):
    """(exception or result, seconds, peak bytes allocated by Python while ``fn`` ran)."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        try:
            got = fn()
        except BaseException as exc:  # noqa: BLE001 - what the check would see
            got = exc
        return got, time.monotonic() - t0, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def credential(monkeypatch) -> Credential:
    monkeypatch.setenv("VPRO_HOSTILE_PW", PASSWORD)
    return Credential(user="reader@hostile.test", password=SecretRef("env:VPRO_HOSTILE_PW"))


def _flood(conn, server, piece: bytes, total: int) -> None:
    sent = 0
    while sent < total and not server.stop.is_set():
        conn.sendall(piece)
        sent += len(piece)


# --------------------------------------------------------------------------- SMB
def test_an_smb_length_prefix_of_4_gib_is_refused_before_it_is_allocated():
    def server_side(conn, server):
        size = struct.unpack(">L", conn.recv(4))[0]
        server.received.append(conn.recv(size))  # the client's negotiate request
        conn.sendall(b"\xff\xff\xff\xff")         # "the answer is 4 GiB long"
        _flood(conn, server, b"\xfeSMB" + b"\x00" * 65532, 64 * MB)

    smb.smbprotocol_client()  # the libraries' first import (seconds on a loaded machine) is not the exchange
    importlib.import_module("smbprotocol.connection")
    with Server(server_side) as server:
        def read_log():
            with smb.open_file(server.host, "SMS_ABC", "Logs/AMTOPMGR.LOG", user="reader", password=PASSWORD,
                               timeout=2, connect_timeout=1, port=server.port) as f:
                return f.read()
        got, seconds, peak = measured(read_log)
    assert isinstance(got, errors.ReplyTooLarge), f"{type(got).__name__}: {got}"
    assert "4,294,967,295 bytes" in str(got) and "16,777,215" in str(got), str(got)
    assert "Connection timeout" not in str(got) and PASSWORD not in str(got)
    assert peak < 16 * MB, f"peak {peak / MB:.1f} MB for a reply announced at 4 GiB"
    assert seconds < 3


# --------------------------------------------------------------------------- LDAP
def _dc(tmp_path, host, answer_bind):
    ctx, ca = tls(tmp_path, host)

    def dc(conn, server):
        request = server.read(conn)
        answer_bind(conn, server, ber_message_id(request))
    return Server(dc, host=host, tls=ctx), ca


def test_an_ldap_message_announced_at_2_gb_is_refused_before_it_is_read(tmp_path, credential):
    def answer(conn, server, mid):
        conn.sendall(b"\x30\x84\x7f\xff\xff\xff\x02\x01" + bytes([mid]))  # LDAPMessage of 2 GB, then a flood
        _flood(conn, server, b"\x04" * 65536, 64 * MB)

    server, ca = _dc(tmp_path, "127.112.70.1", answer)
    with server:
        got, seconds, peak = measured(lambda: ldap.connect([f"{server.host}:{server.port}"], credential=credential,
                                                           ca_file=ca, timeout=2, connect_timeout=1))
    assert isinstance(got, errors.ReplyTooLarge), f"{type(got).__name__}: {got}"
    assert "2,147,483,647 bytes" in str(got)
    assert peak < 16 * MB and seconds < 4, (peak / MB, seconds)


def test_an_endless_ldap_search_answer_is_cut_at_the_reply_budget(tmp_path, credential, monkeypatch):
    monkeypatch.setattr(ldap, "MAX_REPLY_BYTES", 1 * MB)  # the same rule as 32 MB, faster to prove

    entry = b"\x04\x03dn:" + b"\x30\x00"
    body = b"\x64" + b"\x83" + len(entry + b"\x04" * 60000).to_bytes(3, "big")

    def answer(conn, server, mid):
        conn.sendall(ldap_reply(mid, 0x61))                  # bound
        search = server.read(conn)
        sid = ber_message_id(search)
        inner = b"\x02\x01" + bytes([sid]) + body + entry + b"\x04" * 60000
        message = b"\x30\x83" + len(inner).to_bytes(3, "big") + inner  # searchResEntry of 60 KB, for ever
        _flood(conn, server, message, 256 * MB)

    server, ca = _dc(tmp_path, "127.112.70.2", answer)
    with server:
        conn = ldap.connect([f"{server.host}:{server.port}"], credential=credential, ca_file=ca, timeout=20,
                            connect_timeout=1)  # tracemalloc slows ldap3's copying several times: a roomy deadline
        got, seconds, peak = measured(lambda: list(ldap.search_paged(conn, "DC=h,DC=test", "(objectClass=*)", ["cn"])))
    assert isinstance(got, errors.ReplyTooLarge) and "in one reply" in str(got), f"{type(got).__name__}: {got}"
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB for a reply cut at 1 MB"


# --------------------------------------------------------------------------- HTTP: CRL/AIA, the WS-MAN 401 body
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_a_50_mb_crl_is_refused_at_10_mb(declared):
    def cdp(conn, server):
        read_http_request(conn, server)
        if declared:
            conn.sendall(http_head("200 OK", length=50 * MB))
        else:
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
        _flood(conn, server, b"\x30" * 65536, 50 * MB)

    with Server(cdp) as server:
        got, seconds, peak = measured(lambda: x509.download(f"http://{server.host}:{server.port}/ca.crl", timeout=5))
    assert isinstance(got, x509.CrlProblem) and got.kind == "too-large", f"{type(got).__name__}: {got}"
    assert peak < 24 * MB and seconds < 5, (peak / MB, seconds)


def test_a_digest_challenge_with_a_50_mb_body_is_refused():
    def device(conn, server):
        read_http_request(conn, server)
        conn.sendall(http_head("401 Unauthorized", {"WWW-Authenticate": 'Digest realm="r", nonce="n", qop="auth"'},
                               length=None) + b"\r\n"[:0])
        _flood(conn, server, b"<html>" * 10000, 50 * MB)

    with Server(device) as server:
        client = wsman.WsmanClient(f"http://{server.host}:{server.port}/wsman", auth=wsman.DigestAuth("a", PASSWORD),
                                   ca_bundle=None, timeout=5)
        got, seconds, peak = measured(lambda: client.get(wsman.resource_uri("AMT_GeneralSettings")))
        client.close()
    assert isinstance(got, errors.ReplyTooLarge), f"{type(got).__name__}: {got}"
    assert peak < 16 * MB and seconds < 5, (peak / MB, seconds)
    assert all(b"authorization" not in r.lower() for r in server.received)  # never answered


# --------------------------------------------------------------------------- the redirection port
def test_a_redirection_message_announced_at_4_gib_is_refused_at_one_mib(tmp_path):
    from pytest_vpro.actions.redirection import _Redirection
    from pytest_vpro.probes import redirection as redir

    host = "127.112.70.3"
    ctx, ca = tls(tmp_path, host)

    def device(conn, server):
        server.read(conn)
        conn.sendall(redir.encode(redir.Message(redir.START_SESSION_REPLY)))
        server.read(conn)
        conn.sendall(bytes([redir.AUTHENTICATE_REPLY, 0, 0, 0, 2]) + struct.pack("<I", 0xFFFFFFFF))
        _flood(conn, server, b"\x00" * 65536, 8 * MB)

    with Server(device, host=host, tls=ctx) as server:
        session = _Redirection(host, server.port, ca, 2)
        try:
            got, seconds, peak = measured(lambda: session.open(redir.SOL, b"token"))
        finally:
            session.close()
    assert isinstance(got, errors.MalformedReply) and "message too large" in str(got), f"{type(got).__name__}: {got}"
    assert peak < 8 * MB and seconds < 5


# --------------------------------------------------------------------------- the hello listener's spool
def test_a_flood_of_hellos_from_one_address_is_kept_to_its_share(tmp_path):
    capture = hello_listener.HelloCapture("127.112.70.4", 0, wait_s=5, spool=tmp_path / "hellos.jsonl").start()
    packet = hello.encode_hello(uuid.uuid4(), hashes=[(2, b"\x22" * 32)])
    try:
        for i in range(hello_listener.MAX_PER_PEER + 40):
            with socket.create_connection((capture.address, capture.port), timeout=5,
                                          source_address=("127.112.70.5", 0)) as s:
                s.sendall(packet if i % 2 else b"GET / HTTP/1.0\r\n\r\n")
        deadline = time.monotonic() + 10
        while len(capture.all()) + capture.dropped < hello_listener.MAX_PER_PEER + 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        kept = capture.all()
        assert len(kept) == hello_listener.MAX_PER_PEER and capture.dropped == 40
        spooled = (tmp_path / "hellos.jsonl").read_text().splitlines()
        assert len(spooled) == 1 + hello_listener.MAX_PER_PEER  # the header and what was kept, no more
        assert all(len(s.raw) <= hello_listener.MALFORMED_KEPT_BYTES for s in kept if s.hello is None)
    finally:
        capture.stop()


def test_the_listener_holds_at_most_its_share_of_connections(tmp_path, monkeypatch):
    monkeypatch.setattr(hello_listener, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(hello_listener, "READ_TIMEOUT_S", 2.0)
    capture = hello_listener.HelloCapture("127.112.70.6", 0, wait_s=5, spool=tmp_path / "hellos.jsonl").start()
    held = []
    try:
        for _ in range(10):  # ten senders that connect and say nothing
            held.append(socket.create_connection((capture.address, capture.port), timeout=5))
        deadline = time.monotonic() + 5
        while capture.refused < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert capture.refused == 6  # four are read (until their 2 s are up), six are closed at once
        t0 = time.monotonic()
        threading.Event().wait(0)
        for s in held[:4]:
            s.settimeout(5)
            assert s.recv(1) == b""  # the listener closed it at its deadline
        assert time.monotonic() - t0 < 2.0 + 1.0
    finally:
        for s in held:
            s.close()
        capture.stop()
