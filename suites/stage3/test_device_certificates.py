"""Stage 3: the provisioning certificate as the site server and the MEs judge it, and the MEs' own certificates.

Guide, Stage 3: "Check the provisioning certificate was accepted by SCCM server during configuration of the Out of
Band Component and not rejected due to a missing OID or a subject CN domain name that differs from SCCM server domain
(check AMTOPMGR.LOG using Trace32)"; "Check the provisioning certificate subject domain or FQDN is trusted by Intel
AMT client (check DHCP option 15, or MEBX PKI Domain or MEBX Provision Server FQDN)"; "In non-COM and non-NET
domains, if clients to be provisioned are located in third level DNS domains or below, check child domains are
trusted by the client ME (evaluate DNS topology, DHCP option 15, provisioning certificates and Intel AMT firmware
version, MEBX DNS Suffix and Provision Server FQDN settings ...)"; "Check clients are not impacted by self-signed
certificate behavior (upgrade to Intel AMT firmware V3.2.2 or later ...)"; "Intel AMT web server certificate
template is correctly configured in the issuing CA".

AMT trusts a provisioning certificate whose CN's domain is its own DNS suffix or a parent of it (docs/protocols.md,
"Provisioning certificate rules"); when the ME's domain is a third-level (or deeper) domain outside .com and .net,
the catalog asks for the suffix itself. The ME's suffix is AMT_GeneralSettings.DomainName when the ME answers, else
DHCP option 15 (what an un-provisioned ME takes), else the client's own DNS suffix.
"""
import pytest

from pytest_vpro.checks import expect, not_applicable
from pytest_vpro.probes import cmlog
from pytest_vpro.probes import x509 as certs
from pytest_vpro.probes.errors import ProbeError

from .test_provisioning_certificate import provisioning_certificate

SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
CERTIFICATE_EVENTS = ("provisioning_certificate_accepted", "provisioning_certificate_rejected")


def _pki_provisioning(env) -> None:
    if not env.pki.get("provisioning_chain"):
        not_applicable("no provisioning certificate in the environment (PSK provisioning)")


def _in(domain: str, parent: str) -> bool:
    domain, parent = domain.lower().rstrip("."), parent.lower().rstrip(".")
    return domain == parent or domain.endswith("." + parent)


def _me_domain(client, facts) -> tuple[str, str]:
    """(the DNS suffix the ME trusts, where it was read): AMT's own once provisioned (before, it answers no WS-MAN:
    docs/protocols.md "An un-provisioned device"), else DHCP option 15, which the ME in setup takes its domain
    from, else the client's DNS suffix."""
    try:
        domain = facts.amt.general_settings().domain_name if facts.amt.provisioned() else ""
        if domain:
            return domain.lower(), "AMT_GeneralSettings.DomainName"
    except ProbeError:
        pass
    try:
        option15 = facts.dhcp.site_inform().domain_name
        if option15:
            return option15.lower(), "DHCP option 15"
    except ProbeError:
        pass
    return client.fqdn.split(".", 1)[1].lower(), "the client's DNS suffix"


def _amt_version(facts) -> tuple[str, str]:
    resource = facts.site.resource()
    if resource and resource.get("AMTFullVersion"):
        return str(resource["AMTFullVersion"]), "SMS_R_System.AMTFullVersion"
    if not facts.amt.provisioned():  # before provisioning AMT answers no WS-MAN (docs/protocols.md)
        return "unknown", "not in SMS_R_System.AMTFullVersion; no WS-MAN before provisioning"
    return facts.amt.version().text, "CIM_SoftwareIdentity"


