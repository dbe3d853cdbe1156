"""The run's life cycle: its folder under ``reports/``, its environment, shard and lab.

``reports/<run id>/`` holds everything a run writes: ``allure-results/``,
``junit.xml``, ``fleet.csv``, ``summary.json``, ``report.html`` (the
self-contained file for a change ticket), ``allure-report/`` (the full
interactive report, with history) and ``verdicts.sqlite`` (the gating store).
``reports/latest`` points at the newest run.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import catalog, site_verdicts, snapshot
from . import environment as envmod


@dataclass
class Run:
    id: str
    dir: Path
    root: Path
    env: envmod.Environment
    env_path: Path
    shard: tuple[int, int] | None = None
    shard_by: str = "count"
    started: str = ""
    complete: bool = False
    html: Path | None = None
    lab: Any = None  # a lab this run started (and stops), or None
    replay: Any = None  # the snapshot.Replay of --facts-in, or None
    site_only: bool = False  # the site job (--site-verdicts-out): the site and server checks only
    site_verdicts: site_verdicts.Artifact | None = None  # --site-verdicts-in, checked against this run
    notes: list[str] = field(default_factory=list)


#: CI systems that start N copies of a job and tell each its index: (name, index variable, total variable, the
#: index of the first copy). Sources in docs/ci.md.
CI_SHARD_VARIABLES = (
    ("GitLab CI (parallel:)", "CI_NODE_INDEX", "CI_NODE_TOTAL", 1),
    ("Buildkite (parallelism:)", "BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", 0),
    ("CircleCI (parallelism:)", "CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", 0),
    ("Bitbucket Pipelines (parallel steps)", "BITBUCKET_PARALLEL_STEP", "BITBUCKET_PARALLEL_STEP_COUNT", 0),
    ("Semaphore (parallelism:)", "SEMAPHORE_JOB_INDEX", "SEMAPHORE_JOB_COUNT", 1),
)


def parse_shard(value: str | None, environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``--shard I/N`` (1-based), or ``--shard auto``: the index and total the CI gives the job's copy."""
    if not value:
        return None
    if value == "auto":
        return shard_from_ci(os.environ if environ is None else environ)
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--shard {value}: expected I/N, e.g. --shard 2/4, or auto") from None
    if not 1 <= i <= n:
        raise pytest.UsageError(f"--shard {value}: I must be between 1 and N")
    return i, n


def shard_from_ci(environ) -> tuple[int, int]:
    """The shard (1-based) from the first CI of :data:`CI_SHARD_VARIABLES` whose two variables are set."""
    for name, index_var, total_var, first in CI_SHARD_VARIABLES:
        index, total = environ.get(index_var), environ.get(total_var)
        if index is None or total is None:
            continue
        try:
            i, n = int(index) - first + 1, int(total)
        except ValueError:
            raise pytest.UsageError(f"--shard auto: {name}: {index_var}={index!r} and {total_var}={total!r} "
                                    "are not numbers") from None
        if not 1 <= i <= n:
            raise pytest.UsageError(f"--shard auto: {name}: {index_var}={index} is outside the {total} copies "
                                    f"of the job ({index_var} counts from {first})")
        return i, n
    raise pytest.UsageError(
        "--shard auto: no CI job index found; it reads "
        + ", ".join(f"{i}/{t} ({name})" for name, i, t, _ in CI_SHARD_VARIABLES)
        + ". Outside such a job give the shard as I/N (e.g. --shard 2/4)")


SHARD_BY = ("count", "site")


def shard_groups(clients, by: str, default_site: str = "") -> dict[str, str]:
    """Client key -> its group for ``--shard-by``: ``site`` is the client's site code (an inventory column or
    key ``site``; else the environment's site code); any other name is that inventory attribute."""
    key = "site" if by == "site" else by
    out = {}
    for c in clients:
        value = c.extra.get(key)
        out[c.key] = str(value).strip().upper() if by == "site" and value not in (None, "") else (
            default_site if by == "site" else ("" if value is None else str(value)))
    return out


def shard_of_clients(clients, by: str, n: int, default_site: str = "") -> dict[str, int]:
    """Client key -> its shard (0-based) of ``n``. ``count``: every N-th client in sorted order. A group (``site``
    or an attribute): every client of one group in one shard; the groups in sorted order, the g-th in shard
    g mod N, so with as many shards as sites, shard I is the I-th site code in alphabetical order."""
    if by == "count":
        return {c.key: i % n for i, c in enumerate(clients)}
    groups = shard_groups(clients, by, default_site)
    rank = {g: r for r, g in enumerate(sorted(set(groups.values())))}
    return {k: rank[g] % n for k, g in groups.items()}


