"""A target's facts, fetched once per run and shared by its checks.

Checks read facts through ``facts.get(name, fetch)``: the first call runs
``fetch`` and remembers its value, or its :class:`ProbeError` (so a host that
does not answer costs one timeout, not one per check). Accessors for each
protocol (AMT over WS-MAN, DNS, LDAP, logs) are added on top of this by the
stage issues; they all funnel through :meth:`Facts.get`, which is also where a
fact snapshot records and replays them.
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable

from .environment import Client, Environment, Server, Target
from .probes.errors import ProbeError, Unreachable


#: Where 64-bit Windows keeps a 32-bit program's HKLM\SOFTWARE (WOW64 registry redirection).
WOW64_SOFTWARE = r"SOFTWARE\Wow6432Node"
#: The AmtDevice methods facts.amt() may call: reads only.
AMT_READS = frozenset({"provisioning", "version", "general_settings", "power_state", "power_schemes",
                       "power_policy", "redirection", "certificate_hashes", "kerberos_settings", "acl_entries",
                       "clock", "ethernet_settings", "wired_8021x_protocols", "wifi_profiles"})


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
        self._derived: dict[str, tuple[Any, Any]] = {}

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
                value = self._fetch(name, fetch)
            except ProbeError as exc:
                with self._lock:
                    self._errors[name] = exc
                raise
            with self._lock:
                self._values[name] = value
            return value

    def derived(self, name: str, source: Any, build: Callable[[Any], Any]) -> Any:
        """``build(source)``, worked out once per value of ``source`` in this process, not once per check.

        For an index over an estate-wide fact (every object of the AMT container, every ``SMS_R_System``
        resource, every AMTOPMGR.LOG event): each client's check that scans the whole fact for its own entry
        makes the run quadratic in the fleet. ``name`` keeps one index; a new ``source`` (a fresh read) builds it
        again. Not a fact: never recorded, so a snapshot replays the same way.
        """
        estate = self.estate
        with estate._lock:
            hit = estate._derived.get(name)
        if hit is not None and hit[0] is source:
            return hit[1]
        value = build(source)
        with estate._lock:
            estate._derived[name] = (source, value)
        return value

    def release_connections(self) -> None:
        """Close this client's own sessions (WS-MAN to its AMT, as the tool and as the console user; WinRM to its
        OS) and forget them: a later read opens them again. Facts already read stay. The engine calls it for a
        client no check is using, so that a fleet is not held open: AMT firmware serves few connections."""
        if self.target.kind != "client":
            return  # the site's and the servers' sessions are shared by every check
        for owner, name in ((self, "amt.session"), (self, "console_amt.session"),
                            (self.estate, f"winrm.session.{self.target.name}")):
            with owner._lock:
                session = owner._values.pop(name, None)
            if session is not None and hasattr(session, "close"):
                session.close()

    _amt_negotiated = ""  # what the WS-MAN TLS session to this client used (amt_tls)

    #: set by FactsCache: a snapshot.Recorder (--facts-out) and a snapshot.Replay (--facts-in)
    recorder: Any = None
    replay: Any = None

    def _fetch(self, name: str, fetch: Callable[[], Any]) -> Any:
        """``fetch()``, or the snapshot's value when replaying (no network); recorded for --facts-out."""
        if self.replay is not None:
            found, value = self.replay.lookup(self.target.key, name)  # raises a recorded ProbeError
            if not found:
                raise ProbeError(f"{name} of {self.target.name} was not observed in the snapshot "
                                 f"{self.replay.path.name}")
            return value
        try:
            value = fetch()
        except ProbeError as exc:
            if self.recorder is not None:
                self.recorder.record(self.target.key, name, error=exc)
            raise
        if self.recorder is not None:
            self.recorder.record(self.target.key, name, value=value)
        return value

    # ------------------------------------------------------------------ AMT over WS-MAN
    def amt(self, read: str) -> Any:
        """``AmtDevice.<read>()`` of this client (``provisioning``, ``power_policy``, ``redirection``, ...).

        One kept-alive WS-MAN session per client; a device that does not answer costs one timeout for all
        its reads, not one per read.
        """
        if read not in AMT_READS:  # AmtDevice also has writes; facts only read (writes: probes/actions.py)
            raise ValueError(f"facts.amt reads only {', '.join(sorted(AMT_READS))}; not {read!r}")
        return self._per_host(self._amt_channel, f"amt.{read}", lambda: self._noting_tls(self._amt_device(), read))

    def _noting_tls(self, device, read: str) -> Any:
        """``device.<read>()``, noting what its TLS session negotiated (:meth:`amt_tls`)."""
        try:
            return getattr(device, read)()
        finally:
            negotiated = getattr(getattr(device, "client", None), "negotiated", None)
            if negotiated is not None:
                self._amt_negotiated = str(negotiated)

    @property
    def _amt_channel(self) -> str:
        """AMT's own network stack (firmware, 16992-16995): one that does not answer says nothing of the PC's OS."""
        return f"{self.target.name}:amt"

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
                                 ca_bundle=self.env.pki.get("trusted_roots"), timeout=self.env.timeouts["read"],
                                 legacy_ciphers=self._legacy_ciphers)
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

    def sms_registry(self, host: Server | Client, subkey: str, value: str,
                     kind: str = "string") -> tuple[str | int | None, str]:
        """A value of Configuration Manager's own key ``SOFTWARE\\Microsoft\\SMS\\<subkey>`` and the key it was read
        from. Configuration Manager 2007 is a 32-bit program, so on 64-bit Windows its keys are in the 32-bit view,
        ``HKLM\\SOFTWARE\\Wow6432Node\\Microsoft\\SMS\\...``; a 64-bit reader (WinRM's StdRegProv) sees that view
        there. That path is read first, then the native one (32-bit Windows has no Wow6432Node): docs/protocols.md,
        "Registry views". (None, the native key) if neither holds it."""
        keys = [rf"HKLM\{view}\Microsoft\SMS\{subkey}" for view in (WOW64_SOFTWARE, "SOFTWARE")]
        for key in keys:
            found = self.registry(host, key, value, kind)
            if found is not None:
                return found, key
        return None, keys[-1]

    def registry_subkeys(self, host: Server | Client, key: str) -> list[str] | None:
        """Names of the subkeys of ``key`` on ``host`` (``StdRegProv.EnumKey``); None if the key is absent."""
        hive, _, sub = key.partition("\\")
        return self.estate._per_host(host.name, f"regkeys.{host.name}.{key}",
                                     lambda: self._winrm(host).registry_subkeys(hive, sub))

    def _winrm(self, host: Server | Client):
        from .probes import kerberos  # noqa: PLC0415
        from .probes.winrm import WinRM, select_auth

        def tgt():  # credentials.winrm's user, as Windows' WinRM client authenticates: Kerberos (estate-wide)
            def acquire():
                self.use_krb5_config()
                cred = self.env.credentials["winrm"]
                return kerberos.ConsoleCredentials.with_password(
                    self.principal(cred.user), cred.password.resolve(),
                    timeout=self.env.timeouts["connect"] + self.env.timeouts["read"])
            return self.estate.get("kerberos.winrm", acquire)

        def connect():
            cred = self.env.credentials.get("winrm")
            url = getattr(host, "winrm", None) or f"https://{host.name}:5986/wsman"
            if cred is not None and cred.kerberos:
                self.use_krb5_config()
            auth = select_auth(host.name, url, cred, realm=self.env.site.realm, address=getattr(host, "address", None),
                               kerberos_credentials=tgt)
            return WinRM(url, auth=auth, ca_bundle=self.env.pki.get("trusted_roots"),
                         timeout=self.env.timeouts["read"])
        return self.estate.get(f"winrm.session.{host.name}", connect)

    def _per_host(self, host: str, key: str, fetch: Callable[[], Any]) -> Any:
        """``get(key, fetch)``, remembering the first :class:`Unreachable` of ``host`` (a host name, or a channel
        such as ``<fqdn>:amt``) for all its later reads."""
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
                                      timeout=self.env.timeouts["read"], connect_timeout=self.env.timeouts["connect"])
        return self.estate.get("ldap.connection", connect)

    ldap_lock = threading.RLock()

    def ldap_search(self, base: str, ldap_filter: str, attributes: tuple[str, ...] | list[str],
                    scope: str = "subtree", *, fresh: bool = False) -> list[dict[str, Any]]:
        """Entries (``{"dn", "attributes", "raw_attributes"}``), paged; shared by every check in this process.
        ``fresh``: search again now (after an action of this run changed the directory)."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def search():
            with self.ldap_lock:
                return list(ldap_probe.search_paged(self.ldap(), base, ldap_filter, list(attributes), scope=scope))
        if fresh:
            return search()
        return self.estate.get(f"ldap.search.{scope}.{base}.{ldap_filter}.{','.join(attributes)}", search)

    def security_descriptor(self, dn: str, *, gc: bool = False):
        """The parsed ``nTSecurityDescriptor`` (DACL) of ``dn``; with ``gc``, read from a global catalog (any
        domain of the forest)."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def read():
            with self.ldap_lock:
                return ldap_probe.read_security_descriptor(self._gc() if gc else self.ldap(), dn)
        return self.estate.get(f"ldap.sd.{'gc.' if gc else ''}{dn}", read)

    def _gc(self):
        """One bound connection to a global catalog (LDAPS 3269) of the estate's domain controllers."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def connect():
            cred = self.env.credentials.get("ldap")
            if cred is None:
                raise ProbeError("no LDAP credential in the environment file (credentials.ldap)")
            return ldap_probe.connect([f"{s.name}:3269" for s in self.env.servers_with("domain_controller")],
                                      credential=cred, ca_file=self.env.pki.get("trusted_roots"),
                                      timeout=self.env.timeouts["read"], connect_timeout=self.env.timeouts["connect"])
        return self.estate.get("ldap.gc.connection", connect)

    def root_dse(self) -> dict[str, Any]:
        """The directory's root DSE: naming contexts (``defaultNamingContext``, ``configurationNamingContext``,
        ``rootDomainNamingContext``), each a plain string."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def read():
            with self.ldap_lock:
                dse = ldap_probe.root_dse(self.ldap())
            return {k: (v[0] if isinstance(v, list) and v else v) for k, v in dse.items()}
        return self.estate.get("ldap.rootdse", read)

    def forest_computers(self) -> dict[str, list[str]]:
        """``{dNSHostName (lower case): [DN, ...]}`` of every computer object in the forest, from a global catalog
        (LDAPS 3269 on the estate's domain controllers): one paged search per run, whatever the fleet's size."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def search():
            found: dict[str, list[str]] = {}
            with self.ldap_lock:
                for entry in ldap_probe.search_paged(self._gc(), "", "(&(objectClass=computer)(dNSHostName=*))",
                                                     ["dNSHostName"]):
                    name = entry["attributes"].get("dNSHostName")
                    name = name[0] if isinstance(name, list) and name else name
                    if name:
                        found.setdefault(str(name).lower().rstrip("."), []).append(entry["dn"])
            return found
        return self.estate.get("ldap.gc.computers", search)

    def account_sids(self, host: Server) -> dict[str, Any]:
        """The computer account of ``host`` (by dNSHostName, in the directory's default domain): ``dn``, ``sid``
        and ``sids``, its own SID, every group it is in (tokenGroups) and the well-known SIDs of a network logon:
        what an access check on its behalf matches ACEs with."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def read():
            base = self.root_dse().get("defaultNamingContext") or ""
            found = self.ldap_search(base, f"(&(objectClass=computer)(dNSHostName={host.name}))", ("objectSid",))
            if not found:
                raise ProbeError(f"no computer account with dNSHostName {host.name} under {base}")
            dn = found[0]["dn"]
            sid = ldap_probe.format_sid(found[0]["raw_attributes"]["objectSid"][0])
            with self.ldap_lock:
                groups = ldap_probe.token_groups(self.ldap(), dn)
            # Every network logon's token also carries Everyone and Authenticated Users (MS-DTYP 2.4.2.4).
            return {"dn": dn, "sid": sid, "sids": [sid, *groups, "S-1-1-0", "S-1-5-11"]}
        return self.estate.get(f"ldap.account.{host.name}", read)

    def enrollment_services(self) -> list[dict[str, Any]]:
        """The forest's enterprise CAs: ``pKIEnrollmentService`` objects under CN=Enrollment Services (``dn``,
        ``name``, ``host`` (dNSHostName), ``certificate`` (cACertificate, DER bytes), ``templates``)."""
        from .probes.ldap import NoSuchObject  # noqa: PLC0415

        config = self.root_dse().get("configurationNamingContext") or ""
        try:
            entries = self.ldap_search(f"CN=Enrollment Services,CN=Public Key Services,CN=Services,{config}",
                                       "(objectClass=pKIEnrollmentService)",
                                       ("cn", "dNSHostName", "cACertificate", "certificateTemplates"), scope="one")
        except NoSuchObject:  # no enterprise CA was ever installed in this forest
            entries = []

        def first(entry: dict[str, Any], key: str) -> Any:
            value = entry["raw_attributes"].get(key) or [b""]
            return value[0]
        return [{"dn": e["dn"], "name": first(e, "cn").decode(), "host": first(e, "dNSHostName").decode().lower(),
                 "certificate": first(e, "cACertificate"),
                 "templates": [t.decode() for t in e["raw_attributes"].get("certificateTemplates", [])]}
                for e in entries]

    # ------------------------------------------------------------------ TCP ports and PKI downloads
    def ports(self, host: str, ports: list[int] | tuple[int, ...]) -> list:
        """:class:`~pytest_vpro.probes.net.PortState` of each ``host:port`` (open, refused, filtered or
        unreachable within the connect timeout), probed concurrently and once per run for every check."""
        from .probes import net  # noqa: PLC0415

        timeout = self.env.timeouts["connect"]
        with self.estate._lock:
            todo = [p for p in ports if f"tcp.{host}:{p}" not in self.estate._values]
        if len(todo) > 1:
            for state in net.probe_many([(host, p) for p in todo], timeout):
                self.estate.get(f"tcp.{host}:{state.port}", lambda state=state: state)
        return [self.estate.get(f"tcp.{host}:{p}", lambda p=p: net.probe_tcp(host, p, timeout)) for p in ports]

    def download(self, url: str) -> bytes:
        """A CDP or AIA URL's content, once per run: HTTP GET within connect + read timeout, no redirect followed,
        https verified against the public roots and the estate's ``pki.trusted_roots``; or for an ``ldap:`` URL
        (AD CS writes ``ldap:///CN=...,CN=CDP,CN=Public Key Services,...``) the attribute read from the estate's
        directory with ``credentials.ldap`` (:meth:`ldap_search`, bounded by its timeouts). Raises
        :class:`~pytest_vpro.probes.x509.CrlProblem` (unreachable, HTTP status, redirected, not found,
        unsupported scheme)."""
        from .probes import httpclient, x509 as x509_probe  # noqa: PLC0415

        kind = "ldap" if url.lower().startswith("ldap:") else "http"
        return self.estate.get(f"{kind}.{url}", lambda: x509_probe.download(
            url, timeout=self.env.timeouts["read"], connect_timeout=self.env.timeouts["connect"],
            verify=httpclient.public_and(self.env.pki.get("trusted_roots")), ldap_read=self._read_ldap_location))

    def _read_ldap_location(self, location) -> list[bytes]:
        """The values of an LDAP URL's attribute (:class:`~pytest_vpro.probes.x509.LdapLocation`): from the
        estate's directory for ``ldap:///``, from the host the URL names otherwise (the same credential)."""
        attributes = (location.attribute,)
        if location.host:
            entries = self.ldap_search_on(location.host, location.dn, location.filter, attributes)
        else:
            entries = self.ldap_search(location.dn, location.filter, attributes, scope=location.scope)
        wanted = location.attribute.lower()
        return [v for e in entries for k, vs in e["raw_attributes"].items() if k.split(";")[0].lower() == wanted
                for v in vs]

    def dns_records(self, name: str, rtype: str, servers: tuple[str, ...] | list[str] | None = None) -> list[str]:
        """``rtype`` records of ``name`` ([] on NXDOMAIN or no answer) from the estate's DNS servers, or from
        ``servers`` (e.g. the ones a site server's network adapter uses); a server that does not answer is a
        :class:`ProbeError`."""
        from .probes.dns import Resolver  # noqa: PLC0415

        if servers is None:
            lookup = lambda: list(_resolver(self.env).lookup(name, rtype))  # noqa: E731
        else:
            resolver = Resolver(list(servers), port=self.env.dns["port"], timeout=self.env.timeouts["connect"])
            lookup = lambda: list(resolver.lookup(name, rtype))  # noqa: E731
        where = ",".join(servers) if servers is not None else "estate"
        return self.estate.get(f"dns.{where}.{rtype}.{name.lower()}", lambda: _answered(lookup))

    def certificate_store(self, host: Server, store: str) -> dict[str, Any]:
        """The computer's logical certificate store ``store`` (``MY`` Personal, ``CA`` Intermediate, ``ROOT``
        Trusted Root, ``TRUST``, ``NTAUTH``) of ``host`` as Windows opens it: every physical store behind it
        (:func:`~pytest_vpro.probes.x509.physical_stores`: the computer's own, Group Policy's, the Enterprise
        one autoenrollment downloads from the directory), read from its registry over WinRM:
        ``{thumbprint: certificate}``; a ``Blob`` that does not parse is ``{thumbprint: ValueError}``.
        :meth:`certificate_store_origins` says which physical store holds each."""
        out: dict[str, Any] = {}
        for _store, certificates in self.physical_certificate_stores(host, store):
            for thumbprint, cert in certificates.items():
                if thumbprint not in out or isinstance(out[thumbprint], ValueError):
                    out[thumbprint] = cert
        return out

    def certificate_store_origins(self, host: Server, store: str) -> dict[str, list[str]]:
        """``{thumbprint: [title of each physical store holding it, ...]}`` of the logical store ``store``, e.g.
        ``["Trusted Root Certification Authorities (Enterprise)"]``."""
        out: dict[str, list[str]] = {}
        for physical, certificates in self.physical_certificate_stores(host, store):
            for thumbprint in certificates:
                out.setdefault(thumbprint, []).append(physical.title)
        return out

    def physical_certificate_stores(self, host: Server, store: str) -> list[tuple[Any, dict[str, Any]]]:
        """``[(PhysicalStore, {thumbprint: certificate or ValueError}), ...]`` behind the logical store ``store``
        of ``host``, each read once per run (an absent key is an empty store)."""
        from .probes import x509 as x509_probe  # noqa: PLC0415

        def read(key: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for thumbprint in self.registry_subkeys(host, key) or []:
                blob = self.registry(host, rf"{key}\{thumbprint}", "Blob", "binary")
                try:
                    out[thumbprint.upper()] = x509_probe.parse_store_blob(blob or b"")
                except ValueError as exc:
                    out[thumbprint.upper()] = exc
            return out
        return [(physical, self.estate.get(f"certstore.{host.name}.{physical.key.lower()}",
                                           lambda key=physical.key: read(key)))
                for physical in x509_probe.physical_stores(store)]

    # ------------------------------------------------------------------ Configuration Manager logs over SMB
    def site_log_events(self, fresh: bool = False) -> dict[str, list]:
        """The out of band service point's ``AMTOPMGR.LOG`` and its rolled-over history (``AMTOPMGR.lo_``, read
        first, if there is one) read once over SMB, as events per client key.

        The server with the ``oob_service_point`` role names ``log_share`` (default ``SMS_<code>``),
        ``log_path`` (default ``Logs/AMTOPMGR.LOG``) and optionally ``smb_host`` (where the share is served,
        default the server itself). Use :func:`pytest_vpro.probes.cmlog.client_events` to pick a client's.
        ``fresh``: read it again now (after an action of this run wrote to it), not the run's first read.
        """
        from .probes import cmlog  # noqa: PLC0415

        server = self.server("oob_service_point")
        share = server.extra.get("log_share") or f"SMS_{self.env.site.code}"
        path = server.extra.get("log_path") or "Logs/AMTOPMGR.LOG"
        host = server.extra.get("smb_host") or server.name
        read = lambda: cmlog.events(self._read_log_and_history(host, share, path),  # noqa: E731
                                    self.env.log_patterns)
        if fresh:
            with _FRESH_LOG_LOCK:  # one SMB read at a time: smbclient's pooled session runs out of credits
                return read()
        return self.estate._per_host(host, "log.amtopmgr", read)

    def client_log_lines(self, path: str = "Windows/System32/CCM/Logs/OOBMGMT.LOG", share: str = "C$") -> list:
        """This in-band client's own Configuration Manager log (default ``OOBMGMT.LOG``) after its rolled-over
        history (``OOBMGMT.lo_``, if any), as parsed lines."""
        host = self.target.name
        return self._per_host(host, f"log.{share}.{path}",
                              lambda: list(self._read_log_and_history(host, share, path)))

    def _read_log_and_history(self, host: str, share: str, path: str):
        """The lines of ``path``'s history file (``.lo_``), if it has one, then of ``path`` itself."""
        from .probes import cmlog  # noqa: PLC0415
        from .probes.smb import FileMissing

        try:
            yield from self._read_log(host, share, cmlog.history_path(path))
        except FileMissing:
            pass  # the log has not rolled over yet
        yield from self._read_log(host, share, path)

    def _read_log(self, host: str, share: str, path: str):
        from .probes import cmlog  # noqa: PLC0415
        from .probes.smb import open_file

        cred = self.env.credentials.get("smb")
        if cred is None:
            raise ProbeError("no SMB credential in the environment file (credentials.smb)")
        password = None if cred.kerberos else cred.password.resolve()
        with open_file(host, share, path, user=cred.user, password=password, timeout=self.env.timeouts["read"],
                       connect_timeout=self.env.timeouts["connect"]) as f:
            yield from cmlog.LogReader(f)

    # ------------------------------------------------------------------ TLS
    def peer_certificate(self, host: str, port: int):
        """The certificate ``host:port`` presents (read, not trusted: the checks judge it), or ProbeError."""
        return self.peer_tls(host, port).certificate

    def peer_tls(self, host: str, port: int):
        """:class:`~pytest_vpro.probes.net.TlsPeer` of ``host:port``: the certificate it presents and what the
        handshake used (legacy settings toward an AMT port that refused the modern ones)."""
        from .probes import net  # noqa: PLC0415

        return self._per_host(host, f"tls.peer.{host}:{port}", lambda: net.peer_tls(
            host, port, timeout=self.env.timeouts["connect"], legacy_ciphers=self._legacy_ciphers))

    def amt_tls(self) -> str:
        """What this client's WS-MAN session over TLS used ("TLS 1.0, AES128-SHA (legacy fallback)"), once it
        has answered; "" before, or when the session is not over TLS."""
        return self._amt_negotiated

    @property
    def _legacy_ciphers(self) -> str:
        from .probes import tls  # noqa: PLC0415

        return tls.ciphers_of(self.env)

    # ------------------------------------------------------------------ provisioning requests (stages 2 and 3)
    hello_capture: Any = None  # the run's passive hello listener (--hello-listen), set on the estate by FactsCache

    def hello_listener(self) -> Any:
        """The run's :class:`~pytest_vpro.probes.hello_listener.HelloCapture` (where it listens, until when), or
        None without ``--hello-listen``."""
        return self.estate.hello_capture

    def hellos(self) -> list | None:
        """Hellos the run's passive listener received from this client (by UUID, else source address), oldest
        first, waiting for one until the listener's deadline (:mod:`pytest_vpro.probes.hello_listener`); None
        when the run listens for no hellos (``--hello-listen`` not given): the checks then read AMTOPMGR.LOG."""
        capture = self.hello_listener()
        if capture is None:
            return None
        t = self.target

        def heard():
            address = getattr(t, "address", None)
            if not address:
                try:
                    address = self.address()
                except ProbeError:
                    address = None
            return capture.seen(getattr(t, "uuid", None), address)
        return self.get("hellos", heard)

    def hello_noise(self) -> list:
        """What this client's address sent the hello listener that is not a hello (evidence, never a hello); []
        without a listener or an address."""
        capture = self.hello_listener()
        if capture is None:
            return []
        address = getattr(self.target, "address", None)
        if not address:
            try:
                address = self.address()
            except ProbeError:
                return []
        return capture.malformed(address)

    def client_events(self) -> list:
        """This client's AMTOPMGR.LOG events (:func:`pytest_vpro.probes.cmlog.client_events` by FQDN, UUID and
        address), in time order."""
        from .probes import cmlog  # noqa: PLC0415

        t = self.target
        events = self.site_log_events()
        return cmlog.client_events(events, fqdn=t.name, uuid=getattr(t, "uuid", None),
                                   ip=getattr(t, "address", None),
                                   index=self.derived("log.amtopmgr.by_name", events, cmlog.index_by_name))

    def provisioning_status(self) -> Any:
        """This client's provisioning as the site holds it (``SMS_R_System.AMTStatus``; for an in-band client the
        hardware inventory's ``SMS_G_System_AMT_AGENT``), with its AMTOPMGR.LOG events, current and rotated, and
        its ME's own state read on demand: a :class:`pytest_vpro.sccm.ProvisioningStatus`."""
        from . import sccm  # noqa: PLC0415
        from .probes import cmlog

        resource = self.sms_resource()
        inventory = None
        if resource is not None and getattr(self.target, "provisioning", "") == "in_band":
            try:  # an inventory class the site does not collect is no finding here: the other sources remain
                rows = self.site_wmi(sccm.INVENTORY_CLASS)
            except ProbeError:
                rows = []
            rid = str(resource.get("ResourceId"))
            inventory = next((r for r in rows if str(r.get("ResourceID")) == rid), None)
        return sccm.ProvisioningStatus(
            resource=resource, inventory=inventory, events=self.client_events(),
            decisive=lambda event: cmlog.decisive(event, self.env.log_patterns),
            read_me=lambda: self.amt("provisioning"))

    def sms_resource(self) -> dict[str, Any] | None:
        """This client's ``SMS_R_System`` resource at the site (by FQDN in ResourceNames, else by NetBIOS name),
        from one read of the whole class shared by every client's checks; None if the site has none."""
        t = self.target
        by_fqdn, by_name = self.derived("sms_r_system.index", self.site_wmi("SMS_R_System"), _index_resources)
        found = by_fqdn.get(t.name.lower()) or by_name.get(t.name.split(".", 1)[0].upper()[:15])
        return found[0] if found else None

    def trusted_roots(self) -> list:
        """The certificates of the environment's ``pki.trusted_roots`` file (the estate's trust anchors)."""
        from .probes import x509 as x509_probe  # noqa: PLC0415

        def load():
            path = self.env.pki.get("trusted_roots")
            if not path:
                raise ProbeError("the environment file names no pki.trusted_roots")
            return x509_probe.load_chain(Path(path).read_bytes())
        return self.estate.get("pki.trusted_roots", load)

    def site_dhcp_inform(self) -> Any:
        """The DHCPINFORM answer of the estate's DHCP server (role ``dhcp``), shared by every target's checks
        (e.g. option 15, the domain AMT takes as its own)."""
        server = self.server("dhcp")
        return self.estate.get(f"dhcp.inform.{server.name}",
                               lambda: Facts(server, self.env, self.estate).dhcp_inform())

    # ------------------------------------------------------------------ the console user: Kerberos, AMT, WebUI
    def console_credentials(self):
        """The console user's Kerberos TGT (``credentials.console``) in a private ticket cache; estate-wide.

        A password reference goes to the KDC through GSSAPI (never a command line); ``kerberos`` uses the
        caller's own cache. krb5.conf: the system's, or the lab's (its state file names it).
        """
        from .probes import kerberos  # noqa: PLC0415

        def acquire():
            self.use_krb5_config()
            cred = self.env.credentials.get("console")
            if cred is None:
                raise ProbeError("no console credential in the environment file (credentials.console)")
            kdc = self.env.timeouts["connect"] + self.env.timeouts["read"]  # one KDC exchange, as any other
            if cred.kerberos:
                return kerberos.ConsoleCredentials.from_default_cache(timeout=kdc)
            return kerberos.ConsoleCredentials.with_password(self.principal(cred.user), cred.password.resolve(),
                                                             timeout=kdc)
        return self.estate.get("kerberos.console", acquire)

    def use_krb5_config(self) -> None:
        """Point Kerberos at the estate's krb5.conf when the environment comes from the lab (its state file
        names it); a real estate uses the machine's."""
        from .probes import kerberos  # noqa: PLC0415

        kerberos.use_config(self._lab_info().get("dc", {}).get("krb5_conf"))

    def principal(self, user: str) -> str:
        """``DOMAIN\\user`` or ``user`` -> ``user@REALM``; a UPN stays as it is."""
        if "@" in user:
            return user
        return f"{user.rsplit(chr(92), 1)[-1]}@{self.env.site.realm}"  # chr(92): a backslash

    def amt_spn(self, port: int | None = None) -> str:
        """This client's AMT service principal: ``HTTP/<fqdn>:<port>@<REALM>`` (the port is part of it)."""
        return f"HTTP/{self.target.name}:{port or self.env.expected['ports']['amt_https']}@{self.env.site.realm}"

    def console_ticket(self, port: int | None = None) -> int:
        """Bytes of the console user's Kerberos AP-REQ for :meth:`amt_spn` (a service ticket was issued)."""
        return self.get(f"kerberos.ticket.{port}", lambda: len(self.console_credentials().token(self.amt_spn(port))[1]))

    def console_amt(self, read: str) -> Any:
        """``AmtDevice.<read>()`` over TLS 16993 as the console user (Kerberos), as the OOB console connects."""
        from .probes.amt import AmtDevice  # noqa: PLC0415
        from .probes.kerberos import NegotiateAuth
        from .probes.wsman import WsmanClient

        if read not in AMT_READS:
            raise ValueError(f"facts.console_amt reads only {', '.join(sorted(AMT_READS))}; not {read!r}")

        def connect():
            port = self.env.expected["ports"]["amt_https"]
            return AmtDevice(WsmanClient(f"https://{self.target.name}:{port}/wsman",
                                         auth=NegotiateAuth(self.console_credentials(), self.env.site.realm),
                                         ca_bundle=self.env.pki.get("trusted_roots"),
                                         timeout=self.env.timeouts["read"], legacy_ciphers=self._legacy_ciphers))
        return self._per_host(self._amt_channel, f"console_amt.{read}",
                              lambda: self._noting_tls(self.get("console_amt.session", connect), read))

    def amt_login(self, user: str, password: str) -> bool:
        """One Digest Get of AMT_GeneralSettings on 16993 as ``user``: True if accepted, False if refused (401).
        Read-only; a device that does not answer is a :class:`ProbeError`."""
        from .probes.amt import AmtDevice  # noqa: PLC0415
        from .probes.wsman import AuthFailed, DigestAuth, WsmanClient

        def attempt():
            port = self.env.expected["ports"]["amt_https"]
            client = WsmanClient(f"https://{self.target.name}:{port}/wsman", auth=DigestAuth(user, password),
                                 ca_bundle=self.env.pki.get("trusted_roots"), timeout=self.env.timeouts["read"],
                                 legacy_ciphers=self._legacy_ciphers)
            try:
                AmtDevice(client).general_settings()
                return True
            except AuthFailed:
                return False
            finally:
                client.close()
        return self._per_host(self.target.name, f"amt.login.{user}", attempt)

    def webui(self, page: str = "/", *, login: bool = False):
        """GET ``https://<fqdn>:16993<page>`` (:mod:`pytest_vpro.probes.webui`); with ``login``, as the console
        user with Kerberos and mutual authentication, as Internet Explorer logs on with Windows authentication."""
        from .probes import webui as webui_probe  # noqa: PLC0415
        from .probes.kerberos import NegotiateAuth

        port = self.env.expected["ports"]["amt_https"]
        url = f"https://{self.target.name}:{port}{page}"

        def fetch():
            auth = NegotiateAuth(self.console_credentials(), self.env.site.realm, mutual=True).for_url(url) \
                if login else None
            return webui_probe.get(url, ca_bundle=self.env.pki.get("trusted_roots"),
                                   timeout=self.env.timeouts["read"], auth=auth,
                                   connect_timeout=self.env.timeouts["connect"], legacy_ciphers=self._legacy_ciphers)
        return self._per_host(self.target.name, f"webui.{page}.{login}", fetch)

    def console_user(self) -> dict[str, Any]:
        """The console user in AD: ``dn``, ``sid``, ``groups`` (tokenGroups SIDs), ``by_kind`` (TokenSz counts)
        and ``names`` (SID -> account name). The user is ``console.user`` (else ``credentials.console``)."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def read():
            cred = self.env.credentials.get("console")
            user = self.env.console.get("user") or (cred.user if cred else None)
            if not user:
                raise ProbeError("the environment file names no console user (console.user)")
            account = user.split("@", 1)[0].rsplit("\\", 1)[-1]
            base = ",".join(f"DC={p}" for p in self.env.site.name.split("."))
            found = self.ldap_search(base, f"(&(objectCategory=person)(sAMAccountName={account}))",
                                     ("objectSid",))
            if not found:
                raise ProbeError(f"no user {account!r} under {base}")
            dn = found[0]["dn"]
            with self.ldap_lock:
                conn = self.ldap()
                groups = ldap_probe.token_groups(conn, dn)
                by_kind = ldap_probe.token_groups_by_kind(conn, dn)
                names = ldap_probe.resolve_sids(conn, groups)
            sid = ldap_probe.format_sid(found[0]["raw_attributes"]["objectSid"][0])
            return {"dn": dn, "account": account, "sid": sid, "groups": groups, "by_kind": by_kind, "names": names}
        return self.estate.get("ldap.console_user", read)

    # ------------------------------------------------------------------ domain controllers (DNS SRV, LDAP)
    def domain_controllers(self) -> list[str]:
        """Host names of ``_ldap._tcp.dc._msdcs.<forest>`` SRV records: every DC the domain advertises."""
        def lookup():
            from .probes.dns import NoAnswer, NxDomain  # noqa: PLC0415

            try:
                return sorted({r.target.lower() for r in _resolver(self.env).srv(
                    f"_ldap._tcp.dc._msdcs.{self.env.site.forest}")})
            except (NxDomain, NoAnswer):
                return []
        return self.estate.get("dns.dcs", lookup)

    def ldap_search_on(self, dc: str, base: str, ldap_filter: str, attributes: tuple[str, ...]) -> list[dict]:
        """A search on one domain controller (its own connection): what that DC holds, replicated or not."""
        from .probes import ldap as ldap_probe  # noqa: PLC0415

        def search():
            cred = self.env.credentials.get("ldap")
            if cred is None:
                raise ProbeError("no LDAP credential in the environment file (credentials.ldap)")
            conn = ldap_probe.connect([dc], credential=cred, ca_file=self.env.pki.get("trusted_roots"),
                                      timeout=self.env.timeouts["read"], connect_timeout=self.env.timeouts["connect"])
            try:
                return list(ldap_probe.search_paged(conn, base, ldap_filter, list(attributes)))
            finally:
                conn.unbind()
        return self.estate._per_host(dc, f"ldap.on.{dc}.{base}.{ldap_filter}.{','.join(attributes)}", search)

    # ------------------------------------------------------------------ what this run changed (disruptive checks)
    def changed(self) -> dict[str, Any]:
        """What disruptive checks of this run did to this target (``probes/actions.py`` records it; shared by
        the run's xdist workers), e.g. ``{"unprovisioned": {"serial": ..., "return": 0}}``."""
        return run_record(self.target.name)

    def _lab_info(self) -> dict[str, Any]:
        """The lab's state file (``lab: {state_file: lab.json}`` in an environment the lab wrote), else {}."""
        import json  # noqa: PLC0415

        name = (self.env.lab or {}).get("state_file")
        if not name:
            return {}
        try:
            return json.loads(self.env.path(name).read_text())
        except (OSError, ValueError):
            return {}


def _index_resources(resources: list[dict[str, Any]]) -> tuple[dict[str, list], dict[str, list]]:
    """``SMS_R_System`` resources by each lower-case FQDN of their ResourceNames, and by upper-case Name; in
    the provider's order."""
    by_fqdn: dict[str, list] = {}
    by_name: dict[str, list] = {}
    for r in resources:
        for fqdn in {str(n).lower() for n in r.get("ResourceNames") or []}:
            by_fqdn.setdefault(fqdn, []).append(r)
        by_name.setdefault(str(r.get("Name") or "").upper(), []).append(r)
    return by_fqdn, by_name


def run_record_path() -> Path:
    """Where this run's disruptive actions are recorded: one file shared by the processes of the run (xdist
    workers share ``PYTEST_XDIST_TESTRUNUID``; without xdist the run is this process)."""
    import tempfile  # noqa: PLC0415

    if os.environ.get("VPRO_RUN_DIR"):  # set by the plugin in every process of a run: the run's own folder
        return Path(os.environ["VPRO_RUN_DIR"]) / "actions.json"
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:  # this process is the run: its pid and start time (a pid alone is reused)
        try:
            started = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            started = "0"
        run = f"pid{os.getpid()}-{started}"
    return Path(tempfile.gettempdir()) / "pytest-vpro-runs" / f"{run}.json"


def run_record(target: str) -> dict[str, Any]:
    """What this run's disruptive actions recorded for ``target`` ({} if nothing)."""
    import json  # noqa: PLC0415

    try:
        return json.loads(run_record_path().read_text()).get(target, {})
    except (OSError, ValueError):
        return {}


def _answered(lookup: Callable[[], list[str]]) -> list[str]:
    from .probes.dns import NoAnswer, NxDomain  # noqa: PLC0415

    try:
        return lookup()
    except (NxDomain, NoAnswer):
        return []


_RESOLVERS: dict[int, Any] = {}
_FRESH_LOG_LOCK = threading.Lock()
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

    def __init__(self, env: Environment, hellos: Any = None) -> None:
        self.env = env
        self._by_target: dict[str, Facts] = {}
        self._lock = threading.Lock()
        self._routed = False
        self.estate = Facts(env.site, env)
        self.estate.hello_capture = hellos  # a HelloCapture (--hello-listen), or None

    def close(self) -> None:
        """Stop what this process started for the run (the hello listener)."""
        capture, self.estate.hello_capture = self.estate.hello_capture, None
        if capture is not None:
            capture.stop()

    def __call__(self, target: Target) -> Facts:
        with self._lock:
            if not self._routed:  # once per process, when the first check asks for facts
                route_connections(self.env)
                self.estate.use_krb5_config()  # before any thread makes a Kerberos context
                self.estate.recorder, self.estate.replay = self.recorder, self.replay  # set by the plugin by now
                self._routed = True
            facts = self._by_target.get(target.key)
            if facts is None:
                facts = self.estate if target.key == self.env.site.key else Facts(target, self.env, self.estate)
                facts.recorder, facts.replay = self.recorder, self.replay
                self._by_target[target.key] = facts
            return facts

    recorder: Any = None  # snapshot.Recorder with --facts-out
    replay: Any = None    # snapshot.Replay with --facts-in
