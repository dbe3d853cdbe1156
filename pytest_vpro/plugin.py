"""pytest-vpro's pytest hooks and options: thin; the work is in the modules they call.

Module-level hooks shape collection (parametrize checks over the targets of
the environment, order and deselect them) and run each check through the
gating engine. What belongs to one run on the controller (the fleet summary,
the reports) lives in :class:`ControllerSession`, registered when ``--env`` is
given, as pytest-xdist registers its ``DSession``.
"""
from __future__ import annotations

import gc
import inspect
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from . import catalog as catalog_mod
from . import cmdline, interrupts, site_verdicts, snapshot
from . import facts as facts_mod  # its facets (and the protocol libraries) load when a run makes its FactsCache
from . import run as runs
from .causes import Causes, survey
from .checks import CHECK_ARGS, check_argnames, show_pytest_the_target_only
from .environment import Target
from .gating import Engine, Entry, VerdictStore
from .probes import hello_listener
from .report import allure_writer, fleet, history, html, listing, ticket
from .secrets import redact

ENGINE = pytest.StashKey[Engine]()
RUN = pytest.StashKey[runs.Run]()
EMPTY_STAGES = pytest.StashKey[list[str]]()
PROGRESS_EVERY_S = 10.0  # a line on the read-ahead at most this often, while the tests wait on it


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vpro", "pytest-vpro: vPro / Configuration Manager out of band checks")
    group.addoption("--env", metavar="NAME", help="environment to check: environments/NAME.yaml, or a path")
    group.addoption("--stage", type=int, metavar="N", help="run stages 1 to N only")
    group.addoption("--shard", metavar="I/N", help="run the I-th of N deterministic slices of the clients; auto: "
                    "the index and total of the CI job's copy (GitLab CI_NODE_INDEX/CI_NODE_TOTAL, docs/ci.md)")
    group.addoption("--shard-by", metavar="count|site|ATTR", default="count",
                    help="slice by count (default), by site code (whole sites per shard), or by an inventory attribute")
    group.addoption("--allow-disruptive", action="store_true",
                    help="run disruptive checks (power cycle, SOL/IDER, un-provision), on canary clients only")
    group.addoption("--list-checks", nargs="?", const="table", choices=("table", "json"),
                    help="print the checks catalog (with the tests that implement each row) and exit")
    group.addoption("--reports-dir", metavar="DIR", help="where runs write their reports (default: ./reports)")
    group.addoption("--no-html", action="store_true", help="do not render the HTML report at the end")
    group.addoption("--facts-out", metavar="FILE", help="write every fact the run observed to FILE (JSON Lines, "
                    "no secrets): attach it to a change ticket, re-judge it with --facts-in, diff it with vpro-facts")
    group.addoption("--facts-in", metavar="FILE", help="judge the facts of a snapshot (from --facts-out) instead of "
                    "the estate: no network at all; a lab environment is not started")
    group.addoption("--concurrency", type=int, default=128, metavar="N",
                    help="targets read at once in each process, one connection per target (default 128; 0: none "
                         "ahead of the tests)")
    group.addoption("--hello-listen", metavar="ADDR:PORT",
                    help="listen passively for AMT hello packets at ADDR:PORT (e.g. where ProvisionServer points) "
                         "and judge the hello checks from them; default: judge from AMTOPMGR.LOG")
    group.addoption("--hello-wait", type=float, default=hello_listener.DEFAULT_WAIT_S, metavar="SECONDS",
                    help="how long after the listener starts a silent client is waited for (default 60)")
    cmdline.add_site_verdicts_options(group)
    parser.addini("vpro_catalog", "path of an alternative checks catalog (for pytest-vpro's own tests)")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config):
    if config.getoption("list_checks"):  # pytest's own session runs; the listing prints instead of testing
        config.pluginmanager.register(listing.Listing(config), "vpro-listing")
    return None


