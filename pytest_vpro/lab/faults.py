"""Planted faults: the lab description's ``faults:`` list, turned into changes of the estate's data.

A description names faults as data::

    faults:
      - {fault: missing_ptr, client: 3}                    # client by number (pc0003) ...
      - {fault: clock_skew, client: pc0005, seconds: 900}  # ... or by name / FQDN, with parameters
      - {fault: dhcp_no_option15}                          # site-wide faults take no client

:func:`parse` checks every entry against :data:`FAULTS` (unknown names, bad clients and bad parameters raise
:class:`~pytest_vpro.lab.names.DescriptionError` naming the fault and listing the known ones). :func:`apply` is
called by :func:`pytest_vpro.lab.estate.build` at each point where the estate's data is decided, the *stages*:

=============== =========================================================== ==================================
stage           when                                                        a client fault's ``target``
=============== =========================================================== ==================================
plan            after the client plan (names, provisioned or not)           the :class:`ClientPlan`
pki             before the CAs are made: ``ctx.pki`` (PkiFaults fields)     -
directory_setup before the directory is populated: ``ctx.directory``        -
directory       after population, as an administrator would (LDAP, DNS)     the :class:`ClientPlan`
dhcp            before dnsmasq starts: ``ctx.dhcp`` (LabDHCP knobs)          -
device          before the AMT simulator starts: ``ctx.devices``            the client's ``DeviceSpec``
site_server     before the site server starts: ``ctx.site_spec``            the client's ``ClientRecord``
running         once the site server runs: ``ctx.site`` (its log)            the client's ``ClientRecord``
windows         before the Windows hosts start: ``ctx.windows`` (in-band    the client's ``WindowsClientSpec``
                clients' OS), ``ctx.console`` (the console host's)          (in-band clients only)
=============== =========================================================== ==================================

The fault table (name, parameters, what it changes, which catalog checks it makes fail) is :data:`FAULTS`;
``docs/lab.md`` prints it. This module knows nothing of pytest.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ..probes import x509 as certs
from .addresses import AddressPlan
from .amt_sim import AclEntry
from .names import (
    CONSOLE_USER,
    DOMAIN,
    NETBIOS,
    OPERATORS_GROUP,
    SITE_SERVER_ACCOUNT,
    SYSTEM_CERTIFICATES,
    ClientPlan,
    DescriptionError,
)
from .pki import (
    ISSUING_CA_NAME,
    sign,
)
from .samba import reverse_name
from .site_server import (
    AMT_STATUS,
    IPSEC_GPO_KEY,
    KB908209_KEY,
    OOB_SP2_PROPS,
    THREADS,
    WINRM_STACK_KEY,
    applicable_hotfixes,
)
from .windows_client import TABLET_PC_KEY

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
          needs: str = "", **steps: Callable[..., None]) -> None:
    assert scope in ("client", "site") and set(steps) <= set(STAGES), name
    FAULTS[name] = Fault(name, doc, scope, steps, fails, params or {}, needs)


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
        if "plan" in p.fault.steps:
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
             "fails": list(f.fails), "needs": f.needs} for f in FAULTS.values()]


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
    return ctx.dc.account_dn(c.fqdn.split(".")[0].upper()[:15] + "$")


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


# --------------------------------------------------------------------------------------------------------------
# Client faults
# --------------------------------------------------------------------------------------------------------------
def _underscore(ctx: Context, c: ClientPlan) -> None:
    host, _, domain = c.fqdn.partition(".")
    c.fqdn = f"{host[:2]}_{host[2:]}.{domain}"


fault("fqdn_underscore", "The client's host name has an underscore (pc0003 becomes pc_0003) everywhere: DNS, AD, "
      "certificate, AMT settings, inventory.", scope="client", plan=_underscore,
      fails=("S3-CLIENT-FQDN-VALID-CHARACTERS",))


def _missing_ptr(ctx: Context, c: ClientPlan) -> None:
    name, zone = _reverse(ctx, c)
    ctx.dc.delete_dns_record(name, "PTR", c.fqdn, zone)


fault("missing_ptr", "The client's PTR record is deleted from the reverse zone (the A record stays).",
      scope="client", directory=_missing_ptr, fails=("S3-CLIENT-NAME-RESOLUTION-FWD-REV",))


def _wrong_ptr(ctx: Context, c: ClientPlan, points_to: str | None) -> None:
    name, zone = _reverse(ctx, c)
    ctx.dc.delete_dns_record(name, "PTR", c.fqdn, zone)
    ctx.dc.add_dns_record(name, "PTR", points_to or f"old-{c.fqdn}", zone)


fault("wrong_ptr", "The client's PTR record names another host (a stale record).", scope="client",
      directory=_wrong_ptr, params={"points_to": Param(None, str, "the name the PTR returns (default old-<fqdn>)")},
      fails=("S3-CLIENT-NAME-RESOLUTION-FWD-REV",))
def _windows_name_underscore(ctx: Context, c: ClientPlan) -> None:
    """The PC's Windows name has an underscore: its DNS client registers that name (A) and the DHCP server the
    PTR of its lease to it; the administrator's static A record of the inventory name stays."""
    host, _, domain = c.fqdn.partition(".")
    registered = f"{host[:2]}_{host[2:]}.{domain}"
    name, zone = _reverse(ctx, c)
    ctx.dc.add_dns_record(registered.removesuffix("." + ctx.dc.domain), "A", c.address)
    ctx.dc.delete_dns_record(name, "PTR", c.fqdn, zone)
    ctx.dc.add_dns_record(name, "PTR", registered, zone)


fault("dns_name_underscore", "The PC was named with an underscore in Windows (PC_0005): it registered "
      "pc_0005.<domain> in DNS (A) and the DHCP server the PTR record of its address to that name; the inventory, "
      "AD and AMT know it as pc0005, whose static A record stays.", scope="client",
      directory=_windows_name_underscore,
      fails=("S3-CLIENT-FQDN-VALID-CHARACTERS", "S3-CLIENT-NAME-RESOLUTION-FWD-REV"))
fault("no_amt_object", "The client's AMT account object is deleted from the AMT container (the device keeps its "
      "keys, the KDC has no principal for its SPNs).", scope="client", needs="provisioned",
      directory=lambda ctx, c: ctx.dc.delete(_amt_object_dn(ctx, c)),
      fails=("S3-AD-MC-OBJECT-CREATED", "S3-AD-MC-SPNS-WRITTEN", "S1-CLIENT-SAME-AD-FOREST",
             "S5-KERBEROS-TICKET-FOR-AMT", "S5-OOB-CONSOLE-CONNECTS"))


def _disable(ctx: Context, c: ClientPlan) -> None:
    dn = _amt_object_dn(ctx, c)
    uac = int(ctx.dc.read(dn, ["userAccountControl"])["userAccountControl"][0])
    ctx.dc.conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [uac | ACCOUNTDISABLE])]})


fault("amt_object_disabled", "The client's AMT object has ACCOUNTDISABLE (0x2) in userAccountControl.",
      scope="client", needs="provisioned", directory=_disable, fails=("S3-AD-MC-OBJECT-NOT-FLAGGED",))


def _missing_spn(ctx: Context, c: ClientPlan, port: int) -> None:
    dn = _amt_object_dn(ctx, c)
    ctx.dc.set_spns(dn, [s for s in ctx.dc.get_spns(dn) if s.lower() != f"http/{c.fqdn}:{port}".lower()])


fault("missing_spn", "The AMT object lacks the SPN HTTP/<fqdn>:<port>. (Samba's KDC still issues a ticket for "
      "it, finding the account another way: unlike AD, Kerberos keeps working.)", scope="client", needs="provisioned",
      directory=_missing_spn, params={"port": Param(16993, int, "the port whose SPN is removed",
                                                     lambda v: None if v in (16992, 16993) else "16992 or 16993")},
      fails=("S3-AD-MC-SPNS-WRITTEN",))
fault("root_hash_missing", "The device's trusted root hash list lacks the lab root CA's hash.", scope="client",
      device=lambda ctx, d: setattr(d, "hashes", [h for h in d.hashes if h[1] != "VPROLAB Root CA"]),
      fails=("S3-PROV-CERT-ROOT-HASH-IN-AMT",))
fault("power_policy_s0_only", "The device's power policy is 'Desktop: ON in S0' (ME off in sleep states).",
      scope="client", device=_set(power_scheme="Desktop: ON in S0"),
      fails=("S4-ME-POWER-PACKAGE-S0-S5", "S4-POWER-DOWN", "S4-POWER-UP"))
