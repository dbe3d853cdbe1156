"""Issue 16, item 9: the lab can be 2009, and the suite passes its healthy estate and still catches its faults.

``era: "2009"`` builds the estate of the guide's time (docs/lab.md "A lab of 2009"): a SHA-1 PKI whose CDP and AIA
list ldap:/// (published in Samba's directory) before http://, AMT 3.2.1, 4.x and 5.x firmware serving only TLS 1.0
with the RSA AES-CBC-SHA suites, binary SIDs in every ACL entry. The suite runs against it as a user runs it
(``pytest --env <lab description>``); the evidence of its verdicts (the run's verdict store) shows what it met.
"""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
import yaml
from suite_runner import assert_fails, assert_gated, assert_healthy, run_pytest_on

from pytest_vpro.lab import manager

NET = 117
CA, SP = "ca01.vprolab.test", "sccm01.vprolab.test"
TOUCHED = ("S1-PORTS-SERVICE-POINT-TO-AMT", "S3-CLIENT-AMT-WEB-SERVER-CERT", "S5-OOB-CONSOLE-CONNECTS",
           "S5-OOB-CONSOLE-SYSTEM-STATUS", "S6-WEBUI-CONNECTS", "S6-WEBUI-LOGIN", "S5-AMT-REALMS-ENABLED",
           "S5-CONSOLE-USER-IN-AMT-ACL", "S5-SOL-IDER-SESSION")
SITE_TOUCHED = (("S3-CA-CRL-AIA-AVAILABLE", CA), ("PRE-CA-KEY-LENGTH-2048", CA), ("S1-PROV-CERT-CHAIN-INSTALLED", SP),
                ("S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT", SP), ("S3-ISSUING-CA-CHAIN-DATES-VALID", SP),
                ("S3-PROV-CERT-CHAIN-DATES-VALID", SP))


def PC(n: int) -> str:
    return f"pc{n:04d}.vprolab.test"


def _run(tmp_path: Path, faults: list, clients: int, *args: str, **lab) -> tuple[dict, Path]:
    """The suite against a 2009 lab; (verdicts, the run's folder)."""
    description = tmp_path / "lab.yaml"
    description.write_text(json.dumps({"lab": {"era": "2009", "clients": clients, "net": NET, "dhcp_port": 0,
                                               "state_dir": "state", "faults": faults, **lab}}))
    try:
        results = run_pytest_on(description, tmp_path / "reports", *args)
    finally:
        manager.down(tmp_path / "state")
    return results, (tmp_path / "reports" / "latest").resolve()


def _evidence(run: Path, test: str, target: str) -> str:
    with sqlite3.connect(run / "verdicts.sqlite") as db:
        rows = db.execute("SELECT evidence FROM verdicts WHERE nodeid LIKE ?", (f"%::{test}[{target}]",)).fetchall()
    assert rows, (test, target)
    return rows[0][0]


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """Six clients (pc0001 and pc0004 AMT 3.2.1, pc0002/5 4.1.3, pc0003/6 5.0.20; pc0003 and pc0006 in band),
    pc0001 a canary: every stage, disruptive ones included (SOL/IDER over TLS 1.0, un-provisioning)."""
    return _run(tmp_path_factory.mktemp("lab-2009"), [], 6, "--allow-disruptive", in_band_every=3, canaries=1)


