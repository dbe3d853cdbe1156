"""Hostile servers on 127.112.x.x: the broken and malicious replies a production estate can give.

``Hostile(mode)`` listens on a fresh loopback address in 127.112.0.0/16 (net 112 is this folder's), answers
every HTTP request on it the way ``mode`` says, and counts connections. Modes:

* ``silent``        accept, read the request, never answer (a device that hangs after the handshake)
* ``slow``          send headers, then the body one byte every ``drip`` seconds (never a whole read timeout)
* ``slow_headers``  send the status line and headers one byte every ``drip`` seconds
* ``reset``         read the request, then reset the connection (RST)
* ``truncated``     promise 4000 bytes, send 120 of a valid envelope, close
* ``not_xml``       200, application/soap+xml, an HTML page
* ``entity_bomb``   a "billion laughs" internal entity expansion
* ``external``      an external entity pointing at /etc/passwd
* ``huge``          50 MB of XML (``chunked`` True: without Content-Length)
* ``wrong_type``    a valid envelope as text/html
* ``http500``       500 with an HTML body
* ``soap_fault``    500 with a SOAP 1.2 fault (AccessDenied)
* ``digest_loop``   401 with a fresh Digest nonce, forever
* ``ok``            a valid AMT_GeneralSettings GetResponse
"""
from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
import uuid

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
GOOD = (
    f'<?xml version="1.0" encoding="UTF-8"?><a:Envelope xmlns:a="{NS_SOAP}" xmlns:b="{NS_WSA}" '
    'xmlns:g="http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings"><a:Header>'
    f'<b:Action>{"http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse"}</b:Action></a:Header><a:Body>'
    '<g:AMT_GeneralSettings><g:HostName>pc</g:HostName><g:DomainName>lab.test</g:DomainName>'
    '</g:AMT_GeneralSettings></a:Body></a:Envelope>'
).encode()
FAULT = (
    f'<?xml version="1.0"?><a:Envelope xmlns:a="{NS_SOAP}"><a:Header/><a:Body><a:Fault><a:Code>'
    '<a:Value>a:Sender</a:Value><a:Subcode><a:Value>w:AccessDenied</a:Value></a:Subcode></a:Code>'
    '<a:Reason><a:Text xml:lang="en-US">The sender was not authorized</a:Text></a:Reason></a:Fault>'
    '</a:Body></a:Envelope>'
).encode()
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b']><Envelope xmlns="' + NS_SOAP.encode() + b'"><Body>&lol9;</Body></Envelope>'
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<Envelope xmlns="' + NS_SOAP.encode() + b'"><Body>&x;</Body></Envelope>'
)
HUGE_BYTES = 50 * 1024 * 1024
SOAP = "application/soap+xml; charset=UTF-8"

_next = itertools.count(1)


def address(net: int = 112) -> str:
    """A fresh loopback address in 127.<net>.0.0/16 (one per listener: many hosts, one port each)."""
    n = next(_next)
    return f"127.{net}.{n // 250}.{n % 250 + 1}"


class Hostile:
    def __init__(self, mode: str, *, host: str | None = None, port: int = 0, drip: float = 0.2,
                 chunked: bool = False, tls=None):
        self.mode, self.drip, self.chunked, self.tls = mode, drip, chunked, tls  # tls: a server SSLContext
        self.connections = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host or address(), port))
        self.sock.listen(256)
        self.host, self.port = self.sock.getsockname()
        self.url = f"{'https' if tls else 'http'}://{self.host}:{self.port}/wsman"
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> "Hostile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for s in [self.sock, *self._open]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        self.requests.append(head + b"\r\n\r\n" + body)
        return head

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
                conn.settimeout(None)
            while not self._stop.is_set():
                if self._read_request(conn) is None:
                    return
                if not self._answer(conn):
                    return
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _response(status: str, ctype: str, body: bytes, extra: str = "") -> bytes:
        return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
                ).encode() + body

    def _answer(self, conn: socket.socket) -> bool:
        """Answer one request; False closes the connection."""
        m = self.mode
        if m == "silent":
            self._stop.wait()
            return False
        if m == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if m == "slow":
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {SOAP}\r\nContent-Length: {len(GOOD)}\r\n\r\n".encode())
            for b in GOOD:
                if self._stop.wait(self.drip):
                    return False
                conn.sendall(bytes([b]))
            return True
        if m == "slow_headers":
            for b in self._response("200 OK", SOAP, GOOD):
                if self._stop.wait(self.drip):
                    return False
                conn.sendall(bytes([b]))
            return True
        if m == "truncated":
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {SOAP}\r\nContent-Length: 4000\r\n\r\n".encode()
                         + GOOD[:120])
            return False
        if m == "huge":
            piece = b"<x>" + b"A" * 65530 + b"</x>"
            if self.chunked:
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {SOAP}\r\nTransfer-Encoding: chunked\r\n\r\n"
                             .encode())
            else:
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {SOAP}\r\nContent-Length: {HUGE_BYTES}\r\n\r\n"
                             .encode())
            sent = 0
            while sent < HUGE_BYTES and not self._stop.is_set():
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece)
                sent += len(piece)
            return False
        if m == "digest_loop":
            nonce = uuid.uuid4().hex
            conn.sendall(self._response("401 Unauthorized", "text/html", b"<html>401</html>",
                                        f'WWW-Authenticate: Digest realm="Digest:A1B2", nonce="{nonce}", '
                                        'qop="auth", stale="true"\r\n'))
            return True
        body = {"not_xml": (b"<html><body>Intel(R) AMT Web UI<br>", "200 OK", SOAP),
                "entity_bomb": (BOMB, "200 OK", SOAP), "external": (EXTERNAL, "200 OK", SOAP),
                "wrong_type": (GOOD, "200 OK", "text/html"),
                "http500": (b"<html>Internal Server Error</html>", "500 Internal Server Error", "text/html"),
                "soap_fault": (FAULT, "400 Bad Request", SOAP), "ok": (GOOD, "200 OK", SOAP)}[m]
        conn.sendall(self._response(body[1], body[2], body[0]))
        return True


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
