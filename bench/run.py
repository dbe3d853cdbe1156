"""pytest-vpro benchmark: the suite against lab estates, side by side with its floor and a naive baseline.

    python bench/run.py                 # the full table (100, 1,000, 3,000 clients; 55 minutes here with --repeat 1)
    python bench/run.py --quick         # 100 and 1,000 clients only, one repetition
    python bench/run.py --sizes 3000 --latencies 0 --suite-only --tag 3000   # one scenario, its own file

Every scenario runs ``--repeat`` times (median reported) in the same invocation, on the same machine:

* ``floor``: as many trivially passing tests as the 1,000-client suite has, same plugins and options (Allure
  and JUnit on, as many processes as the suite): what pytest itself costs per test; and the same floor with
  pytest-vpro's buffered Allure writer (``pytest_vpro/report/allure_writer.py``, what a suite run uses);
* ``suite N @ L ms``: ``pytest --env=<lab of N clients, L ms per WS-MAN call>`` (the lab is started before and
  stopped after, outside the timing);
* ``facts-in 1000``: the 1,000-client run re-judged from its ``--facts-out`` snapshot, no network;
* ``naive 1000 @ 300 ms``: PyPI ``amt`` (``amt.client.Client(...).power_status()``), every device in turn: one
  value per device;
* ``html 1000``: rendering the 1,000-client run's reports (Allure directory + the ticket file), and the ticket
  file's size.

Measured per scenario: wall time, CPU time (user + system of every process of the run), peak memory of all
processes of the run together (RSS sampled every 0.2 s over the process tree). Results are printed as a table and
written to ``bench/results/<date>-<host>.md`` and ``.json`` with the machine's description.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_vpro.lab import manager  # noqa: E402
from pytest_vpro.plugin import auto_is_one_process  # noqa: E402

NET = 120


# ------------------------------------------------------------------------------------------------ measuring
def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reap() -> None:
    """Wait for every child process that has already ended (a lab's supervisor after ``manager.down``):
    ``RUSAGE_CHILDREN`` counts a child's CPU when it is waited for, which subprocess otherwise does at the next
    ``Popen``, inside the next measurement."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


#: A file that other work on a shared machine waits on (``while [ -e FILE ]; do sleep 30; done``): it exists while
#: a scenario is timed, so their heavy runs fall between the timings, in the labs' start-up, which is not timed.
QUIET_FLAG = os.environ.get("VPRO_BENCH_QUIET_FLAG")
QUIET_LOAD, QUIET_WAIT_S = 1.5, 600


def _quiet() -> float:
    """With ``VPRO_BENCH_QUIET_FLAG``: raise the flag and wait (at most 10 minutes) for the 1-minute load average to
    fall below 1.5, so that a run another user started just before is over. Returns the load when timing starts."""
    if QUIET_FLAG:
        Path(QUIET_FLAG).touch()
        deadline = time.monotonic() + QUIET_WAIT_S
        while os.getloadavg()[0] > QUIET_LOAD and time.monotonic() < deadline:
            time.sleep(10)
    return os.getloadavg()[0]


def measure(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 3600) -> dict:
    """Run ``cmd``; wall s, CPU s of it and its children, peak RSS MB of its process tree together, and the load
    average (1 minute) before and after."""
    try:
        return _measure(cmd, cwd, env, timeout)
    finally:  # whatever happened (Ctrl-C in the wait, a command that did not start), other work may go on
        if QUIET_FLAG:
            Path(QUIET_FLAG).unlink(missing_ok=True)


def _measure(cmd: list[str], cwd: Path, env: dict[str, str] | None, timeout: float) -> dict:
    load_before = _quiet()
    _reap()  # a stopped lab's supervisor, not yet waited for, would count as this command's CPU
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], sum(_rss_kb(p) for p in _tree(proc.pid)))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        done.set()
        sampler.join()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak[0] / 1024, "rc": proc.returncode, "tail": out[-1500:],
            "load": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_mb")} | {
        "runs": len(runs), "rc": [r["rc"] for r in runs]}


# ------------------------------------------------------------------------------------------------ scenarios
def lab_up(work: Path, clients: int, latency_ms: int) -> tuple[Path, Path]:
    desc = work / f"lab-{clients}-{latency_ms}.yaml"
    state = work / f"state-{clients}-{latency_ms}"
    desc.write_text(json.dumps({"lab": {"clients": clients, "net": NET, "latency_ms": latency_ms,
                                        "in_band_every": 4, "canaries": 0, "dhcp_port": 0,
                                        "state_dir": str(state)}}))
    info = manager.up(desc, log=lambda line: None, timeout=1800)
    return Path(info["environment_file"]), state


