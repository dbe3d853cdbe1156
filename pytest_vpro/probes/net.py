"""TCP reachability probe: is a port open, refused, filtered or unreachable?

The out of band checks need to know, for every AMT device and server, whether 16992-16995, 9971, 389/636, 88
and 445 can be reached, and *how* they cannot: a refused port (RST: the host is there, nothing listens) calls
for a different corrective action than a filtered one (no answer: a firewall drops the SYN) or an unreachable
one (no route, or the name does not resolve).

Verdicts (RFC 793 3.4 connection establishment, RFC 1122 4.2.3.9 and RFC 792 for the ICMP cases):

* ``open``         the three-way handshake completed;
* ``refused``      the peer answered the SYN with RST (``ECONNREFUSED``);
* ``filtered``     no answer within the timeout;
* ``unreachable``  no route / ICMP host or network unreachable, or the name did not resolve.

Names are resolved with ``socket.getaddrinfo`` (IPv4 only: the product is IPv4-only), so
:func:`pytest_vpro.probes.dns.route_connections` routes estate names through the estate's DNS here too.
"""
from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography import x509

from . import deadline, tls
from .dns import NoAnswer, NxDomain, Resolver
from .errors import MalformedReply, Unreachable

OPEN, REFUSED, FILTERED, UNREACHABLE = "open", "refused", "filtered", "unreachable"


@dataclass(frozen=True)
class PortState:
    """The outcome of one TCP connection attempt."""

    host: str
    port: int
    verdict: str          # open | refused | filtered | unreachable
    elapsed: float        # seconds, name resolution included
    peer: str | None      # the address tried (None when the name did not resolve)
    detail: str = ""      # the OS's words for a failure

    @property
    def open(self) -> bool:
        return self.verdict == OPEN

    def __str__(self) -> str:
        via = f" ({self.peer})" if self.peer and self.peer != self.host else ""
        why = f": {self.detail}" if self.detail and not self.open else ""
        return f"{self.host}:{self.port}{via} {self.verdict} after {self.elapsed * 1000:.0f} ms{why}"

    def require_open(self, timeout: float | None = None) -> "PortState":
        """Return self if open, else raise :class:`Unreachable` (for probes that need the port)."""
        if not self.open:
            how = {REFUSED: "connection refused", FILTERED: "no answer"}.get(self.verdict, self.detail or "unreachable")
            raise Unreachable(self.host, self.port, timeout, how)
        return self


def probe_tcp(host: str, port: int, timeout: float) -> PortState:
    """Try one TCP connection to ``host:port`` within ``timeout`` seconds and close it at once.

    Every IPv4 address of ``host`` is tried in order until one is open, all of them within ``timeout`` (a name
    with many addresses that drop every SYN costs one timeout, not one per address); otherwise the first
    address's verdict is returned. Never raises for a network outcome: the verdict is the finding.
    """
    started = time.monotonic()
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return PortState(host, port, UNREACHABLE, time.monotonic() - started, None,
                         f"name not resolved: {getattr(exc, 'strerror', None) or exc}")
    first: PortState | None = None
    with deadline.Deadline(timeout, f"connect {host}:{port}") as limit:  # an interrupted run aborts the connects
        for *_, sockaddr in infos:
            if first is not None and limit.left() <= 0:
                break
            state = _connect(host, port, sockaddr, timeout, started, limit)
            if state.open:
                return state
            first = first or state
    assert first is not None  # getaddrinfo never returns an empty list
    return first


def _connect(host: str, port: int, sockaddr: tuple, timeout: float, started: float,
             limit: deadline.Deadline) -> PortState:
    peer = sockaddr[0]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        limit.watch(sock)
        sock.settimeout(max(limit.left(), 0.001))
        try:
            sock.connect(sockaddr)
        except (TimeoutError, socket.timeout):
            return PortState(host, port, FILTERED, time.monotonic() - started, peer, f"no answer within {timeout:g} s")
        except ConnectionRefusedError as exc:
            return PortState(host, port, REFUSED, time.monotonic() - started, peer, exc.strerror or "refused")
        except OSError as exc:
            if limit.expired:  # shut by the deadline: no answer in time (or the run was interrupted)
                return PortState(host, port, FILTERED, time.monotonic() - started, peer,
                                 "the run was interrupted" if limit.interrupted else f"no answer within {timeout:g} s")
            verdict = REFUSED if exc.errno == errno.ECONNRESET else UNREACHABLE  # ENETUNREACH, EHOSTUNREACH, ...
            return PortState(host, port, verdict, time.monotonic() - started, peer, exc.strerror or str(exc))
        return PortState(host, port, OPEN, time.monotonic() - started, peer)


