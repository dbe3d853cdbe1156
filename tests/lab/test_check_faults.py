"""The fault matrix for the checks in suites/: every automated check fails on a lab fault made for it.

Each lab is the healthy estate plus planted faults (docs/lab.md); the suite runs against it as a user runs it,
and the JUnit results (with each test's check id and target) show, per fault: the check fails for that target
with a message naming what was found, what was expected and the corrective action; the target's later stages
are skipped as gated; every other target is unaffected.
"""
from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_vpro import catalog
from pytest_vpro.lab import manager

ROOT = Path(__file__).resolve().parents[2]
NET = 101
CHECKS = catalog.load()


def run_suite(tmp_path: Path, faults: list[dict], clients: int = 8) -> dict[tuple[str, str], tuple[str, str]]:
    """Start a lab with ``faults``, run the suite against it, stop it; {(check, target): (outcome, message)}."""
    description = tmp_path / "lab.yaml"
    description.write_text(f"lab: {{clients: {clients}, net: {NET}, in_band_every: 0, canaries: 0, "
                           f"state_dir: state, faults: {faults!r}}}\n".replace("'", '"'))
    reports = tmp_path / "reports"
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", f"--env={description}", "--no-html",
                              f"--reports-dir={reports}", "-p", "no:cacheprovider", "-q"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        manager.down(tmp_path / "state")
    assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-3000:]
    results = {}
    for case in ET.parse(reports / "latest" / "junit.xml").iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = child.get("message", "") + "\n" + (child.text or "")
        results[(props["vpro_check"], props["vpro_target"].split(":", 1)[1])] = (outcome, message)
    return results


def assert_fails(results, check: str, target: str, found: str) -> None:
    outcome, message = results[(check, target)]
    assert outcome == "failed", (check, target, outcome, message)
    assert f"{check} failed for {target}" in message and re.search(r"found: +.*" + found, message), message
    assert "expected: " in message and f"corrective action: {CHECKS[check].corrective_action}" in message


def assert_gated(results, target: str, by: str | tuple[str, ...], after_stage: int) -> None:
    by = (by,) if isinstance(by, str) else by
    later = {k: v for k, v in results.items() if k[1] == target and CHECKS[k[0]].test_stage > after_stage
             and CHECKS[k[0]].automated}
    assert later, f"no later checks for {target}"
    for (check, _), (outcome, message) in later.items():
        assert outcome == "skipped" and any(f"gated: {b} failed for" in message for b in by), (check, message)


def assert_healthy(results, target: str) -> None:
    bad = {k: v for k, v in results.items() if k[1] == target and v[0] in ("failed", "error")}
    assert not bad, bad


@pytest.fixture(scope="module")
def client_faults(tmp_path_factory):
    return run_suite(tmp_path_factory.mktemp("client-faults"), [
        {"fault": "fqdn_underscore", "client": 2},
        {"fault": "missing_ptr", "client": 3},
        {"fault": "root_hash_missing", "client": 4},
        {"fault": "power_policy_s0_only", "client": 5},
        {"fault": "sol_ider_disabled", "client": 6},
        {"fault": "clock_skew", "client": 7, "seconds": 900},
    ])


@pytest.mark.parametrize("check, target, found, gates_after", [
    ("S3-CLIENT-FQDN-VALID-CHARACTERS", "pc_0002.vprolab.test", "contains '_'", 3),
    ("S3-CLIENT-NAME-RESOLUTION-FWD-REV", "pc0003.vprolab.test", r"PTR 127\.101\.1\.3 -> nothing", 3),
    ("S3-PROV-CERT-ROOT-HASH-IN-AMT", "pc0004.vprolab.test", "none enabled for", 3),
    ("S4-ME-POWER-PACKAGE-S0-S5", "pc0005.vprolab.test", r"ME on in S0\)", 4),
    ("S5-SOL-IDER-ENABLED-IN-AMT", "pc0006.vprolab.test", "SOL and IDER disabled", 5),
    ("S5-TIME-SYNCHRONIZED", "pc0007.vprolab.test", r"AMT clock \+(899|900) s", 5),  # Ta0: whole seconds
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
                                   {"fault": "dhcp_option81_no_updates"}], clients=3)
    assert_fails(results, "PRE-DHCP-OPTION-6", "dhcp01.vprolab.test", "no option 6")
    assert_fails(results, "S1-DHCP-OPTION-15", "dhcp01.vprolab.test", "no option 15")
    assert_fails(results, "S1-DHCP-OPTION-81", "dhcp01.vprolab.test", "N=1")
    for client in ("pc0001.vprolab.test", "pc0002.vprolab.test", "pc0003.vprolab.test"):
        assert_gated(results, client, ("PRE-DHCP-OPTION-6", "S1-DHCP-OPTION-15", "S1-DHCP-OPTION-81"), 1)


def test_provisioning_certificate_and_provision_server_faults(tmp_path):
    results = run_suite(tmp_path, [{"fault": "prov_cert_no_server_auth"}, {"fault": "prov_cert_no_amt_marker"},
                                   {"fault": "issuing_ca_4096"}, {"fault": "provision_server_wrong_address"}],
                        clients=2)
    server = "sccm01.vprolab.test"
    assert_fails(results, "S3-PROV-CERT-SERVER-AUTH", server, r"EKUs \[")
    assert_fails(results, "S3-PROV-CERT-AMT-OID-OR-OU", server, r"OUs \[\]")
    assert_fails(results, "S3-PROV-CERT-KEY-LENGTH-2048", server, "4096 bits")
    assert results[("S3-PROV-CERT-CHAIN-DATES-VALID", server)][0] == "passed"  # only what was broken fails
    for client in ("pc0001.vprolab.test", "pc0002.vprolab.test"):
        assert_fails(results, "S2-PROVISIONSERVER-RESOLVES-TO-SERVICE-POINT", client, "ProvisionServer.vprolab.test")
        assert_gated(results, client, "S2-PROVISIONSERVER-RESOLVES-TO-SERVICE-POINT", 2)


def test_an_expired_issuing_ca_fails_the_chain_dates(tmp_path):
    results = run_suite(tmp_path, [{"fault": "expired_issuing_ca"}], clients=1)
    assert_fails(results, "S3-PROV-CERT-CHAIN-DATES-VALID", "sccm01.vprolab.test", "expired")
