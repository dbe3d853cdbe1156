"""Issue 8, item 1: unreachable and hanging targets cost one finding each and at most two timeouts of wall time.

Probe level (fast, xdist group): many hanging devices read at once finish within two timeouts, and the healthy
ones beside them still answer. Run level (``lab`` marker, serial group): a 200-client lab on net 113 where 20
clients' AMT ports drop every SYN (the lab's ``amt_ports_filtered``), against the same lab's 180 other clients
alone: each dropped client has its finding naming the timeout, its later checks skip as gated, the other clients'
verdicts are unchanged, and the run is at most four connect timeouts longer. Timeouts come from the environment file's
``timeouts:`` (defaults: ``environment.DEFAULT_TIMEOUTS``).
"""
from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from hostile import Hostile

from pytest_vpro import environment as envmod
from pytest_vpro.probes import wsman
from pytest_vpro.report.merge import read_junit

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 0.5


def _get(url: str):
    c = wsman.WsmanClient(url, auth=wsman.DigestAuth("admin", "x"), ca_bundle=None, timeout=TIMEOUT)
    try:
        return c.get(wsman.resource_uri("AMT_GeneralSettings"))
    except wsman.WsmanError as exc:
        return exc


def test_twenty_hanging_devices_among_healthy_ones_cost_two_timeouts():
    modes = ["silent"] * 5 + ["slow"] * 5 + ["slow_headers"] * 5 + ["reset"] * 3 + ["truncated"] * 2
    servers = [Hostile(m, drip=TIMEOUT * 0.6) for m in modes] + [Hostile("ok") for _ in range(20)]
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            got = list(pool.map(_get, [s.url for s in servers]))
        wall = time.monotonic() - t0
    finally:
        for s in servers:
            s.close()
    bad, good = got[:20], got[20:]
    assert all(isinstance(g, wsman.Unreachable) for g in bad), bad
    assert all(isinstance(g, dict) and g["HostName"] == "pc" for g in good), good
    assert wall <= 2 * TIMEOUT + 1.0, f"{wall:.2f} s for 40 devices read at once"


def test_timeouts_are_configurable_with_defaults(tmp_path):
    assert envmod.DEFAULT_TIMEOUTS == {"connect": 3.0, "read": 10.0}
    base = ("site: {name: HQ, code: ABC, domain: c.test, amt_container: 'OU=AMT,DC=c,DC=test'}\n"
            "servers: [{fqdn: s.c.test, roles: [site_server]}]\nclients: [{fqdn: pc.c.test}]\n")
    (tmp_path / "a.yaml").write_text(base)
    assert envmod.load(tmp_path / "a.yaml").timeouts == envmod.DEFAULT_TIMEOUTS
    (tmp_path / "b.yaml").write_text(base + "timeouts: {connect: 1, read: 2.5}\n")
    assert envmod.load(tmp_path / "b.yaml").timeouts == {"connect": 1.0, "read": 2.5}
    (tmp_path / "c.yaml").write_text(base + "timeouts: {read: 0}\n")
    with pytest.raises(envmod.EnvironmentFileError) as info:
        envmod.load(tmp_path / "c.yaml")
    assert "read" in "\n".join(info.value.problems)


# --- run level: the lab ------------------------------------------------------------------------------------------
NET = 113
CLIENTS = 200
DROPPED = list(range(10, CLIENTS + 1, 10))  # 20 clients: pc0010, pc0020, ... pc0200
# A filtered port costs its connect timeout, so that is the one kept short; reads keep the default.
CONNECT, READ = 1.0, envmod.DEFAULT_TIMEOUTS["read"]
CALL_LOGS = ("amt/calls.jsonl", "site/calls.jsonl", "clients/calls.jsonl")  # as tests/lab/test_read_only.py
# IN_BAND: every client is out of band here (``in_band_every: 0``). With the default, 50 in-band clients read
# their OOBMGMT.LOG from the lab's one shared smbd at once, and in CI's fresh Debian root some SMB negotiates were
# never answered (smbprotocol: "Connection timeout of 10 seconds exceeded while waiting for a message id 0
# response", 2 Dec), flipping healthy verdicts between the two runs. Never seen on this machine's own root; an
# open lab defect (docs/reliability.md, "Not done yet"). This test is about dropped AMT ports, which in-band
# clients add nothing to.


def _fqdn(i: int) -> str:
    return f"pc{i:04d}.vprolab.test"


