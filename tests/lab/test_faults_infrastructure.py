"""The fault matrix of the infrastructure checks: Active Directory, the enterprise CA, DNS and the network.

Every lab is the healthy estate plus planted faults (docs/lab.md). Site-wide faults each fail their own check and
close every later stage, so they share labs run up to the stage they break; client faults share one lab run through
all stages, which shows each failing client gated and the healthy ones untouched. The stage-3 CA checks are run
on their own (``-k``): their faults also break stage 1 checks, whose failures would otherwise gate them.
"""
from __future__ import annotations

import pytest
from suite_runner import CHECKS, assert_fails, assert_gated, assert_healthy, run_suite

NET = 104
CA, SP, DNS, SITE = "ca01.vprolab.test", "sccm01.vprolab.test", "dc01.vprolab.test", "vprolab.test"


def test_site_faults_fail_their_stage_1_checks(tmp_path):
    results = run_suite(tmp_path, [
        "template_no_enroll_right", "template_not_published", "amt_container_no_full_control",
        "zone_no_dynamic_updates", "issuing_ca_4096", "ca_no_issue_manage_right", "template_pend_all_requests",
        "ca_requests_pending", "provisioning_cert_not_installed", "service_point_firewall_blocks_9971",
        "site_server_dns_elsewhere", "ca_host_firewalled", {"fault": "legacy_amt", "client": 2},
    ], clients=2, net=NET, args=("--stage", "1"))
    assert_fails(results, "S1-CA-WEB-SERVER-TEMPLATE-READ-ENROLL", SITE, "sccm01.vprolab.test lacks Enroll")
    assert "no enterprise CA issues IntelAMTWebServer" in results[("S1-CA-WEB-SERVER-TEMPLATE-READ-ENROLL", SITE)][1]
    assert_fails(results, "S1-AD-AMT-CONTAINER-ACL", SITE, "sccm01.vprolab.test has no Full Control on OU=AMT")
    assert_fails(results, "S1-DNS-DYNAMIC-UPDATES", DNS, "vprolab.test: dynamic updates none")
    assert_fails(results, "PRE-CA-KEY-LENGTH-2048", CA, "VPROLAB Issuing CA: 4096 bits")
    assert_fails(results, "S1-CA-ISSUE-MANAGE-PERMISSION", CA, "sccm01.vprolab.test without Issue and Manage")
    assert_fails(results, "PRE-CA-AUTO-APPROVE", CA, "requires CA certificate manager approval")
    assert "RequestDisposition 0x100" in results[("PRE-CA-AUTO-APPROVE", CA)][1]
    assert_fails(results, "S1-PROV-CERT-CHAIN-INSTALLED", SP,
                 r"is not in sccm01.vprolab.test's Personal \(Local Computer\) store")
    assert_fails(results, "S1-PORT-9971-AMT-TO-SERVICE-POINT", SP,
                 r"127\.104\.0\.11:9971 filtered after \d+ ms.*, probed from this machine \(127\.")
    assert_fails(results, "PRE-DNS-REQUIRED-NO-WINS", SITE, r"DNS servers 127\.104\.0\.99: .*no DNS answer")
    assert_fails(results, "S1-CA-ENTERPRISE-ISSUING-CA-AVAILABLE", CA,
                 r"ca01.vprolab.test: 127\.104\.0\.13:135 filtered after \d+ ms.*, probed from this machine \(")
    assert_fails(results, "PRE-CLIENT-VPRO-SUPPORTED-AMT", "pc0002.vprolab.test",
                 r"AMT 3\.0\.0 \(from SMS_R_System.AMTFullVersion\), not natively supported, and no WS-MAN translator")
    assert_healthy(results, "pc0001.vprolab.test")


def test_a_root_missing_from_every_trusted_root_store_fails_the_service_points_chains(tmp_path):
    """The root reaches the service point only from AD (its Enterprise store); never downloaded, the chain stops at
    the issuing CA, and the finding names every physical store read."""
    results = run_suite(tmp_path, ["service_point_root_not_downloaded"], clients=1, net=NET, args=("--stage", "3"))
    assert_fails(results, "S1-PROV-CERT-CHAIN-INSTALLED", SP,
                 r"no issuer of VPROLAB Issuing CA in Intermediate Certification Authorities \(Local Computer, Group "
                 r"Policy, Enterprise\) or Trusted Root Certification Authorities \(Local Computer, Group Policy, "
                 r"Enterprise\)")
    assert_gated(results, "pc0001.vprolab.test", "S1-PROV-CERT-CHAIN-INSTALLED", 1)
    outcome, message = results[("S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT", SP)]
    assert outcome == "skipped" and "gated: S1-PROV-CERT-CHAIN-INSTALLED failed" in message


