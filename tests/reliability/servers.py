"""Hostile servers for every protocol (issue 14), on loopback 127.112.x.x, each in threads of the test.

``hostile.py`` has the WS-MAN ones; this module has the building blocks for the rest:

* :class:`Server` a TCP server (optionally TLS) running ``handle(conn, server)`` per connection; errors of a
  handler (other than the client going away) are kept and raised again by :meth:`Server.close`, as
  pytest-httpserver does, so a broken hostile server fails its test instead of passing it;
* :class:`Udp` the same for datagrams;
* :class:`TrickleProxy` relays to a real server and passes the server's bytes on one at a time (a TLS handshake
  a byte per ``drip``);
* :class:`Filtered` an address whose SYNs are dropped (a listener with a full accept queue), as a firewall does;
* :class:`Dns` an estate DNS (UDP, and TCP that may trickle) for names with several addresses;
* :func:`tls` a CA and a server certificate for names and addresses.

Every wait is bounded: servers stop when the test closes them, and handlers wait on ``server.stop``.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hostile import address

PEER_GONE = (OSError, ssl.SSLError, EOFError)


class Server:
    """TCP on ``host`` (default a fresh 127.112.x.y) port 0, one thread per connection."""

    def __init__(self, handle, *, host: str | None = None, port: int = 0, tls: ssl.SSLContext | None = None,
                 backlog: int = 64) -> None:
        self.handle, self.tls = handle, tls
        self.stop = threading.Event()
        self.connections = 0
        self.received: list[bytes] = []  # what each connection sent, as far as the handler read it
        self.errors: list[BaseException] = []
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host or address(), port))
        self.sock.listen(backlog)
        self.host, self.port = self.sock.getsockname()
        self._start(self._accept)

    def _start(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            self._start(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn.settimeout(10)
                conn = self.tls.wrap_socket(conn, server_side=True)
                self._open.append(conn)
            conn.settimeout(30)
            self.handle(conn, self)
        except PEER_GONE:
            pass  # the client gave up (what a deadline does): not an error of the server
        except BaseException as exc:  # noqa: BLE001 - raised again in the test by close()
            self.errors.append(exc)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def read(self, conn: socket.socket, size: int = 65536) -> bytes:
        data = conn.recv(size)
        self.received.append(data)
        return data

    def trickle(self, conn: socket.socket, data: bytes, drip: float) -> bool:
        """Send ``data`` a byte every ``drip`` seconds; False once the server is stopping."""
        for b in data:
            if self.stop.wait(drip):
                return False
            conn.sendall(bytes([b]))
        return True

    def close(self) -> None:
        self.stop.set()
        for s in [self.sock, *self._open]:
            try:
                socket.socket.shutdown(s, socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        if self.errors:
            raise self.errors[0]


class Udp:
    """Datagrams on ``host`` port 0: ``handle(sock, data, peer, server)`` for each."""

    def __init__(self, handle, *, host: str | None = None) -> None:
        self.handle = handle
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.datagrams: list[tuple[bytes, tuple]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host or address(), 0))
        self.sock.settimeout(0.1)
        self.host, self.port = self.sock.getsockname()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.datagrams.append((data, peer))
            try:
                self.handle(self.sock, data, peer, self)
            except OSError:
                pass
            except BaseException as exc:  # noqa: BLE001 - raised again by close()
                self.errors.append(exc)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(5)
        self.sock.close()
        if self.errors:
            raise self.errors[0]


class TrickleProxy(Server):
    """Relays to ``target`` (host, port); what the target sends comes through one byte every ``drip`` seconds."""

    def __init__(self, target: tuple[str, int], drip: float, **kw) -> None:
        self.target, self.drip = target, drip
        super().__init__(self._relay, **kw)

    def _relay(self, conn: socket.socket, server: Server) -> None:
        upstream = socket.create_connection(self.target, timeout=10)
        self._open.append(upstream)

        def up() -> None:
            try:
                while not self.stop.is_set():
                    data = conn.recv(65536)
                    if not data:
                        return
                    upstream.sendall(data)
            except PEER_GONE:
                return

        self._start(up)
        while not self.stop.is_set():
            data = upstream.recv(65536)
            if not data or not self.trickle(conn, data, self.drip):
                return


class Filtered:
    """An address whose TCP port drops every SYN: a listener with a full accept queue (backlog 0, one
    connection waiting), what a firewall's DROP looks like to the sender. No namespace and no root needed."""

    def __init__(self, host: str | None = None, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host or address(), port))
        self.sock.listen(0)
        self.host, self.port = self.sock.getsockname()
        self._filler = socket.create_connection((self.host, self.port), timeout=2)

    def close(self) -> None:
        self._filler.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Dns:
    """An estate DNS on 127.112.x.y: ``zone`` maps a name (no trailing dot) to its A records. Names in
    ``trickle`` get a truncated UDP answer and a TCP answer one byte every ``drip`` seconds."""

    def __init__(self, zone: dict[str, list[str]], *, trickle: set[str] = frozenset(), drip: float = 0.3) -> None:
        import dns.message  # noqa: F401  (dnspython: the project's DNS library)

        self.zone, self.trickled, self.drip = zone, set(trickle), drip
        self.udp = Udp(self._udp)
        self.tcp = Server(self._tcp, host=self.udp.host, port=self.udp.port)
        self.address, self.port = self.udp.host, self.udp.port

    def _answer(self, wire: bytes, tcp: bool) -> bytes:
        import dns.flags
        import dns.message
        import dns.rrset

        query = dns.message.from_wire(wire)
        name = query.question[0].name.to_text().rstrip(".").lower()
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if name in self.trickled and not tcp:
            reply.flags |= dns.flags.TC
        elif name in self.zone:
            reply.answer.append(dns.rrset.from_text_list(name + ".", 60, "IN", "A", self.zone[name]))
        else:
            reply.set_rcode(3)
        return reply.to_wire()

    def _udp(self, sock, data, peer, server) -> None:
        sock.sendto(self._answer(data, tcp=False), peer)

    def _tcp(self, conn, server: Server) -> None:
        size = int.from_bytes(conn.recv(2), "big")
        wire = conn.recv(size)
        out = self._answer(wire, tcp=True)
        framed = len(out).to_bytes(2, "big") + out
        name = wire and self._name(wire)
        if name in self.trickled:
            server.trickle(conn, framed, self.drip)
        else:
            conn.sendall(framed)

    @staticmethod
    def _name(wire: bytes) -> str:
        import dns.message

        return dns.message.from_wire(wire).question[0].name.to_text().rstrip(".").lower()

    def resolver(self, timeout: float):
        from pytest_vpro.probes.dns import Resolver

        return Resolver([self.address], port=self.port, timeout=timeout)

    def close(self) -> None:
        try:
            self.tcp.close()
        finally:
            self.udp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tls(folder: Path, *names: str) -> tuple[ssl.SSLContext, str]:
    """A server context with a certificate for ``names`` (host names and addresses) from a fresh CA, and the
    path of that CA's PEM (what the client trusts)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(subject, issuer, public, ca: bool, sans=None):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
             .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(ca_key, hashes.SHA256())

    sans = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    ca = build(name("Hostile Estate CA"), name("Hostile Estate CA"), ca_key.public_key(), True)
    leaf = build(name(names[0]), ca.subject, key.public_key(), False, sans)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return ctx, str(folder / "ca.pem")


def http_head(status: str, headers: dict[str, str] | None = None, length: int | None = 0) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_http_request(conn: socket.socket, server: Server) -> bytes:
    """One HTTP request (headers and a Content-Length body), recorded in ``server.received``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("client closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("client closed")
        body += chunk
    server.received.append(head + b"\r\n\r\n" + body)
    return head


def ber_message_id(request: bytes) -> int:
    """The messageID of an LDAP request (``30 len 02 n id ...``), for a reply that matches it."""
    i = 2 if request[1] < 0x80 else 2 + (request[1] & 0x7F)
    n = request[i + 1]
    return int.from_bytes(request[i + 2:i + 2 + n], "big")


def ldap_reply(message_id: int, op: int, code: int = 0) -> bytes:
    """An LDAPResult (bindResponse 0x61, extendedResp 0x78, searchResDone 0x65) with resultCode ``code``."""
    body = b"\x0a\x01" + bytes([code]) + b"\x04\x00\x04\x00"
    inner = b"\x02\x01" + bytes([message_id]) + bytes([op, len(body)]) + body
    return b"\x30" + bytes([len(inner)]) + inner


def pack_u32_be(n: int) -> bytes:
    return struct.pack(">L", n)
