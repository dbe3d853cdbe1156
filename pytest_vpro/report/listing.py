"""``pytest --list-checks[=json]``: the catalog with the tests that implement each row."""
from __future__ import annotations

import json
import os
import sys
from typing import TextIO

import pytest

from .. import catalog as catalog_mod

FIELDS = ("id", "stage", "test_stage", "component", "scope", "title", "method", "automated", "disruptive",
          "severity", "applies_to", "guide", "corrective_action", "sources", "tests")


class Listing:
    """Registered for ``--list-checks`` before pytest configures itself: pytest's own session collects (no
    environment needed: nothing is parametrized), this prints the catalog instead of the terminal reporter's
    output, and no test runs."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        config.pluginmanager.set_blocked("terminalreporter")  # stdout carries the catalog alone

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:  # said on stderr: the reporter that would say it is blocked
            sys.stderr.write(f"pytest-vpro: could not collect {report.nodeid}:\n{report.longreprtext}\n")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        tests: dict[str, list[str]] = {}
        for item in session.items:
            marker = item.get_closest_marker("check")
            if marker and marker.args:
                tests.setdefault(marker.args[0], []).append(item.nodeid)
        try:
            emit(catalog_mod.for_config(self.config), tests, self.config.getoption("list_checks"), sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # `pytest --list-checks | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed:  # as pytest does: a collection error ends the session as interrupted (2)
            raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
        return True  # listed, not run


def rows(checks: dict[str, catalog_mod.Check], tests: dict[str, list[str]]) -> list[dict[str, object]]:
    out = []
    for check in checks.values():
        out.append({
            "id": check.id, "stage": list(check.stages), "test_stage": check.test_stage,
            "component": list(check.components), "scope": check.scope, "title": check.title,
            "method": check.method, "automated": check.automated, "disruptive": check.disruptive,
            "severity": check.severity, "applies_to": check.applies_to, "guide": check.guide,
            "corrective_action": check.corrective_action,
            "sources": [{"seed": s, "section": sec} for s, sec in check.sources],
            "tests": sorted(tests.get(check.id, [])),
        })
    return out


def emit(checks: dict[str, catalog_mod.Check], tests: dict[str, list[str]], fmt: str, out: TextIO) -> None:
    data = rows(checks, tests)
    if fmt == "json":
        json.dump(data, out, indent=1)
        out.write("\n")
        return
    out.write(f"{'id':<34} {'stages':<10} {'scope':<26} {'kind':<7} {'tests':>5}  title\n")
    for r in data:
        kind = ("manual" if not r["automated"] else "auto") + ("!" if r["disruptive"] else "")
        stages = ",".join(str(s) for s in r["stage"]) or str(r["test_stage"])
        out.write(f"{r['id']:<34} {stages:<10} {r['scope']:<26} {kind:<7} {len(r['tests']):>5}  {r['title']}\n")
    implemented = sum(1 for r in data if r["tests"])
    out.write(f"\n{len(data)} checks, {implemented} with tests; kind: auto / manual, '!' = disruptive\n")
