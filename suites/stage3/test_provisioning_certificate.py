"""Stage 3: the provisioning certificate and its chain, as installed on the out of band service point.

Guide, Stage 3: "Check the provisioning certificate includes server authentication"; "... includes special Intel
AMT OU and/or OID"; "... has a signing chain that terminates with a trusted root certificate authority (check
root certificate thumbprint and use MEBX to compare with client certificate hash list)"; "Check all certificates
in the provisioning certificate signing chain have valid dates"; "... key length <= 2048-bits".
"""
import pytest

from pytest_vpro.checks import expect
from pytest_vpro.probes import x509 as certs

SERVER_AUTH = "1.3.6.1.5.5.7.3.1"


@pytest.mark.check("S3-PROV-CERT-SERVER-AUTH")
def test_provisioning_certificate_has_server_authentication(server, facts, evidence):
    leaf = facts.pki.provisioning_chain()[0]
    evidence.attach("provisioning certificate", certs.summary(leaf))
    expect(certs.has_eku(leaf, SERVER_AUTH), found=f"EKUs {[e.dotted_string for e in certs.ekus(leaf)]}",
           expected=f"Server Authentication ({SERVER_AUTH})")


@pytest.mark.check("S3-PROV-CERT-AMT-OID-OR-OU")
def test_provisioning_certificate_has_the_amt_oid_or_ou(server, facts):
    leaf = facts.pki.provisioning_chain()[0]
    expect(certs.has_amt_provisioning_marker(leaf),
           found=f"EKUs {[e.dotted_string for e in certs.ekus(leaf)]}, OUs {certs.subject_ous(leaf)}",
           expected="EKU 2.16.840.1.113741.1.2.3, or OU exactly 'Intel(R) Client Setup Certificate'")


@pytest.mark.check("S3-PROV-CERT-KEY-LENGTH-2048")
def test_provisioning_chain_keys_are_at_most_2048_bits(server, env, facts):
    limit = env.expected["ca_max_key_bits"]
    long = [f"{certs.common_name(c)}: {certs.key_bits(c)} bits" for c in facts.pki.provisioning_chain()
            if (certs.key_bits(c) or 0) > limit]
    expect(not long, found="; ".join(long), expected=f"every key at most {limit} bits (AMT's limit)")


@pytest.mark.check("S3-PROV-CERT-CHAIN-DATES-VALID")
def test_provisioning_chain_is_in_date(server, facts):
    problems = [f"{certs.common_name(c)}: {p}" for c in facts.pki.provisioning_chain()
                for p in certs.validity_problems(c)]
    expect(not problems, found="; ".join(problems), expected="every certificate of the chain within its dates")


@pytest.mark.check("S3-PROV-CERT-ROOT-HASH-IN-AMT")
def test_amt_trusts_the_provisioning_root(client, facts, evidence):
    root = facts.pki.provisioning_chain()[-1]
    wanted = {certs.fingerprint(root, "sha1"), certs.fingerprint(root, "sha256")}
    hashes = facts.amt.certificate_hashes()
    evidence.attach("AMT trusted root hashes", [{"name": h.name, "type": h.hash_type_name, "hash": h.hex,
                                                 "enabled": h.enabled} for h in hashes])
    expect(any(h.enabled and h.hex.lower() in wanted for h in hashes),
           found=f"{len(hashes)} hashes, none enabled for {certs.common_name(root)}",
           expected=f"an enabled hash of the provisioning root ({certs.fingerprint(root, 'sha256')})")