def check_shard_by(config: pytest.Config, env: envmod.Environment, shard: tuple[int, int] | None) -> str:
    """``--shard-by``: ``count`` (default), ``site``, or an attribute some client of the inventory has."""
    by = config.getoption("shard_by", None) or "count"
    if by != "count" and shard is None:
        raise pytest.UsageError(f"--shard-by {by}: give the shard too (--shard I/N or --shard auto)")
    if by not in SHARD_BY and not any(by in c.extra for c in env.clients):
        found = sorted({k for c in env.clients for k in c.extra})
        raise pytest.UsageError(f"--shard-by {by}: no client of {env.name} has the attribute {by!r}; choose count, "
                                f"site{''.join(', ' + k for k in found if k != 'site')}")
    return by


def describe_shard(env: envmod.Environment, shard: tuple[int, int], by: str) -> str:
    i, n = shard
    mine = [c for c, s in zip(env.clients, shard_of_clients(env.clients, by, n, env.site.code).values())
            if s == i - 1]
    if by == "count":
        return f"shard {i}/{n}: {len(mine)} of {len(env.clients)} clients"
    groups = shard_groups(env.clients, by, env.site.code)
    counts: dict[str, int] = {}
    for c in mine:
        counts[groups[c.key]] = counts.get(groups[c.key], 0) + 1
    listed = ", ".join(f"{g or '(none)'} ({k})" for g, k in sorted(counts.items())) or "none"
    return f"shard {i}/{n} by {by}: {len(mine)} of {len(env.clients)} clients, {by} {listed}"


def start(config: pytest.Config) -> Run:
    """On the controller: load and validate the environment, start a lab if it describes one, make the folder."""
    shard = parse_shard(config.getoption("shard"))
    value = config.getoption("env")
    env_path = envmod.resolve_env_path(value, config.rootpath)
    if not envmod.is_path(value) and not env_path.is_file():
        found = envmod.available_environments(config.rootpath)
        raise pytest.UsageError(f"--env {value}: no environments/{value}.yaml in {config.rootpath}, in the current "
                                f"folder or installed with pytest-vpro; --env finds: {', '.join(found) or 'nothing'}"
                                "; or give the path of an environment file (--env=PATH)")
    lab = None
    replay = _replay(config)
    from .lab import estate, manager  # noqa: PLC0415  (the lab's code is loaded only by a run that starts one)
    if replay is not None and estate.is_lab_description(env_path):  # judge the lab's recorded facts: no lab
        try:
            env_path = estate.load_description(env_path)[1] / "environment.yaml"
        except estate.DescriptionError as exc:
            raise pytest.UsageError(str(exc)) from None
    elif estate.is_lab_description(env_path):  # a lab to start (or reuse); it writes the environment file
        try:
            lab, env_path = manager.ensure(env_path, log=progress(config))
        except (estate.DescriptionError, manager.LabError) as exc:
            raise pytest.UsageError(f"the lab could not be started: {exc}") from None
    artifact = _site_verdicts(config, env_path, shard)  # refused here, before the inventory or a survey is read
    inventory = None
    if replay is not None and replay.header.get("inventory") is not None:  # the fleet as it was recorded
        inventory = Path(config.getoption("reports_dir") or config.rootpath / "reports") / f".inventory-{os.getpid()}"
        inventory.parent.mkdir(parents=True, exist_ok=True)
        inventory.write_text(json.dumps(replay.header["inventory"]))
    say = progress(config, "pytest-vpro")
    say(f"reading the environment {env_path} and its inventory")
    try:
        env = _load(env_path, inventory_cache=inventory, check_secrets=replay is None)  # a replay sends nothing
    except BaseException:
        if lab is not None:
            lab.stop()
        raise
    finally:
        if inventory is not None:
            inventory.unlink(missing_ok=True)
    root = Path(config.getoption("reports_dir") or config.rootpath / "reports")
    now = dt.datetime.now(dt.timezone.utc)
    site_only = bool(config.getoption("site_verdicts_out", None))
    run_id = now.strftime("%Y%m%d-%H%M%S") + f"-{env.name}" + (f"-shard{shard[0]}of{shard[1]}" if shard else "") + (
        "-site" if site_only else "")  # a site job's folder is not one of the shards vpro-report merges
    run_dir = root / run_id
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{run_id}-{suffix}"
    run_dir.mkdir(parents=True)
    envmod.write_inventory_cache(env, run_dir / "inventory.json")
    say(f"environment {env.name}: {len(env.clients)} clients, {len(env.servers)} servers; run folder {run_dir}")
    shard_by = check_shard_by(config, env, shard)
    if shard is not None:
        say(describe_shard(env, shard, shard_by))
    run = Run(id=run_dir.name, dir=run_dir, root=root, env=env, env_path=env_path, shard=shard, shard_by=shard_by,
              started=now.isoformat(timespec="seconds"), lab=lab, replay=replay, site_only=site_only,
              site_verdicts=artifact)
    if artifact is not None:
        say(f"site and server verdicts from {artifact.path}, written {artifact.written}")
    _wire_outputs(config, run)
    return run


