"""Issue 14, item 1: every exchange has a deadline (connect + whole reply), on every protocol.

Each case points the real probe at a server (``servers.py``) that answers one byte every ``DRIP`` seconds, always
inside the read timeout, so that per-read timeouts never fire: before this issue each of these ran for as long
as the server cared to trickle (``len(reply) * DRIP``, a minute or more). Now each ends at its deadline,
``CONNECT + READ`` (1.5 s here), with a finding that says so. A name with five addresses that all drop SYNs costs
the same one budget, not one connect timeout per address.

Every case asserts the wall time, the finding's class and words, and that no password reached a finding.
"""
from __future__ import annotations

import struct
import threading
import time
import uuid

import pytest
from servers import (
    Dns,
    Filtered,
    Server,
    TrickleProxy,
    Udp,
    ber_message_id,
    http_head,
    ldap_reply,
    read_http_request,
    tls,
)

from pytest_vpro.environment import Credential
from pytest_vpro.probes import dhcp, errors, hello, hello_listener, kerberos, ldap, net, smb, webui, x509
from pytest_vpro.probes.dns import DnsTimeout, route_connections
from pytest_vpro.secrets import SecretRef

CONNECT, READ = 0.5, 1.0
BUDGET = CONNECT + READ
DRIP = 0.3          # below the read timeout: no single read ever times out
SLACK = 1.0         # a shared 2-core machine: scheduling, thread start, TLS handshakes
PASSWORD = "Hostile-Estate-Pw-1"


@pytest.fixture
def credential(monkeypatch) -> Credential:
    monkeypatch.setenv("VPRO_HOSTILE_PW", PASSWORD)
    return Credential(user="reader@hostile.test", password=SecretRef("env:VPRO_HOSTILE_PW"))


def timed(fn, hang_guard: float = 20.0):
    """``fn()`` in a thread: (its exception or result, seconds). A call still running after ``hang_guard`` seconds
    fails the test (that is the defect this file is about) instead of hanging the suite."""
    out: dict = {}

    def go():
        t0 = time.monotonic()
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - what the check code would see
            out["value"] = exc
        out["seconds"] = time.monotonic() - t0

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(hang_guard)
    assert not t.is_alive(), f"still waiting after {hang_guard} s: no deadline on this exchange"
    return out["value"], out["seconds"]


#: A TLS handshake is one call in CPython's ssl module, bounded as a whole by the socket's timeout: a trickled
#: handshake ends at the read timeout ("no answer within"), inside the deadline, and may say either.
SLOW = ("no complete answer", "no answer from")


def assert_finding(got, seconds, cls=errors.ProbeError, words: str | tuple[str, ...] = "no complete answer",
                   budget: float = BUDGET):
    assert isinstance(got, cls), f"{type(got).__name__}: {got}"
    assert isinstance(got, errors.ProbeError), "a library exception would reach the report as a traceback"
    assert any(w in str(got) for w in ((words,) if isinstance(words, str) else words)), str(got)
    assert PASSWORD not in str(got)
    assert seconds <= budget + SLACK, f"{seconds:.2f} s for a budget of {budget} s"


# --------------------------------------------------------------------------- HTTP: CRL/AIA downloads, the WebUI
def _trickle_body(conn, server):
    read_http_request(conn, server)
    conn.sendall(http_head("200 OK", {"Content-Type": "application/pkix-crl"}, length=400))
    server.trickle(conn, b"\x30" * 400, DRIP)


def _trickle_headers(conn, server):
    read_http_request(conn, server)
    server.trickle(conn, http_head("200 OK", {"X-Pad": "p" * 300}, length=0), DRIP)


def _trickle_until_close(conn, server):  # no Content-Length: a body read until the server closes
    read_http_request(conn, server)
    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
    server.trickle(conn, b"\x30" * 400, DRIP)


@pytest.mark.parametrize("handler", [_trickle_body, _trickle_headers, _trickle_until_close],
                         ids=["body", "headers", "until-close"])
def test_a_crl_download_that_trickles_ends_at_its_deadline(handler):
    with Server(handler) as server:
        got, seconds = timed(lambda: x509.download(f"http://{server.host}:{server.port}/ca.crl", timeout=READ,
                                                   connect_timeout=CONNECT))
    assert_finding(got, seconds, x509.CrlProblem)
    assert got.kind == "unreachable"


