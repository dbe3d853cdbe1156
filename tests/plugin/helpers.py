"""Run the sample suite in a pytester folder and read its outcomes back from the run's JUnit XML."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

SAMPLE = Path(__file__).with_name("sample")


def make_project(pytester, faults: dict | None = None, env_text: str | None = None) -> Path:
    root = pytester.path
    shutil.copytree(SAMPLE / "suites", root / "suites")
    shutil.copy(SAMPLE / "catalog.yaml", root / "catalog.yaml")
    (root / "environments").mkdir()
    shutil.copy(SAMPLE / "clients.csv", root / "environments" / "clients.csv")
    (root / "environments" / "sample.yaml").write_text(env_text or (SAMPLE / "environments_sample.yaml").read_text())
    (root / "pytest.ini").write_text("[pytest]\ntestpaths = suites\nvpro_catalog = catalog.yaml\n"
                                     "addopts = -p no:cacheprovider\n")
    if faults:
        (root / "environments" / "faults.json").write_text(json.dumps(faults))
    return root


def run(pytester, *args: str, monkeypatch=None):
    if monkeypatch is not None:
        monkeypatch.setenv("SAMPLE_AMT_PASSWORD", "Sup3r-Secret-Value")
    return pytester.runpytest_subprocess("--env", "sample", "--no-html", "-p", "no:randomly", *args)


def latest(pytester) -> Path:
    return (pytester.path / "reports" / "latest").resolve()


def outcomes(run_dir: Path) -> dict[str, tuple[str, str]]:
    """nodeid-like key -> (outcome, message) from junit.xml."""
    tree = ET.parse(run_dir / "junit.xml")
    out = {}
    for case in tree.iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = child.get("message", "")
                if message.endswith("full report in element text]"):  # pytest >= 9.1 shortens the attribute
                    message = child.text or message
        out[key] = (outcome, message)
    return out


def calls(pytester) -> list[str]:
    log = pytester.path / "environments" / "calls.log"
    return sorted(line.split(" ", 1)[1] for line in log.read_text().splitlines()) if log.exists() else []
