"""Stage gating, disruptive switches, manual attestations and xdist / shard equivalence, on the sample suite."""
from __future__ import annotations

import collections
import os

import pytest
from helpers import calls, latest, make_project, outcomes, run

FAULTS = {"T1-CLIENT": ["pc02.sample.test"], "T2-CLIENT": ["pc03.sample.test"]}


def key(stage: int, name: str, target: str) -> str:
    return f"suites.stage{stage}.test_stage{stage}::{name}[{target}]"


def test_client_failure_gates_only_that_client(pytester, monkeypatch):
    make_project(pytester, FAULTS)
    result = run(pytester, monkeypatch=monkeypatch)
    got = outcomes(latest(pytester))
    assert got[key(1, "test_client", "pc02.sample.test")][0] == "failed"
    outcome, message = got[key(2, "test_client", "pc02.sample.test")]
    assert outcome == "skipped"
    assert "gated: T1-CLIENT failed for pc02.sample.test (stage 1)" in message
    # pc03 failed stage 2: its stage 3 is gated by that, stage 2 of everyone else ran
    assert "gated: T2-CLIENT failed for pc03.sample.test" in got[key(3, "test_client", "pc03.sample.test")][1]
    for other in ("pc01", "pc04", "pc05"):
        assert got[key(2, "test_client", f"{other}.sample.test")][0] == "passed"
        assert got[key(3, "test_client", f"{other}.sample.test")][0] == "passed"
    assert result.ret == 1


def test_failure_message_names_target_found_expected_and_corrective_action(pytester, monkeypatch):
    make_project(pytester, FAULTS)
    result = run(pytester, monkeypatch=monkeypatch)
    result.stdout.fnmatch_lines([
        "*T1-CLIENT failed for pc02.sample.test: client stage 1 check*",
        "*found:    T1-CLIENT planted on pc02.sample.test*",
        "*expected: no planted fault*",
        "*corrective action: fix the client in stage 1*",
    ])


@pytest.mark.parametrize("check, target", [("T1-SITE", "sample.test"), ("T1-SERVER", "sccm01.sample.test")])
def test_site_and_server_failures_gate_every_client(pytester, monkeypatch, check, target):
    make_project(pytester, {check: [target]})
    run(pytester, monkeypatch=monkeypatch)
    got = outcomes(latest(pytester))
    for client in ("pc01", "pc02", "pc03", "pc04", "pc05"):
        assert got[key(1, "test_client", f"{client}.sample.test")][0] == "passed"  # same stage: not gated
        outcome, message = got[key(2, "test_client", f"{client}.sample.test")]
        assert (outcome, message.startswith(f"gated: {check} failed for {target}")) == ("skipped", True)


def test_each_check_is_evaluated_once_per_target(pytester, monkeypatch):
    make_project(pytester, FAULTS)
    run(pytester, "-n", "3", monkeypatch=monkeypatch)
    counts = collections.Counter(calls(pytester))
    assert counts and max(counts.values()) == 1, counts


def test_stage_option_stops_after_stage(pytester, monkeypatch):
    make_project(pytester)
    result = run(pytester, "--stage", "2", monkeypatch=monkeypatch)
    got = outcomes(latest(pytester))
    assert {k.split("::")[0] for k in got} == {"suites.stage1.test_stage1", "suites.stage2.test_stage2"}
    result.stdout.fnmatch_lines(["*deselected*"])