fault("sol_ider_disabled", "AMT_RedirectionService.EnabledState is 32768 (SOL and IDER disabled).",
      scope="client", params={"state": Param(32768, int, "EnabledState: 32768 none, 32769 IDER, 32770 SOL")},
      device=lambda ctx, d, state: setattr(d, "redirection_state", state),
      fails=("S5-SOL-IDER-ENABLED-IN-AMT", "S5-SOL-IDER-SESSION"))
fault("ider_boot_off_in_bios", "IDE-R boot is switched off in the client's BIOS Setup: AMT_BootCapabilities.IDER "
      "is false and the BIOS boots its hard disk whatever the console asks.", scope="client",
      device=_set(bios_ider_boot=False), fails=("S5-SOL-IDER-SESSION",))
fault("clock_skew", "The device's clock is off by `seconds`.", scope="client",
      params={"seconds": Param(600, (int, float), "device clock minus real time")},
      device=lambda ctx, d, seconds: setattr(d, "clock_offset_s", float(seconds)), fails=("S5-TIME-SYNCHRONIZED",))


def _acl_without_console(ctx: Context, d: Any) -> None:
    d.acl = [AclEntry(kerberos_sid=f"{ctx.dc.domain_sid}-500")]  # only the domain's Administrator


fault("console_user_not_in_acl", "The device's user ACL has no entry for the console user (only Administrator).",
      scope="client", device=_acl_without_console, fails=("S5-CONSOLE-USER-IN-AMT-ACL", "S5-AMT-REALMS-ENABLED"))
fault("kerberos_disabled", "Kerberos is off on the device: KrbEnabled false and no Negotiate accepted "
      "(Digest still works).", scope="client", device=_set(kerberos_enabled=False, kerberos_keytab=""),
      fails=("S5-OOB-CONSOLE-CONNECTS", "S5-OOB-CONSOLE-SYSTEM-STATUS", "S6-WEBUI-LOGIN"))


def _not_imported(ctx: Context, record: Any) -> None:
    record.imported_oob = False
    for col in ctx.site_spec.collections:
        if record.fqdn in col.get("members", []):
            col["members"].remove(record.fqdn)


fault("not_imported", "The site server has not imported the out of band client: no OOB import agent and in no "
      "collection (its hellos are discarded).", scope="client", needs="out_of_band", site_server=_not_imported,
      fails=("S3-OOB-CLIENT-IMPORTED",))
fault("import_wrong_guid", "The out of band client was imported with a wrong SMBIOS GUID (SMS_R_System.SMBIOSGUID "
      "is not its UUID), so the site cannot match its hellos to the import.", scope="client", needs="out_of_band",
      site_server=lambda ctx, r: setattr(r, "uuid", str(uuid.uuid5(uuid.NAMESPACE_DNS, f"mistyped.{r.fqdn}"))),
      fails=("S3-OOB-CLIENT-IMPORTED",))
fault("agent_on_oob_client", "An out of band client has the Configuration Manager agent installed "
      "(SMS_R_System.Client = 1).", scope="client", needs="out_of_band",
      site_server=_set(client=1, client_version="4.00.6221.1000"), fails=("S3-OOB-CLIENT-NO-SCCM-AGENT",))
fault("old_agent", "The in-band client's Configuration Manager agent predates SP1 (its SMS_Client.ClientVersion and "
      "the site's SMS_R_System.ClientVersion).", scope="client", needs="in_band",
      params={"version": Param("4.00.5931.0001", str, "the agent's version (RTM is 4.00.5931)")},
      site_server=lambda ctx, r, version: setattr(r, "client_version", version),
      windows=lambda ctx, w, version: setattr(w, "agent_version", version), fails=("S1-CLIENT-AGENT-SP1",))
fault("no_hellos", "The client is not provisioned and never sends hello packets.", scope="client",
      plan=_set(provisioned=False), device=_set(send_hellos=False),
      fails=("S2-CLIENT-SENDING-HELLO", "S2-AMTOPMGR-HELLO-RECEIVED", "S2-ME-ENTERPRISE-PKI-OR-PSK",
             "S2-ME-UNPROVISIONED", "S3-AMTOPMGR-PROVISIONING-COMPLETED"))
fault("provisioning_failed", "The client is not provisioned; AMTOPMGR.LOG shows its provisioning failed, with a "
      "reason.", scope="client", plan=_set(provisioned=False),
      params={"reason": Param("TLS handshake with the AMT device failed: the device does not trust the "
                              "provisioning certificate's root", str, "the failure reason the log gives")},
      running=lambda ctx, r, reason: _log_failed_provisioning(ctx, r, reason=reason),
      fails=("S3-AMTOPMGR-PROVISIONING-COMPLETED", "S3-AD-MC-OBJECT-CREATED", "S4-MC-DISCOVERED"))
fault("hostname_mismatch", "The ME's host name (AMT_GeneralSettings.HostName) differs from the OS host name.",
      scope="client", params={"host_name": Param(None, str, "the ME host name (default <host>-me)")},
      device=lambda ctx, d, host_name: setattr(d, "host_name", host_name or f"{d.fqdn.split('.')[0]}-me"),
      fails=("S3-ME-HOSTNAME-MATCHES-OS",))

fault("me_hostname_underscore", "A technician typed the ME's host name in MEBx with an underscore (pc0007 becomes "
      "pc_0007, AMT_GeneralSettings.HostName) before provisioning; the OS and DNS keep pc0007.", scope="client",
      needs="provisioned",
      device=lambda ctx, d: setattr(d, "host_name", (lambda h: f"{h[:2]}_{h[2:]}")(d.fqdn.split(".")[0])),
      fails=("S3-CLIENT-FQDN-VALID-CHARACTERS", "S3-ME-HOSTNAME-MATCHES-OS"))

# -- provisioning requests (stage 2) and their outcome (stage 3) ------------------------------------------------
def _log_hello_sequence(ctx: Context, record: Any, *, hours: float) -> None:
    """The hello lines of a device that sent its whole sequence, retry 0 to 14, less and less often over the 6
    hours after it was turned on ``hours`` ago (a lab assumption: about 6 hours, less and less often)."""
    start = dt.datetime.now().astimezone() - dt.timedelta(hours=hours)
    for retry in range(15):
        when = start + dt.timedelta(hours=6) * ((2 ** retry - 1) / (2 ** 14 - 1))
        ctx.site.log.event("hello_received", when=when, thread=THREADS["hello"], fqdn=record.fqdn,
                           uuid=record.uuid, ip=record.address, mode=record.provisioning_mode, retry=retry)
    record.hello_heard = True  # the site knows its AMT from those hellos: AMTStatus 2, not provisioned


def _computer_account_only(ctx: Context, c: ClientPlan) -> None:
    """No AMT object: the client keeps only its own computer account (in CN=Computers, as an un-provisioned
    client's)."""
    ctx.dc.delete(_amt_object_dn(ctx, c))
    ctx.dc.add_computer(c.fqdn.split(".")[0].upper()[:15], dns_host_name=c.fqdn, with_keys=False)


def _not_provisioned_by_site(ctx: Context, record: Any) -> None:
    """The site has no record of provisioning the client: no history lines; its discovery found the ME provisioned
    with credentials the site does not know: AMTStatus 1, "detected" (the documented status of a computer provisioned
    outside Configuration Manager)."""
    record.provisioned, record.amt_status, record.ztc_requested = False, AMT_STATUS["detected"], False


fault("hellos_exhausted", "The client is not provisioned and has sent its whole hello sequence (retry 0 to 14, in "
      "AMTOPMGR.LOG over the 6 hours after it was turned on `hours` ago); its ME sends no more.", scope="client",
      params={"hours": Param(7, (int, float), "when the sequence began, hours ago (it lasts 6)",
                             lambda v: None if v >= 6 else "at least 6 (the sequence lasts 6 hours)")},
      plan=_set(provisioned=False), device=_set(send_hellos=False),
      running=lambda ctx, r, hours: _log_hello_sequence(ctx, r, hours=hours),
      fails=("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", "S2-CLIENT-SENDING-HELLO"))
fault("me_provisioned_elsewhere", "The ME holds a provisioning record the site did not make (another provisioning "
      "server, or one from before the site was rebuilt): post-provisioning, so it sends no hellos, while the site "
      "never provisioned it (no AMTOPMGR.LOG lines, no AMT object; SMS_R_System.AMTStatus 1, detected).",
      scope="client", needs="provisioned", directory=_computer_account_only,
      site_server=_not_provisioned_by_site,
      fails=("S2-ME-UNPROVISIONED", "S2-AMTOPMGR-HELLO-RECEIVED", "S2-CLIENT-SENDING-HELLO"))