def test_the_healthy_2009_estate_passes(healthy):
    results, _run_dir = healthy
    for n in range(1, 7):
        assert_healthy(results, PC(n))
    for target in (CA, SP, "dc01.vprolab.test", "vprolab.test", "dhcp01.vprolab.test", "console01.vprolab.test"):
        assert_healthy(results, target)
    for check in TOUCHED:
        assert results[(check, PC(1))][0] == "passed", (check, results[(check, PC(1))])
    for check, target in SITE_TOUCHED:
        assert results[(check, target)][0] == "passed", (check, results[(check, target)])
    for n in (1, 4):  # AMT 3.2.1 with its enterprise certificate: the self-signed check applies, and passes
        assert results[("S3-AMT-321-SELF-SIGNED-CERT", PC(n))][0] == "passed"
    assert "AMT 4.1.3" in results[("S3-AMT-321-SELF-SIGNED-CERT", PC(2))][1]  # not applicable, visibly
    for check in ("S4-POWER-DOWN", "S4-POWER-UP", "S7-UNPROVISION-COMPLETES", "S7-WEB-SERVER-CERT-REVOKED",
                  "S7-AD-MC-OBJECT-DELETED", "S1-SCCM-SP1-SITE"):  # through the SMS Provider; Wow6432Node
        target = SP if check.startswith("S1-") else PC(1)
        assert results[(check, target)][0] == "passed", (check, results[(check, target)])
    for n in range(2, 7):  # not canaries: no operation at all
        assert "not marked canary: true" in results[("S4-POWER-DOWN", PC(n))][1]
    for n in range(1, 7):  # names judged as DNS and AMT hold them, the OS's from the site's record
        for check in ("S3-CLIENT-FQDN-VALID-CHARACTERS", "S3-ME-HOSTNAME-MATCHES-OS"):
            assert results[(check, PC(n))][0] == "passed", (check, n, results[(check, PC(n))])


def test_the_evidence_says_what_the_estate_of_2009_needed(healthy):
    _results, run = healthy
    for n in range(1, 7):
        tls = _evidence(run, "test_service_point_reaches_amt_ports", PC(n))
        assert "TLS 1.0, AES128-SHA (legacy fallback)" in tls, tls
    assert "TLS 1.0, AES128-SHA (legacy fallback)" in _evidence(run, "test_console_connects_with_kerberos", PC(2))
    assert "TLS 1.0, AES128-SHA (legacy fallback)" in _evidence(run, "test_webui_answers", PC(3))
    assert "TLS 1.0, AES128-SHA (legacy fallback)" in _evidence(run, "test_sol_shows_bios_and_ider_boots_the_client",
                                                                PC(1))
    cert = json.loads(json.loads(_evidence(run, "test_client_presents_an_enterprise_web_server_certificate",
                                           PC(5)))[0]["body"])
    assert cert["signature"] == "sha1"
    assert cert["cdp"][0].startswith("ldap:///CN=VPROLAB%20Issuing%20CA,CN=ca01,CN=CDP")
    seen = _evidence(run, "test_crls_and_ca_certificates_are_published", CA)
    assert "ldap:///CN=VPROLAB%20Issuing%20CA,CN=ca01,CN=CDP" in seen and "ldap:///CN=VPROLAB%20Root%20CA,CN=AIA" in seen
    chain = _evidence(run, "test_provisioning_certificate_and_chain_are_on_the_service_point", SP)
    assert "Trusted Root Certification Authorities (Enterprise)" in chain, chain  # the root, from AD
    assert "Intermediate Certification Authorities (Local Computer)" in chain, chain
    console = _evidence(run, "test_console_trusts_every_enterprise_ca", "console01.vprolab.test")
    assert "Trusted Root Certification Authorities (Group Policy)" in console, console  # the subordinate CA
    names = _evidence(run, "test_client_fqdn_uses_only_valid_characters", PC(2))
    assert "AMT_GeneralSettings HostName.DomainName" in names and "DNS PTR" in names, names
    ider = json.loads(json.loads(_evidence(run, "test_sol_shows_bios_and_ider_boots_the_client", PC(1)))[0]["body"])
    assert ider["boot_config"] == "set" and ider["boot_steps"][1:] == [  # AMT 3.2.1: the consoles' sequence
        "ChangeBootOrder (no source): ok", "Put AMT_BootSettingData UseIDER=true IDERBootDevice=0 UseSOL=true: ok",
        "SetBootConfigRole(1): ok", "ChangeBootOrder (no source): ok"], ider
    assert ider["reboot"].startswith("RequestPowerStateChange(10) from PowerState 2: ReturnValue 0"), ider
    assert ider["ider_reads"] == [0] and ider["restored"].startswith("yes: UseIDER=false"), ider
    acl = json.loads(json.loads(_evidence(run, "test_console_user_is_in_the_amt_acl", PC(4)))[0]["body"])
    assert acl[0]["sid"].startswith("S-1-5-21-") and acl[0]["KerberosUserSid"].startswith("AQUAAAAAAAUVAAAA")
    # after FullUnprovision (factory defaults) AMT 3.2.1 is in its initial setup again and answers no WS-MAN: the
    # check passed on the site's AMTStatus and AMTOPMGR.LOG's completion line
    gone = json.loads(json.loads(_evidence(run, "test_unprovisioning_completes", PC(1)))[0]["body"])
    assert not isinstance(gone["state_after"], int) and gone["return"] == 0, gone


