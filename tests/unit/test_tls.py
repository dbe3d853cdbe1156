"""probes.tls: the contexts and the refusal rules (no network; the handshakes are in tests/lab/test_amt_tls.py)."""
from __future__ import annotations

import ssl
from types import SimpleNamespace

import pytest

from pytest_vpro.probes import tls
from pytest_vpro.probes.errors import ProbeError


def test_the_modern_context_verifies_and_asks_for_tls_1_2_on_every_python_build():
    ctx = tls.client_context(None)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not ctx.options & tls.OP_LEGACY_SERVER_CONNECT


def test_the_legacy_context_allows_tls_1_0_the_rsa_cbc_suites_and_legacy_renegotiation_and_still_verifies():
    ctx = tls.client_context(None, legacy=True)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1
    assert ctx.options & 0x4 == 0x4  # SSL_OP_LEGACY_SERVER_CONNECT
    offered = {c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert offered == {"AES128-SHA", "AES256-SHA"}
    ids = {c["id"] & 0xFFFF for c in ctx.get_ciphers() if c["name"] in offered}
    assert ids == {0x002F, 0x0035}


def test_the_legacy_suites_come_from_the_environment():
    assert tls.ciphers_of(SimpleNamespace(expected={"amt_legacy_tls_ciphers": "AES256-SHA"})) == "AES256-SHA"
    assert tls.ciphers_of(SimpleNamespace(expected={})) == tls.DEFAULT_LEGACY_CIPHERS
    ctx = tls.client_context(None, legacy=True, ciphers="AES256-SHA")
    assert {c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"} == {"AES256-SHA"}
    with pytest.raises(ProbeError, match="expected.amt_legacy_tls_ciphers"):
        tls.client_context(None, legacy=True, ciphers="NO-SUCH-SUITE")


def test_only_amt_ports_fall_back():
    assert all(tls.may_fall_back(p) for p in (16992, 16993, 16994, 16995))
    assert not any(tls.may_fall_back(p) for p in (443, 5986, 636, 18993, None))


def _ssl_error(cls=ssl.SSLError, reason: str = "", **attrs):
    err = cls(1, f"[SSL: {reason}] {reason.lower()}")
    err.reason = reason
    for k, v in attrs.items():
        setattr(err, k, v)
    return err


@pytest.mark.parametrize("reason", ["UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE",
                                    "SSLV3_ALERT_HANDSHAKE_FAILURE", "UNSAFE_LEGACY_RENEGOTIATION_DISABLED",
                                    "WRONG_VERSION_NUMBER"])
def test_protocol_and_suite_refusals_fall_back(reason):
    wrapped = RuntimeError("requests' wrapper")
    wrapped.__context__ = _ssl_error(reason=reason)
    assert tls.refused_modern(wrapped)


def test_trust_and_name_failures_do_not_fall_back_but_a_sha1_signature_does():
    untrusted = _ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED", verify_code=20,
                           verify_message="unable to get local issuer certificate")
    mismatch = _ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED", verify_code=62,
                          verify_message="Hostname mismatch")
    sha1 = _ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED", verify_code=68,
                      verify_message="CA signature digest algorithm too weak")
    assert not tls.refused_modern(untrusted) and not tls.refused_modern(mismatch)
    assert tls.refused_modern(sha1)
    assert tls.reason(mismatch) == "certificate verify failed: Hostname mismatch"
    assert tls.reason(_ssl_error(reason="TLSV1_ALERT_PROTOCOL_VERSION")) == "tlsv1 alert protocol version"


def test_what_was_negotiated_reads_as_words():
    assert str(tls.Negotiated("TLS 1.0", "AES128-SHA", True)) == "TLS 1.0, AES128-SHA (legacy fallback)"
    assert str(tls.Negotiated("TLS 1.3", "TLS_AES_256_GCM_SHA384")) == "TLS 1.3, TLS_AES_256_GCM_SHA384"
