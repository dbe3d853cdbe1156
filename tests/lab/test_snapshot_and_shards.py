"""Fact snapshots and shards give the same verdicts, test for test, as one live run (issue: fleet scale).

One lab with faults (so verdicts are a mix of passed, failed, gated and not applicable), then:
* a live run writing ``--facts-out``; a run with ``--facts-in`` and the lab's network unreachable gives the same
  outcome and message for every test;
* ``--shard i/3`` run one after another gives the same verdicts as the one run;
* a site job (``--site-verdicts-out``) and ``--shard i/2`` with ``--site-verdicts-in``, merged by ``vpro-report``,
  give the one run's verdicts too, without the shards computing the site and server checks again;
* ``vpro-facts diff`` shows what a fault planted later changed in the estate.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_vpro import snapshot
from pytest_vpro.lab import manager

NET = 111
ROOT = Path(__file__).resolve().parents[2]
FAULTS = [{"fault": "missing_ptr", "client": 2}, {"fault": "sol_ider_disabled", "client": 3},
          {"fault": "power_policy_s0_only", "client": 4}]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snapshot-lab")
    desc = tmp / "lab.yaml"
    desc.write_text(json.dumps({"lab": {"clients": 6, "net": NET, "in_band_every": 3, "canaries": 0,
                                        "dhcp_port": 0, "state_dir": "state", "faults": FAULTS}}))
    info = manager.up(desc, log=lambda line: None)
    yield {"tmp": tmp, "env": Path(info["environment_file"]), "state": tmp / "state"}
    manager.down(tmp / "state")


def run(lab, name: str, *args: str) -> dict[str, tuple[str, str]]:
    reports = lab["tmp"] / name
    out = subprocess.run([sys.executable, "-m", "pytest", f"--env={lab['env']}", "--no-html", f"--reports-dir={reports}",
                          "-p", "no:cacheprovider", "-q", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-3000:]
    return verdicts(reports / "latest" / "junit.xml")


def verdicts(junit: Path) -> dict[str, tuple[str, str]]:
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, child.get("message", "")
        found[f"{case.get('classname')}::{case.get('name')}"] = (outcome, message)
    return found


@pytest.fixture(scope="module")
def live(lab):
    return run(lab, "live", f"--facts-out={lab['tmp'] / 'facts.jsonl'}")


def test_the_live_run_has_a_mix_of_verdicts(live):
    outcomes = {o for o, _ in live.values()}
    assert {"passed", "failure", "skipped"} <= outcomes, outcomes


def test_shards_run_one_after_another_give_the_same_verdicts(lab, live):
    merged: dict[str, tuple[str, str]] = {}
    for i in (1, 2, 3):
        part = run(lab, f"shard{i}", f"--shard={i}/3")
        assert not set(part) & set(merged), "a test ran in two shards"
        merged.update(part)
    differ = {k: (live.get(k), merged.get(k)) for k in set(live) | set(merged) if live.get(k) != merged.get(k)}
    assert not differ, list(differ.items())[:5]
    # one report from the three shards' run folders, as the CI matrix in docs/scale.md does it
    runs = [(lab["tmp"] / f"shard{i}" / "latest").resolve() for i in (1, 2, 3)]
    out = subprocess.run([sys.executable, "-m", "pytest_vpro.report.merge", str(lab["tmp"] / "merged"),
                          *map(str, runs)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    fleet = (lab["tmp"] / "merged" / "fleet.csv").read_text().splitlines()
    assert len(fleet) == 1 + 6  # every client once, from whichever shard checked it
    assert "pc0002.vprolab.test" in (lab["tmp"] / "merged" / "report.html").read_text()
    again = subprocess.run([sys.executable, "-m", "pytest_vpro.report.merge", str(lab["tmp"] / "twice"),
                            str(runs[0]), str(runs[0])], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "already in another run" in again.stderr


SITE_NOTE = re.compile(r"\n  \(verdict from the site verdicts file [^\n]*\)$")


def test_shards_with_the_site_jobs_verdicts_give_the_whole_runs_verdicts(lab, live):
    artifact = lab["tmp"] / "site-verdicts.json"
    site = run(lab, "site-job", f"--site-verdicts-out={artifact}")
    assert site and not [k for k in site if "pc0" in k], "the site job checked clients"
    written = json.loads(artifact.read_text())
    assert written["environment"] == "lab" and len(written["verdicts"]) == len(site)
    merged: dict[str, tuple[str, str]] = {}
    for i in (1, 2):
        part = run(lab, f"site-shard{i}", f"--shard={i}/2", f"--site-verdicts-in={artifact}")
        assert not set(part) & set(merged), "a test ran in two shards"
        merged.update(part)
    noted = [k for k, (_, m) in merged.items() if SITE_NOTE.search(m)]
    assert noted and all(k in site for k in noted), "a site or server verdict was not the site job's"
    merged = {k: (o, SITE_NOTE.sub("", m)) for k, (o, m) in merged.items()}
    differ = {k: (live.get(k), merged.get(k)) for k in set(live) | set(merged) if live.get(k) != merged.get(k)}
    assert not differ, list(differ.items())[:5]
    runs = [(lab["tmp"] / f"site-shard{i}" / "latest").resolve() for i in (1, 2)]
    out = subprocess.run([sys.executable, "-m", "pytest_vpro.report.merge", str(lab["tmp"] / "site-merged"),
                          *map(str, runs)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    whole = (lab["tmp"] / "live" / "latest").resolve()
    for name in ("fleet.csv", "summary.json"):  # the merged night reads as the one run, client for client
        mine, theirs = (lab["tmp"] / "site-merged" / name).read_text(), (whole / name).read_text()
        if name == "summary.json":
            mine, theirs = (json.loads(t)["stages"] for t in (mine, theirs))
        assert mine == theirs, name


def test_a_bad_snapshot_is_a_usage_error_naming_file_and_line(lab, tmp_path):
    bad = tmp_path / "facts.jsonl"
    bad.write_text('{"format": "pytest-vpro facts", "version": 1}\n{not json\n')
    out = subprocess.run([sys.executable, "-m", "pytest", f"--env={lab['env']}", "--no-html",
                          f"--reports-dir={tmp_path}", f"--facts-in={bad}", "-q"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 4 and f"{bad}:2: not JSON" in out.stderr, out.stderr[-2000:]


def test_a_snapshot_rejudged_offline_gives_the_same_verdicts(lab, live):
    facts = lab["tmp"] / "facts.jsonl"
    header, rows = snapshot.read(facts)
    assert header["environment"] == "lab" and len(rows) > 50
    text = facts.read_text()
    for secret in (lab["state"] / "secrets").glob("*.secret"):
        assert secret.read_text().strip() not in text, f"{secret.name} leaked into the snapshot"
    manager.down(lab["state"])  # no network: the lab is gone (so this test runs last)
    replayed = run(lab, "replay", f"--facts-in={facts}")
    assert replayed.keys() == live.keys()
    differ = {k: (live[k], replayed[k]) for k in live if live[k] != replayed[k]}
    assert not differ, list(differ.items())[:5]
