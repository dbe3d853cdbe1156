"""The fault matrix of stages 2 and 3 per client: provisioning requests (hellos, ZTC requests, the ME, in-band
agents) and their outcome (AMTOPMGR.LOG, AD objects, the site's records, certificates).

Three labs (net 105, then two on net 106):

* **clients**: one fault per client, stages 2 and 3, the whole suite (so a failing client's later stages show as
  gated); two clients are left un-provisioned and healthy, to show the request rows pass for a client awaiting
  provisioning; the checks judge the hellos from SMS_R_System.AMTStatus, the ME and AMTOPMGR.LOG (no listener);
  pc0001 was provisioned before the log rolled over (its lines only in AMTOPMGR.lo_) and passes.
* **listener**: ``--hello-listen`` on the console's address, where ProvisionServer is pointed: a client sending
  hellos passes S2-CLIENT-SENDING-HELLO from what the listener heard, a silent one fails it (both have an old hello
  in AMTOPMGR.LOG, from a failed provisioning, so the log alone would pass them).
* **site**: the site-wide faults of stages 2 and 3 (a rejected provisioning certificate, one for another domain,
  no provisioning account, no automatic provisioning collection).
"""
from __future__ import annotations

import pytest
from suite_runner import assert_fails, assert_gated, assert_healthy, run_suite

SITE, SERVER = "vprolab.test", "sccm01.vprolab.test"
S2_REQUESTS = ("S2-AMTOPMGR-HELLO-RECEIVED", "S2-ME-UNPROVISIONED", "S2-ME-ENTERPRISE-PKI-OR-PSK",
               "S2-CLIENT-SENDING-HELLO", "S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING")
S2_IN_BAND = ("S2-AMTOPMGR-ZTC-REQUEST-RECEIVED", "S2-ME-UNPROVISIONED", "S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING",
              "S2-INBAND-AUTO-PROVISIONING-COLLECTION", "S2-INBAND-MEI-DRIVER", "S2-INBAND-AGENT-ASSIGNED-OOB-SITE",
              "S2-INBAND-POLICY-DOWNLOADED")


def pc(n: int) -> str:
    return f"pc{n:04d}.vprolab.test"


@pytest.fixture(scope="module")
def clients_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("provisioning-clients")


# 17 clients: every 4th in band (4, 8, 12, 16); 16 and 17 not provisioned yet (and healthy).
@pytest.fixture(scope="module")
def clients(clients_dir):
    return run_suite(clients_dir, [
        {"fault": "me_provisioned_elsewhere", "client": 2}, {"fault": "small_business_mode", "client": 3},
        {"fault": "mei_driver_stopped", "client": 4}, {"fault": "hellos_exhausted", "client": 5},
        {"fault": "hostname_mismatch", "client": 6}, {"fault": "amt_object_disabled", "client": 7},
        {"fault": "unassigned_agent", "client": 8}, {"fault": "missing_spn", "client": 9},
        {"fault": "amt_321", "client": 10}, {"fault": "third_level_domain", "client": 11},
        {"fault": "policy_not_downloaded", "client": 12}, {"fault": "provisioning_failed", "client": 13},
        {"fault": "import_wrong_guid", "client": 14}, {"fault": "agent_on_oob_client", "client": 15},
    ], clients=17, net=105, in_band_every=4, unprovisioned=2)


