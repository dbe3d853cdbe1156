"""Stage 1 and the prerequisites page: the enterprise issuing CA, its AMT web server template, the provisioning chain.

Guide, Stage 1: "Enterprise issuing CA available with Issue and Manage Certificates permission granted to SCCM
servers."; "Intel AMT web server certificate template created and configured to grant read and enroll
permissions to SCCM servers."; "Provisioning certificates procured and both certificate and full signing chain
installed on all SCCM servers responsible for client provisioning." Stage 7 and the CA checklist: "Check SCCM
servers have permission to Issue and Manage certificates for the Enterprise issuing CA"; "Check SCCM servers have
read and enroll permissions to the Enterprise issuing CA Intel AMT Web Server certificate template"; Stage 3:
"Check full provisioning certificate signing chain is available on the SCCM out of band service point".
Prerequisites (seed 004): "A Microsoft enterprise certification authority (CA) with certificate templates";
"The issuing CA must automatically approve certificate requests from the primary site server on behalf of
AMT-based computers."; "AMT-based computers cannot support CA certificates with a key length greater than 2048
bits."
"""
import pytest
from cryptography import x509

from pytest_vpro.checks import cannot_decide, expect
from pytest_vpro.probes import x509 as certs
from pytest_vpro.probes.errors import ProbeError
from pytest_vpro.probes.ldap import grants, parse_security_descriptor

CERTIFICATE_ENROLLMENT = "0e10c968-78fb-11d2-90d4-00c04f79dc55"  # extended right (MS-ADTS 5.1.3.2.1)
RPC_ENDPOINT_MAPPER = 135  # DCOM enrollment (ICertRequest) starts here
CERTSVC = r"HKLM\SYSTEM\CurrentControlSet\Services\CertSvc\Configuration"
POLICY_MODULE = "CertificateAuthority_MicrosoftDefault.Policy"
CA_ACCESS = {0x1: "Manage CA", 0x2: "Issue and Manage Certificates", 0x4: "Auditor", 0x8: "Operator",
             0x100: "Read", 0x200: "Request Certificates"}  # MS-CSRA 3.1.1.7
CA_ACCESS_OFFICER, REQDISP_PENDING, CT_FLAG_PEND_ALL_REQUESTS = 0x2, 0x100, 0x2


def enrollment_service(server, facts):
    """The pKIEnrollmentService of the enterprise CA on ``server`` (its dNSHostName), or None."""
    return next((s for s in facts.directory.enrollment_services() if s["host"] == server.name.lower()), None)


def ca_certificate(server, facts) -> x509.Certificate:
    service = enrollment_service(server, facts)
    expect(service, found=f"no enterprise CA on {server.name} published in AD (pKIEnrollmentService)",
           expected="the issuing CA's pKIEnrollmentService (S1-CA-ENTERPRISE-ISSUING-CA-AVAILABLE)")
    return x509.load_der_x509_certificate(service["certificate"])


def template(env, facts) -> dict:
    name = env.pki.get("web_server_template") or "IntelAMTWebServer"
    config = facts.directory.root_dse().get("configurationNamingContext")
    found = facts.directory.search(f"CN=Certificate Templates,CN=Public Key Services,CN=Services,{config}",
                              f"(&(objectClass=pKICertificateTemplate)(cn={name}))",
                              ("cn", "pKIExtendedKeyUsage", "msPKI-Certificate-Name-Flag", "msPKI-Enrollment-Flag",
                               "msPKI-RA-Signature"), scope="one")
    expect(found, found=f"no certificate template {name} under CN=Certificate Templates",
           expected=f"the AMT web server template {name} (pki.web_server_template)")
    return found[0]


def number(entry: dict, attribute: str) -> int:
    value = entry["raw_attributes"].get(attribute) or [b"0"]
    return int(value[0])


def ca_rights(mask: int) -> str:
    return ", ".join(name for bit, name in CA_ACCESS.items() if mask & bit) or hex(mask)


