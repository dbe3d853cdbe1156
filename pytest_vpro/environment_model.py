"""What a loaded environment file is: the targets, credentials and settings a run checks.

Data only: the classes a check is handed (:class:`Environment`, its :class:`Site`, :class:`Server` and
:class:`Client` targets, :class:`Credential`, :class:`Attestation`), the file's vocabulary (the server roles, the
client keys, the defaults of ``expected:`` and ``timeouts:``) and the error a mistake raises. It is its own
module, and imports nothing of the loader, because every other environment module builds these objects and
:func:`pytest_vpro.environment.load` returns them: with the data beside the loader, the loader's parts would
import each other. The rest of pytest-vpro imports these names from :mod:`pytest_vpro.environment`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .secrets import SecretRef

ROLES = ("site_server", "oob_service_point", "domain_controller", "dns", "dhcp", "issuing_ca",
         "reporting_point", "oob_console", "wsman_translator")
PROVISIONING = ("out_of_band", "in_band")
SECRET_KEYS = ("password", "psk", "secret", "pps", "key")
#: The keys of an inline client, and the columns a CSV inventory may have. ``site``: the client's site code, for
#: ``--shard-by site`` (docs/ci.md); a client without one belongs to the environment's site.
CLIENT_KEYS = ("fqdn", "provisioning", "canary", "address", "uuid", "amt_version", "os_hostname", "notes",
               "wireless", "ieee8021x", "site")
#: Optional per-server keys, kept in ``Server.extra`` for the checks that need them.
SERVER_EXTRA = ("ca_name", "os", "log_share", "log_path", "smb_host", "probe_from", "dhcp_port")

#: ``search(dcs, credential, base_dn, ldap_filter, *, ca_file, timeout) -> [{"fqdn": ...}]``: a run passes
#: :func:`pytest_vpro.probes.ldap.search_computers`. The environment modules import no protocol (probes sit above it).
LdapSearch = Callable[..., list[dict[str, Any]]]
#: ``routing(env)``: a context manager within which the estate's names resolve through its own DNS servers,
#: yielding an object with ``addresses(name)``, or None; a run passes :func:`pytest_vpro.probes.dns.estate_routing`.
Routing = Callable[["Environment"], contextlib.AbstractContextManager[Any]]

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
    "amt_legacy_tls_ciphers": "AES128-SHA:AES256-SHA",  # probes/tls.py: the legacy retry toward AMT ports
    # the SMS_AMT_OPERATION_MANAGER site control property holding the selected provisioning certificate's
    # thumbprint: no public source names it (docs/protocols.md), so a site can name its own
    "provisioning_certificate_property": "AMT Provisioning Certificate Thumbprint",
    # the SMS_AMT_OPERATION_MANAGER site control properties (Props or PropLists) that turn on the SP2-only out of
    # band features, by feature: no public source names them (docs/protocols.md), so a site can name its own
    "sp2_feature_properties": {
        "wired_8021x": "AMT 802.1X Wired Profile Enabled", "wireless": "AMT Wireless Profiles Enabled",
        "auditing": "Enable Auditing", "data_storage": "Enable Data Storage", "power_state": "AMT Power State",
        "provisioning_schedule": "Enable Provisioning Schedule"},
}
DEFAULT_TIMEOUTS = {"connect": 3.0, "read": 10.0}


class EnvironmentFileError(Exception):
    """One or more mistakes in an environment file; ``str()`` lists them all."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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
    #: ``credentials.winrm.basic_hosts``: the FQDNs whose WinRM may be asked with HTTP Basic (over https, after
    #: Kerberos was refused). Windows has Basic off by default (docs/protocols.md, "WinRM authentication").
    basic_hosts: tuple[str, ...] = ()

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
    #: Findings of the inventory, for the run's report: a directory of an ``ldap:`` source that did not answer
    #: ("directory dc01.corp.example.com did not answer for ldap:OU=...: ..."). The run goes on without
    #: that source's clients. Empty on xdist workers (they read the controller's inventory).
    inventory_problems: list[str] = field(default_factory=list)

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

