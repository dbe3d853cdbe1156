"""The fleet view of a run: Allure labels, the terminal summary, the fleet table.

The fleet table lists every client with the furthest stage it passed, its
first failing check (or the site-wide check that gates it) and that check's
corrective action, sorted so the desktop team can work down it: the clients
stuck earliest first, grouped by the check that stops them.
"""
from __future__ import annotations

import csv
import html
import io
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator

import allure

from ..catalog import Check
from ..causes import CAUSED_RE, Causes
from ..environment import Environment, Target
from ..facts.core import FACTS_READ
from ..probes import errors
from .history import summary_line as history_line

STAGE_TITLES = {
    1: "Installation pre-requisites met",
    2: "Provisioning requests received at the site server",
    3: "Provisioning starts and completes",
    4: "Collection-initiated power control operational",
    5: "Out of band console connects and operates",
    6: "AMT WebUI available, login succeeds",
    7: "Un-provisioning succeeds",
}
SEVERITY = {"critical": "critical", "normal": "normal", "minor": "minor"}
STATUS_ORDER = {"failed": 0, "gated": 0, "not checked": 1, "ok": 2}  # stuck first, unchecked next, ok last
GATED_RE = re.compile(r"gated: (?P<check>\S+) failed for (?P<target>\S+)")


def allure_labels(check: Check, target: Target) -> Iterator[tuple[str, str]]:
    """Stage as epic, component as feature, check as story, severity; the target is a pytest parameter."""
    for stage in check.stages or (check.test_stage,):
        yield "epic", f"Stage {stage}: {STAGE_TITLES[stage]}"
    for component in check.components:
        yield "feature", component.replace("_", " ")
    yield "story", f"{check.id}: {check.title}"
    yield "severity", SEVERITY.get(check.severity, "normal")
    yield "tag", check.scope
    if check.disruptive:
        yield "tag", "disruptive"
    if not check.automated:
        yield "tag", "manual"


def label_result(check: Check, target: Target) -> None:
    """Give the running test's Allure result its labels (a no-op when allure-pytest is off)."""
    for label_type, value in allure_labels(check, target):
        allure.dynamic.label(label_type, value)


def attach_evidence(verdict) -> None:
    if not verdict.evidence:
        return
    for item in verdict.evidence:
        if item["name"] == FACTS_READ and verdict.outcome == "passed":
            continue  # in the verdict store and the site artifact; a file per passing test would cost the loop
        kind = allure.attachment_type.JSON if item["kind"] == "json" else allure.attachment_type.TEXT
        allure.attach(item["body"], name=item["name"], attachment_type=kind)


@dataclass
class Result:
    check: str
    target: str  # Target.key
    stage: int
    outcome: str  # passed | failed | skipped
    message: str


