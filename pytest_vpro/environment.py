"""Environment files: what estate a run checks.

``pytest --env NAME`` loads ``environments/NAME.yaml`` (or a path). The file is
validated once, before collection; every mistake is reported as
``FILE:LINE: key.path: message`` and the run stops with pytest's usage-error
code. ``environments/example.yaml`` documents every key.

Clients come inline, from CSV files (``source: csv:PATH``) or from an LDAP
query of an OU (``source: ldap:OU=...``). Secrets are references only (see
:mod:`pytest_vpro.secrets`).
"""
from __future__ import annotations

import csv
import datetime as dt
import difflib
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from . import yamlpos
from .secrets import SecretRef, is_reference

ROLES = ("site_server", "oob_service_point", "domain_controller", "dns", "dhcp", "issuing_ca",
         "reporting_point", "oob_console", "wsman_translator")
PROVISIONING = ("out_of_band", "in_band")
SECRET_KEYS = ("password", "psk", "secret", "pps", "key")
FQDN_RE = re.compile(r"^(?=.{1,253}$)[^\s.]+(\.[^\s.]+)+$")  # loose: the checks judge the characters

DEFAULT_EXPECTED: dict[str, Any] = {
    "ports": {"provisioning": 9971, "amt_http": 16992, "amt_https": 16993,
              "redirection": 16994, "redirection_tls": 16995},
    "sccm_agent_min_version": "4.0.6221.1000",
    "amt_native_min_version": "3.2.1",
    "amt_self_signed_fixed_version": "3.2.2",
    "ca_max_key_bits": 2048,
    "max_clock_skew_seconds": 300,
    "kerberos_token_limit_bytes": 4096,
    "crl_min_remaining_hours": 24,
    "power_policy_states": ["S0", "S3", "S4", "S5"],
}
def _shipped_environments() -> Path:
    spec = importlib.util.find_spec("pytest_vpro.environments")  # a clone's environments/ under an editable install
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else Path()


SHIPPED_ENVIRONMENTS = _shipped_environments()
DEFAULT_TIMEOUTS = {"connect": 3.0, "read": 10.0}


#: Optional per-server keys, kept in ``Server.extra`` for the checks that need them.
SERVER_EXTRA = ("ca_name", "os", "log_share", "log_path", "smb_host", "probe_from", "dhcp_port")


class EnvironmentFileError(Exception):
    """One or more mistakes in an environment file; ``str()`` lists them all."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------- model

@dataclass(repr=False, eq=False)
class Target:
    """Something a check is run against: the site, a server or a client."""

    kind: str  # "site" | "server" | "client"
    name: str  # the FQDN (for the site: its DNS domain)
    canary: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    def __repr__(self) -> str:  # pytest ids, Allure parameters and messages show the FQDN
        return self.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(repr=False, eq=False)
class Site(Target):
    code: str = ""
    site_name: str = ""
    realm: str = ""
    forest: str = ""
    amt_container: str = ""
    client_domains: tuple[str, ...] = ()


@dataclass(repr=False, eq=False)
class Server(Target):
    roles: tuple[str, ...] = ()
    address: str | None = None
    winrm: str | None = None
    testinfra: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fqdn(self) -> str:
        return self.name


@dataclass(repr=False, eq=False)
class Client(Target):
    provisioning: str = "out_of_band"
    address: str | None = None
    uuid: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fqdn(self) -> str:
        return self.name


@dataclass(frozen=True)
class Credential:
    """``kerberos`` or a user with a password reference."""

    user: str | None
    password: SecretRef | None

    @property
    def kerberos(self) -> bool:
        return self.password is None


@dataclass(frozen=True)
class Attestation:
    check: str
    target: str  # FQDN, the site domain, or "*"
    by: str
    at: dt.date
    seen: str


@dataclass
class Environment:
    name: str
    file: Path
    site: Site
    servers: list[Server]
    clients: list[Client]
    credentials: dict[str, Credential]
    dns: dict[str, Any]
    pki: dict[str, Any]
    console: dict[str, Any]
    expected: dict[str, Any]
    timeouts: dict[str, float]
    attestations: list[Attestation]
    attestation_max_age_days: int
    log_patterns: dict[str, Any]
    lab: dict[str, Any] | None
    raw: dict[str, Any]

    def targets(self, scope: str) -> list[Target]:
        """The targets of a catalog scope, sorted: ``site``, ``client`` or ``server:<role>``."""
        if scope == "site":
            return [self.site]
        if scope == "client":
            return list(self.clients)
        if scope.startswith("server:"):
            role = scope.split(":", 1)[1]
            return [s for s in self.servers if role in s.roles]
        raise ValueError(f"unknown scope {scope!r}")

    def servers_with(self, role: str) -> list[Server]:
        return [s for s in self.servers if role in s.roles]

    def path(self, value: str) -> Path:
        """A path from the file, relative to the file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.file.parent / p

    def attestation(self, check: str, target: Target) -> Attestation | None:
        """The newest attestation for ``check`` on ``target`` (or on every target)."""
        found = [a for a in self.attestations if a.check == check and a.target in ("*", target.name)]
        return max(found, key=lambda a: a.at) if found else None


