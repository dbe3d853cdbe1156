"""The fault matrix for the checks in suites/: every automated check fails on a lab fault made for it.

Each lab is the healthy estate plus planted faults (docs/lab.md); the suite runs against it as a user runs it,
and the JUnit results (with each test's check id and target) show, per fault: the check fails for that target
with a message naming what was found, what was expected and the corrective action; the target's later stages
are skipped as gated; every other target is unaffected.
"""
from __future__ import annotations

import pytest
from suite_runner import assert_fails, assert_gated, assert_healthy, run_suite

NET = 101


@pytest.fixture(scope="module")
def client_faults(tmp_path_factory):
    return run_suite(tmp_path_factory.mktemp("client-faults"), [
        {"fault": "fqdn_underscore", "client": 2},
        {"fault": "missing_ptr", "client": 3},
        {"fault": "root_hash_missing", "client": 4},
        {"fault": "power_policy_s0_only", "client": 5},
        {"fault": "sol_ider_disabled", "client": 6},
        {"fault": "clock_skew", "client": 7, "seconds": 900},
    ], net=NET)


@pytest.mark.parametrize("check, target, found, gates_after", [
    ("S3-CLIENT-FQDN-VALID-CHARACTERS", "pc_0002.vprolab.test", "contains '_'", 3),
    ("S3-CLIENT-NAME-RESOLUTION-FWD-REV", "pc0003.vprolab.test", r"PTR 127\.101\.1\.3 -> nothing", 3),
    ("S3-PROV-CERT-ROOT-HASH-IN-AMT", "pc0004.vprolab.test", "none enabled for", 3),
    ("S4-ME-POWER-PACKAGE-S0-S5", "pc0005.vprolab.test", r"ME on in S0\)", 4),
    ("S5-SOL-IDER-ENABLED-IN-AMT", "pc0006.vprolab.test", "SOL and IDER disabled", 5),
    ("S5-TIME-SYNCHRONIZED", "pc0007.vprolab.test", r"pc0007\.vprolab\.test \(Intel AMT\) clock \+(899|900|901) s", 5),
])
def test_a_client_fault_fails_its_check_and_gates_only_that_client(client_faults, check, target, found,
                                                                    gates_after):
    assert_fails(client_faults, check, target, found)
    if gates_after < 5:
        assert_gated(client_faults, target, check, gates_after)
    for healthy in ("pc0001.vprolab.test", "pc0008.vprolab.test"):
        assert_healthy(client_faults, healthy)
    others = {k: v for k, v in client_faults.items() if v[0] == "failed" and k != (check, target)}
    assert all(k[1] != target for k in others), others  # one fault, one failing check for that client


def test_dhcp_faults_fail_stage_1_and_gate_every_client(tmp_path):
    results = run_suite(tmp_path, [{"fault": "dhcp_no_option6"}, {"fault": "dhcp_no_option15"},
                                   {"fault": "dhcp_option81_no_updates"}], clients=3, net=NET)
    scope = r" for the scope of 127\.101\.\d+\.\d+ \(probe_from\)"  # the lab's probe_from: the console's address
    assert_fails(results, "PRE-DHCP-OPTION-6", "dhcp01.vprolab.test", "no option 6 .*" + scope)
    assert_fails(results, "S1-DHCP-OPTION-15", "dhcp01.vprolab.test", "no option 15 .*" + scope)
    assert_fails(results, "S1-DHCP-OPTION-81", "dhcp01.vprolab.test", "N=1")
    for client in ("pc0001.vprolab.test", "pc0002.vprolab.test", "pc0003.vprolab.test"):
        assert_gated(results, client, ("PRE-DHCP-OPTION-6", "S1-DHCP-OPTION-15", "S1-DHCP-OPTION-81"), 1)


def test_provisioning_certificate_and_provision_server_faults(tmp_path):
    results = run_suite(tmp_path, [{"fault": "prov_cert_no_server_auth"}, {"fault": "prov_cert_no_amt_marker"},
                                   {"fault": "provisioning_key_4096"}, {"fault": "provision_server_wrong_address"}],
                        clients=2, net=NET)
    server = "sccm01.vprolab.test"
    assert_fails(results, "S3-PROV-CERT-SERVER-AUTH", server, r"EKUs \[")
    assert_fails(results, "S3-PROV-CERT-AMT-OID-OR-OU", server, r"OUs \[\]")
    assert_fails(results, "S3-PROV-CERT-KEY-LENGTH-2048", server, "4096 bits")
    assert results[("S3-PROV-CERT-CHAIN-DATES-VALID", server)][0] == "passed"  # only what was broken fails
    for client in ("pc0001.vprolab.test", "pc0002.vprolab.test"):
        assert_fails(results, "S2-PROVISIONSERVER-RESOLVES-TO-SERVICE-POINT", client, "ProvisionServer.vprolab.test")
        assert_gated(results, client, "S2-PROVISIONSERVER-RESOLVES-TO-SERVICE-POINT", 2)


def test_an_issuing_ca_key_over_2048_bits_fails_stage_1_and_gates_everything(tmp_path):
    results = run_suite(tmp_path, [{"fault": "issuing_ca_4096"}], clients=1, net=NET)
    assert_fails(results, "PRE-CA-KEY-LENGTH-2048", "ca01.vprolab.test", "4096 bits")
    assert_gated(results, "pc0001.vprolab.test", "PRE-CA-KEY-LENGTH-2048", 1)


def test_an_expired_provisioning_certificate_fails_the_chain_dates(tmp_path):
    results = run_suite(tmp_path, [{"fault": "expired_provisioning_cert"}], clients=1, net=NET)
    assert_fails(results, "S3-PROV-CERT-CHAIN-DATES-VALID", "sccm01.vprolab.test", "expired")


def test_names_are_judged_as_dns_and_amt_hold_them(tmp_path):
    """The inventory says pc0002 and pc0003; DNS holds pc_0002 (the PC's Windows name, registered with its PTR),
    and pc0003's ME calls itself pc_0003 (typed in MEBx): the name check fails both, naming where the name is."""
    results = run_suite(tmp_path, [{"fault": "dns_name_underscore", "client": 2},
                                   {"fault": "me_hostname_underscore", "client": 3}],
                        clients=4, net=NET, args=("--stage", "3"))
    assert_fails(results, "S3-CLIENT-FQDN-VALID-CHARACTERS", "pc0002.vprolab.test",
                 r"pc_0002\.vprolab\.test \(DNS PTR 127\.101\.1\.2\) contains '_'")
    assert_fails(results, "S3-CLIENT-NAME-RESOLUTION-FWD-REV", "pc0002.vprolab.test",
                 r"PTR 127\.101\.1\.2 -> pc_0002\.vprolab\.test")
    assert_fails(results, "S3-CLIENT-FQDN-VALID-CHARACTERS", "pc0003.vprolab.test",
                 r"pc_0003\.vprolab\.test \(AMT_GeneralSettings HostName\.DomainName\) contains '_'")
    assert_fails(results, "S3-ME-HOSTNAME-MATCHES-OS", "pc0003.vprolab.test",
                 r"ME pc_0003\.vprolab\.test, OS pc0003\.vprolab\.test \(the computer account PC0003\$ \(dNSHostName\)\)")
    for healthy in ("pc0001.vprolab.test", "pc0004.vprolab.test"):
        assert_healthy(results, healthy)
        assert results[("S3-CLIENT-FQDN-VALID-CHARACTERS", healthy)][0] == "passed"
        assert results[("S3-ME-HOSTNAME-MATCHES-OS", healthy)][0] == "passed"
