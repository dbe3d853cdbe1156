"""reports/history.jsonl: the record a run appends, the 30 kept per environment, the baseline, regressed and fixed."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

from pytest_vpro.report import history
from pytest_vpro.report.fleet import FleetRecorder, Result
from pytest_vpro.report.ticket import night_over_night, trend_svg

CLIENTS = ("pc1", "pc2")


def _recorder(outcomes: dict[tuple[str, str], str], env: str = "lab") -> FleetRecorder:
    clients = [SimpleNamespace(key=f"client:{c}", name=c, provisioning="in_band", canary=False) for c in CLIENTS]
    rec = FleetRecorder(SimpleNamespace(name=env, clients=clients, servers=[]), {})  # type: ignore[arg-type]
    messages = {"failed": "C failed for x\n  found:    a\n  expected: b", "skipped": "cannot decide: x",
                "manual": "manual check not attested: add an attestation", "passed": ""}
    rec.results = {f"{c}[{t}]": Result(c, f"client:{t}", 1, "skipped" if o == "manual" else o, messages[o])
                   for (c, t), o in outcomes.items()}
    rec.expected = {f"client:{c}": sum(t == c for _, t in outcomes) for c in CLIENTS}
    return rec


def _run(tmp_path: Path, run_id: str, env: str = "lab", complete: bool = True):
    return SimpleNamespace(id=run_id, root=tmp_path, env=SimpleNamespace(name=env), complete=complete,
                           started=f"2026-12-{int(run_id[-2:]) % 28 + 1:02d}T01:00:00+00:00", notes=[])


def _night(tmp_path, run_id, outcomes, **kw):
    run = _run(tmp_path, run_id, **{k: v for k, v in kw.items() if k in ("env", "complete")})
    rec = _recorder(outcomes, env=run.env.name)
    rec.history = history.update(run, rec)
    return run, rec


GOOD = {("A", "pc1"): "passed", ("A", "pc2"): "passed", ("B", "pc1"): "passed", ("B", "pc2"): "failed",
        ("M", "pc1"): "manual"}


def test_a_run_appends_one_compact_record(tmp_path):
    _night(tmp_path, "run01", GOOD)
    records, bad = history.read(tmp_path / "history.jsonl")
    assert bad == 0 and len(records) == 1
    r = records[0]
    assert (r["environment"], r["run"], r["complete"], r["counted"]) == ("lab", "run01", True, True)
    assert r["counts"] == {"passed": 3, "failed": 1, "skipped": 0, "manual": 1}
    assert r["failed"] == [["B", "client:pc2"]]
    assert r["clients"]["pc2"] == {"furthest": 0, "status": "failed", "cause": ""}
    assert history.passed_pairs(r) == {("A", "client:pc1"), ("A", "client:pc2"), ("B", "client:pc1")}
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 1  # one JSON line


def test_regressed_and_fixed_since_the_previous_run(tmp_path):
    _night(tmp_path, "run01", GOOD)
    later = {**GOOD, ("A", "pc1"): "failed", ("B", "pc2"): "passed", ("A", "pc2"): "skipped"}
    _, rec = _night(tmp_path, "run02", later)
    h = rec.history
    assert h["previous_run"] == "run01"
    assert h["regressed"] == [{"check": "A", "target": "client:pc1"}]  # passed then, failed now
    assert h["fixed"] == [{"check": "B", "target": "client:pc2"}]  # failed then, passed now (A/pc2: skipped, neither)
    assert h["counts"]["change"] == {"passed": -1, "failed": 0, "skipped": 1, "manual": 0}
    assert [t["run"] for t in h["trend"]] == ["run01", "run02"]
    assert history.summary_line(h, "lab") == "history:     1 regressed, 1 fixed since run run01 (passed 3 -> 2)"
    assert '"history"' in json.dumps({"history": h})  # summary.json's object is plain JSON


def test_an_interrupted_run_is_recorded_marked_and_never_the_baseline(tmp_path):
    _night(tmp_path, "run01", GOOD)
    _, rec = _night(tmp_path, "run02", {("A", "pc1"): "failed"}, complete=False)
    assert rec.history["counted"] is False and rec.history["not_counted"] == "interrupted"
    assert rec.history["previous_run"] == "run01"  # compared, all the same
    assert "this run is not counted: interrupted" in history.summary_line(rec.history, "lab")
    _, rec = _night(tmp_path, "run03", {})  # a run that checked nothing: marked too
    assert rec.history["not_counted"] == "checked nothing" and rec.history["previous_run"] == "run01"
    _, rec = _night(tmp_path, "run04", GOOD)
    assert rec.history["previous_run"] == "run01"  # neither run02 nor run03 is a baseline
    assert [t["counted"] for t in rec.history["trend"]] == [True, False, False, True]


def test_the_first_run_has_nothing_to_compare_with(tmp_path):
    _, rec = _night(tmp_path, "run01", GOOD)
    assert rec.history["previous_run"] is None and rec.history["regressed"] == rec.history["fixed"] == []
    assert history.summary_line(rec.history, "lab") == ("history:     no earlier complete run of environment lab "
                                                        "to compare with")


def test_thirty_records_are_kept_per_environment(tmp_path):
    for n in range(1, 36):
        _night(tmp_path, f"run{n:02d}", GOOD)
    _night(tmp_path, "other01", GOOD, env="prod")
    records, _ = history.read(tmp_path / "history.jsonl")
    lab = [r["run"] for r in records if r["environment"] == "lab"]
    assert lab == [f"run{n:02d}" for n in range(6, 36)]  # the newest 30, oldest first
    assert [r["run"] for r in records if r["environment"] == "prod"] == ["other01"]
    _, rec = _night(tmp_path, "other02", GOOD, env="prod")
    assert rec.history["previous_run"] == "other01"  # another environment's runs are never the baseline


def test_a_record_of_the_same_run_replaces_the_old_one_and_bad_lines_are_skipped(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text("not json\n")
    run, _ = _night(tmp_path, "run01", GOOD)
    assert any("1 unreadable line" in n for n in run.notes)
    _night(tmp_path, "run01", GOOD)
    records, bad = history.read(path)
    assert bad == 0 and [r["run"] for r in records] == ["run01"]


def test_a_history_that_cannot_be_written_is_a_note_not_a_failure(tmp_path):
    (tmp_path / "history.jsonl").mkdir()  # a folder where the file should be
    run, rec = _night(tmp_path, "run01", GOOD)
    assert rec.history["recorded"] is False and any(n.startswith("history: ") for n in run.notes)
    assert history.summary_line(rec.history, "lab") == "history:     not recorded (see the notes)"


def test_the_bitmap_round_trips_over_many_targets():
    ix = [0, 7, 8, 999, 1000, 4095]
    assert list(history._unbitmap(history._bitmap(ix, 4096))) == ix


def test_the_section_and_its_chart(tmp_path):
    _night(tmp_path, "run01", GOOD)
    _night(tmp_path, "run02", {("A", "pc1"): "failed"}, complete=False)
    _, rec = _night(tmp_path, "run03", {**GOOD, ("A", "pc1"): "failed", ("B", "pc2"): "passed"})
    html = night_over_night(rec.history, {}, rec.results)
    assert "<h2 id='history'>Night over night</h2>" in html and "since run <code>run01</code>" in html
    assert "Regressed (passed then, failed now): 1" in html and "Fixed (failed then, passed now): 1" in html
    assert "found:    a" in html  # the regressed pair's finding now
    svg = ET.fromstring(trend_svg(rec.history["trend"]))
    bars = [e for e in svg.iter() if e.tag.endswith("rect") and e.find("{*}title") is not None]
    assert len(bars) == 3 + 1 + 3  # run01: passed, failed, skipped; run02 (hollow): failed; run03 likewise
    assert sum(1 for b in bars if b.get("fill") == "none") == 1
    assert "<script" not in html
    assert "not in the history" in night_over_night(None, {}, {})
