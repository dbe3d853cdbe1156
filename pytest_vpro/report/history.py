"""Night over night: ``reports/history.jsonl``, one compact record per finished run, and what changed since the last.

Each run that ends (complete or interrupted) appends one JSON line to ``history.jsonl`` in its reports folder:
the environment, the run id and times, whether it was complete, the result counts (passed, failed, skipped, and
manual: manual checks skipped for want of an attestation), every client's furthest stage passed, status and
blocking cause, the failed (check, target) pairs, the top root causes, and which (check, target) pairs passed
(a bitmap per check over the record's list of targets, so that a fleet of 1,000 clients costs tens of KB, not MB).
The file keeps the newest :data:`KEEP_PER_ENVIRONMENT` records of each environment.

A run is compared with the newest earlier *counted* record of the same environment: a record is counted when its
run was complete and checked something; an interrupted run or one that checked nothing is recorded, marked, and
never a baseline (nor a point of the trend's line). Regressed: a (check, target) pair that passed then and
failed now. Fixed: one that failed then and passed now. A shard's run records nothing: ``vpro-report`` records
the merged night once.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HISTORY_FILE = "history.jsonl"
KEEP_PER_ENVIRONMENT = 30
TOP_CAUSES = 5
VERSION = 1
MANUAL_PREFIXES = ("manual check not attested", "manual check attestation too old")


# ----------------------------------------------------------------------------------------------- the record
def _bitmap(indices: list[int], size: int) -> str:
    bits = bytearray((size + 7) // 8)
    for i in indices:
        bits[i // 8] |= 1 << (i % 8)
    return base64.b64encode(bytes(bits)).decode("ascii")


def _unbitmap(text: str) -> Iterator[int]:
    for n, byte in enumerate(base64.b64decode(text)):
        for bit in range(8):
            if byte & (1 << bit):
                yield n * 8 + bit


def counts_of(results) -> dict[str, int]:
    """passed, failed, skipped and manual (a skipped manual check: not attested, or its attestation too old)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "manual": 0}
    for r in results:
        if r.outcome == "skipped" and r.message.lstrip().lower().startswith(MANUAL_PREFIXES):
            counts["manual"] += 1
        else:
            counts[r.outcome if r.outcome in counts else "failed"] += 1
    return counts


def make_record(run, recorder, rows: list[dict[str, object]] | None = None,
                now: dt.datetime | None = None) -> dict[str, Any]:
    """The run's compact record (see the module's docstring)."""
    rows = recorder.fleet_rows() if rows is None else rows
    results = list(recorder.results.values())
    targets = sorted({r.target for r in results})
    index = {t: i for i, t in enumerate(targets)}
    passed: dict[str, list[int]] = {}
    failed = set()
    for r in results:
        if r.outcome == "passed":
            passed.setdefault(r.check, []).append(index[r.target])
        elif r.outcome == "failed":
            failed.add((r.check, r.target))
    ready, _ = recorder.verdict(run, rows)
    why = "" if run.complete else "interrupted"
    if not results:
        why = "checked nothing"
    finished = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    return {
        "v": VERSION, "environment": run.env.name, "run": run.id, "time": run.started or finished,
        "finished": finished, "complete": bool(run.complete), "counted": not why, "not_counted": why,
        "ready": ready, "counts": counts_of(results),
        "clients": {str(r["client"]): {"furthest": r["furthest_stage_passed"], "status": r["status"],
                                       "cause": r["blocking_cause"]} for r in rows},
        "failed": sorted([c, t] for c, t in failed),
        "causes": [{"what": c["what"], "targets_blocked": c["targets_blocked"], "checks_blocked": c["checks_blocked"]}
                   for c in recorder.cause_rows()[:TOP_CAUSES]],
        "targets": targets,
        "passed": {c: _bitmap(ix, len(targets)) for c, ix in sorted(passed.items())},
    }


def passed_pairs(record: dict[str, Any]) -> set[tuple[str, str]]:
    targets = record.get("targets") or []
    out: set[tuple[str, str]] = set()
    for check, bits in (record.get("passed") or {}).items():
        out.update((check, targets[i]) for i in _unbitmap(bits) if i < len(targets))
    return out


def failed_pairs(record: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c, t) for c, t in record.get("failed") or []}


