"""S3-PROV-CERT-ROOT-HASH-IN-AMT reads the ME's trusted root hashes where they are (issue 16, item 4).

Before provisioning the ME answers no WS-MAN (docs/protocols.md, "An un-provisioned device"): its hash list travels in
its PKI hellos (a captured one from MeshCentral's tests, tests/reality/meshcentral). Once provisioned, WS-MAN. With
neither, the check cannot decide; it never fails a client for want of a source. The lab proves it end to end
(tests/lab/test_lab_2009.py).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pytest_vpro.checks import Evidence, Finding
from pytest_vpro.facts.pki import ProvisioningCertificate
from pytest_vpro.probes import hello as hello_probe
from pytest_vpro.probes import x509 as certs
from pytest_vpro.probes.amt import CertificateHash
from pytest_vpro.probes.errors import ProbeError
from pytest_vpro.probes.hello_listener import SeenHello
from pytest_vpro.sccm import ProvisioningStatus
from suites.stage3.test_provisioning_certificate import test_amt_trusts_the_provisioning_root as root_hash_check

CAPTURED = bytes.fromhex((Path(__file__).parents[1] / "reality" / "meshcentral" / "hello-1.hex").read_text().strip())
FQDN = "pc0001.corp.example.com"
CLIENT = SimpleNamespace(name=FQDN, fqdn=FQDN, uuid="939b524b-13d4-1d18-e487-1c697a6b7a2b", address="10.0.0.1",
                         provisioning="out_of_band", extra={})


def _root() -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CORP Root CA")])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


ROOT = _root()


class Facts:
    """A client's provisioning status (AMTStatus, the ME's state), what the run's listener heard, AMT's hash list."""

    def __init__(self, *, amt_status=None, me: int | None = None, heard: list | None = None, amt_hashes=()):
        self.status = ProvisioningStatus(resource={"ResourceId": 1, "AMTStatus": amt_status}, inventory=None,
                                         events=[], decisive=lambda event: False, read_me=self._me)
        self.me, self._heard, self.amt_hashes, self.wsman_reads = me, heard, list(amt_hashes), 0

    def _me(self):
        self.wsman_reads += 1
        if self.me is None:
            raise ProbeError(f"{FQDN}:16993: connection reset (no WS-MAN before provisioning)")
        return SimpleNamespace(state=self.me, state_name="post-provisioning" if self.me == 2 else "pre-provisioning")

    @property
    def site(self):
        return SimpleNamespace(provisioning_status=lambda: self.status)

    @property
    def pki(self):
        return SimpleNamespace(provisioning_certificate=lambda: ProvisioningCertificate(
            chain=[ROOT], held=True, server="sccm01.corp.example.com", thumbprint=certs.fingerprint(ROOT, "sha1")))

    @property
    def hellos(self):
        return SimpleNamespace(heard=lambda: self._heard, listener=lambda: SimpleNamespace(where="10.0.0.9:9971"))

    @property
    def amt(self):
        def certificate_hashes():
            self.wsman_reads += 1
            return self.amt_hashes
        return SimpleNamespace(certificate_hashes=certificate_hashes,
                               provisioned=lambda: self.status.by_site() or self.status.me_provisioned())


def outcome(facts) -> str:
    evidence = Evidence()
    try:
        root_hash_check(client=CLIENT, facts=facts, evidence=evidence)
    except pytest.skip.Exception as exc:
        return f"skipped: {exc.msg}"
    except Finding as exc:
        return f"failed: {exc.found} / {exc.expected}"
    return "passed"


def _seen(data: bytes) -> SeenHello:
    return SeenHello.decode("10.0.0.1", 0.0, data)


def _with_root(data: bytes) -> bytes:
    """The captured hello with the test root's SHA-256 appended to its list (as an ME whose MEBx added it)."""
    h = hello_probe.decode_hello(data)
    extra = (2, bytes.fromhex(certs.fingerprint(ROOT, "sha256")))
    return hello_probe.encode_hello(h.uuid, retry_count=h.retry_count, admin_credentials_set=h.admin_credentials_set,
                                    hashes=(*h.hashes, extra))


def test_an_unprovisioned_client_is_judged_from_the_hash_list_of_its_hello():
    facts = Facts(heard=[_seen(_with_root(CAPTURED))])
    assert outcome(facts) == "passed"
    assert facts.wsman_reads == 1  # only the ME's provisioning state was asked for, never its hash list


def test_a_hello_without_the_roots_hash_fails_naming_the_client_what_was_found_and_expected():
    result = outcome(Facts(heard=[_seen(CAPTURED)]))
    assert result.startswith(f"failed: {FQDN}: 23 hashes in its hello packet (retry 0, from 10.0.0.1), none enabled "
                             "for CORP Root CA, the root of the chain of the provisioning certificate in sccm01.corp.example.com's "
                             "Personal store / an enabled hash of the provisioning root ("), result
    assert certs.fingerprint(ROOT, "sha256") in result


def test_the_latest_pki_hello_counts():
    heard = [_seen(_with_root(CAPTURED)), _seen(CAPTURED)]  # the root's hash was removed since: the last says so
    assert outcome(Facts(heard=heard)).startswith("failed: ")


def test_without_a_hello_or_a_provisioned_me_the_check_cannot_decide():
    assert outcome(Facts(heard=None)).startswith("skipped: cannot decide: not provisioned yet, so AMT answers no "
                                                 "WS-MAN")
    assert outcome(Facts(heard=[])).startswith("skipped: cannot decide: not provisioned yet and no hello heard on "
                                               "10.0.0.9:9971")
    facts = Facts(heard=None, me=0)  # a (lab) ME that answers before provisioning: its hash list is not asked for
    assert outcome(facts).startswith("skipped: cannot decide") and facts.wsman_reads == 1


def test_psk_hellos_carry_no_hash_list():
    psk = hello_probe.encode_hello(CLIENT.uuid, version=hello_probe.VERSION_PSK, pid=b"ABCD-EFG")
    assert outcome(Facts(heard=[_seen(psk)])).startswith("skipped: not applicable: its hellos are PSK")


@pytest.mark.parametrize("facts", [Facts(amt_status=3), Facts(me=2)], ids=["site says provisioned", "ME says 2"])
def test_a_provisioned_client_is_judged_over_wsman(facts):
    digest = bytes.fromhex(certs.fingerprint(ROOT, "sha256"))
    facts.amt_hashes = [CertificateHash("1", "CORP Root CA", 2, digest, True, False)]
    facts._heard = [_seen(CAPTURED)]  # a stale hello from before provisioning does not count
    assert outcome(facts) == "passed"
    facts.amt_hashes = [CertificateHash("1", "CORP Root CA", 2, digest, False, False)]
    assert outcome(facts).startswith(f"failed: {FQDN}: 1 hashes in AMT_ProvisioningCertificateHash, none enabled")
