"""pytest-vpro's pytest hooks and options: thin; the work is in the modules they call.

Module-level hooks shape collection (parametrize checks over the targets of
the environment, order and deselect them) and run each check through the
gating engine. What belongs to one run on the controller (the fleet summary,
the reports) lives in :class:`ControllerSession`, registered when ``--env`` is
given, as pytest-xdist registers its ``DSession``.
"""
from __future__ import annotations

import inspect

import pytest

from . import catalog as catalog_mod
from .checks import CHECK_ARGS, Evidence
from .environment import Environment
from .facts import FactsCache
from .gating import Engine, Entry, VerdictStore
from .report import fleet, html, listing, runs
from .secrets import redact

ENGINE = pytest.StashKey[Engine]()
RUN = pytest.StashKey[runs.Run]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vpro", "pytest-vpro: vPro / Configuration Manager out of band checks")
    group.addoption("--env", metavar="NAME", help="environment to check: environments/NAME.yaml, or a path")
    group.addoption("--stage", type=int, metavar="N", help="run stages 1 to N only")
    group.addoption("--shard", metavar="I/N", help="run the I-th of N deterministic slices of the targets")
    group.addoption("--allow-disruptive", action="store_true",
                    help="run disruptive checks (power cycle, SOL/IDER, un-provision), on canary clients only")
    group.addoption("--list-checks", nargs="?", const="table", choices=("table", "json"),
                    help="print the checks catalog (with the tests that implement each row) and exit")
    group.addoption("--reports-dir", metavar="DIR", help="where runs write their reports (default: ./reports)")
    group.addoption("--no-html", action="store_true", help="do not render the HTML report at the end")
    group.addoption("--concurrency", type=int, default=32, metavar="N",
                    help="targets read at once in each process, one connection per target (default 32; 0: none "
                         "ahead of the tests)")
    parser.addini("vpro_catalog", "path of an alternative checks catalog (for pytest-vpro's own tests)")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config):
    if config.getoption("list_checks"):
        return listing.main(config)
    return None


@pytest.hookimpl(tryfirst=True)  # before allure-pytest and junitxml read their options
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(id): the catalog id of the pytest-vpro check this test implements")
    if config.getoption("list_checks") or not config.getoption("env"):
        return
    worker = getattr(config, "workerinput", None)
    run = runs.join(config, worker) if worker else runs.start(config)  # UsageError on a bad environment file
    config.stash[RUN] = run
    config.stash[ENGINE] = Engine(env=run.env, store=VerdictStore(run.dir / "verdicts.sqlite"),
                                  facts=FactsCache(run.env), allow_disruptive=config.getoption("allow_disruptive"))
    if worker is None:
        config.pluginmanager.register(ControllerSession(config, run), "vpro-controller")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # pytest-xdist: hand the run to each worker
    run = node.config.stash.get(RUN, None)
    if run is not None:
        node.workerinput.update(runs.worker_input(run))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("check")
    engine = metafunc.config.stash.get(ENGINE, None)
    check = catalog_mod.for_config(metafunc.config).get(marker.args[0]) if marker and marker.args else None
    if check is None or engine is None:
        return  # no environment, or an unknown id: reported in pytest_collection_modifyitems
    argname = "target" if "target" in metafunc.fixturenames else check.scope_kind
    if argname in metafunc.fixturenames:
        targets = engine.env.targets(check.scope)
        metafunc.parametrize(argname, targets, ids=[t.name for t in targets])


@pytest.fixture
def env(request: pytest.FixtureRequest) -> Environment:
    return request.config.stash[ENGINE].env


@pytest.fixture
def facts(request: pytest.FixtureRequest):
    engine = request.config.stash[ENGINE]
    entry = engine.entries.get(request.node.nodeid)
    return engine.facts(entry.target) if entry else None


