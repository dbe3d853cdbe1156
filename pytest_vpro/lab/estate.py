"""The lab estate as data, and building it.

A description (``environments/lab.yaml``, section ``lab:``) says how many
clients, which of them are in-band, canary or still un-provisioned, the
latency of the simulated firmware and the faults to plant. :func:`build`
turns it into running servers on the lab's loopback addresses, then writes
``lab.json`` (mode 0600: addresses, paths, generated credentials) and the
environment file the suite reads. A healthy estate and a broken one differ
only in the description.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import secrets as pysecrets
import time
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .addresses import AddressPlan
from .samba import reverse_name

DOMAIN, REALM, NETBIOS, SITE_CODE = "vprolab.test", "VPROLAB.TEST", "VPROLAB", "LAB"
HOSTS = {"dc": "dc01", "site_server": "sccm01", "ca": "ca01", "dhcp": "dhcp01", "console": "console01"}
CONSOLE_USER = "amtadmin"
AMT_USER = "admin"
SITE_SERVER_ACCOUNT = "SCCM01$"


class DescriptionError(ValueError):
    pass


@dataclass
class Description:
    clients: int = 24
    in_band_every: int = 4
    canaries: int = 2
    unprovisioned: int = 0
    latency_ms: float = 0.0
    net: int = 77
    amt_version: str = "6.2.10"
    state_dir: str = ".lab"
    dhcp_port: int = 67  # 0: any free UDP port, so several labs (tests) can run beside each other
    faults: list[dict[str, Any]] = field(default_factory=list)

    def client_name(self, index: int) -> str:
        return f"pc{index + 1:04d}"


def load_description(path: Path) -> tuple[Description, Path]:
    """Read the ``lab:`` section of a lab environment file; returns it and the state folder (absolute)."""
    data = yaml.safe_load(path.read_text()) or {}
    lab = data.get("lab")
    if not isinstance(lab, dict):
        raise DescriptionError(f"{path}: a lab description needs a 'lab:' mapping")
    known = set(Description.__dataclass_fields__)
    unknown = sorted(set(lab) - known)
    if unknown:
        raise DescriptionError(f"{path}: lab: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    desc = Description(**lab)
    if not 1 <= desc.clients <= 50_000:
        raise DescriptionError(f"{path}: lab.clients must be between 1 and 50000, found {desc.clients}")
    try:
        plant_faults(desc, plan_clients(desc, AddressPlan(desc.net)))
    except DescriptionError as exc:
        raise DescriptionError(f"{path}: {exc}") from None
    state = Path(desc.state_dir).expanduser()
    return desc, (state if state.is_absolute() else (path.parent / state)).resolve()


def is_lab_description(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "lab" in data and "site" not in data


@dataclass
class ClientPlan:
    index: int
    fqdn: str
    address: str
    uuid: str
    provisioning: str
    canary: bool
    provisioned: bool


def plan_clients(desc: Description, plan: AddressPlan) -> list[ClientPlan]:
    out = []
    for i in range(desc.clients):
        name = desc.client_name(i)
        out.append(ClientPlan(
            index=i, fqdn=f"{name}.{DOMAIN}", address=plan.client(i),
            uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{name}.{DOMAIN}")),
            provisioning="in_band" if desc.in_band_every and (i + 1) % desc.in_band_every == 0 else "out_of_band",
            canary=i < desc.canaries, provisioned=i < desc.clients - desc.unprovisioned))
    return out


def plant_faults(desc: Description, clients: list[ClientPlan]):
    """The description's faults, checked against the client plan (:mod:`pytest_vpro.lab.faults`)."""
    from . import faults  # noqa: PLC0415 (faults.py imports this module)

    return faults.parse(desc.faults, clients)


class Lab:
    """A built, running lab. :meth:`stop` stops every server it started, in reverse order."""

    def __init__(self, state: Path, desc: Description, log: Callable[[str], None]) -> None:
        self.state, self.desc, self.log = state, desc, log
        self.plan = AddressPlan(desc.net)
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self.info: dict[str, Any] = {}

    def _started(self, name: str, stop: Callable[[], None]) -> None:
        self._stops.append((name, stop))

    def stop(self) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the rest; say what could not be stopped
                self.log(f"stopping {name} failed: {exc}")