@pytest.mark.check("S1-CA-ENTERPRISE-ISSUING-CA-AVAILABLE")
def test_enterprise_issuing_ca_is_published_and_reachable(server, facts, evidence):
    services = facts.directory.enrollment_services()
    evidence.attach("pKIEnrollmentService objects", [{k: v for k, v in s.items() if k != "certificate"}
                                                     for s in services])
    service = enrollment_service(server, facts)
    expect(service, found=f"no pKIEnrollmentService with dNSHostName {server.name} (published: "
                          f"{', '.join(s['host'] for s in services) or 'none'})",
           expected="an enterprise CA on this host, published under CN=Enrollment Services")
    cert = x509.load_der_x509_certificate(service["certificate"])
    evidence.attach("CA certificate", certs.summary(cert))
    expect(certs.is_ca(cert), found=f"cACertificate {certs.common_name(cert)} is not a CA certificate",
           expected="a CA certificate (basicConstraints cA)")
    addresses = facts.dns.forward(server.name)
    expect(addresses, found=f"{server.name} has no A record", expected="the CA host resolves in DNS")
    port, where = facts.network.ports(addresses[0], [RPC_ENDPOINT_MAPPER])[0], facts.network.vantage(addresses[0])
    evidence.attach("TCP", {"probed": where, "result": str(port)})
    expect(port.open, found=f"{server.name}: {port}, probed {where}",
           expected=f"TCP {RPC_ENDPOINT_MAPPER} open (RPC endpoint mapper: the site server requests certificates "
                    "over DCOM)")


@pytest.mark.check("S1-CA-ISSUE-MANAGE-PERMISSION")
def test_site_servers_may_issue_and_manage_certificates(server, env, facts, evidence):
    name = server.extra.get("ca_name") or facts.windows.registry(server, CERTSVC, "Active")
    blob = facts.windows.registry(server, rf"{CERTSVC}\{name}", "Security", "binary")
    expect(blob, found=rf"no Security value under {CERTSVC}\{name}", expected="the CA's security descriptor")
    sd = parse_security_descriptor(blob)
    evidence.attach("CA security", [f"{a.kind} {a.trustee}: {ca_rights(a.mask)}" for a in sd.dacl or ()])
    missing = [s.name for s in env.servers_with("site_server")
               if not grants(sd, facts.directory.account_sids(s)["sids"], CA_ACCESS_OFFICER)]
    expect(not missing, found=f"{', '.join(missing)} without Issue and Manage Certificates on {name}",
           expected="Issue and Manage Certificates (CA_ACCESS_OFFICER) for every site server's computer account")


@pytest.mark.check("S1-CA-WEB-SERVER-TEMPLATE-READ-ENROLL")
def test_site_servers_may_read_and_enroll_the_amt_template(site, env, facts, evidence):
    entry = template(env, facts)
    name = entry["raw_attributes"]["cn"][0].decode()
    sd = facts.directory.security_descriptor(entry["dn"])
    evidence.attach(f"{name} DACL", sd.describe())
    problems = []
    for server in env.servers_with("site_server"):
        sids = facts.directory.account_sids(server)["sids"]
        lacks = [right for right, ok in (("Read", grants(sd, sids, ["READ_PROPERTY"])),
                                         ("Enroll", grants(sd, sids, "CONTROL_ACCESS", CERTIFICATE_ENROLLMENT)))
                 if not ok]
        if lacks:
            problems.append(f"{server.name} lacks {' and '.join(lacks)}")
    services = facts.directory.enrollment_services()
    evidence.attach("templates the enterprise CAs issue", {s["name"]: s["templates"] for s in services})
    if not any(name in s["templates"] for s in services):
        problems.append(f"no enterprise CA issues {name} (" + ("; ".join(
            f"{s['name']}: {', '.join(s['templates']) or 'nothing'}" for s in services) or "no enterprise CA") + ")")
    expect(not problems, found="; ".join(problems),
           expected=f"{name} grants every site server Read and Enroll, and the issuing CA issues it")


@pytest.mark.check("PRE-CA-AUTO-APPROVE")
def test_issuing_ca_approves_amt_requests_automatically(server, env, facts, evidence):
    entry = template(env, facts)
    flags, signatures = number(entry, "msPKI-Enrollment-Flag"), number(entry, "msPKI-RA-Signature")
    name = server.extra.get("ca_name") or facts.windows.registry(server, CERTSVC, "Active")
    disposition = facts.windows.registry(server, rf"{CERTSVC}\{name}\PolicyModules\{POLICY_MODULE}",
                                 "RequestDisposition", "dword")
    evidence.attach("approval settings", {"msPKI-Enrollment-Flag": hex(flags), "msPKI-RA-Signature": signatures,
                                          "RequestDisposition": None if disposition is None else hex(disposition)})
    problems = []
    if flags & CT_FLAG_PEND_ALL_REQUESTS:
        problems.append("the template requires CA certificate manager approval (CT_FLAG_PEND_ALL_REQUESTS)")
    if signatures:
        problems.append(f"the template requires {signatures} authorized signature(s)")
    if disposition is None:
        problems.append(f"no RequestDisposition in {name}'s policy module {POLICY_MODULE}")
    elif disposition & REQDISP_PENDING:
        problems.append(f"the CA's policy module sets requests pending (RequestDisposition {disposition:#x})")
    expect(not problems, found="; ".join(problems),
           expected="requests issued at once: no manager approval or signatures on the template, "
                    "RequestDisposition without REQDISP_PENDING (0x100)")