def probe_many(targets: Iterable[tuple[str, int]], timeout: float, concurrency: int = 64,
               per_host: int = 4) -> list[PortState]:
    """:func:`probe_tcp` for every ``(host, port)``, concurrently, results in the order given.

    At most ``concurrency`` attempts run at once, and at most ``per_host`` against one host, so probing all
    ports of a slow AMT firmware does not queue its few connection slots.
    """
    targets = list(targets)
    if not targets:
        return []
    limits: dict[str, threading.BoundedSemaphore] = {}
    guard = threading.Lock()

    def one(target: tuple[str, int]) -> PortState:
        host, port = target
        with guard:
            limit = limits.setdefault(host.lower(), threading.BoundedSemaphore(max(per_host, 1)))
        with limit:
            return probe_tcp(host, port, timeout)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(targets))), thread_name_prefix="probe-tcp") as pool:
        return list(pool.map(one, targets))


def is_ipv4_only(host: str, resolver: Resolver) -> bool:
    """True when the estate's DNS has no AAAA record for ``host`` (AMT 3.x/ConfigMgr 2007 OOB is IPv4-only).

    A name that does not exist raises :class:`~pytest_vpro.probes.dns.NxDomain`: that is not "IPv4-only",
    it is missing. DNS failures raise as :func:`Resolver.lookup` does.
    """
    try:
        resolver.lookup(host, "AAAA")
    except NoAnswer:
        return True
    except NxDomain:
        raise
    return False


@dataclass(frozen=True)
class TlsPeer:
    """What a TLS handshake with ``host:port`` showed: the leaf certificate and what the session used
    (:class:`pytest_vpro.probes.tls.Negotiated` as text, e.g. "TLS 1.0, AES128-SHA (legacy fallback)")."""

    certificate: object  # cryptography.x509.Certificate
    negotiated: str


def peer_certificate(host: str, port: int, timeout: float, *, legacy_ciphers: str | None = None):
    """The leaf certificate ``host:port`` presents in its TLS handshake, as a ``cryptography`` certificate."""
    return peer_tls(host, port, timeout, legacy_ciphers=legacy_ciphers).certificate


def peer_tls(host: str, port: int, timeout: float, *, legacy_ciphers: str | None = None) -> TlsPeer:
    """The leaf certificate ``host:port`` presents in its TLS handshake, and what the handshake used.

    This reads the certificate in order to judge it (issuer, dates, name, self-signed): the handshake is made
    without trusting it and nothing is sent over the connection, no credential and no request. Every call that
    sends data verifies TLS (WsmanClient, requests with ``verify=``); this is the only unverified handshake, on
    purpose, and it is named for what it does. Toward an AMT port a device that refuses the modern handshake is
    asked once more with the legacy settings (:mod:`pytest_vpro.probes.tls`).
    """
    attempts = 2 if tls.may_fall_back(port) else 1  # a refused modern handshake is tried once more, legacy
    limit = deadline.Deadline(2 * timeout * attempts, f"TLS handshake {host}:{port}")  # connect + a slow handshake
    try:
        with limit:
            sock, negotiated = tls.connect(host, port, cafile=None, timeout=timeout, inspect_only=True,
                                           ciphers=legacy_ciphers or tls.DEFAULT_LEGACY_CIPHERS, limit=limit)
            with sock:
                der = sock.getpeercert(binary_form=True)
    except (TimeoutError, socket.timeout):
        raise Unreachable(host, port, timeout) from None
    except ConnectionRefusedError:
        raise Unreachable(host, port, timeout, "connection refused") from None
    except (ssl.SSLError, OSError) as exc:
        if limit.expired:
            raise limit.too_late(host, port) from None
        if isinstance(exc, ssl.SSLError):
            raise MalformedReply(f"no TLS handshake with {host}:{port}: {exc.reason or exc}") from None
        raise Unreachable(host, port, timeout, exc.strerror or str(exc)) from None
    if not der:
        raise MalformedReply(f"{host}:{port} presented no certificate")
    return TlsPeer(x509.load_der_x509_certificate(der), str(negotiated))
