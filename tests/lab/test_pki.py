"""The lab PKI served by the lab HTTP server, checked with openssl and the x509 probe (net 93)."""
from __future__ import annotations

import subprocess
import time

import pytest
import requests

from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.http_server import LabHTTPServer
from pytest_vpro.lab.pki import LabPKI, PkiFaults
from pytest_vpro.probes import x509 as px

PLAN = AddressPlan(93)
TIMEOUT = 5


def _lab(tmp_path, faults=PkiFaults()):
    """An HTTP server on plan.ca (free port) and a PKI whose URLs point at it."""
    pki_dir = tmp_path / "pki"
    server = LabHTTPServer(pki_dir / "publish", address=PLAN.ca, port=0).start()
    return server, LabPKI(pki_dir, crl_base_url=server.url, faults=faults)


@pytest.fixture
def lab(tmp_path):
    server, pki = _lab(tmp_path)
    yield server, pki
    server.stop()


def openssl_verify(pki: LabPKI, cert_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "verify", "-CAfile", str(pki.root_path),
                           "-untrusted", str(pki.issuing_path), *extra, str(cert_path)],
                          capture_output=True, text=True, timeout=30)


def crl_args(pki: LabPKI) -> list[str]:
    return ["-crl_check_all", "-CRLfile", str(pki.issuing_crl_path), "-CRLfile", str(pki.root_crl_path)]


def test_openssl_verify_then_revoke(lab):
    _, pki = lab
    cert_path, key_path = pki.issue_web_server_cert("pc0001.vprolab.test")
    ok = openssl_verify(pki, cert_path, *crl_args(pki))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    serial = px.load_chain(cert_path.read_bytes())[0].serial_number
    pki.revoke(serial)
    pki.publish_crl()
    bad = openssl_verify(pki, cert_path, *crl_args(pki))
    assert bad.returncode != 0 and "certificate revoked" in bad.stdout + bad.stderr
    # the key matches the certificate (TLS servers of the AMT simulator load this pair)
    mod = lambda *a: subprocess.run(["openssl", *a, "-noout", "-modulus"], capture_output=True,  # noqa: E731
                                    text=True, check=True, timeout=10).stdout
    assert mod("x509", "-in", str(cert_path)) == mod("rsa", "-in", str(key_path))


def test_openssl_crl_download_from_served_cdp(lab):
    """openssl fetches the leaf's CRL itself from the URL in its CDP (HTTP).

    ``-crl_check`` (leaf only): the root has no CDP, as AD CS roots usually have none, so
    ``-crl_check_all -crl_download`` cannot find a CRL for it; the file-based test covers all.
    """
    _, pki = lab
    cert_path, _ = pki.issue_web_server_cert("pc0002.vprolab.test")
    ok = openssl_verify(pki, cert_path, "-crl_check", "-crl_download")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    pki.revoke(px.load_chain(cert_path.read_bytes())[0].serial_number)
    pki.publish_crl()
    bad = openssl_verify(pki, cert_path, "-crl_check", "-crl_download")
    assert "certificate revoked" in bad.stdout + bad.stderr


def test_provisioning_chain_verifies_with_openssl(lab):
    _, pki = lab
    ok = openssl_verify(pki, pki.provisioning_path, *crl_args(pki), "-purpose", "sslserver")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_served_urls_are_the_ones_in_the_certificates(lab):
    server, pki = lab
    device = px.load_chain(pki.issue_web_server_cert("pc0003.vprolab.test")[0].read_bytes())[0]
    [crl_url], [aia_url] = px.cdp_urls(device), px.aia_urls(device)
    assert crl_url.startswith(f"http://{PLAN.ca}:{server.port}/pki/")
    resp = requests.get(aia_url, timeout=TIMEOUT)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/pkix-cert"
    assert px.load_chain(resp.content) == [pki.issuing_cert]
    resp = requests.get(crl_url, timeout=TIMEOUT)
    assert resp.headers["Content-Type"] == "application/pkix-crl"
    assert resp.headers["Cache-Control"] == "no-store"
    crl = px.fetch_crl(crl_url, TIMEOUT, issuer=pki.issuing_cert)
    assert not px.is_revoked(crl, device.serial_number)
    root_crl = px.fetch_crl(px.cdp_urls(pki.issuing_cert)[0], TIMEOUT, issuer=pki.root_cert)
    assert not px.is_revoked(root_crl, pki.issuing_cert.serial_number)