def pytest_cmd(env_file: Path, reports: Path, workers: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", f"--env={env_file}", f"--reports-dir={reports}", "-q", "-n", workers,
            "-p", "no:cacheprovider", "--no-html", *extra]


def floor_suite(work: Path, tests: int) -> Path:
    """A project with ``tests`` trivially passing tests (no pytest-vpro checks), for the floor."""
    proj = work / "floor"
    proj.mkdir(exist_ok=True)
    (proj / "test_floor.py").write_text("import pytest\n\n@pytest.mark.parametrize('i', range(%d))\n"
                                        "def test_floor(i):\n    assert i >= 0\n" % tests)
    (proj / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    return proj


def floor_workers(workers: str) -> str:
    """The floor's ``-n``: as many processes as the suite's. The floor has no ``--env``, so pytest-vpro's ``-n auto``
    (one process on 2 cores or fewer, ``plugin.auto_is_one_process``) would not apply to it.

    Each floor run writes to new Allure and JUnit paths, as each suite run writes to a new run folder: neither
    pays for deleting the previous run's 126,000 files.
    """
    return "0" if workers == "auto" and auto_is_one_process() else workers


def other_workers(workers: str) -> str:
    """What ``-n auto`` is compared with: ``-n 0`` where auto starts workers, ``-n 2`` where it starts none."""
    return "2" if floor_workers(workers) == "0" else "0"


def naive(env_file: Path, latency_ms: int) -> list[str]:
    code = (
        "import amt.client\n"
        "from pytest_vpro import environment\n"
        "from pathlib import Path\n"
        f"env = environment.load(Path({str(env_file)!r}))\n"
        "cred = env.credentials['amt']\n"
        "password = cred.password.resolve()\n"
        "from pytest_vpro.facts import route_connections\n"
        "route_connections(env)\n"
        "states = {}\n"
        "for c in env.clients:\n"
        "    try:\n"
        "        states[c.name] = amt.client.Client(c.name, password, username=cred.user).power_status()\n"
        "    except Exception as exc:\n"
        "        states[c.name] = type(exc).__name__\n"
        "print(len(states), 'devices read')\n")
    return [sys.executable, "-c", code]


def count_tests(env_file: Path, work: Path) -> int:
    out = subprocess.run([sys.executable, "-m", "pytest", f"--env={env_file}", "--collect-only", "-q",
                          f"--reports-dir={work / 'collect'}", "-p", "no:cacheprovider"], cwd=ROOT,
                         capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if "::" in line)


# ------------------------------------------------------------------------------------------------ main
def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 and 1,000 clients, one repetition")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--sizes", default="100,1000,3000")
    p.add_argument("--workers", default="auto", help="pytest -n for every pytest scenario (default auto)")
    p.add_argument("--reference", type=int, default=1000, help="the size for floor, facts-in, html and naive")
    p.add_argument("--latencies", default="0,300", help="ms per WS-MAN call, comma-separated (default 0,300)")
    p.add_argument("--suite-only", action="store_true", help="only the suite scenarios (no floor, html, facts-in, "
                   "naive, -n 0 comparison)")
    p.add_argument("--tag", default="", help="appended to the results file name (for a partial run)")
    args = p.parse_args(argv)
    sizes = [100, 1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vpro-bench-") as tmp:
        work = Path(tmp)

        def record(name: str, runs: list[dict], **extra) -> None:
            results[name] = median_of(runs) | extra
            r = results[name]
            print(f"{name:<28} wall {r['wall_s']:8.1f} s  cpu {r['cpu_s']:8.1f} s  peak {r['peak_mb']:8.0f} MB  "
                  f"{extra or ''}", flush=True)

        for latency in [int(ms) for ms in args.latencies.split(",")]:
            for n in sizes:
                env_file, state = lab_up(work, n, latency)
                try:
                    reports = work / f"reports-{n}-{latency}"
                    keep = latency == 0 and n == args.reference and not args.suite_only
                    runs = []
                    for i in range(repeat):
                        extra = [f"--facts-out={work / 'facts.jsonl'}"] if keep and i == 0 else []
                        runs.append(measure(pytest_cmd(env_file, reports, args.workers, *extra), ROOT))
                    tests = count_tests(env_file, work)
                    record(f"suite {n} @ {latency} ms", runs, tests=tests)
                    if keep and args.workers != "0":  # -n auto must not be slower than the other choice
                        other = other_workers(args.workers)
                        record(f"suite {n} @ {latency} ms, -n {other}", [measure(pytest_cmd(
                            env_file, work / f"reports-n{other}", other), ROOT) for _ in range(repeat)], tests=tests)
                    if keep:
                        record(f"floor ({n}-client count)", [measure(
                            [sys.executable, "-m", "pytest", "-q", "-n", floor_workers(args.workers),
                             "-p", "no:cacheprovider", f"--alluredir={work / f'floor-allure-{i}'}",
                             f"--junitxml={work / f'floor-{i}.xml'}"], floor_suite(work, tests))
                            for i in range(repeat)], tests=tests)
                        record(f"floor ({n}-client count), buffered Allure writer", [measure(
                            [sys.executable, "-m", "pytest", "-q", "-n", floor_workers(args.workers),
                             "-p", "no:cacheprovider", "-p", "pytest_vpro.report.allure_writer",
                             f"--alluredir={work / f'floor-buffered-allure-{i}'}",
                             f"--junitxml={work / f'floor-buffered-{i}.xml'}"], floor_suite(work, tests))
                            for i in range(repeat)], tests=tests)
                        rendered = work / "rendered"
                        html_runs = [measure([sys.executable, "-m", "pytest_vpro.report.merge", str(rendered),
                                              str((reports / "latest").resolve())], ROOT) for _ in range(repeat)]
                        size = (rendered / "report.html").stat().st_size / 1e6 \
                            if (rendered / "report.html").exists() else None
                        record(f"html {n}", html_runs, ticket_mb=round(size, 1) if size else None)
                        record(f"facts-in {n}", [measure(pytest_cmd(
                            env_file, work / "reports-replay", args.workers,
                            f"--facts-in={work / 'facts.jsonl'}"), ROOT) for _ in range(repeat)])
                    if latency == 300 and n == args.reference and not args.suite_only:
                        record(f"naive {n} @ 300 ms (amt)", [measure(naive(env_file, latency), ROOT)])
                finally:
                    manager.down(state)
        write_results(results, args, repeat)  # before the work folder's millions of files are deleted
    return 0


def save_report(report: dict, kind: str, tag: str, text: str) -> None:
    """``report`` (with its ``machine`` and ``date``) as ``bench/results/<date>-<host>[-kind][-tag].json`` and
    ``text``, its table, as the ``.md`` beside it; the table printed too."""
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "-".join(part for part in (report["date"], report["machine"]["host"], kind, tag) if part)
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / f"{stem}.md").write_text(text)
    print(text, flush=True)


