"""Building the lab estate: :func:`build` turns a :class:`~pytest_vpro.lab.estate.Description` into running
servers on the lab's loopback addresses (PKI, Samba, DHCP, CRL/AIA, the AMT, site server, CA host and Windows
simulators), plants the description's faults at each stage, then writes ``lab.json`` (mode 0600: addresses,
paths, generated credentials) and the environment file the suite reads.

It imports the simulators (aiohttp, the [lab] extra) at its top: only a process that builds a lab imports this
module (:func:`pytest_vpro.lab.manager.serve`).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import secrets as pysecrets
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from .. import catalog
from ..probes import x509 as pki_probe
from ..probes.amt import AmtDevice
from ..probes.dns import ConnectionRouting, Resolver
from ..probes.wsman import DigestAuth, WsmanClient
from . import faults
from .addresses import AddressPlan
from .amt_sim import AmtSimulator
from .amt_spec import AclEntry, DeviceSpec
from .ca_host import CaHost, CaHostSpec
from .dhcp import LabDHCP
from .estate import Description, plan_clients, plant_faults
from .file_server import LabFileServer
from .firewall import DroppingFirewall
from .http_server import LabHTTPServer
from .names import (
    AMT_USER,
    CONFIGURATION_DN,
    CONSOLE_USER,
    DOMAIN,
    HOSTS,
    NETBIOS,
    OPERATORS_GROUP,
    REALM,
    SITE_CODE,
    SITE_SERVER_ACCOUNT,
    ClientPlan,
)
from .pki import ISSUING_CA_NAME, ROOT_CA_NAME, LabPKI, PkiFaults, sign
from .samba import SambaDC
from .samba_dns import reverse_name
from .site_server import SMS_PERMISSIONS, ClientRecord, SiteServerSimulator, SiteServerSpec
from .site_spec import KB908209_KEY
from .windows_client import WindowsClients, WindowsClientSpec

#: Where a domain member's logical stores come from, by default: the Trusted Root store's enterprise root from AD
#: (the Enterprise store), Personal and Intermediate from the computer's own registry stores.
STORE_LOCATION = {"ROOT": "enterprise", "MY": "registry", "CA": "registry"}


def store_key(store: str, cert, location: str | None = None) -> str:
    r"""The registry key of ``cert`` in the physical store of ``location`` (default :data:`STORE_LOCATION`)
    behind the computer's logical ``store`` (``HKLM\...\<store>\Certificates\<SHA-1>``)."""
    location = location or STORE_LOCATION.get(store.upper(), "registry")
    physical = next(p for p in pki_probe.physical_stores(store) if p.location == location)
    return f"{physical.key}\\{pki_probe.fingerprint(cert, 'sha1').upper()}"


class Lab:
    """A built, running lab. :meth:`stop` stops every server it started, in reverse order."""
    def __init__(self, state: Path, desc: Description, log: Callable[[str], None]) -> None:
        self.state, self.desc, self.log = state, desc, log
        self.plan = AddressPlan(desc.net)
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self.info: dict[str, Any] = {}

    def started(self, name: str, stop: Callable[[], None]) -> None:
        self._stops.append((name, stop))

    def stop(self) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest; say what could not be stopped
                self.log(f"stopping {name} failed: {exc}")