def test_an_unpublished_ca_fails_the_enterprise_ca_checks(tmp_path):
    results = run_suite(tmp_path, ["no_enrollment_service"], clients=1, net=NET, args=("--stage", "1"))
    assert_fails(results, "S1-CA-ENTERPRISE-ISSUING-CA-AVAILABLE", CA, "no pKIEnrollmentService with dNSHostName")
    assert_fails(results, "S1-CA-WEB-SERVER-TEMPLATE-READ-ENROLL", SITE, "no enterprise CA issues")
    assert_fails(results, "PRE-CA-KEY-LENGTH-2048", CA, "no enterprise CA on ca01.vprolab.test")
    assert results[("S1-CA-ISSUE-MANAGE-PERMISSION", CA)][0] == "passed"  # the CA's own registry is fine


@pytest.fixture(scope="module")
def client_faults(tmp_path_factory):
    """Client faults, one per client, through every stage; pc0001 and pc0009 are healthy, pc0011 is healthy but
    not provisioned yet (its stage 3 fails as it should)."""
    return run_suite(tmp_path_factory.mktemp("infra-client-faults"), [
        {"fault": "amt_ports_filtered", "client": 2}, {"fault": "unreachable", "client": 3},
        {"fault": "me_static_ip", "client": 4}, {"fault": "disjoint_namespace", "client": 5},
        {"fault": "wireless_no_a_record", "client": 6}, {"fault": "wifi_profile_wep", "client": 7},
        {"fault": "ieee8021x_amt_3", "client": 8},
        {"fault": "client_not_domain_joined", "client": 10}, {"fault": "noncontiguous_namespace", "client": 12},
        {"fault": "ipv6_only", "client": 13},
    ], clients=13, unprovisioned=3, net=NET)


@pytest.mark.parametrize("check, target, found", [
    ("S1-PORTS-SERVICE-POINT-TO-AMT", "pc0002.vprolab.test",
     r"127\.104\.1\.2:16992 filtered after \d+ ms.*, probed from this machine \(127\.\d+\.\d+\.\d+\)"),
    ("S1-PORTS-CONSOLE-TO-AMT", "pc0002.vprolab.test", r"16993 filtered .*16994 filtered .*16995 filtered"),
    ("S1-PORTS-SERVICE-POINT-TO-AMT", "pc0003.vprolab.test", r"127\.104\.1\.3:16992 refused"),
    ("S1-PORTS-CONSOLE-TO-AMT", "pc0003.vprolab.test", r"127\.104\.1\.3:16993 refused"),
    ("S1-CLIENT-ME-DHCP", "pc0004.vprolab.test", "DHCPEnabled false"),
    ("PRE-CLIENT-NO-DISJOINT-NAMESPACE", "pc0005.branch.vprolab.test",
     "DNS suffix branch.vprolab.test; its computer account CN=PC0005,CN=Computers,DC=vprolab,DC=test is in the "
     "AD domain vprolab.test"),
    ("PRE-DNS-WIRELESS-RECORDS", "pc0006.vprolab.test", r"the wireless address 127\.104\.201\.6 is not among them"),
    ("PRE-8021X-SUPPORTED-AUTH-OPTIONS", "pc0007.vprolab.test", "VPROLAB-WLAN uses Open System; VPROLAB-WLAN "
                                                                "encrypts with WEP"),
    ("PRE-8021X-AMT-4", "pc0008.vprolab.test", r"AMT 3\.2\.1 on an 802\.1X or wireless network"),
    ("S1-CLIENT-SAME-AD-FOREST", "pc0010.vprolab.test",
     r"no computer account with dNSHostName pc0010.vprolab.test in the forest vprolab.test \(global catalog\); "
     r"only the AMT object the site published for its management controller \(CN=PC0010,OU=AMT,DC=vprolab,"
     r"DC=test\)"),
    ("S1-CLIENT-SHARED-DNS-NAMESPACE", "pc0012.vprolab.example", "is in vprolab.example, apart from sccm01"),
    ("PRE-CLIENT-NO-DISJOINT-NAMESPACE", "pc0012.vprolab.example", "DNS suffix vprolab.example"),
    ("PRE-AMT-DISABLED-ON-UNSUPPORTED-COMPUTERS", "pc0010.vprolab.test",
     r"pc0010.vprolab.test is not supported \(no computer account with dNSHostName pc0010.vprolab.test in the "
     r"forest vprolab.test .*: a workgroup computer, one of another forest, or one whose computer account was "
     r"deleted\) and its AMT is provisioned: SMS_R_System.AMTStatus 3"),
    ("PRE-AMT-DISABLED-ON-UNSUPPORTED-COMPUTERS", "pc0012.vprolab.example",
     r"its DNS suffix vprolab.example is apart from the namespace of sccm01.vprolab.test \(vprolab.test\) "
     r"\(noncontiguous namespace\).* and its AMT is sending hello packets"),
    ("PRE-AMT-DISABLED-ON-UNSUPPORTED-COMPUTERS", "pc0005.branch.vprolab.test",
     r"its DNS suffix branch.vprolab.test is not its AD domain vprolab.test \(disjointed namespace\)\) and its "
     r"AMT is provisioned"),
    ("PRE-IPV4-ONLY", "pc0013.vprolab.test", r"has no A record \(AAAA fd00:104::d only\)"),
])
def test_a_client_fault_fails_its_check_and_gates_only_that_client(client_faults, check, target, found):
    assert_fails(client_faults, check, target, found)
    failed = tuple(k[0] for k, v in client_faults.items() if k[1] == target and v[0] == "failed")
    assert all(CHECKS[c].test_stage == 1 for c in failed), failed  # the first failing stage names the gate
    assert_gated(client_faults, target, failed, 1)
    for healthy in ("pc0001.vprolab.test", "pc0009.vprolab.test"):
        assert_healthy(client_faults, healthy)
    stage_1 = {k: v for k, v in client_faults.items() if k[1] == "pc0011.vprolab.test" and CHECKS[k[0]].test_stage == 1}
    assert stage_1 and all(v[0] in ("passed", "skipped") for v in stage_1.values()), stage_1  # not provisioned yet