def write_results(results: dict[str, dict], args: argparse.Namespace, repeat: int) -> None:
    report = {"machine": machine(), "date": dt.date.today().isoformat(), "workers": args.workers,
              "repeat": repeat, "results": results}
    save_report(report, "", args.tag, table(report))


def table(report: dict) -> str:
    m = report["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
             f"Linux {m['kernel']}; pytest -n {report['workers']}; median of {report['repeat']}; {report['date']}",
             "", "| scenario | tests | wall s | CPU s | peak MB (all processes) | exit | notes |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report["results"].items():  # exit: 0 for every run, or the healthy lab had a failure
        notes = ", ".join(f"{k} {v}" for k, v in r.items() if k in ("ticket_mb",) and v is not None)
        lines.append(f"| {name} | {r.get('tests', '')} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} | "
                     f"{','.join(str(c) for c in r.get('rc', []))} | {notes} |")
    res = report["results"]
    other = other_workers(str(report["workers"]))

    def ratio(a: str, b: str) -> str:
        return f"{res[a]['wall_s'] / res[b]['wall_s']:.2f}" if a in res and b in res and res[b]["wall_s"] else "n/a"
    lines += ["", "| target | ratio |", "|---|---|",
              f"| suite 1000 @ 0 ms / floor (≤ 1.5) | {ratio('suite 1000 @ 0 ms', 'floor (1000-client count)')} |",
              "| floor, buffered Allure writer / floor (information) | "
              f"{ratio('floor (1000-client count), buffered Allure writer', 'floor (1000-client count)')} |",
              "| suite 1000 @ 300 ms / suite 1000 @ 0 ms (≤ 1.5) | "
              f"{ratio('suite 1000 @ 300 ms', 'suite 1000 @ 0 ms')} |",
              f"| naive / suite 1000 @ 300 ms (≥ 5) | {ratio('naive 1000 @ 300 ms (amt)', 'suite 1000 @ 300 ms')} |",
              f"| suite 3000 / suite 1000 @ 0 ms (≤ 3.3) | {ratio('suite 3000 @ 0 ms', 'suite 1000 @ 0 ms')} |",
              f"| suite 3000 / suite 1000 @ 300 ms (≤ 3.3) | {ratio('suite 3000 @ 300 ms', 'suite 1000 @ 300 ms')} |",
              f"| suite 1000 @ 0 ms, -n {report['workers']} / -n {other} "
              f"{'(≤ 1)' if other == '0' else '(information: auto is one process here, for memory)'} | "
              f"{ratio('suite 1000 @ 0 ms', f'suite 1000 @ 0 ms, -n {other}')} |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
