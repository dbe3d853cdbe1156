"""Running a lab in the background: a supervisor process per lab, found through its ``lab.json``.

``vpro-lab up`` (and ``pytest --env lab`` when no lab is running) starts
``python -m pytest_vpro.lab.manager serve``, a supervisor in a session of its
own that builds the estate (:mod:`pytest_vpro.lab.builder`), writes
``lab.json`` with ``status: ready`` and serves until SIGTERM, when it stops
every server it started. ``vpro-lab down`` sends that SIGTERM and waits; it
then checks that nothing is left listening on the lab's addresses.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..process import alive
from . import estate
from .addresses import AddressPlan

UP_TIMEOUT_S = 300
DOWN_TIMEOUT_S = 60


class LabError(RuntimeError):
    pass


def read_info(state: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state / "lab.json").read_text())
    except (OSError, ValueError):
        return None


def status(state: Path) -> dict[str, Any] | None:
    """The running lab's ``lab.json``, or None when no lab runs in ``state``."""
    info = read_info(state)
    if info and info.get("status") == "ready" and alive(info.get("pid")):
        return info
    return None


LAB_LIBRARIES = ("aiohttp", "multidict")  # the simulators' servers: the [lab] extra


def require_lab_extra() -> None:
    """The simulators need the ``[lab]`` extra; checking a real estate does not. Say so before starting."""
    missing = [name for name in LAB_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        raise LabError(f"the lab's simulators need {', '.join(missing)}: pip install 'pytest-vpro[lab]'")


def up(description: Path, *, state: Path | None = None, clients: int | None = None, latency_ms: float | None = None,
       log: Callable[[str], None] = print, timeout: float = UP_TIMEOUT_S) -> dict[str, Any]:
    desc, default_state = estate.load_description(description)
    state = (state or default_state).resolve()
    running = status(state)
    if running:
        raise LabError(f"a lab is already running in {state} (pid {running['pid']}); 'vpro-lab down' stops it")
    require_lab_extra()
    if state.exists():
        if any(state.iterdir()) and not (state / "lab.json").exists():
            raise LabError(f"{state} is not empty and holds no lab (no lab.json): choose another --state folder")
        shutil.rmtree(state)
    state.mkdir(parents=True, mode=0o700)
    argv = [sys.executable, "-m", "pytest_vpro.lab.manager", "serve", "--description", str(description),
            "--state", str(state)]
    if clients is not None:
        argv += ["--clients", str(clients)]
    if latency_ms is not None:
        argv += ["--latency-ms", str(latency_ms)]
    log_path = state / "supervisor.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline, shown = time.monotonic() + timeout, 0
    while True:
        lines = log_path.read_text(errors="replace").splitlines()
        for line in lines[shown:]:
            log(line)
        shown = len(lines)
        info = read_info(state)
        if info and info.get("status") == "ready":
            return info
        if proc.poll() is not None:
            raise LabError(f"the lab did not start (exit {proc.returncode}); see {log_path}")
        if time.monotonic() > deadline:
            _terminate(proc.pid)
            raise LabError(f"the lab was not ready within {timeout:.0f} s; see {log_path}")
        time.sleep(0.2)


def down(state: Path, *, timeout: float = DOWN_TIMEOUT_S) -> bool:
    """Stop the lab in ``state``; True if one was running. Raises if something is left listening."""
    info = read_info(state)
    if not info or not alive(info.get("pid")):
        return False
    _terminate(info["pid"], timeout)
    left = listening(AddressPlan(info["net"]), info)
    if left:
        raise LabError(f"after stopping the lab, still listening: {', '.join(left)}")
    return True


def _terminate(pid: int, timeout: float = DOWN_TIMEOUT_S) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)


def listening(plan: AddressPlan, info: dict[str, Any]) -> list[str]:
    """Lab addresses that still accept TCP connections on a lab port."""
    probes = [(plan.dc, p) for p in (53, 88, 389, 445, 636)] + [(plan.ca, 80), (plan.site_server, 9971)]
    probes += [(c["address"], p) for c in info.get("clients", [])[:3] for p in (16992, 16993)]
    left = []
    for host, port in probes:
        try:
            with socket.create_connection((host, port), timeout=0.3):
                left.append(f"{host}:{port}")
        except OSError:
            pass
    return left


class RunningLab:
    """A lab a pytest run started; :meth:`stop` takes it down at the end of the run."""

    def __init__(self, state: Path) -> None:
        self.state = state

    def stop(self) -> None:
        down(self.state)


def ensure(description: Path, log: Callable[[str], None]) -> tuple[RunningLab | None, Path]:
    """Reuse the lab running for ``description``, or start one; returns (lab to stop or None, environment file)."""
    _, state = estate.load_description(description)
    info = status(state)
    if info is not None:
        log(f"reusing the lab running in {state} (pid {info['pid']}, started with 'vpro-lab up')")
        return None, Path(info["environment_file"])
    log(f"starting the lab in {state} (it is stopped again at the end of the run)")
    info = up(description, state=state, log=log)
    return RunningLab(state), Path(info["environment_file"])


# ------------------------------------------------------------------ the supervisor process

def serve(description: Path, state: Path, clients: int | None, latency_ms: float | None) -> int:
    desc, _ = estate.load_description(description)
    if clients is not None:
        desc = replace(desc, clients=clients)
    if latency_ms is not None:
        desc = replace(desc, latency_ms=latency_ms)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def log(message: str) -> None:
        print(message, flush=True)

    started = time.monotonic()
    try:
        from .builder import build  # noqa: PLC0415 - the simulators (aiohttp, the [lab] extra) load only where a lab is built
        lab = build(desc, state, log)
    except Exception as exc:  # noqa: BLE001 - the supervisor's failure is said in its log and exit status
        log(f"error: {type(exc).__name__}: {exc}")
        return 1
    log(f"ready: {desc.clients} clients in {time.monotonic() - started:.1f} s; environment file "
        f"{lab.info['environment_file']}")
    stop.wait()
    log("stopping")
    lab.stop()
    info = read_info(state) or {}
    info["status"] = "stopped"
    (state / "lab.json").write_text(json.dumps(info, indent=1))
    os.chmod(state / "lab.json", 0o600)
    log("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_vpro.lab.manager")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="build and serve a lab until SIGTERM (used by vpro-lab up)")
    s.add_argument("--description", type=Path, required=True)
    s.add_argument("--state", type=Path, required=True)
    s.add_argument("--clients", type=int)
    s.add_argument("--latency-ms", type=float)
    args = parser.parse_args(argv)
    return serve(args.description, args.state, args.clients, args.latency_ms)


if __name__ == "__main__":
    sys.exit(main())
