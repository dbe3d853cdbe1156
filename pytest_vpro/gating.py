"""Stage gating: a verdict store shared by the workers of one machine.

Rule: stage N of a target opens only when no check of a lower stage failed for
that target or for a site-wide target (the site and every server). A failure
for client A never closes a gate of client B. Skips (not applicable, manual
check not attested, disruptive check not allowed) do not close gates.

Design (see docs/design.md, "Stage gating"): checks are plain functions over
facts, so any worker can evaluate any check. Every (test, target) has one row
in an SQLite file in the run's folder. To decide a gate, a worker asks for the
verdicts of the lower stages; a verdict that nobody has yet is *claimed* and
computed on the spot (recursively, gates first); a verdict claimed by another
worker is waited for. A test replays its stored verdict. So:

* each check runs once per target per run, whichever worker or gate needs it first;
* outcomes do not depend on scheduling: ``-n 0``, ``-n 4`` and every ``--shard i/N``
  compute the same function of the same facts;
* no deadlock: a claim only ever waits on claims of strictly lower stages, and a
  claim nobody can finish is taken over: its owner process died, its lease ran out,
  or its holder gave it up (the claiming thread ended without a verdict, or the store
  closed while a read-ahead thread was still computing it; issue 18).
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import secrets
import sqlite3
import threading
import time
import traceback
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from . import permits
from .catalog import Check
from .causes import CAUSED_RE, Cause, Causes
from .checks import Evidence, Finding
from .environment import Environment, Target
from .facts import run_record_path
from .facts.core import FACTS_READ, READS, sources
from .probes import deadline
from .probes.errors import ProbeError, Undecided
from .process import alive
from .secrets import redact

KIND_ORDER = {"site": 0, "server": 1, "client": 2}


@dataclass(frozen=True)
class Verdict:
    outcome: str  # passed | failed | skipped | error
    message: str = ""
    evidence: tuple[dict[str, str], ...] = ()
    duration: float = 0.0

    @property
    def closes_gate(self) -> bool:
        return self.outcome in ("failed", "error")


@dataclass(eq=False)
class Entry:
    """One collected test: a check on a target."""

    nodeid: str
    check: Check
    target: Target
    func: Callable[..., Any]
    argnames: tuple[str, ...]
    order: int  # the check's position in the catalog

    @property
    def stage(self) -> int:
        return self.check.test_stage

    @property
    def sort_key(self) -> tuple[int, int, int, str]:
        return (self.stage, KIND_ORDER[self.target.kind], self.order, self.nodeid)


#: The store's one table: a verdict per test (outcome NULL while claimed), with its claim's token and lease.
VERDICTS_TABLE = ("CREATE TABLE IF NOT EXISTS verdicts (nodeid TEXT PRIMARY KEY, owner INTEGER, outcome TEXT, "
                  "message TEXT, evidence TEXT, duration REAL, token INTEGER, lease REAL)")


class VerdictStore:
    """Verdicts of one run, shared through SQLite by the processes of one machine.

    A row without an outcome is a *claim*: one thread of one process (``owner`` its pid, ``token`` that claim)
    computes the verdict. A claim holds only while its holder keeps it: the store renews its ``lease`` every
    :data:`RENEW_S` while the claiming thread lives and the store is open, and gives it up (deletes the row) when
    the thread ends without a verdict (an exception, an interrupt) and when the store closes with claims still
    being computed (a worker that finished its tests while its read-ahead threads were in network calls). Another
    process takes over a claim whose owner died, whose lease ran out or that was given up, so no worker waits
    for ever on a verdict that nobody is computing (issue 18).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, timeout=120, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(VERDICTS_TABLE)
        self._done: dict[str, Verdict] = {}
        # the claims this process is computing right now: nodeid -> (token, the thread computing it)
        self._mine: dict[str, tuple[int, threading.Thread]] = {}
        self._lock = threading.RLock()  # the prefetch threads and the test loop share this store
        self._closed = False
        self._renewer: threading.Thread | None = None
        self._wake = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, nodeid: str) -> Verdict | None:
        done = self._done.get(nodeid)  # a verdict known here needs no lock (the prefetch threads hold it often)
        if done is not None:
            return done
        with self._lock:
            if self._closed:
                return None
            return self._get(nodeid)

    def _get(self, nodeid: str) -> Verdict | None:
        if nodeid in self._done:
            return self._done[nodeid]
        row = self._db.execute("SELECT outcome, message, evidence, duration FROM verdicts WHERE nodeid=?",
                               (nodeid,)).fetchone()
        if row is None or row[0] is None:
            return None
        verdict = Verdict(row[0], row[1], tuple(json.loads(row[2])), row[3])
        self._done[nodeid] = verdict
        return verdict

    def claim(self, nodeid: str) -> bool:
        """True if this process (this thread, within it) now owns the computation of ``nodeid``."""
        with self._lock:
            if self._closed:
                return False
            return self._claim(nodeid)

    def _claim(self, nodeid: str) -> bool:
        token, now = secrets.randbits(62), time.time()
        cur = self._db.execute("INSERT OR IGNORE INTO verdicts (nodeid, owner, token, lease) VALUES (?, ?, ?, ?)",
                               (nodeid, os.getpid(), token, now + LEASE_S))
        if cur.rowcount != 1:
            row = self._db.execute("SELECT owner, outcome, token, lease FROM verdicts WHERE nodeid=?",
                                   (nodeid,)).fetchone()
            orphaned = row and row[1] is None and (
                (row[0] == os.getpid() and nodeid not in self._mine)  # an earlier attempt here was interrupted
                or (row[0] != os.getpid() and not alive(row[0]))      # the owner died (a worker killed mid-check)
                or (row[3] or 0) < now)                               # its holder stopped renewing it
            if not orphaned:
                return False
            cur = self._db.execute("UPDATE verdicts SET owner=?, token=?, lease=? WHERE nodeid=? AND token IS ? "
                                   "AND outcome IS NULL", (os.getpid(), token, now + LEASE_S, nodeid, row[2]))
            if cur.rowcount != 1:
                return False
        self._mine[nodeid] = (token, threading.current_thread())
        self._start_renewing()
        return True

    def put(self, nodeid: str, verdict: Verdict) -> bool:
        """Store this process's verdict of its claim; False if the claim is no longer its own (given up when the
        store closed, or taken over after its lease ran out): then the other holder's verdict is the verdict."""
        with self._lock:
            return self._put(nodeid, verdict)

    def _put(self, nodeid: str, verdict: Verdict) -> bool:
        held = self._mine.pop(nodeid, None)
        if self._closed or held is None:
            return False
        cur = self._db.execute("UPDATE verdicts SET outcome=?, message=?, evidence=?, duration=? WHERE nodeid=? "
                               "AND token=? AND outcome IS NULL",
                               (verdict.outcome, verdict.message, json.dumps(list(verdict.evidence)),
                                verdict.duration, nodeid, held[0]))
        if cur.rowcount != 1:
            return False
        self._done[nodeid] = verdict
        return True

    def release(self, nodeid: str) -> None:
        """Give up this process's claim without a verdict (an interrupted evaluation): any worker may compute it
        again at once. Nothing to do once the verdict is stored."""
        with self._lock:
            held = self._mine.pop(nodeid, None)
            if held is not None and not self._closed:
                self._db.execute("DELETE FROM verdicts WHERE nodeid=? AND token=? AND outcome IS NULL",
                                 (nodeid, held[0]))

    # -- leases --
    def _start_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = threading.Thread(target=self._renew_loop, name="vpro-claims", daemon=True)
            self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._wake.wait(RENEW_S):
            self.renew()

    def renew(self) -> None:
        """Extend the lease of every claim whose thread still computes it; give up those whose thread ended
        without a verdict (it cannot store one any more)."""
        with self._lock:
            if self._closed:
                return
            until = time.time() + LEASE_S
            for nodeid, (token, thread) in list(self._mine.items()):
                if thread.is_alive():
                    self._db.execute("UPDATE verdicts SET lease=? WHERE nodeid=? AND token=? AND outcome IS NULL",
                                     (until, nodeid, token))
                else:
                    del self._mine[nodeid]
                    self._db.execute("DELETE FROM verdicts WHERE nodeid=? AND token=? AND outcome IS NULL",
                                     (nodeid, token))

    def close(self) -> None:
        """Give up the claims still being computed here (another worker computes them; a verdict this process
        finds later is dropped), then close."""
        with self._lock:
            if self._closed:
                return
            for nodeid, (token, _thread) in self._mine.items():
                self._db.execute("DELETE FROM verdicts WHERE nodeid=? AND token=? AND outcome IS NULL",
                                 (nodeid, token))
            self._mine.clear()
            self._closed = True
            self._wake.set()
            self._db.close()


