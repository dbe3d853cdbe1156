"""Stage 3: the provisioning certificate and its chain, as installed on the out of band service point.

Guide, Stage 3: "Check the provisioning certificate includes server authentication"; "... includes special Intel
AMT OU and/or OID"; "... has a signing chain that terminates with a trusted root certificate authority (check
root certificate thumbprint and use MEBX to compare with client certificate hash list)"; "Check all certificates
in the provisioning certificate signing chain have valid dates"; "... key length <= 2048-bits".

Each judges the certificate the site selected as the service point holds it, with the chain Windows builds from
the service point's stores (``facts.pki.provisioning_certificate()``); the exported file ``pki.provisioning_chain``
only stands in when those cannot be read, and then the finding says so.
"""
import pytest

from pytest_vpro.checks import cannot_decide, expect, not_applicable
from pytest_vpro.probes import hello
from pytest_vpro.probes import x509 as certs

SERVER_AUTH = "1.3.6.1.5.5.7.3.1"


def provisioning_certificate(facts, evidence):
    """The provisioning certificate to judge (:class:`pytest_vpro.facts.pki.ProvisioningCertificate`), with its
    provenance as evidence."""
    held = facts.pki.provisioning_certificate()
    evidence.attach("provisioning certificate", held.evidence())
    return held


@pytest.mark.check("S3-PROV-CERT-SERVER-AUTH")
def test_provisioning_certificate_has_server_authentication(server, facts, evidence):
    held = provisioning_certificate(facts, evidence)
    leaf = held.leaf
    expect(certs.has_eku(leaf, SERVER_AUTH),
           found=f"{held.where}, {certs.common_name(leaf)}: EKUs {[e.dotted_string for e in certs.ekus(leaf)]}",
           expected=f"Server Authentication ({SERVER_AUTH})")


@pytest.mark.check("S3-PROV-CERT-AMT-OID-OR-OU")
def test_provisioning_certificate_has_the_amt_oid_or_ou(server, facts, evidence):
    held = provisioning_certificate(facts, evidence)
    leaf = held.leaf
    expect(certs.has_amt_provisioning_marker(leaf),
           found=f"{held.where}, {certs.common_name(leaf)}: EKUs {[e.dotted_string for e in certs.ekus(leaf)]}, "
                 f"OUs {certs.subject_ous(leaf)}",
           expected="EKU 2.16.840.1.113741.1.2.3, or OU exactly 'Intel(R) Client Setup Certificate'")


@pytest.mark.check("S3-PROV-CERT-KEY-LENGTH-2048")
def test_provisioning_chain_keys_are_at_most_2048_bits(server, env, facts, evidence):
    limit = env.expected["ca_max_key_bits"]
    held = provisioning_certificate(facts, evidence)
    long = [f"{certs.common_name(c)}: {certs.key_bits(c)} bits" for c in held.chain
            if (certs.key_bits(c) or 0) > limit]
    expect(not long, found=f"{held.where}: " + "; ".join(long),
           expected=f"every key at most {limit} bits (AMT's limit)")


@pytest.mark.check("S3-PROV-CERT-CHAIN-DATES-VALID")
def test_provisioning_chain_is_in_date(server, facts, evidence):
    held = provisioning_certificate(facts, evidence)
    problems = [f"{certs.common_name(c)}: {p}" for c in held.chain for p in certs.validity_problems(c)]
    expect(not problems, found=f"{held.where} ({held.thumbprint or 'thumbprint unknown'}): " + "; ".join(problems),
           expected="every certificate of the chain within its dates")


def root_hashes(facts, evidence) -> tuple[list[tuple[str, str, bool]], str]:
    """The root hashes this client's ME trusts for provisioning, as ``([(type, hex, enabled)], where read)``.

    Once the ME is provisioned (the site's word, else its own ProvisioningState 2), from WS-MAN
    (``AMT_ProvisioningCertificateHash``). Before, the ME answers no WS-MAN (docs/protocols.md, "An un-provisioned
    device"): its hash list is in the PKI hellos it sends (the latest the run's ``--hello-listen`` heard). Neither:
    the check cannot decide."""
    if facts.amt.provisioned():
        hashes = facts.amt.certificate_hashes()
        evidence.attach("AMT trusted root hashes", [{"name": h.name, "type": h.hash_type_name, "hash": h.hex,
                                                     "enabled": h.enabled} for h in hashes])
        return [(h.hash_type_name, h.hex.lower(), h.enabled) for h in hashes], "AMT_ProvisioningCertificateHash"
    heard = facts.hellos.heard()
    if heard is None:
        cannot_decide("not provisioned yet, so AMT answers no WS-MAN, and its trusted root hashes travel in its "
                      "hello packets, which this run does not hear (AMTOPMGR.LOG does not list them): listen with "
                      "--hello-listen ADDR:PORT where ProvisionServer points")
    hellos = [s for s in heard if s.hello is not None]
    pki = [s for s in hellos if s.hello.version == hello.VERSION_PKI]
    if not pki:
        if hellos:
            not_applicable(f"its hellos are PSK (version {hellos[-1].hello.version}): PSK provisioning checks no "
                           "root hash")
        cannot_decide(f"not provisioned yet and no hello heard on {facts.hellos.listener().where}: its trusted root "
                      "hashes travel only in its hellos (S2-CLIENT-SENDING-HELLO judges the silence)")
    last = pki[-1]
    listed = [(hello.HASH_TYPES.get(t, (f"type {t}", 0))[0], d.hex(), True) for t, d in last.hello.hashes]
    evidence.attach(f"hash list of its hello heard on {facts.hellos.listener().where} (retry {last.hello.retry_count})",
                    [{"type": t, "hash": h} for t, h, _e in listed])
    return listed, f"its hello packet (retry {last.hello.retry_count}, from {last.peer})"


@pytest.mark.check("S3-PROV-CERT-ROOT-HASH-IN-AMT")
def test_amt_trusts_the_provisioning_root(client, facts, evidence):
    held = provisioning_certificate(facts, evidence)
    root = held.chain[-1]
    top = "root" if certs.is_self_signed(root) else "top (no issuer of it in the stores)"
    wanted = {certs.fingerprint(root, "sha1"), certs.fingerprint(root, "sha256")}
    hashes, where = root_hashes(facts, evidence)
    expect(any(enabled and h in wanted for _t, h, enabled in hashes),
           found=f"{client.fqdn}: {len(hashes)} hashes in {where}, none enabled for {certs.common_name(root)}, the "
                 f"{top} of the chain of {held.where}",
           expected=f"an enabled hash of the provisioning root ({certs.fingerprint(root, 'sha256')})")
