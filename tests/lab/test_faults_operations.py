"""The fault matrix of stages 4 to 7: power control, the out of band console, the WebUI, un-provisioning.

Four labs (net 107, one after the other). A carries client faults, canaries 1-5 with ``--allow-disruptive`` (the
power cycle, SOL/IDER and un-provisioning run on them), the rest read-only; B plants a CA that refuses to revoke
(stage 7 on a canary); C the site-wide faults of stage 5 (they gate every client's later stages); D the WebUI off
(stage 6). Each fault fails its check for its target with found / expected / corrective action; the target's later
stages are gated; the healthy canary and the healthy non-canary are untouched.
"""
from __future__ import annotations

import pytest
from suite_runner import assert_fails, assert_gated, assert_healthy, run_suite

NET = 107
PC = "pc{:04d}.vprolab.test".format
SITE, CONSOLE = "vprolab.test", "console01.vprolab.test"


@pytest.fixture(scope="module")
def lab_a(tmp_path_factory):
    return run_suite(tmp_path_factory.mktemp("operations-a"), [
        {"fault": "power_off_ignored", "client": 1},
        {"fault": "power_policy_s0_only", "client": 2},
        {"fault": "sol_ider_disabled", "client": 3},
        {"fault": "amt_object_has_child", "client": 4},
        {"fault": "mc_not_discovered", "client": 6},
        {"fault": "mebx_password_kept", "client": 7},
        {"fault": "console_user_not_in_acl", "client": 8},
        {"fault": "kerberos_disabled", "client": 9},
    ], clients=10, canaries=5, net=NET, args=("--allow-disruptive",))


@pytest.mark.parametrize("check, target, found, gates_after", [
    ("S4-POWER-DOWN", PC(1), r"PowerState 2 \(on\) \d+ s after AMTOperateForMachines\(\[\d+\], 3\) \(Shutdown\): "
                             r"ReturnValue 0", 4),
    ("S4-POWER-UP", PC(1), "power-up not tried: the client did not go off", 4),
    ("S4-POWER-DOWN", PC(2), "not sent: the active power package 'Desktop: ON in S0' turns the ME off in S5", 4),
    ("S4-POWER-UP", PC(2), "power-up not tried: power-down refused to leave the client unreachable", 4),
    ("S4-ME-POWER-PACKAGE-S0-S5", PC(2), r"ME on in S0\)", 4),
    ("S5-SOL-IDER-SESSION", PC(3), "SOL: SOL session refused by the device", 5),
    ("S5-SOL-IDER-ENABLED-IN-AMT", PC(3), "SOL and IDER disabled", 5),
    ("S7-AD-MC-OBJECT-DELETED", PC(4), r"CN=PC0004,OU=AMT,DC=vprolab,DC=test still there with HTTP/pc0004", 7),
    ("S7-UNPROVISION-COMPLETES", PC(4), r"AMTOPMGR.LOG: unprovision failed: delete_ad_object: "
                                        r"LDAPNotAllowedOnNotLeafResult", 7),
    ("S4-MC-DISCOVERED", PC(6), r"AMTStatus null \(unknown\), AMTFullVersion empty", 4),
    ("S4-DIGEST-CREDENTIALS-RANDOMIZED", PC(6), r"SMS_R_System\.AMTStatus null \(unknown\)", 4),
    ("S4-DIGEST-CREDENTIALS-RANDOMIZED", PC(7), "the factory MEBx password still opens admin on pc0007", 4),
    ("S5-CONSOLE-USER-IN-AMT-ACL", PC(8), r"1 entries \(S-1-5-21-[\d-]+-500\), none for amtadmin", 5),
    ("S5-AMT-REALMS-ENABLED", PC(8), "no ACL entry for amtadmin or its groups on the device", 5),
    ("S5-OOB-CONSOLE-CONNECTS", PC(9), "kerberos authentication to https://pc0009.vprolab.test:16993/wsman was "
                                       "refused", 5),
    ("S5-OOB-CONSOLE-SYSTEM-STATUS", PC(9), "kerberos authentication to .* was refused", 5),
])
def test_a_client_fault_fails_its_check(lab_a, check, target, found, gates_after):
    assert_fails(lab_a, check, target, found)
    if gates_after < 7:
        failed = tuple(k for (k, t), (outcome, _) in lab_a.items() if t == target and outcome == "failed")
        assert_gated(lab_a, target, failed, gates_after)


