"""facts.pki.provisioning_certificate(): the certificate the site selected, as the service point's store holds it,
and the exported file only as a fallback that says so (docs/protocols.md, "The provisioning certificate the site
selected"); and the registry Blob parser against a Blob Windows wrote.

The facet is tested alone, with the facts it reads (the site control file, AMTOPMGR.LOG events, the stores) given
as plain values; the lab shows the whole path (tests/lab/test_provisioning_certificate_store.py).
"""
from __future__ import annotations

import datetime as dt
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