@pytest.mark.check("S3-PROV-CERT-ACCEPTED-BY-SCCM")
def test_site_server_accepted_the_provisioning_certificate(server, env, facts, evidence):
    _pki_provisioning(env)
    held = provisioning_certificate(facts, evidence)
    leaf = held.leaf
    logged = sorted((e for es in facts.logs.site_events().values() for e in es if e.kind in CERTIFICATE_EVENTS),
                    key=lambda e: (e.time is None, e.time.timestamp() if e.time else 0))
    evidence.attach("AMTOPMGR.LOG", cmlog.trace(logged))
    last = logged[-1] if logged else None
    expect(last is None or last.kind != "provisioning_certificate_rejected",
           found=f"AMTOPMGR.LOG {last.time:%Y-%m-%d %H:%M}: certificate CN={last.fqdn} rejected: {last.reason}"
           if last and last.time else "a rejection", expected="no rejection since the component was last configured")
    cert_domain, own = certs.domain_suffix(leaf), server.fqdn.split(".", 1)[1].lower()
    expect(cert_domain == own, found=f"{held.where}: subject CN {certs.common_name(leaf)}, domain {cert_domain}",
           expected=f"the service point's domain, {own}")


@pytest.mark.check("S3-PROV-CERT-DOMAIN-TRUSTED-BY-AMT")
def test_me_trusts_the_provisioning_certificate_domain(client, env, facts, evidence):
    _pki_provisioning(env)
    held = provisioning_certificate(facts, evidence)
    leaf = held.leaf
    cert_domain = certs.domain_suffix(leaf) or ""
    domain, source = _me_domain(client, facts)
    evidence.attach("domains", {"provisioning certificate": certs.common_name(leaf), source: domain})
    expect(cert_domain and _in(domain, cert_domain),
           found=f"{held.where}: CN={certs.common_name(leaf)} (domain {cert_domain or 'none'}); the ME's "
                 f"domain is {domain} ({source})",
           expected="the certificate's domain equal to the ME's DNS suffix, or a parent of it")


@pytest.mark.check("S3-THIRD-LEVEL-DOMAIN-TRUSTED")
def test_third_level_domain_is_trusted(client, env, facts, evidence):
    domain, source = _me_domain(client, facts)
    labels = domain.split(".")
    if len(labels) < 3 or labels[-1] in ("com", "net"):
        not_applicable(f"the ME's domain {domain} ({source}) is not a third-level (or deeper) domain outside .com "
                       "and .net")
    _pki_provisioning(env)
    held = provisioning_certificate(facts, evidence)
    leaf = held.leaf
    cert_domain = certs.domain_suffix(leaf) or ""
    version, where = _amt_version(facts)
    evidence.attach("DNS topology", {"client": client.fqdn, f"ME domain ({source})": domain,
                                     "provisioning certificate": certs.common_name(leaf), f"AMT ({where})": version})
    expect(cert_domain == domain,
           found=f"{client.fqdn} (AMT {version}) trusts {domain} ({source}); {held.where} is for "
                 f"{cert_domain or 'no domain'} ({certs.common_name(leaf)})",
           expected=f"a provisioning certificate for {domain} itself (or the MEBx DNS suffix / Provision Server FQDN "
                    "set to the certificate's domain)")


@pytest.mark.check("S3-AMT-321-SELF-SIGNED-CERT")
def test_amt_321_does_not_serve_a_self_signed_certificate(client, env, facts, evidence):
    if not facts.amt.provisioned():  # in setup every device presents its own self-signed setup certificate
        not_applicable("not provisioned yet: the web server certificate is issued at provisioning")
    version, where = _amt_version(facts)
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts != (3, 2, 1):
        not_applicable(f"AMT {version} ({where}), not 3.2.1")
    peer = facts.network.peer_tls(client.fqdn, env.expected["ports"]["amt_https"])
    cert = peer.certificate
    evidence.attach("TLS certificate", {**certs.summary(cert), "negotiated": peer.negotiated})
    expect(not certs.is_self_signed(cert), found=f"AMT 3.2.1 ({where}) presents a self-signed certificate "
                                                 f"({cert.subject.rfc4514_string()})",
           expected="a certificate issued by the enterprise CA (firmware "
                    f"{env.expected['amt_self_signed_fixed_version']} or later, or the documented workaround)")