def build(desc: Description, state: Path, log: Callable[[str], None]) -> Lab:
    """Create and start the whole estate in ``state`` (which must be empty or absent)."""
    from .dhcp import LabDHCP  # noqa: PLC0415 (import cost only where a lab is built)
    from .http_server import LabHTTPServer
    from .pki import LabPKI, PkiFaults
    from .samba import SambaDC
    from . import faults

    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    lab = Lab(state, desc, log)
    plan = lab.plan
    clients = plan_clients(desc, plan)
    planted = plant_faults(desc, clients)
    ctx = faults.Context(plan=plan, state=state, clients=clients)
    faults.apply("plan", planted, ctx)
    secrets_dir = state / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    creds = {name: pysecrets.token_urlsafe(12) + "-A9" for name in ("admin", "amt", "console")}
    for name, value in creds.items():
        path = secrets_dir / f"{name}.secret"
        path.write_text(value)
        os.chmod(path, 0o600)
    try:
        t0 = time.monotonic()
        faults.apply("pki", planted, ctx)
        pki = LabPKI(state / "pki", domain=DOMAIN, crl_base_url=f"http://{HOSTS['ca']}.{DOMAIN}/pki",
                     site_server=HOSTS["site_server"], faults=PkiFaults(**ctx.pki))
        device_certs = {c.fqdn: pki.issue_web_server_cert(c.fqdn) for c in clients if c.provisioned}
        pki.publish_crl()
        log(f"PKI: root, issuing CA, provisioning certificate, {len(device_certs)} device certificates "
            f"({time.monotonic() - t0:.1f} s)")

        t0 = time.monotonic()
        dc = SambaDC(state / "samba", plan.dc, admin_password=creds["admin"], domain=DOMAIN, netbios=NETBIOS,
                     hostname=HOSTS["dc"], site_code=SITE_CODE)
        dc.provision()
        log(f"Samba: domain {DOMAIN} provisioned ({time.monotonic() - t0:.1f} s)")
        t0 = time.monotonic()
        dc.start()
        lab._started("samba", dc.stop)
        log(f"Samba: LDAP, LDAPS, Kerberos, DNS and SMB answer on {plan.dc} ({time.monotonic() - t0:.1f} s)")

        t0 = time.monotonic()
        faults.apply("directory_setup", planted, ctx, dc=dc)
        _populate_directory(dc, plan, clients, creds, ctx.directory)
        keytab = state / "amt" / "devices.keytab"
        keytab.parent.mkdir(exist_ok=True)
        spns = [spn for c in clients if c.provisioned for spn in dc.amt_spns(c.fqdn)]
        dc.export_keytab(keytab, spns)
        # The devices got their keys when they were provisioned; what an administrator broke later comes now.
        faults.apply("directory", planted, ctx)
        log(f"Samba: AMT container, {sum(c.provisioned for c in clients)} AMT objects with SPNs, "
            f"{2 * (len(clients) + 5)} DNS records, template, console user ({time.monotonic() - t0:.1f} s)")

        faults.apply("dhcp", planted, ctx)
        dhcp = LabDHCP(state / "dhcp", address=plan.dhcp, network=f"127.{desc.net}.0.0/16",
                       dns_servers=[plan.dc], domain=DOMAIN, port=desc.dhcp_port, **ctx.dhcp)
        dhcp.start()
        lab._started("dhcp", dhcp.stop)
        http = LabHTTPServer(pki.publish_dir, address=plan.ca, port=80).start()
        lab._started("crl-http", http.stop)
        log(f"DHCP on {plan.dhcp}:67, CRL/AIA on http://{HOSTS['ca']}.{DOMAIN}/pki/ ({plan.ca})")

        t0 = time.monotonic()
        sim = _start_amt(state, desc, plan, clients, device_certs, pki, keytab, creds, dc,
                         plant=lambda specs: faults.apply("device", planted, ctx, devices=specs))
        lab._started("amt-sim", sim.stop)
        log(f"AMT simulator: {len(sim.devices)} devices on 16992/16993 ({time.monotonic() - t0:.1f} s)")

        t0 = time.monotonic()
        site = _start_site_server(state, desc, plan, clients, pki, dc, creds,
                                  plant=lambda spec: faults.apply("site_server", planted, ctx, site_spec=spec))
        lab._started("site-server", site.stop)
        faults.apply("running", planted, ctx, site=site)
        log(f"Site server simulator: WinRM on {plan.site_server}:5985/5986, out of band service point on 9971, "
            f"AMTOPMGR.LOG in \\\\{HOSTS['dc']}\\SMS_{SITE_CODE}\\Logs ({time.monotonic() - t0:.1f} s)")

        t0 = time.monotonic()
        in_band = _start_windows_clients(lab, state, clients, pki, device_certs, creds)
        if in_band:
            log(f"Windows clients: {in_band} in-band PCs with WinRM on 5985/5986 and OOBMGMT.LOG on \\\\<pc>\\C$ "
                f"({time.monotonic() - t0:.1f} s)")

        env_path = _write_environment(state, desc, plan, clients, pki, dc.ca_cert, dhcp.port)
        lab.info = _write_lab_json(state, desc, plan, clients, creds, dc, dhcp, pki, env_path,
                                   [p.describe(clients) for p in planted])
        if planted:
            log(f"faults planted: {', '.join(sorted({p.fault.name for p in planted}))}")
        return lab
    except BaseException:
        lab.stop()
        raise