def join(config: pytest.Config, workerinput: dict[str, Any]) -> Run:
    """On an xdist worker: the controller's run, environment and inventory."""
    run_dir = Path(workerinput["vpro_run_dir"])
    env_path = Path(workerinput["vpro_env_path"])
    env = _load(env_path, inventory_cache=run_dir / "inventory.json")
    shard = parse_shard(config.getoption("shard"))
    run = Run(id=run_dir.name, dir=run_dir, root=run_dir.parent, env=env, env_path=env_path, shard=shard,
              shard_by=check_shard_by(config, env, shard), replay=_replay(config),
              site_only=bool(config.getoption("site_verdicts_out", None)))
    path = config.getoption("site_verdicts_in", None)
    if path:  # the controller checked it; a worker takes it as it is
        run.site_verdicts = site_verdicts.read(Path(path))
    if workerinput.get("vpro_allure_dir"):
        config.option.allure_report_dir = workerinput["vpro_allure_dir"]
    return run


def _replay(config: pytest.Config):
    path = config.getoption("facts_in", None)
    if not path:
        return None

    try:
        return snapshot.Replay(Path(path))
    except snapshot.SnapshotError as exc:
        raise pytest.UsageError(f"--facts-in: {exc}") from None


def catalog_file(config: pytest.Config) -> Path:
    """The catalog file a run uses (``catalog.for_config``'s choice)."""
    configured = config.getini("vpro_catalog")
    return config.rootpath / configured if configured else catalog.CATALOG_FILE


def site_identity(config: pytest.Config, env_path: Path) -> dict[str, Any]:
    return site_verdicts.identity(env_path, catalog_file(config), config.getoption("allow_disruptive"))


def _site_verdicts(config: pytest.Config, env_path: Path, shard) -> site_verdicts.Artifact | None:
    """``--site-verdicts-in``, refused unless it fits this run; the combinations that make no sense refused."""
    path, out = config.getoption("site_verdicts_in", None), config.getoption("site_verdicts_out", None)
    if out and (shard is not None or path):
        raise pytest.UsageError("--site-verdicts-out is the site job: it checks the site and servers only, so it "
                                "takes neither --shard nor --site-verdicts-in")
    if not path:
        return None
    try:
        return site_verdicts.read(Path(path), site_identity(config, env_path),
                                  config.getoption("site_verdicts_max_age"))
    except site_verdicts.SiteVerdictsError as exc:
        raise pytest.UsageError(f"--site-verdicts-in: {exc}") from None


def worker_input(run: Run) -> dict[str, str]:
    return {"vpro_run_dir": str(run.dir), "vpro_env_path": str(run.env_path),
            "vpro_allure_dir": str(run.dir / "allure-results")}