@pytest.mark.check("S3-CLIENT-AMT-WEB-SERVER-CERT")
def test_client_presents_an_enterprise_web_server_certificate(client, env, facts, evidence):
    port = env.expected["ports"]["amt_https"]
    provisioned = facts.site.provisioning_status().by_site()
    try:
        peer = facts.network.peer_tls(client.fqdn, port)
    except ProbeError:
        if not provisioned:
            not_applicable("not provisioned by the site yet: the certificate is issued during provisioning")
        raise
    cert = peer.certificate
    evidence.attach("TLS certificate", {**certs.summary(cert), "negotiated": peer.negotiated})
    if not provisioned and certs.is_self_signed(cert):
        not_applicable("not provisioned by the site yet: the ME presents its own self-signed certificate until then")
    problems = []
    intermediates, where = _issuers_of(cert, env, facts)
    try:
        certs.verify_chain(cert, intermediates, facts.pki.trusted_roots())
    except certs.ChainProblem as exc:
        problems.append(f"does not chain to a trusted root ({exc}; intermediates {where})")
    problems += _revocation(cert, intermediates, facts, evidence)
    if not certs.has_eku(cert, SERVER_AUTH):
        problems.append("no serverAuth EKU")
    names = {n.lower().rstrip(".") for n in [certs.common_name(cert), *certs.dns_names(cert)] if n}
    if client.fqdn.lower() not in names:
        problems.append(f"names {', '.join(sorted(names)) or 'nothing'}")
    problems += certs.validity_problems(cert)
    expect(not problems, found=f"{cert.subject.rfc4514_string()} from {cert.issuer.rfc4514_string()}: "
                               + "; ".join(problems),
           expected=f"issued by the enterprise CA, not revoked, serverAuth, CN/SAN {client.fqdn}, within its dates")


def _issuers_of(cert, env, facts) -> tuple[list, str]:
    """The certificate's issuing CAs as the estate publishes them (its AIA caIssuers, http:// or ldap:///), else the
    exported provisioning chain's CAs (named so in the finding)."""
    chain, problems = certs.chain_via_aia(cert, facts.network.download)
    if len(chain) > 1:  # an issuer was found (a location that failed before another answered does not matter)
        return chain[1:], "from the certificate's AIA"
    if env.pki.get("provisioning_chain"):
        why = "; ".join(problems) or "no issuer found through AIA"
        return facts.pki.provisioning_chain()[1:], f"from pki.provisioning_chain, as AIA gave none ({why})"
    return chain[1:], "from the certificate's AIA (" + ("; ".join(problems) or "none") + ")"


def _revocation(cert, intermediates, facts, evidence) -> list[str]:
    """Whether the issuing CA revoked ``cert``, from the CRL its CDP names (RFC 5280 §5.3). A CRL that cannot be read
    is said in the evidence, not judged here: S3-CA-CRL-AIA-AVAILABLE judges the CRLs' availability."""
    issuer = next((c for c in intermediates if c.subject == cert.issuer), None)
    seen = []
    for url in certs.cdp_urls(cert):
        try:
            crl = certs.parse_crl(facts.network.download(url), url)
            certs.check_crl(crl, url=url, issuer=issuer)
        except certs.CrlProblem as exc:
            seen.append({"crl": url, "not read": str(exc)})
            continue
        seen.append({"crl": url, "this_update": str(crl.last_update_utc)})
        if certs.is_revoked(crl, cert.serial_number):
            reason = certs.revocation_reason(crl, cert.serial_number)
            evidence.attach("revocation", seen)
            return [f"revoked by {certs.common_name(issuer) if issuer else cert.issuer.rfc4514_string()} "
                    f"(serial {cert.serial_number:x}" + (f", reason {reason.value}" if reason else "") + f", {url})"]
        break  # one readable, in-date CRL of the issuer answers it
    evidence.attach("revocation", seen or [{"crl": "the certificate names no CDP"}])
    return []
