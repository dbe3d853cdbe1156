"""Issue 16, item 1: TLS of the devices of the time, against the AMT simulator on net 116.

A device with the ``legacy`` TLS profile serves only TLS 1.0 with the RSA AES-CBC-SHA suites, as AMT 3.2.1-6.x
firmware does (docs/protocols.md "TLS"). Every probe that speaks TLS to an AMT port (WS-MAN, the WebUI, the
certificate read, redirection) must retry it once with the legacy settings, keep verifying the certificate and
the host name, and say what it used; toward any other port it must not retry.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pytest_vpro import actions
from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.amt_sim import AmtSimulator, DeviceSpec
from pytest_vpro.probes import net, tls, webui
from pytest_vpro.probes.amt import AmtDevice
from pytest_vpro.probes.errors import MalformedReply, Undecided
from pytest_vpro.probes.wsman import DigestAuth, LegacyTlsRefused, TlsError, WsmanClient

PLAN = AddressPlan(116)
DOMAIN = "vprolab.test"
PASSWORD = "Lab-P@ss1"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls-pki")
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.timezone.utc)

    def cert(subject, key, signer, *, ca=False, sans=()):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(_name("tls test root"))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return b.sign(signer, hashes.SHA256())

    root = cert(_name("tls test root"), ca_key, ca_key, ca=True)
    (d / "ca.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))

    def issue(label: str, dns: str, ip: str | None) -> tuple[str, str]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # RSA: the RSA key exchange suites
        sans = [x509.DNSName(dns)] + ([x509.IPAddress(ipaddress.ip_address(ip))] if ip else [])
        (d / f"{label}.crt").write_bytes(cert(_name(dns), key, ca_key, sans=sans).public_bytes(serialization.Encoding.PEM))
        (d / f"{label}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
        return str(d / f"{label}.crt"), str(d / f"{label}.key")

    return {"ca": str(d / "ca.pem"), "issue": issue}


def _spec(i: int, pki, **kw) -> DeviceSpec:
    fqdn, addr = f"pc{i + 1:04d}.{DOMAIN}", PLAN.client(i)
    cert, key = kw.pop("cert", None) or pki["issue"](f"pc{i}", fqdn, addr)
    return DeviceSpec(fqdn=fqdn, address=addr, uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, fqdn)), amt_version="3.2.1",
                      digest_password=PASSWORD, tls_cert=cert, tls_key=key, send_hellos=False, **kw)


@pytest.fixture(scope="module")
def estate(pki):
    """pc0001 legacy TLS, pc0002 modern TLS, pc0003 legacy TLS with a certificate for another host."""
    wrong = pki["issue"]("wrong", "other.example.test", None)
    sim = AmtSimulator([_spec(0, pki, tls_profile="legacy"), _spec(1, pki),
                        _spec(2, pki, tls_profile="legacy", cert=wrong)]).start()
    tls.forget()
    yield sim
    sim.stop()
    tls.forget()


@pytest.fixture
def fresh():
    tls.forget()  # each test shows the first contact with a device, retry included
    yield
    tls.forget()


def _wsman(pki, i: int, **kw) -> WsmanClient:
    return WsmanClient.for_amt(PLAN.client(i), auth=DigestAuth("admin", PASSWORD), ca_bundle=pki["ca"], timeout=5,
                               **kw)


def test_wsman_falls_back_to_tls_1_0_and_says_so(estate, pki, fresh):
    client = _wsman(pki, 0)
    settings = AmtDevice(client).general_settings()
    assert settings.fqdn == f"pc0001.{DOMAIN}"
    assert str(client.negotiated) == "TLS 1.0, AES128-SHA (legacy fallback)"
    assert tls.remembered(PLAN.client(0), 16993)
    again = _wsman(pki, 0)  # the device is remembered: the next session starts with the legacy settings
    AmtDevice(again).version()
    assert again.negotiated.legacy and again.negotiated.protocol == "TLS 1.0"


def test_a_modern_device_is_not_asked_the_legacy_way(estate, pki, fresh):
    client = _wsman(pki, 1)
    AmtDevice(client).general_settings()
    assert not client.negotiated.legacy and client.negotiated.protocol in ("TLS 1.2", "TLS 1.3")
    assert not tls.remembered(PLAN.client(1), 16993)


def test_the_legacy_suite_list_is_the_environments(estate, pki, fresh):
    client = _wsman(pki, 0, legacy_ciphers="AES256-SHA")
    AmtDevice(client).general_settings()
    assert str(client.negotiated) == "TLS 1.0, AES256-SHA (legacy fallback)"
    tls.forget()
    refused = _wsman(pki, 0, legacy_ciphers="CAMELLIA128-SHA")  # a suite this device does not offer
    with pytest.raises(LegacyTlsRefused) as err:  # the suites have no public source: nothing is decided
        AmtDevice(refused).general_settings()
    assert isinstance(err.value, Undecided)
    assert "the device refused the modern handshake (" in str(err.value)
    assert "with the suites CAMELLIA128-SHA" in str(err.value) and "expected.amt_legacy_tls_ciphers" in str(err.value)
    with pytest.raises(tls.LegacyRefused):
        net.peer_tls(PLAN.client(0), 16993, timeout=5, legacy_ciphers="CAMELLIA128-SHA")
    with pytest.raises(tls.LegacyRefused):
        webui.get(f"https://{PLAN.client(0)}:16993/", ca_bundle=pki["ca"], timeout=5, legacy_ciphers="CAMELLIA128-SHA")


def test_verification_is_unchanged_on_the_legacy_attempt(estate, pki, fresh):
    with pytest.raises(TlsError) as err:
        AmtDevice(_wsman(pki, 2)).general_settings()
    assert "IP address mismatch" in str(err.value) and "legacy fallback" in str(err.value)
    other_roots = Path(pki["ca"]).with_name("other.pem")
    other_roots.write_bytes(Path(pki["issue"]("other-root", "x.example.test", None)[0]).read_bytes())
    with pytest.raises(TlsError) as err:
        AmtDevice(WsmanClient.for_amt(PLAN.client(0), auth=DigestAuth("admin", PASSWORD), ca_bundle=str(other_roots),
                                      timeout=5)).general_settings()
    assert "unable to get local issuer certificate" in str(err.value)
    assert not tls.remembered(PLAN.client(2), 16993)


def test_webui_certificate_and_redirection_fall_back_too(estate, pki, fresh):
    page = webui.get(f"https://{PLAN.client(0)}:16993/", ca_bundle=pki["ca"], timeout=5)
    assert page.status == 200 and page.tls == "TLS 1.0, AES128-SHA (legacy fallback)"
    tls.forget()
    peer = net.peer_tls(PLAN.client(0), 16993, timeout=5)
    assert peer.negotiated == "TLS 1.0, AES128-SHA (legacy fallback)"
    assert peer.certificate.subject.rfc4514_string() == f"CN=pc0001.{DOMAIN}"
    modern = net.peer_tls(PLAN.client(1), 16993, timeout=5)
    assert "legacy" not in modern.negotiated
    tls.forget()
    redirection = actions.redirection._Redirection(PLAN.client(0), 16995, pki["ca"], 5)
    try:
        assert str(redirection.negotiated) == "TLS 1.0, AES128-SHA (legacy fallback)"
    finally:
        redirection.close()


def test_no_fallback_toward_a_port_that_is_not_amt(pki, fresh):
    """The same TLS 1.0-only device served on 18993: the probes stop at the modern refusal."""
    spec = _spec(3, pki, tls_profile="legacy")
    sim = AmtSimulator([spec], https_port=18993).start()
    try:
        client = WsmanClient(f"https://{spec.address}:18993/wsman", auth=DigestAuth("admin", PASSWORD),
                             ca_bundle=pki["ca"], timeout=5)
        with pytest.raises(TlsError) as err:
            AmtDevice(client).general_settings()
        text = str(err.value).lower()  # the refusal is an alert, or (a Python 3.11.2 asyncio server) a close_notify
        assert "legacy" not in text and ("protocol" in text or "closed" in text)
        with pytest.raises(MalformedReply, match="no TLS handshake"):
            net.peer_tls(spec.address, 18993, timeout=5)
        assert not tls.remembered(spec.address, 18993)
    finally:
        sim.stop()
