"""`pip install pytest-vpro` is the whole tool: a wheel built from this tree, installed into a fresh virtual
environment, run from an empty folder, with nothing of the clone on its path.

It proves: the checks, the catalog and the lab's description ship in the wheel; `--list-checks` finds a test for
every row; a real-estate environment file collects the full suite; `pytest --env lab` checks every row and keeps
the lab's state in the empty folder; the report tells what to install for what is missing (the Allure command
line, the [lab] extra).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"VPRO_AMT_PASSWORD": "wheel-test-amt", "VPRO_MEBX_PASSWORD": "wheel-test-mebx"}


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check",
                    "-w", str(base / "dist"), str(ROOT)], check=True, timeout=600, capture_output=True)
    wheel = next((base / "dist").glob("pytest_vpro-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    f"{wheel}[lab]"], check=True, timeout=1200, capture_output=True)
    empty = base / "empty"
    empty.mkdir()
    return {"wheel": wheel, "bin": venv / "bin", "empty": empty}


def run(wheel_env, *args: str, cwd: Path | None = None, timeout: float = 600, **env: str):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VPRO_"))}
    environ.update(PATH=f"{wheel_env['bin']}:{os.environ['PATH']}", **env)
    environ.pop("PYTHONPATH", None)
    return subprocess.run(list(args), cwd=cwd or wheel_env["empty"], env=environ, capture_output=True,
                          text=True, timeout=timeout)


def test_the_wheel_holds_the_checks_the_catalog_and_the_lab_description(wheel_env):
    names = set(zipfile.ZipFile(wheel_env["wheel"]).namelist())
    for stage in range(1, 8):
        assert f"pytest_vpro/suites/stage{stage}/__init__.py" in names
    assert {"pytest_vpro/catalog.yaml", "pytest_vpro/environments/lab.yaml", "pytest_vpro/environments/example.yaml",
            "pytest_vpro/py.typed", "pytest_vpro/suites/stage3/test_provisioning.py"} <= names


def test_list_checks_from_an_empty_folder_shows_a_test_for_every_row(wheel_env):
    out = run(wheel_env, "pytest", "--list-checks=json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) >= 134
    assert [r["id"] for r in rows if not r["tests"]] == []
    table = run(wheel_env, "pytest", "--list-checks")
    assert f"{len(rows)} checks, {len(rows)} with tests" in table.stdout


def test_an_estate_file_elsewhere_collects_the_full_suite(wheel_env, tmp_path):
    estate = tmp_path / "estate"
    shutil.copytree(ROOT / "environments", estate, ignore=shutil.ignore_patterns("lab.yaml", "__init__.py"))
    text = (estate / "example.yaml").read_text()
    unavailable = ("source: \"ldap:", "provisioning_chain:", "trusted_roots:")  # no directory, no PEM files here
    (estate / "prod.yaml").write_text("\n".join(line for line in text.splitlines()
                                                if not any(key in line for key in unavailable)))
    out = run(wheel_env, "pytest", f"--env={estate / 'prod.yaml'}", "--collect-only", "-q", **SECRETS)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    collected = [line for line in out.stdout.splitlines() if "::" in line]
    listed = json.loads(run(wheel_env, "pytest", "--list-checks=json").stdout)
    files = {t.split("::")[0] for r in listed for t in r["tests"]}
    assert {line.split("::")[0] for line in collected} == files
    assert not (wheel_env["empty"] / "tests").exists()


def test_the_lab_from_an_empty_folder_checks_every_row(wheel_env):
    """The main job from the installed package: exit 0, every row has a result, the lab's state in ./.lab."""
    status = run(wheel_env, "vpro-lab", "status")
    assert status.returncode == 1 and f"no lab running in {wheel_env['empty'] / '.lab'}" in status.stdout
    out = run(wheel_env, "pytest", "--env", "lab", timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    run_dir = (wheel_env["empty"] / "reports" / "latest").resolve()
    tree = ET.parse(run_dir / "junit.xml")
    checked = {p.get("value") for p in tree.iter("property") if p.get("name") == "vpro_check"}
    listed = {r["id"] for r in json.loads(run(wheel_env, "pytest", "--list-checks=json").stdout)}
    assert checked == listed
    assert (run_dir / "report.html").is_file()
    notes = json.loads((run_dir / "run.json").read_text())["notes"]
    assert any("npm install allure-commandline" in n for n in notes), notes  # no Allure CLI in this venv
    assert {row.split(",")[4] for row in (run_dir / "fleet.csv").read_text().splitlines()[1:]} == {"ok"}
    assert not list((wheel_env["bin"].parent / "lib").glob("python*/site-packages/pytest_vpro/.lab"))
    assert "pytest-vpro fleet summary" in out.stdout.split("short test summary")[-1]


def test_the_lab_without_its_extra_says_what_to_install(wheel_env, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", str(bare)], check=True, timeout=300)
    subprocess.run([str(bare / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(wheel_env["wheel"])], check=True, timeout=1200, capture_output=True)
    out = run({**wheel_env, "bin": bare / "bin"}, "vpro-lab", "up", "--state", str(tmp_path / "state"))
    assert out.returncode == 1
    assert "pip install 'pytest-vpro[lab]'" in out.stderr
