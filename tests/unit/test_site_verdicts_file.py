"""site_verdicts.read: the refusals a CLI test does not reach, on files written by hand."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from pytest_vpro import site_verdicts as sv

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def ident(tmp_path):
    (tmp_path / "env.yaml").write_text("name: x\n")
    (tmp_path / "catalog.yaml").write_text("[]\n")
    return sv.identity(tmp_path / "env.yaml", tmp_path / "catalog.yaml", False)


def _file(tmp_path, ident, **changes):
    data = {"format": sv.FORMAT, "version": sv.VERSION, "environment": "x", **ident, "run": "r1",
            "written": (NOW - dt.timedelta(hours=1)).isoformat(), "verdicts": [
                {"check": "C1", "target": "site:x", "outcome": "failed", "message": "C1 failed for x"},
                {"check": "C2", "target": "server:s", "outcome": "passed", "message": ""}]}
    data.update(changes)
    path = tmp_path / "sv.json"
    path.write_text(json.dumps(data))
    return path


def test_a_fitting_file_gives_its_verdicts_saying_where_they_came_from(tmp_path, ident):
    got = sv.read(_file(tmp_path, ident), ident, now=NOW).verdicts
    failed, passed = got[("C1", "site:x")], got[("C2", "server:s")]
    assert failed.outcome == "failed" and failed.message.startswith("C1 failed for x\n  (verdict from the site "
                                                                    "verdicts file sv.json, written 2026-12-03T11")
    assert passed.outcome == "passed" and passed.message == ""  # a passed test has no message: Allure says it
    assert passed.evidence[-1]["name"] == "verdict source" and "by run r1" in passed.evidence[-1]["body"]


def test_a_file_from_another_clock_or_with_a_broken_row_is_refused(tmp_path, ident):
    future = _file(tmp_path, ident, written=(NOW + dt.timedelta(hours=1)).isoformat())
    with pytest.raises(sv.SiteVerdictsError, match="60 minutes in this machine's future"):
        sv.read(future, ident, now=NOW)
    with pytest.raises(sv.SiteVerdictsError, match="no valid time of writing"):
        sv.read(_file(tmp_path, ident, written="yesterday"), ident, now=NOW)
    with pytest.raises(sv.SiteVerdictsError, match="verdict 1 is not one this version writes"):
        sv.read(_file(tmp_path, ident, verdicts=[{"check": "C1", "outcome": "maybe"}]), ident, now=NOW)
    with pytest.raises(sv.SiteVerdictsError, match="not a site verdicts file"):
        sv.read(_file(tmp_path, ident, format="pytest-vpro facts"), ident, now=NOW)
    with pytest.raises(sv.SiteVerdictsError, match="cannot read it"):
        sv.read(tmp_path / "missing.json", ident, now=NOW)


def test_the_age_bound_is_the_option_s(tmp_path, ident):
    path = _file(tmp_path, ident, written=(NOW - dt.timedelta(hours=13)).isoformat())
    with pytest.raises(sv.SiteVerdictsError, match="13.0 h ago, older than --site-verdicts-max-age 12 h"):
        sv.read(path, ident, now=NOW)
    assert sv.read(path, ident, max_age_h=24, now=NOW).verdicts