def test_lab_a_healthy_canary_and_healthy_client_pass_every_stage(lab_a):
    for target in (PC(5), PC(10)):
        assert_healthy(lab_a, target)
    for check in ("S4-POWER-DOWN", "S4-POWER-UP", "S5-CONSOLE-POWER-CONTROL", "S5-SOL-IDER-SESSION",
                  "S7-UNPROVISION-COMPLETES", "S7-WEB-SERVER-CERT-REVOKED", "S7-AD-MC-OBJECT-DELETED",
                  "S6-WEBUI-LOGIN"):
        assert lab_a[(check, PC(5))][0] == "passed", (check, lab_a[(check, PC(5))])
    assert lab_a[("S7-WEB-SERVER-CERT-REVOKED", PC(4))][0] == "passed"  # revoked before the AD step failed
    for check in ("S4-POWER-DOWN", "S5-CONSOLE-POWER-CONTROL", "S5-SOL-IDER-SESSION",
                  "S7-UNPROVISION-COMPLETES"):  # not a canary
        outcome, message = lab_a[(check, PC(10))]
        assert outcome == "skipped" and "not marked canary: true" in message, (check, message)
    for check in ("S7-WEB-SERVER-CERT-REVOKED", "S7-AD-MC-OBJECT-DELETED"):
        outcome, message = lab_a[(check, PC(10))]
        assert outcome == "skipped" and "was not un-provisioned in this run" in message, (check, message)
    assert lab_a[("S5-DC-REPLICATION", SITE)][0] == "skipped"  # one DC: not applicable
    assert lab_a[("S5-KERBEROS-TICKET-FOR-AMT", PC(9))][0] == "passed"  # the KDC issues; the device refuses


def test_console_power_control_without_the_remote_control_realm_is_refused_by_amt(tmp_path):
    """Stage 5's power control is the console's own, to AMT as the console user: without the remote control realm
    AMT refuses it, while stage 4's power control (through the site, with the service point's account) works."""
    results = run_suite(tmp_path, [{"fault": "console_acl_no_remote_control", "client": 1}], clients=2, canaries=2,
                        net=NET, args=("--allow-disruptive",))
    assert_fails(results, "S5-CONSOLE-POWER-CONTROL", PC(1),
                 r"power-down: PowerState 2 \(on\) 0 s after RequestPowerStateChange\(8\) as the console user: "
                 r"SOAP fault .*wsman:AccessDenied")
    assert_fails(results, "S5-AMT-REALMS-ENABLED", PC(1), "lack 5 remote control")
    for check in ("S4-POWER-DOWN", "S4-POWER-UP"):  # the site's power control is untouched
        assert results[(check, PC(1))][0] == "passed", (check, results[(check, PC(1))])
    assert results[("S5-CONSOLE-POWER-CONTROL", PC(2))][0] == "passed", results[("S5-CONSOLE-POWER-CONTROL", PC(2))]
    assert_healthy(results, PC(2))


def test_ide_r_boot_off_in_bios_fails_the_session_check_before_any_reset(tmp_path):
    results = run_suite(tmp_path, [{"fault": "ider_boot_off_in_bios", "client": 1}], clients=2, canaries=2, net=NET,
                        args=("--allow-disruptive", "--stage", "5"))
    assert_fails(results, "S5-SOL-IDER-SESSION", PC(1), r"boot configuration: the BIOS does not offer IDE-R boot "
                                                         r"\(AMT_BootCapabilities.IDER is not true\): not changed")
    assert results[("S5-SOL-IDER-SESSION", PC(2))][0] == "passed", results[("S5-SOL-IDER-SESSION", PC(2))]
    for target in (PC(1), PC(2)):
        others = {k: v for k, v in results.items() if k[1] == target and v[0] in ("failed", "error")
                  and k[0] != "S5-SOL-IDER-SESSION"}
        assert not others, others


def test_a_ca_that_cannot_revoke_leaves_the_serial_out_of_the_crl(tmp_path):
    results = run_suite(tmp_path, [{"fault": "ca_revocation_refused"}], clients=2, canaries=1, net=NET,
                        args=("--allow-disruptive",))
    assert_fails(results, "S7-WEB-SERVER-CERT-REVOKED", PC(1), r"serial [0-9a-f]+ not in http://ca01.vprolab.test/"
                                                               r"pki/issuing.crl \(0 entries")
    assert_fails(results, "S7-UNPROVISION-COMPLETES", PC(1), "revoke_certificate: PermissionError: the issuing CA "
                                                             "denied the revocation")
    assert_fails(results, "S7-AD-MC-OBJECT-DELETED", PC(1), "CN=PC0001,OU=AMT,DC=vprolab,DC=test still there")
    assert_healthy(results, PC(2))


