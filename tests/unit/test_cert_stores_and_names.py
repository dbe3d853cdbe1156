"""Windows certificate stores as Windows opens them (the registry, Group Policy and Enterprise physical stores,
their `Blob` values), and the name helpers of the stage 3 name checks: pure functions, no lab."""
from __future__ import annotations

import datetime as dt
import struct
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pytest_vpro.probes import x509 as certs
from pytest_vpro.probes.errors import ProbeError
from suites.stage3.test_names import invalid_characters
from suites.stage3.test_provisioning import _by_host, os_name_of


def _cert(name: str = "VPROLAB Root CA") -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


def test_the_trusted_root_store_is_read_from_every_physical_store_windows_opens():
    keys = {(p.location, p.key) for p in certs.physical_stores("ROOT")}
    assert keys == {
        ("registry", r"HKLM\SOFTWARE\Microsoft\SystemCertificates\ROOT\Certificates"),
        ("registry", r"HKLM\SOFTWARE\Microsoft\SystemCertificates\AuthRoot\Certificates"),
        ("group policy", r"HKLM\SOFTWARE\Policies\Microsoft\SystemCertificates\Root\Certificates"),
        ("enterprise", r"HKLM\SOFTWARE\Microsoft\EnterpriseCertificates\Root\Certificates")}
    assert [p.location for p in certs.physical_stores("ca")] == ["registry", "group policy", "enterprise"]
    assert [p.key for p in certs.physical_stores("MY")] == [
        r"HKLM\SOFTWARE\Microsoft\SystemCertificates\MY\Certificates"]
    assert [p.key for p in certs.physical_stores("NTAuth")] == [
        r"HKLM\SOFTWARE\Microsoft\EnterpriseCertificates\NTAuth\Certificates"]
    assert certs.physical_stores("TrustedPeople")[0].key.endswith(r"SystemCertificates\TrustedPeople\Certificates")
    titles = [p.title for p in certs.physical_stores("ROOT")]
    assert "Trusted Root Certification Authorities (Group Policy)" in titles
    assert "Trusted Root Certification Authorities (Enterprise)" in titles
    assert "Third-Party Root Certification Authorities (Local Computer)" in titles


def test_a_store_blob_yields_its_certificate_whatever_properties_come_first():
    cert = _cert()
    der = cert.public_bytes(serialization.Encoding.DER)
    name = "VPROLAB Root\0".encode("utf-16-le")
    blob = (struct.pack("<III", 11, 1, len(name)) + name          # CERT_FRIENDLY_NAME_PROP_ID first
            + struct.pack("<III", 3, 1, 20) + bytes(20)
            + struct.pack("<III", certs.CERT_CERT_PROP_ID, 1, len(der)) + der)
    assert certs.parse_store_blob(blob) == cert
    assert certs.parse_store_blob(certs.make_store_blob(cert)) == cert
    with pytest.raises(ValueError, match="no certificate"):
        certs.parse_store_blob(blob[:-10])  # the certificate record cut short
    with pytest.raises(ValueError):
        certs.parse_store_blob(b"")


@pytest.mark.parametrize("name, bad", [
    ("pc0001.vprolab.test", ""), ("pc_0001.vprolab.test", "_"), ("PC-01.Branch.vprolab.test", ""),
    ("pc 01.vprolab.test", " "), ("pc0001_x$.vprolab.test", "$_"),
])
def test_invalid_characters_are_the_ones_outside_the_guides_set(name, bad):
    assert invalid_characters(name) == bad


class _Facts:
    """The three facts os_name_of reads; each a value, or a ProbeError to raise."""

    def __init__(self, computers, resource):
        self.computers, self.resource = computers, resource
        self.directory = SimpleNamespace(forest_computers=self.forest_computers)
        self.site = SimpleNamespace(resource=self.sms_resource)

    def derived(self, name, source, build):
        return build(source)

    def forest_computers(self):
        if isinstance(self.computers, ProbeError):
            raise self.computers
        return self.computers

    def sms_resource(self):
        if isinstance(self.resource, ProbeError):
            raise self.resource
        return self.resource


ENV = SimpleNamespace(site=SimpleNamespace(amt_container="OU=AMT,DC=vprolab,DC=test"))
CLIENT = SimpleNamespace(fqdn="pc0006-me.vprolab.test")


def test_the_os_name_comes_from_its_computer_account_not_the_amt_object():
    computers = {"pc0006.vprolab.test": ["CN=PC0006,OU=AMT,DC=vprolab,DC=test"],
                 "pc0006-me.corp.vprolab.test": ["CN=PC0006-ME,CN=Computers,DC=vprolab,DC=test"]}
    assert _by_host(computers)["PC0006-ME"] == [("pc0006-me.corp.vprolab.test",
                                                  "CN=PC0006-ME,CN=Computers,DC=vprolab,DC=test")]
    assert os_name_of(CLIENT, ENV, _Facts(computers, None)) == ("pc0006-me.corp.vprolab.test",
                                                                "the computer account PC0006-ME$ (dNSHostName)")


def test_without_a_computer_account_the_sites_record_names_the_os():
    only_amt = {"pc0006-me.vprolab.test": ["CN=PC0006-ME,OU=AMT,DC=vprolab,DC=test"]}
    resource = {"ResourceId": 7, "ResourceNames": ["PC0006.vprolab.test"]}
    assert os_name_of(CLIENT, ENV, _Facts(only_amt, resource)) == ("pc0006.vprolab.test",
                                                                   "SMS_R_System 7 ResourceNames")
    name, why = os_name_of(CLIENT, ENV, _Facts(ProbeError("no answer from dc01:3269"), None))
    assert name is None and "global catalog did not answer" in why and "no SMS_R_System resource" in why
    name, why = os_name_of(CLIENT, ENV, _Facts({}, ProbeError("no answer from sccm01")))
    assert name is None and "SMS Provider did not answer" in why