# ----------------------------------------------------------------------------------------------- the file
def read(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of ``path`` in file order, and how many lines could not be read (skipped)."""
    records, bad = [], 0
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict) and record.get("environment") and record.get("run"):
            records.append(record)
        else:
            bad += 1
    return records, bad


def trim(records: list[dict[str, Any]], keep: int = KEEP_PER_ENVIRONMENT) -> list[dict[str, Any]]:
    """The newest ``keep`` records of each environment, in file order (the file is in the order runs ended)."""
    seen: Counter[str] = Counter()
    kept = []
    for record in reversed(records):
        seen[record["environment"]] += 1
        if seen[record["environment"]] <= keep:
            kept.append(record)
    return kept[::-1]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Two runs that end at once do not lose each other's record: the reports folder itself is locked (the file
    is replaced, so a lock on it would not hold; a lock file would be one more entry among the run folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def append(path: Path, record: dict[str, Any], keep: int = KEEP_PER_ENVIRONMENT) -> list[dict[str, Any]]:
    """Add ``record`` (a record of the same run id and environment is replaced), trim, and write the file
    atomically. Returns every record of the record's environment, oldest first, the new one last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        records, _ = read(path)
        records = [r for r in records if (r["environment"], r["run"]) != (record["environment"], record["run"])]
        records = trim([*records, record], keep)
        tmp = path.with_name(f".{path.name}-{os.getpid()}")
        tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, path)
    return [r for r in records if r["environment"] == record["environment"]]


# ----------------------------------------------------------------------------------------------- the comparison
def baseline(records: list[dict[str, Any]], record: dict[str, Any]) -> dict[str, Any] | None:
    """The newest counted record of the same environment before ``record`` (records oldest first)."""
    for r in reversed(records):
        if r["environment"] == record["environment"] and r["run"] != record["run"] and r.get("counted"):
            return r
    return None


def compare(previous: dict[str, Any] | None, record: dict[str, Any],
            series: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary.json``'s ``history``: the baseline, what regressed and what was fixed, the counts' trend."""
    now = record["counts"]
    out: dict[str, Any] = {"file": HISTORY_FILE, "recorded": True, "counted": record["counted"],
                           "not_counted": record["not_counted"], "previous_run": None, "previous_time": None,
                           "regressed": [], "fixed": [], "counts": {"now": now, "previous": None, "change": None},
                           "trend": [{"run": r["run"], "time": r["time"], "counted": bool(r.get("counted")),
                                      "not_counted": r.get("not_counted", ""), "ready": bool(r.get("ready")),
                                      **{k: int(r.get("counts", {}).get(k, 0))
                                         for k in ("passed", "failed", "skipped", "manual")}} for r in series]}
    if previous is None:
        return out
    before = previous.get("counts", {})
    failed_now = failed_pairs(record)
    passed_now = passed_pairs(record)
    out.update(previous_run=previous["run"], previous_time=previous.get("time"),
               regressed=[{"check": c, "target": t} for c, t in sorted(failed_now & passed_pairs(previous))],
               fixed=[{"check": c, "target": t} for c, t in sorted(failed_pairs(previous) & passed_now)])
    out["counts"].update(previous={k: int(before.get(k, 0)) for k in now},
                         change={k: now[k] - int(before.get(k, 0)) for k in now})
    return out


def update(run, recorder, rows: list[dict[str, object]] | None = None) -> dict[str, Any]:
    """Record the run in ``<reports>/history.jsonl`` and compare it with its baseline; returns the ``history``
    object of ``summary.json``. A history that cannot be written is a note of the run, never its failure."""
    path = Path(run.root) / HISTORY_FILE
    record = make_record(run, recorder, rows)
    try:
        earlier, bad = read(path)
        series = append(path, record)
    except OSError as exc:
        run.notes.append(f"history: {path} not written ({exc.strerror or exc}): no night-over-night comparison")
        return {"file": HISTORY_FILE, "recorded": False, "counted": record["counted"],
                "not_counted": record["not_counted"], "previous_run": None, "previous_time": None, "regressed": [],
                "fixed": [], "counts": {"now": record["counts"], "previous": None, "change": None}, "trend": []}
    if bad:
        run.notes.append(f"history: {bad} unreadable line(s) of {path} skipped (and dropped)")
    return compare(baseline(earlier, record), record, series)


def summary_line(history: dict[str, Any] | None, env_name: str) -> str | None:
    """The terminal's one ``history:`` line."""
    if not history:
        return None
    if not history.get("recorded"):
        return "history:     not recorded (see the notes)"
    mark = f" (this run is not counted: {history['not_counted']})" if history.get("not_counted") else ""
    if history.get("previous_run") is None:
        return f"history:     no earlier complete run of environment {env_name} to compare with{mark}"
    counts = history["counts"]
    trend = ", ".join(f"{k} {counts['previous'][k]} -> {counts['now'][k]}" for k in ("passed", "failed")
                      if counts["previous"][k] != counts["now"][k])
    return (f"history:     {len(history['regressed'])} regressed, {len(history['fixed'])} fixed since run "
            f"{history['previous_run']}" + (f" ({trend})" if trend else "") + mark)