def test_replaced_crl_is_seen_by_next_request(lab):
    _, pki = lab
    device = px.load_chain(pki.issue_web_server_cert("pc0004.vprolab.test")[0].read_bytes())[0]
    url = px.cdp_urls(device)[0]
    first = px.fetch_crl(url, TIMEOUT)
    pki.revoke(device.serial_number)
    pki.publish_crl()
    second = px.fetch_crl(url, TIMEOUT, issuer=pki.issuing_cert)
    number = lambda crl: crl.extensions.get_extension_for_class(px.x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(second) == number(first) + 1
    assert px.is_revoked(second, device.serial_number) and not px.is_revoked(first, device.serial_number)


def test_server_exposes_only_published_files(lab):
    server, pki = lab
    base = f"http://{PLAN.ca}:{server.port}"
    for path in ("/pki/", "/pki/../root.key.pem", "/pki/%2e%2e/root.key.pem", "/root.key.pem",
                 "/pki/devices/", "/publish/issuing.crl"):
        assert requests.get(base + path, timeout=TIMEOUT).status_code == 404, path
    assert requests.head(f"{server.url}/root.crl", timeout=TIMEOUT).status_code == 200


def test_fetch_crl_problems(lab):
    server, pki = lab
    with pytest.raises(px.CrlProblem) as err:
        px.fetch_crl(f"{server.url}/missing.crl", TIMEOUT)
    assert err.value.kind == "http-status"
    with pytest.raises(px.CrlProblem) as err:
        px.fetch_crl(f"{server.url}/issuing.crl", TIMEOUT, max_bytes=100)
    assert err.value.kind == "too-large"
    (pki.publish_dir / "junk.crl").write_bytes(b"\x30\x03garbage")
    with pytest.raises(px.CrlProblem) as err:
        px.fetch_crl(f"{server.url}/junk.crl", TIMEOUT)
    assert err.value.kind == "unparsable"
    with pytest.raises(px.CrlProblem) as err:
        px.fetch_crl(f"{server.url}/issuing.crl", TIMEOUT, issuer=pki.root_cert)
    assert err.value.kind == "bad-signature"
    url = f"{server.url}/issuing.crl"
    server.stop()
    started = time.monotonic()
    with pytest.raises(px.CrlProblem) as err:
        px.fetch_crl(url, 1.0)
    assert err.value.kind == "unreachable" and time.monotonic() - started < 3


def test_expired_crl_fault_is_seen_over_http_and_by_openssl(tmp_path):
    server, pki = _lab(tmp_path, PkiFaults(expired_crl=True))
    try:
        with pytest.raises(px.CrlProblem) as err:
            px.fetch_crl(f"{server.url}/issuing.crl", TIMEOUT, issuer=pki.issuing_cert)
        assert err.value.kind == "expired"
        cert_path, _ = pki.issue_web_server_cert("pc0005.vprolab.test")
        bad = openssl_verify(pki, cert_path, *crl_args(pki))
        assert "CRL has expired" in bad.stdout + bad.stderr
    finally:
        server.stop()


def test_expired_issuing_ca_fault_fails_openssl(tmp_path):
    server, pki = _lab(tmp_path, PkiFaults(expired_issuing_ca=True))
    server.stop()
    cert_path, _ = pki.issue_web_server_cert("pc0006.vprolab.test")
    bad = openssl_verify(pki, cert_path)
    assert bad.returncode != 0 and "certificate has expired" in bad.stdout + bad.stderr


def test_reload_keeps_roots_and_revocations(lab, tmp_path):
    server, pki = lab
    pki.revoke(4242)
    pki.publish_crl()
    again = LabPKI(pki.dir, crl_base_url=server.url)
    assert again.root_sha256() == pki.root_sha256() and again.root_sha1() == pki.root_sha1()
    assert again.issuing_cert == pki.issuing_cert and again.provisioning_cert == pki.provisioning_cert
    assert 4242 in again.revoked_serials()
    assert (pki.dir / "root.key.pem").stat().st_mode & 0o077 == 0


def test_thousand_device_certificates_are_fast(tmp_path):
    pki = LabPKI(tmp_path / "pki")
    started = time.monotonic()
    paths = [pki.issue_web_server_cert(f"pc{i:04d}.vprolab.test") for i in range(1000)]
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"1,000 device certificates took {elapsed:.1f}s"
    assert len({p[0] for p in paths}) == 1000 and len({p[1] for p in paths}) <= pki.device_key_pool
