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

from .environment import Client, Environment, Server, Target
from .probes.errors import ProbeError, Unreachable


class Facts:
    def __init__(self, target: Target, env: Environment, estate: "Facts | None" = None) -> None:
        self.target, self.env = target, env
        #: facts about the estate as a whole (the directory, the site server's provider, its log), shared by
        #: every target's checks in this process: fetched once per run, not once per client.
        self.estate: Facts = estate or self
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
            port = int(getattr(self.target, "extra", {}).get("dhcp_port") or 67)
            return inform(server, client_address=source, port=port, fqdn=f"vpro-probe.{self.env.site.name}",
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


    # ------------------------------------------------------------------ servers of the estate
    def server(self, role: str) -> Server:
        """The (first) server of the environment with ``role``; a :class:`ProbeError` if none is listed."""
        found = self.env.servers_with(role)
        if not found:
            raise ProbeError(f"the environment file lists no server with the role {role!r}")
        return found[0]

    # ------------------------------------------------------------------ WMI over WinRM (read-only)
    def wmi(self, host: Server | Client, class_name: str, namespace: str = "root/cimv2",
            wql: str | None = None) -> list[dict[str, Any]]:
        """Instances of ``class_name`` on ``host`` (a server or an in-band client), through read-only WinRM.

        Shared by every check in this process (estate facts); an unanswering host costs one timeout.
        """
        key = f"wmi.{host.name}.{namespace}.{wql or class_name}"
        return self.estate._per_host(host.name, key, lambda: self._winrm(host).enumerate(class_name, namespace, wql))

    def site_wmi(self, class_name: str, wql: str | None = None) -> list[dict[str, Any]]:
        """``class_name`` from the SMS Provider (``root/sms/site_<code>``) on the site server."""
        from .probes.winrm import sms_namespace  # noqa: PLC0415

        return self.wmi(self.server("site_server"), class_name, sms_namespace(self.env.site.code), wql)

    def registry(self, host: Server | Client, key: str, value: str, kind: str = "string") -> str | int | None:
        """A registry value on ``host`` via ``StdRegProv`` (``key`` like ``HKLM\\SOFTWARE\\...``); None if absent."""
        hive, _, sub = key.partition("\\")
        return self.estate._per_host(host.name, f"reg.{host.name}.{key}.{value}.{kind}",
                                     lambda: self._winrm(host).registry_value(hive, sub, value, kind))

    def _winrm(self, host: Server | Client):
        from .probes.winrm import BasicAuth, WinRM, winrm_kerberos  # noqa: PLC0415

        def connect():
            cred = self.env.credentials.get("winrm")
            if cred is None:
                raise ProbeError("no WinRM credential in the environment file (credentials.winrm)")
            url = getattr(host, "winrm", None) or f"https://{host.name}:5986/wsman"
            auth = winrm_kerberos(host.name) if cred.kerberos else BasicAuth(cred.user, cred.password.resolve())
            return WinRM(url, auth=auth, ca_bundle=self.env.pki.get("trusted_roots"),
                         timeout=self.env.timeouts["read"])
        return self.estate.get(f"winrm.session.{host.name}", connect)

    def _per_host(self, host: str, key: str, fetch: Callable[[], Any]) -> Any:
        """``get(key, fetch)``, remembering the first :class:`Unreachable` of ``host`` for all its later reads."""
        with self._lock:
            gone = self._errors.get(f"unreachable.{host}")
        if gone is not None:
            raise gone
        try:
            return self.get(key, fetch)
        except Unreachable as exc:
            with self._lock:
                self._errors[f"unreachable.{host}"] = exc
            raise

    # ------------------------------------------------------------------ Active Directory (LDAP, read-only)
    def ldap(self):
        """One bound ldap3 connection to the estate's domain controllers (LDAPS verified against trusted_roots).

        Searches through it must hold :attr:`ldap_lock`: the connection is shared by the checks of a process.
        """
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def connect():
            cred = self.env.credentials.get("ldap")
            if cred is None:
                raise ProbeError("no LDAP credential in the environment file (credentials.ldap)")
            dcs = [s.name for s in self.env.servers_with("domain_controller")]
            return ldap_probe.connect(dcs, credential=cred, ca_file=self.env.pki.get("trusted_roots"),
                                      timeout=self.env.timeouts["read"])
        return self.estate.get("ldap.connection", connect)

    ldap_lock = threading.RLock()

    def ldap_search(self, base: str, ldap_filter: str, attributes: tuple[str, ...] | list[str],
                    scope: str = "subtree") -> list[dict[str, Any]]:
        """Entries (``{"dn", "attributes", "raw_attributes"}``), paged; shared by every check in this process."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def search():
            with self.ldap_lock:
                return list(ldap_probe.search_paged(self.ldap(), base, ldap_filter, list(attributes), scope=scope))
        return self.estate.get(f"ldap.search.{scope}.{base}.{ldap_filter}.{','.join(attributes)}", search)

    def security_descriptor(self, dn: str):
        """The parsed ``nTSecurityDescriptor`` (DACL) of ``dn``."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def read():
            with self.ldap_lock:
                return ldap_probe.read_security_descriptor(self.ldap(), dn)
        return self.estate.get(f"ldap.sd.{dn}", read)

    # ------------------------------------------------------------------ Configuration Manager logs over SMB
    def site_log_events(self) -> dict[str, list]:
        """The out of band service point's ``AMTOPMGR.LOG`` read once over SMB, as events per client key.

        The server with the ``oob_service_point`` role names ``log_share`` (default ``SMS_<code>``),
        ``log_path`` (default ``Logs/AMTOPMGR.LOG``) and optionally ``smb_host`` (where the share is served,
        default the server itself). Use :func:`pytest_vpro.probes.cmlog.client_events` to pick a client's.
        """
        from .probes import cmlog  # noqa: PLC0415

        server = self.server("oob_service_point")
        share = server.extra.get("log_share") or f"SMS_{self.env.site.code}"
        path = server.extra.get("log_path") or "Logs/AMTOPMGR.LOG"
        host = server.extra.get("smb_host") or server.name
        return self.estate._per_host(host, "log.amtopmgr", lambda: cmlog.events(
            self._read_log(host, share, path), self.env.log_patterns))

    def client_log_lines(self, path: str = "Windows/System32/CCM/Logs/OOBMGMT.LOG", share: str = "C$") -> list:
        """This in-band client's own Configuration Manager log (default ``OOBMGMT.LOG``), as parsed lines."""
        host = self.target.name
        return self._per_host(host, f"log.{share}.{path}", lambda: list(self._read_log(host, share, path)))

    def _read_log(self, host: str, share: str, path: str):
        from .probes import cmlog  # noqa: PLC0415
        from .probes.smb import open_file

        cred = self.env.credentials.get("smb")
        if cred is None:
            raise ProbeError("no SMB credential in the environment file (credentials.smb)")
        password = None if cred.kerberos else cred.password.resolve()
        with open_file(host, share, path, user=cred.user, password=password, timeout=self.env.timeouts["read"]) as f:
            yield from cmlog.LogReader(f)

    # ------------------------------------------------------------------ TLS
    def peer_certificate(self, host: str, port: int):
        """The certificate ``host:port`` presents (read, not trusted: the checks judge it), or ProbeError."""
        from .probes import net  # noqa: PLC0415

        return self._per_host(host, f"tls.{host}:{port}", lambda: net.peer_certificate(
            host, port, timeout=self.env.timeouts["connect"]))


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
        self.estate = Facts(env.site, env)

    def __call__(self, target: Target) -> Facts:
        with self._lock:
            if not self._routed:  # once per process, when the first check asks for facts
                route_connections(self.env)
                self._routed = True
            facts = self._by_target.get(target.key)
            if facts is None:
                facts = self.estate if target.key == self.env.site.key else Facts(target, self.env, self.estate)
                self._by_target[target.key] = facts
            return facts
