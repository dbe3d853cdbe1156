"""Issue 16, item 5: a PKI of the guide's time (SHA-1, ldap:/// locations first) judged correctly by probes.x509.

The SHA-1 certificates and CRLs are the lab PKI's (``signature_hash="sha1"``); OpenSSL's own command line, an
independent verifier that still accepts SHA-1, confirms every one of them before the probe judges it.
"""
from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pytest_vpro.lab.pki import SHA1_WITH_RSA, SHA256_WITH_RSA, LabPKI, PkiFaults, sign
from pytest_vpro.probes import x509 as px

UTC = dt.timezone.utc
BASE = "http://ca01.vprolab.test/pki"
CONFIG = "CN=Configuration,DC=vprolab,DC=test"


def _pki(tmp_path_factory, **faults) -> LabPKI:
    return LabPKI(tmp_path_factory.mktemp("pki-sha1"), crl_base_url=BASE, signature_hash="sha1",
                  ldap_config_dn=CONFIG, faults=PkiFaults(**faults))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> LabPKI:
    return _pki(tmp_path_factory)


@pytest.fixture(scope="module")
def device(pki):
    return px.load_chain(pki.issue_web_server_cert("pc0001.vprolab.test")[0].read_bytes())[0]


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=20)


def test_openssl_confirms_the_lab_signs_with_sha1(pki, device, tmp_path):
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(device.public_bytes(serialization.Encoding.PEM))
    for cert in (pki.root_path, pki.issuing_path, leaf):
        assert "Signature Algorithm: sha1WithRSAEncryption" in _openssl("x509", "-noout", "-text", "-in", str(cert)).stdout
    verified = _openssl("verify", "-CAfile", str(pki.root_path), "-untrusted", str(pki.issuing_path), str(leaf))
    assert verified.returncode == 0, verified.stderr
    crl = _openssl("crl", "-noout", "-inform", "DER", "-in", str(pki.issuing_crl_path), "-CAfile", str(pki.issuing_path))
    assert "verify OK" in crl.stderr
    assert px.signature_hash(device) == px.signature_hash(px.parse_crl(pki.issuing_crl_path.read_bytes())) == "sha1"


def test_sha1_chains_and_self_signed_roots_are_judged_like_any(pki, device):
    assert px.is_self_signed(pki.root_cert) and not px.is_self_signed(device)
    assert px.build_chain(device, [pki.root_cert, pki.issuing_cert]) == [device, pki.issuing_cert, pki.root_cert]
    assert px.verify_chain(device, [pki.issuing_cert], [pki.root_cert]) == [device, pki.issuing_cert, pki.root_cert]
    served = {url: pki.root_cert.public_bytes(serialization.Encoding.DER) for url in px.aia_urls(pki.issuing_cert)}
    assert px.chain_via_aia(pki.issuing_cert, served.__getitem__) == ([pki.issuing_cert, pki.root_cert], [])
    assert px.summary(device)["signature"] == "sha1"


