"""pytest-vpro benchmark: a large fleet in shards, one after another, with the site job's artifact, merged.

    python bench/shards.py                                   # 10,000 clients in 4 shards; one 3,000-client run
    python bench/shards.py --clients 400 --shards 4 --reference 120 --tag smoke   # the same, small

What it runs, on this machine, each scenario timed on its own (the labs start before and stop after, outside the
timing):

* ``reference``: ``pytest --env=<lab of --reference clients>`` in one run: what the shards are compared with;
* ``site job``: ``pytest --env=<lab of --clients clients> --site-verdicts-out=site-verdicts.json`` (docs/ci.md,
  "The site job"): the site and server checks once;
* ``shard I/N``: ``pytest --env=<the same lab> --shard I/N --site-verdicts-in=site-verdicts.json``, one after
  another, as N CI jobs on N machines would run side by side;
* ``merge``: ``vpro-report --no-allure-report OUT <every shard's run folder>``: the fleet table and the ticket file
  (``report.html``) of the whole fleet, with the ticket's size; and ``merge + Allure``, the same with the
  interactive Allure report rendered (the Allure command line; skipped with ``--no-allure``).

Measured per scenario as ``bench/run.py`` measures (wall s, CPU s of every process of the run, peak RSS of its
process tree). The targets (issue 19): the shards and the site job together ≤ 3.5 × the reference at 10,000
against 3,000 clients; peak memory of each shard under 2 GB; the merged ticket file ≤ 20 MB, rendered in under
2 minutes. Results go to ``bench/results/<date>-<host>-shards[-tag].md`` and ``.json``.

On a machine shared with other work, ``VPRO_BENCH_QUIET_FLAG=FILE`` makes each timed scenario raise FILE and wait
for the load to fall first (``bench/run.py``'s ``measure``): other work waits while FILE exists, so it runs while the
labs start, which is not timed. Each scenario's load average before and after is in the table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ROOT, lab_up, machine, measure, pytest_cmd, save_report

from pytest_vpro.lab import manager


def run_folder(reports: Path) -> Path:
    """The run folder a pytest-vpro run wrote under ``--reports-dir`` (``reports/<run id>/``, ``latest`` links it)."""
    return (reports / "latest").resolve()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=10_000, help="the fleet the shards split (default 10,000)")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--reference", type=int, default=3_000, help="clients of the one-run reference (default 3,000)")
    p.add_argument("--workers", default="auto", help="pytest -n (default auto)")
    p.add_argument("--no-allure", action="store_true", help="do not time the merge with the Allure report rendered")
    p.add_argument("--tag", default="", help="appended to the results file name")
    args = p.parse_args(argv)
    results: dict[str, dict] = {}

    def record(name: str, r: dict, **extra) -> None:
        if r["rc"] not in (0,):
            print(r["tail"], flush=True)
        r.pop("tail", None)
        results[name] = r | extra
        print(f"{name:<24} wall {r['wall_s']:8.1f} s  cpu {r['cpu_s']:8.1f} s  peak {r['peak_mb']:7.0f} MB  "
              f"exit {r['rc']}  load {r['load'][0]:.2f} -> {r['load'][1]:.2f} {extra or ''}", flush=True)

    with tempfile.TemporaryDirectory(prefix="vpro-bench-shards-") as tmp:
        work = Path(tmp)
        env_file, state = lab_up(work, args.reference, 0)
        try:
            record(f"reference {args.reference}", measure(pytest_cmd(env_file, work / "reference", args.workers),
                                                          ROOT))
        finally:
            manager.down(state)
        env_file, state = lab_up(work, args.clients, 0)
        site = work / "site-verdicts.json"
        try:
            record("site job", measure(pytest_cmd(env_file, work / "site", args.workers,
                                                  f"--site-verdicts-out={site}"), ROOT))
            for i in range(1, args.shards + 1):
                record(f"shard {i}/{args.shards}", measure(pytest_cmd(
                    env_file, work / f"shard-{i}", args.workers, f"--shard={i}/{args.shards}",
                    f"--site-verdicts-in={site}"), ROOT))
        finally:
            manager.down(state)
        runs = [str(run_folder(work / f"shard-{i}")) for i in range(1, args.shards + 1)]
        merge = [sys.executable, "-m", "pytest_vpro.report.merge"]
        record("merge", measure([*merge, "--no-allure-report", str(work / "merged"), *runs], ROOT),
               ticket_mb=_size_mb(work / "merged" / "report.html"))
        if not args.no_allure:
            record("merge + Allure", measure([*merge, str(work / "merged-allure"), *runs], ROOT),
                   allure_rendered=(work / "merged-allure" / "allure-report" / "index.html").is_file())
        report = {"machine": machine(), "date": dt.date.today().isoformat(), "clients": args.clients,
                  "shards": args.shards, "reference": args.reference, "workers": args.workers, "results": results}
        save_report(report, "shards", args.tag, table(report))
    return 0


def _size_mb(path: Path) -> float | None:
    return round(path.stat().st_size / 1e6, 1) if path.is_file() else None


def table(report: dict) -> str:
    m, res = report["machine"], report["results"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
             f"Linux {m['kernel']}; {report['clients']} clients in {report['shards']} shards, reference "
             f"{report['reference']}; pytest -n {report['workers']}; {report['date']}", "",
             "| scenario | wall s | CPU s | peak MB | exit | load before, after | notes |",
             "|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        notes = ", ".join(f"{k} {r[k]}" for k in ("ticket_mb", "allure_rendered") if k in r)
        load = ", ".join(f"{x:.2f}" for x in r.get("load", []))
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} | {r['rc']} | {load} | "
                     f"{notes} |")
    shards = [r for name, r in res.items() if name.startswith("shard ")]
    ref = res.get(f"reference {report['reference']}")
    if shards and ref and ref["wall_s"]:
        total = sum(r["wall_s"] for r in shards) + res.get("site job", {}).get("wall_s", 0)
        lines += ["", "| target | figure |", "|---|---|",
                  f"| site job + shards, wall s in all / reference ({report['clients']} against "
                  f"{report['reference']} clients; ≤ 3.5 at 10,000 against 3,000) | "
                  f"{total:.1f} / {ref['wall_s']:.1f} = {total / ref['wall_s']:.2f} |",
                  f"| peak MB of the largest shard (< 2,048) | {max(r['peak_mb'] for r in shards):.0f} |"]
        if "merge" in res:
            lines.append(f"| merged ticket file MB (≤ 20), merge wall s (< 120) | {res['merge'].get('ticket_mb')}, "
                         f"{res['merge']['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
