"""Issue 19, item 5: ``--shard auto`` from the CI's variables, and ``--shard-by site``."""
from __future__ import annotations

import pytest

from pytest_vpro import run as runs
from pytest_vpro.environment import Client


def test_gitlab_parallel_variables_are_one_based():
    env = {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "4", "GITLAB_CI": "true"}
    assert runs.parse_shard("auto", env) == (1, 4)
    assert runs.parse_shard("auto", dict(env, CI_NODE_INDEX="4")) == (4, 4)
    with pytest.raises(pytest.UsageError, match=r"CI_NODE_INDEX=0 is outside the 4 copies.*counts from 1"):
        runs.parse_shard("auto", dict(env, CI_NODE_INDEX="0"))


@pytest.mark.parametrize("env, want", [
    ({"BUILDKITE_PARALLEL_JOB": "0", "BUILDKITE_PARALLEL_JOB_COUNT": "3"}, (1, 3)),
    ({"CIRCLE_NODE_INDEX": "2", "CIRCLE_NODE_TOTAL": "3"}, (3, 3)),
    ({"BITBUCKET_PARALLEL_STEP": "1", "BITBUCKET_PARALLEL_STEP_COUNT": "2"}, (2, 2)),
    ({"SEMAPHORE_JOB_INDEX": "2", "SEMAPHORE_JOB_COUNT": "2"}, (2, 2)),
], ids=["buildkite", "circleci", "bitbucket", "semaphore"])
def test_other_cis_zero_or_one_based(env, want):
    assert runs.parse_shard("auto", env) == want


def test_no_ci_variables_is_a_usage_error_that_names_them():
    with pytest.raises(pytest.UsageError) as exc:
        runs.parse_shard("auto", {"CI_NODE_TOTAL": "1", "PATH": "/bin"})  # GitLab sets only the total outside parallel:
    text = str(exc.value)
    assert "no CI job index found" in text and "CI_NODE_INDEX/CI_NODE_TOTAL" in text and "--shard 2/4" in text
    with pytest.raises(pytest.UsageError, match="not numbers"):
        runs.parse_shard("auto", {"CI_NODE_INDEX": "one", "CI_NODE_TOTAL": "4"})


def _clients(sites: list[str | None]) -> list[Client]:
    return [Client(kind="client", name=f"pc{i:02}.corp.test", extra={} if s is None else {"site": s})
            for i, s in enumerate(sites)]


def test_shard_by_site_keeps_each_site_whole_in_alphabetical_order():
    clients = _clients(["NYC", "LON", "nyc", "PAR", None, "LON", "PAR", "NYC"])  # None: the environment's site
    by_site = runs.shard_of_clients(clients, "site", 3, default_site="HQ1")
    groups = runs.shard_groups(clients, "site", "HQ1")
    for shard in set(by_site.values()):  # a site is never split between shards
        members = {groups[k] for k, s in by_site.items() if s == shard}
        assert all(by_site[k] == shard for k, g in groups.items() if g in members)
    # sites sorted HQ1, LON, NYC, PAR: shard 1 HQ1 and PAR (4th, 3 shards), shard 2 LON, shard 3 NYC
    assert {groups[k] for k, s in by_site.items() if s == 0} == {"HQ1", "PAR"}
    assert {groups[k] for k, s in by_site.items() if s == 1} == {"LON"}
    assert {groups[k] for k, s in by_site.items() if s == 2} == {"NYC"}
    assert sorted(by_site) == sorted(c.key for c in clients)  # every client in exactly one shard


def test_shard_by_count_is_every_nth_client():
    clients = _clients([None] * 7)
    assert list(runs.shard_of_clients(clients, "count", 3).values()) == [0, 1, 2, 0, 1, 2, 0]
