"""gating.StageOrder and Engine.prefetch: the read-ahead reads the stage the test loop is in, for every target,
before the next stage; one thread at a time per target, in stage order."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from pytest_vpro.causes import Causes
from pytest_vpro.gating import Engine, Entry, StageOrder, Verdict


def _entry(target: str, stage: int, order: int = 0) -> Entry:
    kind = target.split(":")[0]
    check: Any = SimpleNamespace(test_stage=stage, id=f"C{stage}{order}", disruptive=False)
    tgt: Any = SimpleNamespace(key=target, kind=kind, name=target.split(":")[1], canary=False)
    return Entry(f"{target}::{stage}::{order}", check, tgt, lambda: None, (), order)


def _targets(n: int, stages: tuple[int, ...]) -> list[list[Entry]]:
    return [[_entry(f"client:pc{i}", s, o) for s in stages for o in range(2)] for i in range(n)]


def test_every_target_of_a_stage_comes_before_the_next_stage():
    work = StageOrder(_targets(3, (1, 2, 5)))
    seen = []
    while (unit := work.take()) is not None:
        position, entries = unit
        assert {e.stage for e in entries} == {entries[0].stage} and len(entries) == 2
        seen.append((entries[0].stage, position))
        work.next_stage(position)
    assert seen == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (5, 0), (5, 1), (5, 2)]


def test_a_target_is_handed_out_again_only_after_its_stage_is_done():
    work = StageOrder(_targets(1, (1, 2)))
    position, _ = work.take()  # type: ignore[misc]
    assert work.take() is None  # its stage 2 waits for its stage 1
    assert work.next_stage(position) is True
    assert work.take() is not None
    assert work.next_stage(position) is False  # nothing left: the read-ahead closes its sessions


def test_a_stopped_target_is_not_read_further():
    work = StageOrder(_targets(1, (1, 2)))
    position, _ = work.take()  # type: ignore[misc]
    assert work.next_stage(position, more=False) is False and work.take() is None


class _Store:
    def __init__(self) -> None:
        self.done: dict[str, Verdict] = {}
        self.lock = threading.Lock()
        self.closed = False

    def get(self, nodeid: str) -> Verdict | None:
        return self.done.get(nodeid)

    def claim(self, nodeid: str) -> bool:
        with self.lock:
            return nodeid not in self.done

    def put(self, nodeid: str, verdict: Verdict) -> bool:
        self.done[nodeid] = verdict
        return True

    def release(self, nodeid: str) -> None:
        pass


def test_the_engine_reads_one_device_at_a_time_and_stage_by_stage_across_the_fleet():
    reading: dict[str, int] = {}
    log: list[tuple[int, str]] = []
    lock = threading.Lock()

    def call(entry: Entry) -> Verdict:
        with lock:
            reading[entry.target.key] = reading.get(entry.target.key, 0) + 1
            assert reading[entry.target.key] == 1, "two connections to one device"
            log.append((entry.stage, entry.target.key))
        time.sleep(0.005)
        with lock:
            reading[entry.target.key] -= 1
        return Verdict("passed")

    env: Any = SimpleNamespace()
    facts: Any = lambda target: SimpleNamespace(release_connections=lambda: None)  # noqa: E731
    engine = Engine(env, _Store(), facts, causes=Causes())  # type: ignore[arg-type]
    engine.call = call  # type: ignore[method-assign]
    entries = [e for target in _targets(6, (1, 2, 3)) for e in target]
    engine.prefetch(entries, threads=3)
    for thread in engine._threads:
        thread.join(10)
    assert len(log) == len(entries) and engine.read_ahead == [6, 6]
    stages = [stage for stage, _ in log]
    # every thread starts a stage only when no target of a lower stage is waiting to start: at most the other
    # threads' units of the stage before overlap the next one
    assert stages.index(2) >= stages.count(1) - 2 * 2 and stages.index(3) >= stages.count(1) + stages.count(2) - 2 * 2