def test_client_faults_are_still_caught_in_2009(tmp_path):
    results, _run_dir = _run(tmp_path, [{"fault": "console_user_not_in_acl", "client": 2},
                                        {"fault": "amt_321", "client": 3}], 4)
    assert_fails(results, "S5-CONSOLE-USER-IN-AMT-ACL", PC(2), r"1 entries \(S-1-5-21-[\d-]+-500\), none for amtadmin")
    assert_fails(results, "S5-AMT-REALMS-ENABLED", PC(2), "no ACL entry for amtadmin or its groups on the device")
    assert_fails(results, "S3-AMT-321-SELF-SIGNED-CERT", PC(3), r"AMT 3\.2\.1 .* presents a self-signed certificate")
    assert_fails(results, "S3-CLIENT-AMT-WEB-SERVER-CERT", PC(3), "does not chain to a trusted root")
    failed = tuple(c for (c, t), (outcome, _m) in results.items() if t == PC(3) and outcome == "failed")
    assert_gated(results, PC(3), failed, 3)  # as on a modern lab: WS-MAN, verified, refuses the self-signed cert
    for n in (1, 4):
        assert_healthy(results, PC(n))


def test_an_in_band_agent_past_its_policy_window_is_caught_in_2009(tmp_path):
    results, _run_dir = _run(tmp_path, [{"fault": "inband_policy_never_requested", "client": 2}], 2, "--stage", "2",
                             in_band_every=1)
    assert_fails(results, "S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", PC(2),
                 "30 h ago .*it has not requested machine policy since the setting was enabled")
    assert results[("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", PC(1))][0] != "failed"


def test_ide_r_boot_off_in_bios_is_caught_in_2009(tmp_path):
    results, _run_dir = _run(tmp_path, [{"fault": "ider_boot_off_in_bios", "client": 1}], 1, "--allow-disruptive",
                             "--stage", "5", canaries=1, in_band_every=0)
    assert_fails(results, "S5-SOL-IDER-SESSION", PC(1), r"the BIOS does not offer IDE-R boot")


def test_pki_faults_are_still_caught_in_2009(tmp_path):
    results, _run_dir = _run(tmp_path, ["expired_crl", "crl_not_in_directory", "service_point_expired_issuing_ca",
                                        "site_selects_expired_provisioning_cert"], 1, "--stage", "3")
    assert_fails(results, "S3-CA-CRL-AIA-AVAILABLE", CA, r"expired: http://ca01.vprolab.test/pki/\w+.crl")
    assert_fails(results, "S3-CA-CRL-AIA-AVAILABLE", CA, r"not-found: ldap:///CN=VPROLAB%20Issuing%20CA,CN=ca01,CN=CDP")
    assert_fails(results, "S3-ISSUING-CA-CHAIN-DATES-VALID", SP, "VPROLAB Issuing CA: expired on")
    assert results[("S3-ISSUING-CA-CHAIN-ON-SERVICE-POINT", SP)][0] == "passed"
    # the certificate the site selected, from the service point's own Personal store, not the exported file
    assert_fails(results, "S3-PROV-CERT-CHAIN-DATES-VALID", SP,
                 r"the provisioning certificate in sccm01\.vprolab\.test's Personal store \(selected by the site "
                 r"control property .*: expired")


def test_stage_1_pki_faults_are_still_caught_in_2009(tmp_path):
    results, _run_dir = _run(tmp_path, ["issuing_ca_4096", "service_point_missing_intermediate"], 1)
    assert_fails(results, "PRE-CA-KEY-LENGTH-2048", CA, "4096 bits")
    assert_fails(results, "S1-PROV-CERT-CHAIN-INSTALLED", SP, r"no issuer of sccm01.vprolab.test in Intermediate "
                 r"Certification Authorities \(Local Computer, Group Policy, Enterprise\)")


