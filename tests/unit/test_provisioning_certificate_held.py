"""facts.pki.provisioning_certificate(): the certificate the site selected, as the service point's store holds it,
and the exported file only as a fallback that says so (docs/protocols.md, "The provisioning certificate the site
selected"); and the registry Blob parser against a Blob Windows wrote.

The facet is tested alone, with the facts it reads (the site control file, AMTOPMGR.LOG events, the stores) given
as plain values; the lab shows the whole path (tests/lab/test_provisioning_certificate_store.py).
"""
from __future__ import annotations

import datetime as dt
import struct
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pytest_vpro.checks import Evidence, Finding
from pytest_vpro.environment_model import DEFAULT_EXPECTED
from pytest_vpro.facts.pki import PkiFacet, SelectionUnknown
from pytest_vpro.probes import cmlog
from pytest_vpro.probes import x509 as certs
from pytest_vpro.probes.errors import ProbeError, Undecided
from suites.stage3.test_provisioning_certificate import test_provisioning_chain_is_in_date as dates_check

#: A Blob Windows wrote: HKLM\SOFTWARE\Microsoft\SystemCertificates\ROOT\Certificates\
#: A31D3E0A4D99335EBD9B6F18E0915490F13525CA, as exported with regedit (a self-signed code-signing root,
#: CN=www.adia-project.net, sha1WithRSA under its old OID 1.3.14.3.2.29). Quoted, as a comment holding the .reg
#: export, in the VB6 module `mMain` (`SaveSert2Reestr`) of Drivers Installer Assistant (adia-project.net,
#: "DriversInstaller", 2014), found in a public GitHub copy whose file states no licence (the program has its own
#: EULA): used only as data, to show the layout of a real value: property 3 (its SHA-1), then property 32 (the
#: DER certificate, 0x228 bytes).
REAL_BLOB = bytes.fromhex(
    "030000000100000014000000a31d3e0a4d99335ebd9b6f18e0915490f13525ca20000000010000002802000030820224"
    "30820191a00302010202108258854428619ebc48c005a4406fceeb300906052b0e03021d0500301f311d301b06035504"
    "0313147777772e616469612d70726f6a6563742e6e6574301e170d3133303331313039353734305a170d333931323331"
    "3233353935395a301f311d301b060355040313147777772e616469612d70726f6a6563742e6e657430819f300d06092a"
    "864886f70d010101050003818d0030818902818100c44ef878d3ebfc45491331a0fcf6501d3cb34b9ed573454c069370"
    "e7eec86b2582164b58ea2240ab82d7c7c9900c3145aa7f7927e6b547fe7d48ad70e69a4625640b5074ceeaf18c926c82"
    "2e084baaa81005d1e89b9bfbce793e42a4498803c8226fb621a23f68f2845dac29a50271876d81ece3d017becf4858a3"
    "abedf59d5f0203010001a369306730130603551d25040c300a06082b0601050507030330500603551d01044930478010"
    "01604c5b6fd2c8c6606b5024034b9ba7a121301f311d301b060355040313147777772e616469612d70726f6a6563742e"
    "6e657482108258854428619ebc48c005a4406fceeb300906052b0e03021d05000381810008a6576e3ca57cad41ab61f9"
    "8f410e6ee0b26ebd3516cc0c05d1e2d9d4b2715070fd28a0c77f8f23634ac4e01b0e9837c1241f4faeaedb8dceb8cb9e"
    "136eb0a8b00f901b229497fa47b629b1eb984a262823a50aef5943b1be25492bcf8dbc823720cdb7db900bd73d7be9f5"
    "877b87bbaef253de5d17722518f961bd4ecd6cc8")


@pytest.mark.filterwarnings("ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning")
def test_a_blob_windows_wrote_yields_its_certificate():
    cert = certs.parse_store_blob(REAL_BLOB)  # makecert's serial has its top bit set (negative in DER)
    assert certs.fingerprint(cert, "sha1").upper() == "A31D3E0A4D99335EBD9B6F18E0915490F13525CA"
    assert certs.common_name(cert) == "www.adia-project.net"
    prop_id, reserved, length = struct.unpack_from("<III", REAL_BLOB)  # CERT_SHA1_HASH_PROP_ID first
    assert (prop_id, reserved, length) == (3, 1, 20) and REAL_BLOB[12:32].hex().upper() == certs.fingerprint(
        cert, "sha1").upper()


# ------------------------------------------------------------------------------------------- the facet
NOW = dt.datetime.now(dt.timezone.utc)


def _issue(cn: str, issuer: tuple | None = None, *, expired: bool = False):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    start, end = (NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=5)) if expired \
        else (NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .sign(issuer_key, hashes.SHA256()))
    return cert, key


ROOT = _issue("CORP Root CA")
ISSUING = _issue("CORP Issuing CA", ROOT)
CURRENT = _issue("sccm01.corp.example.com", ISSUING)[0]
OLD = _issue("sccm01.corp.example.com", ISSUING, expired=True)[0]


def thumb(cert) -> str:
    return certs.fingerprint(cert, "sha1").upper()