def _populate_directory(dc, plan: AddressPlan, clients: list[ClientPlan], creds: dict[str, str], setup) -> None:
    """Objects and records of a healthy estate, less what ``setup`` (:class:`faults.DirectorySetup`) takes away."""
    site_server_dn = dc.add_computer(HOSTS["site_server"].upper(), spns=[f"HOST/{HOSTS['site_server']}.{DOMAIN}"],
                                     dns_host_name=f"{HOSTS['site_server']}.{DOMAIN}")
    amt_ou = dc.add_ou(dc.amt_ou())
    dc.grant(amt_ou, f"(A;CI;{setup.amt_container_rights};;;{dc.sid_of(SITE_SERVER_ACCOUNT)})")
    dc.add_group("AMT Administrators")
    dc.add_user(CONSOLE_USER, creds["console"], groups=["AMT Administrators"])
    dc.add_cert_template("IntelAMTWebServer", **setup.template)
    dc.create_zone(dc.reverse_zone())
    dc.add_dns_record(reverse_name(plan.dc, dc.reverse_zone()), "PTR", f"{HOSTS['dc']}.{DOMAIN}", dc.reverse_zone())
    for role in ("site_server", "ca", "dhcp", "console"):
        dc.add_host(f"{HOSTS[role]}.{DOMAIN}", getattr(plan, role))
    dc.add_dns_record("ProvisionServer", "A", plan.site_server)
    for c in clients:
        dc.add_host(c.fqdn, c.address)
        if c.provisioned:
            dc.add_amt_account(c.fqdn)
    del site_server_dn


def _start_amt(state: Path, desc: Description, plan: AddressPlan, clients: list[ClientPlan],
               device_certs: dict[str, tuple[Path, Path]], pki, keytab: Path, creds: dict[str, str], dc,
               plant: Callable[[list], None] = lambda specs: None):
    from .amt_sim import AclEntry, AmtSimulator, DeviceSpec  # noqa: PLC0415

    root_hash = bytes.fromhex(pki.root_sha256())
    console_sid = dc.sid_of(CONSOLE_USER)
    specs = []
    for c in clients:
        cert, key = device_certs.get(c.fqdn, ("", ""))
        specs.append(DeviceSpec(
            fqdn=c.fqdn, address=c.address, uuid=c.uuid, amt_version=desc.amt_version,
            provisioning_state=2 if c.provisioned else 0, provisioning_mode=1,
            hashes=[(2, "VPROLAB Root CA", root_hash, True, False)],
            digest_user=AMT_USER, digest_password=creds["amt"], kerberos_realm=REALM,
            kerberos_keytab=str(keytab) if c.provisioned else "",
            kerberos_spns=[f"HTTP/{c.fqdn}:16992", f"HTTP/{c.fqdn}:16993"] if c.provisioned else [],
            acl=[AclEntry(kerberos_sid=console_sid)], latency_ms=desc.latency_ms,
            tls_cert=str(cert), tls_key=str(key), send_hellos=not c.provisioned,
            provision_server=(plan.site_server, 9971)))
    plant(specs)
    return AmtSimulator(specs, state_file=state / "amt" / "calls.jsonl").start()


