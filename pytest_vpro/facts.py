"""A target's facts, fetched once per run and shared by its checks.

Checks read facts through ``facts.get(name, fetch)``: the first call runs
``fetch`` and remembers its value, or its :class:`ProbeError` (so a host that
does not answer costs one timeout, not one per check). Accessors for each
protocol (AMT over WS-MAN, DNS, LDAP, logs) are added on top of this by the
stage issues; they all funnel through :meth:`Facts.get`, which is also where a
fact snapshot records and replays them.
"""
from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Callable

from .environment import Environment, Target
from .probes.errors import ProbeError, Unreachable


class Facts:
    def __init__(self, target: Target, env: Environment) -> None:
        self.target, self.env = target, env
        self._values: dict[str, Any] = {}
        self._errors: dict[str, ProbeError] = {}
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}

    def get(self, name: str, fetch: Callable[[], Any]) -> Any:
        with self._lock:
            if name in self._values:
                return self._values[name]
            if name in self._errors:
                raise self._errors[name]
            lock = self._fetching.setdefault(name, threading.Lock())
        with lock:  # one fetch per fact even when threads ask at once
            with self._lock:
                if name in self._values:
                    return self._values[name]
                if name in self._errors:
                    raise self._errors[name]
            try:
                value = fetch()
            except ProbeError as exc:
                with self._lock:
                    self._errors[name] = exc
                raise
            with self._lock:
                self._values[name] = value
            return value

    # ------------------------------------------------------------------ AMT over WS-MAN
    def amt(self, read: str) -> Any:
        """``AmtDevice.<read>()`` of this client (``provisioning``, ``power_policy``, ``redirection``, ...).

        One kept-alive WS-MAN session per client; a device that does not answer costs one timeout for all
        its reads, not one per read.
        """
        with self._lock:
            gone = self._errors.get("amt.unreachable")
        if gone is not None:
            raise gone
        try:
            return self.get(f"amt.{read}", lambda: getattr(self._amt_device(), read)())
        except Unreachable as exc:
            with self._lock:
                self._errors["amt.unreachable"] = exc
            raise

    def _amt_device(self):
        from .probes.amt import AmtDevice  # noqa: PLC0415 (protocol modules load when a check needs them)
        from .probes.wsman import DigestAuth, KerberosAuth, WsmanClient

        def connect():
            cred = self.env.credentials.get("amt")
            if cred is None:
                raise ProbeError("no AMT credential in the environment file (credentials.amt)")
            auth = KerberosAuth() if cred.kerberos else DigestAuth(cred.user, cred.password.resolve())
            port = self.env.expected["ports"]["amt_https"]
            client = WsmanClient(f"https://{self.target.name}:{port}/wsman", auth=auth,
                                 ca_bundle=self.env.pki.get("trusted_roots"), timeout=self.env.timeouts["read"])
            return AmtDevice(client)
        return self.get("amt.session", connect)

    # ------------------------------------------------------------------ DNS
    def forward(self, name: str) -> list[str]:
        """A records of ``name`` from the estate's DNS servers (IPv4: the product is IPv4-only); [] if none.

        NXDOMAIN and an empty answer are answers, for the check to judge; a server that does not answer is a
        :class:`ProbeError`.
        """
        return self.get(f"dns.A.{name.lower()}", lambda: _answered(lambda: _resolver(self.env).forward(name)))

    def reverse(self, address: str) -> list[str]:
        """PTR names of ``address``, lower case, without the trailing dot; [] if none."""
        return self.get(f"dns.PTR.{address}", lambda: [n.rstrip(".").lower() for n in _answered(
            lambda: _resolver(self.env).reverse(address))])

    def address(self) -> str:
        """The target's IPv4 address: from the environment file, else from the estate's DNS."""
        given = getattr(self.target, "address", None)
        if given:
            return given
        found = self.forward(self.target.name)
        if not found:
            raise ProbeError(f"{self.target.name} has no A record")
        return found[0]

    # ------------------------------------------------------------------ DHCP
    def dhcp_inform(self) -> Any:
        """A DHCPINFORM to this DHCP server, with option 81 for a probe name in the site's domain."""
        from .probes.dhcp import inform  # noqa: PLC0415

        def ask():
            server = self.address()
            source = getattr(self.target, "extra", {}).get("probe_from") or local_address_towards(server)
            return inform(server, client_address=source, fqdn=f"vpro-probe.{self.env.site.name}",
                          timeout=self.env.timeouts["connect"])
        return self.get("dhcp.inform", ask)

    # ------------------------------------------------------------------ files the environment names
    def provisioning_chain(self) -> list:
        """The provisioning certificate and its chain, as exported to ``pki.provisioning_chain``."""
        from .probes import x509 as x509_probe  # noqa: PLC0415

        def load():
            path = self.env.pki.get("provisioning_chain")
            if not path:
                raise ProbeError("the environment file names no pki.provisioning_chain")
            return x509_probe.load_chain(Path(path).read_bytes())
        return self.get("pki.provisioning_chain", load)


def _answered(lookup: Callable[[], list[str]]) -> list[str]:
    from .probes.dns import NoAnswer, NxDomain  # noqa: PLC0415

    try:
        return lookup()
    except (NxDomain, NoAnswer):
        return []


_RESOLVERS: dict[int, Any] = {}
_ROUTING_LOCK = threading.Lock()


def _resolver(env: Environment):
    from .probes.dns import Resolver  # noqa: PLC0415

    with _ROUTING_LOCK:
        if id(env) not in _RESOLVERS:
            _RESOLVERS[id(env)] = Resolver(env.dns["servers"], port=env.dns["port"], timeout=env.timeouts["connect"])
        return _RESOLVERS[id(env)]


def route_connections(env: Environment) -> None:
    """Resolve estate names through the estate's DNS for every connection of this process, if asked to."""
    if not env.dns.get("route_connections") or not env.dns["servers"]:
        return
    from .probes.dns import ConnectionRouting  # noqa: PLC0415

    domains = sorted({env.site.name, *env.site.client_domains})
    ConnectionRouting(_resolver(env), domains).install()


def local_address_towards(host: str, port: int = 67) -> str:
    """The address this machine uses to reach ``host`` (no packet is sent: a UDP socket is only connected)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return s.getsockname()[0]


class FactsCache:
    """One :class:`Facts` per target per process."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._by_target: dict[str, Facts] = {}
        self._lock = threading.Lock()
        self._routed = False

    def __call__(self, target: Target) -> Facts:
        with self._lock:
            if not self._routed:  # once per process, when the first check asks for facts
                route_connections(self.env)
                self._routed = True
            facts = self._by_target.get(target.key)
            if facts is None:
                facts = self._by_target[target.key] = Facts(target, self.env)
            return facts
