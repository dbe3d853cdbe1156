"""probes.x509 against the lab PKI's certificates, healthy and with planted faults (no network)."""
from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pytest_vpro.lab.pki import LabPKI, PkiFaults
from pytest_vpro.probes import x509 as px

UTC = dt.timezone.utc
BASE = "http://ca01.vprolab.test/pki"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> LabPKI:
    return LabPKI(tmp_path_factory.mktemp("pki"), crl_base_url=BASE)


@pytest.fixture(scope="module")
def device(pki):
    cert_path, _ = pki.issue_web_server_cert("pc0001.vprolab.test")
    return px.load_chain(cert_path.read_bytes())[0]


def _faulty(tmp_path_factory, **faults) -> LabPKI:
    return LabPKI(tmp_path_factory.mktemp("pki-fault"), crl_base_url=BASE, faults=PkiFaults(**faults))


def _self_signed(ou: str) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                      x509.NameAttribute(NameOID.COMMON_NAME, "sccm01.vprolab.test")])
    now = dt.datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


def test_load_chain_pem_and_der(pki):
    chain = px.load_chain(pki.provisioning_chain_path.read_bytes())
    assert [px.common_name(c) for c in chain] == ["sccm01.vprolab.test", "VPROLAB Issuing CA", "VPROLAB Root CA"]
    der = pki.root_cert.public_bytes(serialization.Encoding.DER)
    assert px.load_chain(der) == [pki.root_cert]


def test_build_chain_orders_and_stops(pki, device):
    stranger = _self_signed("other")
    assert px.build_chain(device, [stranger, pki.root_cert, pki.issuing_cert]) == \
        [device, pki.issuing_cert, pki.root_cert]
    assert px.build_chain(device, [pki.root_cert]) == [device]  # incomplete: issuing CA missing
    assert px.is_self_signed(pki.root_cert) and not px.is_self_signed(device)


def test_key_bits_and_ca_flags(pki, device):
    assert [px.key_bits(c) for c in (device, pki.issuing_cert, pki.root_cert)] == [2048] * 3
    assert px.is_ca(pki.root_cert) and px.is_ca(pki.issuing_cert) and not px.is_ca(device)


def test_issuing_ca_4096_fault(tmp_path_factory):
    bad = _faulty(tmp_path_factory, issuing_key_bits=4096)
    assert px.key_bits(bad.issuing_cert) == 4096 > px.AMT_MAX_KEY_BITS
    # path validation still passes: the size limit is AMT's, checked separately
    px.verify_chain(bad.provisioning_cert, [bad.issuing_cert], [bad.root_cert])


def test_validity(pki, device, tmp_path_factory):
    assert px.validity_problems(device) == []
    assert "not valid before" in px.validity_problems(device, dt.datetime(2000, 1, 1, tzinfo=UTC))[0]
    assert "expired" in px.validity_problems(device, dt.datetime(2100, 1, 1, tzinfo=UTC))[0]
    bad = _faulty(tmp_path_factory, expired_issuing_ca=True)
    assert px.validity_problems(bad.issuing_cert)[0].startswith("expired")
    with pytest.raises(px.ChainProblem):
        px.verify_chain(bad.provisioning_cert, [bad.issuing_cert], [bad.root_cert])


def test_healthy_provisioning_certificate(pki):
    cert = pki.provisioning_cert
    assert px.has_eku(cert, px.SERVER_AUTH) and px.has_eku(cert, "2.16.840.1.113741.1.2.3")
    assert px.subject_ous(cert) == [px.CLIENT_SETUP_OU]
    assert px.has_amt_provisioning_marker(cert)
    assert px.domain_suffix(cert) == "vprolab.test"
    assert px.matches_domain(cert, "VPROLAB.test.") and not px.matches_domain(cert, "other.test")
    chain = px.verify_chain(cert, [pki.issuing_cert], [pki.root_cert])
    assert chain == [cert, pki.issuing_cert, pki.root_cert]


@pytest.mark.parametrize("faults, marker", [
    (dict(provisioning_amt_oid=False), True),                                # OU alone suffices
    (dict(provisioning_ou=False), True),                                     # serverAuth + OID suffice
    (dict(provisioning_amt_oid=False, provisioning_ou=False), False),
    (dict(provisioning_server_auth=False, provisioning_ou=False), False),     # OID without serverAuth
    (dict(provisioning_server_auth=False), True),                            # OU alone
])
def test_provisioning_marker_faults(tmp_path_factory, faults, marker):
    bad = _faulty(tmp_path_factory, **faults)
    assert px.has_amt_provisioning_marker(bad.provisioning_cert) is marker


