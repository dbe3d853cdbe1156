"""probes/dns.py against a real DNS server: a small dnspython server (UDP and TCP) on 127.94.0.53, in threads,
in the style of dnspython's own test nameserver."""
from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
import requests
from loopback_http import QuietHandler, serving

from pytest_vpro.probes.dns import DnsTimeout, NoAnswer, NxDomain, Resolver, ServFail, SrvRecord, route_connections
from pytest_vpro.probes.errors import MalformedReply, ProbeError, Unreachable

DNS_ADDRESS = "127.94.0.53"
PC = "127.94.1.1"
ZONE = {
    ("pc0001.estate.test.", "A"): [PC],
    ("pc0002.estate.test.", "A"): ["127.94.1.2"],
    ("1.1.94.127.in-addr.arpa.", "PTR"): ["pc0001.estate.test."],
    ("2.1.94.127.in-addr.arpa.", "PTR"): ["wrong.estate.test."],
    ("provisionserver.estate.test.", "CNAME"): ["sccm01.estate.test."],
    ("sccm01.estate.test.", "A"): ["127.94.0.11"],
    ("_ldap._tcp.estate.test.", "SRV"): ["10 100 389 dc02.estate.test.", "0 100 389 dc01.estate.test."],
    ("dual.estate.test.", "AAAA"): ["fd00::1"],
}


class EstateDns:
    """Answers from ZONE; ``servfail.*`` gets SERVFAIL, ``drop.*`` no reply, ``garbage.*`` a malformed one
    (dnspython ignores malformed UDP datagrams, as a resolver should, so the garbage goes over TCP)."""

    def __init__(self, address: str = DNS_ADDRESS) -> None:
        self.queries: list[str] = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind((address, 0))
        self.port = self.udp.getsockname()[1]
        self.tcp.bind((address, self.port))
        self.tcp.listen(16)
        self.address = address
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self._threads:
            t.start()

    def answer(self, wire: bytes, tcp: bool = False) -> bytes | None:
        query = dns.message.from_wire(wire)
        q = query.question[0]
        name, rtype = q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype)
        self.queries.append(f"{name} {rtype}")
        if name.startswith("drop."):
            return None
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if name.startswith("garbage."):  # UDP: "truncated, ask over TCP"; TCP: a header claiming 5 answers
            if tcp:
                return wire[:2] + b"\x81\x80\x00\x01\x00\x05"
            reply.flags |= dns.flags.TC
            return reply.to_wire()
        if name.startswith("servfail."):
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif (name, rtype) in ZONE:
            reply.answer.append(dns.rrset.from_text_list(name, 300, "IN", rtype, ZONE[(name, rtype)]))
        elif not any(n == name for n, _ in ZONE):
            reply.set_rcode(dns.rcode.NXDOMAIN)
        return reply.to_wire()

    def _serve_udp(self) -> None:
        self.udp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                wire, peer = self.udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            out = self.answer(wire)
            if out is not None:
                self.udp.sendto(out, peer)

    def _serve_tcp(self) -> None:
        self.tcp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                size = int.from_bytes(conn.recv(2), "big")
                out = self.answer(conn.recv(size), tcp=True)
                if out is not None:
                    conn.sendall(len(out).to_bytes(2, "big") + out)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


@pytest.fixture(scope="module")
def server():
    s = EstateDns()
    yield s
    s.close()


@pytest.fixture
def resolver(server) -> Resolver:
    return Resolver([server.address], port=server.port, timeout=0.5)


def test_forward_reverse_cname_srv(resolver):
    assert resolver.forward("pc0001.estate.test") == [PC]
    assert resolver.forward("PC0001.Estate.Test.") == [PC]
    assert resolver.reverse(PC) == ["pc0001.estate.test"]
    assert resolver.cname("provisionserver.estate.test") == "sccm01.estate.test"
    assert resolver.srv("_ldap._tcp.estate.test") == [SrvRecord(0, 100, 389, "dc01.estate.test"),
                                                      SrvRecord(10, 100, 389, "dc02.estate.test")]


def test_lookup_keeps_the_reply_as_evidence(resolver, server):
    answer = resolver.lookup("pc0001.estate.test", "A")
    assert answer.records == (PC,) and list(answer) == [PC]
    assert answer.server == server.address
    assert "pc0001.estate.test. 300 IN A 127.94.1.1" in answer.text and "flags QR AA" in answer.text


def test_typed_errors(resolver):
    with pytest.raises(NxDomain, match="nothere.estate.test does not exist"):
        resolver.forward("nothere.estate.test")
    with pytest.raises(NoAnswer, match="no A record"):
        resolver.forward("dual.estate.test")
    with pytest.raises(ServFail):
        resolver.forward("servfail.estate.test")
    with pytest.raises(MalformedReply):
        resolver.forward("garbage.estate.test")
    with pytest.raises(ProbeError, match="not an IP address"):
        resolver.reverse("pc0001")
    with pytest.raises(ProbeError, match="not a valid DNS name"):
        resolver.forward("a..b")