fault("small_business_mode", "The ME was set up in Small Business mode in MEBx (post-provisioning, "
      "AMT_SetupAndConfigurationService.ProvisioningMode 2): it sends no hellos, and the site never provisioned it "
      "(no AMTOPMGR.LOG lines, no AMT object; SMS_R_System.AMTStatus 1, detected).", scope="client",
      needs="provisioned",
      directory=_computer_account_only, device=_set(provisioning_mode=2),
      site_server=_not_provisioned_by_site,
      fails=("S2-ME-ENTERPRISE-PKI-OR-PSK", "S2-ME-UNPROVISIONED", "S2-AMTOPMGR-HELLO-RECEIVED",
             "S2-CLIENT-SENDING-HELLO"))


def _mei_stopped(ctx: Context, w: Any, installed: bool) -> None:
    w.mei_installed, w.mei_started = installed, False


fault("mei_driver_stopped", "The in-band client's Intel MEI (HECI) driver is installed but not started (with "
      "`installed: false`, not installed); its agent logs that it cannot reach the ME and, if the client is not "
      "provisioned yet, sends no ZTC request.", scope="client", needs="in_band",
      params={"installed": Param(True, bool, "the driver is installed (false: absent)")},
      windows=_mei_stopped, site_server=_set(ztc_requested=False), fails=("S2-INBAND-MEI-DRIVER",))


def _unassigned(ctx: Context, w: Any, site_code: str) -> None:
    w.site_code, w.policy_downloaded = site_code.upper(), False


fault("unassigned_agent", "The in-band client's Configuration Manager agent is assigned to no site (or, with "
      "`site_code`, to a site without the out of band service point): it gets no provisioning policy and sends no "
      "ZTC request.", scope="client", needs="in_band",
      params={"site_code": Param("", str, "the assigned site code ('' = none)",
                                 lambda v: None if v == "" or (len(v) == 3 and v.isalnum()) else "3 characters")},
      windows=_unassigned, site_server=_set(ztc_requested=False),
      fails=("S2-INBAND-AGENT-ASSIGNED-OOB-SITE", "S2-INBAND-POLICY-DOWNLOADED"))


def _no_policy(ctx: Context, w: Any, hours: float) -> None:
    w.policy_downloaded, w.history_age_s = False, hours * 3600.0


fault("policy_not_downloaded", "The in-band client is not provisioned and its agent, running for `hours`, has not "
      "received the automatic provisioning policy (OOBMGMT.LOG has no policy line), so it sent no ZTC request.",
      scope="client", needs="in_band",
      params={"hours": Param(30, (int, float), "how long the agent has run without the policy (the guide: up to "
                             "25 hours is normal)", lambda v: None if v > 0 else "a positive number")},
      plan=_set(provisioned=False), windows=_no_policy, site_server=_set(ztc_requested=False),
      fails=("S2-INBAND-POLICY-DOWNLOADED", "S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING",
             "S2-AMTOPMGR-ZTC-REQUEST-RECEIVED"))


def _child_provision_server(ctx: Context, c: ClientPlan, child: str) -> None:
    """The child domain's ProvisionServer record (the ME looks it up in its own domain): the service point."""
    try:
        ctx.dc.add_dns_record(f"ProvisionServer.{child}", "A", ctx.plan.site_server)
    except Exception:  # noqa: BLE001 - a second client in the same child domain: the record is there
        pass


fault("third_level_domain", "The client's subnet hands out DHCP option 15 <child>.<domain>: its ME takes the "
      "third-level domain branch.vprolab.test (AMT_GeneralSettings.DomainName; DNS has a ProvisionServer record "
      "there), while the provisioning certificate is for <domain> and the OS keeps its primary suffix <domain>.",
      scope="client", params={"child": Param("branch", str, "the child domain's label",
                                             lambda v: None if v.isalnum() else "letters and digits only")},
      directory=_child_provision_server,
      device=lambda ctx, d, child: setattr(d, "domain_name", f"{child}.{d.fqdn.split('.', 1)[1]}"),
      fails=("S3-THIRD-LEVEL-DOMAIN-TRUSTED", "S3-ME-HOSTNAME-MATCHES-OS"))


def _amt_321(ctx: Context, d: Any) -> None:
    d.amt_version = "3.2.1"
    _self_signed(ctx, d)


fault("legacy_amt", "The device runs AMT 3.0 (no WS-MAN: /wsman answers 404) and the site server has no WS-MAN "
      "translator.", scope="client", device=_set(amt_version="3.0.0"), site_server=_set(amt_full_version="3.0.0"),
      fails=("S1-WSMAN-TRANSLATOR-LEGACY", "S5-OOB-CONSOLE-CONNECTS", "PRE-CLIENT-VPRO-SUPPORTED-AMT"))
fault("amt_321", "The device runs AMT 3.2.1 and serves a self-signed TLS certificate on 16993.", scope="client",
      device=_amt_321, site_server=_set(amt_full_version="3.2.1"),
      fails=("S3-AMT-321-SELF-SIGNED-CERT", "S3-CLIENT-AMT-WEB-SERVER-CERT"))
fault("unreachable", "The device does not answer: nothing listens on its address (16992/16993 refused).",
      scope="client", device=lambda ctx, d: ctx.devices.remove(d),
      fails=("S1-PORTS-SERVICE-POINT-TO-AMT", "S1-PORTS-CONSOLE-TO-AMT", "S5-OOB-CONSOLE-CONNECTS",
             "S6-WEBUI-CONNECTS"))

# --------------------------------------------------------------------------------------------------------------
# Site-wide faults
# --------------------------------------------------------------------------------------------------------------


def _provision_server_wrong(ctx: Context, target: None, address: str | None) -> None:
    ctx.dc.delete_dns_record("ProvisionServer", "A", ctx.plan.site_server)
    ctx.dc.add_dns_record("ProvisionServer", "A", _provision_server_address(ctx, address))


def _hellos_to(address: Callable[[Context, dict[str, Any]], str | None]) -> Callable[..., None]:
    """Devices find the service point through ProvisionServer: their hellos follow the record (or go nowhere)."""
    def step(ctx: Context, target: None, **params: Any) -> None:
        where = address(ctx, params)
        for d in ctx.devices:
            d.provision_server = (where, 9971) if where else None
    return step


fault("provision_server_wrong_address", "ProvisionServer.<domain> resolves to an address that is not the out of "
      "band service point; un-provisioned devices send their hellos there.", scope="site",
      params={"address": Param(None, str, "the record's address (default 127.<net>.0.99, nobody listens)", _ipv4)},
      directory=_provision_server_wrong,
      device=_hellos_to(lambda ctx, p: _provision_server_address(ctx, p["address"])),
      fails=("S2-PROVISIONSERVER-RESOLVES-TO-SERVICE-POINT", "S2-AMTOPMGR-HELLO-RECEIVED"))
fault("no_provision_server_record", "ProvisionServer.<domain> does not exist; un-provisioned devices send no "
      "hellos.", scope="site", directory=lambda ctx, t: ctx.dc.delete_dns_record("ProvisionServer"),
      device=_hellos_to(lambda ctx, p: None),
      fails=("S2-PROVISIONSERVER-RESOLVES-TO-SERVICE-POINT", "S2-CLIENT-SENDING-HELLO"))
fault("dhcp_no_option6", "The DHCP server gives no DNS servers (option 6).", scope="site",
      dhcp=_option("dhcp", option6=False), fails=("PRE-DHCP-OPTION-6",))
fault("dhcp_no_option15", "The DHCP server gives no domain name (option 15).", scope="site",
      dhcp=_option("dhcp", option15=False), fails=("S1-DHCP-OPTION-15", "S3-PROV-CERT-DOMAIN-TRUSTED-BY-AMT"))
fault("dhcp_option81_no_updates", "The DHCP server answers option 81 with flags O and N: it will not register "
      "clients in DNS.", scope="site", dhcp=_option("dhcp", option81="no-updates"), fails=("S1-DHCP-OPTION-81",))
fault("zone_no_dynamic_updates", "The domain's DNS zone allows no dynamic updates (dNSProperty allow-update 0).",
      scope="site", directory=lambda ctx, t: ctx.dc.set_zone_allow_update(0), fails=("S1-DNS-DYNAMIC-UPDATES",))
