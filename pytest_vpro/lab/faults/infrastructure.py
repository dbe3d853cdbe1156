"""Faults of the infrastructure: the enterprise CA, the directory, DNS and the network between the site and the
clients."""
from __future__ import annotations

from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ...probes import x509 as certs
from ..addresses import AddressPlan
from ..names import (
    DOMAIN,
    SYSTEM_CERTIFICATES,
    ClientPlan,
)
from .registry import Context, _set, fault
from .site import _template

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
def _selects_expired_provisioning(ctx: Context, target: None) -> None:
    """The component keeps the old provisioning certificate selected: it stays in Personal beside the renewed
    one (which is also the exported file), and the site's record and AMTOPMGR.LOG name the old one."""
    old = ctx.lab_pki.provisioning_variant()
    thumbprint = certs.fingerprint(old, "sha1").upper()
    ctx.site_spec.registry[f"HKLM\\{SYSTEM_CERTIFICATES}\\MY\\Certificates\\{thumbprint}"] = {
        "Blob": certs.make_store_blob(old)}
    ctx.site_spec.oob["provisioning_certificate_thumbprint"] = thumbprint
    ctx.site_spec.provisioning_certificate_not_after = old.not_valid_after_utc.isoformat()


fault("site_selects_expired_provisioning_cert", "The out of band component still selects the provisioning "
      "certificate that was renewed: expired 5 days ago, it is still in the service point's Personal store beside "
      "the renewed one (the exported file), and AMTOPMGR.LOG unloads it.", scope="site",
      site_server=_selects_expired_provisioning, fails=("S3-PROV-CERT-CHAIN-DATES-VALID",))


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
      fails=("PRE-CLIENT-NO-DISJOINT-NAMESPACE", "PRE-AMT-DISABLED-ON-UNSUPPORTED-COMPUTERS"))
fault("noncontiguous_namespace", "The client's DNS name is <host>.vprolab.example, a namespace the site server's "
      "(vprolab.test) does not share; its computer object stays in vprolab.test. (On a provisioned client the suite "
      "cannot reach its AMT by name either: the environment routes only its own domains.)", scope="client",
      plan=_suffix("vprolab.example"), directory=_foreign_zone,
      fails=("S1-CLIENT-SHARED-DNS-NAMESPACE", "PRE-CLIENT-NO-DISJOINT-NAMESPACE",
             "PRE-AMT-DISABLED-ON-UNSUPPORTED-COMPUTERS"))


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


def _web_server_cert_revoked(ctx: Context, c: ClientPlan) -> None:
    cert = x509.load_pem_x509_certificate((ctx.state / "pki" / "devices" / f"{c.fqdn}.pem").read_bytes())
    ctx.lab_pki.revoke(cert.serial_number, x509.ReasonFlags.key_compromise)  # the CA console's Revoke Certificate
    ctx.lab_pki.publish_crl()


fault("web_server_cert_revoked", "The CA administrator revoked the client's AMT web server certificate (reason key "
      "compromise) and published the CRL; the ME still presents the certificate.", scope="client",
      needs="provisioned", directory=_web_server_cert_revoked, fails=("S3-CLIENT-AMT-WEB-SERVER-CERT",))