def test_the_webui_over_a_trickled_tls_handshake_ends_at_its_deadline(tmp_path):
    def page(conn, server):
        read_http_request(conn, server)
        conn.sendall(http_head("200 OK", {"Server": "Intel(R) Active Management Technology 3.2.1"}, length=0))

    host = "127.112.40.2"  # the proxy's address, which the certificate names: only the trickle is wrong
    ctx, ca = tls(tmp_path, host)
    with Server(page, tls=ctx) as device, TrickleProxy((device.host, device.port), DRIP, host=host) as slow:
        got, seconds = timed(lambda: webui.get(f"https://{host}:{slow.port}/", ca_bundle=ca, timeout=READ,
                                               connect_timeout=CONNECT))
    assert_finding(got, seconds, words=SLOW)


def test_a_webui_page_that_trickles_ends_at_its_deadline(tmp_path):
    def page(conn, server):
        read_http_request(conn, server)
        conn.sendall(http_head("200 OK", {"Server": "Intel(R) Active Management Technology 3.2.1"}, length=300))
        server.trickle(conn, b"<html><title>AMT</title>" + b" " * 276, DRIP)

    host = "127.112.40.3"
    ctx, ca = tls(tmp_path, host)
    with Server(page, host=host, tls=ctx) as device:
        got, seconds = timed(lambda: webui.get(f"https://{host}:{device.port}/", ca_bundle=ca, timeout=READ,
                                               connect_timeout=CONNECT))
    assert_finding(got, seconds)


def test_the_tls_certificate_peek_ends_at_its_deadline(tmp_path):
    host = "127.112.40.4"
    ctx, _ca = tls(tmp_path, host)
    with Server(lambda conn, server: server.stop.wait(30), host=host, tls=ctx) as device, \
            TrickleProxy((device.host, device.port), DRIP) as slow:
        got, seconds = timed(lambda: net.peer_certificate(slow.host, slow.port, timeout=READ))
    assert_finding(got, seconds, words=SLOW, budget=2 * READ)


# --------------------------------------------------------------------------- LDAP: LDAPS, StartTLS, searches
def test_ldaps_over_a_trickled_handshake_ends_at_its_deadline(tmp_path, credential):
    host = "127.112.41.1"  # the proxy's address, named by the certificate
    ctx, ca = tls(tmp_path, host)

    def dc(conn, server):
        request = server.read(conn)
        conn.sendall(ldap_reply(ber_message_id(request), 0x61))
        server.stop.wait(30)

    with Server(dc, tls=ctx) as real, TrickleProxy((real.host, real.port), DRIP, host=host) as slow:
        got, seconds = timed(lambda: ldap.connect([f"{slow.host}:{slow.port}"], credential=credential, ca_file=ca,
                                                  timeout=READ, connect_timeout=CONNECT))
    assert_finding(got, seconds, errors.Unreachable, words=SLOW)


def test_starttls_that_trickles_its_answer_ends_at_its_deadline(credential):
    def dc(conn, server):
        request = server.read(conn)
        server.trickle(conn, ldap_reply(ber_message_id(request), 0x78), DRIP)

    with Server(dc) as server:
        got, seconds = timed(lambda: ldap.connect([f"{server.host}:{server.port}"], credential=credential,
                                                  ca_file=None, timeout=READ, connect_timeout=CONNECT, use_ssl=False))
    assert_finding(got, seconds, errors.Unreachable)


def test_a_search_that_trickles_ends_at_its_deadline(tmp_path, credential):
    host = "127.112.41.2"
    ctx, ca = tls(tmp_path, host)

    def dc(conn, server):
        bind = server.read(conn)
        conn.sendall(ldap_reply(ber_message_id(bind), 0x61))
        search = server.read(conn)
        server.trickle(conn, ldap_reply(ber_message_id(search), 0x65), DRIP)

    with Server(dc, host=host, tls=ctx) as server:
        conn = ldap.connect([f"{host}:{server.port}"], credential=credential, ca_file=ca, timeout=READ,
                            connect_timeout=CONNECT)
        got, seconds = timed(lambda: list(ldap.search_paged(conn, "DC=hostile,DC=test", "(objectClass=computer)",
                                                            ["dNSHostName"])))
    assert_finding(got, seconds, errors.Unreachable)


# --------------------------------------------------------------------------- Kerberos: a KDC over UDP and TCP
def _krb5_conf(tmp_path, monkeypatch, kdc: str, tcp: bool = False) -> None:
    conf = tmp_path / "krb5.conf"
    conf.write_text("[libdefaults]\n default_realm = HOSTILE.TEST\n dns_lookup_kdc = false\n"
                    " dns_lookup_realm = false\n" + (" udp_preference_limit = 1\n" if tcp else "")
                    + "\n[realms]\n HOSTILE.TEST = {\n  kdc = " + kdc + "\n }\n")
    monkeypatch.setenv("KRB5_CONFIG", str(conf))  # MIT krb5 reads it for each new thread's context