fault("issuing_ca_4096", "The issuing CA has a 4096-bit key (AMT accepts at most 2048).", scope="site",
      pki=_option("pki", issuing_key_bits=4096), fails=("PRE-CA-KEY-LENGTH-2048", "S3-PROV-CERT-KEY-LENGTH-2048"))
fault("provisioning_key_4096", "The provisioning certificate itself has a 4096-bit key (its CA chain is fine).",
      scope="site", pki=_option("pki", provisioning_key_bits=4096), fails=("S3-PROV-CERT-KEY-LENGTH-2048",))
fault("expired_provisioning_cert", "The provisioning certificate expired yesterday (its CA chain is in date).",
      scope="site", pki=_option("pki", expired_provisioning=True), fails=("S3-PROV-CERT-CHAIN-DATES-VALID",))
fault("expired_issuing_ca", "The issuing CA's certificate expired yesterday (every chain through it is invalid).",
      scope="site", pki=_option("pki", expired_issuing_ca=True),
      fails=("S3-ISSUING-CA-CHAIN-DATES-VALID", "S3-PROV-CERT-CHAIN-DATES-VALID", "S3-CLIENT-AMT-WEB-SERVER-CERT"))
fault("expired_crl", "The CRLs served over HTTP are expired (nextUpdate yesterday), also when re-published.",
      scope="site", pki=_option("pki", expired_crl=True), fails=("S3-CA-CRL-AIA-AVAILABLE",))


def _crl_not_in_directory(ctx: Context, target: None) -> None:
    if ctx.era != "2009":
        raise DescriptionError("crl_not_in_directory needs a lab of era 2009: only its certificates name ldap:/// CDPs")
    ctx.dc.delete(ctx.lab_pki.ldap_cdp_dn(ISSUING_CA_NAME))
    ctx.lab_pki.on_publish = None  # nor is it published again after a revocation


fault("crl_not_in_directory", "A lab of era 2009 only: the issuing CA's CRL is not in the directory (its ldap:/// "
      "CDP object under CN=CDP is deleted and never re-published), while the http:// copy is served.",
      scope="site", directory=_crl_not_in_directory, fails=("S3-CA-CRL-AIA-AVAILABLE",))
fault("prov_cert_no_amt_marker", "The provisioning certificate has neither the AMT OID 2.16.840.1.113741.1.2.3 "
      "nor the 'Intel(R) Client Setup Certificate' OU.", scope="site",
      pki=_option("pki", provisioning_amt_oid=False, provisioning_ou=False), fails=("S3-PROV-CERT-AMT-OID-OR-OU",))
fault("prov_cert_no_server_auth", "The provisioning certificate's EKU lacks serverAuth.", scope="site",
      pki=_option("pki", provisioning_server_auth=False), fails=("S3-PROV-CERT-SERVER-AUTH",))


def _log_certificate_rejected(ctx: Context, reason: str) -> None:
    cert = certs.load_chain((ctx.state / "pki" / "provisioning.pem").read_bytes())[0]
    ctx.site.log.event("provisioning_certificate_rejected", thread=THREADS["provision"],
                       fqdn=certs.common_name(cert), thumbprint=certs.fingerprint(cert, "sha1").upper(),
                       reason=reason)


fault("prov_cert_rejected", "AMTOPMGR.LOG shows the site server rejected the provisioning certificate when the out of "
      "band component was last configured, with `reason`.", scope="site",
      params={"reason": Param("the certificate has neither the Intel(R) AMT provisioning OID nor the 'Intel(R) "
                              "Client Setup Certificate' OU", str, "the reason the log gives")},
      running=lambda ctx, t, reason: _log_certificate_rejected(ctx, reason), fails=("S3-PROV-CERT-ACCEPTED-BY-SCCM",))


def _other_domain_rejected(ctx: Context, t: None, domain: str) -> None:
    _log_certificate_rejected(ctx, f"the subject CN domain {domain} differs from the site server's domain {DOMAIN}")


fault("prov_cert_other_domain", "The provisioning certificate is issued for sccm01.<domain> (`domain`, not the lab's): "
      "AMT clients of the lab's domain do not trust it, and AMTOPMGR.LOG shows the site server rejected it.",
      scope="site", params={"domain": Param("vprolab.example", str, "the certificate's CN domain",
                                            lambda v: None if "." in v and v != DOMAIN else "another DNS domain")},
      pki=lambda ctx, t, domain: ctx.pki.update(provisioning_domain=domain),
      site_server=lambda ctx, t, domain: setattr(ctx.site_spec, "provisioning_certificate_cn", ""),
      running=_other_domain_rejected,
      fails=("S3-PROV-CERT-ACCEPTED-BY-SCCM", "S3-PROV-CERT-DOMAIN-TRUSTED-BY-AMT"))
fault("no_provisioning_account", "The out of band component lists no AMT Provisioning and Discovery account, while "
      "the MEBx admin passwords are not the default.", scope="site",
      site_server=_site(lambda s: s.oob.update(provisioning_account="")), fails=("S3-ME-ADMIN-CREDENTIALS-KNOWN",))


def _template(**values: Any) -> Callable[..., None]:
    return lambda ctx, target: ctx.directory.template.update(values)


fault("template_no_server_auth", "The AMT web server certificate template's EKU is clientAuth, not serverAuth.",
      scope="site", directory_setup=_template(eku=(CLIENT_AUTH_EKU,)), fails=("S3-CA-WEB-SERVER-TEMPLATE-SETTINGS",))
fault("template_no_subject_in_request", "The template builds the subject from AD (no "
      "CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT).", scope="site",
      directory_setup=_template(enrollee_supplies_subject=False), fails=("S3-CA-WEB-SERVER-TEMPLATE-SETTINGS",))
fault("template_no_enroll_right", "The site server account has neither Read nor Enroll on the template.",
      scope="site", directory_setup=_template(enroll_for=()), fails=("S1-CA-WEB-SERVER-TEMPLATE-READ-ENROLL",))
fault("amt_container_no_full_control", "The site server account has only Read (GR), not Full Control, on the "
      "AMT container.", scope="site",
      directory_setup=lambda ctx, t: setattr(ctx.directory, "amt_container_rights", "GR"),
      fails=("S1-AD-AMT-CONTAINER-ACL",))


def _many_groups(ctx: Context, target: None, count: int) -> None:
    user_dn = ctx.dc.account_dn(CONSOLE_USER)
    for i in range(count):
        dn = ctx.dc.add_group(f"Lab Group {i + 1:03d}", group_type=DOMAIN_LOCAL_SECURITY_GROUP)
        ctx.dc.add_group_member(dn, user_dn)


fault("console_user_many_groups", "The console user is a member of `count` extra domain local security groups "
      "(TokenSz: 1200 + 40 bytes each, so the default 80 is over the 4096-byte limit; the Kerberos tickets grow "
      "too).", scope="site",
      params={"count": Param(80, int, "extra domain local groups", lambda v: None if 1 <= v <= 1000 else "1..1000")},
      directory=_many_groups, fails=("S5-CONSOLE-USER-TOKEN-SIZE",))


def _hotfix_ok(kb: str) -> str | None:
    known = applicable_hotfixes("Service Pack 2")
    return None if kb in known else f"{kb!r} is not a hot fix the site server lists; one of {', '.join(known)}"


def _remove_hotfix(spec: Any, kb: str) -> None:
    spec.hotfixes = [h for h in spec.hotfixes if h != kb]


fault("hotfix_missing", "The site server lacks the Appendix A hot fix `kb`.", scope="site",
      params={"kb": Param("KB942841", str, "the hot fix, e.g. KB942841", _hotfix_ok)},
      site_server=_site(_remove_hotfix), fails=("HF-<kb>",))
fault("no_oob_service_point_role", "The site has no out of band service point role.", scope="site",
      site_server=_site(lambda s: setattr(s, "roles", [r for r in s.roles if "Out of Band" not in r])),
      fails=("S1-OOB-SERVICE-POINT-INSTALLED",))
fault("webui_disabled", "The out of band component's 'Enable Web UI' is 0, so provisioning left every device's "
      "WebUI off (16993 answers 404 for its pages).", scope="site",
      site_server=_site(lambda s: s.oob.update(webui_enabled=0)),
      device=lambda ctx, t: [setattr(d, "webui_enabled", False) for d in ctx.devices],
      fails=("S6-WEBUI-ENABLED-IN-SCCM", "S6-WEBUI-CONNECTS", "S6-WEBUI-LOGIN"))


