"""Planted faults: the lab description's ``faults:`` list, turned into changes of the estate's data.

A description names faults as data::

    faults:
      - {fault: missing_ptr, client: 3}                    # client by number (pc0003) ...
      - {fault: clock_skew, client: pc0005, seconds: 900}  # ... or by name / FQDN, with parameters
      - {fault: dhcp_no_option15}                          # site-wide faults take no client

:func:`parse` checks every entry against :data:`FAULTS` (unknown names, bad clients and bad parameters raise
:class:`~pytest_vpro.lab.estate.DescriptionError` naming the fault and listing the known ones). :func:`apply` is
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
=============== =========================================================== ==================================

The fault table (name, parameters, what it changes, which catalog checks it makes fail) is :data:`FAULTS`;
``docs/lab.md`` prints it. This module knows nothing of pytest.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .addresses import AddressPlan
from .estate import DOMAIN, SITE_SERVER_ACCOUNT, ClientPlan, DescriptionError

STAGES = ("plan", "pki", "directory_setup", "directory", "dhcp", "device", "site_server", "running")
ACCOUNTDISABLE = 0x2  # userAccountControl (MS-ADTS 2.2.16)
CLIENT_AUTH_EKU = "1.3.6.1.5.5.7.3.2"
DOMAIN_LOCAL_SECURITY_GROUP = -2147483644  # groupType RESOURCE_GROUP | SECURITY_ENABLED (MS-ADTS 2.2.12)


@dataclass
class DirectorySetup:
    """What the directory is populated with; ``directory_setup`` faults change it before it is written."""

    template: dict[str, Any] = field(default_factory=lambda: {"enroll_for": (SITE_SERVER_ACCOUNT,)})
    amt_container_rights: str = "GA"  # SDDL rights granted to the site server account on the AMT container


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
    from .samba import reverse_name  # noqa: PLC0415

    zone = ctx.dc.reverse_zone()
    return reverse_name(c.address, zone), zone


def _log_failed_provisioning(ctx: Context, record: Any, *, reason: str) -> None:
    """The lines a real AMTOPMGR.LOG holds for a provisioning attempt that failed (an hour ago)."""
    from .site_server import THREADS  # noqa: PLC0415

    when = dt.datetime.now().astimezone() - dt.timedelta(hours=1)
    fields = {"fqdn": record.fqdn, "uuid": record.uuid, "ip": record.address, "mode": record.provisioning_mode}
    ctx.site.log.event("hello_received", when=when, thread=THREADS["hello"], retry=0, **fields)
    ctx.site.log.event("provisioning_started", when=when + dt.timedelta(seconds=2), thread=THREADS["provision"],
                       **fields)
    ctx.site.log.event("provisioning_failed", when=when + dt.timedelta(seconds=9), thread=THREADS["provision"],
                       reason=reason, **fields)


def _self_signed(ctx: Context, spec: Any) -> None:
    """AMT 3.2.1 firmware serves a certificate it made itself: self-signed, not from the enterprise CA."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.fqdn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(spec.fqdn)]), critical=False)
            .sign(key, hashes.SHA256()))
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
fault("no_amt_object", "The client's AMT account object is deleted from the AMT container (the device keeps its "
      "keys, the KDC has no principal for its SPNs).", scope="client", needs="provisioned",
      directory=lambda ctx, c: ctx.dc.delete(_amt_object_dn(ctx, c)),
      fails=("S3-AD-MC-OBJECT-CREATED", "S3-AD-MC-SPNS-WRITTEN", "S1-CLIENT-SAME-AD-FOREST",
             "S5-KERBEROS-TICKET-FOR-AMT", "S5-OOB-CONSOLE-CONNECTS"))


def _disable(ctx: Context, c: ClientPlan) -> None:
    import ldap3  # noqa: PLC0415

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
      scope="client", device=_set(power_scheme="Desktop: ON in S0"), fails=("S4-ME-POWER-PACKAGE-S0-S5",))
fault("sol_ider_disabled", "AMT_RedirectionService.EnabledState is 32768 (SOL and IDER disabled).",
      scope="client", params={"state": Param(32768, int, "EnabledState: 32768 none, 32769 IDER, 32770 SOL")},
      device=lambda ctx, d, state: setattr(d, "redirection_state", state), fails=("S5-SOL-IDER-ENABLED-IN-AMT",))
fault("clock_skew", "The device's clock is off by `seconds`.", scope="client",
      params={"seconds": Param(600, (int, float), "device clock minus real time")},
      device=lambda ctx, d, seconds: setattr(d, "clock_offset_s", float(seconds)), fails=("S5-TIME-SYNCHRONIZED",))


def _acl_without_console(ctx: Context, d: Any) -> None:
    from .amt_sim import AclEntry  # noqa: PLC0415

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
      fails=("S3-OOB-CLIENT-IMPORTED", "S2-INBAND-AUTO-PROVISIONING-COLLECTION"))
