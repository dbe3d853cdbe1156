"""What a run leaves behind: report files, the fleet table, no secrets; and how it refuses bad input."""
from __future__ import annotations

import csv
import json

import pytest
import yaml
from helpers import SAMPLE, latest, make_project, outcomes, run

from pytest_vpro.report import html

SECRET = "Sup3r-Secret-Value"


def test_a_run_writes_its_reports(pytester, monkeypatch):
    make_project(pytester, {"T1-CLIENT": ["pc02.sample.test"]})
    result = run(pytester, "-n", "2", monkeypatch=monkeypatch)
    run_dir = latest(pytester)
    for name in ("junit.xml", "fleet.csv", "summary.json", "run.json", "allure-results"):
        assert (run_dir / name).exists(), name
    results = list((run_dir / "allure-results").glob("*-result.json"))
    labels = {(lab["name"], lab["value"]) for r in results for lab in json.loads(r.read_text()).get("labels", [])}
    assert ("epic", "Stage 1: Installation pre-requisites met") in labels
    assert ("feature", "site server") in labels and ("severity", "critical") in labels
    assert ("story", "T1-CLIENT: client stage 1 check") in labels
    assert any(json.loads(r.read_text())["name"] == "Fleet table" for r in results)
    rows = list(csv.DictReader((run_dir / "fleet.csv").open()))
    assert rows[0]["client"] == "pc02.sample.test"  # stuck earliest: first in the table
    assert rows[0]["first_failing_check"] == "T1-CLIENT" and rows[0]["furthest_stage_passed"] == "0"
    assert rows[0]["corrective_action"] == "fix the client in stage 1"
    result.stdout.fnmatch_lines(["*pytest-vpro fleet summary: environment sample, 5 clients, 2 servers*",
                                 "NOT READY for rollout: 0 of 5 clients ok, 5 failed, 0 gated, 0 not checked*",
                                 "1 *Installation pre-requisites met*7*6*1*0*", "fleet table: *fleet.csv"])
    assert json.loads((run_dir / "run.json").read_text())["complete"] is True
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["ready"] is False and summary["verdict"].startswith("NOT READY for rollout")
    categories = json.loads((run_dir / "allure-results" / "categories.json").read_text())
    assert [c["name"] for c in categories][:2] == ["Gated by an earlier failure", "Manual check not attested"]
    props = (run_dir / "allure-results" / "environment.properties").read_text().splitlines()
    assert "environment=sample" in props and "clients=5" in props
    assert any(line.startswith("pytest-vpro=") for line in props)


def test_evidence_reaches_allure(pytester, monkeypatch):
    make_project(pytester)
    run(pytester, "-k", "stage1", monkeypatch=monkeypatch)
    results = latest(pytester) / "allure-results"
    attachments = [p.read_text() for p in results.glob("*-attachment*")]
    assert any('"client": "pc01.sample.test"' in a for a in attachments)


def test_a_check_costs_pytest_and_allure_no_fixture_but_its_target(pytester, monkeypatch):
    """env, facts and evidence come from the engine: no fixture set up, no Allure container written for them."""
    make_project(pytester)
    run(pytester, "-k", "stage1", monkeypatch=monkeypatch)
    results = latest(pytester) / "allure-results"
    fixtures = {b["name"] for c in results.glob("*-container.json") for b in json.loads(c.read_text())["befores"]}
    assert fixtures <= {"client", "server", "site", "target"}, fixtures


