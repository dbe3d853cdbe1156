"""Environment files: what estate a run checks.

``pytest --env NAME`` loads ``environments/NAME.yaml`` (or a path). The file is
validated once, before collection; every mistake is reported as
``FILE:LINE: key.path: message`` and the run stops with pytest's usage-error
code. ``environments/example.yaml`` documents every key.

Nothing is sent before the whole file validated: the CSV inventories it names
(each mistake as ``CSV_FILE:LINE: column: message``), every address (IPv4: out
of band management is IPv4-only) and every secret reference (an unset
``env:`` variable or an unreadable ``file:`` is a usage error naming the key).

Clients come inline, from CSV files (``source: csv:PATH``) or from an LDAP
query of an OU (``source: ldap:OU=...``). An ``ldap:`` source is read only
once the file validated, through the estate's own DNS servers (``dns.servers``)
when it names them; a directory that does not answer is not a usage error but
a finding of the run (:attr:`Environment.inventory_problems`), which goes on
with the clients it has. Secrets are references only (see
:mod:`pytest_vpro.secrets`).

The loader is five modules, each readable alone; this one is the entry point (``--env`` resolution,
:func:`load`) and re-exports the names the rest of pytest-vpro imports, so ``from pytest_vpro.environment
import Client`` stays the one way in:

- :mod:`pytest_vpro.environment_model`: what a loaded environment is (the data classes, the file's vocabulary,
  :class:`EnvironmentFileError`); data only.
- :mod:`pytest_vpro.environment_walk`: the walk's reporting (``FILE:LINE: key.path: message``) and the primitive
  checks every section uses (a mapping's keys, strings, numbers, IPv4 addresses).
- :mod:`pytest_vpro.environment_inventory`: the clients, inline, from CSV files and from ``ldap:`` sources.
- :mod:`pytest_vpro.environment_schema`: the file's sections (``site:``, ``credentials:``, ``servers:``, ...).

Each module of the list imports only those above it, and this one imports them all, so there is no cycle.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
from pathlib import Path
from typing import Iterator

import yaml

from . import yamlpos
from .environment_inventory import CSV_BOOLEANS, CSV_EXAMPLE, CSV_SEPARATORS, DN_RE
from .environment_model import (
    CLIENT_KEYS,
    DEFAULT_EXPECTED,
    DEFAULT_TIMEOUTS,
    PROVISIONING,
    ROLES,
    SECRET_KEYS,
    SERVER_EXTRA,
    Attestation,
    Client,
    Credential,
    Environment,
    EnvironmentFileError,
    LdapSearch,
    Routing,
    Server,
    Site,
    Target,
)
from .environment_schema import Validator
from .environment_walk import FQDN_RE, ipv4_problem

__all__ = [
    "CLIENT_KEYS", "CSV_BOOLEANS", "CSV_EXAMPLE", "CSV_SEPARATORS", "DEFAULT_EXPECTED", "DEFAULT_TIMEOUTS", "DN_RE",
    "FQDN_RE", "PROVISIONING", "ROLES", "SECRET_KEYS", "SERVER_EXTRA", "SHIPPED_ENVIRONMENTS", "Attestation",
    "Client", "Credential", "Environment", "EnvironmentFileError", "LdapSearch", "Routing", "Server", "Site",
    "Target", "available_environments", "ipv4_problem", "is_path", "load", "resolve_env_path",
    "write_inventory_cache",
]


def _shipped_environments() -> Path:
    spec = importlib.util.find_spec("pytest_vpro.environments")  # a clone's environments/ under an editable install
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else Path()


SHIPPED_ENVIRONMENTS = _shipped_environments()


def is_path(name: str) -> bool:
    """``--env`` takes a name (``lab``) or a path (``envs/prod.yaml``)."""
    return Path(name).suffix in (".yaml", ".yml") or "/" in name


def resolve_env_path(name: str, rootdir: Path, cwd: Path | None = None) -> Path:
    """``--env NAME``: the first of ``<rootdir>/environments/NAME.yaml``, ``./environments/NAME.yaml`` and the
    environments that ship in the package (``lab``, ``example``); a path is taken as it is (from the current
    folder). A name found nowhere gives the rootdir's path, whose error lists what is available."""
    cwd = cwd or Path.cwd()
    candidate = Path(name).expanduser()
    if is_path(name):
        return candidate if candidate.is_absolute() else (cwd / candidate)
    folders = dict.fromkeys([rootdir / "environments", cwd / "environments", SHIPPED_ENVIRONMENTS])
    for folder in folders:
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    return rootdir / "environments" / f"{name}.yaml"


def available_environments(rootdir: Path, cwd: Path | None = None) -> list[str]:
    """The names ``--env`` finds (see :func:`resolve_env_path`)."""
    folders = [rootdir / "environments", (cwd or Path.cwd()) / "environments", SHIPPED_ENVIRONMENTS]
    return sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})


def load(path: Path, *, ldap_search: LdapSearch | None = None, routing: Routing | None = None,
         inventory_cache: Path | None = None, check_secrets: bool | None = None) -> Environment:
    """Load and validate an environment file; raise :class:`EnvironmentFileError`.

    In this order, and nothing is sent before the third: the file and its CSV inventories are validated;
    every secret reference is asked (``check_secrets``); then the ``ldap:`` sources are read with
    ``ldap_search``, within ``routing`` (the estate's DNS; none: this machine's resolver). A file with ``ldap:``
    sources and no ``ldap_search`` is refused at those sources' lines. A directory that does not answer is
    recorded in :attr:`Environment.inventory_problems`.

    ``inventory_cache``: a JSON file with the clients already resolved (xdist
    workers read the controller's so that every worker sees the same fleet).
    ``check_secrets``: default True, except with an ``inventory_cache`` (a worker, a merge of reports: the
    controller asked them already, or nothing will be sent); False for runs that send nothing (``--facts-in``).
    """
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" (available: {', '.join(available)})" if available else ""
        raise EnvironmentFileError([f"{path}: environment file not found{hint}"])
    try:
        doc = yamlpos.load(path)
    except yamlpos.YamlError as exc:
        raise EnvironmentFileError([str(exc)]) from None
    except RecursionError:  # found by tests/reliability/test_fuzz.py: "a: &x [*x]" or 1,000 nested "["
        raise EnvironmentFileError([f"{path}: the YAML is nested too deeply or refers to itself "
                                    "(a recursive &anchor/*alias)"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # e.g. a control character or a binary file (fuzzing)
        raise EnvironmentFileError([f"{path}: not a readable YAML text file: {str(exc).splitlines()[0]}"]) from None
    v = Validator(doc)
    env = v.environment(inventory_cache=inventory_cache)
    if check_secrets is None:
        check_secrets = inventory_cache is None
    if check_secrets:
        v.check_secrets()
    if v.problems:
        raise EnvironmentFileError(v.problems)
    assert env is not None
    if v.ldap_sources:  # only now: the file validated, every secret is there
        v.read_directories(env, ldap_search, routing or _no_routing)
        if v.problems:
            raise EnvironmentFileError(v.problems)
    return env


@contextlib.contextmanager
def _no_routing(env: Environment) -> Iterator[None]:
    yield None


def write_inventory_cache(env: Environment, path: Path) -> None:
    rows = [{"fqdn": c.name, "provisioning": c.provisioning, "canary": c.canary, "address": c.address,
             "uuid": c.uuid, "extra": c.extra} for c in env.clients]
    path.write_text(json.dumps(rows))
