"""Site-wide faults: the site server, its service point, its settings and logs."""
from __future__ import annotations

from typing import Any, Callable

from ...probes import x509 as certs
from ..names import (
    CONSOLE_USER,
    DOMAIN,
    DescriptionError,
)
from ..pki import (
    ISSUING_CA_NAME,
)
from ..site_spec import (
    KB908209_KEY,
    THREADS,
    WINRM_STACK_KEY,
    applicable_hotfixes,
)
from .registry import (
    CLIENT_AUTH_EKU,
    DOMAIN_LOCAL_SECURITY_GROUP,
    Context,
    Param,
    _ipv4,
    _option,
    _provision_server_address,
    _site,
    fault,
)


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


fault("console_user_many_groups", "The console user is a member of `count` extra domain local security groups. "
      "Samba's KDC lists each in the ticket's PAC (8 bytes a group, measured: 1,435 bytes of AP-REQ with 3 "
      "groups, 2,075 with 83, 2,634 with 153), so the default 400 makes an AP-REQ over 4,096 bytes; 33 (35 "
      "groups in all) fits and is the guide's ~30-group warning.", scope="site",
      params={"count": Param(400, int, "extra domain local groups", lambda v: None if 1 <= v <= 1000 else "1..1000")},
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


# --- clocks and time zones (S5-TIME-SYNCHRONIZED) ------------------------------------------------------------------
def _clock_ahead(spec: Any, seconds: float) -> None:
    spec.clock_offset_s = float(seconds)


def _wrong_time_zone(spec: Any, minutes: int, name: str) -> None:
    """The administrator picks the wrong time zone and then sets the wall clock back to the local time it showed:
    the local time looks right, the UTC clock (what Kerberos and AMT use) is off by the zones' difference."""
    spec.clock_offset_s -= (minutes - spec.utc_offset_minutes) * 60
    spec.utc_offset_minutes, spec.time_zone_name = minutes, name


_SECONDS = Param(600, (int, float), "how far the clock runs ahead (negative: behind)",
                 lambda v: None if abs(v) <= 86400 * 365 else "within a year")
_ZONE = {"minutes": Param(-480, int, "the wrong zone's offset from UTC in minutes (Win32_TimeZone.Bias)",
                          lambda v: None if -720 <= v <= 840 else "-720..840"),
         "name": Param("Pacific Standard Time", str, "the wrong zone's StandardName")}

fault("console_clock_skewed", "The console host's clock runs `seconds` (default 600: 10 min) fast, beyond Kerberos's "
      "5 minutes.", scope="site", params={"seconds": _SECONDS},
      windows=_console(_clock_ahead), fails=("S5-TIME-SYNCHRONIZED",))
fault("site_server_clock_skewed", "The site server's clock runs `seconds` (default 600: 10 min) fast.", scope="site",
      params={"seconds": _SECONDS}, site_server=_site(_clock_ahead), fails=("S5-TIME-SYNCHRONIZED",))
fault("site_server_wrong_time_zone", "The site server is set to the wrong time zone (default Pacific, UTC-8) with its "
      "wall clock set back to the local time: its UTC clock is 8 hours off.", scope="site", params=_ZONE,
      site_server=_site(_wrong_time_zone), fails=("S5-TIME-SYNCHRONIZED",))
fault("console_wrong_time_zone", "The console host is set to the wrong time zone (default Pacific, UTC-8) with its "
      "wall clock set back to the local time: its UTC clock is 8 hours off.", scope="site", params=_ZONE,
      windows=_console(_wrong_time_zone), fails=("S5-TIME-SYNCHRONIZED",))