def test_no_secret_anywhere_after_a_run_that_tries_to_leak_it(pytester, monkeypatch):
    make_project(pytester)
    result = run(pytester, "-n", "2", "-rA", monkeypatch=monkeypatch)
    assert SECRET not in result.stdout.str() + result.stderr.str()
    leaked = [p for p in (pytester.path / "reports").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []
    got = outcomes(latest(pytester))
    assert "«redacted»" in got["suites.stage4.test_stage4::test_leaky[pc01.sample.test]"][1]


@pytest.mark.skipif(html.find_cli() is None, reason="the Allure command line is installed by scripts/setup")
def test_html_report_and_history(pytester, monkeypatch):
    make_project(pytester)
    monkeypatch.setenv("SAMPLE_AMT_PASSWORD", SECRET)
    first = pytester.runpytest_subprocess("--env", "sample", "--stage", "1")
    first.stdout.fnmatch_lines(["report: *report.html"])
    one = latest(pytester)
    ticket = (one / "report.html").read_text()
    for section in ("Stage funnel", "Failed checks", "Fleet table", "Passed checks", "Skipped"):
        assert f"<h2>{section}" in ticket
    assert "class='verdict ready'>READY for rollout: 5 of 5 clients ok" in ticket and "<svg" in ticket
    assert "not checked: stage 2, 3, 4, 5, 6, 7 (not selected)" in ticket  # --stage 1: said, not implied
    assert "(1 targets)" not in ticket
    assert (one / "allure-report.html").is_file()  # Allure's single-file mode: opens from disk
    assert "<script" not in ticket and "pc01.sample.test" in ticket  # self-contained, names the fleet
    assert (one / "allure-report" / "index.html").exists()  # the full interactive report beside it
    assert (one / "allure-report" / "history" / "history.json").exists()
    pytester.runpytest_subprocess("--env", "sample", "--stage", "1")
    two = latest(pytester)
    assert two != one and (two / "allure-results" / "history" / "history.json").exists()  # trend carried
    assert SECRET.encode() not in (two / "report.html").read_bytes()


def test_list_checks_json(pytester):
    make_project(pytester)
    result = pytester.runpytest_subprocess("--list-checks=json")
    assert result.ret == 0
    rows = {r["id"]: r for r in json.loads(result.stdout.str())}
    assert {"id", "stage", "component", "scope", "title", "method", "automated", "disruptive",
            "tests"} <= set(rows["T1-SERVER"])
    assert rows["T1-SERVER"]["stage"] == [1, 3]
    assert rows["T1-SERVER"]["tests"] == ["suites/stage1/test_stage1.py::test_server"]
    assert rows["T9-UNUSED"]["tests"] == []


def test_list_checks_table(pytester):
    make_project(pytester)
    result = pytester.runpytest_subprocess("--list-checks")
    result.stdout.fnmatch_lines(["id *stages*scope*kind*tests*title", "T4-DISRUPT *4 *client *auto! *1 *client power cycle",
                                 "9 checks, 8 with tests*"])


def test_no_env_is_a_usage_error(pytester):
    make_project(pytester)
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: these are pytest-vpro checks: choose the estate with --env NAME*"])


def test_a_broken_environment_file_is_a_usage_error_without_traceback(pytester):
    text = (SAMPLE / "environments_sample.yaml").read_text().replace("code: SMP", "code: TOOLONG")
    make_project(pytester, env_text=text.replace('"env:SAMPLE_AMT_PASSWORD"', "plain-text-pw"))
    result = pytester.runpytest_subprocess("--env", "sample")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "Traceback" not in err and "plain-text-pw" not in err
    result.stderr.fnmatch_lines(["ERROR: the environment file has 2 problem(s):",
                                 "*sample.yaml:2: site.code: 'TOOLONG' is not a three-character site code*",
                                 "*sample.yaml:4: credentials.amt.password: a plaintext secret is not allowed*"])


def test_unknown_environment_name(pytester):
    make_project(pytester)
    result = pytester.runpytest_subprocess("--env", "prod")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --env prod: no environments/prod.yaml in {pytester.path}, in the current "
                                 "folder or installed with pytest-vpro; --env finds: example, lab, lab-2009, sample; "
                                 "or give the path of an environment file (--env=PATH)"])


def test_a_check_with_an_unknown_id_or_in_the_wrong_stage_is_refused(pytester, monkeypatch):
    make_project(pytester)
    (pytester.path / "suites" / "stage2" / "test_wrong.py").write_text(
        "import pytest\n\n@pytest.mark.check('T1-CLIENT')\ndef test_a(client):\n    pass\n\n"
        "@pytest.mark.check('NOPE')\ndef test_b(client):\n    pass\n\n"
        "@pytest.mark.check('T2-CLIENT')\ndef test_c(client, tmp_path):\n    pass\n")
    result = run(pytester, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*test_wrong.py::test_a*implements T1-CLIENT, whose earliest stage is 1, so it belongs in suites/stage1/",
        "*test_wrong.py::test_b*@pytest.mark.check('NOPE') names no catalog row",
        "*test_wrong.py::test_c*a check may take only client, server, site, target, env, facts, evidence; not tmp_path",
    ])