def test_wireless_and_8021x_clients_pass_what_their_fault_leaves_alone(client_faults):
    assert client_faults[("PRE-DNS-WIRELESS-RECORDS", "pc0007.vprolab.test")][0] == "passed"  # WEP, but in DNS
    assert client_faults[("PRE-8021X-AMT-4", "pc0007.vprolab.test")][0] == "passed"
    assert client_faults[("PRE-8021X-SUPPORTED-AUTH-OPTIONS", "pc0006.vprolab.test")][0] == "passed"  # WPA2 PEAP
    assert client_faults[("PRE-8021X-SUPPORTED-AUTH-OPTIONS", "pc0008.vprolab.test")][0] == "passed"  # wired PEAP
    assert client_faults[("S1-CLIENT-SHARED-DNS-NAMESPACE", "pc0005.branch.vprolab.test")][0] == "passed"
    for skipped in ("PRE-DNS-WIRELESS-RECORDS", "PRE-8021X-AMT-4"):
        assert client_faults[(skipped, "pc0001.vprolab.test")][0] == "skipped"


def test_stage_3_ca_faults_fail_the_issuing_ca_checks(tmp_path):
    results = run_suite(tmp_path, ["issuing_ca_renewed", "template_no_server_auth", "expired_crl"], clients=1,
                        net=NET, args=("--stage", "3"))
    assert_fails(results, "S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT", SP, "the issuing CA VPROLAB Issuing CA .* is not "
                                                                     "in sccm01.vprolab.test's Intermediate")
    assert_fails(results, "S3-CA-WEB-SERVER-TEMPLATE-SETTINGS", SITE, r"application policies \['1.3.6.1.5.5.7.3.2'\] "
                                                                       "lack Server Authentication")
    assert_fails(results, "S3-CA-CRL-AIA-AVAILABLE", CA, r"expired: http://ca01.vprolab.test/pki/\w+.crl")
    assert results[("PRE-CA-KEY-LENGTH-2048", CA)][0] == "passed"  # the renewed CA chains to the root through AIA


def test_an_expired_issuing_ca_copy_on_the_service_point_fails_its_dates(tmp_path):
    results = run_suite(tmp_path, ["service_point_expired_issuing_ca", "template_no_subject_in_request"], clients=1,
                        net=NET, args=("--stage", "3"))
    assert_fails(results, "S3-ISSUING-CA-CHAIN-DATES-VALID", SP, "VPROLAB Issuing CA: expired on")
    assert results[("S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT", SP)][0] == "passed"
    assert results[("S1-PROV-CERT-CHAIN-INSTALLED", SP)][0] == "passed"
    assert results[("S3-CA-CRL-AIA-AVAILABLE", CA)][0] == "passed"
    assert_fails(results, "S3-CA-WEB-SERVER-TEMPLATE-SETTINGS", SITE, "subject name built from Active Directory")
