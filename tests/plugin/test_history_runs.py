"""Night over night through real runs of the sample suite: the history line, summary.json and report.html's section.

The runs skip Allure (``-p no:allure_pytest``: allure-report/ is not this test's subject, and Java costs seconds),
which leaves report.html rendered."""
from __future__ import annotations

import json

from helpers import latest, make_project

from pytest_vpro.report import history
from pytest_vpro.report.merge import merge

NO_ALLURE = ("-p", "no:allure_pytest")


def night(pytester, faults: dict, *args: str):
    (pytester.path / "environments" / "faults.json").write_text(json.dumps(faults))
    result = pytester.runpytest_subprocess("--env", "sample", "--stage", "2", "-p", "no:randomly", *NO_ALLURE, *args)
    return result, latest(pytester)


def test_two_runs_give_the_history_line_and_the_report_section(pytester, monkeypatch):
    make_project(pytester)
    monkeypatch.setenv("SAMPLE_AMT_PASSWORD", "Sup3r-Secret-Value")
    first, one = night(pytester, {"T1-CLIENT": ["pc02.sample.test"]})
    first.stdout.fnmatch_lines(["history:     no earlier complete run of environment sample to compare with"])
    second, two = night(pytester, {"T1-CLIENT": ["pc03.sample.test"]})
    second.stdout.fnmatch_lines([f"history:     1 regressed, 1 fixed since run {one.name}*"])
    summary = json.loads((two / "summary.json").read_text())["history"]
    assert summary["previous_run"] == one.name
    assert summary["regressed"] == [{"check": "T1-CLIENT", "target": "client:pc03.sample.test"}]
    assert summary["fixed"] == [{"check": "T1-CLIENT", "target": "client:pc02.sample.test"}]  # pc02's T2: was gated
    assert [t["run"] for t in summary["trend"]] == [one.name, two.name]
    page = (two / "report.html").read_text()
    assert "<h2 id='history'>Night over night</h2>" in page and "class='trend'" in page
    assert "Regressed (passed then, failed now): 1" in page and "pc03.sample.test" in page
    assert "T1-CLIENT planted on pc03.sample.test" in page  # the regressed pair's finding now
    assert "<script" not in page
    records, _ = history.read(pytester.path / "reports" / "history.jsonl")
    assert [(r["run"], r["counted"]) for r in records] == [(one.name, True), (two.name, True)]
    assert records[1]["clients"]["pc03.sample.test"]["status"] == "failed"


def test_shards_record_nothing_and_their_merge_records_the_night_once(pytester, monkeypatch):
    make_project(pytester)
    monkeypatch.setenv("SAMPLE_AMT_PASSWORD", "Sup3r-Secret-Value")
    monkeypatch.chdir(pytester.path)
    _, last = night(pytester, {})  # last night, unsharded
    parts = []
    for i in (1, 2):
        result, part = night(pytester, {"T1-CLIENT": ["pc02.sample.test"]}, "--shard", f"{i}/2")
        assert "history:" not in result.stdout.str()
        parts.append(part)
    records, _ = history.read(pytester.path / "reports" / "history.jsonl")
    assert len(records) == 1  # the unsharded night only
    merge(pytester.path / "reports" / "night", parts)
    records, _ = history.read(pytester.path / "reports" / "history.jsonl")
    assert [r["run"] for r in records][1:] == ["night"]  # one record for the two shards
    summary = json.loads((pytester.path / "reports" / "night" / "summary.json").read_text())["history"]
    assert summary["regressed"] == [{"check": "T1-CLIENT", "target": "client:pc02.sample.test"}]
    merge(pytester.path / "reports" / "rerendered", [last])  # one run re-rendered: it recorded itself
    records, _ = history.read(pytester.path / "reports" / "history.jsonl")
    assert [r["run"] for r in records] == [last.name, "night"]
    assert "not in the history" in (pytester.path / "reports" / "rerendered" / "report.html").read_text()