def build(desc: Description, state: Path, log: Callable[[str], None]) -> Lab:
    """Create and start the whole estate in ``state`` (which must be empty or absent)."""
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    lab = Lab(state, desc, log)
    plan = lab.plan
    clients = plan_clients(desc, plan)
    planted = plant_faults(desc, clients)
    ctx = faults.Context(plan=plan, state=state, clients=clients, era=desc.era)
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
                     site_server=HOSTS["site_server"], faults=PkiFaults(**ctx.pki), signature_hash=desc.signature_hash,
                     ldap_config_dn=CONFIGURATION_DN if desc.of_2009 else None, ca_host=HOSTS["ca"],
                     infrastructure_ca=desc.of_2009)
        device_certs = {c.fqdn: pki.issue_web_server_cert(c.fqdn) for c in clients if c.provisioned}
        pki.publish_crl()
        log(f"PKI ({desc.signature_hash.upper()}): root, issuing CA, provisioning certificate, {len(device_certs)} "
            f"device certificates ({time.monotonic() - t0:.1f} s)")

        t0 = time.monotonic()
        dc = SambaDC(state / "samba", plan.dc, admin_password=creds["admin"], domain=DOMAIN, netbios=NETBIOS,
                     hostname=HOSTS["dc"], site_code=SITE_CODE)
        dc.provision()
        log(f"Samba: domain {DOMAIN} provisioned ({time.monotonic() - t0:.1f} s)")
        t0 = time.monotonic()
        dc.start()
        lab.started("samba", dc.stop)
        log(f"Samba: LDAP, LDAPS, Kerberos, DNS and SMB answer on {plan.dc} ({time.monotonic() - t0:.1f} s)")

        t0 = time.monotonic()
        faults.apply("directory_setup", planted, ctx, dc=dc, lab_pki=pki)
        _populate_directory(dc, plan, clients, creds, ctx.directory, pki)
        if desc.of_2009:  # AD CS publishes every CRL into CN=CDP as well; so does the lab, from now on
            for crl_path in (pki.root_crl_path, pki.issuing_crl_path):
                _publish_crl_in_directory(dc, pki, crl_path.read_bytes())
            pki.on_publish = lambda ca, der: _publish_crl_in_directory(dc, pki, der, ca)
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
        lab.started("dhcp", dhcp.stop)
        http = LabHTTPServer(pki.publish_dir, address=plan.ca, port=80).start()
        lab.started("crl-http", http.stop)
        log(f"DHCP on {plan.dhcp}:67, CRL/AIA on http://{HOSTS['ca']}.{DOMAIN}/pki/ ({plan.ca})")

        t0 = time.monotonic()
        sim = _start_amt(state, desc, plan, clients, device_certs, pki, keytab, creds, dc,
                         plant=lambda specs: faults.apply("device", planted, ctx, devices=specs))
        lab.started("amt-sim", sim.stop)
        log(f"AMT simulator: {len(sim.devices)} devices on 16992/16993 ({time.monotonic() - t0:.1f} s)")

        t0 = time.monotonic()
        site = _start_site_server(state, desc, plan, clients, pki, dc, creds,
                                  plant=lambda spec: faults.apply("site_server", planted, ctx, site_spec=spec))
        lab.started("site-server", site.stop)
        ca_host = _start_ca_host(state, plan, pki, dc, creds, ctx.ca_host)
        lab.started("ca-host", ca_host.stop)
        faults.apply("running", planted, ctx, site=site)
        log(f"Site server simulator: WinRM on {plan.site_server}:5985/5986, out of band service point on 9971, "
            f"AMTOPMGR.LOG in \\\\{HOSTS['dc']}\\SMS_{SITE_CODE}\\Logs ({time.monotonic() - t0:.1f} s)")

        t0 = time.monotonic()
        in_band = _start_windows_clients(lab, state, clients, pki, device_certs, creds, plan, dc, plant=lambda specs,
                                         console: faults.apply("windows", planted, ctx, windows=specs, console=console))
        logs = ", OOBMGMT.LOG on \\\\<pc>\\C$" if in_band else ""
        log(f"Windows hosts: the console host and {in_band} in-band PCs with WinRM on 5985/5986{logs} "
            f"({time.monotonic() - t0:.1f} s)")

        if ctx.firewall:
            lab.started("firewall", DroppingFirewall(ctx.firewall).start().stop)
            log(f"firewall: SYNs dropped to {', '.join(f'{a}:{p}' for a, p in ctx.firewall)}")
        env_path = _write_environment(state, desc, plan, clients, pki, dc.ca_cert, dhcp.port, ctx.dns_servers)
        lab.info = _write_lab_json(state, desc, plan, clients, creds, dc, dhcp, pki, env_path,
                                   [p.describe(clients) for p in planted])
        if planted:
            log(f"faults planted: {', '.join(sorted({p.fault.name for p in planted}))}")
        return lab
    except BaseException:
        lab.stop()
        raise


