"""Issue 19, item 5, on the sample suite: ``--shard auto`` from GitLab's ``parallel:`` variables with
``--shard-by site`` runs each site whole in one shard, and the shards together are the whole run."""
from __future__ import annotations

import pytest
from helpers import SAMPLE, latest, make_project, outcomes, run

ENV = (SAMPLE / "environments_sample.yaml").read_text().replace(
    "  - {fqdn: pc01.sample.test, canary: true}\n  - {fqdn: pc02.sample.test}\n",
    "  - {fqdn: pc01.sample.test, canary: true, site: NYC}\n  - {fqdn: pc02.sample.test, site: lon}\n")


def test_gitlab_parallel_shards_by_site_are_whole_sites_and_together_the_whole_run(pytester, monkeypatch):
    assert "site: NYC" in ENV
    make_project(pytester, {"T2-CLIENT": ["pc03.sample.test"]}, env_text=ENV)
    monkeypatch.delenv("CI_NODE_INDEX", raising=False)
    serial = outcomes(_run(pytester, monkeypatch))
    sharded: dict[str, tuple[str, str]] = {}
    clients = {}
    for i in (1, 2, 3):  # sites in alphabetical order: LON (pc02), NYC (pc01), SMP (the environment's: the rest)
        monkeypatch.setenv("CI_NODE_INDEX", str(i))
        monkeypatch.setenv("CI_NODE_TOTAL", "3")
        part = outcomes(_run(pytester, monkeypatch, "--shard", "auto", "--shard-by", "site"))
        assert latest(pytester).name.endswith(f"-shard{i}of3")
        assert not set(part) & set(sharded), "a test ran in two shards"
        sharded.update(part)
        clients[i] = {k.split("[")[1].rstrip("]") for k in part if "test_client[" in k}
    assert sharded == serial
    assert clients == {1: {"pc02.sample.test"}, 2: {"pc01.sample.test"},
                       3: {"pc03.sample.test", "pc04.sample.test", "pc05.sample.test"}}


def _run(pytester, monkeypatch, *args):
    result = run(pytester, *args, monkeypatch=monkeypatch)
    assert result.ret in (0, 1), result.stderr.str()[-2000:]
    return latest(pytester)


def test_shard_auto_outside_a_ci_job_is_a_usage_error(pytester, monkeypatch):
    make_project(pytester)
    for name in ("CI_NODE_INDEX", "BUILDKITE_PARALLEL_JOB", "CIRCLE_NODE_INDEX", "BITBUCKET_PARALLEL_STEP",
                 "SEMAPHORE_JOB_INDEX"):
        monkeypatch.delenv(name, raising=False)
    result = run(pytester, "--shard", "auto", monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --shard auto: no CI job index found*CI_NODE_INDEX/CI_NODE_TOTAL*"])
