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
from helpers import make_project  # noqa: E402

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