def _realms(ctx: Context, target: None, realms: list[int]) -> None:
    for d in ctx.devices:
        for entry in d.acl:
            entry.realms = list(realms)


fault("realms_disabled", "The out of band component enables only `realms`, and every device's ACL entries carry "
      "only those (default: no redirection 2, no remote control 5).", scope="site",
      params={"realms": Param([3, 4, 6, 7, 12, 13], list, "the AMT realms left enabled",
                              lambda v: None if all(isinstance(r, int) for r in v) else "a list of numbers")},
      device=_realms, site_server=lambda ctx, t, realms: ctx.site_spec.oob.update(realms_enabled=list(realms)),
      fails=("S5-AMT-REALMS-ENABLED",))


def _rtm(spec: Any) -> None:
    spec.site_version, spec.build_number, spec.service_pack = "4.00.5931.0000", 5931, ""
    spec.registry["HKLM\\" + spec.sms_key("Setup")]["Full Version"] = spec.site_version


fault("sccm_rtm", "The site runs Configuration Manager 2007 RTM (4.00.5931.0000), before SP1.", scope="site",
      site_server=_site(_rtm), fails=("S1-SCCM-SP1-SITE", "S1-SCCM-SUPPORTED-BASE-INSTALL"))


def _winrm_1_0(spec: Any) -> None:
    spec.winrm_version = "1.0"
    spec.registry["HKLM\\" + WINRM_STACK_KEY]["StackVersion"] = "1.0"
    _remove_hotfix(spec, "KB936059")  # the WinRM 1.1 update


fault("winrm_1_0", "The site server (out of band service point) has WinRM 1.0: stack version 1.0, no KB936059.",
      scope="site", site_server=_site(_winrm_1_0), fails=("PRE-WINRM-SERVICE-POINT", "HF-KB936059"))


def _winrm_kerberos_off(spec: Any) -> None:
    spec.kerberos_keytab = ""  # Negotiate (Kerberos) no longer accepted; Basic stays off, as by default


fault("winrm_kerberos_off", "Kerberos is turned off in the site server's WinRM service, as an administrator would "
      "(winrm set winrm/config/service/auth @{Kerberos=\"false\"}); Basic stays off, so the checks that read it "
      "over WinRM get no answer.", scope="site", site_server=_site(_winrm_kerberos_off),
      fails=("PRE-WINRM-SERVICE-POINT", "PRE-SERVICE-POINT-WINDOWS-2003-SP2"))


def _console(fn: Callable[..., None]) -> Callable[..., None]:
    """A windows step for a site-wide fault of the console host: ``fn(console_spec, **params)``."""
    return lambda ctx, target, **params: fn(ctx.console, **params)


def _drop_file(name: str) -> Callable[[Any], None]:
    return lambda w: setattr(w, "files", [f for f in w.files if not f.lower().endswith("\\" + name)])


def _no_telnet(w: Any) -> None:
    _drop_file("telnet.exe")(w)
    if "TelnetClient" in w.optional_features:  # Vista/2008 and later: the feature is off
        w.optional_features["TelnetClient"] = 2


def _console_winrm_1_0(w: Any) -> None:
    w.winrm_version = "1.0"
    w.registry["HKLM\\" + WINRM_STACK_KEY]["StackVersion"] = "1.0"
    w.hotfixes = [kb for kb in w.hotfixes if kb != "KB936059"]


def _root_store_without_subordinates(w: Any) -> None:
    """The console hosts' Group Policy object no longer lists the subordinate CA: its Group Policy store drops it."""
    prefix = (certs.STORE_LOCATIONS["group policy"] + "\\Root\\Certificates\\").upper()
    for path in [p for p, v in w.registry.items() if p.upper().startswith(prefix) and "Blob" in v]:
        cert = certs.parse_store_blob(w.registry[path]["Blob"])
        if cert.subject != cert.issuer:  # not self-signed: a subordinate CA
            del w.registry[path]


def _kb908209_key() -> str:
    return KB908209_KEY


def _console_xp_sp2(w: Any) -> None:
    w.csd_version, w.service_pack_major = "Service Pack 2", 2
    w.hotfixes = [kb for kb in w.hotfixes if kb != "KB908209"]


fault("no_msxml6", "MSXML 6.0 is not installed on the console host (no %windir%\\system32\\msxml6.dll).",
      scope="site", windows=_console(_drop_file("msxml6.dll")), fails=("PRE-MSXML6-CONSOLE",))
fault("no_telnet_client", "The console host has no Telnet client (no telnet.exe in system32; on Vista/2008 the "
      "TelnetClient feature is off, Win32_OptionalFeature InstallState 2).", scope="site",
      windows=_console(_no_telnet), fails=("S5-CONSOLE-TELNET-CLIENT",))
fault("console_winrm_1_0", "The console host has WinRM 1.0: stack version 1.0, no KB936059.", scope="site",
      windows=_console(_console_winrm_1_0), fails=("PRE-WINRM-CONSOLE",))
fault("console_root_store_incomplete", "The console hosts' Group Policy object (Public Key Policies, Trusted Root "
      "Certification Authorities) no longer lists the issuing (subordinate) CA: the console host's Trusted Root "
      "store holds the root CA (from AD, its Enterprise store) but not the issuing CA.", scope="site",
      windows=_console(_root_store_without_subordinates),
      fails=("S5-MULTITIER-PKI-CONSOLE-ROOT-STORE",))
fault("console_no_kb908209_registry", "The console host lacks KB908209's registry entry (iexplore.exe under "
      "FEATURE_INCLUDE_PORT_IN_SPN_KB908209).", scope="site",
      windows=_console(lambda w: w.registry.pop("HKLM\\" + _kb908209_key(), None)),
      fails=("HF-KB908209-REGISTRY",))
fault("console_xp_sp2", "The console host runs Windows XP SP2 without hot fix KB908209 (XP SP3 includes it).",
      scope="site", windows=_console(_console_xp_sp2), fails=("HF-KB908209",))
fault("no_auto_provision_collection", "No collection has automatic AMT provisioning enabled.", scope="site",
      site_server=_site(lambda s: [c.update(amt_auto_provision=False) for c in s.collections]),
      fails=("S2-INBAND-AUTO-PROVISIONING-COLLECTION",))


# --------------------------------------------------------------------------------------------------------------
# The Windows side of the site: the site server's OS and roles, the SMS Provider's settings and rights,
# in-band clients' operating systems
# --------------------------------------------------------------------------------------------------------------
def _windows_2003_sp1(spec: Any) -> None:
    spec.csd_version, spec.service_pack_major = "Service Pack 1", 1  # KB899900 and KB908209 came with SP2


fault("windows_2003_sp1", "The site server (the out of band service point) runs Windows Server 2003 SP1, without "
      "KB899900 and KB908209 (both part of SP2).", scope="site", site_server=_site(_windows_2003_sp1),
      fails=("PRE-SERVICE-POINT-WINDOWS-2003-SP2", "HF-KB899900"))
fault("no_reporting_point", "The site has no reporting point role.", scope="site",
      site_server=_site(lambda s: setattr(s, "roles", [r for r in s.roles if "Reporting Point" not in r])),
      fails=("PRE-REPORTING-POINT",))


def _ipsec_policy(spec: Any, name: str) -> None:
    domain = spec.fqdn.split(".", 1)[1]
    spec.registry["HKLM\\" + IPSEC_GPO_KEY] = {
        "DSIPSECPolicyName": name, "DSIPSECPolicyDescription": "For all IP traffic, always require security",
        "DSIPSECPolicyPath": "LDAP://CN=ipsecPolicy{7238523c-70fa-11d1-864c-14a300000000},CN=IP Security,"
                             "CN=System," + ",".join(f"DC={p}" for p in domain.split("."))}


fault("ipsec_policy", "A domain IPsec policy `name` is assigned to the site server (Group Policy: "
      "GPTIPSECPolicy in its registry).", scope="site",
      params={"name": Param("Secure Server (Require Security)", str, "the assigned policy's name")},
      site_server=lambda ctx, t, name: _ipsec_policy(ctx.site_spec, name), fails=("PRE-NO-IPSEC",))
fault("network_discovery_no_account", "Network discovery is enabled and the out of band component has no AMT "
      "Provisioning and Discovery Account.", scope="site",
      site_server=_site(lambda s: (setattr(s, "network_discovery", True), s.oob.update(provisioning_account=""))),
      fails=("PRE-NETWORK-DISCOVERY-PREREQS",))