def test_ou_match_is_case_sensitive():
    assert px.has_amt_provisioning_marker(_self_signed(px.CLIENT_SETUP_OU))
    assert not px.has_amt_provisioning_marker(_self_signed(px.CLIENT_SETUP_OU.lower()))


def test_device_cert_extensions_point_at_served_urls(pki, device):
    assert px.cdp_urls(device) == [f"{BASE}/issuing.crl"]
    assert px.aia_urls(device) == [f"{BASE}/issuing.crt"]
    assert px.cdp_urls(pki.issuing_cert) == [f"{BASE}/root.crl"]
    assert px.cdp_urls(pki.root_cert) == [] and px.aia_urls(pki.root_cert) == []
    assert px.dns_names(device) == ["pc0001.vprolab.test"]
    assert px.has_eku(device, px.SERVER_AUTH) and not px.has_amt_provisioning_marker(device)


def test_fingerprints_match_openssl_and_lab_helpers(pki):
    for alg, helper in (("sha1", pki.root_sha1), ("sha256", pki.root_sha256)):
        out = subprocess.run(["openssl", "x509", "-in", str(pki.root_path), "-noout", "-fingerprint", f"-{alg}"],
                             capture_output=True, text=True, check=True, timeout=10).stdout
        expected = out.strip().split("=", 1)[1].replace(":", "").lower()
        assert px.fingerprint(pki.root_cert, alg) == helper() == expected
    with pytest.raises(ValueError):
        px.fingerprint(pki.root_cert, "md5")


def test_summary(pki, device):
    s = px.summary(device)
    assert s["subject"] == "CN=pc0001.vprolab.test,O=VPROLAB"
    assert s["issuer"] == "CN=VPROLAB Issuing CA,O=VPROLAB"
    assert s["key_bits"] == 2048 and s["is_ca"] is False
    assert s["ekus"] == ["1.3.6.1.5.5.7.3.1"]
    assert s["cdp"] and s["aia"] and len(s["sha256"]) == 64 and int(s["serial"], 16) == device.serial_number


def test_verify_chain_rejects_foreign_root(pki, device):
    with pytest.raises(px.ChainProblem):
        px.verify_chain(device, [pki.issuing_cert], [_self_signed("other")])
    with pytest.raises(px.ChainProblem):  # issuing CA missing from the chain
        px.verify_chain(device, [], [pki.root_cert])


def test_crl_parse_check_and_revocation(tmp_path_factory):
    lab = LabPKI(tmp_path_factory.mktemp("pki-crl"), crl_base_url=BASE)
    cert = px.load_chain(lab.issue_web_server_cert("pc0002.vprolab.test")[0].read_bytes())[0]
    crl = px.parse_crl(lab.issuing_crl_path.read_bytes())
    px.check_crl(crl, issuer=lab.issuing_cert)
    assert not px.is_revoked(crl, cert.serial_number)
    lab.revoke(cert.serial_number)
    lab.publish_crl()
    crl = px.parse_crl(lab.issuing_crl_path.read_bytes())
    assert px.is_revoked(crl, cert.serial_number)
    assert px.revocation_reason(crl, cert.serial_number) == x509.ReasonFlags.superseded
    assert px.revocation_reason(crl, 12345) is None
    with pytest.raises(px.CrlProblem) as err:
        px.check_crl(crl, issuer=lab.root_cert)
    assert err.value.kind == "bad-signature"
    with pytest.raises(px.CrlProblem) as err:
        px.check_crl(crl, now=dt.datetime.now(UTC) + dt.timedelta(days=30))
    assert err.value.kind == "expired"
    with pytest.raises(px.CrlProblem) as err:
        px.parse_crl(b"not a crl")
    assert err.value.kind == "unparsable"
    pem = crl.public_bytes(serialization.Encoding.PEM)
    assert px.is_revoked(px.parse_crl(pem), cert.serial_number)


def test_expired_crl_fault(tmp_path_factory):
    bad = _faulty(tmp_path_factory, expired_crl=True)
    crl = px.parse_crl(bad.issuing_crl_path.read_bytes())
    with pytest.raises(px.CrlProblem) as err:
        px.check_crl(crl, issuer=bad.issuing_cert)
    assert err.value.kind == "expired"
