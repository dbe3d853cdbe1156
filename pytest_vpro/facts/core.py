"""The core of a target's facts: the cache, the per-host error memory, derived indexes, snapshot recording and
replay, and :func:`key`, the one builder of fact names.

A fact is fetched once per run and shared by the target's checks: the first ``get(name, fetch)`` runs ``fetch``
and remembers its value, or its :class:`ProbeError` (a host that does not answer costs one timeout, not one per
check). The facets (:mod:`pytest_vpro.facts.amt`, ``.directory``, ``.windows``, ...) all funnel through
:meth:`Core.get`, which is also where a snapshot (``--facts-out``) records them and ``--facts-in`` replays them.
"""
from __future__ import annotations

import contextvars
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from ..environment import Environment, Server, Target
from ..probes.errors import NotObserved, ProbeError, Unreachable

#: The facts the running check asked for (``Engine.call`` sets a list; :func:`sources` words it): one
#: ``(shared, name)`` per read, ``shared`` True for a fact of the estate core (read once for the run and used by
#: every target's checks). A context variable: each read-ahead thread has its own check.
READS: contextvars.ContextVar[list[tuple[bool, str]] | None] = contextvars.ContextVar("vpro_facts_read",
                                                                                   default=None)
#: The evidence that names them (:func:`sources`), in every verdict; attached to Allure only where the check did not
#: pass (report/fleet.py), so a passing test writes no file for it.
FACTS_READ = "facts read"
#: Sessions and connections go through the cache too; they are how a fact is read, not a source.
_SESSION = re.compile(r"(^|\.)(session|connection)(\.|$)|^kerberos\.(winrm|console)$")


SHARED_HEAD = "read once for the run, shared by every target's checks:"


def sources(reads: list[tuple[bool, str]], target_name: str, *, host: bool = True) -> str:
    """What a check read, for its evidence: the facts shared by the fleet's checks (a site server's inventory,
    the directory, a log: read once for the run), then the target's own (its AMT, its OS, its records), each fact
    once, in the order first read. A shared fact that names the target as one of its parts (a WMI read of this
    client's OS: ``wmi.<its FQDN>.root/cimv2...``) is its own; ``host`` False for a target that is not a host
    (the site, named after its domain, which every server's name ends with)."""
    own_part = f".{target_name.lower()}."
    fleet: dict[str, None] = {}
    own: dict[str, None] = {}
    for shared, name in reads:
        if _SESSION.search(name):
            continue
        (fleet if shared and not (host and own_part in f".{name.lower()}.") else own)[name] = None
    parts = []
    if fleet:
        parts.append(SHARED_HEAD + "\n" + "\n".join(f"  {n}" for n in fleet))
    if own:
        parts.append(f"read for {target_name}:\n" + "\n".join(f"  {n}" for n in own))
    return "\n".join(parts)


def key(*parts: Any) -> str:
    """The name of a fact: its parts joined by ``.``, a list or tuple part joined by ``,``.

    It is both the cache key and, with the target's key, the snapshot key (``{"target": ..., "name": ...}`` in
    :mod:`pytest_vpro.snapshot`), so it must not change shape: ``key("amt", "power_policy")`` is
    ``amt.power_policy``, ``key("ldap.search", "subtree", base, flt, ("cn", "dNSHostName"))`` is
    ``ldap.search.subtree.<base>.<flt>.cn,dNSHostName``, as the snapshots of version 1 name them.
    """
    return ".".join(",".join(map(str, p)) if isinstance(p, (list, tuple)) else str(p) for p in parts)