#: How long a claim holds without being renewed, and how often its holder renews it (seconds, wall clock: the
#: processes of one machine share it). A lease only runs out when its holder can no longer renew it (a process
#: stopped but not dead): a live claim is renewed many times within one lease.
LEASE_S = 30.0
RENEW_S = 2.0


class OpenClients:
    """The clients whose connections may be open in this process, least recently used first.

    A fleet must not be held open: AMT firmware serves few connections, and a process has a limited number of
    file descriptors. A client is released (``release(target)`` closes its sessions) when the prefetch is done
    with it, or, past ``limit`` open clients, when it is the least recently used idle one. A client with a check
    running (``using``) is never released.
    """

    def __init__(self, release: Callable[[Target], None], limit: int = 256) -> None:
        self._release, self.limit = release, limit
        self._open: OrderedDict[str, Target] = OrderedDict()
        self._busy: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def using(self, target: Target):
        if target.kind != "client":
            yield
            return
        with self._lock:
            self._busy[target.key] = self._busy.get(target.key, 0) + 1
            self._open[target.key] = target
            self._open.move_to_end(target.key)
        try:
            yield
        finally:
            with self._lock:
                self._busy[target.key] -= 1
                excess = len(self._open) - self.limit
                if excess > 0:
                    for key in [key for key in self._open if not self._busy.get(key)][:excess]:
                        self._release_locked(key)

    def done_with(self, target: Target) -> None:
        """Release ``target`` now unless a check is running on it."""
        with self._lock:
            if target.key in self._open and not self._busy.get(target.key):
                self._release_locked(target.key)

    def _release_locked(self, key: str) -> None:  # closing sockets only: no network wait under the lock
        target = self._open.pop(key)
        try:
            self._release(target)
        except Exception:  # noqa: BLE001 - a session that fails to close is closed enough
            pass

    def __len__(self) -> int:
        return len(self._open)