# --------------------------------------------------------------------------- loading

def is_path(name: str) -> bool:
    """``--env`` takes a name (``lab``) or a path (``envs/prod.yaml``)."""
    return Path(name).suffix in (".yaml", ".yml") or "/" in name


def resolve_env_path(name: str, rootdir: Path, cwd: Path | None = None) -> Path:
    """``--env NAME``: the first of ``<rootdir>/environments/NAME.yaml``, ``./environments/NAME.yaml`` and the
    environments that ship in the package (``lab``, ``example``); a path is taken as it is (from the current
    folder). A name found nowhere gives the rootdir's path, whose error lists what is available."""
    cwd = cwd or Path.cwd()
    candidate = Path(name).expanduser()
    if is_path(name):
        return candidate if candidate.is_absolute() else (cwd / candidate)
    folders = dict.fromkeys([rootdir / "environments", cwd / "environments", SHIPPED_ENVIRONMENTS])
    for folder in folders:
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    return rootdir / "environments" / f"{name}.yaml"


def available_environments(rootdir: Path, cwd: Path | None = None) -> list[str]:
    """The names ``--env`` finds (see :func:`resolve_env_path`)."""
    folders = [rootdir / "environments", (cwd or Path.cwd()) / "environments", SHIPPED_ENVIRONMENTS]
    return sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})