def test_a_sha1_self_signed_certificate_is_self_signed():
    """S3-AMT-321-SELF-SIGNED-CERT: AMT 3.2.1 signs its own certificate; with SHA-1 that must still be seen."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pc0022.vprolab.test")])
    now = dt.datetime.now(UTC)
    cert = sign(x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)), key, "sha1")
    assert px.signature_hash(cert) == "sha1" and px.is_self_signed(cert)
    with pytest.raises(ValueError, match="Unsupported signature algorithm"):
        cert.verify_directly_issued_by(cert)  # what the probe used to rely on


def test_sha1_crls_verify_and_a_wrong_issuer_is_still_caught(pki):
    crl = px.parse_crl(pki.issuing_crl_path.read_bytes())
    assert not crl.is_signature_valid(pki.issuing_cert.public_key())  # cryptography's answer for SHA-1
    px.check_crl(crl, issuer=pki.issuing_cert)
    with pytest.raises(px.CrlProblem) as err:
        px.check_crl(crl, issuer=pki.root_cert)
    assert err.value.kind == "bad-signature"


def test_faults_of_a_sha1_pki_are_still_caught(tmp_path_factory, pki, device):
    expired = _pki(tmp_path_factory, expired_issuing_ca=True)
    with pytest.raises(px.ChainProblem, match="VPROLAB Issuing CA: expired on"):
        px.verify_chain(expired.provisioning_cert, [expired.issuing_cert], [expired.root_cert])
    other = _pki(tmp_path_factory)
    with pytest.raises(px.ChainProblem, match="not among the trusted roots"):
        px.verify_chain(device, [pki.issuing_cert], [other.root_cert])
    with pytest.raises(px.ChainProblem, match="not among the trusted roots"):  # the issuing CA missing
        px.verify_chain(device, [], [pki.root_cert])
    with pytest.raises(px.ChainProblem, match="expired"):
        px.verify_chain(device, [pki.issuing_cert], [pki.root_cert], now=dt.datetime(2100, 1, 1, tzinfo=UTC))
    crl = px.parse_crl(_pki(tmp_path_factory, expired_crl=True).issuing_crl_path.read_bytes())
    with pytest.raises(px.CrlProblem) as err:
        px.check_crl(crl)
    assert err.value.kind == "expired"


def test_a_sha1_leaf_under_a_non_ca_is_refused(pki):
    """The own path walk keeps RFC 5280's CA rules: a leaf cannot issue."""
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_pem = pki.issue_web_server_cert("pc0009.vprolab.test")[0].read_bytes()
    leaf = px.load_chain(leaf_pem)[0]
    now = dt.datetime.now(UTC)
    key_of_leaf = pki._device_key("pc0009.vprolab.test")[0]
    below = sign(x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
                 .issuer_name(leaf.subject).public_key(leaf_key.public_key()).serial_number(2)
                 .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1)),
                 key_of_leaf, "sha1")
    assert px.signed_by(below, leaf)
    with pytest.raises(px.ChainProblem, match="is not a CA"):
        px.verify_chain(below, [leaf, pki.issuing_cert], [pki.root_cert])


def test_ldap_locations_come_first_and_parse_as_rfc_4516(pki, device):
    ldap, http = px.cdp_urls(device)
    assert http == f"{BASE}/issuing.crl" and ldap.startswith("ldap:///CN=VPROLAB%20Issuing%20CA,CN=ca01,CN=CDP,")
    location = px.parse_ldap_url(ldap)
    assert location == px.LdapLocation("", f"CN=VPROLAB Issuing CA,CN=ca01,CN=CDP,CN=Public Key Services,"
                                           f"CN=Services,{CONFIG}", "certificateRevocationList", "base",
                                       "(objectClass=cRLDistributionPoint)")
    aia = px.parse_ldap_url(px.aia_urls(device)[0])
    assert (aia.dn, aia.attribute) == (f"CN=VPROLAB Issuing CA,CN=AIA,CN=Public Key Services,CN=Services,{CONFIG}",
                                       "cACertificate")
    assert px.parse_ldap_url("ldap://dc01.vprolab.test/CN=x,DC=y?cACertificate;binary").attribute == "cACertificate"
    for bad in ("ldap:///?cACertificate", "ldap:///CN=x", "http://x/y"):
        with pytest.raises(px.CrlProblem):
            px.parse_ldap_url(bad)


def test_an_ldap_location_without_a_directory_is_unsupported_not_a_crash():
    with pytest.raises(px.CrlProblem) as err:
        px.download("ldap:///CN=x,DC=y?certificateRevocationList?base?objectClass=cRLDistributionPoint")
    assert err.value.kind == "unsupported"


def test_the_resigned_der_keeps_every_other_byte(pki):
    """Only the two AlgorithmIdentifiers and the signature change: names, dates, extensions stay."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime(2009, 1, 1, tzinfo=UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("t.example.test")]), critical=False))
    a, b = builder.sign(key, hashes.SHA256()), sign(builder, key, "sha1")
    assert a.tbs_certificate_bytes.replace(SHA256_WITH_RSA, SHA1_WITH_RSA) == b.tbs_certificate_bytes
    assert list(a.extensions) == list(b.extensions) and a.subject == b.subject
    assert px.signature_hash(a) == "sha256" and px.signature_hash(b) == "sha1" and px.signed_by(b, b)
