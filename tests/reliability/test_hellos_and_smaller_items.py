"""Issue 14, items 6 and 7: hellos are hellos; a stray datagram does not end the DHCP probe, a reply from another
host is not the server's (in a network namespace of the test's own, where addresses are not all loopback); CRL/AIA
over https trust the estate's roots. (WS-MAN bodies in a foreign namespace:
``test_no_tracebacks.py``.)

The false pass: S2-CLIENT-SENDING-HELLO passed for a client whose address had sent only an HTTP GET to the hello
listener, because packets counted for a client by source address whether they decoded as a hello or not. Here the
client's address sends an HTTP GET, garbage and a packet cut short; the facts the check judges must hold no hello
for it (and show those packets as evidence), until a real hello arrives.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest
from servers import Server, Udp, http_head, read_http_request, tls

from pytest_vpro import environment as envmod
from pytest_vpro.facts import FactsCache
from pytest_vpro.probes import dhcp, hello, hello_listener, httpclient, x509

DEVICE = uuid.UUID("8d1e3a52-4f1b-4c39-9d2e-0123456789ab")
CLIENT_ADDRESS = "127.112.90.2"


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "hostile.yaml"
    path.write_text("name: hostile\nsite: {name: Hostile, code: HST, domain: hostile.test, "
                    "amt_container: 'OU=AMT,DC=hostile,DC=test'}\n"
                    "servers: [{fqdn: sccm01.hostile.test, roles: [site_server]}]\n"
                    f"clients: [{{fqdn: pc01.hostile.test, address: {CLIENT_ADDRESS}, uuid: '{DEVICE}'}}]\n")
    return envmod.load(path)


def _send(capture, data: bytes, source: str = CLIENT_ADDRESS) -> None:
    with socket.create_connection((capture.address, capture.port), timeout=3, source_address=(source, 0)) as s:
        s.sendall(data)


def _until(predicate, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_an_http_get_from_the_clients_address_is_not_a_hello(env, tmp_path):
    capture = hello_listener.HelloCapture("127.112.90.1", 0, wait_s=1.0, spool=tmp_path / "hellos.jsonl").start()
    try:
        _send(capture, b"GET / HTTP/1.1\r\nHost: provisionserver\r\n\r\n")
        _send(capture, b"\x00" * 40)
        good = hello.encode_hello(DEVICE, hashes=[(2, b"\x33" * 32)])
        _send(capture, good[:30])  # a hello cut short
        assert _until(lambda: len(capture.malformed(CLIENT_ADDRESS)) == 3)
        facts = FactsCache(env, hellos=capture)(env.clients[0])
        t0 = time.monotonic()
        heard = facts.hellos.heard()
        assert heard == [], heard  # what S2-CLIENT-SENDING-HELLO judges: no hello, so it fails, not passes
        assert time.monotonic() - t0 < 1.0 + 1.0  # it waited for the listener's window only
        noise = [s.summary() for s in facts.hellos.noise()]
        assert len(noise) == 3 and all("malformed" in n for n in noise)  # evidence for the report
        assert any("shorter" in n["malformed"] or "truncated" in n["malformed"] for n in noise)
        # ...and a real hello from the client still counts, found by its UUID
        capture.started, capture.wait_s = time.time(), 5.0
        _send(capture, good)
        assert _until(lambda: capture.seen(str(DEVICE), wait=False))
        (seen,) = capture.seen(str(DEVICE), CLIENT_ADDRESS, wait=False)
        assert seen.hello.uuid == DEVICE and seen.peer == CLIENT_ADDRESS
    finally:
        capture.stop()


def test_a_hello_with_another_uuid_from_the_clients_address_is_not_its_hello(tmp_path):
    capture = hello_listener.HelloCapture("127.112.90.3", 0, wait_s=0.5, spool=tmp_path / "hellos.jsonl").start()
    try:
        _send(capture, hello.encode_hello(uuid.uuid4(), hashes=[(1, b"\x01" * 20)]))
        assert _until(lambda: capture.all())
        assert capture.seen(str(DEVICE), CLIENT_ADDRESS, wait=False) == []  # the UUID decides when it is known
    finally:
        capture.stop()


# --------------------------------------------------------------------------- DHCP
def _ack(request: bytes) -> bytes:
    xid = int.from_bytes(request[4:8], "big")
    header = dhcp._HEADER.pack(dhcp.BOOTREPLY, 1, 6, 0, xid, 0, 0, request[12:16], bytes(4), bytes(4), bytes(4),
                               request[28:44], bytes(64), bytes(128))
    return header + dhcp.encode_options([(dhcp.OPT_MESSAGE_TYPE, bytes([dhcp.DHCPACK])),
                                         (dhcp.OPT_DOMAIN_NAME, b"hostile.test")])


@pytest.fixture(scope="module")
def netns():
    """A network namespace of our own whose ``lo`` also holds 10.114.0.1 (the DHCP server), .2 (the probe) and .9
    (another host): addresses outside 127.0.0.0/8, where a reply's source address tells hosts apart."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"vpro14-{os.getpid()}"
    try:
        for argv in (["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"],
                     *[["ip", "-n", name, "addr", "add", f"10.114.0.{i}/32", "dev", "lo"] for i in (1, 2, 9)]):
            subprocess.run(argv, check=True, capture_output=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def in_netns(name: str, fn):
    """``fn()`` on a thread that joined network namespace ``name`` (sockets made there belong to it)."""
    out: dict = {}

    def run():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - raised again in the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_stray_datagrams_and_a_reply_from_another_host_do_not_end_the_dhcp_probe(netns):
    def scenario():
        impostor = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        impostor.bind(("10.114.0.9", 0))

        def server(sock, data, peer, srv):
            sock.sendto(b"\x02not dhcp at all", peer)                   # a malformed datagram first
            forged = bytearray(_ack(data))
            forged[-13:-1] = b"evil.example"                            # a reply from another host
            impostor.sendto(bytes(forged), peer)
            other = bytearray(_ack(data))
            other[4:8] = b"\x00\x00\x00\x01"                            # a reply for another transaction
            sock.sendto(bytes(other), peer)
            time.sleep(0.1)
            sock.sendto(_ack(data), peer)                               # then the server's own answer

        try:
            with Udp(server, host="10.114.0.1") as srv:
                t0 = time.monotonic()
                reply = dhcp.inform(srv.host, client_address="10.114.0.2", port=srv.port, timeout=3)
                return reply, time.monotonic() - t0
        finally:
            impostor.close()

    reply, seconds = in_netns(netns, scenario)
    assert reply.domain_name == "hostile.test" and reply.message_type == dhcp.DHCPACK
    assert seconds < 2


def test_a_reply_only_from_another_host_is_no_answer(netns):
    def scenario():
        impostor = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        impostor.bind(("10.114.0.9", 0))
        try:
            with Udp(lambda sock, data, peer, srv: impostor.sendto(_ack(data), peer), host="10.114.0.1") as srv:
                with pytest.raises(dhcp.DhcpNoAnswer) as caught:
                    dhcp.inform(srv.host, client_address="10.114.0.2", port=srv.port, timeout=1)
                return caught.value
        finally:
            impostor.close()

    error = in_netns(netns, scenario)
    assert "10.114.0.9" in str(error) and "not the server" in str(error)


def test_a_server_on_this_machine_may_answer_from_its_first_loopback_address():
    """dnsmasq bound to the wildcard (the lab's) answers a DHCPINFORM sent to 127.N.0.12 from 127.0.0.1: one host."""
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    first.bind(("127.0.0.1", 0))
    try:
        with Udp(lambda sock, data, peer, srv: first.sendto(_ack(data), peer), host="127.112.91.3") as srv:
            reply = dhcp.inform(srv.host, client_address="127.112.91.4", port=srv.port, timeout=2)
    finally:
        first.close()
    assert reply.domain_name == "hostile.test"


# --------------------------------------------------------------------------- CRL/AIA over https
def test_a_crl_over_https_is_verified_against_the_estates_roots(tmp_path):
    host = "127.112.92.1"
    ctx, estate_roots = tls(tmp_path, host)

    def cdp(conn, server):
        read_http_request(conn, server)
        conn.sendall(http_head("200 OK", {"Content-Type": "application/pkix-crl"}, length=4) + b"\x30\x02\x05\x00")

    with Server(cdp, host=host, tls=ctx) as server:
        url = f"https://{host}:{server.port}/pki/ca.crl"
        with pytest.raises(x509.CrlProblem) as without:  # the public roots alone do not know the estate's CA
            x509.download(url, timeout=2)
        got = x509.download(url, timeout=2, verify=httpclient.public_and(estate_roots))
    assert without.value.kind == "tls" and "certificate verify failed" in str(without.value)
    assert got == b"\x30\x02\x05\x00"