def test_a_path_option_with_a_space_is_refused_only_where_pytest_would_move_its_rootdir(pytester, tmp_path_factory,
                                                                                       monkeypatch):
    """pytest takes a separate value for a test path when it picks the rootdir: outside the ini file's folder
    that would drop testpaths and collect other tests, so the run refuses it, whether the path exists or not."""
    make_project(pytester)
    monkeypatch.setenv("SAMPLE_AMT_PASSWORD", SECRET)  # the sample's env: reference is asked before the run
    inside = str(pytester.path / "environments" / "sample.yaml")
    assert pytester.runpytest_subprocess("--env", inside, "--no-html", "--stage", "1").ret == 0
    elsewhere = tmp_path_factory.mktemp("estate")
    for name in ("sample.yaml", "clients.csv"):
        (elsewhere / name).write_bytes((pytester.path / "environments" / name).read_bytes())
    reports = tmp_path_factory.mktemp("nightly") / "reports"
    cases = [("--env", str(elsewhere / "sample.yaml")), ("--reports-dir", str(reports)),
             ("--facts-out", str(reports / "facts.jsonl")), ("--facts-in", str(elsewhere / "facts.jsonl"))]
    for option, value in cases:
        result = pytester.runpytest_subprocess(*(["--env", "sample"] if option != "--env" else []), option, value)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (option, result.stdout.str()[-2000:])
        result.stderr.fnmatch_lines([f"ERROR: {option} {value}: write {option}={value} (with '='). pytest picks "
                                     "its rootdir from the command line's paths before pytest-vpro is loaded, "
                                     "takes a separate value for a test path, and would collect other tests."])
    for night in (1, 2):  # the second night the folder exists: the same answer, and never the project's tests
        result = pytester.runpytest_subprocess(f"--env={elsewhere / 'sample.yaml'}", f"--reports-dir={reports}",
                                               "--no-html", "--stage", "1")
        assert result.ret == 0, result.stdout.str()[-2000:]
        assert "suites/stage1" in result.stdout.str() or "stage1" in result.stdout.str()
    assert len([p for p in reports.iterdir() if p.is_dir() and p.name != "latest"]) == 2  # and history.jsonl


def test_a_run_that_checks_nothing_is_not_green(pytester, monkeypatch):
    make_project(pytester)
    result = run(pytester, "-k", "no_such_check", monkeypatch=monkeypatch)
    assert result.ret != 0
    run_dir = latest(pytester)
    statuses = {line.split(",")[4] for line in (run_dir / "fleet.csv").read_text().splitlines()[1:]}
    assert statuses == {"not checked"}
    notes = json.loads((run_dir / "run.json").read_text())["notes"]
    assert any(n.startswith("no check of the catalog was selected") for n in notes), notes


def test_an_environment_without_targets_for_a_stage_is_not_green(pytester, monkeypatch):
    doc = yaml.safe_load((SAMPLE / "environments_sample.yaml").read_text())
    doc["clients"], doc["attestations"] = [], []
    make_project(pytester, env_text=yaml.safe_dump(doc))
    result = run(pytester, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    notes = json.loads((latest(pytester) / "run.json").read_text())["notes"]
    assert any("the environment names no target for any of its checks (scopes client)" in n for n in notes), notes
    result.stdout.fnmatch_lines(["note:*stage *: the environment names no target for any of its checks*"])


def test_the_fleet_summary_comes_after_pytests_own_summary(pytester, monkeypatch):
    make_project(pytester)
    out = run(pytester, "-rA", monkeypatch=monkeypatch).stdout.str()
    assert out.index("short test summary info") < out.index("pytest-vpro fleet summary")


