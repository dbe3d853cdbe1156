"""What an interrupted run does, and how a killed one is told apart afterwards.

* The first SIGINT or SIGTERM (``pytest_keyboard_interrupt``, :func:`first_signal`): every engine of the process
  stops reading ahead and abandons the network exchanges in flight (their sockets are shut: they end within a
  second, :func:`pytest_vpro.probes.deadline.abandon_all`). pytest then writes the reports, marked incomplete.
  Read-ahead threads are daemons, so a call no socket can cut (libkrb5 asking a KDC) does not keep the
  process from exiting.
* A second SIGINT or SIGTERM while the reports are written ends the process at once, with one line saying so and
  pytest's exit code for an interrupted run (2): no traceback. The first SIGINT already installs that handler
  (:func:`at_start`), so a second one pressed while pytest handles the first cannot slip in between.
* A run killed outright (SIGKILL, a power cut) writes nothing more: :func:`mark_started` writes the run folder's
  ``run.json`` with ``"complete": false`` when the run starts (:func:`at_start`), and the run's own end writes it
  again. A folder
  whose ``run.json`` still says ``complete: false`` and has no ``finished`` time was stopped before it ended;
  :func:`require_results` says so for ``vpro-report``.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import gating

#: pytest's exit code for an interrupted run (pytest.ExitCode.INTERRUPTED)
EXIT_INTERRUPTED = 2


def first_signal() -> None:
    """The run was interrupted: abandon its network calls now; a second signal exits at once."""
    gating.interrupt_all()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_now)


def _exit_now(signum: int, frame: Any) -> None:
    try:
        sys.stderr.write(f"\npytest-vpro: {signal.Signals(signum).name} again: stopped without finishing the "
                         "reports (the run folder's run.json says it is incomplete)\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPTED)  # no traceback, no waiting on anything


def at_start(run: Any) -> None:
    """On the controller, as the run starts: write ``run.json`` with ``"complete": false`` (the run's end writes it
    again), and make the first SIGINT install the exit-at-once handlers before pytest sees it, so that a second
    Ctrl-C pressed while the first is being handled cannot land in pytest's own handling as a traceback."""
    mark_started(run)
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _first_sigint)


def _first_sigint(signum: int, frame: Any) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_now)
    raise KeyboardInterrupt


def mark_started(run: Any) -> None:
    """Write ``run.json`` with ``"complete": false`` as the run starts; the run's end writes it again."""
    meta = {"id": run.id, "environment": run.env.name, "environment_file": str(run.env_path),
            "started": run.started, "finished": None, "complete": False,
            "shard": list(run.shard) if run.shard else None, "html": None,
            "notes": ["written when the run started: a run that ended writes this file again"]}
    (Path(run.dir) / "run.json").write_text(json.dumps(meta, indent=2))


def incomplete(run_dir: Path) -> str | None:
    """Why ``run_dir`` holds no complete run (a sentence), or None when its run ended."""
    path = Path(run_dir) / "run.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        return f"{run_dir} has no run.json: it is not a run folder, or its run was stopped before it started"
    except (OSError, ValueError) as exc:
        return f"{path} cannot be read: {exc}"
    if meta.get("finished") is None and not meta.get("complete"):
        started = meta.get("started") or "?"
        return (f"{run_dir}: the run started {started} never finished (it was killed, or its machine stopped): "
                "its results were not written")
    return None


def require_results(run_dir: Path) -> None:
    """ValueError with :func:`incomplete`'s sentence when ``run_dir``'s run never wrote its results."""
    reason = incomplete(run_dir)
    if reason is not None and not (Path(run_dir) / "junit.xml").exists():
        raise ValueError(reason)


__all__ = ["first_signal", "at_start", "mark_started", "incomplete", "require_results", "EXIT_INTERRUPTED"]