def _start_site_server(state: Path, desc: Description, plan: AddressPlan, clients: list[ClientPlan], pki, dc,
                       creds: dict[str, str], plant: Callable[[Any], None] = lambda spec: None):
    """The Configuration Manager site server: WinRM, the service point on 9971, AMTOPMGR.LOG on the SMB share.

    Its un-provision action does what the real one does, through the lab's own servers: ``Unprovision`` on the
    device over WS-MAN, the device's web server certificate revoked in the next CRL, its AD object deleted.
    """
    from cryptography import x509  # noqa: PLC0415

    from ..probes import x509 as pki_probe
    from ..probes.amt import AmtDevice
    from ..probes.dns import ConnectionRouting, Resolver
    from ..probes.wsman import DigestAuth, WsmanClient
    from .site_server import ClientRecord, SiteServerSimulator, SiteServerSpec

    fqdn = f"{HOSTS['site_server']}.{DOMAIN}"
    cert, key = pki.issue_web_server_cert(fqdn)
    keytab = state / "site" / "winrm.keytab"
    keytab.parent.mkdir(exist_ok=True)
    dc.export_keytab(keytab, [f"HTTP/{fqdn}"])
    records = [ClientRecord(fqdn=c.fqdn, uuid=c.uuid, address=c.address, resource_id=16777216 + c.index,
                            client=1 if c.provisioning == "in_band" else 0,
                            client_version="4.00.6221.1000" if c.provisioning == "in_band" else "",
                            amt_full_version=desc.amt_version, imported_oob=c.provisioning == "out_of_band",
                            provisioned=c.provisioned) for c in clients]
    spec = SiteServerSpec(
        address=plan.site_server, fqdn=fqdn, site_code=SITE_CODE, clients=records,
        collections=[{"CollectionID": f"{SITE_CODE}00010", "Name": "vPro clients",
                      "members": [c.fqdn for c in clients], "amt_auto_provision": True}],
        oob={"webui_enabled": 1, "realms_enabled": [2, 3, 4, 5, 6, 7, 12, 13],
             "provisioning_account": f"{NETBIOS}\\amtprov", "amt_container": f"OU=AMT,{dc.base_dn}",
             "certificate_template": "IntelAMTWebServer", "issuing_ca": f"ca01.{DOMAIN}\\VPROLAB Issuing CA",
             "provisioning_certificate_thumbprint": pki_probe.fingerprint(pki.provisioning_cert, "sha1")},
        tls_cert=str(cert), tls_key=str(key), basic_users={"Administrator": creds["admin"]},
        kerberos_keytab=str(keytab), kerberos_realm=REALM,
        log_dir=str(dc.share_dirs[f"SMS_{SITE_CODE}"] / "Logs"), calls_file=str(state / "site" / "calls.jsonl"))
    plant(spec)
    # The service point reaches devices by FQDN over TLS (16993), resolving through the estate's DNS.
    ConnectionRouting(Resolver([plan.dc], timeout=3.0), [DOMAIN]).install()

    def amt_unprovision(record) -> None:
        client = WsmanClient.for_amt(record.fqdn, tls=True, auth=DigestAuth(AMT_USER, creds["amt"]),
                                     ca_bundle=str(pki.root_path), timeout=10)
        AmtDevice(client).unprovision()

    def revoke_certificate(record) -> None:
        leaf = x509.load_pem_x509_certificate((pki.dir / "devices" / f"{record.fqdn}.pem").read_bytes())
        pki.revoke(leaf.serial_number)
        pki.publish_crl()

    def delete_ad_object(record) -> None:
        dc.delete(dc.account_dn(record.fqdn.split(".")[0].upper() + "$"))

    return SiteServerSimulator(spec, hooks={"amt_unprovision": amt_unprovision,
                                            "revoke_certificate": revoke_certificate,
                                            "delete_ad_object": delete_ad_object}).start()


