"""Issue 8, item 4: interrupted and crashed runs keep what finished and say they are incomplete.

The sample suite (``tests/plugin/sample``) runs as a user runs it, in a subprocess; one planted check hangs (its
process writes ``hanging.<pid>`` first) and the test sends the signal then. ``--concurrency 0`` (no prefetch) keeps
the order fixed: every check before the hanging one has finished.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))
from helpers import make_project

SECRET = "Sup3r-Secret-Value"
HANG = '''

import time as _time
_judge = judge


def judge(check_id, target, env):  # tests/reliability: a check that hangs, announced by a file
    here = Path(env.file).parent
    hang = json.loads((here / "hang.json").read_text()) if (here / "hang.json").exists() else []
    if [check_id, target.name] in hang and not list(here.glob("hanging.*")):  # once: a retry then answers
        (here / f"hanging.{os.getpid()}").write_text(os.environ.get("PYTEST_CURRENT_TEST", ""))
        _time.sleep(120)
    return _judge(check_id, target, env)
'''


def project(pytester, hang: list[list[str]]) -> Path:
    root = make_project(pytester)
    with open(root / "suites" / "conftest.py", "a") as f:
        f.write(HANG)
    (root / "environments" / "hang.json").write_text(json.dumps(hang))
    return root


def start(root: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, SAMPLE_AMT_PASSWORD=SECRET, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "pytest", "--env", "sample", "-p", "no:randomly",
                             "-p", "no:cacheprovider", "--concurrency", "0", *args], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_hanging(root: Path, proc: subprocess.Popen, timeout: float = 60) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = [int(p.name.split(".")[1]) for p in (root / "environments").glob("hanging.*")]
        if pids:
            return pids
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    raise AssertionError("the planted check never started")


def kill_group(proc: subprocess.Popen) -> None:
    """Kill the run's whole process group: the hanging check's process too, wherever it was."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def junit(root: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(root / "reports" / "latest" / "junit.xml").iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
        out[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return out


STAGE1 = [f"suites.stage1.test_stage1::test_client[pc0{i}.sample.test]" for i in range(1, 6)]


@pytest.mark.parametrize("sig, args", [(signal.SIGINT, ()), (signal.SIGTERM, ()), (signal.SIGTERM, ("-n", "2"))],
                         ids=["SIGINT", "SIGTERM", "SIGTERM-xdist"])
def test_interrupt_keeps_finished_results_and_marks_the_report_incomplete(pytester, sig, args):
    root = project(pytester, [["T2-CLIENT", "pc03.sample.test"]])
    proc = start(root, *args)
    try:
        wait_hanging(root, proc)
        time.sleep(0.3)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert "Traceback" not in out.split("KeyboardInterrupt")[0]
    run = json.loads((root / "reports" / "latest" / "run.json").read_text())
    assert run["complete"] is False
    got = junit(root)
    assert all(got.get(k) == "passed" for k in STAGE1), got  # every finished result is kept
    if not args:  # in order: the stage 2 check before the hanging one finished too
        assert got.get("suites.stage2.test_stage2::test_client[pc02.sample.test]") == "passed"
    ticket = (root / "reports" / "latest" / "report.html").read_text()
    assert "INCOMPLETE" in ticket and "interrupted" in ticket
    assert SECRET not in out and SECRET not in ticket
    (record,) = [json.loads(line) for line in (root / "reports" / "history.jsonl").read_text().splitlines()]
    assert (record["complete"], record["counted"], record["not_counted"]) == (False, False, "interrupted")
    assert "This run is not counted (interrupted)" in ticket  # recorded and marked: never the next run's baseline
    fleet = {row.split(",")[0]: row.split(",")[4]
             for row in (root / "reports" / "latest" / "fleet.csv").read_text().splitlines()[1:]}
    assert "ok" not in fleet.values(), fleet  # no client had all its checks run: none is "ok"
    assert fleet["pc03.sample.test"] == "not checked"


def test_killed_xdist_worker_is_one_error_and_nothing_else_is_lost(pytester):
    root = project(pytester, [["T2-CLIENT", "pc03.sample.test"]])
    proc = start(root, "-n", "2", "--max-worker-restart", "2")
    try:
        (pid,) = wait_hanging(root, proc)
        running = (root / "environments" / f"hanging.{pid}").read_text()
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=90)
    finally:
        kill_group(proc)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    got = junit(root)
    # The test that was running when the worker died: stage 2's own check, or, when xdist sent a later stage's
    # test of pc03 to the other worker first, that test, whose gate asked for the stage 2 verdict.
    path, name = running.split(" ")[0].split("::")
    dead = f"{path.removesuffix('.py').replace('/', '.')}::{name}"
    assert "pc03.sample.test" in dead, running
    errors = {k for k, v in got.items() if v in ("error", "failure")}
    leaky = {k for k in errors if "test_leaky" in k}  # the sample's own always-failing check (stage 4)
    assert errors - leaky == {dead}, errors
    collected = subprocess.run([sys.executable, "-m", "pytest", "--env", "sample", "--collect-only", "-q",
                                "-p", "no:randomly", "-p", "no:cacheprovider"], cwd=root, capture_output=True,
                               text=True, env=dict(os.environ, SAMPLE_AMT_PASSWORD=SECRET))
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    assert len(got) == len(ids), (len(got), len(ids))  # every other test has its result
    assert json.loads((root / "reports" / "latest" / "run.json").read_text())["complete"] is True