@pytest.hookimpl(tryfirst=True)  # before allure-pytest and junitxml read their options
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(id): the catalog id of the pytest-vpro check this test implements")
    if config.getoption("list_checks") or config.getoption("env"):
        cmdline.refuse_separated_paths(config)
        cmdline.collect_shipped_suites(config)
    if config.getoption("list_checks") or not config.getoption("env"):
        return
    from .probes import httpclient  # noqa: F401, PLC0415 - a run's HTTP client reads the proxy settings now, in the main thread
    worker = getattr(config, "workerinput", None)
    try:  # the controller listens before it starts a lab, so that the first hellos are heard
        hellos = hello_listener.for_run(config.getoption("hello_listen"), config.getoption("hello_wait"),
                                        listen=worker is None)
    except ValueError as exc:
        raise pytest.UsageError(f"--hello-listen: {exc}") from None
    try:
        run = runs.join(config, worker) if worker else runs.start(config)  # UsageError on a bad environment file
    except BaseException:
        if hellos is not None:
            hellos.stop()
        raise
    if hellos is not None:
        hellos.set_spool(run.dir / hello_listener.SPOOL_NAME)
    config.stash[RUN] = run
    allure_writer.install(config)  # allure-pytest's results in batches, not two files per test (docs/scale.md)
    config.stash[ENGINE] = Engine(env=run.env, store=VerdictStore(run.dir / "verdicts.sqlite"),
                                  facts=facts_mod.FactsCache(run.env, hellos=hellos, run_dir=run.dir),
                                  allow_disruptive=config.getoption("allow_disruptive"))
    _wire_snapshots(config, run, config.stash[ENGINE].facts)
    config.stash[ENGINE].causes = _causes(config, run, config.stash[ENGINE].facts, worker)
    if worker is None:
        config.pluginmanager.register(ControllerSession(config, run), "vpro-controller")


def _causes(config: pytest.Config, run: runs.Run, facts: facts_mod.FactsCache, worker) -> Causes:
    """The run's record of dead shared services: surveyed once by the controller, before xdist starts its
    workers, and read from the run folder by each worker, so every process attributes findings alike."""
    if worker is not None:
        return Causes.read(run.dir)
    if run.replay is not None:  # a replay sends nothing: the recorded run's survey (none in older snapshots)
        causes = Causes.from_json(run.replay.header.get("causes"))
        if "causes" in run.replay.header:
            runs.progress(config, "pytest-vpro")("shared services, as the snapshot's run found them: " + (
                "; ".join(c.what for c in causes) if causes else "every one answered"))
    elif config.option.collectonly:
        causes = Causes()
    else:
        causes = survey(run.env, facts(run.env.site))
        runs.progress(config, "pytest-vpro")("shared services: " + (
            "; ".join(c.what for c in causes) if causes else "every one answered"))
    causes.write(run.dir)
    return causes