def test_a_kdc_that_never_answers_costs_the_timeout_not_27_seconds(tmp_path, monkeypatch):
    with Udp(lambda sock, data, peer, server: None) as kdc:
        _krb5_conf(tmp_path, monkeypatch, f"{kdc.host}:{kdc.port}")
        got, seconds = timed(lambda: kerberos.ConsoleCredentials.with_password("console@HOSTILE.TEST", PASSWORD,
                                                                                timeout=BUDGET), hang_guard=40)
        asked = len(kdc.datagrams)
    assert_finding(got, seconds, kerberos.KdcTimeout, "no answer from the Kerberos KDC within 1.5 s")
    assert asked >= 1  # it was this KDC that was asked (the AS-REQ arrived), and it never answered


def test_a_kdc_that_trickles_over_tcp_ends_at_the_timeout(tmp_path, monkeypatch):
    def kdc(conn, server):
        size = struct.unpack(">L", conn.recv(4))[0]
        server.received.append(conn.recv(size))
        server.trickle(conn, struct.pack(">L", 600) + b"\x6b" * 600, DRIP)

    with Server(kdc) as server:
        _krb5_conf(tmp_path, monkeypatch, f"{server.host}:{server.port}", tcp=True)
        got, seconds = timed(lambda: kerberos.ConsoleCredentials.with_password("console@HOSTILE.TEST", PASSWORD,
                                                                                timeout=BUDGET), hang_guard=40)
        asked = server.connections
    assert_finding(got, seconds, kerberos.KdcTimeout, "no answer from the Kerberos KDC")
    assert asked >= 1


# --------------------------------------------------------------------------- SMB
def test_an_smb_server_that_trickles_its_negotiate_answer_ends_at_the_deadline():
    def server_side(conn, server):
        size = struct.unpack(">L", conn.recv(4))[0]
        server.received.append(conn.recv(size))
        server.trickle(conn, struct.pack(">L", 300) + b"\xfeSMB" + b"\x00" * 296, DRIP)

    connect, read = 0.2, 0.6  # 0.8 s: inside smbprotocol's own 1 s negotiate timeout, so the deadline is what ends it
    with Server(server_side) as server:
        def read_log():
            with smb.open_file(server.host, "SMS_ABC", "Logs/AMTOPMGR.LOG", user="reader", password=PASSWORD,
                               timeout=read, connect_timeout=connect, port=server.port) as f:
                return f.read()
        got, seconds = timed(read_log)
    assert_finding(got, seconds, errors.Unreachable, budget=connect + read)


# --------------------------------------------------------------------------- DNS over TCP
def test_dns_over_tcp_that_trickles_ends_within_the_lookup_timeout():
    with Dns({"pc.hostile.test": ["127.112.50.1"]}, trickle={"pc.hostile.test"}, drip=DRIP) as dns:
        got, seconds = timed(lambda: dns.resolver(BUDGET).forward("pc.hostile.test"))
        asked_over_tcp = dns.tcp.connections
    assert_finding(got, seconds, DnsTimeout, "no DNS answer")
    assert asked_over_tcp >= 1  # the truncated UDP answer sent it to TCP, which trickled


# --------------------------------------------------------------------------- the redirection port (SOL/IDER)
def test_the_redirection_port_over_a_trickled_handshake_ends_at_its_deadline(tmp_path):
    from pytest_vpro.actions.redirection import _Redirection

    host = "127.112.42.1"
    ctx, ca = tls(tmp_path, "pc-redir.hostile.test")
    with Server(lambda conn, server: server.stop.wait(30), host=host, tls=ctx) as device, \
            TrickleProxy((device.host, device.port), DRIP) as slow:
        with Dns({"pc-redir.hostile.test": [slow.host]}) as dns, route_connections(dns.resolver(1.0), ["hostile.test"]):
            got, seconds = timed(lambda: _Redirection("pc-redir.hostile.test", slow.port, ca, READ))
    assert_finding(got, seconds, words=SLOW, budget=2 * READ)


