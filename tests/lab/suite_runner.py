"""Run the suite against a lab with planted faults, as a user runs it, and read the verdicts back.

Shared by the fault matrices in ``tests/lab/test_faults_*.py``. Each lab gets the ``net`` its test module picks
(127.<net>.0.0/16, so labs never share an address) and a free DHCP port, so fault labs can run beside each other
and beside a lab started with ``vpro-lab up``.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from pytest_vpro import catalog
from pytest_vpro.lab import manager
from pytest_vpro.report.merge import read_junit

ROOT = Path(__file__).resolve().parents[2]
CHECKS = catalog.load()


def run_suite(tmp_path: Path, faults: list[dict], clients: int = 8, *, net: int, in_band_every: int = 0,
              canaries: int = 0, unprovisioned: int = 0, args: tuple[str, ...] = (), era: str = "modern"
              ) -> dict[tuple[str, str], tuple[str, str]]:
    """Start a lab with ``faults``, run the suite against it, stop it; {(check, target): (outcome, message)}.
    ``era``: the lab description's era ("2009": the estate of the guide's time)."""
    description = tmp_path / "lab.yaml"
    description.write_text(f"lab: {{clients: {clients}, net: {net}, in_band_every: {in_band_every}, canaries: {canaries}, "
                           f"unprovisioned: {unprovisioned}, dhcp_port: 0, state_dir: state, era: '{era}', "
                           f"faults: {faults!r}}}\n".replace("'", '"'))
    try:
        return run_pytest_on(description, tmp_path / "reports", *args)
    finally:
        manager.down(tmp_path / "state")


def run_pytest_on(env_file: Path, reports: Path, *args: str) -> dict[tuple[str, str], tuple[str, str]]:
    """The suite against ``env_file`` (a lab description starts its lab), as a user runs it; {(check, target):
    (outcome, message and report)}."""
    out = subprocess.run([sys.executable, "-m", "pytest", f"--env={env_file}", "--no-html",
                          f"--reports-dir={reports}", "-p", "no:cacheprovider", "-q", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-3000:]
    return verdicts(reports / "latest" / "junit.xml")


def verdicts(junit: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """{(check, target FQDN): (outcome, message + report)} of a run's junit.xml."""
    return {(c.props["vpro_check"], c.props["vpro_target"].split(":", 1)[1]): (c.outcome, c.message + "\n" + c.text)
            for c in read_junit(junit) if "vpro_check" in c.props}


def assert_fails(results, check: str, target: str, found: str) -> None:
    outcome, message = results[(check, target)]
    assert outcome == "failed", (check, target, outcome, message)
    assert f"{check} failed for {target}" in message and re.search(r"found: +.*" + found, message), message
    assert "expected: " in message and f"corrective action: {CHECKS[check].corrective_action}" in message


def assert_gated(results, target: str, by: str | tuple[str, ...], after_stage: int) -> None:
    by = (by,) if isinstance(by, str) else by
    later = {k: v for k, v in results.items() if k[1] == target and CHECKS[k[0]].test_stage > after_stage
             and CHECKS[k[0]].automated
             and not v[1].startswith("disruptive check")}  # skipped before any gate: not allowed, or not a canary
    assert later, f"no later checks for {target}"
    for (check, _), (outcome, message) in later.items():
        assert outcome == "skipped" and any(f"gated: {b} failed for" in message for b in by), (check, message)


def assert_healthy(results, target: str) -> None:
    bad = {k: v for k, v in results.items() if k[1] == target and v[0] in ("failed", "error")}
    assert not bad, bad