def _populate_directory(dc, plan: AddressPlan, clients: list[ClientPlan], creds: dict[str, str], setup,
                        pki) -> None:
    """Objects and records of a healthy estate, less what ``setup`` (:class:`faults.DirectorySetup`) takes away.

    Computer objects: the site server's; every client's own computer account in CN=Computers (a domain member's,
    ``<HOST>$``), and each provisioned client's AMT object in the AMT OU besides (cn the host, sAMAccountName
    ``<HOST>-AMT$``: SCCM's naming is unconfirmed, and one domain cannot hold two accounts of one name).
    The issuing CA's pKIEnrollmentService (an enterprise CA) lists the templates it issues."""
    for role in ("ca", "console"):  # the Windows hosts' own accounts, with the SPN WinRM's Kerberos asks for
        dc.add_winrm_host(HOSTS[role].upper(), f"{HOSTS[role]}.{DOMAIN}")
    site_server_dn = dc.add_computer(HOSTS["site_server"].upper(), spns=[f"HOST/{HOSTS['site_server']}.{DOMAIN}"],
                                     dns_host_name=f"{HOSTS['site_server']}.{DOMAIN}")
    # The DHCP server registers clients in the (secure only) zone: a member of DnsUpdateProxy, as on AD.
    dc.add_group_member("DnsUpdateProxy", dc.add_computer(HOSTS["dhcp"].upper(), with_keys=False,
                                                          dns_host_name=f"{HOSTS['dhcp']}.{DOMAIN}"))
    amt_ou = dc.add_ou(dc.amt_ou())
    dc.grant(amt_ou, f"(A;CI;{setup.amt_container_rights};;;{dc.sid_of(SITE_SERVER_ACCOUNT)})")
    dc.add_group(OPERATORS_GROUP)
    dc.add_user(CONSOLE_USER, creds["console"], groups=[OPERATORS_GROUP])
    dc.add_cert_template("IntelAMTWebServer", **setup.template)
    if setup.enrollment_service:
        dc.add_enrollment_service(ISSUING_CA_NAME, f"{HOSTS['ca']}.{DOMAIN}",
                                  setup.ca_certificate or pki.issuing_cert.public_bytes(Encoding.DER),
                                  setup.published_templates)
    _publish_ca_certificates(dc, pki)
    dc.create_zone(dc.reverse_zone())
    dc.add_dns_record(reverse_name(plan.dc, dc.reverse_zone()), "PTR", f"{HOSTS['dc']}.{DOMAIN}", dc.reverse_zone())
    for role in ("site_server", "ca", "dhcp", "console"):
        dc.add_host(f"{HOSTS[role]}.{DOMAIN}", getattr(plan, role))
    dc.add_dns_record("ProvisionServer", "A", plan.site_server)
    for c in clients:
        dc.add_host(c.fqdn, c.address)
        if c.wireless_address:
            dc.add_host(c.fqdn, c.wireless_address)  # DHCP registers the wireless lease too
        dc.add_os_account(c.fqdn)  # every client is a Windows PC joined to the domain
        if c.provisioned:
            dc.add_amt_account(c.fqdn)  # and the site publishes its AMT object once it provisioned it
    del site_server_dn


def _publish_crl_in_directory(dc, pki, der: bytes, ca: str | None = None) -> None:
    """A CRL in ``CN=<CA>,CN=<CA host>,CN=CDP,CN=Public Key Services,...``, where the ldap:/// CDP points."""
    if ca is None:
        ca = x509.load_der_x509_crl(der).issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    dc.publish_crl(pki.ldap_cdp_dn(ca), der)


def _publish_ca_certificates(dc, pki) -> None:
    """The enterprise PKI in AD as AD CS publishes it: the root in Certification Authorities, both CA
    certificates in AIA (where Windows clients and the checks find the whole chain)."""
    dc.add_certification_authority("Certification Authorities", ROOT_CA_NAME, pki.root_cert.public_bytes(Encoding.DER))
    for name, cert in ((ROOT_CA_NAME, pki.root_cert), (ISSUING_CA_NAME, pki.issuing_cert)):
        dc.add_certification_authority("AIA", name, cert.public_bytes(Encoding.DER))