def load(path: Path, *, ldap_search: Callable[..., list[dict[str, Any]]] | None = None,
         inventory_cache: Path | None = None) -> Environment:
    """Load and validate an environment file; raise :class:`EnvironmentFileError`.

    ``inventory_cache``: a JSON file with the clients already resolved (xdist
    workers read the controller's so that every worker sees the same fleet).
    """
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" (available: {', '.join(available)})" if available else ""
        raise EnvironmentFileError([f"{path}: environment file not found{hint}"])
    try:
        doc = yamlpos.load(path)
    except yamlpos.YamlError as exc:
        raise EnvironmentFileError([str(exc)]) from None
    except RecursionError:  # found by tests/reliability/test_fuzz.py: "a: &x [*x]" or 1,000 nested "["
        raise EnvironmentFileError([f"{path}: the YAML is nested too deeply or refers to itself "
                                    "(a recursive &anchor/*alias)"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # e.g. a control character or a binary file (fuzzing)
        raise EnvironmentFileError([f"{path}: not a readable YAML text file: {str(exc).splitlines()[0]}"]) from None
    v = _Validator(doc)
    env = v.environment(ldap_search=ldap_search, inventory_cache=inventory_cache)
    if v.problems:
        raise EnvironmentFileError(v.problems)
    assert env is not None
    return env


def write_inventory_cache(env: Environment, path: Path) -> None:
    rows = [{"fqdn": c.name, "provisioning": c.provisioning, "canary": c.canary, "address": c.address,
             "uuid": c.uuid, "extra": c.extra} for c in env.clients]
    path.write_text(json.dumps(rows))


class _Validator:
    """Walks the document once, collecting every problem with its line."""

    def __init__(self, doc: yamlpos.Positioned) -> None:
        self.doc = doc
        self.problems: list[str] = []

    # -- reporting
    def problem(self, path: tuple[Any, ...], message: str) -> None:
        self.problems.append(f"{self.doc.file}:{self.doc.line(path)}: {yamlpos.dotted(path)}: {message}")

    # -- primitive checks
    def mapping(self, value: Any, path: tuple[Any, ...], allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping of keys ({', '.join(allowed)}), found {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(allowed)}"
                self.problem(path + (key,), f"unknown key{hint}")
        for key in required:
            if key not in value:
                self.problem(path, f"missing required key '{key}'")
        return value

    def string(self, m: dict[str, Any], key: str, path: tuple[Any, ...], default: str | None = None,
               pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        value = m.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(path + (key,), f"expected a non-empty string, found {_kind(value)}")
            return default
        if pattern and not pattern.match(value):
            self.problem(path + (key,), f"{value!r} is not {what}")
        return value

    def boolean(self, m: dict[str, Any], key: str, path: tuple[Any, ...], default: bool = False) -> bool:
        value = m.get(key, default)
        if not isinstance(value, bool):
            self.problem(path + (key,), f"expected true or false, found {_kind(value)}")
            return default
        return value

    def number(self, value: Any, path: tuple[Any, ...], *, minimum: float = 0) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(path, f"expected a number, found {_kind(value)}")
            return None
        if value < minimum:
            self.problem(path, f"must be at least {minimum}, found {value}")
            return None
        return value

    def str_list(self, m: dict[str, Any], key: str, path: tuple[Any, ...]) -> list[str]:
        value = m.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(path + (key,), f"expected a list of strings, found {_kind(value)}")
            return []
        return value

    # -- sections
    def environment(self, *, ldap_search: Callable[..., list[dict[str, Any]]] | None,
                    inventory_cache: Path | None) -> Environment | None:
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
            clients = self.clients(top.get("clients", []), ("clients",), servers, credentials, ldap_search)
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
            self.problem(("log_patterns",), f"expected a mapping of event -> list of patterns, found {_kind(log_patterns)}")
            log_patterns = {}
        lab = top.get("lab")
        if lab is not None and not isinstance(lab, dict):
            self.problem(("lab",), f"expected a mapping, found {_kind(lab)}")
            lab = None
        if site is None:
            return None
        return Environment(
            name=str(top.get("name") or self.doc.file.stem), file=self.doc.file, site=site, servers=servers,
            clients=clients, credentials=credentials, dns=dns, pki=pki, console=console, expected=expected,
            timeouts=timeouts, attestations=attestations, attestation_max_age_days=int(max_age),
            log_patterns=log_patterns, lab=lab, raw=top)

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
        m = self.mapping(value, path, ("user", "password"), required=("user", "password"))
        if not m:
            return None
        self.secret_field(m, "password", path)
        user = self.string(m, "user", path)
        pw = m.get("password")
        return Credential(user, SecretRef(pw, self.doc.file.parent)) if is_reference(pw) else None

    def secret_field(self, m: dict[str, Any], key: str, path: tuple[Any, ...]) -> None:
        value = m.get(key)
        if value is None or is_reference(value):
            return
        var = "VPRO_" + "_".join(str(p).upper() for p in path if isinstance(p, str)) + "_" + key.upper()
        self.problem(path + (key,), "a plaintext secret is not allowed in an environment file (the value is not "
                     f"shown); reference it instead: {key}: \"env:{var}\" and export {var}, or "
                     f"{key}: \"file:/path/to/secret\", or use kerberos")

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
            self.problem(path, f"expected a list of servers, found {_kind(value)}")
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
            for key in ("winrm", "testinfra", "address", *SERVER_EXTRA):
                if key == "dhcp_port":
                    if key in m:
                        self.number(m[key], p + (key,), minimum=1)
                else:
                    self.string(m, key, p)
            if fqdn:
                extra = {k: m[k] for k in SERVER_EXTRA if k in m}
                out.append(Server(kind="server", name=fqdn.lower(), roles=tuple(roles), address=m.get("address"),
                                  winrm=m.get("winrm"), testinfra=m.get("testinfra"),
                                  canary=self.boolean(m, "canary", p), extra=extra))
        return sorted(out, key=lambda s: s.name)

    def client_row(self, m: dict[str, Any], p: tuple[Any, ...], defaults: dict[str, Any]) -> Client | None:
        fqdn = self.string(m, "fqdn", p, pattern=FQDN_RE, what="a fully qualified domain name")
        prov = m.get("provisioning", defaults.get("provisioning", "out_of_band"))
        if prov not in PROVISIONING:
            self.problem(p + ("provisioning",), f"expected one of {', '.join(PROVISIONING)}, found {prov!r}")
        canary = m.get("canary", defaults.get("canary", False))
        if not isinstance(canary, bool):
            self.problem(p + ("canary",), f"expected true or false, found {_kind(canary)}")
            canary = False
        if not fqdn:
            return None
        extra = {k: v for k, v in m.items() if k not in ("fqdn", "provisioning", "canary", "address", "uuid")}
        # FQDNs are kept as written: a client's real name may be wrong (an underscore), and checks must see it.
        return Client(kind="client", name=fqdn.lower(), canary=canary, provisioning=prov,
                      address=m.get("address"), uuid=m.get("uuid"), extra=extra)

    def clients(self, value: Any, path: tuple[Any, ...], servers: list[Server],
                credentials: dict[str, Credential],
                ldap_search: Callable[..., list[dict[str, Any]]] | None) -> list[Client]:
        if not isinstance(value, list):
            self.problem(path, f"expected a list of clients, found {_kind(value)}")
            return []
        out: list[Client] = []
        for i, item in enumerate(value):
            p = path + (i,)
            if isinstance(item, dict) and "source" in item:
                m = self.mapping(item, p, ("source", "provisioning", "canary", "filter"))
                out.extend(self.source(m, p, servers, credentials, ldap_search))
                continue
            m = self.mapping(item, p, ("fqdn", "provisioning", "canary", "address", "uuid", "amt_version",
                                       "os_hostname", "notes", "wireless", "ieee8021x"), required=("fqdn",))
            if m:
                client = self.client_row(m, p, {})
                if client:
                    out.append(client)
        return sorted(out, key=lambda c: c.name)

    def source(self, m: dict[str, Any], p: tuple[Any, ...], servers: list[Server],
               credentials: dict[str, Credential],
               ldap_search: Callable[..., list[dict[str, Any]]] | None) -> list[Client]:
        src = m.get("source")
        defaults = {k: m[k] for k in ("provisioning", "canary") if k in m}
        if not isinstance(src, str) or not src.startswith(("csv:", "ldap:")):
            self.problem(p + ("source",), f"expected 'csv:PATH' or 'ldap:<OU distinguished name>', found {src!r}")
            return []
        kind, _, what = src.partition(":")
        if kind == "csv":
            return self.csv_source(Path(what), p, defaults)
        dcs = [s for s in servers if "domain_controller" in s.roles]
        if not dcs:
            self.problem(p + ("source",), "an ldap: client source needs a server with role domain_controller")
            return []
        if "ldap" not in credentials:
            self.problem(p + ("source",), "an ldap: client source needs credentials.ldap (kerberos or user/password)")
            return []
        if ldap_search is None:
            from .probes.ldap import search_computers as ldap_search  # noqa: PLC0415 (only when used)
        try:
            rows = ldap_search(dcs, credentials["ldap"], what, m.get("filter"), **self._inventory_tls)
        except Exception as exc:  # an unreachable DC is a usage problem for the run, with its cause
            self.problem(p + ("source",), f"LDAP query of {what!r} failed: {exc}")
            return []
        out = []
        for row in rows:
            client = self.client_row(row, p + ("source",), defaults)
            if client:
                out.append(client)
        return out

    def csv_source(self, rel: Path, p: tuple[Any, ...], defaults: dict[str, Any]) -> list[Client]:
        path = rel.expanduser() if rel.expanduser().is_absolute() else self.doc.file.parent / rel
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            self.problem(p + ("source",), f"cannot read {path}: {exc.strerror}")
            return []
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "fqdn" not in reader.fieldnames:
            self.problem(p + ("source",), f"{path}:1: the CSV header must have a 'fqdn' column "
                         f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})")
            return []
        out = []
        for row in reader:
            line = reader.line_num
            row = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
            if not row.get("fqdn"):
                self.problems.append(f"{path}:{line}: fqdn: empty")
                continue
            if "canary" in row:
                flag = row["canary"].lower()
                if flag not in ("", "true", "false", "yes", "no", "1", "0"):
                    self.problems.append(f"{path}:{line}: canary: expected true or false, found {row['canary']!r}")
                    continue
                row["canary"] = flag in ("true", "yes", "1")
                if flag == "":
                    del row["canary"]
            if row.get("provisioning") == "":
                del row["provisioning"]
            if row.get("provisioning", defaults.get("provisioning", "out_of_band")) not in PROVISIONING:
                self.problems.append(f"{path}:{line}: provisioning: expected one of {', '.join(PROVISIONING)}, "
                                     f"found {row['provisioning']!r}")
                continue
            row = {k: v for k, v in row.items() if v not in ("", None)}
            client = self.client_row(row, p, defaults)
            if client:
                out.append(client)
        return out

    def unique(self, servers: list[Server], clients: list[Client]) -> None:
        seen: dict[str, str] = {}
        for i, s in enumerate(servers):
            if s.name in seen:
                self.problem(("servers",), f"server {s.name} is listed twice")
            seen[s.name] = "server"
        for c in clients:
            if seen.get(c.name) == "client":
                self.problem(("clients",), f"client {c.name} is listed twice (inline or in its sources)")
            elif c.name in seen:
                self.problem(("clients",), f"{c.name} is listed both as a server and as a client")
            seen[c.name] = "client"

    def dns(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        m = self.mapping(value, path, ("servers", "port", "route_connections"))
        servers = self.str_list(m, "servers", path)
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
            if isinstance(default, dict):
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
            self.problem(path, f"expected a list of attestations, found {_kind(value)}")
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
                self.problem(p + ("at",), f"expected a date such as 2026-11-20, found {_kind(at)}")
                continue
            check, by, seen = (self.string(m, k, p) for k in ("check", "by", "seen"))
            target = self.string(m, "target", p, default="*")
            if check and by and seen:
                out.append(Attestation(check=check, target=(target or "*").lower(), by=by, at=at, seen=seen))
        return out


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    if isinstance(value, str):
        return f"{value!r}"
    return f"{value!r} ({type(value).__name__})"