def _search_directory(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """The ``ldap:`` inventory reader; ldap3 is imported only by a run whose environment has such a source."""
    from .probes.ldap import search_computers  # noqa: PLC0415 - ldap3 only for an environment with ldap: sources

    return search_computers(*args, **kwargs)


def _estate_routing(env: envmod.Environment) -> Any:
    from .probes.dns import estate_routing  # noqa: PLC0415  (dnspython only for an environment with ldap: sources)

    return estate_routing(env)


def load_environment(path: Path, inventory_cache: Path | None = None,
                     check_secrets: bool | None = None) -> envmod.Environment:
    """:func:`pytest_vpro.environment.load` as a run calls it: ``ldap:`` sources read by ldap3, through the
    estate's DNS. Raises :class:`~pytest_vpro.environment.EnvironmentFileError`."""
    return envmod.load(path, ldap_search=_search_directory, routing=_estate_routing,
                       inventory_cache=inventory_cache, check_secrets=check_secrets)


def _load(path: Path, inventory_cache: Path | None = None, check_secrets: bool | None = None) -> envmod.Environment:
    try:
        return load_environment(path, inventory_cache, check_secrets)
    except envmod.EnvironmentFileError as exc:
        raise pytest.UsageError(f"the environment file has {len(exc.problems)} problem(s):\n"
                                + "\n".join(exc.problems)) from None


def _wire_outputs(config: pytest.Config, run: Run) -> None:
    if hasattr(config.option, "allure_report_dir") and not config.option.allure_report_dir:
        config.option.allure_report_dir = str(run.dir / "allure-results")
    if not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = str(run.dir / "junit.xml")


def progress(config: pytest.Config, prefix: str = "vpro-lab"):
    def log(message: str) -> None:  # before the terminal reporter exists: straight to stderr
        sys.stderr.write(f"{prefix}: {message}\n")
        sys.stderr.flush()
    return log


def select(items: list[pytest.Item], engine, stage: int | None, shard: tuple[int, int] | None,
           shard_by: str = "count", site_only: bool = False) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """Items to run and items to deselect, by ``--stage`` and ``--shard``; lower stages first.

    A shard is a deterministic slice of the clients (:func:`shard_of_clients`: by count, the i-th of every N in
    sorted order; by site or attribute, whole groups); the site and server checks run in shard 1, and any shard
    that needs them as gates computes them without reporting them (or takes them from --site-verdicts-in).
    ``site_only`` (the site job of --site-verdicts-out): the site and server checks only.
    """
    index = shard_of_clients(engine.env.clients, shard_by, shard[1], engine.env.site.code) if shard else {}

    def wanted(entry) -> bool:
        if stage is not None and entry.stage > stage:
            return False
        if site_only:
            return entry.target.kind != "client"
        if shard is not None:
            i, n = shard
            if entry.target.kind == "client":
                return index[entry.target.key] == i - 1
            return i == 1
        return True

    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        entry = engine.entries.get(item.nodeid)
        (keep if entry is None or wanted(entry) else drop).append(item)
    rank = {id(item): n for n, item in enumerate(keep)}
    keep.sort(key=lambda it: (engine.entries[it.nodeid].stage if it.nodeid in engine.entries else 0, rank[id(it)]))
    return keep, drop


@dataclass
class Selection:
    """What a run set out to check: the number of checks selected per target, and what it could not check."""
    targets: dict[str, int] | None  # None: not known (the collecting process wrote nothing)
    problems: list[str]


SELECTION_FILE = "selection.json"


def stages_without_targets(checks, engine, stage: int | None) -> list[str]:
    """Stages (up to ``--stage``) none of whose collected checks has a target in the environment."""
    scopes: dict[int, set[str]] = {}
    for item, check, _ in checks:  # (item, catalog row, argnames), before -k and --stage
        if stage is None or check.test_stage <= stage:
            scopes.setdefault(check.test_stage, set()).add("" if item.nodeid in engine.entries else check.scope)
    return [f"stage {number}: the environment names no target for any of its checks (scopes "
            f"{', '.join(sorted(found))}): nothing of stage {number} was checked"
            for number, found in sorted(scopes.items()) if "" not in found]


def write_selection(run: Run, items: list[pytest.Item], engine, problems: list[str]) -> None:
    """Record the selection for the controller's fleet table (under xdist only the workers collect)."""
    targets: dict[str, int] = {}
    for item in items:
        entry = engine.entries.get(item.nodeid)
        if entry is not None:
            targets[entry.target.key] = targets.get(entry.target.key, 0) + 1
    if not targets:
        problems = ["no check of the catalog was selected: nothing was checked (check the test paths, -k, -m, "
                    "--stage and --shard)", *problems]
    tmp = run.dir / f".{SELECTION_FILE}-{os.getpid()}"
    tmp.write_text(json.dumps({"targets": targets, "problems": problems}))
    os.replace(tmp, run.dir / SELECTION_FILE)


def read_selection(run_dir_or_run) -> Selection:
    run_dir = getattr(run_dir_or_run, "dir", run_dir_or_run)
    try:
        data = json.loads((Path(run_dir) / SELECTION_FILE).read_text())
    except (OSError, ValueError):
        return Selection(None, ["the run recorded no selection of checks (no test was collected, or the "
                                "collecting process stopped): every client is reported as not checked"])
    return Selection(dict(data.get("targets") or {}), list(data.get("problems") or []))


def finish(run: Run) -> None:
    meta = {"id": run.id, "environment": run.env.name, "environment_file": str(run.env_path),
            "started": run.started, "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "complete": run.complete, "shard": list(run.shard) if run.shard else None,
            "html": str(run.html) if run.html else None, "notes": run.notes}
    (run.dir / "run.json").write_text(json.dumps(meta, indent=2))
    latest = run.root / "latest"
    tmp = run.root / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run.dir.name)
        os.replace(tmp, latest)
    except OSError as exc:
        run.notes.append(f"could not update {latest}: {exc}")


def stop_lab(run: Run) -> None:
    if run.lab is not None:
        run.lab.stop()
        run.lab = None
