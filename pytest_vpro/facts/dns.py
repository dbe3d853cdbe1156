"""Names: the estate's DNS (A, PTR, SRV and any record type), the target's address, and connection routing
through the estate's DNS. IPv4 only: the product is."""
from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any, Callable

from ..environment import Environment
from ..probes.dns import ConnectionRouting, NoAnswer, NxDomain, Resolver
from ..probes.errors import ProbeError
from .core import key

if TYPE_CHECKING:
    from . import Facts


class DnsFacet:
    """``facts.dns``: what the estate's DNS servers answer. NXDOMAIN and an empty answer are answers ([]), for
    the check to judge; a server that does not answer is a :class:`ProbeError`."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def forward(self, name: str) -> list[str]:
        """A records of ``name`` from the estate's DNS servers; [] if none."""
        env = self.facts.env
        return self.facts.get(key("dns.A", name.lower()), lambda: answered(lambda: resolver(env).forward(name)))

    def reverse(self, address: str) -> list[str]:
        """PTR names of ``address``, lower case, without the trailing dot; [] if none."""
        env = self.facts.env
        return self.facts.get(key("dns.PTR", address), lambda: [n.rstrip(".").lower() for n in answered(
            lambda: resolver(env).reverse(address))])

    def address(self) -> str:
        """The target's IPv4 address: from the environment file, else from the estate's DNS."""
        target = self.facts.target
        given = getattr(target, "address", None)
        if given:
            return given
        found = self.forward(target.name)
        if not found:
            raise ProbeError(f"{target.name} has no A record")
        return found[0]

    def records(self, name: str, rtype: str, servers: tuple[str, ...] | list[str] | None = None) -> list[str]:
        """``rtype`` records of ``name`` ([] on NXDOMAIN or no answer) from the estate's DNS servers, or from
        ``servers`` (e.g. the ones a site server's network adapter uses)."""
        env = self.facts.env
        if servers is None:
            def lookup() -> list[str]:
                return list(resolver(env).lookup(name, rtype))
        else:
            other = Resolver(list(servers), port=env.dns["port"], timeout=env.timeouts["connect"])

            def lookup() -> list[str]:
                return list(other.lookup(name, rtype))
        where = ",".join(servers) if servers is not None else "estate"
        return self.facts.estate.get(key("dns", where, rtype, name.lower()), lambda: answered(lookup))

    def domain_controllers(self) -> list[str]:
        """Host names of ``_ldap._tcp.dc._msdcs.<forest>`` SRV records: every DC the domain advertises."""
        env = self.facts.env

        def lookup() -> list[str]:
            try:
                return sorted({r.target.lower() for r in resolver(env).srv(f"_ldap._tcp.dc._msdcs.{env.site.forest}")})
            except (NxDomain, NoAnswer):
                return []
        return self.facts.estate.get(key("dns", "dcs"), lookup)


def answered(lookup: Callable[[], list[str]]) -> list[str]:
    """``lookup()``, [] on NXDOMAIN or no answer."""
    try:
        return lookup()
    except (NxDomain, NoAnswer):
        return []


_RESOLVERS: dict[int, Any] = {}
_ROUTING_LOCK = threading.Lock()


def resolver(env: Environment) -> Resolver:
    """The estate's resolver (``dns.servers``), one per environment in this process."""
    with _ROUTING_LOCK:
        if id(env) not in _RESOLVERS:
            _RESOLVERS[id(env)] = Resolver(env.dns["servers"], port=env.dns["port"], timeout=env.timeouts["connect"])
        return _RESOLVERS[id(env)]


def route_connections(env: Environment) -> None:
    """Resolve estate names through the estate's DNS for every connection of this process, if asked to."""
    if not env.dns.get("route_connections") or not env.dns["servers"]:
        return
    domains = sorted({env.site.name, *env.site.client_domains})
    ConnectionRouting(resolver(env), domains).install()


def local_address_towards(host: str, port: int = 67) -> str:
    """The address this machine uses to reach ``host`` (no packet is sent: a UDP socket is only connected)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return s.getsockname()[0]
