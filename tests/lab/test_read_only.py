"""A run is read-only unless --allow-disruptive is given, and then it changes only canary clients.

Against a running lab (net 108), snapshot what a run could change: the lab's call logs (every state-changing
WS-MAN call of the AMT devices, of the site server, of the in-band clients' Windows side), the AMT container (its
objects and their SPNs), every DNS record, the CRLs served from the CDP. Then run the suite as a user does and
snapshot again:

* without --allow-disruptive, with faults planted (the failing checks must not "repair" anything), nothing changed;
* with --allow-disruptive on a healthy lab with two canaries, every stage passes, and the only changes are the
  canaries': their power cycles and un-provisioning, asked of the site server's SMS Provider
  (SMS_Collection.AMTOperateForMachines as the console user, carried out by its service point: their AMT objects
  gone, their certificates revoked), their SOL/IDER sessions, nothing else.

And the guard itself: :mod:`pytest_vpro.actions` refuses any caller but a disruptive check on a canary, no
read-only code imports it, and ``facts`` reads AMT only.
"""
from __future__ import annotations

import ast
import json
import ssl
from pathlib import Path

import ldap3
import pytest
import requests
from cryptography import x509
from suite_runner import run_pytest_on

from pytest_vpro import catalog
from pytest_vpro.environment import Client
from pytest_vpro.lab import manager
from pytest_vpro.lab.addresses import AddressPlan

NET = 108
ROOT = Path(__file__).resolve().parents[2]
CALL_LOGS = ("amt/calls.jsonl", "site/calls.jsonl", "clients/calls.jsonl")
CHECKS = catalog.load()


# ---------------------------------------------------------------------------------------------- helpers
def _lab(tmp: Path, lab: str) -> Path:
    description = tmp / "lab.yaml"
    description.write_text(f"lab: {{net: {NET}, dhcp_port: 0, state_dir: state, {lab}}}\n")
    manager.up(description, state=tmp / "state", log=lambda line: None)
    return tmp / "state"


def _dns_record(blob: bytes) -> tuple[int, str]:
    """(type, data) of a dnsRecord value: what a resolver sees, without serial, TTL and aging timestamp."""
    return int.from_bytes(blob[2:4], "little"), blob[24:].hex()


def snapshot(state: Path) -> dict:
    info = json.loads((state / "lab.json").read_text())
    tls = ldap3.Tls(ca_certs_file=info["dc"]["ca_cert"], validate=ssl.CERT_REQUIRED)
    conn = ldap3.Connection(ldap3.Server(info["dc"]["address"], port=636, use_ssl=True, tls=tls),
                            user=info["dc"]["admin_user"], password=info["dc"]["admin_password"], auto_bind=True)
    try:
        conn.search("OU=AMT,DC=vprolab,DC=test", "(objectClass=*)", attributes=["servicePrincipalName"])
        amt = {e.entry_dn: sorted(e.entry_attributes_as_dict.get("servicePrincipalName", []))
               for e in conn.entries}
        dns = {}
        for partition in ("DC=DomainDnsZones,DC=vprolab,DC=test", "DC=ForestDnsZones,DC=vprolab,DC=test"):
            conn.search(partition, "(objectClass=dnsNode)", attributes=["dnsRecord"])
            dns.update({e.entry_dn: sorted(_dns_record(v) for v in e.dnsRecord.raw_values) for e in conn.entries})
    finally:
        conn.unbind()
    ca = AddressPlan(NET).ca
    crls = {name: requests.get(f"http://{ca}/pki/{name}", headers={"Host": "ca01.vprolab.test"}, timeout=5).content
            for name in ("issuing.crl", "root.crl")}
    calls = {name: [json.loads(line) for line in (state / name).read_text().splitlines()]
             if (state / name).exists() else [] for name in CALL_LOGS}
    return {"amt": amt, "dns": dns, "crls": crls, "calls": calls}


def run_suite_on(state: Path, reports: Path, *args: str) -> dict[tuple[str, str], tuple[str, str]]:
    """The suite against the running lab (its environment file), as a user runs it; {(check, target): verdict}."""
    return run_pytest_on(state / "environment.yaml", reports, *args)