def test_legacy_suites_a_device_does_not_offer_leave_its_checks_undecided(tmp_path):
    """The 3.2.1-6.x suite list has no public source: an estate whose devices offer none of
    expected.amt_legacy_tls_ciphers gets "cannot decide", visibly, and no closed gate, not a failed client."""
    description = tmp_path / "lab.yaml"
    description.write_text(json.dumps({"lab": {"era": "2009", "clients": 2, "net": NET, "dhcp_port": 0,
                                               "state_dir": "state", "in_band_every": 0}}))
    state = tmp_path / "state"
    info = manager.up(description, state=state, log=lambda line: None)
    try:
        env = yaml.safe_load(Path(info["environment_file"]).read_text())
        env["expected"] = {"amt_legacy_tls_ciphers": "CAMELLIA128-SHA"}
        changed = Path(info["environment_file"]).with_name("environment-camellia.yaml")  # beside it: same paths
        changed.write_text(yaml.safe_dump(env, sort_keys=False))
        results = run_pytest_on(changed, tmp_path / "reports", "--stage", "2")
    finally:
        manager.down(state)
    outcome, message = results[("S1-PORTS-SERVICE-POINT-TO-AMT", PC(1))]
    assert outcome == "skipped" and message.startswith("cannot decide: TLS to "), message
    assert "with the suites CAMELLIA128-SHA" in message and "expected.amt_legacy_tls_ciphers" in message
    for n in (1, 2):
        assert not [k for k, v in results.items() if k[1] == PC(n) and v[0] in ("failed", "error")], n
        assert not [k for k, v in results.items() if k[1] == PC(n) and "gated:" in v[1]], n
    assert results[("S1-PORTS-CONSOLE-TO-AMT", PC(1))][0] == "passed"  # TCP: decided without TLS


def test_unprovisioned_clients_answer_no_wsman_and_are_judged_from_their_hellos(tmp_path):
    """Issue 16, items 4 and 9: pc0002 and pc0003 are not provisioned (their provisioning failed an hour ago, so
    AMTOPMGR.LOG has their old hellos) and answer no WS-MAN, as real firmware in setup; the run listens where their
    hellos go (the service point's 9971, left to it: ``site_hears_hellos: false``). The root-hash check judges the
    hash list of their hellos: pc0002's lists the root, pc0003's does not (``root_hash_missing``)."""
    from pytest_vpro.lab.addresses import AddressPlan

    listen = f"{AddressPlan(NET).site_server}:9971"
    results, run = _run(tmp_path, [{"fault": "provisioning_failed", "client": 2},
                                   {"fault": "provisioning_failed", "client": 3},
                                   {"fault": "root_hash_missing", "client": 3}], 3,
                        "--stage", "3", "--hello-listen", listen, "--hello-wait", "70",
                        unprovisioned=2, in_band_every=0, site_hears_hellos=False)
    check = "S3-PROV-CERT-ROOT-HASH-IN-AMT"
    assert results[(check, PC(2))][0] == "passed", results[(check, PC(2))]
    assert "hash list of its hello heard on" in _evidence(run, "test_amt_trusts_the_provisioning_root", PC(2))
    assert_fails(results, check, PC(3), rf"{PC(3)}: 0 hashes in its hello packet \(retry \d+, from [\d.]+\), none "
                 r"enabled for VPROLAB Root CA")
    outcome, message = results[(check, PC(3))]
    assert "an enabled hash of the provisioning root (" in message and "MEBx" in message, message  # the action
    assert results[(check, PC(1))][0] == "passed"  # provisioned: over WS-MAN
    for n in (2, 3):  # no WS-MAN before provisioning: the ME's own state is read from nothing
        assert "no answer over WS-MAN" in _evidence(run, "test_me_is_unprovisioned", PC(n)) or \
            results[("S2-ME-UNPROVISIONED", PC(n))][0] == "passed", n