@pytest.mark.check("PRE-CA-KEY-LENGTH-2048")
def test_issuing_ca_chain_keys_are_at_most_2048_bits(server, env, facts, evidence):
    chain, problems = certs.chain_via_aia(ca_certificate(server, facts), facts.network.download)
    evidence.attach("issuing CA chain", [certs.summary(c) for c in chain] + problems)
    limit = env.expected["ca_max_key_bits"]
    long = [f"{certs.common_name(c)}: {certs.key_bits(c)} bits" for c in chain if (certs.key_bits(c) or 0) > limit]
    expect(not long, found="; ".join(long), expected=f"every CA key at most {limit} bits (AMT's limit)")
    expect(not problems, found="; ".join(problems), expected="every parent CA certificate reachable through AIA")


def stores_read(store) -> str:
    """The physical stores a logical store was read from, for a finding: "Trusted Root Certification Authorities
    (Local Computer, Group Policy, Enterprise)"."""
    locations = dict.fromkeys(certs.LOCATION_TITLES[p.location] for p in certs.physical_stores(store))
    return f"{certs.STORE_TITLES.get(store.upper(), store)} ({', '.join(locations)})"


def found_in(facts, server, stores, cert) -> str:
    """Where on ``server`` ``cert`` is, among the logical ``stores``: "Trusted Root Certification Authorities
    (Enterprise)", or "nowhere"."""
    thumbprint = certs.fingerprint(cert, "sha1").upper()
    where = [t for store in stores for t in facts.windows.certificate_store_origins(server, store).get(thumbprint, [])]
    return ", ".join(where) or "nowhere"


def store_evidence(facts, server, stores) -> dict:
    """Every certificate of the logical ``stores`` of ``server`` by physical store: title, registry key,
    thumbprint and subject (or why its Blob did not parse)."""
    return {f"{physical.title}: {physical.key}": {t: c.subject.rfc4514_string() if isinstance(c, x509.Certificate)
                                                  else str(c) for t, c in held.items()}
            for store in stores for physical, held in facts.windows.physical_certificate_stores(server, store)}


@pytest.mark.check("S1-PROV-CERT-CHAIN-INSTALLED")
def test_provisioning_certificate_and_chain_are_on_the_service_point(server, env, facts, evidence):
    thumbprint, selected_by = facts.pki.selected_thumbprint()
    stores = {name: facts.windows.certificate_store(server, name) for name in ("MY", "CA", "ROOT")}
    evidence.attach("certificate stores", store_evidence(facts, server, ("MY", "CA", "ROOT")))
    if not thumbprint:  # the site's record has no public source: the exported file says which certificate to seek
        why = selected_by
        try:
            thumbprint = certs.fingerprint(facts.pki.provisioning_chain()[0], "sha1").upper()
        except (ProbeError, OSError, ValueError) as exc:
            cannot_decide(f"which provisioning certificate the site selected is unknown ({why}), and the exported "
                          f"file pki.provisioning_chain cannot say ({exc})")
        selected_by = f"the exported file pki.provisioning_chain (fallback: the site's selection is unknown: {why})"
    evidence.attach("selected provisioning certificate", {"thumbprint": thumbprint, "read from": selected_by})
    leaf = stores["MY"].get(thumbprint)
    expect(isinstance(leaf, x509.Certificate), found=f"the provisioning certificate {thumbprint} ({selected_by}) is "
                                                     f"not in {server.name}'s {stores_read('MY')} store",
           expected="the provisioning certificate in the computer's Personal store")
    pool = [c for name in ("CA", "ROOT") for c in stores[name].values() if isinstance(c, x509.Certificate)]
    chain = certs.build_chain(leaf, pool)
    evidence.attach("chain on the service point", [{**certs.summary(c), "found in": found_in(
        facts, server, ("MY", "CA", "ROOT"), c)} for c in chain])
    roots = {certs.fingerprint(c, "sha1").upper() for c in stores["ROOT"].values() if isinstance(c, x509.Certificate)}
    complete = certs.is_self_signed(chain[-1]) and certs.fingerprint(chain[-1], "sha1").upper() in roots
    top = chain[-1]
    missing = (f"{certs.common_name(top)} (in {found_in(facts, server, ('CA',), top)}) is self-signed and not in "
               f"{stores_read('ROOT')}" if certs.is_self_signed(top)
               else f"no issuer of {certs.common_name(top)} in {stores_read('CA')} or {stores_read('ROOT')}")
    expect(complete, found=" <- ".join(certs.common_name(c) or "?" for c in chain) + f": {missing}",
           expected="a complete chain to a root in the Trusted Root Certification Authorities store")