fault("agent_on_oob_client", "An out of band client has the Configuration Manager agent installed "
      "(SMS_R_System.Client = 1).", scope="client", needs="out_of_band",
      site_server=_set(client=1, client_version="4.00.6221.1000"), fails=("S3-OOB-CLIENT-NO-SCCM-AGENT",))
fault("old_agent", "The in-band client's Configuration Manager agent predates SP1.", scope="client", needs="in_band",
      params={"version": Param("4.00.5931.0001", str, "SMS_R_System.ClientVersion (RTM is 4.00.5931)")},
      site_server=lambda ctx, r, version: setattr(r, "client_version", version), fails=("S1-CLIENT-AGENT-SP1",))
fault("no_hellos", "The client is not provisioned and never sends hello packets.", scope="client",
      plan=_set(provisioned=False), device=_set(send_hellos=False),
      fails=("S2-CLIENT-SENDING-HELLO", "S2-AMTOPMGR-HELLO-RECEIVED", "S3-AMTOPMGR-PROVISIONING-COMPLETED"))
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


def _amt_321(ctx: Context, d: Any) -> None:
    d.amt_version = "3.2.1"
    _self_signed(ctx, d)


fault("legacy_amt", "The device runs AMT 3.0 (no WS-MAN: /wsman answers 404) and the site server has no WS-MAN "
      "translator.", scope="client", device=_set(amt_version="3.0.0"), site_server=_set(amt_full_version="3.0.0"),
      fails=("S1-WSMAN-TRANSLATOR-LEGACY", "S5-OOB-CONSOLE-CONNECTS"))
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
fault("expired_issuing_ca", "The issuing CA's certificate expired yesterday (every chain through it is invalid).",
      scope="site", pki=_option("pki", expired_issuing_ca=True),
      fails=("S3-ISSUING-CA-CHAIN-DATES-VALID", "S3-PROV-CERT-CHAIN-DATES-VALID", "S3-CLIENT-AMT-WEB-SERVER-CERT"))
fault("expired_crl", "The CRLs served over HTTP are expired (nextUpdate yesterday), also when re-published.",
      scope="site", pki=_option("pki", expired_crl=True), fails=("S3-CA-CRL-AIA-AVAILABLE",))
fault("prov_cert_no_amt_marker", "The provisioning certificate has neither the AMT OID 2.16.840.1.113741.1.2.3 "
      "nor the 'Intel(R) Client Setup Certificate' OU.", scope="site",
      pki=_option("pki", provisioning_amt_oid=False, provisioning_ou=False), fails=("S3-PROV-CERT-AMT-OID-OR-OU",))
fault("prov_cert_no_server_auth", "The provisioning certificate's EKU lacks serverAuth.", scope="site",
      pki=_option("pki", provisioning_server_auth=False), fails=("S3-PROV-CERT-SERVER-AUTH",))


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
    from .estate import CONSOLE_USER  # noqa: PLC0415

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
    from .site_server import applicable_hotfixes  # noqa: PLC0415

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
fault("webui_disabled", "The out of band component's 'Enable Web UI' is 0.", scope="site",
      site_server=_site(lambda s: s.oob.update(webui_enabled=0)), fails=("S6-WEBUI-ENABLED-IN-SCCM",))


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
    spec.registry[r"HKLM\SOFTWARE\Microsoft\SMS\Setup"]["Full Version"] = spec.site_version


fault("sccm_rtm", "The site runs Configuration Manager 2007 RTM (4.00.5931.0000), before SP1.", scope="site",
      site_server=_site(_rtm), fails=("S1-SCCM-SP1-SITE", "S1-SCCM-SUPPORTED-BASE-INSTALL"))


def _winrm_1_0(spec: Any) -> None:
    from .site_server import WINRM_STACK_KEY  # noqa: PLC0415

    spec.winrm_version = "1.0"
    spec.registry["HKLM\\" + WINRM_STACK_KEY]["StackVersion"] = "1.0"
    _remove_hotfix(spec, "KB936059")  # the WinRM 1.1 update


fault("winrm_1_0", "The site server (out of band service point) has WinRM 1.0: stack version 1.0, no KB936059.",
      scope="site", site_server=_site(_winrm_1_0), fails=("PRE-WINRM-SERVICE-POINT", "HF-KB936059"))
fault("no_msxml6", "MSXML 6.0 is not installed on the site server (which also hosts the console in the lab).",
      scope="site", site_server=_site(lambda s: setattr(s, "products", [p for p in s.products
                                                                       if "MSXML 6" not in p["Name"]])),
      fails=("PRE-MSXML6-CONSOLE",))
fault("no_telnet_client", "The Telnet client feature is not installed (Win32_OptionalFeature InstallState 2).",
      scope="site", site_server=_site(lambda s: s.optional_features.update(TelnetClient=2)),
      fails=("S5-CONSOLE-TELNET-CLIENT",))
fault("no_auto_provision_collection", "No collection has automatic AMT provisioning enabled.", scope="site",
      site_server=_site(lambda s: [c.update(amt_auto_provision=False) for c in s.collections]),
      fails=("S2-INBAND-AUTO-PROVISIONING-COLLECTION",))
