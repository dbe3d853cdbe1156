"""Run the suite against a lab with planted faults, as a user runs it, and read the verdicts back.

Shared by the fault matrices in ``tests/lab/test_faults_*.py``. Each lab gets the ``net`` its test module picks
(127.<net>.0.0/16, so labs never share an address) and a free DHCP port, so fault labs can run beside each other
and beside a lab started with ``vpro-lab up``.
"""
from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from pytest_vpro import catalog
from pytest_vpro.lab import manager

ROOT = Path(__file__).resolve().parents[2]
CHECKS = catalog.load()


def run_suite(tmp_path: Path, faults: list[dict], clients: int = 8, *, net: int, in_band_every: int = 0,
              canaries: int = 0, unprovisioned: int = 0, args: tuple[str, ...] = ()
              ) -> dict[tuple[str, str], tuple[str, str]]:
    """Start a lab with ``faults``, run the suite against it, stop it; {(check, target): (outcome, message)}."""
    description = tmp_path / "lab.yaml"
    description.write_text(f"lab: {{clients: {clients}, net: {net}, in_band_every: {in_band_every}, canaries: {canaries}, "
                           f"unprovisioned: {unprovisioned}, dhcp_port: 0, state_dir: state, "
                           f"faults: {faults!r}}}\n".replace("'", '"'))
    reports = tmp_path / "reports"
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", f"--env={description}", "--no-html",
                              f"--reports-dir={reports}", "-p", "no:cacheprovider", "-q", *args],
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
             and CHECKS[k[0]].automated and not CHECKS[k[0]].disruptive}  # disruptive ones skip as not allowed
    assert later, f"no later checks for {target}"
    for (check, _), (outcome, message) in later.items():
        assert outcome == "skipped" and any(f"gated: {b} failed for" in message for b in by), (check, message)


def assert_healthy(results, target: str) -> None:
    bad = {k: v for k, v in results.items() if k[1] == target and v[0] in ("failed", "error")}
    assert not bad, bad
