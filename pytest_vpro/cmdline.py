"""The command line as pytest reads it: where the checks are, and path options written with a space.

**Where the checks are.** The suites ship in the package (``pytest_vpro.suites``; in a clone, the same files as
``suites/``, through the editable install). A run that names no test path and has no ``testpaths`` of a project
(an empty folder, a scheduler's working directory) collects them: ``pytest --env=/etc/vpro/prod.yaml`` anywhere
checks the whole catalog. A run that names paths, or a project whose ini sets ``testpaths`` (this repository's
``pyproject.toml``: ``suites``), collects what it names.

**Path options with a space.** pytest picks its rootdir and ini file from the command line's paths *before* any
plugin is loaded, so it cannot know that in ``--reports-dir /srv/vpro`` the path is an option's value: it takes
it for a test path. Where that would move the rootdir, the ini file goes, with it ``testpaths``, and the run
collects other tests (it did: a second nightly run collected this project's own ``tests/`` once the reports
folder existed). A value that pytest would not mistake (a name like ``--env lab``, or a path under the folder
that holds the ini file anyway) is accepted with a space; any other is refused, always, existing or not, with
the spelling that works (``--reports-dir=/srv/vpro``).
"""
from __future__ import annotations

import configparser
import importlib.util
import tomllib
from pathlib import Path

import pytest

from .site_verdicts import DEFAULT_MAX_AGE_H

# option -> (argparse dest, whether its value is a folder): every path-valued option of pytest-vpro
PATH_OPTIONS = {"--env": ("env", False), "--reports-dir": ("reports_dir", True),
                "--facts-out": ("facts_out", False), "--facts-in": ("facts_in", False),
                "--site-verdicts-out": ("site_verdicts_out", False), "--site-verdicts-in": ("site_verdicts_in", False)}


def add_site_verdicts_options(group) -> None:
    """The site job and its shards (``site_verdicts.py``, docs/ci.md)."""
    group.addoption("--site-verdicts-out", metavar="FILE",
                    help="the site job: check the site and the servers only and write their verdicts to FILE, "
                         "for the shards of the same estate to take with --site-verdicts-in")
    group.addoption("--site-verdicts-in", metavar="FILE",
                    help="take the site and server verdicts from FILE (written by --site-verdicts-out) instead of "
                         "computing them again; refused if from another environment, catalog or version, or stale")
    group.addoption("--site-verdicts-max-age", type=float, default=DEFAULT_MAX_AGE_H, metavar="HOURS",
                    help=f"the oldest --site-verdicts-in file taken, in hours (default {DEFAULT_MAX_AGE_H:g})")


def shipped_suites() -> Path:
    """The folder of the checks that ship in the package (``suites/`` of a clone under an editable install)."""
    spec = importlib.util.find_spec("pytest_vpro.suites")  # imports pytest_vpro, not the suites
    assert spec is not None and spec.submodule_search_locations, "pytest_vpro.suites is missing from the install"
    return Path(next(iter(spec.submodule_search_locations)))


def collect_shipped_suites(config: pytest.Config) -> None:
    """Point a run that names no tests at the shipped checks (see the module's docstring)."""
    if config.args_source == pytest.Config.ArgsSource.INVOCATION_DIR:
        config.args = [str(shipped_suites())]


def refuse_separated_paths(config: pytest.Config) -> None:
    """Raise a UsageError for a path option written with a space where pytest took its value for a test path."""
    args = [str(a) for a in config.invocation_params.args]
    cwd = config.invocation_params.dir
    for i, arg in enumerate(args[:-1]):
        if arg not in PATH_OPTIONS or args[i + 1].startswith("-"):
            continue
        value = args[i + 1]
        is_dir = PATH_OPTIONS[arg][1]
        if arg == "--env" and not ("/" in value or Path(value).suffix in (".yaml", ".yml")):
            continue  # a name, not a path: pytest does not look at it
        path = (cwd / value).resolve() if not Path(value).is_absolute() else Path(value)
        folder = path if (is_dir or path.is_dir()) else path.parent
        home = _config_home(cwd)
        if _config_home(folder) != home or (home is None and not folder.is_relative_to(cwd)):
            raise pytest.UsageError(
                f"{arg} {value}: write {arg}={value} (with '='). pytest picks its rootdir from the command "
                "line's paths before pytest-vpro is loaded, takes a separate value for a test path, and would "
                "collect other tests.")


CONFIG_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def _config_home(start: Path) -> Path | None:
    """The first folder from ``start`` upwards with a pytest configuration (pytest's own order of files)."""
    for folder in (start, *start.parents):
        for name in CONFIG_FILES:
            if _is_pytest_config(folder / name):
                return folder
    return None


def _is_pytest_config(path: Path) -> bool:
    try:
        if not path.is_file():
            return False
        if path.name in ("pytest.ini", ".pytest.ini"):
            return True
        if path.name == "pyproject.toml":
            return "ini_options" in tomllib.loads(path.read_text()).get("tool", {}).get("pytest", {})
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path)
        return parser.has_section("pytest" if path.name == "tox.ini" else "tool:pytest")
    except (OSError, ValueError, configparser.Error):
        return False