def test_issue_17_client_faults_are_caught_in_2009(tmp_path):
    """Issue 17's client rows, proven on the modern lab (test_faults_operations.py, test_check_faults.py,
    test_faults_infrastructure.py), in the estate of 2009 too: console power control refused by an AMT 3.2.1 whose
    ACL lacks the remote control realm (the canary), an AMT 4.1.3 clock 10 minutes fast, and AMT left on a computer
    of a disjointed namespace (AMT 5.0.20); pc0004 (AMT 3.2.1) is healthy."""
    results, _run_dir = _run(tmp_path, [{"fault": "console_acl_no_remote_control", "client": 1},
                                        {"fault": "clock_skew", "client": 2},
                                        {"fault": "disjoint_namespace", "client": 3}], 4,
                             "--allow-disruptive", "--stage", "5", canaries=1, in_band_every=0)
    assert_fails(results, "S5-CONSOLE-POWER-CONTROL", PC(1),
                 r"power-down: PowerState 2 \(on\) 0 s after RequestPowerStateChange\(8\) as the console user: "
                 r"SOAP fault .*wsman:AccessDenied")
    for check in ("S4-POWER-DOWN", "S4-POWER-UP"):  # the site's power control, with its own account, still works
        assert results[(check, PC(1))][0] == "passed", (check, results[(check, PC(1))])
    assert_fails(results, "S5-TIME-SYNCHRONIZED", PC(2), r"pc0002\.vprolab\.test \(Intel AMT\) clock \+(599|600|601) s")
    assert_fails(results, "PRE-AMT-DISABLED-ON-UNSUPPORTED-COMPUTERS", "pc0003.branch.vprolab.test",
                 r"its DNS suffix branch.vprolab.test is not its AD domain vprolab.test \(disjointed namespace\)\) "
                 r"and its AMT is provisioned")
    assert_gated(results, "pc0003.branch.vprolab.test",
                 tuple(c for (c, t), (o, _m) in results.items() if t == "pc0003.branch.vprolab.test" and o == "failed"), 1)
    assert_healthy(results, PC(4))
    assert results[("S5-TIME-SYNCHRONIZED", PC(4))][0] == "passed", results[("S5-TIME-SYNCHRONIZED", PC(4))]
    outcome, message = results[("PRE-AMT-DISABLED-ON-UNSUPPORTED-COMPUTERS", PC(4))]
    assert outcome == "skipped" and "pc0004.vprolab.test is supported for out of band management" in message, message


def test_issue_17_site_faults_are_caught_in_2009(tmp_path):
    """The console user's ticket over 4 KB (400 extra groups in its PAC) and the clocks an administrator gets wrong
    (the console host 10 minutes fast, the site server in the wrong time zone, an in-band PC's Windows 15 minutes
    slow), as test_faults_token.py and test_faults_clocks.py prove them on the modern lab."""
    results, _run_dir = _run(tmp_path, ["console_user_many_groups", "console_clock_skewed",
                                        "site_server_wrong_time_zone",
                                        {"fault": "windows_clock_skew", "client": 2, "seconds": -900}], 2,
                             "--stage", "5", canaries=0, in_band_every=2)
    assert_fails(results, "S5-CONSOLE-USER-TOKEN-SIZE", "console01.vprolab.test",
                 r"amtadmin is in \d+ groups, Kerberos AP-REQ for HTTP/pc0001\.vprolab\.test:16993@VPROLAB\.TEST "
                 r"\d{4,} bytes \(TokenSz estimate \d+ bytes\): .*Lab Group 400")
    for client in (PC(1), PC(2)):
        assert_fails(results, "S5-TIME-SYNCHRONIZED", client,
                     r"console01\.vprolab\.test clock \+(599|600|601) s \(±\d+ s\) from the domain controller")
        message = results[("S5-TIME-SYNCHRONIZED", client)][1]
        assert re.search(r"sccm01\.vprolab\.test clock \+28[78]\d\d s", message), message
        assert "Intel AMT) clock" not in message, message  # the MEs' clocks are right
    in_band = results[("S5-TIME-SYNCHRONIZED", PC(2))][1]
    assert re.search(r"pc0002\.vprolab\.test \(Windows\) clock -(899|900|901) s", in_band), in_band
