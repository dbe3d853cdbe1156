"""DNS probe: forward, reverse, CNAME and SRV look-ups against the estate's DNS servers (dnspython).

Every look-up goes to the servers named in the environment (or, with none, to the system's ``resolv.conf``)
with one ``port`` and one ``timeout`` for the whole look-up (dnspython's ``lifetime``), and fails with a typed
:class:`~pytest_vpro.probes.errors.ProbeError`, so an unanswered server is a finding and not a crash.

The product is IPv4-only (Intel AMT 3.x / Configuration Manager 2007 out of band management), so forward
look-ups ask for A records only.

:func:`route_connections` lets the rest of the process (requests, ldap3, smbprotocol, requests-kerberos) reach
estate hosts by FQDN through the estate's DNS, without touching ``/etc/hosts``: TLS host name checks and
Kerberos SPNs need the FQDN, not an address.

Sources: RFC 1034/1035 (DNS), RFC 1035 4.1.1 (RCODEs), RFC 2782 (SRV), RFC 1035 3.5 (in-addr.arpa),
RFC 3493 (``getaddrinfo``), dnspython's ``dns.resolver`` documentation.
"""
from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename

from .errors import MalformedReply, ProbeError, Unreachable

if TYPE_CHECKING:
    from ..environment import Environment


class NxDomain(ProbeError):
    """The name does not exist (RCODE 3, NXDOMAIN)."""


class NoAnswer(ProbeError):
    """The name exists but has no record of the asked type (NOERROR, empty answer)."""


class ServFail(ProbeError):
    """Every server answered with an error (SERVFAIL, REFUSED, a malformed reply, ...)."""


class DnsTimeout(Unreachable):
    """No server answered within the timeout."""


@dataclass(frozen=True)
class Answer:
    """The records of one look-up and the server's reply as text (evidence for a report)."""

    name: str
    rtype: str
    records: tuple[str, ...]
    server: str
    text: str

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)


@dataclass(frozen=True)
class SrvRecord:
    """One SRV record (RFC 2782); ``target`` without the trailing dot."""

    priority: int
    weight: int
    port: int
    target: str


def _plain(name: object) -> str:
    """A DNS name as text, lower case, without the trailing dot."""
    return str(name).rstrip(".").lower()