def _start_windows_clients(lab: Lab, state: Path, clients: list[ClientPlan], pki,
                           device_certs: dict[str, tuple[Path, Path]], creds: dict[str, str]) -> int:
    """The operating system of in-band clients: WinRM/WMI on each PC's address, its C$ share with OOBMGMT.LOG."""
    from .file_server import LabFileServer  # noqa: PLC0415
    from .windows_client import WindowsClients, WindowsClientSpec

    in_band = [c for c in clients if c.provisioning == "in_band"]
    if not in_band:
        return 0
    files = LabFileServer(state / "clients" / "smb", [c.address for c in in_band], password=creds["admin"],
                          workgroup=NETBIOS).start()
    lab._started("client-smb", files.stop)
    specs = []
    for c in in_band:
        cert, key = device_certs.get(c.fqdn) or pki.issue_web_server_cert(c.fqdn)
        specs.append(WindowsClientSpec(
            fqdn=c.fqdn, address=c.address, uuid=c.uuid, site_code=SITE_CODE,
            management_point=f"{HOSTS['site_server']}.{DOMAIN}", site_server=f"{HOSTS['site_server']}.{DOMAIN}",
            tls_cert=str(cert), tls_key=str(key), basic_users={"Administrator": creds["admin"]},
            log_dir=str(files.ccm_logs_dir(c.address))))
    windows = WindowsClients(specs, calls_file=state / "clients" / "calls.jsonl").start()
    lab._started("windows-clients", windows.stop)
    return len(specs)


def _write_environment(state: Path, desc: Description, plan: AddressPlan, clients: list[ClientPlan], pki,
                       dc_ca: Path, dhcp_port: int) -> Path:
    # The estate's trust anchors: the lab PKI's root, and the CA Samba made for the DC's LDAPS certificate (on a
    # real estate the enterprise CA issues that one too).
    trusted = state / "trusted_roots.pem"
    trusted.write_bytes(pki.root_path.read_bytes() + dc_ca.read_bytes())
    env = {
        "name": "lab",
        "site": {"name": "Lab", "code": SITE_CODE, "domain": DOMAIN, "realm": REALM,
                 "amt_container": f"OU=AMT,DC={DOMAIN.split('.')[0]},DC={DOMAIN.split('.')[1]}"},
        "dns": {"servers": [plan.dc], "port": 53, "route_connections": True},
        "credentials": {
            "ldap": {"user": f"Administrator@{REALM}", "password": "file:secrets/admin.secret"},
            "smb": {"user": f"{NETBIOS}\\Administrator", "password": "file:secrets/admin.secret"},
            "winrm": {"user": "Administrator", "password": "file:secrets/admin.secret"},
            "amt": {"user": AMT_USER, "password": "file:secrets/amt.secret"},
            "console": {"user": f"{CONSOLE_USER}@{REALM}", "password": "file:secrets/console.secret"},
        },
        "servers": [
            {"fqdn": f"{HOSTS['dc']}.{DOMAIN}", "roles": ["domain_controller", "dns"], "address": plan.dc},
            {"fqdn": f"{HOSTS['site_server']}.{DOMAIN}", "roles": ["site_server", "oob_service_point",
                                                                   "reporting_point"],
             "address": plan.site_server, "log_share": f"SMS_{SITE_CODE}", "log_path": "Logs/AMTOPMGR.LOG",
             "smb_host": f"{HOSTS['dc']}.{DOMAIN}",  # the lab's Samba DC serves the site server's share
             "winrm": f"https://{HOSTS['site_server']}.{DOMAIN}:5986/wsman"},
            {"fqdn": f"{HOSTS['ca']}.{DOMAIN}", "roles": ["issuing_ca"], "address": plan.ca,
             "ca_name": "VPROLAB Issuing CA"},
            {"fqdn": f"{HOSTS['dhcp']}.{DOMAIN}", "roles": ["dhcp"], "address": plan.dhcp,
             "probe_from": plan.console, "dhcp_port": dhcp_port},
            {"fqdn": f"{HOSTS['console']}.{DOMAIN}", "roles": ["oob_console"], "address": plan.console,
             "testinfra": "local://"},
        ],
        "pki": {"provisioning_chain": str(pki.provisioning_chain_path), "trusted_roots": str(trusted),
                "web_server_template": "IntelAMTWebServer", "issuing_ca": "VPROLAB Issuing CA"},
        "clients": [{"fqdn": c.fqdn, "address": c.address, "uuid": c.uuid, "provisioning": c.provisioning,
                     "canary": c.canary} for c in clients],
        "console": {"user": f"{NETBIOS}\\{CONSOLE_USER}"},
        "attestations": _lab_attestations(),
        "lab": {"state_file": "lab.json"},
    }
    path = state / "environment.yaml"
    path.write_text("# Written by vpro-lab: the environment of the running lab. Do not edit; edit lab.yaml.\n"
                    + yaml.safe_dump(env, sort_keys=False))
    return path