# ---------------------------------------------------------------------------------------------- read-only runs
def test_a_run_without_allow_disruptive_changes_nothing_even_with_faults(tmp_path):
    state = _lab(tmp_path, "clients: 6, canaries: 3, in_band_every: 3, faults: ["
                           "{fault: power_off_ignored, client: 1}, {fault: sol_ider_disabled, client: 2}, "
                           "{fault: amt_object_has_child, client: 3}, {fault: mc_not_discovered, client: 4}, "
                           "{fault: clock_skew, client: 5, seconds: 900}, {fault: kerberos_disabled, client: 6}, "
                           "{fault: ider_boot_off_in_bios, client: 3}, "
                           "{fault: client_in_unmanaged_collection, client: 2}, {fault: oob_service_point_stopped}]")
    try:
        before = snapshot(state)
        results = run_suite_on(state, tmp_path / "reports")
        after = snapshot(state)
    finally:
        manager.down(state)
    assert all(calls == [] for calls in after["calls"].values()), after["calls"]
    assert after == before
    assert any(outcome == "failed" for outcome, _ in results.values())  # the faults were seen ...
    disruptive = [(k, v) for k, v in results.items() if CHECKS[k[0]].disruptive]
    assert disruptive and all(outcome == "skipped" and "run with --allow-disruptive" in message  # ... and left be
                              for _, (outcome, message) in disruptive), disruptive


def test_allow_disruptive_passes_every_stage_and_changes_only_the_canaries(tmp_path):
    state = _lab(tmp_path, "clients: 6, canaries: 2, in_band_every: 3")
    canaries = {"pc0001.vprolab.test", "pc0002.vprolab.test"}
    try:
        before = snapshot(state)
        results = run_suite_on(state, tmp_path / "reports", "--allow-disruptive")
        after = snapshot(state)
    finally:
        manager.down(state)
    bad = {k: v for k, v in results.items() if v[0] in ("failed", "error")}
    assert not bad, bad
    stages = {CHECKS[check].test_stage for (check, _), (outcome, _) in results.items() if outcome == "passed"}
    assert stages == set(range(1, 8))
    for check in (c for c in CHECKS.values() if c.disruptive):
        for target in canaries:
            assert results[(check.id, target)][0] == "passed", (check.id, target, results[(check.id, target)])
    # what changed: the canaries' devices, their un-provisioning at the site server, their AMT objects, their
    # certificates in the CRL; nothing of any other client, no DNS record
    amt_calls = after["calls"]["amt/calls.jsonl"]
    assert {c["device"] for c in amt_calls} == canaries
    assert {c["op"] for c in amt_calls} >= {"RequestPowerStateChange", "StartSOLRedirection", "StartIDERRedirection",
                                            "ChangeBootOrder", "Put", "SetBootConfigRole", "IDERBoot", "Unprovision"}
    puts = {c["class"] for c in amt_calls if c["op"] == "Put"}
    assert puts == {"AMT_BootSettingData"}, puts  # the boot configuration and its restore, nothing else
    # through the SMS Provider, as the console user: per canary Shutdown, WakeUp, FullUnprovision, DiscoveryBMC
    site_calls = after["calls"]["site/calls.jsonl"]
    assert {(c["class"], c["op"], c["principal"], c["return"]) for c in site_calls} == {
        ("SMS_Collection", "AMTOperateForMachines", "amtadmin@VPROLAB.TEST", 0)}
    ids = {c["params"]["ResourceIDs"][0] for c in site_calls}
    assert len(ids) == len(canaries) and all(len(c["params"]["ResourceIDs"]) == 1 for c in site_calls)
    assert sorted(c["params"]["Opcode"] for c in site_calls) == sorted([3, 1, 64, 8] * len(canaries))
    assert after["calls"]["clients/calls.jsonl"] == []
    gone = set(before["amt"]) - set(after["amt"])
    assert gone == {"CN=PC0001,OU=AMT,DC=vprolab,DC=test", "CN=PC0002,OU=AMT,DC=vprolab,DC=test"}
    assert {dn: spns for dn, spns in after["amt"].items()} == {dn: before["amt"][dn] for dn in after["amt"]}
    assert after["dns"] == before["dns"]
    serials = {x509.load_pem_x509_certificate((state / "pki" / "devices" / f"{fqdn}.pem").read_bytes()).serial_number
               for fqdn in canaries}
    revoked = {r.serial_number for r in x509.load_der_x509_crl(after["crls"]["issuing.crl"])}
    assert revoked - {r.serial_number for r in x509.load_der_x509_crl(before["crls"]["issuing.crl"])} == serials