def _run(env_file: Path, reports: Path) -> tuple[float, dict, str]:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pytest", f"--env={env_file}", "--no-html", f"--reports-dir={reports}",
                          "-p", "no:cacheprovider", "-q", "--stage", "2"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    wall = time.monotonic() - t0
    assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-3000:]
    results = {(c.props["vpro_check"], c.props["vpro_target"].split(":", 1)[1]): (c.outcome, c.message + "\n" + c.text)
               for c in read_junit(reports / "latest" / "junit.xml") if "vpro_check" in c.props}
    return wall, results, out.stdout + out.stderr


@pytest.mark.lab
def test_twenty_of_two_hundred_clients_unreachable(tmp_path):
    from pytest_vpro.lab import manager
    faults = [{"fault": "amt_ports_filtered", "client": i} for i in DROPPED]
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump({"lab": {"clients": CLIENTS, "net": NET, "dhcp_port": 0,
                                                               "in_band_every": 0,  # see IN_BAND below
                                                               "state_dir": "state", "faults": faults}}))
    info = manager.up(tmp_path / "lab.yaml", log=lambda m: None)
    try:
        doc = yaml.safe_load(Path(info["environment_file"]).read_text())
        doc["timeouts"] = {"connect": CONNECT, "read": READ}
        doc["name"] = "unreachable"
        state = Path(info["environment_file"]).parent  # secret references are relative to it
        everyone = state / "everyone.yaml"
        everyone.write_text(yaml.safe_dump(doc, sort_keys=False))
        dropped = {_fqdn(i) for i in DROPPED}
        doc["clients"] = [c for c in doc["clients"] if c["fqdn"] not in dropped]
        healthy = state / "healthy.yaml"
        healthy.write_text(yaml.safe_dump(doc, sort_keys=False))
        for secret in (state / "secrets").glob("*.secret"):  # item 5: lab credentials only in 0600 files
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
            assert secret.read_text() not in everyone.read_text()
        calls = lambda: {n: (state / n).read_text() if (state / n).exists() else "" for n in CALL_LOGS}  # noqa: E731
        before = calls()
        wall_healthy, only, _ = _run(healthy, tmp_path / "r-healthy")
        wall_all, results, text = _run(everyone, tmp_path / "r-all")
        changes = {n: v[len(before[n]):] for n, v in calls().items() if v != before[n]}
    finally:
        manager.down(tmp_path / "state")
    assert "Traceback" not in text
    assert changes == {}  # item 7 under faults: no state-changing call reached any device or server
    figures = {"clients": CLIENTS, "dropped": len(DROPPED), "wall_healthy_s": round(wall_healthy, 1),
               "results": len(results), "state_changes": len(changes),
               "wall_with_dropped_s": round(wall_all, 1)}
    for name in dropped:
        failed = {k[0]: v[1] for k, v in results.items() if k[1] == name and v[0] in ("failed", "error")}
        assert failed, name
        assert any(re.search(r"no answer|filtered|within", m) for m in failed.values()), failed
        later = [v for k, v in results.items() if k[1] == name and k[0].startswith("S2-")]
        assert all(v[0] == "skipped" for v in later), later  # dependent checks skip (gated)
        figures.setdefault("findings", 0)
        figures["findings"] += len(failed)
    changed = {k: (only[k][0], v[0]) for k, v in results.items() if k in only and only[k][0] != v[0]}
    why = {f"{k[0]} {k[1]}": {"healthy run": only[k][1][:600], "with dropped": results[k][1][:600]} for k in changed}
    assert changed == {}, json.dumps(why, indent=1)  # other clients' (and the site's) verdicts are unchanged
    # The 20 extra clients add ~10 % more tests, each with pytest's own per-test cost (JUnit, Allure): scale the
    # healthy run by the test count. What remains may be four connect timeouts (4 s: the two dropped ports' checks
    # run in parallel with everything else), not one per check, plus 40 % of the run for a shared machine's noise
    # (20 % was exceeded twice on a machine running other labs: +8.5 s on a 20.6 s run). What proves one finding
    # per dropped client is the count of findings and gated skips above; this bound only catches a run that pays
    # a timeout for every check of every dropped client (hundreds of seconds). On 3 Dec the dropped clients cost
    # 10.4 s (12.1 s in CI's fresh root): WS-MAN connected with the read timeout (10 s), not the connect timeout,
    # so each dropped client's first AMT read waited 10 s. With the connect timeout honoured: 2.2 s (3 Dec, a
    # loaded machine), so the bound is back to four connect timeouts.
    scaled = wall_healthy * len(results) / len(only)
    figures["wall_healthy_scaled_s"] = round(scaled, 1)
    assert wall_all - scaled <= 4 * CONNECT + 0.4 * wall_healthy, figures
    print(json.dumps(figures))  # the figures of docs/reliability.md (pytest -s)