RIGHTS = ("View management controllers", "Manage management controllers", "Modify Collection Setting")


def _without_rights(spec: Any, rights: list[str]) -> None:
    admin = f"{spec.fqdn.split('.')[1].upper()}\\administrator"
    for entry in spec.permissions:
        if entry["UserName"].lower() != admin:  # the operators lose them; the Administrator keeps everything
            entry["rights"] = [r for r in entry["rights"] if r not in rights]


fault("operator_lacks_rights", "The console user's group loses `rights` on the clients' collection "
      "(SMS_UserInstancePermissions).", scope="site",
      params={"rights": Param(list(RIGHTS), list, "the rights taken away",
                              lambda v: None if set(v) <= set(RIGHTS) else f"rights are {', '.join(RIGHTS)}")},
      site_server=lambda ctx, t, rights: _without_rights(ctx.site_spec, rights),
      fails=("PRE-RIGHT-VIEW-MANAGEMENT-CONTROLLERS", "PRE-RIGHT-MANAGE-MANAGEMENT-CONTROLLERS",
             "PRE-RIGHT-MODIFY-COLLECTION-SETTING"))


def _sp2_feature_ok(feature: str) -> str | None:
    return None if feature in OOB_SP2_PROPS else f"features are {', '.join(OOB_SP2_PROPS)}"


fault("sp2_feature_on_sp1", "The out of band component turns on the SP2-only `feature` while the site runs SP1.",
      scope="site", params={"feature": Param("auditing", str, "an SP2-only out of band setting", _sp2_feature_ok)},
      site_server=lambda ctx, t, feature: ctx.site_spec.oob.update({feature: 1}),
      fails=("PRE-SP2-FOR-SP2-FEATURES",))


def _old_amt(ctx: Context, target: Any, version: str) -> None:
    target.amt_version = version


fault("auditing_old_amt", "The device runs AMT `version` (below 4.0) and the site audits AMT operations (the SP2 "
      "auditing setting is on; the site runs SP1, so that fails too).", scope="client",
      params={"version": Param("3.2.2", str, "the AMT version (3.2.2 speaks WS-MAN and has no self-signed "
                                             "certificate issue)")},
      device=_old_amt, site_server=lambda ctx, r, version: (setattr(r, "amt_full_version", version),
                                                           ctx.site_spec.oob.update(auditing=1)),
      fails=("PRE-AUDITING-AMT-4", "PRE-SP2-FOR-SP2-FEATURES"))


def _psk_hello_logged(ctx: Context, record: Any) -> None:
    """The PSK hello the site server logged an hour ago (the device keeps sending them, as it does PKI ones)."""
    ctx.site.log.event("hello_received", when=dt.datetime.now().astimezone() - dt.timedelta(hours=1),
                       thread=THREADS["hello"], fqdn=record.fqdn, uuid=record.uuid, ip=record.address, mode="PSK",
                       retry=0)


fault("psk_client", "The client is not provisioned and sends PSK hellos (version 2; AMTOPMGR.LOG has one from an "
      "hour ago), and the site server has no WS-MAN translator.", scope="client", needs="out_of_band",
      plan=_set(provisioned=False), device=_set(hello_mode="PSK"), site_server=_set(provisioning_mode="PSK"),
      running=_psk_hello_logged, fails=("S1-WSMAN-TRANSLATOR-PSK",))
fault("workgroup_client", "The in-band client is not joined to the domain: it is in workgroup WORKGROUP "
      "(Win32_ComputerSystem.PartOfDomain false).", scope="client", needs="in_band",
      windows=_set(workgroup="WORKGROUP"), fails=("S1-INBAND-CLIENT-DOMAIN-MEMBER",))

#: Operating systems in-band provisioning does not support (seed 004), as Win32_OperatingSystem shows them.
UNSUPPORTED_CLIENT_OS = {
    "windows_2000": {"os_caption": "Microsoft Windows 2000 Professional", "os_version": "5.0.2195",
                     "csd_version": "Service Pack 4", "service_pack_major": 4},
    "xp_sp1": {"os_caption": "Microsoft Windows XP Professional", "os_version": "5.1.2600",
               "csd_version": "Service Pack 1", "service_pack_major": 1},
    "xp_tablet": {"os_caption": "Microsoft Windows XP Tablet PC Edition", "os_version": "5.1.2600",
                  "csd_version": "Service Pack 3", "service_pack_major": 3, "tablet_pc": True},
}


def _client_os(ctx: Context, w: Any, os: str) -> None:
    for key, value in UNSUPPORTED_CLIENT_OS[os].items():
        setattr(w, key, value)
    if w.tablet_pc:
        w.registry.setdefault("HKLM\\" + TABLET_PC_KEY, {})["Installed"] = 1


fault("unsupported_client_os", "The in-band client runs an operating system in-band provisioning does not support: "
      "`os` windows_2000, xp_sp1 (XP before SP2) or xp_tablet (XP Tablet PC Edition).", scope="client",
      needs="in_band", params={"os": Param("windows_2000", str, "windows_2000, xp_sp1 or xp_tablet",
                                           lambda v: None if v in UNSUPPORTED_CLIENT_OS
                                           else f"one of {', '.join(UNSUPPORTED_CLIENT_OS)}")},
      windows=_client_os, fails=("PRE-INBAND-CLIENT-OS",))


# --------------------------------------------------------------------------------------------------------------
# Infrastructure: the enterprise CA, the directory, DNS and the network between the site and the clients
# --------------------------------------------------------------------------------------------------------------
CT_FLAG_PEND_ALL_REQUESTS = 0x2  # msPKI-Enrollment-Flag: "CA certificate manager approval" (MS-CRTD 2.26)


fault("no_enrollment_service", "The issuing CA is not an enterprise CA: no pKIEnrollmentService object in "
      "CN=Enrollment Services (a stand-alone CA, or one removed from AD).", scope="site",
      directory_setup=lambda ctx, t: setattr(ctx.directory, "enrollment_service", False),
      fails=("S1-CA-ENTERPRISE-ISSUING-CA-AVAILABLE", "S1-CA-WEB-SERVER-TEMPLATE-READ-ENROLL",
             "PRE-CA-KEY-LENGTH-2048", "S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT", "S3-CA-CRL-AIA-AVAILABLE"))
fault("template_not_published", "The issuing CA does not issue the AMT web server template (not in its "
      "pKIEnrollmentService certificateTemplates: never added under Certificate Templates to Issue).", scope="site",
      directory_setup=lambda ctx, t: setattr(ctx.directory, "published_templates", ["WebServer", "Machine"]),
      fails=("S1-CA-WEB-SERVER-TEMPLATE-READ-ENROLL",))
fault("template_pend_all_requests", "The AMT web server template requires CA certificate manager approval "
      "(msPKI-Enrollment-Flag CT_FLAG_PEND_ALL_REQUESTS).", scope="site",
      directory_setup=_template(enrollment_flag=CT_FLAG_PEND_ALL_REQUESTS), fails=("PRE-CA-AUTO-APPROVE",))
fault("ca_requests_pending", "The CA's policy module sets every request pending (RequestDisposition "
      "REQDISP_PENDING 0x100, a stand-alone CA's default).", scope="site",
      site_server=lambda ctx, t: ctx.ca_host.update(request_disposition=0x100), fails=("PRE-CA-AUTO-APPROVE",))
fault("ca_no_issue_manage_right", "The CA's security grants the site server account no Issue and Manage "
      "Certificates right (only Authenticated Users' Read and Request).", scope="site",
      site_server=lambda ctx, t: ctx.ca_host.update(officer_for_site_server=False),
      fails=("S1-CA-ISSUE-MANAGE-PERMISSION",))


def _ca_firewall(ctx: Context, target: None) -> None:
    ctx.ca_host.update(rpc=False)
    ctx.firewall.append((ctx.plan.ca, 135))


fault("ca_host_firewalled", "The CA host's firewall drops TCP 135 (RPC endpoint mapper): the site server cannot "
      "reach the CA's enrollment interface.", scope="site", site_server=_ca_firewall,
      fails=("S1-CA-ENTERPRISE-ISSUING-CA-AVAILABLE",))


def _empty_store(store: str, locations: tuple[str, ...] = ("registry", "group policy", "enterprise")
                 ) -> Callable[..., None]:
    """A site_server step: the service point's computer certificate ``store`` (MY, CA, ROOT) holds nothing in
    the physical stores of ``locations`` (its own, Group Policy's, the Enterprise one from AD)."""
    def step(ctx: Context, target: None) -> None:
        prefixes = tuple(p.key.lower() + "\\" for p in certs.physical_stores(store) if p.location in locations)
        for key in [k for k in ctx.site_spec.registry if k.lower().startswith(prefixes)]:
            del ctx.site_spec.registry[key]
    return step


