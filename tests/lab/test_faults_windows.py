"""The fault matrix of the Windows-side rows: the site server, the service point, the console host and in-band
clients' Windows, read over WinRM/WMI (suites/stage1/test_site_server.py, test_hotfixes.py,
test_in_band_clients.py, suites/stage2|4|5/test_rights.py, suites/stage5/test_console_host.py).

A failing site or server check closes the gates of every later stage, so each lab groups faults whose checks sit
at the same stage or do not gate one another: the stage 1 server faults (every Appendix A hot fix among them),
the in-band clients' faults with a stage 2 right, the RTM site, a stage 4 right, and the console host's stage 5
faults with a stage 5 right.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from suite_runner import CHECKS, assert_fails, assert_gated, assert_healthy, run_pytest_on, run_suite

from pytest_vpro.environment import DEFAULT_EXPECTED
from pytest_vpro.lab import manager

NET = 102
SITE, SERVER, CONSOLE = "vprolab.test", "sccm01.vprolab.test", "console01.vprolab.test"
MISSING = ("KB942841", "KB960804", "KB954718", "KB955126", "KB955114", "KB955355", "KB956337", "KB957183",
           "KB957469", "KB959040", "KB932303", "KB940848")


def pc(n: int) -> str:
    return f"pc{n:04d}.vprolab.test"


@pytest.fixture(scope="module")
def server_faults(tmp_path_factory):
    return run_suite(tmp_path_factory.mktemp("windows-servers"), [
        *({"fault": "hotfix_missing", "kb": kb} for kb in MISSING),
        {"fault": "windows_2003_sp1"}, {"fault": "winrm_1_0"}, {"fault": "console_xp_sp2"},
        {"fault": "console_no_kb908209_registry"}, {"fault": "ipsec_policy"}, {"fault": "no_reporting_point"},
        {"fault": "no_oob_service_point_role"}, {"fault": "network_discovery_no_account"},
        {"fault": "sp2_feature_on_sp1", "feature": "power_state"},
        {"fault": "legacy_amt", "client": 2}, {"fault": "psk_client", "client": 3},
        {"fault": "auditing_old_amt", "client": 4},
    ], clients=4, net=NET, args=("--stage", "2"))


@pytest.mark.parametrize("kb", MISSING)
def test_a_missing_appendix_a_hot_fix_fails_its_row(server_faults, kb):
    either = " or the rollup KB960804" if kb not in ("KB942841", "KB960804", "KB932303", "KB940848") else ""
    assert_fails(server_faults, f"HF-{kb}", SERVER, f"{kb}{either} not installed")


@pytest.mark.parametrize("check, target, found", [
    ("HF-KB899900", SERVER, "KB899900 not installed"),
    ("PRE-SERVICE-POINT-WINDOWS-2003-SP2", SERVER, "Windows\\(R\\) Server 2003, Enterprise x64 Edition Service Pack 1"),
    ("HF-KB936059", SERVER, "KB936059 not installed"),
    ("PRE-WINRM-SERVICE-POINT", SERVER, r"WinRM 1\.0 \(StackVersion 1\.0\)"),
    ("HF-KB908209", CONSOLE, "KB908209 not installed"),
    ("HF-KB908209-REGISTRY", CONSOLE, "no iexplore.exe value"),
    ("PRE-NO-IPSEC", SERVER, r"domain policy \(GPTIPSECPolicy\) 'Secure Server \(Require Security\)', rule 'Require "
                             r"Security' \(action 'Require Security'\), filter list 'All IP Traffic', filter my IP "
                             r"address -> any IP address, any protocol, mirrored, matches AMT traffic between "
                             r"sccm01\.vprolab\.test \(127\.102\.0\.11\) and any client"),
    ("PRE-REPORTING-POINT", SERVER, "no 'SMS Reporting Point' role on sccm01"),
    ("S1-OOB-SERVICE-POINT-INSTALLED", SERVER, "sccm01.vprolab.test has the roles"),
    ("PRE-NETWORK-DISCOVERY-PREREQS", SITE, "no out of band service point in the site and no AMT Provisioning"),
    ("PRE-SP2-FOR-SP2-FEATURES", SITE, "auditing, a power state other than Always on turned on; site LAB runs "
                                       r"4\.00\.6221"),
    ("S1-WSMAN-TRANSLATOR-LEGACY", SERVER, r"no Intel WS-MAN translator service .*PC0002 \(AMT 3\.0\.0\)"),
    ("S1-WSMAN-TRANSLATOR-PSK", SERVER, "no Intel WS-MAN translator service .*pc0003.vprolab.test"),
    ("PRE-AUDITING-AMT-4", pc(4), r"AMT 3\.2\.2 with auditing turned on"),
])
def test_a_server_fault_fails_its_check(server_faults, check, target, found):
    assert_fails(server_faults, check, target, found)


def test_stage_1_server_faults_gate_every_client_and_leave_the_rest(server_faults):
    assert server_faults[("PRE-AUDITING-AMT-4", pc(1))][0] == "passed"  # AMT 6.2.10 supports auditing
    assert server_faults[("S1-SCCM-SP1-SITE", SERVER)][0] == "passed"
    failed = tuple({check for (check, _), (outcome, _m) in server_faults.items() if outcome == "failed"})
    for client in (pc(1), pc(4)):
        assert_gated(server_faults, client, failed, 1)
    assert_healthy(server_faults, pc(1))


@pytest.fixture(scope="module")
def client_faults_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("windows-clients")


@pytest.fixture(scope="module")
def client_faults(client_faults_dir):
    return run_suite(client_faults_dir, [
        {"fault": "workgroup_client", "client": 2}, {"fault": "unsupported_client_os", "client": 4},
        {"fault": "unsupported_client_os", "client": 6, "os": "xp_tablet"},
        {"fault": "unsupported_client_os", "client": 8, "os": "xp_sp1"},
        {"fault": "old_agent", "client": 10}, {"fault": "hotfix_missing", "kb": "KB957183"},
        {"fault": "operator_lacks_rights", "rights": ["Modify Collection Setting"]},
        {"fault": "ipsec_policy_other_traffic"},  # a healthy variant: PRE-NO-IPSEC passes
    ], clients=12, in_band_every=2, net=NET, args=("--stage", "3"))


@pytest.mark.parametrize("check, target, found", [
    ("S1-INBAND-CLIENT-DOMAIN-MEMBER", pc(2), "pc0002.vprolab.test is in workgroup WORKGROUP"),
    ("PRE-INBAND-CLIENT-OS", pc(4), r"Windows 2000 Professional Service Pack 4 \(5\.0\.2195\): Windows 2000"),
    ("PRE-INBAND-CLIENT-OS", pc(6), "Windows XP Tablet PC Edition"),
    ("PRE-INBAND-CLIENT-OS", pc(8), r"Windows XP before SP2 \(SP1\)"),
    ("S1-CLIENT-AGENT-SP1", pc(10), r"client \(root\\ccm SMS_Client\): 4\.00\.5931\.0001; site \(SMS_R_System\): "
                                    r"4\.00\.5931\.0001"),
])
def test_an_in_band_client_fault_fails_its_check_and_gates_that_client(client_faults, check, target, found):
    assert_fails(client_faults, check, target, found)
    assert_gated(client_faults, target, check, 1)
    assert not [k for k, v in client_faults.items() if k[1] == target and v[0] == "failed" and k[0] != check]


def test_an_ipsec_policy_whose_filters_leave_amt_traffic_alone_passes(client_faults, client_faults_dir):
    verdict = client_faults[("PRE-NO-IPSEC", SERVER)]
    assert verdict[0] == "passed", verdict
    with sqlite3.connect(client_faults_dir / "reports" / "latest" / "verdicts.sqlite") as db:
        (evidence,) = db.execute("SELECT evidence FROM verdicts WHERE nodeid LIKE '%test_no_ipsec_policy%'").fetchone()
    # passed on the policy's filters, read from Samba: not for want of a policy
    assert "Secure SMB to the DC" in evidence and "my IP address -> 127.102.0.10, TCP port any -> port 445" in evidence


def test_a_missing_right_to_modify_collection_settings_fails_for_the_site(client_faults):
    assert_fails(client_faults, "PRE-RIGHT-MODIFY-COLLECTION-SETTING", SITE,
                 r"VPROLAB\\amtadmin \(as amt administrators, amtadmin\) lacks Modify Collection Setting for 12 of 12")
    assert_gated(client_faults, pc(1), "PRE-RIGHT-MODIFY-COLLECTION-SETTING", 2)
    assert client_faults[("HF-KB957183", SERVER)][0] == "passed"  # the rollup KB960804 contains it
    for healthy in (pc(1), pc(12)):
        assert_healthy(client_faults, healthy)


def test_an_rtm_site_fails_the_sp1_rows_and_the_sp1_rollup_no_longer_applies(tmp_path):
    results = run_suite(tmp_path, [{"fault": "sccm_rtm"}], clients=1, net=NET, args=("--stage", "1"))
    assert_fails(results, "S1-SCCM-SP1-SITE", SERVER, r"SMS_Site LAB Version 4\.00\.5931\.0000; sccm01")
    assert_fails(results, "S1-SCCM-SUPPORTED-BASE-INSTALL", SERVER, r"site LAB runs 4\.00\.5931\.0000, before SP1")
    outcome, message = results[("HF-KB960804", SERVER)]
    assert outcome == "skipped" and "is for Configuration Manager 2007 SP1" in message


def test_sp2_feature_properties_the_site_lacks_leave_the_sp2_rows_undecided_and_the_gates_open(tmp_path):
    """The SMS_AMT_OPERATION_MANAGER names of the SP2-only features have no public source: an environment that
    names properties the site's component does not hold gets "cannot decide" (the evidence lists what it holds),
    never a silent "not applicable", and closes no gate."""
    description = tmp_path / "lab.yaml"
    description.write_text(json.dumps({"lab": {"clients": 2, "net": NET, "dhcp_port": 0, "state_dir": "state",
                                               "faults": [{"fault": "sp2_feature_on_sp1", "feature": "power_state"},
                                                          {"fault": "auditing_old_amt", "client": 2}]}}))
    state = tmp_path / "state"
    info = manager.up(description, state=state, log=lambda line: None)
    try:
        env = yaml.safe_load(Path(info["environment_file"]).read_text())
        env["expected"] = {"sp2_feature_properties": {k: f"Site {k}" for k in DEFAULT_EXPECTED[
            "sp2_feature_properties"]}}
        changed = Path(info["environment_file"]).with_name("environment-sp2-names.yaml")  # beside it: same paths
        changed.write_text(yaml.safe_dump(env, sort_keys=False))
        results = run_pytest_on(changed, tmp_path / "reports", "--stage", "2")
    finally:
        manager.down(state)
    outcome, message = results[("PRE-SP2-FOR-SP2-FEATURES", SITE)]
    assert outcome == "skipped" and message.startswith("cannot decide: SMS_AMT_OPERATION_MANAGER holds none of the "
                                                       "configured property names 'Site wired_8021x'"), message
    assert "expected.sp2_feature_properties" in message and "'AMT Power State'" in message, message
    outcome, message = results[("PRE-AUDITING-AMT-4", pc(2))]
    assert outcome == "skipped" and message.startswith("cannot decide: AMT 3.2.2 does not support auditing"), message
    assert results[("PRE-AUDITING-AMT-4", pc(1))][0] == "passed"  # AMT 6.2.10 supports auditing either way
    assert not [k for k, v in results.items() if "gated: PRE-SP2" in v[1] or "gated: PRE-AUDITING" in v[1]]
    assert_healthy(results, pc(1))
    assert results[("S1-SCCM-SP1-SITE", SERVER)][0] == "passed"


def test_a_missing_right_to_view_management_controllers_fails_stage_4(tmp_path):
    results = run_suite(tmp_path, [{"fault": "operator_lacks_rights", "rights": ["View management controllers"]}],
                        clients=1, net=NET, args=("--stage", "5"))
    assert_fails(results, "PRE-RIGHT-VIEW-MANAGEMENT-CONTROLLERS", SITE, "lacks View management controllers for 1 of 1")
    assert results[("PRE-RIGHT-MODIFY-COLLECTION-SETTING", SITE)][0] == "passed"
    later = {k: v for k, v in results.items() if k[1] == pc(1) and CHECKS[k[0]].test_stage == 5
             and CHECKS[k[0]].automated and not CHECKS[k[0]].disruptive}  # disruptive ones are skipped anyway
    assert later and all(outcome == "skipped" and "gated: PRE-RIGHT-VIEW-MANAGEMENT-CONTROLLERS failed" in message
                         for outcome, message in later.values()), later


def test_console_host_faults_fail_the_stage_5_console_rows(tmp_path):
    results = run_suite(tmp_path, [
        {"fault": "no_msxml6"}, {"fault": "no_telnet_client"}, {"fault": "console_winrm_1_0"},
        {"fault": "console_root_store_incomplete"},
        {"fault": "operator_lacks_rights", "rights": ["Manage management controllers"]},
    ], clients=2, net=NET, args=("--stage", "5"))
    assert_fails(results, "PRE-MSXML6-CONSOLE", CONSOLE, r"no C:\\WINDOWS\\system32\\msxml6\.dll")
    assert_fails(results, "S5-CONSOLE-TELNET-CLIENT", CONSOLE, r"no C:\\WINDOWS\\system32\\telnet\.exe")
    assert_fails(results, "PRE-WINRM-CONSOLE", CONSOLE, r"WinRM 1\.0 \(StackVersion 1\.0\)")
    assert_fails(results, "S5-MULTITIER-PKI-CONSOLE-ROOT-STORE", CONSOLE,
                 r"VPROLAB Issuing CA not in console01.vprolab.test's Trusted Root "
                 r"Certification Authorities \(Local Computer, Group Policy, Enterprise\)")
    assert_fails(results, "PRE-RIGHT-MANAGE-MANAGEMENT-CONTROLLERS", SITE, "lacks Manage management controllers")
    assert results[("PRE-RIGHT-VIEW-MANAGEMENT-CONTROLLERS", SITE)][0] == "passed"
    assert results[("PRE-WINRM-SERVICE-POINT", SERVER)][0] == "passed"  # the console host is its own machine
    for client in (pc(1), pc(2)):
        assert_healthy(results, client)  # stage 5 client checks run: no stage 1-4 failure closed their gates


def test_the_checks_and_the_lab_agree_on_the_unconfirmed_names():
    """The names no public source confirms live twice: in the checks and in the simulators. Keep them equal."""
    from pytest_vpro.facts import ipsec as ipsec_facts
    from pytest_vpro.lab import site_server, windows_spec
    from suites.stage1 import test_hotfixes, test_in_band_clients, test_site_server
    from suites.stage2 import test_rights

    assert all(site_server.SMS_PERMISSIONS[r] == bit for r, bit in test_rights.RIGHT_BITS.items())
    assert DEFAULT_EXPECTED["sp2_feature_properties"] == site_server.OOB_SP2_PROPS  # the defaults are the lab's
    assert set(test_site_server.SP2_FEATURES) == set(site_server.OOB_SP2_PROPS)
    assert (test_site_server.DISCOVERY_COMPONENT, test_site_server.DISCOVERY_ENABLED) == site_server.NETWORK_DISCOVERY
    assert test_site_server.DISCOVERY_ACCOUNT == site_server.OOB_PROPS["provisioning_account"][0]
    assert test_site_server.WINRM_KEY == test_hotfixes.WINRM_KEY == "HKLM\\" + site_server.WINRM_STACK_KEY
    assert ipsec_facts.GPO_KEY == "HKLM\\" + site_server.IPSEC_GPO_KEY
    assert test_hotfixes.KB908209_KEY == "HKLM\\" + site_server.KB908209_KEY
    assert test_in_band_clients.TABLET_PC_KEY == "HKLM\\" + windows_spec.TABLET_PC_KEY