def test_disruptive_checks_need_the_switch_and_a_canary(pytester, monkeypatch):
    make_project(pytester)
    run(pytester, monkeypatch=monkeypatch)
    got = outcomes(latest(pytester))
    outcome, message = got[key(4, "test_power_cycle", "pc01.sample.test")]
    assert outcome == "skipped" and "--allow-disruptive" in message
    run(pytester, "--allow-disruptive", monkeypatch=monkeypatch)
    got = outcomes(latest(pytester))
    assert got[key(4, "test_power_cycle", "pc01.sample.test")][0] == "passed"  # canary
    assert got[key(4, "test_power_cycle", "pc05.sample.test")][0] == "passed"  # canary from the CSV
    outcome, message = got[key(4, "test_power_cycle", "pc04.sample.test")]
    assert outcome == "skipped" and "not marked canary: true" in message
    ran = [c for c in calls(pytester) if c.startswith("T4-DISRUPT")]
    assert sorted(ran) == ["T4-DISRUPT pc01.sample.test", "T4-DISRUPT pc05.sample.test"]


def test_manual_checks_need_a_fresh_attestation(pytester, monkeypatch):
    make_project(pytester)
    run(pytester, monkeypatch=monkeypatch)
    got = outcomes(latest(pytester))
    assert got[key(3, "test_manual", "pc01.sample.test")][0] == "passed"  # attested
    outcome, message = got[key(3, "test_manual", "pc04.sample.test")]
    assert outcome == "skipped" and message.startswith("manual check not attested")


def test_an_old_attestation_does_not_count(pytester, monkeypatch):
    from helpers import SAMPLE
    text = (SAMPLE / "environments_sample.yaml").read_text().replace("2099-01-01", "2001-01-01")
    make_project(pytester, env_text=text)
    run(pytester, monkeypatch=monkeypatch)
    outcome, message = outcomes(latest(pytester))[key(3, "test_manual", "pc01.sample.test")]
    assert outcome == "skipped" and "attestation too old" in message


def _all_outcomes(pytester, monkeypatch, *args) -> dict[str, tuple[str, str]]:
    run(pytester, *args, monkeypatch=monkeypatch)
    return outcomes(latest(pytester))


def test_outcomes_are_identical_serial_xdist_and_shards(pytester, monkeypatch):
    make_project(pytester, {"T1-CLIENT": ["pc02.sample.test"], "T2-CLIENT": ["pc03.sample.test", "pc05.sample.test"],
                            "T3-CLIENT": ["pc01.sample.test"]})
    serial = _all_outcomes(pytester, monkeypatch, "-n", "0")
    parallel = _all_outcomes(pytester, monkeypatch, "-n", "4")
    assert parallel == serial
    sharded: dict[str, tuple[str, str]] = {}
    for i in (1, 2, 3):
        part = _all_outcomes(pytester, monkeypatch, "--shard", f"{i}/3")
        assert not set(part) & set(sharded), "a test ran in two shards"
        sharded.update(part)
    assert sharded == serial
    assert len(serial) == 32


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.parametrize("override, workers", [(None, 0), ("2", 2)])
def test_auto_means_one_process_on_two_cores_or_fewer(pytester, monkeypatch, override, workers):
    make_project(pytester)
    if override:
        monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", override)
    else:
        monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # the run's process inherits one core
    try:
        result = run(pytester, "-n", "auto", monkeypatch=monkeypatch)
    finally:
        os.sched_setaffinity(0, cpus)
    out = result.stdout.str()
    assert (f"created: {workers}/{workers} workers" in out) == bool(workers), out[-2000:]
    assert outcomes(latest(pytester))  # and it ran


def test_a_site_failure_gates_clients_in_every_shard(pytester, monkeypatch):
    make_project(pytester, {"T1-SITE": ["sample.test"]})
    for i in (2, 3):  # shards that do not report the site check still honour its verdict
        got = _all_outcomes(pytester, monkeypatch, "--shard", f"{i}/3")
        gated = [k for k, (o, m) in got.items() if m.startswith("gated: T1-SITE failed for sample.test")]
        assert gated and all("stage1" not in k for k in gated)


@pytest.mark.parametrize("value", ["0/2", "3/2", "x", "1/0"])
def test_bad_shard_is_a_usage_error(pytester, monkeypatch, value):
    make_project(pytester)
    result = run(pytester, "--shard", value, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --shard {value}:*"])