# --- issue 14: a run stuck on a slow server ends in seconds ------------------------------------------------------
SLOW = '''

import time as _time2
_judge4 = judge


def judge(check_id, target, env):  # tests/reliability: a check whose download trickles for minutes (slow.json)
    here = Path(env.file).parent
    slow = json.loads((here / "slow.json").read_text()) if (here / "slow.json").exists() else {}
    url = slow.get(f"{check_id} {target.name}")
    if url:
        from pytest_vpro.probes import x509 as _x509
        (here / f"hanging.{os.getpid()}").write_text(os.environ.get("PYTEST_CURRENT_TEST", "prefetch"))
        _x509.download(url, timeout=60, connect_timeout=60)  # a two-minute budget: only the interrupt ends it
    return _judge4(check_id, target, env)
'''


def slow_project(pytester, url: str) -> Path:
    root = make_project(pytester)
    with open(root / "suites" / "conftest.py", "a") as f:
        f.write(SLOW)
    (root / "environments" / "slow.json").write_text(json.dumps({"T1-CLIENT pc03.sample.test": url}))
    return root


def _trickler():
    sys.path.insert(0, str(Path(__file__).parent))
    from servers import Server, http_head, read_http_request

    def cdp(conn, server):  # one byte a second of a 10 kB CRL: 3 hours, each read well inside its timeout
        read_http_request(conn, server)
        conn.sendall(http_head("200 OK", length=10_000))
        server.trickle(conn, b"\x30" * 10_000, 1.0)
    return Server(cdp)


@pytest.mark.parametrize("sig, args", [(signal.SIGINT, ()), (signal.SIGTERM, ()), (signal.SIGINT, ("--concurrency", "0"))],
                         ids=["SIGINT-read-ahead", "SIGTERM-read-ahead", "SIGINT-in-the-test"])
def test_a_run_stuck_on_a_slow_server_ends_within_seconds_of_the_signal(pytester, sig, args):
    with _trickler() as server:
        root = slow_project(pytester, f"http://{server.host}:{server.port}/ca.crl")
        env = dict(os.environ, SAMPLE_AMT_PASSWORD=SECRET, PYTHONUNBUFFERED="1")
        concurrency = [] if args else ["--concurrency", "4"]  # read ahead: the download runs on a prefetch thread
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "--env", "sample", "-p", "no:randomly", "-p",
                                 "no:cacheprovider", "--no-html", *concurrency, *args], cwd=root, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            wait_hanging(root, proc)
            time.sleep(0.5)
            t0 = time.monotonic()
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=60)
            seconds = time.monotonic() - t0
        finally:
            kill_group(proc)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert seconds < 5, f"{seconds:.1f} s from the signal to the end of the run"
    assert "Traceback" not in out, out[-3000:]
    run = json.loads((root / "reports" / "latest" / "run.json").read_text())
    assert run["complete"] is False and run["finished"]
    assert all(junit(root).get(k) == "passed" for k in STAGE1[:2])  # what finished before it is kept


def test_a_second_ctrl_c_ends_the_run_at_once_without_a_traceback(pytester):
    with _trickler() as server:
        root = slow_project(pytester, f"http://{server.host}:{server.port}/ca.crl")
        proc = start(root)  # --concurrency 0: the main thread is in the download
        try:
            wait_hanging(root, proc)
            time.sleep(0.5)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
            proc.send_signal(signal.SIGINT)  # while the first is being handled: the reports are being written
            out, _ = proc.communicate(timeout=60)
            seconds = time.monotonic() - t0
        finally:
            kill_group(proc)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert "Traceback" not in out and seconds < 5, out[-3000:]


def test_a_killed_run_leaves_a_folder_that_says_it_is_incomplete(pytester, tmp_path):
    with _trickler() as server:
        root = slow_project(pytester, f"http://{server.host}:{server.port}/ca.crl")
        proc = start(root)
        try:
            wait_hanging(root, proc)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            kill_group(proc)
    (run_dir,) = [p for p in (root / "reports").iterdir() if p.is_dir() and not p.is_symlink()]
    meta = json.loads((run_dir / "run.json").read_text())  # written when the run started
    assert meta["complete"] is False and meta["finished"] is None
    report = subprocess.run([sys.executable, "-m", "pytest_vpro.report.merge", str(tmp_path / "merged"), str(run_dir)],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 2
    assert "never finished" in report.stderr and "Traceback" not in report.stderr, report.stderr