def _wire_snapshots(config: pytest.Config, run: runs.Run, facts: facts_mod.FactsCache) -> None:
    """--facts-in replays a snapshot in every process; --facts-out records each process's facts (merged at the end)."""
    if run.replay is not None:
        if config.getoption("allow_disruptive"):
            raise pytest.UsageError("--facts-in judges recorded facts; it cannot be combined with --allow-disruptive")
        facts.replay = run.replay
    if config.getoption("facts_out"):
        facts.recorder = snapshot.Recorder(run.dir, redact)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` for a pytest-vpro run: one process where there are 2 cores or fewer; xdist's count elsewhere.

    The waiting is overlapped by the prefetch threads in every process; more processes share pytest's per-test
    cost, but each holds the whole collected suite: on 2 cores two workers were no faster than one process and
    needed about twice the memory (the figures are in docs/scale.md). ``-n 2`` still starts two workers where the
    memory is there; ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides what auto means.
    """
    return 0 if config.getoption("env") and auto_is_one_process() else None


def auto_is_one_process() -> bool:
    """Whether ``-n auto`` means one process for a pytest-vpro run here (the benchmark's floor follows it too)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return False  # the user decides; xdist reads it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores <= 2


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # pytest-xdist: hand the run to each worker
    run = node.config.stash.get(RUN, None)
    if run is not None:
        node.workerinput.update(runs.worker_input(run))


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name: str, obj) -> None:
    if inspect.isfunction(obj) and any(getattr(m, "name", None) == "check" for m in getattr(obj, "pytestmark", ())):
        show_pytest_the_target_only(obj)  # env, facts and evidence come from the engine, not from fixtures
    return None  # pytest goes on to collect it as usual


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
        argnames = check_argnames(item.obj)
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
        callspec = getattr(item, "callspec", None)
        target = callspec.params.get("target", callspec.params.get(check.scope_kind)) if callspec else None
        if not isinstance(target, Target):  # the scope has no target in this environment
            item.add_marker(pytest.mark.skip(reason=f"not applicable: the environment lists no target for "
                                                    f"{check.id} (scope {check.scope})"))
            continue
        engine.register(Entry(item.nodeid, check, target, item.obj, argnames, order[check.id]))
        item.user_properties += [("vpro_check", check.id), ("vpro_target", target.key),
                                 ("vpro_stage", check.test_stage)]
    engine.finish_registration()
    run = config.stash[RUN]
    if run.site_verdicts is not None:  # before the read-ahead: nothing computes what the site job did
        missing = site_verdicts.seed(run.site_verdicts, engine)
        if missing:
            run.notes.append(f"{len(missing)} site and server checks were not in {run.site_verdicts.path} and were "
                             f"computed here, e.g. {missing[0].check.id} on {missing[0].target.name}")
    keep, drop = runs.select(items, engine, config.getoption("stage"), run.shard, run.shard_by, run.site_only)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    worker = getattr(config, "workerinput", None)
    config.stash[EMPTY_STAGES] = runs.stages_without_targets(checks, engine, config.getoption("stage"))
    if not config.option.collectonly:
        start = (int(worker["workerid"].removeprefix("gw")) / int(worker["workercount"])) if worker else 0.0
        engine.prefetch([engine.entries[i.nodeid] for i in keep if i.nodeid in engine.entries],
                        threads=config.getoption("concurrency"), start=start)
    freeze_the_heap()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Record what this run set out to check, after -k, -m, --stage and --shard (the fleet table reads it)."""
    config = session.config
    engine, worker = config.stash.get(ENGINE, None), getattr(config, "workerinput", None)
    if engine is not None and (worker is None or worker["workerid"] == "gw0"):  # every worker collects the same
        runs.write_selection(config.stash[RUN], session.items, engine, config.stash.get(EMPTY_STAGES, []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The site job (--site-verdicts-out) writes every site and server verdict, in the one process that has them
    all (the only one, or xdist's gw0: every worker collects the same), unless the run was interrupted."""
    config = session.config
    engine, out = config.stash.get(ENGINE, None), config.getoption("site_verdicts_out", None)
    worker = getattr(config, "workerinput", None)
    if (engine is None or not out or not engine.entries or config.option.collectonly
            or exitstatus == pytest.ExitCode.INTERRUPTED or (worker is not None and worker["workerid"] != "gw0")):
        return
    run = config.stash[RUN]
    count = site_verdicts.write(Path(out), engine, environment=run.env.name,
                                ident=runs.site_identity(config, run.env_path), run_id=run.id)
    runs.progress(config, "pytest-vpro")(f"site verdicts: {out} ({count} site and server verdicts)")


def freeze_the_heap() -> None:
    """Exempt every object alive now from the cyclic garbage collector (``gc.freeze``), after one collection.

    A fleet's run holds a large heap that lives until the end: the collected tests, then their reports. Each full
    collection walks all of it, and pytest runs five at exit (``gc_collect_harder``, for unraisable exceptions),
    a noticeable share of a large replay (measured in docs/scale.md).
    Called after collection and at unconfigure, so that the garbage is collected once and the rest is not walked
    again. Objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    engine = pyfuncitem.config.stash.get(ENGINE, None)
    entry = engine.entries.get(pyfuncitem.nodeid) if engine else None
    if entry is None:
        return None
    verdict = engine.obtain(entry)  # stored, computed here with its gates, or waited for
    fleet.label_result(entry.check, entry.target)  # at run time: as markers, 6 per test, they were 40% of
    fleet.attach_evidence(verdict)                 # the memory a collected fleet takes (docs/scale.md)
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


def pytest_keyboard_interrupt(excinfo) -> None:
    interrupts.first_signal()  # abandon in-flight network calls now; a second signal exits at once


def pytest_unconfigure(config: pytest.Config) -> None:
    engine = config.stash.get(ENGINE, None)
    if engine is not None:
        engine.stop_prefetch()
        engine.store.close()
        engine.facts.close()
        freeze_the_heap()


class ControllerSession:
    """The run as the controller sees it: every report, the fleet summary, the report files."""

    def __init__(self, config: pytest.Config, run: runs.Run) -> None:
        self.config, self.run = config, run
        self.recorder = fleet.FleetRecorder(run.env, catalog_mod.for_config(config))
        self.recorder.causes = config.stash[ENGINE].causes
        if not config.option.collectonly:  # run.json says "complete": false until the run's end writes it again
            interrupts.at_start(run)
        self._sigterm = _sigterm_interrupts()
        self._next_progress = time.monotonic() + PROGRESS_EVERY_S

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.recorder.record(report)
        if report.when == "call" and time.monotonic() >= self._next_progress:
            self._next_progress = time.monotonic() + PROGRESS_EVERY_S
            engine = self.config.stash.get(ENGINE, None)
            done, total = engine.read_ahead if engine is not None else (0, 0)
            if total and done < total:
                self._progress(f"read ahead {done:,} of {total:,} targets")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.config.option.collectonly:
            return
        self.run.complete = exitstatus != pytest.ExitCode.INTERRUPTED
        selection = runs.read_selection(self.run)
        selection.problems[:0] = self.run.env.inventory_problems  # e.g. a directory that did not answer
        self.recorder.expected = selection.targets
        self.recorder.problems = list(selection.problems)
        self.run.notes.extend(selection.problems)
        if selection.problems and exitstatus == pytest.ExitCode.OK:  # a green run on nothing is not green
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.run.shard is None and not self.run.site_only:  # a part of a night: vpro-report records it
            self.recorder.history = history.update(self.run, self.recorder)
        self.recorder.write(self.run)
        out = self.config.getoption("facts_out")
        if out:
            inventory = json.loads((self.run.dir / "inventory.json").read_text())
            count = snapshot.merge(self.run.dir, Path(out), environment=self.run.env.name, inventory=inventory,
                                   causes=Causes.read(self.run.dir).to_json())
            self.run.notes.append(f"facts:       {out} ({count} facts)")
        if not self.config.getoption("no_html"):
            self._progress(f"rendering the reports of {len(self.recorder.results)} results "
                           "(allure-report/, report.html)")
            html.render(self.run)  # allure-report/: every result, interactive
            self.run.html = ticket.render(self.run, self.recorder, catalog_mod.for_config(self.config))
        runs.finish(self.run)

    def _progress(self, message: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"pytest-vpro: {message}")
            reporter.flush()

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # the outermost wrapper: after pytest's short test summary,
    def pytest_terminal_summary(self, terminalreporter):  # so the fleet summary stays on screen
        result = yield
        if not self.config.option.collectonly:
            terminalreporter.write_sep("=", "pytest-vpro")
            for line in self.recorder.summary_lines(self.run):
                terminalreporter.write_line(line)
        return result

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
        runs.stop_lab(self.run)


def _sigterm_interrupts():
    """SIGTERM (a scheduler's stop, ``kill``) ends the run as Ctrl-C does: finished results kept, the report
    written and marked incomplete (pytest handles only SIGINT). A second SIGTERM kills at once. Returns the
    handler to put back, or None where nothing was installed (not the main thread, or someone else's handler)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None

    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)
    return signal.SIG_DFL
