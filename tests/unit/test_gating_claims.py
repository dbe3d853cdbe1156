"""Claims in the verdict store (issue 18): a claim nobody can finish never blocks another worker.

The hang: a worker finished its tests while one of its read-ahead threads was still in a check; the worker closed
its store, the thread's verdict could not be stored, and the claim stayed in the file with a live owner (the
worker process waits for the controller), so the other worker waited on it for ever.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from pytest_vpro import gating
from pytest_vpro.gating import Verdict, VerdictStore


def test_closing_the_store_gives_up_the_claims_still_being_computed(tmp_path):
    path = tmp_path / "verdicts.sqlite"
    # another process claims a verdict in a thread that never ends, closes its store and stays alive
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, threading, time
        from pytest_vpro.gating import VerdictStore
        store = VerdictStore(__import__("pathlib").Path({str(path)!r}))
        claimed = threading.Event()
        def compute():
            assert store.claim("t::a")
            claimed.set()
            time.sleep(600)  # a network call that does not end while the worker stops
        threading.Thread(target=compute, daemon=True).start()
        claimed.wait()
        print("claimed", flush=True)
        sys.stdin.readline()
        store.close()
        print("closed", flush=True)
        time.sleep(600)
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "claimed\n"
        waiter = VerdictStore(path)
        assert not waiter.claim("t::a")  # a live claim of a live process is waited for
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "closed\n"
        assert holder.poll() is None  # the holder still runs: only the claim is gone
        assert waiter.claim("t::a")
        assert waiter.put("t::a", Verdict("passed"))
        assert waiter.get("t::a") == Verdict("passed")
        waiter.close()
    finally:
        holder.kill()
        holder.wait()


def test_a_claim_whose_thread_ended_without_a_verdict_is_given_up(tmp_path):
    store = VerdictStore(tmp_path / "v.sqlite")
    thread = threading.Thread(target=lambda: store.claim("t::a"))
    thread.start()
    thread.join()
    other = VerdictStore(tmp_path / "v.sqlite")
    other._db.execute("UPDATE verdicts SET owner=1")  # as if another (live) process held it
    store.renew()  # the renewer finds the thread gone
    assert other.claim("t::a")
    store.close()
    other.close()


def test_a_lease_that_ran_out_is_taken_over_and_the_late_verdict_is_not_stored(tmp_path, monkeypatch):
    monkeypatch.setattr(gating, "LEASE_S", 0.2)
    monkeypatch.setattr(gating, "RENEW_S", 3600.0)  # the holder cannot renew (a process stopped, not dead)
    first, second = VerdictStore(tmp_path / "v.sqlite"), VerdictStore(tmp_path / "v.sqlite")
    assert first.claim("t::a")
    first._db.execute("UPDATE verdicts SET owner=1")  # pid 1 is alive: only the lease can free it
    assert not second.claim("t::a")
    time.sleep(0.3)
    assert second.claim("t::a")
    assert second.put("t::a", Verdict("failed", "the taker's verdict"))
    assert not first.put("t::a", Verdict("passed"))  # the old holder's verdict comes too late
    assert first.get("t::a") == Verdict("failed", "the taker's verdict")
    first.close()
    second.close()


def test_a_released_claim_is_free_for_any_worker_at_once(tmp_path):
    first, second = VerdictStore(tmp_path / "v.sqlite"), VerdictStore(tmp_path / "v.sqlite")
    assert first.claim("t::a")
    first._db.execute("UPDATE verdicts SET owner=1")  # as if another live process held it
    assert not second.claim("t::a")
    first.release("t::a")  # an interrupted evaluation
    assert second.claim("t::a")
    first.close()
    second.close()


def test_a_live_claim_is_renewed(tmp_path, monkeypatch):
    monkeypatch.setattr(gating, "LEASE_S", 0.5)
    monkeypatch.setattr(gating, "RENEW_S", 0.05)
    first, second = VerdictStore(tmp_path / "v.sqlite"), VerdictStore(tmp_path / "v.sqlite")
    assert first.claim("t::a")  # this thread lives on: the renewer keeps the claim
    first._db.execute("UPDATE verdicts SET owner=1")
    time.sleep(1.0)
    assert not second.claim("t::a")
    assert first.put("t::a", Verdict("passed"))
    first.close()
    second.close()