class FleetRecorder:
    def __init__(self, env: Environment, checks: dict[str, Check]) -> None:
        self.env, self.checks = env, checks
        self.results: dict[str, Result] = {}
        self.expected: dict[str, int] | None = None  # checks selected per target key; None: not known
        self.problems: list[str] = []  # what was missing from the selection or the inventory (never "ready")
        self.causes = Causes()  # the run's dead shared services (causes.json), set by the controller
        self.history: dict | None = None  # night over night (history.update), set by the controller or the merge

    def record(self, report) -> None:
        props = dict(report.user_properties)
        if "vpro_check" not in props:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = report.outcome
        elif report.when == "teardown" and report.failed:
            outcome = "failed"
        else:
            return
        message = ""
        if isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.longrepr is not None:
            message = str(report.longrepr)
        self.results[report.nodeid] = Result(props["vpro_check"], props["vpro_target"], int(props["vpro_stage"]),
                                             outcome, message)

    # ----------------------------------------------------------------- summaries
    def stage_counts(self) -> dict[int, dict[str, int]]:
        per: dict[tuple[int, str], set[str]] = {}
        for r in self.results.values():
            per.setdefault((r.stage, r.target), set()).add(r.outcome)
        counts: dict[int, dict[str, int]] = {}
        for (stage, _), outcomes in per.items():
            c = counts.setdefault(stage, {"targets": 0, "passed": 0, "failed": 0, "skipped": 0})
            c["targets"] += 1
            c["failed" if "failed" in outcomes else "passed" if "passed" in outcomes else "skipped"] += 1
        return dict(sorted(counts.items()))

    def fleet_rows(self) -> list[dict[str, object]]:
        """One row per client. "ok" only for a client every selected check of which ran, none failed or gated;
        a client with checks that did not run (interrupted, deselected, another shard) is "not checked"."""
        checks = self.checks
        by_target: dict[str, list[Result]] = {}
        for r in self.results.values():
            by_target.setdefault(r.target, []).append(r)
        rows = []
        for client in self.env.clients:
            results = sorted(by_target.get(client.key, []), key=lambda r: (r.stage, r.check))
            blocker, blocked_at, finding, blocking_message = None, None, "", ""
            for r in results:
                gated = GATED_RE.search(r.message) if r.outcome == "skipped" else None
                if r.outcome == "failed" or gated:
                    blocker = (gated.group("check"), gated.group("target")) if gated else (r.check, client.name)
                    blocked_at = r.stage
                    lines = [line.strip() for line in r.message.splitlines()]
                    finding = lines[1] if len(lines) > 1 and not gated else (lines[0] if lines else "")
                    blocking_message = r.message
                    break
            furthest = furthest_stage_passed(results, blocked_at)
            wanted = None if self.expected is None else self.expected.get(client.key, 0)
            if blocker is not None:
                status = "gated" if blocker[1] != client.name else "failed"
            elif not results or wanted is None or len(results) < wanted:
                status = "not checked"
                finding = (f"{len(results)} of {wanted} selected checks ran (the run was interrupted)"
                           if results and wanted else "no check ran for this client (deselected, another shard, "
                                                      "or the run stopped first)")
            else:
                status = "ok"
            check = checks.get(blocker[0]) if blocker else None
            cause = self.causes.by_what(caused.group("what")) if blocker and (caused := CAUSED_RE.search(
                blocking_message)) else None
            rows.append({
                "client": client.name, "provisioning": client.provisioning, "canary": client.canary,
                "furthest_stage_passed": furthest,
                "status": status,
                "first_failing_check": blocker[0] if blocker else "",
                "failing_target": blocker[1] if blocker else "",
                "finding": finding,
                "corrective_action": cause.action if cause else check.corrective_action if check else "",
                "blocking_cause": cause.what if cause else "",
            })
        rows.sort(key=lambda r: (STATUS_ORDER[str(r["status"])], r["furthest_stage_passed"],
                                 r["first_failing_check"], r["client"]))
        return rows

    def impact(self) -> dict[str, dict[str, int]]:
        """Per failed check: the targets it failed and the results it gated (skipped because of it), so the
        reports can order failures by what they block."""
        out: dict[str, dict[str, int]] = {}
        for r in self.results.values():
            if r.outcome == "failed":
                out.setdefault(r.check, {"failed": 0, "gated": 0})["failed"] += 1
            elif r.outcome == "skipped" and (m := GATED_RE.search(r.message)):
                out.setdefault(m.group("check"), {"failed": 0, "gated": 0})["gated"] += 1
        return out

    def cause_rows(self) -> list[dict[str, object]]:
        """The run's root causes ranked by what they block: the targets and the results (failed, or gated by
        a failure) whose message says "caused by" it; a dead service that blocked nothing is listed last."""
        blocked: dict[str, tuple[set[str], int]] = {}
        for r in self.results.values():
            if r.outcome not in ("failed", "skipped") or not (m := CAUSED_RE.search(r.message)):
                continue
            targets, n = blocked.get(m.group("what").strip(), (set(), 0))
            targets.add(r.target)
            blocked[m.group("what").strip()] = (targets, n + 1)
        rows = []
        for cause in self.causes:
            targets, n = blocked.get(cause.what, (set(), 0))
            rows.append({"what": cause.what, "where": cause.where, "service": cause.key, "found": cause.found,
                         "targets_blocked": len(targets), "checks_blocked": n, "action": cause.action})
        rows.sort(key=lambda r: (-int(r["targets_blocked"]), -int(r["checks_blocked"]), str(r["what"])))
        return rows

    def verdict(self, run, rows: list[dict[str, object]] | None = None) -> tuple[bool, str]:
        """The change manager's line: ready for rollout only if the run was complete, had no problem with its
        selection or inventory, and every client is "ok" with no site-wide failure."""
        rows = self.fleet_rows() if rows is None else rows
        status = Counter(str(r["status"]) for r in rows)
        clients = {c.key for c in self.env.clients}
        site_failed = {r.check for r in self.results.values() if r.outcome == "failed" and r.target not in clients}
        counts = (f"{status['ok']} of {plural(len(rows), 'client')} ok, {status['failed']} failed, "
                  f"{status['gated']} gated, {status['not checked']} not checked"
                  + (f"; {plural(len(site_failed), 'site-wide check')} failed" if site_failed else ""))
        ready = bool(rows) and run.complete and not self.problems and status["ok"] == len(rows) and not site_failed
        why = "" if ready else (" (the run was interrupted)" if not run.complete else
                                " (the selection or inventory had problems: see the notes)" if self.problems else "")
        stages = self.stage_counts()
        unverified = [str(stage) for stage, c in stages.items() if c["skipped"] == c["targets"]]
        if unverified:
            counts += f"; not verified: stage {', '.join(unverified)} (every check skipped)"
        if missing := [str(stage) for stage in STAGE_TITLES if stage not in stages]:
            counts += f"; not checked: stage {', '.join(missing)} (not selected)"
        return ready, f"{'READY' if ready else 'NOT READY'} for rollout{why}: {counts}"

    def summary_lines(self, run) -> list[str]:
        counts = self.stage_counts()
        env = self.env
        lines = [f"pytest-vpro fleet summary: environment {env.name}, {plural(len(env.clients), 'client')}, "
                 f"{plural(len(env.servers), 'server')}"
                 + (f", shard {run.shard[0]}/{run.shard[1]}" if run.shard else ""),
                 self.verdict(run)[1]]
        causes = self.cause_rows()
        if causes:
            lines.append(f"root causes, by what they block ({len(causes)}): fix these first")
            for i, c in enumerate(causes, 1):
                lines.append(f"  {i}. {c['what']}: blocks {plural(int(c['targets_blocked']), 'target')}, "
                             f"{plural(int(c['checks_blocked']), 'check')} ({c['where']})")
                lines.append(f"     corrective action: {c['action']}")
        lines += [f"{'stage':<6}{'':<52}{'targets':>8}{'passed':>8}{'failed':>8}{'skipped':>8}"]
        for stage, c in counts.items():
            lines.append(f"{stage:<6}{STAGE_TITLES[stage]:<52}{c['targets']:>8}{c['passed']:>8}{c['failed']:>8}"
                         f"{c['skipped']:>8}")
        if not counts:
            lines.append("(no checks ran)")
        if (line := history_line(self.history, env.name)) is not None:
            lines.append(line)
        lines.append(f"fleet table: {run.dir / 'fleet.csv'}")
        lines.append(f"junit xml:   {run.dir / 'junit.xml'}")
        if run.html:
            lines.append(f"report:      {run.html}")
        for note in run.notes:
            lines.append(f"note:        {note}")
        return lines

    # ----------------------------------------------------------------- files
    def write(self, run) -> None:
        rows = self.fleet_rows()
        fields = FLEET_FIELDS
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        (run.dir / "fleet.csv").write_text(buf.getvalue())
        ready, verdict = self.verdict(run, rows)
        summary = {"environment": self.env.name, "stages": self.stage_counts(), "clients": len(self.env.clients),
                   "complete": run.complete, "ready": ready, "verdict": verdict, "causes": self.cause_rows()}
        if self.history is not None:
            summary["history"] = self.history
        (run.dir / "summary.json").write_text(json.dumps(summary, indent=2))
        results_dir = run.dir / "allure-results"
        if results_dir.is_dir():
            _allure_fleet_result(results_dir, rows, summary, fields)
            write_allure_metadata(results_dir, self.env)


