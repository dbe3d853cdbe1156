"""Render the run's Allure results into HTML with the Allure command line.

Two outputs in the run's folder: ``allure-report/`` (the full interactive
report; its ``history/`` is carried into the next run so the nightly report
shows trends) and ``report.html`` (one self-contained file to attach to a
change ticket). The command line comes from the npm registry, pinned in
``package.json`` and installed by ``scripts/setup``; it needs a Java runtime.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

RENDER_TIMEOUT_S = 600


def find_cli() -> str | None:
    candidates = [os.environ.get("VPRO_ALLURE", ""), str(Path.cwd() / "node_modules/.bin/allure"),
                  str(Path(__file__).resolve().parents[2] / "node_modules/.bin/allure"), shutil.which("allure") or ""]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def render(run) -> Path | None:
    results = run.dir / "allure-results"
    if not results.is_dir():
        run.notes.append("no Allure results were written (is allure-pytest installed?): HTML report not rendered")
        return None
    cli = find_cli()
    if cli is None:
        run.notes.append("HTML report not rendered: the Allure command line is not installed (run scripts/setup)")
        return None
    history = run.root / "latest" / "allure-report" / "history"
    if history.is_dir():
        shutil.copytree(history, results / "history", dirs_exist_ok=True)
    title = f"pytest-vpro: {run.env.name} ({run.id})" + ("" if run.complete else " INCOMPLETE")
    single = run.dir / ".single"
    for extra, out in (([], run.dir / "allure-report"), (["--single-file"], single)):
        try:
            proc = subprocess.run([cli, "generate", "--clean", *extra, "--name", title, "-o", str(out), str(results)],
                                  capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            run.notes.append(f"HTML report not rendered: {exc}")
            return None
        if proc.returncode != 0:
            run.notes.append(f"HTML report not rendered: allure exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
            return None
    target = run.dir / "report.html"
    os.replace(single / "index.html", target)
    shutil.rmtree(single, ignore_errors=True)
    return target
