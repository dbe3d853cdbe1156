"""The fault registry: parsing a description's faults, applying them stage by stage, and the helpers the
fault steps share. The faults themselves are in the area modules of this package."""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ..addresses import AddressPlan
from ..names import (
    DOMAIN,
    SITE_SERVER_ACCOUNT,
    ClientPlan,
    DescriptionError,
)
from ..pki import (
    sign,
)
from ..samba_dns import reverse_name
from ..site_spec import (
    THREADS,
)

STAGES = ("plan", "pki", "directory_setup", "directory", "dhcp", "device", "site_server", "running", "windows")
ACCOUNTDISABLE = 0x2  # userAccountControl (MS-ADTS 2.2.16)
CLIENT_AUTH_EKU = "1.3.6.1.5.5.7.3.2"
DOMAIN_LOCAL_SECURITY_GROUP = -2147483644  # groupType RESOURCE_GROUP | SECURITY_ENABLED (MS-ADTS 2.2.12)


@dataclass
class DirectorySetup:
    """What the directory is populated with; ``directory_setup`` faults change it before it is written."""
    template: dict[str, Any] = field(default_factory=lambda: {"enroll_for": (SITE_SERVER_ACCOUNT,)})
    amt_container_rights: str = "GA"  # SDDL rights granted to the site server account on the AMT container
    enrollment_service: bool = True   # the issuing CA publishes its pKIEnrollmentService object (enterprise CA)
    published_templates: list[str] = field(default_factory=lambda: ["IntelAMTWebServer", "WebServer", "Machine"])
    ca_certificate: bytes | None = None  # the cACertificate the CA publishes (DER); default the issuing CA's own


@dataclass
class Context:
    """The estate being built, as far as it is built; each stage fills in what it decides or starts."""
    plan: AddressPlan
    state: Path
    clients: list[ClientPlan]
    pki: dict[str, Any] = field(default_factory=dict)          # PkiFaults(**pki)
    directory: DirectorySetup = field(default_factory=DirectorySetup)
    dhcp: dict[str, Any] = field(default_factory=dict)         # LabDHCP(..., **dhcp)
    dc: Any = None                                              # SambaDC, from the directory stage on
    devices: list[Any] = field(default_factory=list)            # DeviceSpec
    site_spec: Any = None                                       # SiteServerSpec
    site: Any = None                                            # SiteServerSimulator (running)
    ca_host: dict[str, Any] = field(default_factory=dict)      # CaHostSpec(..., **ca_host), set at site_server
    firewall: list[tuple[str, int]] = field(default_factory=list)  # (address, port) whose SYNs are dropped
    lab_pki: Any = None                                         # LabPKI, from the directory_setup stage on
    era: str = "modern"                                         # the description's era ("2009": SHA-1 signatures)
    windows: list[Any] = field(default_factory=list)            # WindowsClientSpec of the in-band clients
    console: Any = None                                         # WindowsClientSpec of the console host
    dns_servers: list[str] = field(default_factory=list)        # the environment's DNS servers; default the DC


@dataclass(frozen=True)
class Param:
    default: Any
    kind: type | tuple[type, ...]
    doc: str
    check: Callable[[Any], str | None] = lambda value: None  # returns a complaint, or None


@dataclass(frozen=True)
class Fault:
    name: str
    doc: str
    scope: str                                  # "client" or "site"
    steps: dict[str, Callable[..., None]]       # stage -> fn(ctx, target, **params)
    fails: tuple[str, ...]                      # catalog check ids this fault is meant to make fail
    params: dict[str, Param] = field(default_factory=dict)
    needs: str = ""                             # "", "out_of_band", "in_band", "provisioned"
    passes: tuple[str, ...] = ()                # a healthy variant (no fails): the checks it is meant to leave passing


@dataclass(frozen=True)
class Planted:
    fault: Fault
    client: int | None                          # index into the client plan
    params: dict[str, Any]

    def describe(self, clients: list[ClientPlan]) -> dict[str, Any]:
        return {"fault": self.fault.name, "client": None if self.client is None else clients[self.client].fqdn,
                "params": self.params,
                "fails": [check.replace("<kb>", str(self.params.get("kb", ""))) for check in self.fault.fails]}


FAULTS: dict[str, Fault] = {}