FLEET_FIELDS = ["client", "provisioning", "canary", "furthest_stage_passed", "status", "first_failing_check",
                "failing_target", "finding", "corrective_action", "blocking_cause"]


def furthest_stage_passed(results: list[Result], blocked_at: int | None) -> int:
    """The last stage of an unbroken run of passed stages, in stage order over the stages the client was checked
    in. A stage passed if none of its checks failed or was gated and at least one passed: a stage whose checks were
    all skipped (disruptive not allowed, manual not attested, cannot decide) is not passed, and ends the run."""
    outcomes: dict[int, set[str]] = {}
    for r in results:
        gated = r.outcome == "skipped" and GATED_RE.search(r.message)
        outcomes.setdefault(r.stage, set()).add("failed" if gated else r.outcome)
    furthest = 0
    for stage in sorted(outcomes):
        if (blocked_at is not None and stage >= blocked_at) or "failed" in outcomes[stage] \
                or "passed" not in outcomes[stage]:
            break
        furthest = stage
    return furthest


def plural(n: int, word: str) -> str:
    """``1 client``, ``2 clients``, ``1,000 clients``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


#: Allure's Categories tab: the first category a result matches is its one (allurereport.org/docs/categories,
#: how-it-works-categories-file). Messages are pytest-vpro's own: gating.py, checks.py, the probes' findings.
ALLURE_CATEGORIES = [
    {"name": "Gated by an earlier failure", "matchedStatuses": ["skipped"], "messageRegex": "(?s).*gated: .*"},
    {"name": "Manual check not attested", "matchedStatuses": ["skipped"],
     "messageRegex": "(?s).*manual check (not attested|attestation too old).*"},
    {"name": "Cannot decide (no trusted source settles it)", "matchedStatuses": ["skipped"],
     "messageRegex": "(?s).*cannot decide: .*"},
    {"name": "Disruptive check not run", "matchedStatuses": ["skipped"], "messageRegex": "(?s).*disruptive check.*"},
    {"name": "Caused by a shared service that did not answer", "matchedStatuses": ["failed"],
     "messageRegex": "(?s).*caused by: .*"},
    {"name": "Estate did not answer", "matchedStatuses": ["failed", "broken"],
     "messageRegex": "(?si).*(" + "|".join((errors.NO_ANSWER, "no complete answer", "did not answer", "unreachable",
                                            errors.DID_NOT_RESOLVE, "timed out", "timeout", errors.REFUSED,
                                            errors.CLOSED)) + ").*"},
    {"name": "Check failures", "matchedStatuses": ["failed"]},
    {"name": "Unexpected errors in check code", "matchedStatuses": ["broken"]},
]


def write_allure_metadata(results_dir: Path, env: Environment) -> None:
    """``categories.json`` and ``environment.properties`` (Allure's Environment panel) in the results folder."""
    try:
        ours = version("pytest-vpro")
    except PackageNotFoundError:
        ours = "unknown (not installed)"
    (results_dir / "categories.json").write_text(json.dumps(ALLURE_CATEGORIES, indent=1))
    props = {"environment": env.name, "site": f"{env.site.site_name or env.site.code} ({env.site.code}), "
                                             f"domain {env.site.name}",
             "clients": len(env.clients), "servers": len(env.servers), "pytest-vpro": ours}
    (results_dir / "environment.properties").write_text(
        "".join(f"{k}={str(v).replace(chr(10), ' ')}\n" for k, v in props.items()))


def _allure_fleet_result(results_dir: Path, rows: list[dict[str, object]], summary: dict, fields: list[str]) -> None:
    """A synthetic Allure result named 'Fleet table', so the report carries the table as a page."""
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[f]))}</td>" for f in fields) + "</tr>" for r in rows)
    funnel = "".join(f"<tr><td>{s}</td><td>{html.escape(STAGE_TITLES[int(s)])}</td><td>{c['passed']}</td>"
                     f"<td>{c['failed']}</td><td>{c['skipped']}</td></tr>" for s, c in summary["stages"].items())
    page = (f"<html><body><h2>Stage funnel</h2><table border=1><tr><th>stage</th><th></th><th>passed</th>"
            f"<th>failed</th><th>skipped</th></tr>{funnel}</table><h2>Fleet table</h2>"
            f"<table border=1><tr>{head}</tr>{body}</table></body></html>")
    source = f"{uuid.uuid4()}-attachment.html"
    (results_dir / source).write_text(page)
    result = {"uuid": str(uuid.uuid4()), "historyId": "pytest-vpro-fleet-table", "name": "Fleet table",
              "fullName": "pytest-vpro.fleet", "status": "passed", "stage": "finished",
              "description": "Every client's furthest stage passed, first failing check and corrective action.",
              "attachments": [{"name": "fleet table", "source": source, "type": "text/html"}],
              "labels": [{"name": "epic", "value": "Fleet"}, {"name": "feature", "value": "fleet table"},
                         {"name": "suite", "value": "Fleet"}]}
    (results_dir / f"{result['uuid']}-result.json").write_text(json.dumps(result))