class StageOrder:
    """The read-ahead's work: each target's checks of one stage at a time, the lowest stage first, then the
    targets in their order.

    The test loop runs stage by stage across the fleet. Reading one target's every stage before the next target
    (as the read-ahead did) kept it ahead of the test loop only for the first ``--concurrency`` targets of
    stage 1, and the test loop read the rest itself, one call at a time. A target's next stage is queued only when
    its thread has finished the last one, so a target is read by one thread at a time, in stage order.
    """

    def __init__(self, targets: list[list[Entry]]) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[int, int]] = []  # (stage, position of the target)
        self._stages: list[list[list[Entry]]] = []  # per target: its checks of each stage still to read
        for position, entries in enumerate(targets):  # each in stage order (sort_key)
            self._stages.append([list(group) for _, group in itertools.groupby(entries, key=lambda e: e.stage)])
            heapq.heappush(self._heap, (entries[0].stage, position))

    def take(self) -> tuple[int, list[Entry]] | None:
        """The next target and stage to read (its position, its checks of that stage), or None if none is queued."""
        with self._lock:
            if not self._heap:
                return None
            _, position = heapq.heappop(self._heap)
            return position, self._stages[position].pop(0)

    def next_stage(self, position: int, more: bool = True) -> bool:
        """The target at ``position`` is read to the end of its stage: queue its next stage (unless ``more`` is
        false: its read-ahead stopped). False if nothing of it is left to read."""
        with self._lock:
            rest = self._stages[position]
            if not (more and rest):
                rest.clear()
                return False
            heapq.heappush(self._heap, (rest[0][0].stage, position))
            return True


