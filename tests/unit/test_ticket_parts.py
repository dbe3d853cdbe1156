"""The ticket report's parts that need no run: the furthest stage, plurals, the funnel chart, the verdict line."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from types import SimpleNamespace

from pytest_vpro.report.fleet import FleetRecorder, Result, furthest_stage_passed, plural
from pytest_vpro.report.ticket import funnel_svg


def _r(stage: int, outcome: str, message: str = "", check: str = "C", target: str = "client:pc") -> Result:
    return Result(check, target, stage, outcome, message)


def test_a_stage_whose_checks_were_all_skipped_is_not_passed():
    results = [_r(1, "passed"), _r(2, "passed"), _r(2, "skipped", "cannot decide: x"), _r(7, "skipped", "disruptive")]
    assert furthest_stage_passed(results, None) == 2  # stage 7 entirely skipped: not passed (was 7 before)
    assert furthest_stage_passed([_r(1, "passed"), _r(2, "skipped", "gated: S1-X failed for site")], None) == 1
    assert furthest_stage_passed([_r(1, "passed"), _r(2, "failed"), _r(3, "passed")], None) == 1
    assert furthest_stage_passed([_r(1, "passed"), _r(2, "passed")], 2) == 1
    assert furthest_stage_passed([], None) == 0


def test_plurals():
    assert [plural(0, "target"), plural(1, "target"), plural(1000, "client")] == ["0 targets", "1 target",
                                                                                "1,000 clients"]


def test_the_funnel_is_well_formed_svg_with_a_bar_per_stage():
    counts = {1: {"targets": 10, "passed": 7, "failed": 2, "skipped": 1},
              2: {"targets": 8, "passed": 0, "failed": 0, "skipped": 8}}
    svg = ET.fromstring(funnel_svg(counts))
    rects = [e for e in svg.iter() if e.tag.endswith("rect")]
    assert len(rects) == 3 + 1 + 3  # stage 1 three parts, stage 2 one, and the legend's three
    assert "<script" not in funnel_svg(counts) and funnel_svg({}) == "<p>(no checks ran)</p>"


def _recorder(results: list[Result], clients=("pc1", "pc2")) -> FleetRecorder:
    env = SimpleNamespace(name="e", clients=[SimpleNamespace(key=f"client:{c}", name=c, provisioning="in_band",
                                                           canary=False) for c in clients], servers=[])
    rec = FleetRecorder(env, {})  # type: ignore[arg-type]
    rec.results = {f"{i}": r for i, r in enumerate(results)}
    rec.expected = {f"client:{c}": sum(r.target == f"client:{c}" for r in results) for c in clients}
    return rec


def test_the_verdict_line():
    ok = [_r(1, "passed", target="client:pc1"), _r(1, "passed", target="client:pc2")]
    run = SimpleNamespace(complete=True)
    assert _recorder(ok).verdict(run) == (True, "READY for rollout: 2 of 2 clients ok, 0 failed, 0 gated, "
                                               "0 not checked; not checked: stage 2, 3, 4, 5, 6, 7 (not selected)")
    assert _recorder(ok).verdict(SimpleNamespace(complete=False))[1].startswith(
        "NOT READY for rollout (the run was interrupted)")
    site = ok + [_r(1, "failed", target="site:lab")]
    assert _recorder(site).verdict(run)[1].startswith("NOT READY for rollout: 2 of 2 clients ok, 0 failed, 0 gated, "
                                                      "0 not checked; 1 site-wide check failed")
    rec = _recorder(ok)
    rec.problems = ["no check of the catalog was selected"]
    assert rec.verdict(run)[0] is False
    skipped7 = ok + [_r(7, "skipped", "disruptive check", target="client:pc1")]
    assert "; not verified: stage 7 (every check skipped)" in _recorder(skipped7).verdict(run)[1]


def test_failures_are_weighed_by_what_they_gate():
    results = [_r(1, "failed", check="A"), _r(2, "skipped", "gated: A failed for pc", check="B"),
               _r(2, "skipped", "gated: A failed for pc", check="C"), _r(1, "failed", check="D")]
    assert _recorder(results, clients=("pc",)).impact() == {"A": {"failed": 1, "gated": 2},
                                                           "D": {"failed": 1, "gated": 0}}