def _start_amt(state: Path, desc: Description, plan: AddressPlan, clients: list[ClientPlan],
               device_certs: dict[str, tuple[Path, Path]], pki, keytab: Path, creds: dict[str, str], dc,
               plant: Callable[[list], None] = lambda specs: None):


    root_hash = bytes.fromhex(pki.root_sha256())
    root_sha1 = bytes.fromhex(pki.root_sha1())
    console_sid = dc.sid_of(CONSOLE_USER)
    specs = []
    setup_key = None
    for c in clients:
        cert, key = device_certs.get(c.fqdn, ("", ""))
        if not c.provisioned:  # AMT in setup listens on 16993 for the provisioning server, with its own certificate
            setup_key = setup_key or _setup_key(state)
            cert, key = _setup_certificate(state, c.fqdn, setup_key, desc.signature_hash), setup_key
        version = desc.amt_version_of(c.index)
        # SHA-256 hashes only from AMT 6.0 (docs/protocols.md, "The hello packet"): older firmware lists SHA-1
        hashes = [(2, "VPROLAB Root CA", root_hash, True, False)] if _at_least(version, 6) \
            else [(1, "VPROLAB Root CA", root_sha1, True, False)]
        specs.append(DeviceSpec(
            fqdn=c.fqdn, address=c.address, uuid=c.uuid, amt_version=version,
            provisioning_state=2 if c.provisioned else 0, provisioning_mode=1,
            hashes=hashes, tls_profile="legacy" if desc.of_2009 else "modern",
            digest_user=AMT_USER, digest_password=creds["amt"], kerberos_realm=REALM,
            kerberos_keytab=str(keytab) if c.provisioned else "",
            kerberos_spns=[f"HTTP/{c.fqdn}:16992", f"HTTP/{c.fqdn}:16993"] if c.provisioned else [],
            acl=[AclEntry(kerberos_sid=console_sid)], latency_ms=desc.latency_ms,
            tls_cert=str(cert), tls_key=str(key), send_hellos=not c.provisioned,
            setup_answers_wsman=not desc.of_2009,  # real firmware: only the provisioning server's TLS
            provision_server=(plan.site_server, 9971), wireless_address=c.wireless_address,
            ieee8021x_protocol=2 if c.ieee8021x else None,  # PEAPv0/EAP-MSCHAPv2
            wifi_profiles=[{"name": "VPROLAB-WLAN", "authentication": 7, "encryption": 4, "protocol": 2}]
            if c.wireless_address else []))  # WPA2 802.1X, CCMP (AES), PEAPv0/EAP-MSCHAPv2
    plant(specs)
    return AmtSimulator(specs, state_file=state / "amt" / "calls.jsonl").start()


def _at_least(version: str, major: int) -> bool:
    head = version.split(".")[0]
    return head.isdigit() and int(head) >= major