class Resolver:
    """Look-ups against ``servers`` (addresses) on ``port``; an empty list means the system's resolv.conf.

    ``timeout`` bounds a whole look-up, retries and every server included. Search domains are never applied:
    names are asked exactly as given (they are FQDNs).
    """

    def __init__(self, servers: list[str] | tuple[str, ...] = (), port: int = 53, timeout: float = 3.0) -> None:
        self.servers = list(servers)
        self.port = port
        self.timeout = timeout
        self._resolver = dns.resolver.Resolver(configure=not self.servers)
        if self.servers:
            self._resolver.nameservers = self.servers
        self._resolver.port = port
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._resolver.search = []
        self._resolver.use_search_by_default = False

    def __repr__(self) -> str:
        return f"Resolver({self.servers or 'resolv.conf'}, port={self.port}, timeout={self.timeout:g})"

    @property
    def _where(self) -> str:
        return ",".join(str(s) for s in self._resolver.nameservers) or "no nameserver"

    def lookup(self, name: str, rtype: str) -> Answer:
        """Ask for ``rtype`` records of ``name``; raise NxDomain, NoAnswer, DnsTimeout, ServFail or ProbeError."""
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            raise ProbeError(f"{name!r} is not a valid DNS name: {exc}") from None
        try:
            answer = self._resolver.resolve(qname, rtype, search=False, raise_on_no_answer=True)
        except dns.resolver.NXDOMAIN:
            raise NxDomain(f"{_plain(qname)} does not exist (NXDOMAIN from {self._where})") from None
        except dns.resolver.NoAnswer:
            raise NoAnswer(f"{_plain(qname)} has no {rtype} record ({self._where})") from None
        except dns.resolver.LifetimeTimeout:
            raise DnsTimeout(self._where, self.port, self.timeout,
                             f"no DNS answer for {_plain(qname)} {rtype}") from None
        except dns.resolver.NoNameservers as exc:
            raise self._no_nameservers(qname, rtype, exc) from None
        except dns.exception.DNSException as exc:
            raise ProbeError(f"DNS look-up of {_plain(qname)} {rtype} at {self._where} failed: {exc}") from None
        records = tuple(_plain(r.to_text()) if rtype.upper() in ("PTR", "CNAME", "NS") else r.to_text()
                        for r in answer)
        return Answer(_plain(qname), rtype.upper(), records, str(answer.nameserver), answer.response.to_text())

    def _no_nameservers(self, qname: dns.name.Name, rtype: str, exc: dns.resolver.NoNameservers) -> ProbeError:
        """NoNameservers: every server failed. Only socket errors (ICMP port unreachable, no route) make
        Unreachable; only unparseable replies make MalformedReply; answers (SERVFAIL, REFUSED) make ServFail."""
        errors = exc.kwargs.get("errors") or []
        if errors and all(isinstance(e[3], OSError) for e in errors):
            server, _tcp, port, err = errors[0][:4]
            how = f"{err.strerror or err} asking for {_plain(qname)} {rtype}"
            return Unreachable(str(server), port, self.timeout, how)
        errors = [e for e in errors if not isinstance(e[3], dns.message.Truncated)]  # retried over TCP
        if errors and all(isinstance(e[3], dns.exception.FormError) for e in errors):
            server, _tcp, _port, err = errors[0][:4]
            return MalformedReply(f"malformed DNS reply for {_plain(qname)} {rtype} from {server}: {err}")
        detail = "; ".join(f"{e[0]}: {e[3]}" for e in errors) or str(exc)
        return ServFail(f"no usable answer for {_plain(qname)} {rtype}: {detail}")

    def forward(self, name: str) -> list[str]:
        """IPv4 addresses of ``name`` (A records; the product is IPv4-only)."""
        return list(self.lookup(name, "A").records)

    def reverse(self, address: str) -> list[str]:
        """Names of ``address`` (PTR records in in-addr.arpa), lower case, without the trailing dot."""
        try:
            ptr = dns.reversename.from_address(address)
        except (dns.exception.DNSException, ValueError):
            raise ProbeError(f"{address!r} is not an IP address") from None
        return list(self.lookup(ptr.to_text(), "PTR").records)

    def cname(self, name: str) -> str:
        """The canonical name ``name`` is an alias of (CNAME); NoAnswer if it is not an alias."""
        return self.lookup(name, "CNAME").records[0]

    def srv(self, name: str) -> list[SrvRecord]:
        """SRV records of ``name`` (``_ldap._tcp.dc._msdcs.<domain>``), by priority then heaviest weight."""
        out = []
        for text in self.lookup(name, "SRV").records:
            priority, weight, port, target = text.split()
            out.append(SrvRecord(int(priority), int(weight), int(port), _plain(target)))
        return sorted(out, key=lambda r: (r.priority, -r.weight, r.target))

    def consistent_forward_reverse(self, fqdn: str) -> tuple[bool, str]:
        """Does every A record of ``fqdn`` have a PTR back to ``fqdn``? Returns (ok, evidence text).

        A missing name or record is a "no" with its reason as evidence; an unanswered server raises.
        """
        want = _plain(fqdn)
        lines: list[str] = []
        try:
            addresses = self.forward(want)
        except (NxDomain, NoAnswer) as exc:
            return False, f"{want} A: {exc}"
        lines.append(f"{want} A {' '.join(addresses)}")
        ok = True
        for address in addresses:
            try:
                names = self.reverse(address)
            except (NxDomain, NoAnswer) as exc:
                lines.append(f"{address} PTR: {exc}")
                ok = False
                continue
            lines.append(f"{address} PTR {' '.join(names)}")
            if want not in names:
                lines.append(f"{address} does not point back to {want}")
                ok = False
        return ok, "\n".join(lines)


# --------------------------------------------------------------------------- connection routing

DSPROPERTY_ZONE_ALLOW_UPDATE = 0x02  # MS-DNSP 2.3.2.1.1


def parse_zone_allow_update(properties: list[bytes]) -> int | None:
    """An AD-integrated zone's dynamic update setting from its ``dNSProperty`` values (MS-DNSP 2.3.2.1: u32
    DataLength, NameLength, Flag, Version, Id, then Data): 0 none, 1 nonsecure and secure, 2 secure only; None if
    the zone has no such property."""
    for blob in properties:
        if len(blob) < 21:
            continue
        length, _name_length, _flag, _version, prop_id = struct.unpack_from("<IIIII", blob)
        if prop_id == DSPROPERTY_ZONE_ALLOW_UPDATE and length >= 1:
            return blob[20]
    return None


def _in_domains(name: str, domains: tuple[str, ...]) -> bool:
    return any(name == d or name.endswith("." + d) for d in domains)


