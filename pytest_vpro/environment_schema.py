"""The sections of an environment file: ``site:``, ``credentials:``, ``servers:``, ``dns:``, ``pki:`` and the rest.

:class:`Validator` is the whole walk of one file, top to bottom: each method checks one section against its
schema (the keys it allows, the keys it requires, the type and shape of each value) and returns the section's
data, or reports the mistake at its line and goes on. It is built on the inventory
(:mod:`pytest_vpro.environment_inventory`, which reads ``clients:``) and the shared primitive checks
(:mod:`pytest_vpro.environment_walk`); :func:`pytest_vpro.environment.load` drives it. The section methods are
named after the file's keys they read (``environments/example.yaml`` documents them all); secrets are references
only (:mod:`pytest_vpro.secrets`), asked by :meth:`Validator.check_secrets` once the file validated.
"""
from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from pathlib import Path
from typing import Any

from . import yamlpos
from .environment_inventory import Inventory
from .environment_model import (
    DEFAULT_EXPECTED,
    DEFAULT_TIMEOUTS,
    ROLES,
    SERVER_EXTRA,
    Attestation,
    Client,
    Credential,
    Environment,
    Server,
    Site,
)
from .environment_walk import FQDN_RE, ipv4_problem, kind_of
from .secrets import SecretRef, is_reference