def _setup_key(state: Path) -> Path:
    """One RSA key for the certificates pre-provisioned devices present (lab shortcut: one key, a certificate each)."""
    path = state / "amt" / "setup" / "setup.key.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _setup_certificate(state: Path, fqdn: str, key_path: Path, signature_hash: str = "sha256") -> Path:
    """The self-signed certificate a device in setup (pre-provisioning) presents on 16993: the provisioning server
    connects there after a hello, and it is AMT that checks the other side (the provisioning certificate)."""
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn.split(".")[0])])
    now = dt.datetime.now(dt.timezone.utc)
    cert = sign(x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=3650)), key, signature_hash)
    path = key_path.parent / f"{fqdn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _start_site_server(state: Path, desc: Description, plan: AddressPlan, clients: list[ClientPlan], pki, dc,
                       creds: dict[str, str], plant: Callable[[Any], None] = lambda spec: None):
    """The Configuration Manager site server: WinRM, the service point on 9971, AMTOPMGR.LOG on the SMB share.

    Its out of band operations (``SMS_Collection.AMTOperateForMachines``) do what the real service point does,
    through the lab's own servers: power requests and discovery over WS-MAN with the service point's AMT
    credential; un-provisioning as ``Unprovision`` on the device, the device's web server certificate revoked in
    the next CRL, its AD object deleted. It is a 64-bit Windows Server 2003 x64: Configuration Manager, a 32-bit
    program, keeps its keys under ``SOFTWARE\\Wow6432Node``.
    """

    fqdn = f"{HOSTS['site_server']}.{DOMAIN}"
    cert, key = pki.issue_infrastructure_cert(fqdn)
    keytab = state / "site" / "winrm.keytab"
    keytab.parent.mkdir(exist_ok=True)
    dc.export_keytab(keytab, [f"HTTP/{fqdn}"])
    records = [ClientRecord(fqdn=c.fqdn, uuid=c.uuid, address=c.address, resource_id=16777216 + c.index,
                            client=1 if c.provisioning == "in_band" else 0,
                            client_version="4.00.6221.1000" if c.provisioning == "in_band" else "",
                            amt_full_version=desc.amt_version_of(c.index), imported_oob=c.provisioning == "out_of_band",
                            provisioned=c.provisioned) for c in clients]
    spec = SiteServerSpec(
        address=plan.site_server, fqdn=fqdn, site_code=SITE_CODE, clients=records,
        collections=[{"CollectionID": f"{SITE_CODE}00010", "Name": "vPro clients",
                      "members": [c.fqdn for c in clients], "amt_auto_provision": True}],
        oob={"webui_enabled": 1, "realms_enabled": [2, 3, 4, 5, 6, 7, 12, 13],
             "provisioning_account": f"{NETBIOS}\\amtprov", "amt_container": f"OU=AMT,{dc.base_dn}",
             "certificate_template": "IntelAMTWebServer", "issuing_ca": f"ca01.{DOMAIN}\\VPROLAB Issuing CA",
             "provisioning_certificate_thumbprint": pki_probe.fingerprint(pki.provisioning_cert, "sha1")},
        os_caption="Microsoft(R) Windows(R) Server 2003, Enterprise x64 Edition", os_architecture="64-bit",
        memberships={f"{NETBIOS}\\{CONSOLE_USER}": [f"{NETBIOS}\\{OPERATORS_GROUP}"]},
        permissions=[  # the console user's group operates the clients' collection; Administrator everything
            {"UserName": f"{NETBIOS}\\Administrator", "rights": list(SMS_PERMISSIONS)},
            {"UserName": f"{NETBIOS}\\{OPERATORS_GROUP}", "InstanceKey": f"{SITE_CODE}00010", "rights": [
                "Read", "Read Resource", "Modify Collection Setting", "View management controllers",
                "Manage management controllers"]}],
        # WinRM as Windows has it by default: Kerberos (Negotiate) on, Basic off (docs/protocols.md)
        tls_cert=str(cert), tls_key=str(key), basic_users={}, hello_port=9971 if desc.site_hears_hellos else 0,
        kerberos_keytab=str(keytab), kerberos_realm=REALM, dns_servers=[plan.dc],
        provisioning_certificate_cn=pki_probe.common_name(pki.provisioning_cert) or "",
        provisioning_certificate_not_after=pki.provisioning_cert.not_valid_after_utc.isoformat(),
        log_dir=str(dc.share_dirs[f"SMS_{SITE_CODE}"] / "Logs"), calls_file=str(state / "site" / "calls.jsonl"))
    # The computer's certificate stores as a domain member has them: the provisioning certificate (with its key)
    # in Personal and its issuing CA in Intermediate Certification Authorities, where importing the PFX with its
    # chain puts them (the computer's own stores); the root in Trusted Root Certification Authorities from the
    # Enterprise store, which autoenrollment downloads from AD's Certification Authorities container.
    for store, cert_ in (("MY", pki.provisioning_cert), ("CA", pki.issuing_cert), ("ROOT", pki.root_cert)):
        spec.registry[store_key(store, cert_)] = {"Blob": pki_probe.make_store_blob(cert_)}
    plant(spec)
    # The service point reaches devices by FQDN over TLS (16993), resolving through the estate's DNS.
    ConnectionRouting(Resolver([plan.dc], timeout=3.0), [DOMAIN]).install()

    def device(record) -> AmtDevice:  # the service point's own credential, as it provisioned the device
        return AmtDevice(WsmanClient.for_amt(record.fqdn, tls=True, auth=DigestAuth(AMT_USER, creds["amt"]),
                                             ca_bundle=str(pki.root_path), timeout=10))

    def amt_unprovision(record) -> None:
        device(record).unprovision()

    def amt_power(record, state: int) -> None:
        device(record).request_power_state(state)

    def amt_discover(record) -> int | None:
        try:
            return device(record).provisioning().state
        except Exception:  # noqa: BLE001 - no answer: not supported
            return None

    def revoke_certificate(record) -> None:
        leaf = x509.load_pem_x509_certificate((pki.dir / "devices" / f"{record.fqdn}.pem").read_bytes())
        pki.revoke(leaf.serial_number)
        pki.publish_crl()

    def delete_ad_object(record) -> None:
        dc.delete(dc.amt_account_dn(record.fqdn))

    return SiteServerSimulator(spec, hooks={"amt_unprovision": amt_unprovision,
                                            "revoke_certificate": revoke_certificate,
                                            "delete_ad_object": delete_ad_object, "amt_power": amt_power,
                                            "amt_discover": amt_discover}).start()