# ---------------------------------------------------------------------------------------------- the guard
def test_actions_refuse_anything_but_a_disruptive_check_on_a_canary(tmp_path):
    from pytest_vpro import actions, permits

    class Reached(Exception):
        pass

    class Facts:
        def get(self, name, fetch):
            raise Reached(name)

    canary = Client(kind="client", name="pc-guard-1.vprolab.test", canary=True)
    other = Client(kind="client", name="pc-guard-2.vprolab.test", canary=False)

    with pytest.raises(actions.NotPermitted, match="only a disruptive catalog row"):
        actions.power_cycle(canary, None, Facts())  # no permit: a plain function (this test) may not

    def helper(client):  # a function between the check and the action changes nothing
        return actions.power_cycle(client, None, Facts())

    with permits.granted(permits.Permit("S4-POWER-DOWN", canary, tmp_path / "actions.json")):
        with pytest.raises(actions.NotPermitted, match="may change that target only"):
            helper(other)
        with pytest.raises(Reached, match="action.power_cycle"):  # allowed: it goes on to do the work
            helper(canary)
    assert json.loads((tmp_path / "actions.json").read_text()) == {canary.name: {"disruptive": True}}
    with pytest.raises(actions.NotPermitted, match="only a disruptive catalog row"):
        helper(canary)  # the permit ended with the check


def test_the_engine_grants_the_permit_to_disruptive_checks_on_canaries_only(tmp_path, monkeypatch):
    from pytest_vpro import gating, permits
    from pytest_vpro.catalog import load

    monkeypatch.setattr(gating, "run_record_path", lambda run_dir: tmp_path / "actions.json")
    seen = {}

    def check(client):
        seen[client.name] = permits._CURRENT.get()

    canary = Client(kind="client", name="pc-guard-1.vprolab.test", canary=True)
    other = Client(kind="client", name="pc-guard-2.vprolab.test", canary=False)
    rows = load()
    engine = gating.Engine(env=None, store=None, facts=None, allow_disruptive=True)
    with engine._permit(gating.Entry("t", rows["S4-POWER-DOWN"], canary, check, ("client",), 0)):
        check(canary)
    assert seen[canary.name].check_id == "S4-POWER-DOWN"
    with engine._permit(gating.Entry("t", rows["S5-OOB-CONSOLE-CONNECTS"], canary, check, ("client",), 0)):
        check(canary)
    assert seen[canary.name] is None  # a read-only row holds none
    with engine._permit(gating.Entry("t", rows["S4-POWER-DOWN"], other, check, ("client",), 0)):
        check(other)
    assert seen[other.name] is None  # nor a disruptive row on a client that is not a canary
    engine.allow_disruptive = False
    with engine._permit(gating.Entry("t", rows["S4-POWER-DOWN"], canary, check, ("client",), 0)):
        check(canary)
    assert seen[canary.name] is None  # nor does any row without --allow-disruptive


def test_facts_read_amt_only():
    from pytest_vpro.facts import Facts
    from pytest_vpro.probes.amt import AmtDevice

    facts = Facts(Client(kind="client", name="pc0001.vprolab.test"), env=None)
    writes = ("unprovision", "request_power_state", "set_power_scheme")
    assert all(hasattr(AmtDevice, w) for w in writes)  # the device has them; the facts that read it do not
    for write in writes:
        assert not hasattr(facts.amt, write) and not hasattr(facts.console.amt, write)
    public = {n for n in dir(facts.console.amt) if not n.startswith("_")} - {"facts", "prefix"}
    assert public <= {n for n in dir(AmtDevice) if not n.startswith("_")}, "facts.console.amt reads AMT only"


def test_only_disruptive_checks_reach_the_actions_module():
    """No module of the plugin or probes imports the actions package, and in suites/ every call into it is made by
    the test function of a disruptive row."""
    for path in (ROOT / "pytest_vpro").rglob("*.py"):
        if "/actions/" not in str(path) and "/lab/" not in str(path):
            assert "actions" not in {n for node in ast.walk(ast.parse(path.read_text()))
                                     if isinstance(node, (ast.Import, ast.ImportFrom))
                                     for n in [a.name.rsplit(".", 1)[-1] for a in node.names]}, path
    callers = []
    for path in (ROOT / "suites").rglob("test_*.py"):
        for func in (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)):
            calls = [c for c in ast.walk(func) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                     and isinstance(c.func.value, ast.Name) and c.func.value.id == "actions"
                     and not c.func.attr.isupper()]
            if not calls:
                continue
            ids = [d.args[0].value for d in func.decorator_list if isinstance(d, ast.Call) and d.args
                   and isinstance(d.args[0], ast.Constant) and getattr(d.func, "attr", "") == "check"]
            assert ids and CHECKS[ids[0]].disruptive, (path, func.name, ids)
            callers.append(ids[0])
    assert sorted(callers) == sorted(c.id for c in CHECKS.values() if c.disruptive and c.id in callers)
    assert {"S4-POWER-DOWN", "S4-POWER-UP", "S5-SOL-IDER-SESSION", "S7-UNPROVISION-COMPLETES"} <= set(callers)
