"""``report.html``: the one self-contained file for a change ticket.

Allure's single-file mode embeds every test result: 100,000 results (1,000 clients) make a 370 MB file that takes
a minute and 3.6 GB to render. A ticket needs less, so this file holds, in plain HTML with no script:

* in full: the verdict line (ready or not ready for rollout, with the counts), the run (environment, shard,
  complete or not), the stage funnel as a chart (inline SVG: no script, so it opens from a ticket's attachment)
  and as a table, every failed check with its targets, finding and corrective action, ordered by stage and then
  by what it blocks, and the fleet table (one row per client, wrapped to the page);
* night over night (:mod:`.history`): the results of the environment's recorded runs as a chart (inline SVG), and
  the (check, target) pairs that regressed or were fixed since the last complete run;
* summarised: evidence (attached for the first few targets of each failing check, each attachment cut at a few
  KB), passed checks (counted per check) and skips (counted per reason).

The full interactive report (every result, every attachment, history) is ``allure-report/`` beside it.
"""
from __future__ import annotations

import html
import json
import sqlite3
from collections import Counter
from pathlib import Path

from ..catalog import Check
from ..causes import CAUSED_RE
from .fleet import FLEET_FIELDS, STAGE_TITLES, FleetRecorder, plural
from .history import KEEP_PER_ENVIRONMENT

EVIDENCE_TARGETS_PER_CHECK = 10
EVIDENCE_BYTES = 4_000
HISTORY_ROWS = 200  # regressed or fixed pairs listed; the rest are in summary.json
MAX_BYTES = 20_000_000  # the ticket file's budget; failures beyond it are counted, not listed