class Facts:
    """What the facet reads: the site control file's Props, AMTOPMGR.LOG events, the service point's stores,
    the exported file; each a value, or an exception to raise."""

    def __init__(self, *, props=None, events=(), my=(CURRENT,), exported=(CURRENT, ISSUING[0], ROOT[0]),
                 stores_error=None, expected=None):
        self.env = SimpleNamespace(expected={**DEFAULT_EXPECTED, **(expected or {})}, pki={})
        self.props, self.events, self.exported, self.stores_error = props, list(events), exported, stores_error
        self.stores = {"MY": {thumb(c): c for c in my}, "CA": {thumb(ISSUING[0]): ISSUING[0]},
                       "ROOT": {thumb(ROOT[0]): ROOT[0]}}
        self.estate = SimpleNamespace(get=lambda name, fetch: fetch())
        self.site = SimpleNamespace(wmi=self._wmi)
        self.logs = SimpleNamespace(site_events=lambda: {"": self.events})
        self.windows = SimpleNamespace(certificate_store=self._store, certificate_store_origins=self._origins)
        self.pki = PkiFacet(self)

    def get(self, name, fetch):
        if self.exported is None:
            raise ProbeError("the environment file names no pki.provisioning_chain")
        return list(self.exported)

    def server(self, role):
        return SimpleNamespace(name="sccm01.corp.example.com", fqdn="sccm01.corp.example.com")

    def _wmi(self, class_name):
        if isinstance(self.props, Exception):
            raise self.props
        return [{"ComponentName": "SMS_AMT_OPERATION_MANAGER", "Props": [
            {"PropertyName": n, "Value1": v} for n, v in (self.props or {}).items()]}]

    def _store(self, server, name):
        if self.stores_error:
            raise self.stores_error
        return self.stores[name]

    def _origins(self, server, name):
        return {t: [f"{name} (Local Computer)"] for t in self._store(server, name)}


PROP = DEFAULT_EXPECTED["provisioning_certificate_property"]


def test_the_site_control_propertys_thumbprint_selects_the_certificate_in_personal():
    spaced = " ".join(thumb(CURRENT)[i:i + 2] for i in range(0, 40, 2)).lower()  # as the MMC shows it
    held = Facts(props={PROP: spaced}, my=(OLD, CURRENT)).pki.provisioning_certificate()
    assert held.held and held.leaf == CURRENT and held.chain == [CURRENT, ISSUING[0], ROOT[0]]
    assert held.thumbprint == thumb(CURRENT)
    assert held.where == (f"the provisioning certificate in sccm01.corp.example.com's Personal store (selected by "
                          f"the site control property {PROP!r} of SMS_AMT_OPERATION_MANAGER)")
    assert held.evidence()["chain"][1]["found in"] == ["CA (Local Computer)"]


def test_the_site_names_its_own_property_in_the_environment():
    held = Facts(props={"Site Cert": thumb(OLD)}, my=(OLD, CURRENT),
                 expected={"provisioning_certificate_property": "Site Cert"}).pki.provisioning_certificate()
    assert held.held and held.leaf == OLD and "'Site Cert'" in held.where


def test_without_the_property_the_sourced_log_line_gives_the_thumbprint():
    line = cmlog.Event("provisioning_certificate_expiring", NOW, reason=f"{thumb(OLD)} will expire in 4 day(s)")
    held = Facts(props={}, events=[line], my=(OLD, CURRENT)).pki.provisioning_certificate()
    assert held.held and held.leaf == OLD and "the AMTOPMGR.LOG line of" in held.selected_by


def test_without_the_sites_word_the_exported_certificate_is_sought_in_personal():
    held = Facts(props=ProbeError("SMS_SCI_Component: access denied")).pki.provisioning_certificate()
    assert held.held and held.leaf == CURRENT
    assert held.selected_by.startswith("the exported file's thumbprint, as the site control file could not be read")
    assert "no AMTOPMGR.LOG line quotes it" in held.selected_by


def test_a_selected_certificate_missing_from_personal_falls_back_to_the_same_exported_one_and_says_so():
    held = Facts(props={PROP: thumb(CURRENT)}, my=()).pki.provisioning_certificate()
    assert not held.held and held.chain[0] == CURRENT
    assert held.where.startswith("the exported file pki.provisioning_chain (fallback: sccm01.corp.example.com's "
                                 f"Personal store holds nothing under the selected thumbprint {thumb(CURRENT)}")


def test_a_selected_certificate_other_than_the_exported_one_and_not_installed_is_a_finding():
    with pytest.raises(ProbeError, match="is another certificate") as err:
        Facts(props={PROP: thumb(OLD)}, my=(CURRENT,)).pki.provisioning_certificate()
    assert not isinstance(err.value, Undecided)


def test_unreadable_stores_fall_back_to_the_exported_file():
    held = Facts(props={PROP: thumb(CURRENT)}, stores_error=ProbeError("sccm01:5985 timed out")
                 ).pki.provisioning_certificate()
    assert not held.held and "certificate stores could not be read (sccm01:5985 timed out)" in held.where


def test_no_selection_and_no_exported_file_cannot_decide():
    with pytest.raises(SelectionUnknown, match="the site's selection could not be read"):
        Facts(props={}, exported=None, my=(OLD,)).pki.provisioning_certificate()


def test_the_dates_check_names_the_certificate_the_site_selected():
    facts = Facts(props={PROP: thumb(OLD)}, my=(OLD, CURRENT))
    with pytest.raises(Finding) as finding:
        dates_check(server=facts.server("oob_service_point"), facts=facts, evidence=Evidence())
    assert finding.value.found.startswith("the provisioning certificate in sccm01.corp.example.com's Personal "
                                          f"store (selected by the site control property {PROP!r}")
    assert f"({thumb(OLD)}): sccm01.corp.example.com: expired on" in finding.value.found