fault("service_point_missing_intermediate", "The service point's computer Intermediate Certification Authorities "
      "store lacks the issuing CA certificate.", scope="site", site_server=_empty_store("CA"),
      fails=("S1-PROV-CERT-CHAIN-INSTALLED", "S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT"))


def _renewed_ca(ctx: Context, target: None) -> None:
    ctx.directory.ca_certificate = ctx.lab_pki.issuing_variant(new_key=True).public_bytes(Encoding.DER)


def _stale_ca_on_service_point(ctx: Context, target: None) -> None:
    _empty_store("CA")(ctx, target)
    old = ctx.lab_pki.issuing_variant(expired=True)
    key = f"HKLM\\{SYSTEM_CERTIFICATES}\\CA\\Certificates\\{certs.fingerprint(old, 'sha1').upper()}"
    ctx.site_spec.registry[key] = {"Blob": certs.make_store_blob(old)}


fault("issuing_ca_renewed", "The issuing CA renewed its certificate with a new key: AD (pKIEnrollmentService) "
      "publishes the new one, the service point's stores hold only the old one (certificates issued before stay "
      "valid).", scope="site", directory_setup=_renewed_ca,
      fails=("S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT", "S3-ISSUING-CA-CHAIN-DATES-VALID"))
fault("service_point_expired_issuing_ca", "The service point's Intermediate store holds an older certificate of the "
      "issuing CA (same name and key) that has expired, and not the current one.", scope="site",
      site_server=_stale_ca_on_service_point, fails=("S3-ISSUING-CA-CHAIN-DATES-VALID",))
fault("service_point_root_not_downloaded", "The service point's Trusted Root store lacks the enterprise root: its "
      "Enterprise store, which autoenrollment fills from AD's Certification Authorities container, was never "
      "refreshed (Group Policy 'Certificate Services Client - Auto-Enrollment' set to 'Do not enroll certificates "
      "automatically' before the server joined), and nobody imported the root by hand.", scope="site",
      site_server=_empty_store("ROOT"),
      fails=("S1-PROV-CERT-CHAIN-INSTALLED", "S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT"))
fault("provisioning_cert_not_installed", "The provisioning certificate is not in the service point's computer "
      "Personal store.", scope="site", site_server=_empty_store("MY"),
      fails=("S1-PROV-CERT-CHAIN-INSTALLED",))
def _firewall_9971(ctx: Context, target: None) -> None:
    ctx.site_spec.hello_port = 0  # the service point listens on; its firewall takes 9971
    ctx.firewall.append((ctx.plan.site_server, 9971))


fault("service_point_firewall_blocks_9971", "The service point's firewall drops TCP 9971: hellos from AMT never "
      "arrive (the service point listens on another port).", scope="site",
      site_server=_firewall_9971, fails=("S1-PORT-9971-AMT-TO-SERVICE-POINT",))


def _filtered(ctx: Context, d: Any) -> None:
    ctx.devices.remove(d)  # behind the firewall, nothing reaches the device
    ctx.firewall.extend((d.address, port) for port in (16992, 16993, 16994, 16995))


fault("amt_ports_filtered", "A firewall drops TCP 16992-16995 to the client: connections get no "
      "answer (filtered), where 'unreachable' is refused.", scope="client", device=_filtered,
      fails=("S1-PORTS-SERVICE-POINT-TO-AMT", "S1-PORTS-CONSOLE-TO-AMT"))
fault("me_static_ip", "The ME has a static IP address (AMT_EthernetPortSettings.DHCPEnabled false).",
      scope="client", device=_set(dhcp_enabled=False), fails=("S1-CLIENT-ME-DHCP",))
def _dns_elsewhere(ctx: Context, target: None) -> None:
    ctx.site_spec.dns_servers = [f"127.{ctx.plan.net}.0.99"]  # no lab host listens there
    ctx.site_spec.wins_servers = [ctx.plan.dc]


fault("site_server_dns_elsewhere", "The site server's network adapter asks a DNS server that does not answer "
      "(127.<net>.0.99) and relies on WINS for names.", scope="site",
      site_server=_dns_elsewhere, fails=("PRE-DNS-REQUIRED-NO-WINS",))


def _suffix(suffix: str) -> Callable[..., None]:
    """A plan step: the client's DNS name is <host>.<suffix> everywhere (DNS, its computer object, AMT, inventory)."""
    def step(ctx: Context, c: ClientPlan) -> None:
        c.fqdn = f"{c.fqdn.split('.')[0]}.{suffix}"
    return step


def _foreign_zone(ctx: Context, c: ClientPlan) -> None:
    """The client's records live in a zone of their own on the DC (the population put them in the domain's)."""
    name, zone = c.fqdn.split(".", 1)
    ctx.dc.delete_dns_record(c.fqdn.lower().removesuffix(f".{DOMAIN}"))
    ctx.dc.create_zone(zone)
    ctx.dc.add_dns_record(name, "A", c.address, zone)


fault("disjoint_namespace", "The client's DNS name is <host>.branch.vprolab.test while its computer object is in "
      "the AD domain vprolab.test (a disjointed namespace).", scope="client", plan=_suffix(f"branch.{DOMAIN}"),
      fails=("PRE-CLIENT-NO-DISJOINT-NAMESPACE",))
fault("noncontiguous_namespace", "The client's DNS name is <host>.vprolab.example, a namespace the site server's "
      "(vprolab.test) does not share; its computer object stays in vprolab.test. (On a provisioned client the suite "
      "cannot reach its AMT by name either: the environment routes only its own domains.)", scope="client",
      plan=_suffix("vprolab.example"), directory=_foreign_zone,
      fails=("S1-CLIENT-SHARED-DNS-NAMESPACE", "PRE-CLIENT-NO-DISJOINT-NAMESPACE"))


def _ipv6_only(ctx: Context, c: ClientPlan) -> None:
    name = c.fqdn.lower().removesuffix(f".{DOMAIN}")
    ctx.dc.delete_dns_record(name, "A", c.address)
    ctx.dc.add_dns_record(name, "AAAA", f"fd00:{ctx.plan.net}::{c.index + 1:x}")


fault("ipv6_only", "The client is registered in DNS with an IPv6 address only (AAAA, no A record). (On a "
      "provisioned client the suite cannot reach its AMT by name either.)", scope="client", directory=_ipv6_only,
      fails=("PRE-IPV4-ONLY",))


def _wireless(ctx: Context | None, c: ClientPlan) -> None:
    """A laptop: a wireless port with its own address (127.<net>.201+.x) and a WPA2/802.1X profile."""
    plan = ctx.plan if ctx else AddressPlan(int(c.address.split(".")[1]))
    c.wireless_address = plan.wireless(c.index)


def _no_wireless_record(ctx: Context, c: ClientPlan) -> None:
    ctx.dc.delete_dns_record(c.fqdn.lower().removesuffix(f".{DOMAIN}"), "A", c.wireless_address)


def _wifi_wep(ctx: Context, d: Any) -> None:
    d.wifi_profiles = [{"name": "VPROLAB-WLAN", "authentication": 2, "encryption": 2}]  # Open System, WEP


fault("wireless_no_a_record", "A wireless laptop (AMT's wireless port has its own address) whose wireless address "
      "has no A record for its FQDN.", scope="client", plan=_wireless, directory=_no_wireless_record,
      fails=("PRE-DNS-WIRELESS-RECORDS",))
fault("wifi_profile_wep", "A wireless laptop whose AMT wireless profile is open system authentication with WEP.",
      scope="client", plan=_wireless, device=_wifi_wep, fails=("PRE-8021X-SUPPORTED-AUTH-OPTIONS",))


def _ieee8021x(ctx: Context | None, c: ClientPlan) -> None:
    c.ieee8021x = True


fault("ieee8021x_amt_3", "A client on an 802.1X authenticated wired network runs AMT 3.2.1 (802.1X needs 4.0).",
      scope="client", plan=_ieee8021x, device=_set(amt_version="3.2.1"),
      site_server=_set(amt_full_version="3.2.1"), fails=("PRE-8021X-AMT-4",))