def _start_ca_host(state: Path, plan: AddressPlan, pki, dc, creds: dict[str, str], planted: dict[str, Any]):
    """The issuing CA's host: WinRM with CertSvc's registry (its Security grants the site server Issue and
    Manage Certificates), and the RPC endpoint mapper port, 135 (see :mod:`pytest_vpro.lab.ca_host`). WinRM as
    Windows has it by default: Kerberos through its ``HTTP/<fqdn>`` keytab, Basic off."""

    fqdn = f"{HOSTS['ca']}.{DOMAIN}"
    cert, key = pki.issue_infrastructure_cert(fqdn)
    spec = CaHostSpec(address=plan.ca, fqdn=fqdn, ca_name=ISSUING_CA_NAME, domain_sid=dc.domain_sid,
                      site_server_sid=dc.sid_of(SITE_SERVER_ACCOUNT), tls_cert=str(cert), tls_key=str(key),
                      kerberos_keytab=str(dc.export_winrm_keytab(fqdn, state / "ca" / "winrm.keytab")),
                      kerberos_realm=REALM, **planted)
    return CaHost(spec).start()


def _start_windows_clients(lab: Lab, state: Path, clients: list[ClientPlan], pki,
                           device_certs: dict[str, tuple[Path, Path]], creds: dict[str, str], plan: AddressPlan,
                           dc, plant: Callable[[list, Any], None] = lambda specs, console: None) -> int:
    """The operating system of in-band clients: WinRM/WMI on each PC's address, its C$ share with OOBMGMT.LOG;
    and the console host's (:func:`_console_host`)."""

    in_band = [c for c in clients if c.provisioning == "in_band"]
    files = None
    if in_band:
        files = LabFileServer(state / "clients" / "smb", [c.address for c in in_band], password=creds["admin"],
                              workgroup=NETBIOS).start()
        lab.started("client-smb", files.stop)
    specs = []
    for c in in_band:
        cert, key = (pki.issue_infrastructure_cert(c.fqdn) if pki.infrastructure_ca
                     else device_certs.get(c.fqdn) or pki.issue_web_server_cert(c.fqdn))
        specs.append(WindowsClientSpec(
            fqdn=c.fqdn, address=c.address, uuid=c.uuid, site_code=SITE_CODE,
            management_point=f"{HOSTS['site_server']}.{DOMAIN}", site_server=f"{HOSTS['site_server']}.{DOMAIN}",
            tls_cert=str(cert), tls_key=str(key), basic_users={"Administrator": creds["admin"]},
            log_dir=str(files.ccm_logs_dir(c.address))))
    console = _console_host(plan, pki, dc, state)
    plant(specs, console)
    windows = WindowsClients([*specs, console], calls_file=state / "clients" / "calls.jsonl").start()
    lab.started("windows-clients", windows.stop)
    return len(specs)


#: The console host's system folder, where the checks look for msxml6.dll and telnet.exe (CIM_DataFile).
CONSOLE_SYSTEM32 = r"C:\WINDOWS\system32"


def _console_host(plan: AddressPlan, pki, dc, state: Path):
    """``console01``'s Windows side: a Windows XP Professional SP3 PC running the out of band console, as the
    guide's era had them. WinRM 1.1 (KB936059), MSXML 6.0, the Telnet client, KB908209's registry entry, and
    the root and issuing CA certificates in its Trusted Root store; KB908209 itself is part of XP SP3. (The
    console's network side, connecting to AMT, is this machine: ``testinfra: local://``.) WinRM as Windows has
    it by default: Kerberos through its computer account's ``HTTP/<fqdn>`` keytab, Basic off."""

    fqdn = f"{HOSTS['console']}.{DOMAIN}"
    cert, key = pki.issue_infrastructure_cert(fqdn)
    registry: dict[str, dict[str, Any]] = {"HKLM\\" + KB908209_KEY: {"iexplore.exe": 1}}
    # The root from AD (the Enterprise store autoenrollment fills); the subordinate CA, which the guide wants in
    # Trusted Root too, from the console hosts' Group Policy object (Public Key Policies).
    registry[store_key("ROOT", pki.root_cert)] = {"Blob": pki_probe.make_store_blob(pki.root_cert)}
    registry[store_key("ROOT", pki.issuing_cert, "group policy")] = {
        "Blob": pki_probe.make_store_blob(pki.issuing_cert)}
    return WindowsClientSpec(
        fqdn=fqdn, address=plan.console, site_code="", agent_installed=False, mei_installed=False,
        hotfixes=["KB936059"], files=[rf"{CONSOLE_SYSTEM32}\msxml6.dll", rf"{CONSOLE_SYSTEM32}\telnet.exe"],
        registry=registry, tls_cert=str(cert), tls_key=str(key),
        kerberos_keytab=str(dc.export_winrm_keytab(fqdn, state / "console" / "winrm.keytab")),
        kerberos_realm=REALM)


