"""``vpro-report OUT RUN [RUN ...]``: one report from the runs of several shards (or re-render one run).

Each shard (``pytest --env X --shard i/N`` on N CI jobs or hosts) writes its own ``reports/<run id>/``. Copy them
to one place and merge: the Allure results of every run go into ``OUT/allure-results`` (one interactive report,
``OUT/allure-report``), the JUnit results make the fleet table (``OUT/fleet.csv``), ``OUT/summary.json`` and the
ticket file ``OUT/report.html``. A test that appears in two runs is an error (the shards overlap).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
from pathlib import Path

from .. import catalog, interrupts
from .. import environment as envmod
from ..causes import Causes
from ..gating import VERDICTS_TABLE
from ..run import Run, read_selection
from . import history, html, ticket
from .fleet import FleetRecorder, Result
from .junit import JunitCase, read_junit  # noqa: F401 - JunitCase: re-exported, tests read junit.xml here


def results_from_junit(junit: Path) -> dict[str, Result]:
    return {c.nodeid: Result(c.props["vpro_check"], c.props["vpro_target"], int(c.props["vpro_stage"]),
                             "skipped" if c.outcome == "skipped" else "failed" if c.outcome != "passed" else "passed",
                             c.message if c.outcome == "skipped" else (c.text or c.message))
            for c in read_junit(junit) if "vpro_check" in c.props}


def _merge_verdicts(db: Path, into: Path) -> None:
    if not db.is_file():
        return
    con = sqlite3.connect(into)
    try:
        con.execute(VERDICTS_TABLE)
        con.execute("ATTACH DATABASE ? AS part", (str(db),))
        # the verdicts themselves, whatever claim bookkeeping columns each store has (gating.VerdictStore)
        con.execute("INSERT OR IGNORE INTO verdicts (nodeid, owner, outcome, message, evidence, duration) "
                    "SELECT nodeid, owner, outcome, message, evidence, duration FROM part.verdicts "
                    "WHERE outcome IS NOT NULL")
        con.commit()
        con.execute("DETACH DATABASE part")
    finally:
        con.close()


def merge(out: Path, runs: list[Path], *, allure_report: bool = True) -> Path:
    if not runs:
        raise ValueError("no run folders given")
    meta = json.loads((runs[0] / "run.json").read_text())
    env = envmod.load(Path(meta["environment_file"]), inventory_cache=runs[0] / "inventory.json")
    recorder = FleetRecorder(env, catalog.load())
    out.mkdir(parents=True, exist_ok=True)
    (out / "allure-results").mkdir(exist_ok=True)
    for run_dir in runs:
        interrupts.require_results(run_dir)  # a killed run's folder: say so, not "no such file junit.xml"
        part = results_from_junit(run_dir / "junit.xml")
        overlap = set(part) & set(recorder.results)
        if overlap:
            raise ValueError(f"{run_dir}: {len(overlap)} tests already in another run, e.g. {sorted(overlap)[0]}")
        recorder.results.update(part)
        known = {c.what for c in recorder.causes}  # every shard surveyed the shared services itself
        recorder.causes = Causes([*recorder.causes, *(c for c in Causes.read(run_dir) if c.what not in known)])
        selection = read_selection(run_dir)
        recorder.problems.extend(p for p in selection.problems if p not in recorder.problems)
        if selection.targets is not None:
            expected = recorder.expected if recorder.expected is not None else {}
            for key, count in selection.targets.items():
                expected[key] = expected.get(key, 0) + count
            recorder.expected = expected
        for f in (run_dir / "allure-results").glob("*"):
            if f.is_file():
                shutil.copy2(f, out / "allure-results" / f.name)
        _merge_verdicts(run_dir / "verdicts.sqlite", out / "verdicts.sqlite")  # the failures' evidence
    run = Run(id=out.name, dir=out, root=out.parent, env=env, env_path=Path(meta["environment_file"]),
              started=meta.get("started", ""), complete=all(json.loads((r / "run.json").read_text()).get("complete")
                                                            for r in runs))
    if any(json.loads((r / "run.json").read_text()).get("shard") for r in runs):  # one record for the night;
        recorder.history = history.update(run, recorder)  # a re-rendered run recorded itself when it ended
    recorder.write(run)
    if allure_report:
        html.render(run)
    else:
        run.notes.append("allure-report/ not rendered (--no-allure-report): render it from allure-results/ with "
                         "'allure generate'")
    return ticket.render(run, recorder, catalog.load())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vpro-report", description="One report from the runs of several shards (or "
                                "re-render one run): the Allure results, fleet table, summary and report.html of "
                                "every RUN folder merged into OUT.")
    p.add_argument("out", type=Path, help="folder for the merged report")
    p.add_argument("runs", type=Path, nargs="+", help="run folders (reports/<run id>/ of each shard)")
    p.add_argument("--no-allure-report", action="store_true",
                   help="merge the Allure results into OUT/allure-results but do not render OUT/allure-report (at "
                        "thousands of clients the Allure command line takes minutes; the ticket file needs none of it)")
    args = p.parse_args(argv)
    try:
        path = merge(args.out, args.runs, allure_report=not args.no_allure_report)
    except (OSError, ValueError, KeyError, envmod.EnvironmentFileError) as exc:
        print(f"vpro-report: {exc}", file=sys.stderr)
        return 2
    print(f"vpro-report: {path}" + ("" if args.no_allure_report else f" and {args.out / 'allure-report'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
