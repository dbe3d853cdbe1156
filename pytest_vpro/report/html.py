"""Render the run's Allure results into ``allure-report/`` with the Allure command line.

``allure-report/`` is the full interactive report; its ``history/`` is carried
into the next run so the nightly report shows trends. (The self-contained
``report.html`` for a change ticket is written by :mod:`.ticket`, not by Allure's
single-file mode, which embeds every result: see there.) The command line comes
from the npm registry, pinned in ``package.json`` and installed by
``scripts/setup``; it needs a Java runtime.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

RENDER_TIMEOUT_S = 600
SINGLE_FILE_MAX_RESULTS = 2_000  # about 8 KB of HTML a result: the lab's 1,581 made 13 MB


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
        run.notes.append("allure-report/ not rendered (report.html is): the Allure command line was not found; "
                         "in a clone run scripts/setup, elsewhere npm install allure-commandline in this folder "
                         "(it needs a Java runtime) or set VPRO_ALLURE to its path")
        return None
    history = run.root / "latest" / "allure-report" / "history"
    if history.is_dir():
        shutil.copytree(history, results / "history", dirs_exist_ok=True)
    title = f"pytest-vpro: {run.env.name} ({run.id})" + ("" if run.complete else " INCOMPLETE")
    out = run.dir / "allure-report"
    try:
        proc = subprocess.run([cli, "generate", "--clean", "--name", title, "-o", str(out), str(results)],
                              capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        run.notes.append(f"Allure report not rendered: {exc}")
        return None
    if proc.returncode != 0:
        run.notes.append(f"Allure report not rendered: allure exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return None
    _single_file(run, cli, title, results)
    return out


def _single_file(run, cli: str, title: str, results: Path) -> None:
    """``allure-report/index.html`` opened from disk shows nothing (the browser refuses its data files), so a
    run small enough also gets ``allure-report.html``, Allure's single-file mode (``--single-file``), which opens
    from disk; a larger one gets the ``allure open`` command that serves the folder."""
    count = sum(1 for _ in results.glob("*-result.json"))
    if count > SINGLE_FILE_MAX_RESULTS:
        run.notes.append(f"interactive: {cli} open {run.dir / 'allure-report'} ({count:,} results: too many for "
                         f"one file; allure-report/index.html does not open from disk)")
        return
    tmp = run.dir / ".allure-single"
    try:
        proc = subprocess.run([cli, "generate", "--clean", "--single-file", "--name", title, "-o", str(tmp),
                               str(results)], capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
        if proc.returncode == 0 and (tmp / "index.html").is_file():
            (tmp / "index.html").replace(run.dir / "allure-report.html")
            run.notes.append(f"interactive: {run.dir / 'allure-report.html'} (opens from disk)")
        else:
            run.notes.append(f"allure-report.html not written: allure exited {proc.returncode}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        run.notes.append(f"allure-report.html not written: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