@pytest.mark.parametrize("check, n, found, gates_after", [
    ("S2-ME-UNPROVISIONED", 2, r"post-provisioning \(ProvisioningState 2\) but the site never provisioned it", 2),
    ("S2-AMTOPMGR-HELLO-RECEIVED", 2, r"no hello packet from pc0002\.vprolab\.test \(UUID", 2),
    ("S2-CLIENT-SENDING-HELLO", 2, r"no hello from pc0002.* in AMTOPMGR\.LOG or its history \(the run has no hello "
                                   r"listener\); SMS_R_System\.AMTStatus 1 \(detected\)", 2),
    ("S2-ME-ENTERPRISE-PKI-OR-PSK", 3, r"small business mode \(ProvisioningMode 2, AMT 6\.2\.10\)", 2),
    ("S2-INBAND-MEI-DRIVER", 4, "HECI Stopped", 2),
    ("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", 5, "retry count 14: the hello sequence is exhausted", 2),
    ("S2-CLIENT-SENDING-HELLO", 5, "had retry count 14, the last of the sequence; none since", 2),
    ("S3-ME-HOSTNAME-MATCHES-OS", 6, r"ME pc0006-me\.vprolab\.test, OS pc0006\.vprolab\.test", 3),
    ("S3-AD-MC-OBJECT-NOT-FLAGGED", 7, r"disabled \(userAccountControl 0x1002 has ACCOUNTDISABLE\)", 3),
    ("S2-INBAND-AGENT-ASSIGNED-OOB-SITE", 8, "the agent is assigned to no site", 2),
    ("S2-INBAND-POLICY-DOWNLOADED", 8, "No AMT auto provisioning policy received", 2),
    ("S3-AD-MC-SPNS-WRITTEN", 9, r"CN=PC0009,OU=AMT,DC=vprolab,DC=test: no HTTP/pc0009\.vprolab\.test:16993\n", 3),
    ("S3-AMT-321-SELF-SIGNED-CERT", 10, r"AMT 3\.2\.1 .* presents a self-signed certificate", 3),
    ("S3-CLIENT-AMT-WEB-SERVER-CERT", 10, "does not chain to a trusted root", 3),
    ("S3-THIRD-LEVEL-DOMAIN-TRUSTED", 11, r"trusts branch\.vprolab\.test \(AMT_GeneralSettings\.DomainName\); the "
                                          r"provisioning certificate in sccm01\.vprolab\.test's Personal store "
                                          r"\(selected by the site .*\) is for vprolab\.test", 3),
    ("S3-ME-HOSTNAME-MATCHES-OS", 11, r"ME pc0011\.branch\.vprolab\.test, OS pc0011\.vprolab\.test", 3),
    ("S2-INBAND-POLICY-DOWNLOADED", 12, "No AMT auto provisioning policy received from site LAB", 2),
    ("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", 12, r"automatic provisioning reached collection vPro clients "
                                                       r"\(LAB00010\) .*, 4\d h ago .*; its agent logged 'No AMT auto "
                                                       r"provisioning policy received.*after the setting took effect", 2),
    ("S2-AMTOPMGR-ZTC-REQUEST-RECEIVED", 12, r"no ZTC provisioning request from pc0012", 2),
    ("S3-AMTOPMGR-PROVISIONING-COMPLETED", 13, r"provisioning failed \(.*\): TLS handshake with the AMT device", 3),
    ("S3-AD-MC-OBJECT-CREATED", 13, r"no object for pc0013\.vprolab\.test in OU=AMT,DC=vprolab,DC=test", 3),
    ("S3-AD-MC-SPNS-WRITTEN", 13, r"no object: no HTTP/pc0013\.vprolab\.test:16992", 3),
    ("S3-OOB-CLIENT-IMPORTED", 14, "SMBIOS GUID [0-9a-f-]+", 3),
    ("S3-OOB-CLIENT-NO-SCCM-AGENT", 15, r"SMS_R_System\.Client = 1: agent 4\.00\.6221\.1000 detected", 3),
])
def test_a_client_fault_fails_its_check_and_gates_that_client(clients, check, n, found, gates_after):
    assert_fails(clients, check, pc(n), found)
    failed = tuple(c for (c, t), (outcome, _m) in clients.items() if t == pc(n) and outcome == "failed")
    assert_gated(clients, pc(n), failed, gates_after)


def test_the_other_clients_are_untouched(clients):
    assert_healthy(clients, pc(1))
    for n in (1, 6, 7, 9, 10, 11, 13, 14, 15):  # stage 2 faults only where planted
        assert not [c for (c, t), (o, _m) in clients.items() if t == pc(n) and o == "failed"
                    and c.startswith("S2-")], n