class Validator(Inventory):
    """The walk of one environment file: every section, every secret reference; :attr:`problems` says what is wrong."""

    def __init__(self, doc: yamlpos.Positioned) -> None:
        super().__init__(doc)
        self.secret_refs: list[tuple[tuple[Any, ...], SecretRef]] = []

    def environment(self, *, inventory_cache: Path | None) -> Environment | None:
        top = self.mapping(self.doc.data, (), (
            "name", "site", "dns", "credentials", "servers", "clients", "pki", "console", "expected", "timeouts",
            "attestations", "attestation_max_age_days", "log_patterns", "lab"), required=("site",))
        site = self.site(top["site"], ("site",)) if "site" in top else None
        credentials = self.credentials(top.get("credentials", {}), ("credentials",))
        servers = self.servers(top.get("servers", []), ("servers",))
        pki = self.pki(top.get("pki", {}), ("pki",))
        timeouts = self.timeouts(top.get("timeouts", {}), ("timeouts",))
        self._inventory_tls = {"ca_file": pki.get("trusted_roots"), "timeout": timeouts["connect"]}
        if inventory_cache and inventory_cache.is_file():
            clients = [Client(kind="client", name=r["fqdn"], canary=r["canary"], provisioning=r["provisioning"],
                              address=r["address"], uuid=r["uuid"], extra=r["extra"])
                       for r in json.loads(inventory_cache.read_text())]
        else:
            clients = self.clients(top.get("clients", []), ("clients",), servers, credentials)
        self.unique(servers, clients)
        dns = self.dns(top.get("dns", {}), ("dns",))
        console = self.mapping(top.get("console", {}), ("console",), ("user", "groups_limit"))
        expected = self.expected(top.get("expected", {}), ("expected",))
        attestations = self.attestations(top.get("attestations", []), ("attestations",))
        max_age = top.get("attestation_max_age_days", 90)
        if self.number(max_age, ("attestation_max_age_days",), minimum=1) is None:
            max_age = 90
        log_patterns = top.get("log_patterns", {})
        if not isinstance(log_patterns, dict):
            self.problem(("log_patterns",),
                         f"expected a mapping of event -> list of patterns, found {kind_of(log_patterns)}")
            log_patterns = {}
        lab = top.get("lab")
        if lab is not None and not isinstance(lab, dict):
            self.problem(("lab",), f"expected a mapping, found {kind_of(lab)}")
            lab = None
        if site is None:
            return None
        return Environment(
            name=str(top.get("name") or self.doc.file.stem), file=self.doc.file, site=site, servers=servers,
            clients=sorted(clients, key=lambda c: c.name), credentials=credentials, dns=dns, pki=pki,
            console=console, expected=expected, timeouts=timeouts, attestations=attestations,
            attestation_max_age_days=int(max_age), log_patterns=log_patterns, lab=lab, raw=top)

    def site(self, value: Any, path: tuple[Any, ...]) -> Site | None:
        m = self.mapping(value, path, ("name", "code", "domain", "realm", "forest", "amt_container",
                                       "client_domains"), required=("name", "code", "domain", "amt_container"))
        if not m:
            return None
        domain = self.string(m, "domain", path, pattern=FQDN_RE, what="a DNS domain (e.g. corp.example.com)")
        code = self.string(m, "code", path, pattern=re.compile(r"^[A-Za-z0-9]{3}$"),
                           what="a three-character site code (e.g. ABC)")
        container = self.string(m, "amt_container", path, pattern=re.compile(r"^(OU|CN)=.+,DC=.+", re.I),
                                what="a distinguished name such as OU=AMT,DC=corp,DC=example,DC=com")
        domain = domain or "invalid.invalid"
        return Site(kind="site", name=domain, code=code or "", site_name=self.string(m, "name", path) or "",
                    realm=self.string(m, "realm", path, default=domain.upper()) or domain.upper(),
                    forest=self.string(m, "forest", path, default=domain) or domain,
                    amt_container=container or "",
                    client_domains=tuple(self.str_list(m, "client_domains", path) or [domain]))

    def credential(self, value: Any, path: tuple[Any, ...]) -> Credential | None:
        if value == "kerberos":
            return Credential(None, None)
        winrm = path[-1:] == ("winrm",)
        m = self.mapping(value, path, ("user", "password", *(("basic_hosts",) if winrm else ())),
                         required=("user", "password"))
        if not m:
            return None
        self.secret_field(m, "password", path)
        user = self.string(m, "user", path)
        basic_hosts = self.basic_hosts(m, path) if winrm else ()
        pw = m.get("password")
        if not is_reference(pw):
            return None
        ref = SecretRef(pw, self.doc.file.parent)
        self.secret_refs.append((path + ("password",), ref))
        return Credential(user, ref, basic_hosts)

    def basic_hosts(self, m: dict[str, Any], path: tuple[Any, ...]) -> tuple[str, ...]:
        """``credentials.winrm.basic_hosts``: a list of FQDNs (no wildcards: Basic is allowed host by host)."""
        value = m.get("basic_hosts", [])
        if not isinstance(value, list):
            self.problem(path + ("basic_hosts",), f"expected a list of host FQDNs whose WinRM accepts HTTP Basic "
                         f"over https, found {kind_of(value)}")
            return ()
        out = []
        for i, host in enumerate(value):
            if not isinstance(host, str) or not FQDN_RE.match(host) or any(c in host for c in "*/:@"):
                self.problem(path + ("basic_hosts", i), f"expected the fully qualified domain name of a host "
                             f"(no wildcard, no URL), found {host!r}")
                continue
            out.append(host.lower().rstrip("."))
        return tuple(out)

    def secret_field(self, m: dict[str, Any], key: str, path: tuple[Any, ...]) -> None:
        value = m.get(key)
        if value is None or is_reference(value):
            return
        var = "VPRO_" + "_".join(str(p).upper() for p in path if isinstance(p, str)) + "_" + key.upper()
        self.problem(path + (key,), "a plaintext secret is not allowed in an environment file (the value is not "
                     f"shown); reference it instead: {key}: \"env:{var}\" and export {var}, or "
                     f"{key}: \"file:/path/to/secret\", or use kerberos")

    def check_secrets(self) -> None:
        """Every secret reference resolves now (its value is read, and dropped: see SecretRef.problem)."""
        for path, ref in self.secret_refs:
            problem = ref.problem()
            if problem is None:
                continue
            kind, _, what = ref.ref.partition(":")
            hint = f"; export {what} before the run" if kind == "env" and "not set" in problem else ""
            self.problem(path, f"{problem}{hint}")

    def credentials(self, value: Any, path: tuple[Any, ...]) -> dict[str, Credential]:
        m = self.mapping(value, path, ("ldap", "winrm", "amt", "smb", "console", "mebx"))
        out = {}
        for key, item in m.items():
            cred = self.credential(item, path + (key,))
            if cred is not None:
                out[key] = cred
        return out

    def servers(self, value: Any, path: tuple[Any, ...]) -> list[Server]:
        if not isinstance(value, list):
            self.problem(path, f"expected a list of servers, found {kind_of(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            p = path + (i,)
            m = self.mapping(item, p, ("fqdn", "roles", "address", "winrm", "testinfra", "canary",
                                       *SERVER_EXTRA), required=("fqdn", "roles"))
            if not m:
                continue
            fqdn = self.string(m, "fqdn", p, pattern=FQDN_RE, what="a fully qualified domain name")
            roles = self.str_list(m, "roles", p)
            for j, role in enumerate(roles):
                if role not in ROLES:
                    close = difflib.get_close_matches(role, ROLES, n=1)
                    hint = f"did you mean '{close[0]}'?" if close else f"roles are: {', '.join(ROLES)}"
                    self.problem(p + ("roles", j), f"unknown role '{role}'; {hint}")
            for key in ("winrm", "testinfra", *SERVER_EXTRA):
                if key == "dhcp_port":
                    if key in m:
                        self.number(m[key], p + (key,), minimum=1)
                elif key == "probe_from":
                    self.address(m, key, p)
                else:
                    self.string(m, key, p)
            address = self.address(m, "address", p)
            if fqdn:
                extra = {k: m[k] for k in SERVER_EXTRA if k in m}
                server = Server(kind="server", name=fqdn.lower(), roles=tuple(roles), address=address,
                                winrm=m.get("winrm"), testinfra=m.get("testinfra"),
                                canary=self.boolean(m, "canary", p), extra=extra)
                self._where[id(server)] = self.at(p + ("fqdn",))
                out.append(server)
        return sorted(out, key=lambda s: s.name)

    def dns(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        m = self.mapping(value, path, ("servers", "port", "route_connections"))
        servers = self.str_list(m, "servers", path)
        for i, server in enumerate(servers):
            problem = ipv4_problem(server)
            if problem:
                self.problem(path + ("servers", i), problem)
        port = m.get("port", 53)
        self.number(port, path + ("port",), minimum=1)
        return {"servers": servers, "port": int(port) if isinstance(port, int) else 53,
                "route_connections": self.boolean(m, "route_connections", path)}

    def pki(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        m = self.mapping(value, path, ("provisioning_chain", "trusted_roots", "web_server_template", "issuing_ca",
                                       "multi_tier"))
        out = dict(m)
        out.setdefault("web_server_template", "IntelAMTWebServer")
        for key in ("provisioning_chain", "trusted_roots"):
            if key in m:
                rel = self.string(m, key, path)
                if rel:
                    p = Path(rel).expanduser()
                    p = p if p.is_absolute() else self.doc.file.parent / p
                    if not p.is_file():
                        self.problem(path + (key,), f"file not found: {p}")
                    out[key] = str(p)
        return out

    def expected(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        m = self.mapping(value, path, tuple(DEFAULT_EXPECTED))
        out = json.loads(json.dumps(DEFAULT_EXPECTED))
        for key, v in m.items():
            if key not in DEFAULT_EXPECTED:  # already reported as an unknown key
                continue
            default = DEFAULT_EXPECTED[key]
            if isinstance(default, dict) and all(isinstance(d, str) for d in default.values()):
                sub = self.mapping(v, path + (key,), tuple(default))  # names, e.g. site control properties
                out[key].update({k: self.string(sub, k, path + (key,), default=default[k]) for k in sub
                                 if k in default})
            elif isinstance(default, dict):
                sub = self.mapping(v, path + (key,), tuple(default))
                for k, port in sub.items():
                    if self.number(port, path + (key, k), minimum=1) is not None:
                        out[key][k] = port
            elif isinstance(default, list):
                out[key] = self.str_list(m, key, path) or default
            elif isinstance(default, str):
                out[key] = self.string(m, key, path, default=default)
            elif self.number(v, path + (key,), minimum=0) is not None:
                out[key] = v
        return out

    def timeouts(self, value: Any, path: tuple[Any, ...]) -> dict[str, float]:
        m = self.mapping(value, path, tuple(DEFAULT_TIMEOUTS))
        out = dict(DEFAULT_TIMEOUTS)
        for key, v in m.items():
            n = self.number(v, path + (key,), minimum=0.05)
            if n is not None:
                out[key] = float(n)
        return out

    def attestations(self, value: Any, path: tuple[Any, ...]) -> list[Attestation]:
        if not isinstance(value, list):
            self.problem(path, f"expected a list of attestations, found {kind_of(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            p = path + (i,)
            m = self.mapping(item, p, ("check", "target", "by", "at", "seen"), required=("check", "by", "at", "seen"))
            if not m:
                continue
            at = m.get("at")
            if isinstance(at, dt.datetime):
                at = at.date()
            if not isinstance(at, dt.date):
                self.problem(p + ("at",), f"expected a date such as 2026-11-20, found {kind_of(at)}")
                continue
            check, by, seen = (self.string(m, k, p) for k in ("check", "by", "seen"))
            target = self.string(m, "target", p, default="*")
            if check and by and seen:
                out.append(Attestation(check=check, target=(target or "*").lower(), by=by, at=at, seen=seen))
        return out


