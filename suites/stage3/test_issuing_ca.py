"""Stage 3: the enterprise issuing CA: its AMT web server template, its chain on the service point, CRLs and AIA.

Guide, Stage 3: "Intel AMT web server certificate template is correctly configured in the issuing CA. Check the
Intel AMT Web Server certificate template includes server authentication and indicates the subject name is
supplied in certificate requests"; "Check the full certificate chain for the Enterprise issuing CA is available on
the SCCM out of band service point (use MMC to check Windows certificate store)."; "Check all certificates in
issuing CA signing chain on the SCCM out of band service point have valid dates"; "Check valid Certificate
Revocation Lists (CRL) and certificates are available from the Enterprise PKI at CRL Distribution Points (CDP)
and Authority Information Access (AIA) points (use MMC with Enterprise PKI snap-in)."
"""
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pytest_vpro.checks import expect
from pytest_vpro.probes import x509 as certs

from ..stage1.test_pki import found_in, store_evidence, stores_read

SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT = 0x1  # msPKI-Certificate-Name-Flag (MS-CRTD 2.28)


def issuing_ca_certificate(env, facts) -> x509.Certificate:
    """The issuing CA's certificate as its pKIEnrollmentService publishes it (the CA of role issuing_ca)."""
    hosts = {s.name.lower() for s in env.servers_with("issuing_ca")}
    service = next((s for s in facts.directory.enrollment_services() if s["host"] in hosts), None)
    expect(service, found=f"no enterprise CA on {', '.join(sorted(hosts)) or '(no issuing_ca server)'} "
                          "published in AD (pKIEnrollmentService)",
           expected="the issuing CA's pKIEnrollmentService (S1-CA-ENTERPRISE-ISSUING-CA-AVAILABLE)")
    return x509.load_der_x509_certificate(service["certificate"])


def chain_on(server, env, facts, evidence) -> list[x509.Certificate]:
    """The issuing CA's chain as the service point's computer stores hold it (Intermediate and Trusted Root): from
    a held certificate of the issuing CA (its name and key; one within its dates first, as Windows prefers)."""
    issuing = issuing_ca_certificate(env, facts)
    stores = {name: facts.windows.certificate_store(server, name) for name in ("CA", "ROOT")}
    held = [c for store in stores.values() for c in store.values() if isinstance(c, x509.Certificate)]
    evidence.attach("certificate stores", store_evidence(facts, server, ("CA", "ROOT")))
    copies = sorted((c for c in held if c.subject == issuing.subject and same_key(c, issuing)),
                    key=lambda c: bool(certs.validity_problems(c)))
    expect(copies, found=f"the issuing CA {certs.common_name(issuing)} ({certs.fingerprint(issuing, 'sha1')}, as "
                         f"AD publishes it) is not in {server.name}'s {stores_read('CA')} or {stores_read('ROOT')}",
           expected="the issuing CA certificate in the service point's computer certificate stores")
    chain = certs.build_chain(copies[0], held)
    evidence.attach("issuing CA chain on the service point", [
        {**certs.summary(c), "found in": found_in(facts, server, ("CA", "ROOT"), c)} for c in chain])
    return chain


def same_key(a: x509.Certificate, b: x509.Certificate) -> bool:
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_key().public_bytes(*der) == b.public_key().public_bytes(*der)


@pytest.mark.check("S3-CA-WEB-SERVER-TEMPLATE-SETTINGS")
def test_amt_template_has_server_auth_and_subject_from_the_request(site, env, facts, evidence):
    name = env.pki.get("web_server_template") or "IntelAMTWebServer"
    config = facts.directory.root_dse().get("configurationNamingContext")
    found = facts.directory.search(f"CN=Certificate Templates,CN=Public Key Services,CN=Services,{config}",
                              f"(&(objectClass=pKICertificateTemplate)(cn={name}))",
                              ("pKIExtendedKeyUsage", "msPKI-Certificate-Name-Flag"), scope="one")
    expect(found, found=f"no certificate template {name}", expected=f"the AMT web server template {name}")
    raw = found[0]["raw_attributes"]
    ekus = [v.decode() for v in raw.get("pKIExtendedKeyUsage", [])]
    name_flag = int((raw.get("msPKI-Certificate-Name-Flag") or [b"0"])[0])
    evidence.attach(name, {"pKIExtendedKeyUsage": ekus, "msPKI-Certificate-Name-Flag": hex(name_flag)})
    problems = []
    if SERVER_AUTH not in ekus:
        problems.append(f"application policies {ekus or 'none'} lack Server Authentication")
    if not name_flag & CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT:
        problems.append(f"subject name built from Active Directory (msPKI-Certificate-Name-Flag {name_flag:#x})")
    expect(not problems, found="; ".join(problems),
           expected=f"Server Authentication ({SERVER_AUTH}) and 'Supply in the request' "
                    "(CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT)")