def test_power_control_through_sccm_is_refused_without_the_right(tmp_path):
    """Stage 4's power control goes through the SMS Provider: a canary in a collection the console user may not
    manage is refused (access denied); with the out of band service point stopped (next test), the site accepts
    the Shutdown and nothing happens."""
    results = run_suite(tmp_path, [{"fault": "client_in_unmanaged_collection", "client": 1}], clients=3, canaries=2,
                        net=NET, args=("--allow-disruptive",))
    assert_fails(results, "S4-POWER-DOWN", PC(1), r"AMTOperateForMachines\(\[\d+\], 3\) \(Shutdown\) failed: .*"
                                                  r"WBEM_E_ACCESS_DENIED \(0x80041003\).*Manage management controllers")
    assert_fails(results, "S4-POWER-UP", PC(1), "power-up not tried: the client did not go off")
    assert_fails(results, "PRE-RIGHT-MANAGE-MANAGEMENT-CONTROLLERS", SITE, "lacks Manage management controllers "
                                                                           "for 1 of 3 clients")
    for check in ("S4-POWER-DOWN", "S4-POWER-UP"):  # the other canary, in the operators' collection
        assert results[(check, PC(2))][0] == "passed", (check, results[(check, PC(2))])


def test_a_stopped_out_of_band_service_point_leaves_the_shutdown_undone(tmp_path):
    results = run_suite(tmp_path, ["oob_service_point_stopped"], clients=2, canaries=1, net=NET,
                        args=("--allow-disruptive",))
    assert_fails(results, "S4-POWER-DOWN", PC(1), r"PowerState 2 \(on\) \d+ s after AMTOperateForMachines\(\[\d+\], 3\) "
                                                  r"\(Shutdown\): ReturnValue 0")
    assert_gated(results, PC(1), ("S4-POWER-DOWN", "S4-POWER-UP"), 4)
    assert_healthy(results, PC(2))


def test_stage_5_site_faults_fail_their_checks_and_gate_every_client(tmp_path):
    results = run_suite(tmp_path, ["stale_dc_record", "console_user_many_groups",
                                   {"fault": "realms_disabled", "realms": [3, 4, 6, 7, 12, 13]},
                                   "console_user_must_change_password"], clients=2, net=NET)
    assert_fails(results, "S5-DC-REPLICATION", SITE, "dc02.vprolab.test: .*(refused|no answer)")
    assert_fails(results, "S5-CONSOLE-USER-TOKEN-SIZE", CONSOLE,
                 # the console user's password has expired here: no ticket, so the TokenSz estimate is judged
                 r"amtadmin is in \d+ groups, TokenSz estimate \d+ bytes \(no ticket measured: .*\): .*Lab Group 400")
    for client in (PC(1), PC(2)):
        assert_fails(results, "S5-AMT-REALMS-ENABLED", client, "lack 2 redirection, 5 remote control")
        assert_fails(results, "S5-KERBEROS-TICKET-FOR-AMT", client,
                     "no Kerberos ticket for amtadmin@VPROLAB.TEST: .*[Pp]assword has expired")
        assert_gated(results, client, ("S5-DC-REPLICATION", "S5-CONSOLE-USER-TOKEN-SIZE"), 5)


def test_the_webui_switched_off_in_the_site_fails_stage_6(tmp_path):
    results = run_suite(tmp_path, ["webui_disabled"], clients=2, net=NET)
    assert_fails(results, "S6-WEBUI-ENABLED-IN-SCCM", SITE, "'Enable Web UI' = 0")
    for client in (PC(1), PC(2)):
        assert_fails(results, "S6-WEBUI-CONNECTS", client, r"HTTP 404 from https://pc000\d.vprolab.test:16993/ "
                                                           r"\(Server: Intel\(R\) Active Management Technology")
        assert_fails(results, "S6-WEBUI-LOGIN", client, "HTTP 404 from https://pc000")
        assert results[("S5-OOB-CONSOLE-CONNECTS", client)][0] == "passed"