# --------------------------------------------------------------------------------------------------------------
# Stages 4 to 7: power control, the console, un-provisioning
# --------------------------------------------------------------------------------------------------------------
def _not_discovered(ctx: Context, record: Any) -> None:
    record.amt_status, record.amt_full_version = AMT_STATUS["unknown"], ""


fault("mc_not_discovered", "Discover Management Controllers never ran for the client: SMS_R_System.AMTStatus is "
      "null (unknown) and AMTFullVersion is empty, so the console offers no power control.", scope="client",
      needs="provisioned", site_server=_not_discovered,
      fails=("S4-MC-DISCOVERED", "S4-DIGEST-CREDENTIALS-RANDOMIZED"))
fault("power_off_ignored", "The device answers RequestPowerStateChange(8) with ReturnValue 0 and the host stays "
      "on (power-off requests are accepted and ignored): the site's Shutdown is accepted and nothing happens.",
      scope="client", device=_set(power_off_ignored=True), fails=("S4-POWER-DOWN", "S4-POWER-UP"))


def _quarantined(ctx: Context, record: Any) -> None:
    """An administrator moved the client into a collection of its own and gave the console user's group every
    right there but "Manage management controllers" (it may look, not operate)."""
    spec = ctx.site_spec
    for col in spec.collections:
        col["members"] = [m for m in col.get("members", []) if m != record.fqdn]
    col_id = f"{spec.site_code}00020"
    spec.collections.append({"CollectionID": col_id, "Name": "vPro quarantine", "members": [record.fqdn],
                             "amt_auto_provision": True})
    spec.permissions.append({"UserName": f"{NETBIOS}\\{OPERATORS_GROUP}", "InstanceKey": col_id, "rights": [
        "Read", "Read Resource", "Modify Collection Setting", "View management controllers"]})


fault("client_in_unmanaged_collection", "The client was moved into a collection ('vPro quarantine') on which the "
      "console user's group may view management controllers but not manage them: the SMS Provider refuses the "
      "client's out of band operations (WBEM_E_ACCESS_DENIED).", scope="client", needs="provisioned",
      site_server=_quarantined,
      fails=("S4-POWER-DOWN", "S4-POWER-UP", "PRE-RIGHT-MANAGE-MANAGEMENT-CONTROLLERS"))
fault("oob_service_point_stopped", "The out of band service point's component (SMS_AMT_OPERATION_MANAGER) was "
      "stopped in Configuration Manager Service Manager: the SMS Provider accepts out of band operations "
      "(ReturnValue 0) and queues them, and nothing performs them. (Lab: hellos are still logged.)", scope="site",
      site_server=_site(lambda s: setattr(s, "oob_service_point_running", False)),
      fails=("S4-POWER-DOWN", "S4-POWER-UP"))
fault("mebx_password_kept", "Provisioning did not replace the MEBx password: the device's admin account still "
      "answers to Intel's factory MEBx password ('admin') over the network. (Lab: the account also keeps the "
      "service point's credential, so the other checks still read the device.)", scope="client",
      needs="provisioned", device=_set(digest_also_accepts="admin"), fails=("S4-DIGEST-CREDENTIALS-RANDOMIZED",))


def _child_object(ctx: Context, c: ClientPlan) -> None:
    """Another management tool published a service connection point under the client's AMT object."""
    # an object of another tool: the DC's own helper for adding any object (its public calls make only ours)
    ctx.dc._add(f"CN=Remote Management,{_amt_object_dn(ctx, c)}", "serviceConnectionPoint",  # noqa: SLF001
                {"serviceClassName": "RemoteManagement", "keywords": ["Intel AMT"]})


fault("amt_object_has_child", "The client's AMT object has a child object (a serviceConnectionPoint another tool "
      "published under it). AD deletes only leaf objects without the tree-delete control, so un-provisioning "
      "cannot delete the AMT object: AMTOPMGR.LOG shows the un-provisioning failed and the object stays.",
      scope="client", needs="provisioned", directory=_child_object,
      fails=("S7-AD-MC-OBJECT-DELETED", "S7-UNPROVISION-COMPLETES"))
fault("ca_revocation_refused", "The site server may not revoke certificates on the issuing CA (no Issue and Manage "
      "Certificates): un-provisioning stops at the revocation (AMTOPMGR.LOG shows it failed), so the serial never "
      "reaches the CRL and the AD object is not deleted either.", scope="site",
      pki=_option("pki", revocation_refused=True),
      fails=("S7-WEB-SERVER-CERT-REVOKED", "S7-UNPROVISION-COMPLETES", "S7-AD-MC-OBJECT-DELETED"))


def _stale_dc(ctx: Context, target: None) -> None:
    """dc02 is still registered: an A record to an address nobody answers on, and its DC locator SRV record."""
    ctx.dc.add_dns_record("dc02", "A", f"127.{ctx.plan.net}.0.98")
    # an SRV record in the _msdcs zone: samba-tool through the DC's own runner (add_dns_record writes the domain zone)
    ctx.dc._admin_tool("dns", "add", ctx.dc.address, f"_msdcs.{DOMAIN}", "_ldap._tcp.dc", "SRV",  # noqa: SLF001
                       f"dc02.{DOMAIN} 389 0 100")


fault("stale_dc_record", "A second domain controller, dc02, is still registered in DNS (A record and "
      "_ldap._tcp.dc._msdcs SRV record) but does not answer: a DC removed without metadata cleanup, whose copy of "
      "the management controller objects cannot be confirmed.", scope="site", directory=_stale_dc,
      fails=("S5-DC-REPLICATION",))


def _must_change_password(ctx: Context, target: None) -> None:
    ctx.dc.conn.modify(ctx.dc.account_dn(CONSOLE_USER), {"pwdLastSet": [(ldap3.MODIFY_REPLACE, ["0"])]})


fault("console_user_must_change_password", "The console user must change its password at next logon (pwdLastSet "
      "0): the KDC gives it no ticket (password expired), so no Kerberos to any device.", scope="site",
      directory=_must_change_password,
      fails=("S5-KERBEROS-TICKET-FOR-AMT", "S5-OOB-CONSOLE-CONNECTS", "S5-OOB-CONSOLE-SYSTEM-STATUS"))


# ----------------------------------------------------------------------------- shared services down (root causes)
def _dns_server_down(ctx: Context, target: None) -> None:
    """The estate's DNS server dns01 (127.<net>.0.53) is switched off: the environment names it, nothing answers."""
    ctx.dns_servers = [f"127.{ctx.plan.net}.0.53"]


fault("dns_server_down", "The estate's DNS server (127.<net>.0.53, the one the environment file and the console host "
      "use) is switched off: nothing answers on port 53, so no estate name resolves for the checks. The run names "
      "it once as the root cause; every finding that follows says 'caused by: DNS server ... not answering'.",
      scope="site", dhcp=_dns_server_down, fails=("PRE-DNS-REQUIRED-NO-WINS",))


def _directory_down(ctx: Context, target: None) -> None:
    """The DC's directory service stops (Samba restarted without its LDAP server) and the host drops LDAP, LDAPS
    and the global catalog's SYNs, as a DC whose NTDS hangs; DNS, Kerberos and SMB on the host still answer."""
    ctx.dc.stop()
    ctx.dc.ldap_off = True
    ctx.dc.start()
    ctx.firewall.extend((ctx.plan.dc, port) for port in (389, 636, 3268, 3269))


fault("directory_down", "The domain controller's directory does not answer: LDAP 389/636 and the global catalog "
      "3268/3269 get no answer (its directory service hangs); DNS, Kerberos and SMB on the same host still do. "
      "The run names the directory once as the root cause; the AD checks' findings point at it.",
      scope="site", running=_directory_down, fails=("S1-AD-AMT-CONTAINER-ACL",))


def _site_server_down(ctx: Context, target: None) -> None:
    """The site server is switched off: nothing of it answers (WinRM 5985/5986 and the service point's 9971 drop)."""
    spec = ctx.site_spec
    spec.http_port = spec.https_port = spec.hello_port = 0  # its simulator listens nowhere anyone asks
    ctx.firewall.extend((ctx.plan.site_server, port) for port in (5985, 5986, 9971))


fault("site_server_down", "The site server (sccm01) is switched off: WinRM 5985/5986 and the out of band service "
      "point's 9971 get no answer. The run names it once as the root cause; the checks whose facts come from it "
      "(hot fixes, the SMS Provider, the site's settings) say 'caused by: site server ... not answering' instead of "
      "their own advice.", scope="site", site_server=_site_server_down, fails=("S1-PORT-9971-AMT-TO-SERVICE-POINT",))