class ConnectionRouting:
    """A ``socket.getaddrinfo`` wrapper: names under ``domains`` are resolved through the estate's DNS.

    Everything else (addresses, other names, ``None``) goes to the original ``getaddrinfo``. Estate names
    resolve to IPv4 only (an AF_INET6-only request gets EAI_ADDRFAMILY-like ``gaierror``); the address list is
    cached per name for the lifetime of the routing (NXDOMAIN too; timeouts are not cached). The result is
    built by the original ``getaddrinfo`` from the numeric address, so port, socket type, protocol and flags
    are honoured exactly as libc would.
    """

    def __init__(self, resolver: Resolver, domains: list[str] | tuple[str, ...]) -> None:
        self.resolver = resolver
        self.domains = tuple(_plain(d) for d in domains if d)
        self._cache: dict[str, list[str] | socket.gaierror] = {}
        self._lock = threading.Lock()
        self._name_locks: dict[str, threading.Lock] = {}
        self._failed: dict[str, tuple[float, socket.gaierror]] = {}  # the last failed query of a name, and when
        self._original: Callable[..., list] | None = None

    @property
    def installed(self) -> bool:
        return self._original is not None

    def install(self) -> "ConnectionRouting":
        with _INSTALL_LOCK:
            if self._original is not None:
                raise RuntimeError("connection routing is already installed")
            self._original = socket.getaddrinfo
            socket.getaddrinfo = self.getaddrinfo
        return self

    def uninstall(self) -> None:
        """Put back the ``getaddrinfo`` found at install (routings must be removed last-in, first-out)."""
        with _INSTALL_LOCK:
            if self._original is None:
                return
            if socket.getaddrinfo != self.getaddrinfo:
                raise RuntimeError("socket.getaddrinfo was replaced after this routing; uninstall that first")
            socket.getaddrinfo, self._original = self._original, None

    def __enter__(self) -> "ConnectionRouting":
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def addresses(self, name: str) -> list[str]:
        """The estate's IPv4 addresses of ``name`` (cached); raises ``socket.gaierror`` like libc."""
        key = _plain(name)
        with self._lock:
            hit = self._cache.get(key)
            name_lock = self._name_locks.setdefault(key, threading.Lock())
        if hit is None:
            asked = time.monotonic()
            with name_lock:  # one query per name even when many threads connect at once
                with self._lock:
                    hit = self._cache.get(key)
                    failed = self._failed.get(key)
                if hit is None and failed is not None and failed[0] >= asked:
                    hit = failed[1]  # it failed while this thread waited: that is this thread's answer too
                elif hit is None:
                    hit = self._query(key)
                    if isinstance(hit, socket.gaierror):
                        with self._lock:
                            self._failed[key] = (time.monotonic(), hit)
        if isinstance(hit, socket.gaierror):
            raise hit
        return hit

    def _query(self, key: str) -> list[str] | socket.gaierror:
        try:
            result: list[str] | socket.gaierror = self.resolver.forward(key)
        except (NxDomain, NoAnswer) as exc:
            result = socket.gaierror(socket.EAI_NONAME, f"{exc}")
        except ProbeError as exc:  # timeouts and server failures are not cached: the next call asks again
            return socket.gaierror(socket.EAI_AGAIN, f"estate DNS: {exc}")
        with self._lock:
            self._cache[key] = result
        return result

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 (socket's names)
        original = self._original or socket.getaddrinfo
        name = host.decode("idna") if isinstance(host, (bytes, bytearray)) else host
        if not isinstance(name, str) or not _in_domains(_plain(name), self.domains) or _is_address(name):
            return original(host, port, family, type, proto, flags)
        if family not in (0, socket.AF_UNSPEC, socket.AF_INET):
            raise socket.gaierror(socket.EAI_FAMILY, f"{name}: the estate is IPv4-only")
        out = []
        for address in self.addresses(name):
            out.extend(original(address, port, socket.AF_INET, type, proto, flags | socket.AI_NUMERICHOST))
        return out


_INSTALL_LOCK = threading.Lock()


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def route_connections(resolver: Resolver, domains: list[str] | tuple[str, ...]) -> Iterator[ConnectionRouting]:
    """Within the block, this process connects to names under ``domains`` through ``resolver``.

    For a whole run, use ``ConnectionRouting(resolver, domains).install()`` and ``.uninstall()`` instead.
    """
    routing = ConnectionRouting(resolver, domains).install()
    try:
        yield routing
    finally:
        routing.uninstall()


@contextlib.contextmanager
def estate_routing(env: Environment) -> Iterator[ConnectionRouting | None]:
    """Within the block, estate names resolve through the estate's DNS servers (``dns.servers``), if it names any.

    The names of the site's domains, the forest and the domain controllers' domains are asked of those servers,
    IPv4 only; every other name and address goes to this machine's resolver as usual. Yields the
    :class:`ConnectionRouting`, or None without ``dns.servers``.
    """
    if not env.dns.get("servers"):
        yield None
        return
    domains = {env.site.name, env.site.forest, *env.site.client_domains}
    domains |= {s.name.split(".", 1)[1] for s in env.servers_with("domain_controller") if "." in s.name}
    resolver = Resolver(env.dns["servers"], port=env.dns["port"], timeout=env.timeouts["connect"])
    with route_connections(resolver, sorted(domains)) as routing:
        yield routing