@dataclass(eq=False)  # identity: the process keeps a weak set of its engines (interrupts)
class Engine:
    """Evaluates checks with their gates; one per process."""

    env: Environment
    store: VerdictStore
    facts: Callable[[Target], Any]
    allow_disruptive: bool = False
    causes: Causes = field(default_factory=Causes)  # the run's dead shared services (causes.py)
    entries: dict[str, Entry] = field(default_factory=dict)
    _by_target: dict[str, list[Entry]] = field(default_factory=dict)
    _sitewide: list[Entry] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _open: OpenClients = field(init=False)
    _closed: dict[tuple[str, int], Entry | None] = field(default_factory=dict)  # see closing_gate
    read_ahead: list[int] = field(default_factory=lambda: [0, 0])  # targets read ahead, of how many

    def __post_init__(self) -> None:
        self._open = OpenClients(lambda target: self.facts(target).release_connections())
        _ENGINES.add(self)

    def register(self, entry: Entry) -> None:
        self.entries[entry.nodeid] = entry
        self._by_target.setdefault(entry.target.key, []).append(entry)
        if entry.target.kind != "client":
            self._sitewide.append(entry)

    def finish_registration(self) -> None:
        for entries in self._by_target.values():
            entries.sort(key=lambda e: e.sort_key)
        self._sitewide.sort(key=lambda e: e.sort_key)

    def gates(self, entry: Entry) -> list[Entry]:
        """Every lower-stage entry that can close this entry's gate, earliest first."""
        own = [e for e in self._by_target.get(entry.target.key, ()) if e.stage < entry.stage]
        others = [e for e in self._sitewide if e.stage < entry.stage and e.target.key != entry.target.key]
        return sorted(own + others, key=lambda e: e.sort_key)

    def obtain(self, entry: Entry) -> Verdict:
        """The entry's verdict: stored, computed here, or waited for."""
        while True:
            verdict = self.store.get(entry.nodeid)
            if verdict is not None:
                return verdict
            if self.store.claim(entry.nodeid):
                stored = False
                try:
                    try:
                        verdict = self.evaluate(entry)
                    except Exception:  # a claim gets a verdict: another worker may wait on it
                        if self._stopping.is_set():
                            raise
                        trace = "".join(traceback.format_exc(limit=-6))
                        verdict = Verdict("error", redact(failure_message(
                            entry, "the engine could not evaluate this check:\n" + trace)))
                    if self._stopping.is_set() and deadline.abandoned():  # cut short by the interrupt
                        return Verdict("skipped", "the run was interrupted before this check finished")
                    stored = self.store.put(entry.nodeid, verdict)
                finally:
                    if not stored:  # no verdict from here: give the claim up, whoever needs it computes it
                        self.store.release(entry.nodeid)
                if stored:
                    return verdict
                if self._stopping.is_set():  # the store closed under this thread: nobody replays this verdict
                    return verdict
                continue  # the claim was taken over (its lease ran out): the other holder's verdict counts
            if self.store.closed:  # a read-ahead thread left running after the store closed: nothing to wait for
                return Verdict("skipped", "the run ended before this check finished")
            time.sleep(0.02)  # another thread or worker computes it; its claim only waits on lower stages

    # -- prefetch: overlap the waiting on slow targets ------------------------------------------------------
    def prefetch(self, entries: list[Entry], threads: int, start: float = 0.0) -> None:
        """Compute the verdicts of ``entries`` in the background, ``threads`` targets at a time.

        A target's checks run in stage order, one thread at a time, so one device sees one connection at a time
        (AMT allows only a few) while up to ``threads`` devices are read at once; the test loop replays the
        verdicts (or waits for one being computed, or computes one no thread has reached yet). The work is one
        target's checks of one stage at a time, lowest stage first (:class:`StageOrder`): the test loop runs
        stage by stage across the fleet, so it finds the stage it is in read ahead for every target, not every
        stage for the first few. ``start`` (0..1) rotates the target order so that xdist workers begin in
        different places; claims in the store keep every verdict computed once per run whichever thread or
        worker gets there first.
        """
        if threads < 1 or not entries:
            return
        by_target: dict[str, list[Entry]] = {}
        for e in sorted(entries, key=lambda e: e.sort_key):
            by_target.setdefault(e.target.key, []).append(e)
        sitewide = [k for k in by_target if not k.startswith("client:")]
        clients = [k for k in by_target if k.startswith("client:")]
        cut = int(len(clients) * start) % max(len(clients), 1)
        order = sitewide + clients[cut:] + clients[:cut]
        self.read_ahead = [0, len(order)]  # targets done, targets to read: the progress line shows it
        # Daemon threads, not a ThreadPoolExecutor: the interpreter joins an executor's threads at exit, so one
        # stuck in a call that no deadline can cut (libkrb5 asking a KDC) kept an interrupted run from ending.
        work = StageOrder([by_target[key] for key in order])
        for n in range(min(threads, len(order))):
            thread = threading.Thread(target=self._prefetch_loop, args=(work,), name=f"vpro-prefetch_{n}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def _prefetch_loop(self, work: StageOrder) -> None:
        while not self._stopping.is_set():
            unit = work.take()
            if unit is None:  # nothing to start: the targets still being read queue their next stage themselves
                return
            position, entries = unit
            read = False
            try:
                for entry in entries:
                    if self._stopping.is_set():
                        return
                    self.obtain(entry)
                read = True
            except Exception:  # noqa: BLE001 - the test loop recomputes and reports it
                pass
            finally:
                if not work.next_stage(position, read):  # every verdict of it is known here: close its sessions
                    self._open.done_with(entries[0].target)
                    self.read_ahead[0] += 1  # one writer per target; a progress line may read it a moment late

    def stop_prefetch(self, wait: float = 1.0) -> None:
        """Start no new check; give the running ones ``wait`` seconds in all to store their verdicts. A thread
        still in a network call then is left to its deadline (it is a daemon: it does not keep the process)."""
        self._stopping.set()
        end = time.monotonic() + wait
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    def interrupt(self) -> None:
        """The run is interrupted: stop reading ahead and abandon every network exchange in flight, now."""
        self._stopping.set()
        deadline.abandon_all()

    def evaluate(self, entry: Entry) -> Verdict:
        check, target = entry.check, entry.target
        if check.disruptive:
            if not self.allow_disruptive:
                return Verdict("skipped", "disruptive check: run with --allow-disruptive to include it "
                                          "(it then runs only on canary clients)")
            if not target.canary:
                return Verdict("skipped", f"disruptive check runs only on canary targets; {target.name} "
                                          "is not marked canary: true")
        gate = self.closing_gate(entry)
        if gate is not None:
            cause = CAUSED_RE.search(self.obtain(gate).message)  # the root cause travels with the gate
            return Verdict("skipped", f"gated: {gate.check.id} failed for {gate.target.name} "
                                      f"(stage {gate.stage}), so stage {entry.stage} does not open"
                                      + (f"; caused by: {cause.group('what')}" if cause else ""))
        return self.call(entry)

    def closing_gate(self, entry: Entry) -> Entry | None:
        """The earliest of :meth:`gates` whose verdict closes the gate, or None: worked out once per target and
        stage (the gates depend on nothing else), not once per check: a client has 60 checks, each with up to 150
        gates, which at 1,000 clients were 6 million lookups."""
        key = (entry.target.key, entry.stage)
        if key in self._closed:
            return self._closed[key]
        found = next((gate for gate in self.gates(entry) if self.obtain(gate).closes_gate), None)
        self._closed[key] = found  # verdicts never change within a run, so neither does this
        return found

    @staticmethod
    def _cause(lookup: Callable[[Any], Cause | None], what: Any) -> Cause | None:
        """The root cause of a failure, or None; a lookup that fails leaves the check's own finding as it is."""
        try:
            return lookup(what)
        except Exception:  # noqa: BLE001 - attributing is a courtesy; the verdict must be stored whatever happens
            return None

    def _permit(self, entry: Entry) -> contextlib.AbstractContextManager[Any]:
        """While a disruptive check runs (evaluate() let it through: --allow-disruptive, a canary), it holds the
        permit every state-changing action asks for (permits.py); no other code can hold one."""
        if not (entry.check.disruptive and self.allow_disruptive and entry.target.canary):
            return contextlib.nullcontext()
        record = run_record_path(getattr(self.facts, "run_dir", None))  # the run folder the plugin gave FactsCache
        return permits.granted(permits.Permit(entry.check.id, entry.target, record))

    def call(self, entry: Entry) -> Verdict:
        evidence = Evidence()
        values = {"env": self.env, "evidence": evidence, "target": entry.target,
                  entry.target.kind: entry.target}
        kwargs = {name: (self.facts(entry.target) if name == "facts" else values[name]) for name in entry.argnames}
        start = time.monotonic()
        reads: list[tuple[bool, str]] = []
        token = READS.set(reads)  # the facts the check asks for, for its evidence ("facts read")
        try:
            with self._open.using(entry.target), self._permit(entry):
                entry.func(**kwargs)
            outcome, message = "passed", ""
        except pytest.skip.Exception as exc:
            outcome, message = "skipped", str(exc.msg)
        except Finding as exc:
            outcome = "failed"
            message = failure_message(entry, f"found:    {exc.found}\n  expected: {exc.expected}"
                                             + (f"\n  detail:   {exc.detail}" if exc.detail else ""),
                                      self._cause(self.causes.of_finding, exc.found))  # a dead service, silent
        except Undecided as exc:  # a detail without a public source did not fit: visible, and the gate stays open
            outcome, message = "skipped", f"cannot decide: {exc}"
        except ProbeError as exc:  # a dead shared service's finding says so, with that service's action
            outcome, message = "failed", failure_message(entry, f"found:    {exc}\n  expected: an answer",
                                                         self._cause(self.causes.of, exc))
        except AssertionError as exc:
            # A bare assert (checks should use expect()): keep its message up to the "assert ..." line. pytest
            # adds a diff below it only while a test runs in the main thread, so a verdict computed ahead of
            # the tests (prefetch) would otherwise read differently from the same verdict computed in a test.
            lines = (str(exc) or "assertion failed").splitlines()
            cut = next((i for i, line in enumerate(lines) if line.startswith("assert ")), len(lines) - 1)
            text = "\n".join(lines[:cut + 1])
            outcome, message = "failed", failure_message(entry, text)
        except Exception:  # noqa: BLE001 - a bug in a check is reported, never lost, and never stops the run
            outcome = "error"
            message = failure_message(entry, "the check raised an unexpected error:\n"
                                      + "".join(traceback.format_exc(limit=-6)))
        finally:
            READS.reset(token)
        # with its check and target: vpro-facts sources reads it
        if read := sources(reads, entry.target.name, host=entry.target.kind != "site"):
            evidence.items.append({"name": FACTS_READ, "body": redact(read), "kind": "text",
                                   "check": entry.check.id, "target": entry.target.name})
        return Verdict(outcome, redact(message), tuple(evidence.items), time.monotonic() - start)


_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def interrupt_all() -> None:
    """Every engine of this process stops reading ahead and abandons its network exchanges in flight."""
    for engine in list(_ENGINES):
        engine.interrupt()


def failure_message(entry: Entry, body: str, cause: Cause | None = None) -> str:
    """The finding: what failed, found / expected, and the corrective action; a finding that follows from a dead
    shared service names it ("caused by: ...") and gives its action, not the check's (which would send the reader
    to fix what nobody could read)."""
    check = entry.check
    if cause is not None:
        return (f"{check.id} failed for {entry.target.name}: {check.title}\n  {body}\n"
                f"  caused by: {cause.what}\n  corrective action: {cause.action}")
    return (f"{check.id} failed for {entry.target.name}: {check.title}\n  {body}\n"
            f"  corrective action: {check.corrective_action}")