def test_timeout_is_a_dns_timeout_and_an_unreachable(resolver):
    with pytest.raises(DnsTimeout) as caught:
        resolver.forward("drop.estate.test")
    assert isinstance(caught.value, Unreachable) and caught.value.timeout == 0.5
    assert "within 0.5 s" not in str(caught.value) or DNS_ADDRESS in str(caught.value)


def test_no_server_listening_is_unreachable():
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind((DNS_ADDRESS, 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing on this port: the kernel answers ICMP port unreachable
    with pytest.raises(Unreachable):
        Resolver([DNS_ADDRESS], port=port, timeout=0.5).forward("pc0001.estate.test")


def test_consistent_forward_reverse(resolver):
    ok, evidence = resolver.consistent_forward_reverse("pc0001.estate.test")
    assert ok, evidence
    assert evidence == "pc0001.estate.test A 127.94.1.1\n127.94.1.1 PTR pc0001.estate.test"
    ok, evidence = resolver.consistent_forward_reverse("pc0002.estate.test")
    assert not ok and "does not point back to pc0002.estate.test" in evidence
    ok, evidence = resolver.consistent_forward_reverse("sccm01.estate.test")
    assert not ok and "127.94.0.11 PTR: " in evidence
    ok, evidence = resolver.consistent_forward_reverse("nothere.estate.test")
    assert not ok and "does not exist" in evidence


def test_empty_server_list_means_resolv_conf():
    try:
        r = Resolver([], timeout=1)
    except Exception as exc:  # noqa: BLE001 (a machine with no resolv.conf)
        pytest.skip(f"no usable resolv.conf here: {exc}")
    assert r._resolver.nameservers


# --------------------------------------------------------------------------- connection routing

class _Hello(QuietHandler):
    def do_GET(self):
        self.reply(f"hello from {self.server.server_address[0]} for {self.headers['Host']}".encode())


@pytest.fixture
def web():
    """An HTTP server on the address the estate DNS gives pc0001."""
    with serving(_Hello, PC) as server:
        yield server.server_address[1]


def test_requests_reaches_an_estate_host_by_fqdn(resolver, web):
    original = socket.getaddrinfo
    with route_connections(resolver, ["estate.test"]):
        reply = requests.get(f"http://pc0001.estate.test:{web}/", timeout=3)
        assert reply.text == f"hello from {PC} for pc0001.estate.test:{web}"
    assert socket.getaddrinfo is original
    with pytest.raises(requests.ConnectionError):  # without the routing the name is unknown
        requests.get(f"http://pc0001.estate.test:{web}/", timeout=3)


def test_getaddrinfo_honours_port_type_family_and_passes_other_names(resolver):
    with route_connections(resolver, ["estate.test"]) as routing:
        infos = socket.getaddrinfo("pc0001.estate.test", 16993, 0, socket.SOCK_STREAM)
        assert infos == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (PC, 16993))]
        assert {i[1] for i in socket.getaddrinfo(b"pc0001.estate.test", "http")} >= {socket.SOCK_STREAM}
        udp = socket.getaddrinfo("pc0001.estate.test", 623, type=socket.SOCK_DGRAM)
        assert udp == [(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", (PC, 623))]
        with pytest.raises(socket.gaierror) as caught:
            socket.getaddrinfo("pc0001.estate.test", 80, socket.AF_INET6)
        assert caught.value.errno == socket.EAI_FAMILY
        with pytest.raises(socket.gaierror) as caught:
            socket.getaddrinfo("nothere.estate.test", 80)
        assert caught.value.errno == socket.EAI_NONAME
        with pytest.raises(socket.gaierror) as caught:
            socket.getaddrinfo("drop.estate.test", 80)
        assert caught.value.errno == socket.EAI_AGAIN
        # not under the estate's domains: the original resolver
        assert socket.getaddrinfo("127.0.0.1", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4] == ("127.0.0.1", 80)
        assert socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)
        assert routing.addresses("pc0002.estate.test") == ["127.94.1.2"]


def test_routing_caches_per_name_and_is_thread_safe(server):
    resolver = Resolver([server.address], port=server.port, timeout=0.5)
    before = server.queries.count("sccm01.estate.test. A")
    with route_connections(resolver, ["estate.test"]):
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda _: socket.getaddrinfo("sccm01.estate.test", 9971,
                                                                  socket.AF_INET, socket.SOCK_STREAM), range(64)))
    assert all(r[0][4] == ("127.94.0.11", 9971) for r in results)
    assert server.queries.count("sccm01.estate.test. A") - before == 1


def test_routing_uninstalls_in_order(resolver):
    outer = route_connections(resolver, ["estate.test"])
    routing = outer.__enter__()
    try:
        with route_connections(resolver, ["other.test"]):
            with pytest.raises(RuntimeError):
                routing.uninstall()
    finally:
        outer.__exit__(None, None, None)
    assert socket.getaddrinfo.__module__ == "socket"