CSS = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left}th{background:#f3f3f3}
.failed{color:#b00}.ok{color:#070}.gated{color:#a60}pre{white-space:pre-wrap;margin:0;font-size:12px}
details{margin:.2em 0}summary{cursor:pointer}h2{border-bottom:1px solid #ddd}
.verdict{font-size:18px;font-weight:bold;padding:.5em 1em;border:2px solid}.verdict.ready{color:#070;border-color:#070}
.verdict.notready{color:#b00;border-color:#b00}table.fleet{table-layout:fixed;width:100%}
table.fleet td,table.fleet th{overflow-wrap:anywhere}"""
FUNNEL_COLOURS = {"passed": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e"}


def _e(value: object) -> str:
    return html.escape(str(value))


def _evidence(run_dir: Path) -> dict[str, list[dict[str, str]]]:
    db = run_dir / "verdicts.sqlite"
    if not db.is_file():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT nodeid, evidence FROM verdicts WHERE outcome IN ('failed', 'error') "
                           "AND evidence IS NOT NULL AND evidence != '[]'").fetchall()
    finally:
        con.close()
    return {nodeid: json.loads(text) for nodeid, text in rows}


def render(run, recorder: FleetRecorder, checks: dict[str, Check]) -> Path:
    """Write ``run.dir/report.html`` from the run's results and return its path."""
    results = recorder.results
    evidence = _evidence(run.dir)
    counts = recorder.stage_counts()
    title = f"pytest-vpro: {run.env.name} ({run.id})" + ("" if run.complete else " INCOMPLETE")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{CSS}</style>"
             f"</head><body><h1>{_e(title)}</h1>"]
    outcomes = Counter(r.outcome for r in results.values())
    parts.append(f"<p>Environment <b>{_e(run.env.name)}</b>: {plural(len(run.env.clients), 'client')}, "
                 f"{plural(len(run.env.servers), 'server')}"
                 + (f", shard {run.shard[0]}/{run.shard[1]}" if run.shard else "")
                 + f". Started {_e(run.started)}. {plural(len(results), 'result')}: "
                 f"{outcomes.get('passed', 0)} passed, "
                 f"{outcomes.get('failed', 0)} failed, {outcomes.get('skipped', 0)} skipped."
                 + ("" if run.complete else " <b class='failed'>The run was interrupted: results are incomplete."
                                            "</b>")
                 + " The full interactive report (every result and attachment) is <code>allure-report/</code> "
                   "beside this file.</p>")

    fleet_rows = recorder.fleet_rows()  # once: the verdict and the fleet table both read it
    ready, verdict = recorder.verdict(run, fleet_rows)
    parts.insert(1, f"<p class='verdict {'ready' if ready else 'notready'}'>{_e(verdict)}</p>"
                 + causes_table(recorder.cause_rows()))
    parts.append("<h2>Stage funnel</h2>" + funnel_svg(counts))
    parts.append("<table><tr><th>stage</th><th></th><th>targets</th><th>passed</th>"
                 "<th>failed</th><th>skipped or gated</th></tr>")
    for stage, c in counts.items():
        parts.append(f"<tr><td>{stage}</td><td>{_e(STAGE_TITLES[stage])}</td><td>{c['targets']}</td>"
                     f"<td class='ok'>{c['passed']}</td><td class='failed'>{c['failed']}</td>"
                     f"<td>{c['skipped']}</td></tr>")
    parts.append("</table>")
    parts.append(night_over_night(recorder.history, checks, results))

    failed: dict[str, list[tuple[str, object]]] = {}
    for nodeid, r in results.items():
        if r.outcome == "failed":
            failed.setdefault(r.check, []).append((nodeid, r))
    impact = recorder.impact()
    parts.append(f"<h2>Failed checks ({plural(sum(len(v) for v in failed.values()), 'failure')} in "
                 f"{plural(len(failed), 'check')}, by stage and by what they block)</h2>")
    size = sum(len(p) for p in parts)
    left_out = 0
    def order(c: str) -> tuple:
        blocks = impact.get(c, {"failed": 0, "gated": 0})
        return (checks[c].test_stage if c in checks else 0, -(blocks["failed"] + blocks["gated"]), c)

    for check_id in sorted(failed, key=order):
        check = checks.get(check_id)
        rows = sorted(failed[check_id], key=lambda x: x[1].target)
        gated = impact.get(check_id, {}).get("gated", 0)
        caused = sorted({m.group("what") for _, r in rows if (m := CAUSED_RE.search(r.message))})
        own = [r for _, r in rows if not CAUSED_RE.search(r.message)]
        action = (f"<p><b>Caused by:</b> {_e('; '.join(caused))} (see Root causes: fix that first)"
                  + (f" for {plural(len(rows) - len(own), 'target')}" if own else "") + "</p>" if caused else "")
        if own or not caused:
            action += f"<p><b>Corrective action:</b> {_e(check.corrective_action if check else '')}</p>"
        head = (f"<h3>{_e(check_id)}: {_e(check.title if check else '')} ({plural(len(rows), 'target')}"
                + (f"; {plural(gated, 'later result')} gated by it" if gated else "") + ")</h3>"
                f"{action}<table><tr><th>target</th><th>finding</th></tr>")
        parts.append(head)
        size += len(head)
        for i, (nodeid, r) in enumerate(rows):
            if size > MAX_BYTES:
                left_out += len(rows) - i
                break
            finding = "\n".join(line for line in r.message.splitlines()[1:] if "corrective action:" not in line)
            cell = f"<pre>{_e(finding.strip() or r.message)}</pre>"
            if i < EVIDENCE_TARGETS_PER_CHECK:
                for item in evidence.get(nodeid, []):
                    body = item.get("body", "")
                    cut = body if len(body) <= EVIDENCE_BYTES else (body[:EVIDENCE_BYTES]
                                                                    + "\n... (cut; see allure-report/)")
                    cell += (f"<details><summary>{_e(item.get('name', 'evidence'))}</summary>"
                             f"<pre>{_e(cut)}</pre></details>")
            row = f"<tr><td>{_e(r.target.split(':', 1)[-1])}</td><td>{cell}</td></tr>"
            parts.append(row)
            size += len(row)
        parts.append("</table>")
    if left_out:
        parts.append(f"<p class='failed'>{left_out} more failures are not listed here (size budget); "
                     "see allure-report/ and junit.xml.</p>")

    fields = FLEET_FIELDS
    parts.append(f"<h2>Fleet table ({plural(len(fleet_rows), 'client')})</h2><table class='fleet'><tr>"
                 + "".join(f"<th>{_e(f)}</th>" for f in fields) + "</tr>")
    for r in fleet_rows:
        parts.append("<tr>" + "".join(f"<td class='{_e(r['status']) if f == 'status' else ''}'>{_e(r[f])}</td>"
                                      for f in fields) + "</tr>")
    parts.append("</table>")

    passed = Counter(r.check for r in results.values() if r.outcome == "passed")
    skipped = Counter(_skip_reason(r.message) for r in results.values() if r.outcome == "skipped")
    parts.append("<h2>Passed checks</h2><table><tr><th>check</th><th>title</th><th>targets passed</th></tr>")
    for cid in sorted(passed, key=lambda c: (checks[c].test_stage if c in checks else 0, c)):
        parts.append(f"<tr><td>{_e(cid)}</td><td>{_e(checks[cid].title if cid in checks else '')}</td>"
                     f"<td>{passed[cid]}</td></tr>")
    parts.append("</table><h2>Skipped</h2><table><tr><th>reason</th><th>results</th></tr>")
    for reason, n in skipped.most_common():
        parts.append(f"<tr><td>{_e(reason)}</td><td>{n}</td></tr>")
    parts.append("</table></body></html>")
    out = run.dir / "report.html"
    out.write_text("".join(parts), encoding="utf-8")
    return out


def causes_table(causes: list[dict[str, object]]) -> str:
    """The root causes, ranked by what they block, for the top of the page (empty when there is none)."""
    if not causes:
        return ""
    rows = "".join(f"<tr><td>{i}</td><td class='failed'><b>{_e(c['what'])}</b><br><small>{_e(c['where'])}"
                   f"</small></td><td>{c['targets_blocked']}</td><td>{c['checks_blocked']}</td>"
                   f"<td>{_e(c['action'])}</td></tr>" for i, c in enumerate(causes, 1))
    return (f"<h2 id='causes'>Root causes ({len(causes)}, by what they block): fix these first</h2>"
            "<p>Shared services that did not answer when the run asked them first. Every finding that follows from "
            "one says \"caused by\" it, with this action instead of its own check's.</p><table class='causes'><tr>"
            "<th>#</th><th>cause</th><th>targets blocked</th><th>checks blocked</th><th>corrective action</th>"
            f"</tr>{rows}</table>")


def funnel_svg(counts: dict[int, dict[str, int]], width: int = 640) -> str:
    """The stage funnel as an inline SVG bar chart: one bar per stage, its targets split into passed, failed and
    skipped or gated, scaled to the stage with the most targets. Plain SVG, no script."""
    if not counts:
        return "<p>(no checks ran)</p>"
    label_w, bar_h, gap = 200, 18, 6
    most = max(c["targets"] for c in counts.values()) or 1
    height = len(counts) * (bar_h + gap) + 24
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' role='img' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='12'>"
           "<title>Stage funnel: targets passed, failed and skipped per stage</title>"]
    for i, (stage, c) in enumerate(counts.items()):
        y, x = i * (bar_h + gap), label_w
        out.append(f"<text x='0' y='{y + 13}'>{stage}. {_e(STAGE_TITLES[stage][:28])}</text>")
        for key in ("passed", "failed", "skipped"):
            w = (width - label_w - 60) * c[key] / most
            if w > 0:
                out.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{bar_h}' fill='{FUNNEL_COLOURS[key]}'>"
                           f"<title>stage {stage}: {c[key]} {key}</title></rect>")
            x += w
        out.append(f"<text x='{x + 4:.1f}' y='{y + 13}'>{c['passed']}/{c['targets']}</text>")
    y = len(counts) * (bar_h + gap) + 12
    for j, (key, colour) in enumerate(FUNNEL_COLOURS.items()):
        out.append(f"<rect x='{label_w + j * 110}' y='{y}' width='10' height='10' fill='{colour}'/>"
                   f"<text x='{label_w + j * 110 + 14}' y='{y + 10}'>{'skipped or gated' if key == 'skipped' else key}"
                   "</text>")
    out.append("</svg>")
    return "".join(out)


def night_over_night(history: dict | None, checks: dict[str, Check], results: dict) -> str:
    """The trend section: the pass/fail counts of the recorded runs as a chart, then what regressed and what was
    fixed since the baseline (the newest earlier complete run of the environment)."""
    head = "<h2 id='history'>Night over night</h2>"
    if history is None:
        return head + ("<p>This run is not in the history (a shard is recorded when the shards are merged; a "
                       "re-rendered run was recorded when it ended).</p>")
    if not history.get("recorded"):
        return head + "<p>The history could not be written (see the run's notes): nothing to compare with.</p>"
    trend = history.get("trend") or []
    parts = [head, (f"<p>{plural(len(trend), 'recorded run')} of this environment in <code>{_e(history['file'])}"
                    f"</code> beside the run folders (the newest {KEEP_PER_ENVIRONMENT} are kept); hollow bars are "
                    "runs that were interrupted or checked nothing: recorded, never a baseline.</p>"), trend_svg(trend)]
    if history.get("not_counted"):
        parts.append(f"<p class='failed'>This run is not counted ({_e(history['not_counted'])}): the next run is "
                     "compared with the last complete one.</p>")
    if history.get("previous_run") is None:
        parts.append("<p>No earlier complete run of this environment: nothing regressed or was fixed yet.</p>")
        return "".join(parts)
    counts = history["counts"]
    change = ", ".join(f"{k} {counts['previous'][k]} &rarr; {counts['now'][k]}" for k in counts["now"])
    parts.append(f"<p><b>{plural(len(history['regressed']), 'result')} regressed, {len(history['fixed'])} fixed</b> "
                 f"since run <code>{_e(history['previous_run'])}</code> ({_e(history.get('previous_time') or '')}): "
                 f"{change}.</p>")
    findings = {(r.check, r.target): r.message for r in results.values() if r.outcome == "failed"}
    for title, pairs, with_finding in (("Regressed (passed then, failed now)", history["regressed"], True),
                                       ("Fixed (failed then, passed now)", history["fixed"], False)):
        parts.append(f"<h3>{title}: {len(pairs)}</h3>")
        if not pairs:
            continue
        parts.append("<table class='history'><tr><th>check</th><th>title</th><th>target</th>"
                     + ("<th>finding now</th>" if with_finding else "") + "</tr>")
        for pair in pairs[:HISTORY_ROWS]:
            check = checks.get(pair["check"])
            cell = ""
            if with_finding:
                lines = findings.get((pair["check"], pair["target"]), "").splitlines()
                cell = f"<td><pre>{_e((lines[1] if len(lines) > 1 else ''.join(lines)).strip())}</pre></td>"
            parts.append(f"<tr><td>{_e(pair['check'])}</td><td>{_e(check.title if check else '')}</td>"
                         f"<td>{_e(pair['target'].split(':', 1)[-1])}</td>{cell}</tr>")
        parts.append("</table>")
        if len(pairs) > HISTORY_ROWS:
            parts.append(f"<p>{len(pairs) - HISTORY_ROWS} more: see <code>summary.json</code> (history).</p>")
    return "".join(parts)


def trend_svg(trend: list[dict], width: int = 720) -> str:
    """The recorded runs' results as stacked bars, oldest left: passed, failed, and skipped (manual included);
    a run that is not counted is drawn hollow. Plain SVG, no script."""
    if not trend:
        return "<p>(no recorded run)</p>"
    left, top, plot_h, label_h = 48, 8, 160, 50
    slot = (width - left - 8) / max(len(trend), 10)
    bar_w = max(4.0, slot * 0.7)
    most = max(r["passed"] + r["failed"] + r["skipped"] + r["manual"] for r in trend) or 1
    height = top + plot_h + label_h + 20
    out = [(f"<svg xmlns='http://www.w3.org/2000/svg' role='img' class='trend' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='11'>"
            "<title>Night over night: results passed, failed and skipped per recorded run, oldest first</title>"),
           f"<line x1='{left}' y1='{top + plot_h}' x2='{width - 4}' y2='{top + plot_h}' stroke='#888'/>",
           f"<text x='{left - 4}' y='{top + 10}' text-anchor='end'>{most}</text>",
           f"<text x='{left - 4}' y='{top + plot_h}' text-anchor='end'>0</text>"]
    for i, r in enumerate(trend):
        x, y = left + i * slot + (slot - bar_w) / 2, top + plot_h
        hollow = not r["counted"]
        for key, value in (("passed", r["passed"]), ("failed", r["failed"]), ("skipped", r["skipped"] + r["manual"])):
            h = plot_h * value / most
            if h <= 0:
                continue
            y -= h
            colour = FUNNEL_COLOURS[key]
            paint = f"fill='none' stroke='{colour}' stroke-dasharray='3,2'" if hollow else f"fill='{colour}'"
            out.append(f"<rect x='{x:.1f}' y='{y:.1f}' width='{bar_w:.1f}' height='{h:.1f}' {paint}>"
                       f"<title>{_e(r['run'])}: {value} {key}"
                       + (f" (not counted: {_e(r['not_counted'])})" if hollow else "") + "</title></rect>")
        day = str(r.get("time", ""))[5:16].replace("T", " ")
        cx = x + bar_w / 2
        out.append(f"<text x='{cx:.1f}' y='{top + plot_h + 12}' text-anchor='end' font-size='9' "
                   f"transform='rotate(-45 {cx:.1f} {top + plot_h + 12})'>{_e(day)}</text>")
    y = height - 8
    for j, (key, colour) in enumerate(FUNNEL_COLOURS.items()):
        out.append(f"<rect x='{left + j * 140}' y='{y - 9}' width='10' height='10' fill='{colour}'/>"
                   f"<text x='{left + j * 140 + 14}' y='{y}'>{'skipped or manual' if key == 'skipped' else key}</text>")
    out.append(f"<rect x='{left + 420}' y='{y - 9}' width='10' height='10' fill='none' stroke='#555' "
               f"stroke-dasharray='3,2'/><text x='{left + 434}' y='{y}'>not counted</text>")
    out.append("</svg>")
    return "".join(out)


def _skip_reason(message: str) -> str:
    """A skip message without its target, so that skips can be counted per reason."""
    first = (message.splitlines() or [""])[0]
    if first.startswith("gated: "):
        return "gated: " + first.split(" failed for ", 1)[0].removeprefix("gated: ") + " failed (an earlier stage)"
    return first.split(";", 1)[0][:200]