@pytest.fixture
def evidence() -> Evidence:
    return Evidence()


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection: gates need every check in the registry
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("list_checks"):
        return
    rows = catalog_mod.for_config(config)
    engine = config.stash.get(ENGINE, None)
    problems, checks = [], []
    for item in items:
        marker = item.get_closest_marker("check")
        if marker is None:
            continue
        cid = marker.args[0] if marker.args else None
        check = rows.get(cid)
        if check is None:
            problems.append(f"{item.nodeid}: @pytest.mark.check({cid!r}) names no catalog row")
            continue
        stage_dir = f"stage{check.test_stage}"
        if "suites" in item.path.parts and stage_dir not in item.path.parts:
            problems.append(f"{item.nodeid}: implements {cid}, whose earliest stage is {check.test_stage}, "
                            f"so it belongs in suites/{stage_dir}/")
        argnames = tuple(inspect.signature(item.obj).parameters)
        extra = [a for a in argnames if a not in CHECK_ARGS]
        if extra:
            problems.append(f"{item.nodeid}: a check may take only {', '.join(CHECK_ARGS)}; not {', '.join(extra)}")
        checks.append((item, check, argnames))
    if checks and engine is None:
        raise pytest.UsageError("these are pytest-vpro checks: choose the estate with --env NAME "
                                "(e.g. --env lab; the files are in environments/)")
    if problems:
        raise pytest.UsageError("\n".join(problems))
    if engine is None:
        return
    order = {cid: i for i, cid in enumerate(rows)}
    for item, check, argnames in checks:
        target = item.callspec.params.get("target", item.callspec.params.get(check.scope_kind))
        engine.register(Entry(item.nodeid, check, target, item.obj, argnames, order[check.id]))
        item.user_properties += [("vpro_check", check.id), ("vpro_target", target.key),
                                 ("vpro_stage", check.test_stage)]
        for label_type, value in fleet.allure_labels(check, target):
            item.add_marker(pytest.mark.allure_label(value, label_type=label_type))
    engine.finish_registration()
    keep, drop = runs.select(items, engine, config.getoption("stage"), config.stash[RUN].shard)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    if not config.option.collectonly:
        worker = getattr(config, "workerinput", None)
        start = (int(worker["workerid"].removeprefix("gw")) / int(worker["workercount"])) if worker else 0.0
        engine.prefetch([engine.entries[i.nodeid] for i in keep if i.nodeid in engine.entries],
                        threads=config.getoption("concurrency"), start=start)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    engine = pyfuncitem.config.stash.get(ENGINE, None)
    entry = engine.entries.get(pyfuncitem.nodeid) if engine else None
    if entry is None:
        return None
    verdict = engine.obtain(entry)  # stored, computed here with its gates, or waited for
    fleet.attach_evidence(verdict)
    if verdict.outcome == "skipped":
        raise pytest.skip.Exception(verdict.message, _use_item_location=True)
    if verdict.outcome in ("failed", "error"):
        pytest.fail(verdict.message, pytrace=False)
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()  # no secret reaches the terminal, JUnit or Allure through a report
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        report.longrepr = redact(str(report.longrepr))
    report.sections = [(name, redact(text)) for name, text in report.sections]


def pytest_unconfigure(config: pytest.Config) -> None:
    engine = config.stash.get(ENGINE, None)
    if engine is not None:
        engine.stop_prefetch()
        engine.store.close()


class ControllerSession:
    """The run as the controller sees it: every report, the fleet summary, the report files."""

    def __init__(self, config: pytest.Config, run: runs.Run) -> None:
        self.config, self.run = config, run
        self.recorder = fleet.FleetRecorder(run.env, catalog_mod.for_config(config))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.recorder.record(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.config.option.collectonly:
            return
        self.run.complete = exitstatus != pytest.ExitCode.INTERRUPTED
        self.recorder.write(self.run)
        if not self.config.getoption("no_html"):
            self.run.html = html.render(self.run)
        runs.finish(self.run)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.config.option.collectonly:
            return
        for line in self.recorder.summary_lines(self.run):
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        runs.stop_lab(self.run)