def _write_environment(state: Path, desc: Description, plan: AddressPlan, clients: list[ClientPlan], pki,
                       dc_ca: Path, dhcp_port: int, dns_servers: list[str] | None = None) -> Path:
    # The estate's trust anchors: the lab PKI's root, and the CA Samba made for the DC's LDAPS certificate (on a
    # real estate the enterprise CA issues that one too).
    trusted = state / "trusted_roots.pem"
    trusted.write_bytes(pki.root_path.read_bytes() + dc_ca.read_bytes()
                        + (pki.infrastructure_root_path.read_bytes() if pki.infrastructure_ca else b""))
    env = {
        "name": "lab",
        "site": {"name": "Lab", "code": SITE_CODE, "domain": DOMAIN, "realm": REALM,
                 "amt_container": f"OU=AMT,DC={DOMAIN.split('.')[0]},DC={DOMAIN.split('.')[1]}"},
        "dns": {"servers": list(dns_servers or [plan.dc]), "port": 53, "route_connections": True},
        "credentials": {
            "ldap": {"user": f"Administrator@{REALM}", "password": "file:secrets/admin.secret"},
            "smb": {"user": f"{NETBIOS}\\Administrator", "password": "file:secrets/admin.secret"},
            # Kerberos first everywhere; Basic (over https) only for the in-band PCs, whose lab computer accounts
            # have no keys (nor an HTTP/ SPN), so they have no HTTP/ keytab of their own
            "winrm": {"user": "Administrator", "password": "file:secrets/admin.secret",
                      "basic_hosts": [c.fqdn for c in clients if c.provisioning == "in_band"]},
            "amt": {"user": AMT_USER, "password": "file:secrets/amt.secret"},
            "console": {"user": f"{CONSOLE_USER}@{REALM}", "password": "file:secrets/console.secret"},
        },
        "servers": [
            {"fqdn": f"{HOSTS['dc']}.{DOMAIN}", "roles": ["domain_controller", "dns"], "address": plan.dc},
            {"fqdn": f"{HOSTS['site_server']}.{DOMAIN}", "roles": ["site_server", "oob_service_point",
                                                                   "reporting_point", "wsman_translator"],
             "address": plan.site_server, "log_share": f"SMS_{SITE_CODE}", "log_path": "Logs/AMTOPMGR.LOG",
             "smb_host": f"{HOSTS['dc']}.{DOMAIN}",  # the lab's Samba DC serves the site server's share
             "winrm": f"https://{HOSTS['site_server']}.{DOMAIN}:5986/wsman"},
            {"fqdn": f"{HOSTS['ca']}.{DOMAIN}", "roles": ["issuing_ca"], "address": plan.ca,
             "ca_name": "VPROLAB Issuing CA", "winrm": f"https://{HOSTS['ca']}.{DOMAIN}:5986/wsman"},
            {"fqdn": f"{HOSTS['dhcp']}.{DOMAIN}", "roles": ["dhcp"], "address": plan.dhcp,
             "probe_from": plan.console, "dhcp_port": dhcp_port},
            {"fqdn": f"{HOSTS['console']}.{DOMAIN}", "roles": ["oob_console"], "address": plan.console,
             "testinfra": "local://",  # its network side is this machine; its Windows side the lab's WinRM
             "winrm": f"https://{HOSTS['console']}.{DOMAIN}:5986/wsman"},
        ],
        "pki": {"provisioning_chain": str(pki.provisioning_chain_path), "trusted_roots": str(trusted),
                "web_server_template": "IntelAMTWebServer", "issuing_ca": "VPROLAB Issuing CA"},
        "clients": [{"fqdn": c.fqdn, "address": c.address, "uuid": c.uuid, "provisioning": c.provisioning,
                     "canary": c.canary, **({"wireless": True} if c.wireless_address else {}),
                     **({"ieee8021x": True} if c.ieee8021x else {})} for c in clients],
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
    today = dt.date.today()
    return [{"check": c.id, "target": "*", "by": "vpro-lab", "at": today,
             "seen": f"simulated estate, built to satisfy: {c.title}"}
            for c in catalog.load().values() if not c.automated]


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
