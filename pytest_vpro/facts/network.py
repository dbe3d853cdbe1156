"""The network as a client of it sees it: TCP ports, what a TLS port presents, and CDP/AIA downloads."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..probes import httpclient, net
from ..probes import x509 as x509_probe
from .core import key
from .dns import local_address_towards

if TYPE_CHECKING:
    from . import Facts


class NetworkFacet:
    """``facts.network``: connections within the environment's connect and read timeouts."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def ports(self, host: str, ports: list[int] | tuple[int, ...]) -> list[net.PortState]:
        """:class:`~pytest_vpro.probes.net.PortState` of each ``host:port`` (open, refused, filtered or
        unreachable within the connect timeout), probed concurrently and once per run for every check."""
        estate = self.facts.estate
        timeout = self.facts.env.timeouts["connect"]
        todo = [p for p in ports if not estate.has(key("tcp", f"{host}:{p}"))]
        if len(todo) > 1:
            for state in net.probe_many([(host, p) for p in todo], timeout):
                estate.get(key("tcp", f"{host}:{state.port}"), lambda state=state: state)
        return [estate.get(key("tcp", f"{host}:{p}"), lambda p=p: net.probe_tcp(host, p, timeout)) for p in ports]

    def vantage(self, host: str) -> str:
        """Where :meth:`ports` probes ``host`` from, in words for a finding: "from this machine (<address>)", the
        address this machine uses towards ``host`` (not the service point's or the console's network position)."""
        try:
            address = local_address_towards(host)
        except (OSError, UnicodeError):  # a name that does not resolve: the port verdicts say so
            return "from this machine"
        return f"from this machine ({address})"

    def peer_tls(self, host: str, port: int) -> net.TlsPeer:
        """:class:`~pytest_vpro.probes.net.TlsPeer` of ``host:port``: the certificate it presents and what the
        handshake used (legacy settings toward an AMT port that refused the modern ones)."""
        facts = self.facts
        return facts.per_host(host, key("tls.peer", f"{host}:{port}"), lambda: net.peer_tls(
            host, port, timeout=facts.env.timeouts["connect"], legacy_ciphers=facts.connect.legacy_ciphers))

    def peer_certificate(self, host: str, port: int) -> Any:
        """The certificate ``host:port`` presents (read, not trusted: the checks judge it), or ProbeError."""
        return self.peer_tls(host, port).certificate

    def download(self, url: str) -> bytes:
        """A CDP or AIA URL's content, once per run: HTTP GET within connect + read timeout, no redirect followed,
        https verified against the public roots and the estate's ``pki.trusted_roots``; or for an ``ldap:`` URL
        (AD CS writes ``ldap:///CN=...,CN=CDP,CN=Public Key Services,...``) the attribute read from the estate's
        directory with ``credentials.ldap`` (bounded by its timeouts). Raises
        :class:`~pytest_vpro.probes.x509.CrlProblem` (unreachable, HTTP status, redirected, not found,
        unsupported scheme)."""
        env = self.facts.env
        kind = "ldap" if url.lower().startswith("ldap:") else "http"
        return self.facts.estate.get(key(kind, url), lambda: x509_probe.download(
            url, timeout=env.timeouts["read"], connect_timeout=env.timeouts["connect"],
            verify=httpclient.public_and(env.pki.get("trusted_roots")), ldap_read=self._read_ldap_location))

    def _read_ldap_location(self, location: Any) -> list[bytes]:
        """The values of an LDAP URL's attribute (:class:`~pytest_vpro.probes.x509.LdapLocation`): from the
        estate's directory for ``ldap:///``, from the host the URL names otherwise (the same credential)."""
        directory = self.facts.directory
        attributes = (location.attribute,)
        if location.host:
            entries = directory.search_on(location.host, location.dn, location.filter, attributes)
        else:
            entries = directory.search(location.dn, location.filter, attributes, scope=location.scope)
        wanted = location.attribute.lower()
        return [v for e in entries for k, vs in e["raw_attributes"].items() if k.split(";")[0].lower() == wanted
                for v in vs]
