"""pytest-vpro benchmark: is the waiting hidden? The suite at 0 ms and at L ms per WS-MAN call, interleaved.

    python bench/latency.py                          # 200 clients, 0 and 300 ms, twice each: 0, 300, 0, 300
    python bench/latency.py --clients 1000 --repeat 2
    python bench/latency.py --extra=--concurrency=32 --tag c32   # one pytest option for every run

A machine shared with other work changes speed between minutes, so the two latencies alternate (0, L, 0, L, ...)
instead of running one after the other, and each run is reported with the load average (1 minute) before and
after it. Each run starts its own lab (``bench/run.py``'s ``lab_up``, outside the timing) and stops it after.
The ratio is the median wall time at L ms over the median at 0 ms (issue 19's target: ≤ 1.1). Results go to
``bench/results/<date>-<host>-latency[-tag].md`` and ``.json``, as ``bench/run.py`` writes its own.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ROOT, lab_up, machine, measure, pytest_cmd, save_report

from pytest_vpro.lab import manager


def one_run(work: Path, clients: int, latency: int, i: int, workers: str, extra: list[str]) -> dict:
    env_file, state = lab_up(work / f"{latency}-{i}", clients, latency)
    try:
        load_before = os.getloadavg()[0]
        r = measure(pytest_cmd(env_file, work / f"reports-{latency}-{i}", workers, *extra), ROOT)
        r["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    finally:
        manager.down(state)
    if r["rc"] == 0:  # a failed run keeps its output's end, to see why
        r.pop("tail")
    return r | {"latency_ms": latency}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--latency", type=int, default=300, help="ms per WS-MAN call of the slow runs (default 300)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each latency, alternating (default 2)")
    p.add_argument("--workers", default="auto", help="pytest -n (default auto)")
    p.add_argument("--extra", action="append", default=[], help="a pytest option for every run (repeatable)")
    p.add_argument("--tag", default="", help="appended to the results file name")
    args = p.parse_args(argv)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="vpro-bench-latency-") as tmp:
        for i in range(args.repeat):
            for latency in (0, args.latency):
                (Path(tmp) / f"{latency}-{i}").mkdir()
                r = one_run(Path(tmp), args.clients, latency, i, args.workers, args.extra)
                runs.append(r)
                print(f"{args.clients} clients @ {latency:>4} ms  wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  "
                      f"peak {r['peak_mb']:6.0f} MB  exit {r['rc']}  load {r['load'][0]:.2f} -> {r['load'][1]:.2f}",
                      flush=True)
    report = {"machine": machine(), "date": dt.date.today().isoformat(), "clients": args.clients,
              "latency_ms": args.latency, "workers": args.workers, "extra": args.extra, "runs": runs}
    save_report(report, "latency", args.tag, table(report))
    return 0


def table(report: dict) -> str:
    m = report["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
             f"Linux {m['kernel']}; {report['clients']} clients; pytest -n {report['workers']} "
             f"{' '.join(report['extra'])}; {report['date']}", "",
             "| run | ms per WS-MAN call | wall s | CPU s | peak MB | exit | load (1 min) before, after |",
             "|---|---|---|---|---|---|---|"]
    for n, r in enumerate(report["runs"], 1):
        lines.append(f"| {n} | {r['latency_ms']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} | "
                     f"{r['rc']} | {r['load'][0]:.2f}, {r['load'][1]:.2f} |")
    walls = {ms: [r["wall_s"] for r in report["runs"] if r["latency_ms"] == ms] for ms in (0, report["latency_ms"])}
    if all(walls.values()):
        ratio = statistics.median(walls[report["latency_ms"]]) / statistics.median(walls[0])
        lines += ["", f"Median at {report['latency_ms']} ms / median at 0 ms: {ratio:.2f} (target ≤ 1.1)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
