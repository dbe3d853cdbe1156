"""Issue 19, item 1: allure-pytest's results written in batches are the files its own logger writes, and an
interrupted run still has them."""
from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pytest_vpro.report import allure_writer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from test_interrupts import STAGE1, kill_group, project, start, wait_hanging

SMALL = '''
import allure, pytest

@pytest.fixture
def fx():
    yield 1

@pytest.mark.parametrize("i", range(7))
def test_p(i, fx):
    allure.dynamic.label("stage", "2")
    allure.dynamic.severity(allure.severity_level.CRITICAL)
    allure.attach(f"evidence of {i}: ✓", name="evidence", attachment_type=allure.attachment_type.TEXT)
    allure.attach(b'{"n": %d}' % i, name="json", attachment_type=allure.attachment_type.JSON)
    assert i != 3, "three is wrong"

def test_skip():
    pytest.skip("not applicable")

def test_error(fx):
    raise RuntimeError("boom")
'''

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
VARIABLE = {"start", "stop", "uuid", "historyId"}  # times and uuids; historyId is stable but dropped with them


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VARIABLE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, str):
        value = UUID.sub("<uuid>", value)
        return re.sub(r"\d+(?=-\w*Thread)|line \d+|\d+\.\d+s", "<n>", value)  # the thread label: pid-thread
    return value


def files(folder: Path) -> Counter:
    """Every file of an allure-results folder, its name and content without uuids and times."""
    out: Counter = Counter()
    for path in folder.iterdir():
        assert not path.name.endswith(".tmp"), path
        kind = UUID.sub("<uuid>", path.name)
        if path.suffix == ".json" and kind.startswith("<uuid>-") and not kind.startswith("<uuid>-attachment"):
            data = _strip(json.loads(path.read_text(encoding="utf8")))
            if isinstance(data.get("children"), list):
                data["children"] = sorted(data["children"])
            out[(kind, json.dumps(data, sort_keys=True, ensure_ascii=False))] += 1
        else:
            out[(kind, path.read_bytes().decode("utf8"))] += 1
    return out


def test_buffered_results_are_the_files_allures_logger_writes(pytester):
    pytester.makepyfile(test_small=SMALL)
    stock = pytester.path / "stock"
    buffered = pytester.path / "buffered"
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", f"--alluredir={stock}")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly",
                                           "-p", "pytest_vpro.report.allure_writer", f"--alluredir={buffered}")
    result.assert_outcomes(passed=6, failed=2, skipped=1)
    want, got = files(stock), files(buffered)
    assert sum(want.values()) == sum(got.values()) > 20
    assert got == want
    results = [json.loads(p.read_text()) for p in buffered.glob("*-result.json")]
    assert {r["status"] for r in results} == {"passed", "failed", "skipped", "broken"}


def test_the_writer_flushes_every_n_and_keeps_a_batch_cut_short(tmp_path, monkeypatch):
    writer = allure_writer.BufferedAllureWriter(tmp_path, every=3)
    writer.report_attached_data(body="a", file_name="1-attachment.txt")
    writer.report_attached_data(body=b"b", file_name="2-attachment.txt")
    assert writer.pending == 2 and not list(tmp_path.iterdir())
    writer.report_attached_data(body="c", file_name="3-attachment.txt")  # the third: a flush
    assert writer.pending == 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "1-attachment.txt", "2-attachment.txt", "3-attachment.txt"]
    writer.report_attached_data(body="d", file_name="4-attachment.txt")
    writer.report_attached_data(body="e", file_name="5-attachment.txt")
    real_replace, calls = allure_writer.os.replace, []

    def interrupted(src, dst):  # Ctrl-C after the first file of the batch
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)
    monkeypatch.setattr(allure_writer.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.flush()
    monkeypatch.setattr(allure_writer.os, "replace", real_replace)
    assert writer.pending == 1
    writer.flush()
    assert (tmp_path / "5-attachment.txt").read_text() == "e" and writer.pending == 0


LOGGERS = '''


def pytest_collection_finish(session):  # which writer allure's plugin manager has, once the session started
    import allure_commons
    names = sorted(type(p).__name__ for p in allure_commons.plugin_manager.get_plugins())
    (Path(str(session.config.rootpath)) / "allure-loggers.txt").write_text(" ".join(names))
'''


def test_an_interrupted_run_still_has_its_allure_results(pytester):
    root = project(pytester, [["T2-CLIENT", "pc03.sample.test"]])
    with open(root / "suites" / "conftest.py", "a") as f:
        f.write(LOGGERS)
    proc = start(root)  # one process, --concurrency 0: every stage 1 check finished before the hanging one
    try:
        wait_hanging(root, proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    loggers = (root / "allure-loggers.txt").read_text().split()
    assert "BufferedAllureWriter" in loggers and "AllureFileLogger" not in loggers, loggers
    results = root / "reports" / "latest" / "allure-results"
    assert not list(results.glob("*.tmp"))
    passed = {r["fullName"] + str([p["value"] for p in r.get("parameters", [])])
              for r in (json.loads(p.read_text()) for p in results.glob("*-result.json")) if r["status"] == "passed"}
    stage1 = [f"suites.stage1.test_stage1#test_client['{k.split('[')[1][:-1]}']" for k in STAGE1]
    assert set(stage1) <= passed, (stage1, sorted(passed))


def test_the_writer_thread_writes_every_batch_and_stop_writes_the_rest(tmp_path):
    writer = allure_writer.BufferedAllureWriter(tmp_path, every=7)
    writer.start()
    for i in range(100):
        writer.report_attached_data(body=f"body {i}", file_name=f"{i}-attachment.txt")
    writer.stop()
    assert writer.pending == 0 and writer.written == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}-attachment.txt" for i in range(100))
    assert (tmp_path / "42-attachment.txt").read_text() == "body 42"
