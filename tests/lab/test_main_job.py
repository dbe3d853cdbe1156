"""`pytest --env lab` as a user runs it: it starts its own lab, checks it, stops it; or reuses a running one."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vpro.lab import manager
from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.report import sources

NET = 97
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path):
    shutil.copytree(ROOT / "suites", tmp_path / "suites", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "lab.yaml").write_text(
        f"lab: {{clients: 4, net: {NET}, canaries: 1, state_dir: ../state}}\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestpaths = suites\naddopts = -p no:cacheprovider\n")
    return tmp_path


def pytest_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    """The README's command as typed: the ``pytest`` script (its folder is sys.path[0], unlike ``python -m``)."""
    script = Path(sys.executable).parent / "pytest"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pytest"]
    return subprocess.run([*command, "--env", "lab", "--no-html", *args], cwd=project,
                          capture_output=True, text=True, timeout=600)


def test_pytest_env_lab_starts_checks_and_stops_its_own_lab(project):
    out = pytest_run(project)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "vpro-lab: starting the lab" in out.stderr and "vpro-lab: ready: 4 clients" in out.stderr
    assert "pytest-vpro fleet summary: environment lab, 4 clients" in out.stdout
    info = json.loads((project / "state" / "lab.json").read_text())
    assert info["status"] == "stopped" and manager.status(project / "state") is None
    assert manager.listening(AddressPlan(NET), info) == []
    # every verdict says where it came from: the site's inventory once for the fleet, each device's own AMT
    found = sources.per_check(project / "reports" / "latest")
    assert any("SMS_R_System" in fact for fact in found["S4-MC-DISCOVERED"]["fleet"]), found["S4-MC-DISCOVERED"]
    assert any(fact.startswith("amt.") for fact in found["S3-ME-HOSTNAME-MATCHES-OS"]["own"]), found["S3-ME-HOSTNAME-MATCHES-OS"]


def test_pytest_env_lab_reuses_a_lab_started_with_vpro_lab_up(project):
    state = project / "state"
    info = manager.up(project / "environments" / "lab.yaml", state=state, log=lambda _: None)
    try:
        out = pytest_run(project, "-n", "2")
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert f"reusing the lab running in {state}" in out.stderr
        assert manager.status(state)["pid"] == info["pid"]  # still running: the run did not start it
    finally:
        manager.down(state)


def test_breaking_the_running_lab_as_an_administrator_would_is_seen(project):
    """No private shortcut state: a samba-tool DNS delete and a WS-MAN Put to a device are all the suite needs."""
    from pytest_vpro.probes.amt import AmtDevice
    from pytest_vpro.probes.wsman import DigestAuth, WsmanClient, resource_uri

    state = project / "state"
    info = manager.up(project / "environments" / "lab.yaml", state=state, log=lambda _: None)
    try:
        pc2, pc3 = info["clients"][1], info["clients"][2]
        reverse = f"{pc2['address'].split('.')[3]}.{pc2['address'].split('.')[2]}"
        delete = subprocess.run(["samba-tool", "dns", "delete", info["dc"]["address"], f"{NET}.127.in-addr.arpa",
                                 reverse, "PTR", pc2["fqdn"], "-U", "Administrator", "-s", info["dc"]["smb_conf"]],
                                env={**__import__("os").environ, "PASSWD": info["dc"]["admin_password"]},
                                capture_output=True, text=True, timeout=60)
        assert delete.returncode == 0, delete.stderr
        device = WsmanClient.for_amt(pc3["address"], tls=False, auth=DigestAuth(pc3["amt_user"], pc3["amt_password"]),
                                     ca_bundle=None, timeout=10)
        uri = resource_uri("AMT_RedirectionService")
        current = dict(device.get(uri))
        device.put(uri, {**current, "EnabledState": "32768"})  # SOL and IDER off, as the WebUI would do it
        assert AmtDevice(device).redirection().enabled_state == 32768

        out = pytest_run(project, "--junitxml", str(project / "broken.xml"))
        assert out.returncode == 1
        assert f"S3-CLIENT-NAME-RESOLUTION-FWD-REV failed for {pc2['fqdn']}" in out.stdout
        assert f"S5-SOL-IDER-ENABLED-IN-AMT failed for {pc3['fqdn']}" in out.stdout
        assert " 2 failed, " in out.stdout.splitlines()[-1], out.stdout[-3000:]  # those two and nothing else
    finally:
        manager.down(state)