def test_a_redirection_answer_that_trickles_ends_at_its_deadline(tmp_path):
    from pytest_vpro.actions.redirection import _Redirection
    from pytest_vpro.probes import redirection as redir

    host = "127.112.42.2"
    ctx, ca = tls(tmp_path, host)

    def device(conn, server):
        server.read(conn)
        server.trickle(conn, redir.encode(redir.Message(redir.START_SESSION_REPLY)), DRIP * 0.5)

    with Server(device, host=host, tls=ctx) as server:
        session = _Redirection(host, server.port, ca, READ)
        try:
            got, seconds = timed(lambda: session.open(redir.SOL, b"token"))
        finally:
            session.close()
    assert isinstance(got, errors.ProbeError) and seconds <= 2 * READ + SLACK, (got, seconds)


# --------------------------------------------------------------------------- DHCP
def test_dhcp_strays_do_not_stretch_the_exchange():
    def flood(sock, data, peer, server):  # every request answered with garbage, again and again, never a reply
        for _ in range(20):
            sock.sendto(b"\x02garbage", peer)
            time.sleep(0.05)

    with Udp(flood) as server:
        got, seconds = timed(lambda: dhcp.inform(server.host, client_address="127.112.43.9", port=server.port,
                                                 timeout=BUDGET))
    assert_finding(got, seconds, dhcp.DhcpNoAnswer, "no DHCP reply")
    assert "ignored" in str(got) and "malformed" in str(got)


# --------------------------------------------------------------------------- the hello listener
def test_a_trickling_hello_sender_is_cut_at_the_listeners_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(hello_listener, "READ_TIMEOUT_S", 0.5)
    packet = hello.encode_hello(uuid.uuid4(), hashes=[(2, b"\x11" * 32)])
    capture = hello_listener.HelloCapture("127.112.44.1", 0, wait_s=5, spool=tmp_path / "hellos.jsonl").start()
    try:
        import socket as _socket
        with _socket.create_connection((capture.address, capture.port), timeout=5,
                                       source_address=("127.112.44.2", 0)) as sender:
            t0 = time.monotonic()
            closed_after = None
            for b in packet:  # one byte every DRIP: the whole packet would take len(packet) * DRIP seconds
                try:
                    sender.sendall(bytes([b]))
                except OSError:
                    closed_after = time.monotonic() - t0
                    break
                time.sleep(DRIP)
                if time.monotonic() - t0 > 5:
                    break
        for _ in range(100):
            if capture.malformed("127.112.44.2"):
                break
            time.sleep(0.02)
        (cut,) = capture.malformed("127.112.44.2")
        assert capture.seen(address="127.112.44.2", wait=False) == []  # a packet cut short is not a hello
        assert "shorter" in cut.problem or "truncated" in cut.problem, cut.problem
        assert closed_after is None or closed_after < 0.5 + SLACK + DRIP
    finally:
        capture.stop()


# --------------------------------------------------------------------------- a name with several addresses
@pytest.fixture
def five_silent_addresses():
    """``five.hostile.test``: five A records, every one dropping SYNs (a firewall's DROP), on one port each."""
    first = Filtered("127.112.45.1")
    holes = [first] + [Filtered(f"127.112.45.{i}", first.port) for i in range(2, 6)]
    with Dns({"five.hostile.test": [h.host for h in holes]}) as dns, \
            route_connections(dns.resolver(1.0), ["hostile.test"]):
        yield holes
    for h in holes:
        h.close()


def test_a_name_with_five_silent_addresses_costs_one_budget(five_silent_addresses, credential):
    port = five_silent_addresses[0].port
    cases = {
        "tcp probe": (lambda: net.probe_tcp("five.hostile.test", port, BUDGET), BUDGET),
        "crl download": (lambda: x509.download(f"http://five.hostile.test:{port}/ca.crl", timeout=READ,
                                               connect_timeout=CONNECT), BUDGET),
        "ldap": (lambda: ldap.connect([f"five.hostile.test:{port}"], credential=credential, ca_file=None,
                                      timeout=READ, connect_timeout=CONNECT), BUDGET),
        "smb": (lambda: smb.open_file("five.hostile.test", "C$", "x.log", user="u", password=PASSWORD,
                                      timeout=READ, connect_timeout=CONNECT, port=port).__enter__(), BUDGET),
    }
    for name, (fn, budget) in cases.items():
        got, seconds = timed(fn)
        # before: one connect timeout per address, 5 x 0.5 s (and ldap3 and urllib3 each their own way)
        assert seconds <= budget + SLACK, f"{name}: {seconds:.2f} s for five silent addresses"
        if name == "tcp probe":
            assert got.verdict == net.FILTERED, got
        else:
            assert isinstance(got, errors.ProbeError), f"{name}: {type(got).__name__}: {got}"
            assert PASSWORD not in str(got)
