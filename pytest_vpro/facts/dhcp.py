"""DHCP: a DHCPINFORM to a DHCP server, as a probe in the site's domain."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..environment import Environment
from ..probes.dhcp import inform as dhcp_inform
from ..probes.errors import ProbeError
from .core import key
from .dns import answered, local_address_towards, resolver

if TYPE_CHECKING:
    from . import Facts


class DhcpFacet:
    """``facts.dhcp``: what a DHCP server answers a DHCPINFORM with (option 81 for ``vpro-probe.<site>``)."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def inform(self) -> Any:
        """The answer of this target (a DHCP server) to a DHCPINFORM."""
        facts = self.facts
        return facts.get(key("dhcp", "inform"), lambda: _inform(facts.env, facts.target, facts.dns.address()))

    def site_inform(self) -> Any:
        """The DHCPINFORM answer of the estate's DHCP server (role ``dhcp``), shared by every target's checks
        (e.g. option 15, the domain AMT takes as its own)."""
        facts = self.facts
        server = facts.server("dhcp")

        def ask() -> Any:
            address = getattr(server, "address", None) or next(iter(answered(
                lambda: resolver(facts.env).forward(server.name))), None)
            if not address:
                raise ProbeError(f"{server.name} has no A record")
            return _inform(facts.env, server, address)
        return facts.estate.get(key("dhcp.inform", server.name), ask)


    def asked_from(self) -> str:
        """Which scope :meth:`inform` asked, in words for a finding: the DHCPINFORM's source address (ciaddr) is
        the server's ``probe_from`` (an address in a client scope) or, without it, this machine's own address,
        whose scope is not the clients'."""
        facts = self.facts
        return asked_from(facts.target, facts.dns.address())


def asked_from(server: Any, address: str) -> str:
    """The scope a DHCPINFORM to ``server`` at ``address`` asks (see :meth:`DhcpFacet.asked_from`)."""
    source = _source(server, address)
    if getattr(server, "extra", {}).get("probe_from"):
        return f"the scope of {source} (probe_from)"
    return (f"the scope of this machine's address {source}, not the clients' scopes (no probe_from: set it to an "
            "address in a client scope to ask theirs)")


def _source(server: Any, address: str) -> str:
    return getattr(server, "extra", {}).get("probe_from") or local_address_towards(address)


def _inform(env: Environment, server: Any, address: str) -> Any:
    extra = getattr(server, "extra", {})
    source = _source(server, address)
    port = int(extra.get("dhcp_port") or 67)
    return dhcp_inform(address, client_address=source, port=port, fqdn=f"vpro-probe.{env.site.name}",
                       timeout=env.timeouts["connect"])
