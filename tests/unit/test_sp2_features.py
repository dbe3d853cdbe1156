"""PRE-SP2-FOR-SP2-FEATURES and PRE-AUDITING-AMT-4: the site's build from SMS_Site.BuildNumber (else Version's third
field), and the SP2-only features from the site control properties ``expected.sp2_feature_properties`` names (no
public source names them, docs/protocols.md): a site whose component holds none of them cannot be decided.

Each check function is called with small fakes of the facets it reads; the lab proves the same rows against its
site server (tests/lab/test_faults_windows.py).
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from pytest_vpro import environment
from pytest_vpro.checks import Evidence, Finding
from pytest_vpro.environment import DEFAULT_EXPECTED
from pytest_vpro.lab.site_spec import OOB_SP2_PROPS, SiteServerSpec
from pytest_vpro.probes.errors import Undecided
from suites.stage1 import test_site_server as checks
from suites.stage1.test_site_server import SP2_FEATURES, site_build

SP1 = {"SiteCode": "LAB", "Version": "4.00.6221.1000", "BuildNumber": 6221}
SP2 = {"SiteCode": "LAB", "Version": "4.00.6487.2000", "BuildNumber": 6487}
NAMES = DEFAULT_EXPECTED["sp2_feature_properties"]


def prop(name: str, value: int = 0, value1: str = "") -> dict:
    return {"PropertyName": name, "Value": value, "Value1": value1, "Value2": ""}


def facts(props: list[dict] | None, site: dict = SP1, lists: list[dict] = (), amt: str = "6.2.10"):
    component = [] if props is None else [{"SiteCode": "LAB", "ComponentName": "SMS_AMT_OPERATION_MANAGER",
                                           "Props": props, "PropLists": list(lists)}]
    rows = {"SMS_SCI_Component": component, "SMS_Site": [site],
            "SMS_R_System": [{"Name": "PC0001", "ResourceNames": ["pc0001.lab.test"], "AMTFullVersion": amt}]}
    return SimpleNamespace(site=SimpleNamespace(wmi=lambda cls, wql=None: rows[cls]))


def env(**names: str):
    expected = copy.deepcopy(DEFAULT_EXPECTED)
    expected["sp2_feature_properties"].update(names)
    return SimpleNamespace(site=SimpleNamespace(code="LAB"), expected=expected)


def lab_props(**on: int) -> list[dict]:
    return [prop("Enable Web UI", 1)] + [prop(name, on.get(k, 0)) for k, name in NAMES.items()]


def sp2(f, e=None) -> Evidence:
    evidence = Evidence()
    checks.test_sp2_features_run_on_an_sp2_site(None, e or env(), f, evidence)
    return evidence


def test_an_sp2_feature_on_an_sp1_build_fails_naming_the_build():
    with pytest.raises(Finding) as caught:
        sp2(facts(lab_props(auditing=1, power_state=2)))
    assert caught.value.found == ("auditing, a power state other than Always on turned on; site LAB runs "
                                  "4.00.6221.1000 (build 6221)")
    assert "SP2 (build 6487" in caught.value.expected


@pytest.mark.parametrize("site", [SP2, {"Version": "4.00.6487.2207", "BuildNumber": 6487},  # a hotfix: 4th field
                                  {"Version": "4.00.6487.2000", "BuildNumber": None},      # no BuildNumber
                                  {"Version": "4.00.6487.2000", "BuildNumber": "6487"}])   # as WinRM gives text
def test_an_sp2_build_passes(site):
    sp2(facts(lab_props(wired_8021x=1), site={"SiteCode": "LAB", **site}))


def test_the_build_comes_from_buildnumber_before_the_version():
    assert site_build({"Version": "4.00.6221.1000", "BuildNumber": 6487}) == 6487
    assert site_build({"Version": "4.00.6221.1000", "BuildNumber": 0}) == 6221
    assert site_build({"Version": "", "BuildNumber": None}) is None


def test_nothing_turned_on_is_not_applicable_with_the_message_of_before():
    with pytest.raises(pytest.skip.Exception, match="^not applicable: no SP2-only out of band feature is turned on$"):
        sp2(facts(lab_props()))


def test_a_property_list_with_values_turns_a_feature_on():
    f = facts([prop("Enable Web UI", 1)], lists=[{"PropertyListName": "Wireless Profiles", "Values": ["corp"]}])
    with pytest.raises(Finding, match="^found wireless networks turned on"):
        sp2(f, env(wireless="Wireless Profiles"))


def test_configured_names_the_component_lacks_cannot_be_decided_and_list_what_it_holds():
    e = env(**{k: f"Site {k}" for k in NAMES})
    f = facts(lab_props(auditing=1), lists=[{"PropertyListName": "AMT Enabled Realms", "Values": ["2"]}])
    evidence = Evidence()
    with pytest.raises(Undecided) as caught:
        checks.test_sp2_features_run_on_an_sp2_site(None, e, f, evidence)
    message = str(caught.value)
    assert "SMS_AMT_OPERATION_MANAGER holds none of the configured property names 'Site wired_8021x'" in message
    assert "expected.sp2_feature_properties" in message and "'AMT Enabled Realms'" in message
    assert "'Enable Auditing'" in message and "'Enable Web UI'" in message
    held = evidence.items[0]["body"]
    assert "AMT Enabled Realms" in str(held) and "Enable Auditing" in str(held)


def test_unknown_names_on_an_sp2_site_pass_whatever_is_on():
    sp2(facts([prop("Something Else", 1)], site=SP2))


def test_no_out_of_band_component_on_an_sp1_site_cannot_be_decided():
    with pytest.raises(Undecided, match="no SMS_AMT_OPERATION_MANAGER component"):
        sp2(facts(None))


def test_some_names_missing_and_the_rest_off_is_not_applicable_and_says_which_were_not_found():
    props = [p for p in lab_props() if p["PropertyName"] != NAMES["data_storage"]]
    with pytest.raises(pytest.skip.Exception, match=r"no SMS_AMT_OPERATION_MANAGER property Enable Data Storage to "
                                                    r"say for data storage in AMT"):
        sp2(facts(props))


def audit(f, e=None) -> None:
    checks.test_audited_clients_run_amt_4(SimpleNamespace(name="pc0001.lab.test"), e or env(), f, Evidence())


def test_auditing_on_with_amt_below_4_fails():
    with pytest.raises(Finding, match=r"AMT 3\.2\.2 with auditing turned on"):
        audit(facts(lab_props(auditing=1), amt="3.2.2"))
    audit(facts(lab_props(auditing=1), amt="4.0.2"))


def test_auditing_off_is_not_applicable():
    with pytest.raises(pytest.skip.Exception, match="auditing of AMT operations is not turned on"):
        audit(facts(lab_props(), amt="3.2.2"))


def test_an_auditing_property_the_site_lacks_cannot_be_decided_below_amt_4_only():
    e = env(auditing="Audit Log Enabled")
    with pytest.raises(Undecided, match=r"AMT 3\.2\.2 does not support auditing.*'Audit Log Enabled' \(auditing\)"):
        audit(facts(lab_props(auditing=1), amt="3.2.2"), e)
    audit(facts(lab_props(auditing=1), amt="6.2.10"), e)  # supports auditing whatever the site does
    with pytest.raises(Finding):
        audit(facts([prop("Audit Log Enabled", 1)], amt="3.2.2"), e)


def test_the_defaults_are_the_labs_names_and_every_feature_has_words():
    assert NAMES == OOB_SP2_PROPS and set(SP2_FEATURES) == set(NAMES)


def test_the_labs_site_serves_a_build_number_consistent_with_its_version():
    for version, build in (("4.00.6221.1000", 6221), ("4.00.6487.2000", 6487)):
        spec = SiteServerSpec(address="127.0.0.1", site_version=version)
        assert spec.build_number == build


ENV_FILE = """\
site: {name: HQ, code: ABC, domain: corp.example.com, amt_container: "OU=AMT,DC=corp,DC=example,DC=com"}
expected:
  sp2_feature_properties: %s
"""


def test_the_environment_names_a_sites_own_properties_and_keeps_the_rest(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text(ENV_FILE % '{auditing: "Audit Enabled"}')
    got = environment.load(path).expected["sp2_feature_properties"]
    assert got == {**NAMES, "auditing": "Audit Enabled"}


@pytest.mark.parametrize("value, problem", [
    ('{audit: "X"}', "expected.sp2_feature_properties.audit: unknown key; did you mean 'auditing'?"),
    ("{auditing: 3}", "expected.sp2_feature_properties.auditing: expected a non-empty string, found 3 (int)"),
    ('"Enable Auditing"', "expected.sp2_feature_properties: expected a mapping of keys (wired_8021x, wireless, "),
])
def test_a_wrong_property_mapping_is_reported_at_its_key(tmp_path, value, problem):
    path = tmp_path / "env.yaml"
    path.write_text(ENV_FILE % value)
    with pytest.raises(environment.EnvironmentFileError) as info:
        environment.load(path)
    assert any(problem in p for p in info.value.problems), info.value.problems