class Core:
    """One target's facts: what was read, what failed, and the estate's facts it shares with every target."""

    #: set by FactsCache: a snapshot.Recorder (--facts-out) and a snapshot.Replay (--facts-in)
    recorder: Any = None
    replay: Any = None
    hello_capture: Any = None  # the run's passive hello listener (--hello-listen), set on the estate by FactsCache

    def __init__(self, target: Target, env: Environment, estate: "Core | None" = None,
                 run_dir: Path | None = None) -> None:
        self.target, self.env = target, env
        #: facts about the estate as a whole (the directory, the site server's provider, its log), shared by
        #: every target's checks in this process: fetched once per run, not once per client.
        self.estate: Any = estate or self
        #: the run's folder (where disruptive actions are recorded); the estate's when not given
        self.run_dir: Path | None = run_dir if run_dir is not None or estate is None else estate.run_dir
        self._values: dict[str, Any] = {}
        self._errors: dict[str, ProbeError] = {}
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}
        self._derived: dict[str, tuple[Any, Any]] = {}

    # ------------------------------------------------------------------ the cache
    def get(self, name: str, fetch: Callable[[], Any]) -> Any:
        """The fact ``name`` (a :func:`key`): fetched by the first caller, then remembered, value or ProbeError."""
        reads = READS.get()
        if reads is not None:
            reads.append((self.estate is self, name))
        with self._lock:
            if name in self._values:
                return self._values[name]
            if name in self._errors:
                raise self._errors[name]
            lock = self._fetching.setdefault(name, threading.Lock())
        with lock:  # one fetch per fact even when threads ask at once
            with self._lock:
                if name in self._values:
                    return self._values[name]
                if name in self._errors:
                    raise self._errors[name]
            try:
                value = self._fetch(name, fetch)
            except ProbeError as exc:
                with self._lock:
                    self._errors[name] = exc
                raise
            with self._lock:
                self._values[name] = value
            return value

    def note(self, name: str) -> None:
        """Count ``name`` as read by the running check without caching it: a fresh read (after an action of this
        run), which goes past :meth:`get`, is a source all the same (``sources``)."""
        reads = READS.get()
        if reads is not None:
            reads.append((self.estate is self, f"{name} (read again after the action)"))

    def has(self, name: str) -> bool:
        """Whether the fact ``name`` was already read (its value is remembered)."""
        with self._lock:
            return name in self._values

    def per_host(self, host: str, name: str, fetch: Callable[[], Any]) -> Any:
        """``get(name, fetch)``, remembering the first :class:`Unreachable` of ``host`` (a host name, or a channel
        such as ``<fqdn>:amt``) for all its later reads."""
        with self._lock:
            gone = self._errors.get(f"unreachable.{host}")
        if gone is not None:
            raise gone
        try:
            return self.get(name, fetch)
        except Unreachable as exc:
            with self._lock:
                self._errors[f"unreachable.{host}"] = exc
            raise

    def forget(self, name: str) -> Any:
        """Drop the fact ``name`` (a session being closed); its value, or None."""
        with self._lock:
            return self._values.pop(name, None)

    def derived(self, name: str, source: Any, build: Callable[[Any], Any]) -> Any:
        """``build(source)``, worked out once per value of ``source`` in this process, not once per check.

        For an index over an estate-wide fact (every object of the AMT container, every ``SMS_R_System``
        resource, every AMTOPMGR.LOG event): each client's check that scans the whole fact for its own entry
        makes the run quadratic in the fleet. ``name`` keeps one index; a new ``source`` (a fresh read) builds it
        again. Not a fact: never recorded, so a snapshot replays the same way.
        """
        estate = self.estate  # another Core: the estate's indexes, shared by every target's facts
        with estate._lock:  # noqa: SLF001
            hit = estate._derived.get(name)  # noqa: SLF001
        if hit is not None and hit[0] is source:
            return hit[1]
        value = build(source)
        with estate._lock:  # noqa: SLF001
            estate._derived[name] = (source, value)  # noqa: SLF001
        return value

    def _fetch(self, name: str, fetch: Callable[[], Any]) -> Any:
        """``fetch()``, or the snapshot's value when replaying (no network); recorded for --facts-out."""
        if self.replay is not None:
            found, value = self.replay.lookup(self.target.key, name)  # raises a recorded ProbeError
            if not found:
                raise NotObserved(f"{name} of {self.target.name} was not observed in the snapshot "
                                 f"{self.replay.path.name}")
            return value
        try:
            value = fetch()
        except ProbeError as exc:
            if self.recorder is not None:
                self.recorder.record(self.target.key, name, error=exc)
            raise
        if self.recorder is not None:
            self.recorder.record(self.target.key, name, value=value)
        return value

    # ------------------------------------------------------------------ what the environment says
    def server(self, role: str) -> Server:
        """The (first) server of the environment with ``role``; a :class:`ProbeError` if none is listed."""
        found = self.env.servers_with(role)
        if not found:
            raise ProbeError(f"the environment file lists no server with the role {role!r}")
        return found[0]

    def lab_info(self) -> dict[str, Any]:
        """The lab's state file (``lab: {state_file: lab.json}`` in an environment the lab wrote), else {}."""
        name = (self.env.lab or {}).get("state_file")
        if not name:
            return {}
        try:
            return json.loads(self.env.path(name).read_text())
        except (OSError, ValueError):
            return {}

    # ------------------------------------------------------------------ what this run changed (disruptive checks)
    def changed(self) -> dict[str, Any]:
        """What disruptive checks of this run did to this target (``pytest_vpro/actions/`` records it; shared by
        the run's xdist workers), e.g. ``{"unprovisioned": {"serial": ..., "return": 0}}``."""
        return run_record(self.target.name, self.run_dir)


# ---------------------------------------------------------------------- the run's record of disruptive actions
def run_record_path(run_dir: Path | None) -> Path:
    """Where this run's disruptive actions are recorded: ``actions.json`` in the run folder (the plugin hands it
    to FactsCache, an xdist worker's through workerinput), shared by the processes of the run. Without one (a
    process that is not a pytest-vpro run), a file per xdist run (``PYTEST_XDIST_TESTRUNUID``) or per process in
    the temporary folder."""
    if run_dir is not None:
        return Path(run_dir) / "actions.json"
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:  # this process is the run: its pid and start time (a pid alone is reused)
        try:
            started = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            started = "0"
        run = f"pid{os.getpid()}-{started}"
    return Path(tempfile.gettempdir()) / "pytest-vpro-runs" / f"{run}.json"


def run_record(target: str, run_dir: Path | None = None) -> dict[str, Any]:
    """What this run's disruptive actions recorded for ``target`` ({} if nothing)."""
    try:
        return json.loads(run_record_path(run_dir).read_text()).get(target, {})
    except (OSError, ValueError):
        return {}