def fault(name: str, doc: str, *, scope: str, fails: tuple[str, ...], params: dict[str, Param] | None = None,
          needs: str = "", passes: tuple[str, ...] = (), **steps: Callable[..., None]) -> None:
    assert scope in ("client", "site") and set(steps) <= set(STAGES) and bool(fails) != bool(passes), name
    FAULTS[name] = Fault(name, doc, scope, steps, fails, params or {}, needs, passes)


# --------------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------------
def _known() -> str:
    return ", ".join(sorted(FAULTS))


def _client_index(where: str, value: Any, clients: list[ClientPlan]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= len(clients):
            return value - 1
        raise DescriptionError(f"{where}: client {value} is not in this lab (clients are 1..{len(clients)})")
    if isinstance(value, str):
        name = value.lower().removesuffix(f".{DOMAIN}")
        for c in clients:
            if c.fqdn.split(".")[0] == name:
                return c.index
        raise DescriptionError(f"{where}: no client named {value!r} (pc0001 .. {clients[-1].fqdn.split('.')[0]})")
    raise DescriptionError(f"{where}: client must be a number (1 = pc0001) or a name, not {value!r}")


def _params(where: str, f: Fault, given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(f.params))
    if unknown:
        known = ", ".join(f.params) or "none"
        raise DescriptionError(f"{where}: {f.name} has no parameter(s) {', '.join(unknown)}; its parameters: {known}")
    out = {}
    for key, p in f.params.items():
        value = given.get(key, p.default)
        if key in given:
            kinds = p.kind if isinstance(p.kind, tuple) else (p.kind,)
            if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
                names = " or ".join(k.__name__ for k in kinds)
                raise DescriptionError(f"{where}: {f.name}.{key} must be {names}, not {value!r}")
            if complaint := p.check(value):
                raise DescriptionError(f"{where}: {f.name}.{key}: {complaint}")
        out[key] = value
    return out


def parse(entries: Any, clients: list[ClientPlan]) -> list[Planted]:
    """The description's ``faults`` list, checked; raises DescriptionError with the entry's position."""
    if not isinstance(entries, list):
        raise DescriptionError(f"lab.faults must be a list of {{fault: NAME, ...}}, not {entries!r}")
    planted: list[Planted] = []
    for i, entry in enumerate(entries):
        where = f"lab.faults[{i}]"
        if isinstance(entry, str):
            entry = {"fault": entry}
        if not isinstance(entry, dict) or "fault" not in entry:
            raise DescriptionError(f"{where}: expected {{fault: NAME, ...}}, found {entry!r}; known faults: {_known()}")
        given = dict(entry)
        name = given.pop("fault")
        f = FAULTS.get(name)
        if f is None:
            raise DescriptionError(f"{where}: unknown fault {name!r}; known faults: {_known()}")
        where = f"{where} ({name})"
        index = None
        if f.scope == "client":
            if "client" not in given:
                raise DescriptionError(f"{where}: {name} is a client fault: give client: N or a client name")
            index = _client_index(where, given.pop("client"), clients)
        elif "client" in given:
            raise DescriptionError(f"{where}: {name} is site-wide: it takes no client")
        p = Planted(f, index, _params(where, f, given))
        if p in planted:
            raise DescriptionError(f"{where}: planted twice")
        planted.append(p)
    # A fault that needs, say, a provisioned client is judged on the plan the other faults leave.
    trial = [replace(c) for c in clients]
    for p in planted:
        if "plan" in p.fault.steps and p.client is not None:  # a site fault's plan step needs the whole context
            p.fault.steps["plan"](None, trial[p.client], **p.params)
    for i, p in enumerate(planted):
        if p.client is not None:
            _check_needs(f"lab.faults[{i}] ({p.fault.name})", p.fault, trial[p.client])
    return planted


def _check_needs(where: str, f: Fault, c: ClientPlan) -> None:
    ok = {"": True, "out_of_band": c.provisioning == "out_of_band", "in_band": c.provisioning == "in_band",
          "provisioned": c.provisioned}[f.needs]
    if not ok:
        article = "an" if f.needs[0] in "aeiou" else "a"
        raise DescriptionError(f"{where}: {f.name} needs {article} {f.needs.replace('_', '-')} client; "
                               f"{c.fqdn} is {c.provisioning.replace('_', '-')}"
                               f"{'' if c.provisioned else ', not provisioned'}")


# --------------------------------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------------------------------
def _target(stage: str, ctx: Context, index: int) -> Any:
    client = ctx.clients[index]
    if stage in ("plan", "directory"):
        return client
    if stage == "device":
        device = next((d for d in ctx.devices if d.fqdn == client.fqdn), None)
        if device is None:
            raise DescriptionError(f"{client.fqdn}: a device fault on a device 'unreachable' took away")
        return device
    if stage in ("site_server", "running"):
        return ctx.site_spec.client(client.fqdn)
    if stage == "windows":
        return next(s for s in ctx.windows if s.fqdn == client.fqdn)
    raise ValueError(f"stage {stage} has no client targets")


def apply(stage: str, planted: list[Planted], ctx: Context, **decided: Any) -> None:
    """Record what the estate decided at this point (``decided``: fields of :class:`Context`, e.g. ``dc=...``)
    and run every planted fault's step for ``stage``."""
    assert stage in STAGES, stage
    for key, value in decided.items():
        assert hasattr(ctx, key), key
        setattr(ctx, key, value)
    for p in planted:
        step = p.fault.steps.get(stage)
        if step is not None:
            step(ctx, None if p.client is None else _target(stage, ctx, p.client), **p.params)


def table() -> list[dict[str, Any]]:
    """The fault table, for docs and reports: one row per fault."""
    return [{"fault": f.name, "scope": f.scope, "params": {k: p.default for k, p in f.params.items()},
             "param_docs": {k: p.doc for k, p in f.params.items()}, "changes": f.doc, "stages": list(f.steps),
             "fails": list(f.fails), "passes": list(f.passes), "needs": f.needs} for f in FAULTS.values()]


# --------------------------------------------------------------------------------------------------------------
# Small helpers the steps share
# --------------------------------------------------------------------------------------------------------------
def _set(**values: Any) -> Callable[..., None]:
    """A step that sets attributes of the target (a client's plan, device spec or site record)."""
    def step(ctx: Context, target: Any, **_params: Any) -> None:
        for key, value in values.items():
            setattr(target, key, value)
    return step


def _option(kind: str, **values: Any) -> Callable[..., None]:
    """A step that sets keys of ``ctx.<kind>`` (the PKI or DHCP knobs)."""
    def step(ctx: Context, target: None, **_params: Any) -> None:
        getattr(ctx, kind).update(values)
    return step


def _site(fn: Callable[[Any], None]) -> Callable[..., None]:
    """A site_server step for a site-wide fault: ``fn(spec)``."""
    return lambda ctx, target, **params: fn(ctx.site_spec, **params)


def _ipv4(value: str) -> str | None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 address"
    return None


def _provision_server_address(ctx: Context, address: str | None) -> str:
    return address or f"127.{ctx.plan.net}.0.99"  # no lab host listens there


def _amt_object_dn(ctx: Context, c: ClientPlan) -> str:
    return ctx.dc.amt_account_dn(c.fqdn)


def _os_account_dn(ctx: Context, c: ClientPlan) -> str:
    return ctx.dc.os_account_dn(c.fqdn)


def _reverse(ctx: Context, c: ClientPlan) -> tuple[str, str]:
    zone = ctx.dc.reverse_zone()
    return reverse_name(c.address, zone), zone


def _log_failed_provisioning(ctx: Context, record: Any, *, reason: str) -> None:
    """The lines a real AMTOPMGR.LOG holds for a provisioning attempt that failed (an hour ago)."""
    when = dt.datetime.now().astimezone() - dt.timedelta(hours=1)
    fields = {"fqdn": record.fqdn, "uuid": record.uuid, "ip": record.address, "mode": record.provisioning_mode}
    ctx.site.log.event("hello_received", when=when, thread=THREADS["hello"], retry=0, **fields)
    ctx.site.log.event("provisioning_started", when=when + dt.timedelta(seconds=2), thread=THREADS["provision"],
                       **fields)
    ctx.site.log.event("provisioning_failed", when=when + dt.timedelta(seconds=9), thread=THREADS["provision"],
                       reason=reason, **fields)
    record.hello_heard = True  # the site knows its AMT from that hello: AMTStatus 2, not provisioned


def _self_signed(ctx: Context, spec: Any) -> None:
    """AMT 3.2.1 firmware serves a certificate it made itself: self-signed, not from the enterprise CA (signed with
    SHA-1 in a lab of 2009)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.fqdn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = sign(x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(spec.fqdn)]), critical=False),
                key, "sha1" if ctx.era == "2009" else "sha256")
    folder = ctx.state / "amt" / "self-signed"
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{spec.fqdn}.pem", folder / f"{spec.fqdn}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    spec.tls_cert, spec.tls_key = str(cert_path), str(key_path)
