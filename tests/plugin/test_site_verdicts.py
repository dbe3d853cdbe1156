"""Issue 19, item 4, on the sample suite: a site job writes the site and server verdicts once
(``--site-verdicts-out``), shards take them (``--site-verdicts-in``) without computing them again, and together
give the outcomes of one whole run; an artifact that does not fit the run is refused before anything runs."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import calls, latest, make_project, outcomes, run

ROOT = Path(__file__).resolve().parents[2]
SERVER = "suites.stage1.test_stage1::test_server[sccm01.sample.test]"
NOTE = re.compile(r"\n  \(verdict from the site verdicts file [^\n]*\)$")


def _run(pytester, monkeypatch, *args):
    result = run(pytester, *args, monkeypatch=monkeypatch)
    assert result.ret in (0, 1), result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    return latest(pytester)


def test_shards_take_the_site_jobs_verdicts_and_give_the_whole_runs_outcomes(pytester, monkeypatch):
    make_project(pytester, {"T1-SERVER": ["sccm01.sample.test"], "T2-CLIENT": ["pc03.sample.test"]})
    whole = outcomes(_run(pytester, monkeypatch))
    assert whole[SERVER][0] == "failed"
    artifact = pytester.path / "site-verdicts.json"
    site_dir = _run(pytester, monkeypatch, f"--site-verdicts-out={artifact}")
    assert site_dir.name.endswith("-site")
    site_run = outcomes(site_dir)
    assert site_run and all("test_client" not in k for k in site_run), "the site job ran client checks"
    data = json.loads(artifact.read_text())
    assert data["environment"] == "sample" and data["version"] == 1 and len(data["environment_sha256"]) == 64
    assert {(r["check"], r["target"], r["outcome"]) for r in data["verdicts"]} == {
        ("T1-SITE", "site:sample.test", "passed"), ("T1-SERVER", "server:sccm01.sample.test", "failed")}

    # the server is repaired after the site job: the shards still judge the estate the site job saw
    (pytester.path / "environments" / "faults.json").write_text(json.dumps({"T2-CLIENT": ["pc03.sample.test"]}))
    (pytester.path / "environments" / "calls.log").unlink()
    sharded: dict[str, tuple[str, str]] = {}
    for i in (1, 2):
        part = outcomes(_run(pytester, monkeypatch, "--shard", f"{i}/2", f"--site-verdicts-in={artifact}"))
        assert not set(part) & set(sharded), "a test ran in two shards"
        sharded.update(part)
    assert not [c for c in calls(pytester) if c.startswith(("T1-SITE", "T1-SERVER"))], "computed again"
    server = sharded[SERVER]
    assert "verdict from the site verdicts file site-verdicts.json, written " in server[1]
    assert {k: (o, NOTE.sub("", m)) for k, (o, m) in sharded.items()} == whole


@pytest.fixture
def artifact(pytester, monkeypatch):
    make_project(pytester)
    path = pytester.path / "site-verdicts.json"
    _run(pytester, monkeypatch, f"--site-verdicts-out={path}")
    return path


def _refused(pytester, monkeypatch, path, *args):
    (pytester.path / "environments" / "calls.log").unlink(missing_ok=True)
    result = run(pytester, "--shard", "2/2", f"--site-verdicts-in={path}", *args, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stderr.str()[-2000:]
    assert calls(pytester) == [], "a check ran before the refusal"
    return result.stderr.str()


def _edit(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_an_artifact_of_another_environment_file_is_refused(pytester, monkeypatch, artifact):
    env = pytester.path / "environments" / "sample.yaml"
    env.write_text(env.read_text().replace("name: Sample", "name: Sample two"))
    err = _refused(pytester, monkeypatch, artifact)
    assert "written for environment 'sample' with another environment file (environment_sha256" in err


def test_an_artifact_of_another_catalog_or_options_is_refused(pytester, monkeypatch, artifact):
    assert "another --allow-disruptive setting" in _refused(pytester, monkeypatch, artifact, "--allow-disruptive")
    _edit(artifact, catalog_sha256="0" * 64)
    assert "another checks catalog" in _refused(pytester, monkeypatch, artifact)


def test_a_stale_artifact_is_refused(pytester, monkeypatch, artifact):
    _edit(artifact, written="2000-01-01T00:00:00+00:00")
    err = _refused(pytester, monkeypatch, artifact)
    assert "written 2000-01-01T00:00:00+00:00" in err and "older than --site-verdicts-max-age 12 h" in err
    assert "older than --site-verdicts-max-age 1 h" in _refused(pytester, monkeypatch, artifact,
                                                                "--site-verdicts-max-age=1")


def test_an_artifact_of_an_unknown_format_version_is_refused(pytester, monkeypatch, artifact):
    _edit(artifact, version=99)
    assert "format version 99" in _refused(pytester, monkeypatch, artifact)
    artifact.write_text("{not json")
    assert "not JSON" in _refused(pytester, monkeypatch, artifact)


def test_the_site_job_takes_no_shard(pytester, monkeypatch, artifact):
    result = run(pytester, "--shard", "1/2", f"--site-verdicts-out={artifact}", monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--site-verdicts-out is the site job" in result.stderr.str()


def test_the_gitlab_recipe_of_docs_ci_md_as_its_jobs_would_run_it(pytester, monkeypatch):
    """The commands of docs/ci.md's .gitlab-ci.yml, as typed, on the sample estate: the site job, the copies of
    the parallel job (CI_NODE_INDEX 1..N), then vpro-report; the merged fleet table is the whole run's."""
    recipe = re.search(r"```yaml\n(# \.gitlab-ci\.yml.*?)```", (ROOT / "docs" / "ci.md").read_text(), re.S)
    assert recipe, "docs/ci.md has no .gitlab-ci.yml"
    jobs = yaml.safe_load(recipe.group(1))
    make_project(pytester, {"T1-SERVER": ["sccm01.sample.test"], "T2-CLIENT": ["pc03.sample.test"]})
    whole = _run(pytester, monkeypatch)
    env = {**os.environ, "SAMPLE_AMT_PASSWORD": "Sup3r-Secret-Value"}
    env.pop("CI_NODE_INDEX", None)

    def sh(line: str, **variables: str) -> None:
        line = (line.replace(".venv/bin/pytest --env prod", f"{sys.executable} -m pytest --env sample -p no:randomly")
                .replace(".venv/bin/vpro-report", f"{sys.executable} -m pytest_vpro.report.merge")
                .replace("-prod-", "-sample-"))
        out = subprocess.run(["sh", "-c", line], cwd=pytester.path, env={**env, **variables}, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, line + "\n" + out.stdout[-2000:] + out.stderr[-2000:]

    sh(jobs["vpro-site"]["script"][-1])
    assert jobs["vpro"]["needs"] == ["vpro-site"] and (pytester.path / "site-verdicts.json").is_file()
    total = jobs["vpro"]["parallel"]
    for i in range(1, total + 1):
        sh(jobs["vpro"]["script"][-1], CI_NODE_INDEX=str(i), CI_NODE_TOTAL=str(total))
    assert len(list((pytester.path / "shard-reports").glob("2*-sample-shard*"))) == total
    sh(jobs["vpro-report"]["script"][-1])
    merged, one = (list(csv.DictReader((folder / "fleet.csv").open())) for folder in (pytester.path / "merged", whole))
    for row in merged + one:  # vpro-report reads the shipped catalog's actions; the sample has a catalog of its own
        row.pop("corrective_action")
    assert merged == one and {r["status"] for r in one} == {"gated"}