def test_clients_awaiting_provisioning_pass_the_request_rows(clients):
    for check in S2_REQUESTS:  # pc0017: out of band, its hellos logged by the site server as they arrive
        assert clients[(check, pc(17))][0] == "passed", (check, clients[(check, pc(17))])
    for check in S2_IN_BAND:   # pc0016: in band, its agent's ZTC request in AMTOPMGR.LOG
        assert clients[(check, pc(16))][0] == "passed", (check, clients[(check, pc(16))])
    # not provisioned: stage 3 says so (and the rows about a provisioned client's certificate do not apply)
    assert_fails(clients, "S3-AMTOPMGR-PROVISIONING-COMPLETED", pc(17), "no provisioning started for pc0017")
    assert clients[("S3-CLIENT-AMT-WEB-SERVER-CERT", pc(17))][0] == "skipped"


def test_provisioned_clients_are_reported_as_provisioned(clients):
    for check in ("S2-ME-UNPROVISIONED", "S2-CLIENT-SENDING-HELLO", "S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING"):
        outcome, message = clients[(check, pc(1))]
        assert outcome == "skipped" and "provisioned" in message, (check, message)
    for check in ("S2-AMTOPMGR-HELLO-RECEIVED", "S2-ME-ENTERPRISE-PKI-OR-PSK", "S3-AMTOPMGR-PROVISIONING-COMPLETED"):
        assert clients[(check, pc(1))][0] == "passed", check
    assert clients[("S3-THIRD-LEVEL-DOMAIN-TRUSTED", pc(1))][0] == "skipped"  # vprolab.test: second level


def test_a_client_provisioned_before_the_log_rolled_over_passes_stages_2_and_3(clients, clients_dir):
    """pc0001 was provisioned before AMTOPMGR.LOG last rolled over: its lines are only in AMTOPMGR.lo_. The checks
    read the history too, and judge from SMS_R_System.AMTStatus 3 and the ME first, so it passes as before."""
    (history,) = clients_dir.glob("state/**/Logs/AMTOPMGR.lo_")
    current = history.with_suffix(".LOG")
    assert "pc0001.vprolab.test" in history.read_text() and "pc0001" not in current.read_text()
    assert "pc0006.vprolab.test" in current.read_text()  # the others' lines: in the current file
    for check in ("S2-AMTOPMGR-HELLO-RECEIVED", "S2-ME-ENTERPRISE-PKI-OR-PSK", "S3-AMTOPMGR-PROVISIONING-COMPLETED"):
        assert clients[(check, pc(1))][0] == "passed", (check, clients[(check, pc(1))])
    for check in ("S2-ME-UNPROVISIONED", "S2-CLIENT-SENDING-HELLO"):
        outcome, message = clients[(check, pc(1))]
        assert outcome == "skipped" and "SMS_R_System.AMTStatus 3 (provisioned)" in message, message
    assert_healthy(clients, pc(1))


def test_hellos_heard_by_the_listener(tmp_path):
    """ProvisionServer points at the console's address, where the run listens: pc0002 sends hellos (heard),
    pc0003 is silent now; both have a hello in AMTOPMGR.LOG from an hour ago (their failed provisioning)."""
    results = run_suite(tmp_path, [
        {"fault": "provision_server_wrong_address", "address": "127.106.0.14"},
        {"fault": "provisioning_failed", "client": 2}, {"fault": "provisioning_failed", "client": 3},
        {"fault": "no_hellos", "client": 3},
    ], clients=3, net=106, unprovisioned=2,
        args=("--stage", "2", "--hello-listen", "127.106.0.14:9971", "--hello-wait", "20"))
    assert results[("S2-CLIENT-SENDING-HELLO", pc(2))][0] == "passed"
    assert_fails(results, "S2-CLIENT-SENDING-HELLO", pc(3),
                 r"no hello from pc0003\.vprolab\.test .* on 127\.106\.0\.14:9971 within 20 s of listening")
    for n in (2, 3):  # the log alone would have passed them: their old hello is there
        assert results[("S2-AMTOPMGR-HELLO-RECEIVED", pc(n))][0] == "passed"
    assert results[("S2-ME-ENTERPRISE-PKI-OR-PSK", pc(2))][0] == "passed"   # its hellos: PKI
    assert results[("S2-CLIENT-SENDING-HELLO", pc(1))][0] == "skipped"      # provisioned