@pytest.mark.check("S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT")
def test_issuing_ca_chain_is_on_the_service_point(server, env, facts, evidence):
    chain = chain_on(server, env, facts, evidence)
    roots = {certs.fingerprint(c, "sha1").upper() for c in facts.windows.certificate_store(server, "ROOT").values()
             if isinstance(c, x509.Certificate)}
    top = chain[-1]
    missing = (f"{certs.common_name(top)} (in {found_in(facts, server, ('CA',), top)}) is self-signed and not in "
               f"{stores_read('ROOT')}" if certs.is_self_signed(top)
               else f"the issuer of {certs.common_name(top)} is not in {stores_read('CA')} or {stores_read('ROOT')}")
    expect(certs.is_self_signed(top) and certs.fingerprint(top, "sha1").upper() in roots,
           found=" <- ".join(certs.common_name(c) or "?" for c in chain) + f": {missing}",
           expected="a complete chain from the issuing CA to a root in Trusted Root Certification Authorities")


@pytest.mark.check("S3-ISSUING-CA-CHAIN-DATES-VALID")
def test_issuing_ca_chain_on_the_service_point_is_in_date(server, env, facts, evidence):
    chain = chain_on(server, env, facts, evidence)
    problems = [f"{certs.common_name(c)}: {p}" for c in chain for p in certs.validity_problems(c)]
    expect(not problems, found="; ".join(problems), expected="every certificate of the chain within its dates")


@pytest.mark.check("S3-CA-CRL-AIA-AVAILABLE")
def test_crls_and_ca_certificates_are_published(server, env, facts, evidence):
    ca = issuing_ca_certificate(env, facts)
    chain, problems = certs.chain_via_aia(ca, facts.network.download)
    issued = []  # a certificate the CA issued (the provisioning certificate, when it did), with its issuer
    if env.pki.get("provisioning_chain"):
        exported = facts.pki.provisioning_chain()
        issued = [(leaf, parent) for leaf, parent in zip(exported, exported[1:]) if parent.subject == ca.subject][:1]
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=env.expected["crl_min_remaining_hours"])
    seen = []
    for cert, issuer in issued + list(zip(chain, chain[1:])):
        for url in certs.cdp_urls(cert):
            try:
                crl = certs.parse_crl(facts.network.download(url), url)
                certs.check_crl(crl, url=url, issuer=issuer)
            except certs.CrlProblem as exc:
                problems.append(str(exc))
                continue
            seen.append({"crl": url, "next_update": str(crl.next_update_utc)})
            if crl.next_update_utc is not None and crl.next_update_utc < soon:
                problems.append(f"{url}: nextUpdate {crl.next_update_utc.isoformat()}, within "
                                f"{env.expected['crl_min_remaining_hours']} h")
        for url in certs.aia_urls(cert):
            try:
                served = certs.parse_certificate(facts.network.download(url), url)
            except certs.CrlProblem as exc:
                problems.append(str(exc))
                continue
            seen.append({"aia": url, "serves": certs.common_name(served)})
            if certs.fingerprint(served) != certs.fingerprint(issuer):
                problems.append(f"{url} serves {certs.common_name(served)}, not the issuer "
                                f"{certs.common_name(issuer)} of {certs.common_name(cert)}")
    evidence.attach("CDP and AIA", seen)
    expect(not problems, found="; ".join(problems),
           expected="every CDP URL of the chain serves a CRL signed by its CA and valid for at least "
                    f"{env.expected['crl_min_remaining_hours']} h; every AIA URL serves the issuing CA certificate")
