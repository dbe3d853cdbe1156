"""Root causes (issue 18): a shared service that does not answer is named once, first, as the cause.

Each lab has one shared service down: the estate's DNS server, the directory (the DC's LDAP), the site server,
or the network path to one client range (the lab's ``client_subnet_dropped``).
The run asks the shared services first (pytest_vpro/causes.py); the terminal summary, summary.json and report.html
name the cause first, and every finding that follows from it says "caused by: ..." with the cause's corrective
action, not its own check's (a hot-fix check that could not read the site server does not say "install the hot
fix"). Under -n 2 the findings read exactly as under -n 0.
"""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest
from suite_runner import CHECKS, ROOT, verdicts

from pytest_vpro.lab import manager

NET = 118
pytestmark = pytest.mark.lab


def run_down(tmp_path, fault: str, *args: str, clients: int = 2):
    """A lab of ``clients`` clients with ``fault``, the suite run over it with the reports; (results, summary,
    html, stdout, fleet rows)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    description = tmp_path / "lab.yaml"
    description.write_text(f'lab: {{clients: {clients}, net: {NET}, in_band_every: 0, canaries: 0, unprovisioned: 0, '
                           f'dhcp_port: 0, state_dir: state, faults: [{{"fault": "{fault}"}}]}}\n')
    reports = tmp_path / "reports"
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", f"--env={description}", f"--reports-dir={reports}",
                              "-p", "no:cacheprovider", "-q", "-p", "no:randomly", *args],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        manager.down(tmp_path / "state")
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    run = reports / "latest"
    rows = list(csv.DictReader((run / "fleet.csv").open()))
    return (verdicts(run / "junit.xml"), json.loads((run / "summary.json").read_text()),
            (run / "report.html").read_text(), out.stdout, rows)


def assert_named_first(tmp_path, fault: str, cause: str, *args: str, clients: int = 2):
    results, summary, page, stdout, rows = run_down(tmp_path, fault, *args, clients=clients)
    # the terminal: the cause comes right after the verdict, before the stage table
    terminal = stdout[stdout.index("pytest-vpro fleet summary"):]
    assert re.search(r"root causes, by what they block \(\d+\): fix these first\n  1\. " + cause, terminal), terminal
    assert terminal.index("root causes") < terminal.index("Installation pre-requisites met")
    # summary.json: a causes list, the right one first, with what it blocks and its action
    first = summary["causes"][0]
    assert re.match(cause, first["what"]) and first["targets_blocked"] >= 1 and first["checks_blocked"] >= 1
    assert first["action"] and first["where"]
    # report.html: the causes before the funnel and the failures
    assert page.index("Root causes") < page.index("Stage funnel") < page.index("Failed checks")
    assert re.search(r"<b>" + cause, page[page.index("Root causes"):page.index("Stage funnel")])
    # every failure that follows from it points at it, with the cause's action and not its own check's
    caused = {k: v for k, v in results.items() if f"caused by: {first['what']}" in v[1]}
    assert caused, results
    for (check, target), (outcome, message) in caused.items():
        if outcome == "failed":
            assert f"corrective action: {first['action']}" in message, message
            assert f"corrective action: {CHECKS[check].corrective_action}" not in message, message
        else:
            assert outcome == "skipped" and "gated: " in message, message
    # no finding shows a library's repr
    for outcome, message in results.values():
        assert not re.search(r"ConnectionPool|Max retries|NameResolutionError|object at 0x|invalid server address",
                             message), message
    return results, summary, rows


def test_dns_server_down_is_the_cause_of_everything_that_did_not_resolve(tmp_path):
    results, summary, rows = assert_named_first(tmp_path, "dns_server_down",
                                                r"DNS server 127\.118\.0\.53 not answering")
    assert [c["service"] for c in summary["causes"]] == ["dns"]  # the DC and the site server are not blamed
    for row in rows:  # every client's blocking cause is the DNS server
        assert row["blocking_cause"] == "DNS server 127.118.0.53 not answering", row
    hotfixes = {k: v for k, v in results.items() if k[0].startswith("HF-") and v[0] == "failed"}
    for (check, _), (_, message) in hotfixes.items():
        assert "Install hot fix" not in message and "caused by: DNS server" in message, message


def test_directory_down_is_named_and_the_ad_checks_point_at_it(tmp_path):
    results, summary, rows = assert_named_first(tmp_path, "directory_down",
                                                r"directory \(domain controller dc01\.vprolab\.test\) not answering",
                                                "--stage", "1")
    assert summary["causes"][0]["service"] == "directory"
    assert "dns" not in [c["service"] for c in summary["causes"]]  # DNS on the same host still answers
    outcome, message = results[("S1-AD-AMT-CONTAINER-ACL", "vprolab.test")]
    assert outcome == "failed" and "caused by: directory (domain controller dc01.vprolab.test) not answering" in message


def test_site_server_down_is_named_and_no_hot_fix_check_asks_for_its_hot_fix(tmp_path):
    results, summary, rows = assert_named_first(tmp_path, "site_server_down",
                                                r"site server sccm01\.vprolab\.test not answering", "--stage", "2")
    assert summary["causes"][0]["service"] == "site_server"
    hotfixes = {k: v for k, v in results.items() if k[0].startswith("HF-") and v[0] == "failed"}
    assert hotfixes
    for (check, _), (_, message) in hotfixes.items():
        assert "Install hot fix" not in message and "caused by: site server sccm01.vprolab.test" in message, message


def test_findings_read_the_same_under_n_0_and_n_2(tmp_path_factory):
    # Directories of their own, not under tmp_path: Samba's sockets live under the lab's state folder, and
    # tmp_path / "n0" made them longer than a socket path may be (108 bytes), so Samba did not start.
    one, _, _, _, _ = run_down(tmp_path_factory.mktemp("n0"), "dns_server_down", "--stage", "2")
    two, _, _, _, _ = run_down(tmp_path_factory.mktemp("n2"), "dns_server_down", "--stage", "2", "-n", "2")
    assert one.keys() == two.keys()

    def text(verdict):  # the outcome and the whole message; a measured time is the one thing allowed to differ
        return verdict[0], re.sub(r"\d+ ms", "N ms", verdict[1])
    differ = {k: (one[k], two[k]) for k in one if text(one[k]) != text(two[k])}
    assert not differ, differ
    assert any("caused by: DNS server" in message for _, message in one.values())


SUBNET = rf"network path to 127\.{NET}\.250\.0/24 \(2 clients\) not answering"
DROPPED = ("pc0003.vprolab.test", "pc0004.vprolab.test")  # the last two of four: the fault's range


def test_a_dropped_client_range_is_the_cause_of_its_clients_findings_and_not_of_the_others(tmp_path):
    results, summary, rows = assert_named_first(tmp_path, "client_subnet_dropped", SUBNET, "--stage", "1",
                                                clients=4)
    first = summary["causes"][0]
    assert first["service"] == "client_subnet" and first["targets_blocked"] == 2, summary["causes"]
    assert [c["service"] for c in summary["causes"]] == ["client_subnet"]  # no shared service is blamed
    for (check, target), (outcome, message) in results.items():
        if target in DROPPED and outcome == "failed":  # every finding of the range's clients points at it
            assert f"caused by: {first['what']}" in message, (check, target, message)
        elif target not in DROPPED:  # the other range's clients are judged as on a healthy lab
            assert "caused by:" not in message, (check, target, message)
    blocking = {row["client"]: row["blocking_cause"] for row in rows}
    assert {k: v for k, v in blocking.items() if v} == {t: first["what"] for t in DROPPED}, blocking


def replay(tmp_path, facts):
    """The suite judged from ``facts`` (a --facts-out snapshot of the lab of ``tmp_path``, now down); (results,
    summary)."""
    reports = tmp_path / "replay"
    out = subprocess.run([sys.executable, "-m", "pytest", f"--env={tmp_path / 'state' / 'environment.yaml'}",
                          f"--facts-in={facts}", f"--reports-dir={reports}", "--no-html", "-p", "no:cacheprovider",
                          "-q", "-p", "no:randomly", "--stage", "1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    return verdicts(reports / "latest" / "junit.xml"), json.loads((reports / "latest" / "summary.json").read_text())


def test_a_dropped_range_reads_the_same_under_n_0_n_2_and_in_a_replay_of_its_snapshot(tmp_path_factory):
    first = tmp_path_factory.mktemp("s0")
    facts = first / "facts.jsonl"
    one, summary, _, _, _ = run_down(first, "client_subnet_dropped", "--stage", "1", f"--facts-out={facts}",
                                     clients=4)
    two, _, _, _, _ = run_down(tmp_path_factory.mktemp("s2"), "client_subnet_dropped", "--stage", "1", "-n", "2",
                               clients=4)
    assert one.keys() == two.keys()

    def text(verdict):  # the outcome and the whole message; a measured time is the one thing allowed to differ
        return verdict[0], re.sub(r"\d+ ms", "N ms", verdict[1])
    differ = {k: (one[k], two[k]) for k in one if text(one[k]) != text(two[k])}
    assert not differ, differ
    assert sum(f"caused by: {summary['causes'][0]['what']}" in m for _, m in one.values()) >= 4
    # the replay sends nothing, yet names the recorded run's causes and gives its findings word for word
    again, replayed = replay(first, facts)
    assert [c["what"] for c in replayed["causes"]] == [c["what"] for c in summary["causes"]]
    assert replayed["causes"][0]["targets_blocked"] == summary["causes"][0]["targets_blocked"]
    assert again.keys() == one.keys()
    differ = {k: (one[k], again[k]) for k in one if one[k] != again[k]}
    assert not differ, differ


def test_a_faulty_lab_reads_the_same_in_two_shards_as_in_one_run(tmp_path_factory):
    """Issue 18's "identical across -n 0, -n 2 and shards": one lab with a dropped client range,
    checked whole and as shards 1/2 and 2/2 (each shard surveys the estate itself): every (check, target) has the
    same outcome and message, "caused by" included."""
    base = tmp_path_factory.mktemp("shards")
    (base / "lab.yaml").write_text(
        f'lab: {{clients: 4, net: {NET}, in_band_every: 0, canaries: 0, unprovisioned: 0, dhcp_port: 0, '
        'state_dir: state, faults: [{"fault": "client_subnet_dropped"}]}\n')
    info = manager.up(base / "lab.yaml", log=lambda m: None)
    try:
        def run(name: str, *args: str):
            reports = base / name
            out = subprocess.run([sys.executable, "-m", "pytest", f"--env={info['environment_file']}",
                                  f"--reports-dir={reports}", "-p", "no:cacheprovider", "-q", "-p", "no:randomly",
                                  "--no-html", "--stage", "1", *args],
                                 cwd=ROOT, capture_output=True, text=True, timeout=600)
            assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
            return verdicts(reports / "latest" / "junit.xml")
        whole = run("whole")
        first, second = run("s1", "--shard", "1/2"), run("s2", "--shard", "2/2")
    finally:
        manager.down(base / "state")
    assert not first.keys() & second.keys()
    shards = {**first, **second}
    assert shards.keys() == whole.keys()

    def text(verdict):  # the outcome and the whole message; a measured time is the one thing allowed to differ
        return verdict[0], re.sub(r"\d+ ms", "N ms", verdict[1])
    differ = {k: (whole[k], shards[k]) for k in whole if text(whole[k]) != text(shards[k])}
    assert not differ, differ
    assert sum("caused by: network path to" in m for _, m in whole.values()) >= 4