def _lab_attestations() -> list[dict[str, Any]]:
    """The lab attests the manual rows for what it simulates (BIOS, MEBx screens): it built them that way."""
    from ..catalog import load  # noqa: PLC0415

    today = dt.date.today()
    return [{"check": c.id, "target": "*", "by": "vpro-lab", "at": today,
             "seen": f"simulated estate, built to satisfy: {c.title}"} for c in load().values() if not c.automated]


def _write_lab_json(state: Path, desc: Description, plan: AddressPlan, clients: list[ClientPlan],
                    creds: dict[str, str], dc, dhcp, pki, env_path: Path,
                    planted: list[dict[str, Any]]) -> dict[str, Any]:
    info = {
        "status": "ready", "pid": os.getpid(), "net": desc.net, "description": asdict(desc),
        "domain": DOMAIN, "realm": REALM,
        "dc": {"address": plan.dc, "admin_user": f"Administrator@{REALM}", "admin_password": creds["admin"],
               "smb_conf": str(dc.smb_conf), "krb5_conf": str(dc.krb5_conf), "ca_cert": str(dc.ca_cert)},
        "dns": {"address": plan.dc, "port": 53},
        "dhcp": {"address": plan.dhcp, "port": dhcp.port},
        "pki": {"root_cert": str(pki.root_path), "issuing_cert": str(pki.issuing_path),
                "issuing_key": str(state / "pki" / "issuing.key"), "crl_url": pki.url("issuing.crl"),
                "crl_path": str(pki.issuing_crl_path), "provisioning_chain": str(pki.provisioning_chain_path)},
        "site_server": {"fqdn": f"{HOSTS['site_server']}.{DOMAIN}", "address": plan.site_server,
                        "winrm_url": f"http://{HOSTS['site_server']}.{DOMAIN}:5985/wsman",
                        "log_share": f"SMS_{SITE_CODE}", "log_path": "Logs/AMTOPMGR.LOG"},
        "console": {"user": f"{CONSOLE_USER}@{REALM}", "password": creds["console"]},
        "amt": {"calls": str(state / "amt" / "calls.jsonl"), "keytab": str(state / "amt" / "devices.keytab")},
        "clients": [{"fqdn": c.fqdn, "address": c.address, "uuid": c.uuid, "provisioning": c.provisioning,
                     "canary": c.canary, "provisioned": c.provisioned, "amt_user": AMT_USER,
                     "amt_password": creds["amt"]} for c in clients],
        "environment_file": str(env_path),
        "faults": planted,
    }
    path = state / "lab.json"
    tmp = state / "lab.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=1)
    os.replace(tmp, path)
    return info