def test_an_in_band_agent_past_its_policy_window(tmp_path):
    """Automatic provisioning enabled on pc0002's new collection 30 hours ago, on pc0003's 5 hours ago; neither
    agent has requested machine policy since: pc0002 is past the guide's 25 hours, pc0003 still within them."""
    results = run_suite(tmp_path, [{"fault": "inband_policy_never_requested", "client": 2},
                                   {"fault": "inband_policy_never_requested", "client": 3, "hours": 5}],
                        clients=3, net=106, in_band_every=1, args=("--stage", "2"))
    assert_fails(results, "S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", pc(2),
                 r"automatic provisioning reached collection vPro in-band pilot \(LAB00030\) .*, 30 h ago .* and no "
                 r"ZTC request; it last requested machine policy .* "
                 r"\(CCM_Scheduler_History\.LastTriggerTime\): it has not requested machine policy since the "
                 r"setting was enabled")
    assert results[("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", pc(3))][0] == "passed"  # 5 h: within 25
    for n in (2, 3):
        assert_fails(results, "S2-INBAND-POLICY-DOWNLOADED", pc(n), "No AMT auto provisioning policy received")
        assert results[("S2-INBAND-AUTO-PROVISIONING-COLLECTION", pc(n))][0] == "passed"  # its pilot collection
    assert results[("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", pc(1))][0] == "skipped"  # provisioned


def test_site_wide_provisioning_faults(tmp_path):
    results = run_suite(tmp_path, ["prov_cert_other_domain", "no_auto_provision_collection",
                                   "no_provisioning_account"], clients=4, net=106, in_band_every=4)
    assert_fails(results, "S3-PROV-CERT-ACCEPTED-BY-SCCM", SERVER,
                 r"certificate CN=sccm01\.vprolab\.example rejected: the subject CN domain vprolab\.example differs")
    for n in (1, 2, 3):
        assert_fails(results, "S3-PROV-CERT-DOMAIN-TRUSTED-BY-AMT", pc(n),
                     r"CN=sccm01\.vprolab\.example \(domain vprolab\.example\); the ME's domain is vprolab\.test")
    assert_fails(results, "S2-INBAND-AUTO-PROVISIONING-COLLECTION", pc(4),
                 "member of vPro clients; automatic provisioning enabled on no collection")
    assert_gated(results, pc(4), "S2-INBAND-AUTO-PROVISIONING-COLLECTION", 2)
    assert_fails(results, "S3-ME-ADMIN-CREDENTIALS-KNOWN", SITE, "no AMT Provisioning and Discovery account")
    assert_gated(results, pc(1), ("S3-ME-ADMIN-CREDENTIALS-KNOWN", "S3-PROV-CERT-ACCEPTED-BY-SCCM",
                                  "S3-PROV-CERT-DOMAIN-TRUSTED-BY-AMT"), 3)


def test_a_rejection_in_the_log_alone_fails_the_acceptance(tmp_path):
    results = run_suite(tmp_path, [{"fault": "prov_cert_rejected"}], clients=1, net=106, args=("--stage", "3"))
    assert_fails(results, "S3-PROV-CERT-ACCEPTED-BY-SCCM", SERVER,
                 r"certificate CN=sccm01\.vprolab\.test rejected: the certificate has neither the Intel\(R\) AMT")
    assert results[("S3-PROV-CERT-DOMAIN-TRUSTED-BY-AMT", pc(1))][0] == "passed"


def test_a_revoked_web_server_certificate_fails_its_check(tmp_path_factory):
    """The CA revoked pc0002's AMT web server certificate: the check reads the CRL its CDP names and says so;
    pc0001's, chained through the issuing CA its AIA names, passes."""
    results = run_suite(tmp_path_factory.mktemp("revoked"), [{"fault": "web_server_cert_revoked", "client": 2}],
                        clients=2, net=122)
    assert_fails(results, "S3-CLIENT-AMT-WEB-SERVER-CERT", pc(2), r"revoked by VPROLAB Issuing CA \(serial [0-9a-f]+, "
                                                                  r"reason keyCompromise, http://")
    assert results[("S3-CLIENT-AMT-WEB-SERVER-CERT", pc(1))][0] == "passed"
