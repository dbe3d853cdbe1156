"""Site and server verdicts computed once for many shards (issue 19, item 4).

Every client's gate consults the lower-stage verdicts of the site and of every server (``gating.Engine.gates``),
so without help each ``--shard I/N`` computes those checks again. A *site job* (``--site-verdicts-out FILE``)
checks the site and the servers only and writes their verdicts to a small JSON file; each shard given it
(``--site-verdicts-in FILE``) takes them instead of computing them: its store is seeded with them before the
tests and the read-ahead start, so its client gates and (in shard 1) its site and server tests use them.

The file says what it was computed for, and a shard refuses it (a ``pytest.UsageError``, before anything is sent)
when it does not fit: another format version, another environment file (its SHA-256: names, servers, site, the
inline clients), another catalog or pytest-vpro version, another ``--allow-disruptive``, or older than
``--site-verdicts-max-age`` hours (default :data:`DEFAULT_MAX_AGE_H`). The inventory files an environment reads
(``csv:``, ``ldap:``) are not in the fingerprint: they list clients, which site and server checks do not judge.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gating import Engine, Entry, Verdict
from .secrets import redact

FORMAT = "pytest-vpro site verdicts"
VERSION = 1
#: How old an artifact a shard still takes, in hours: one night's shards, with room for a slow queue; older
#: verdicts describe a site that may have changed since (``--site-verdicts-max-age`` overrides it).
DEFAULT_MAX_AGE_H = 12.0
CLOCK_SKEW_S = 300  # an artifact "from the future" by more than this: the two machines' clocks disagree


def _version() -> str:
    try:
        return importlib.metadata.version("pytest-vpro")
    except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown"


__version__ = _version()


class SiteVerdictsError(Exception):
    """An artifact this run cannot take; the message says why and what to do."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    header: dict[str, Any]
    verdicts: dict[tuple[str, str], Verdict]  # (check id, target key) -> the verdict as this run reports it

    @property
    def written(self) -> str:
        return str(self.header.get("written", "?"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def identity(env_path: Path, catalog_path: Path, allow_disruptive: bool) -> dict[str, Any]:
    """What the verdicts were computed for: a shard takes them only where all of it is the same."""
    return {"environment_sha256": sha256(env_path), "catalog_sha256": sha256(catalog_path),
            "pytest_vpro": __version__, "allow_disruptive": bool(allow_disruptive)}


def sitewide(engine: Engine) -> list[Entry]:
    """The entries whose target is the site or a server: what every client's gate consults."""
    return sorted((e for e in engine.entries.values() if e.target.kind != "client"), key=lambda e: e.sort_key)


def write(path: Path, engine: Engine, *, environment: str, ident: dict[str, Any], run_id: str,
          now: dt.datetime | None = None) -> int:
    """Write the verdict of every site and server entry (computed here if nothing needed it yet); returns
    their number. The file appears whole or not at all, through the run's redactor as every report."""
    rows = []
    for entry in sitewide(engine):
        verdict = engine.obtain(entry)
        rows.append({"check": entry.check.id, "target": entry.target.key, "stage": entry.stage,
                     "outcome": verdict.outcome, "message": verdict.message, "evidence": list(verdict.evidence),
                     "duration": round(verdict.duration, 3)})
    written = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    data = {"format": FORMAT, "version": VERSION, "environment": environment, **ident, "written": written,
            "run": run_id, "verdicts": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}-{os.getpid()}")
    tmp.write_text(redact(json.dumps(data, indent=1)))  # as snapshots: no secret leaves the run in it
    os.replace(tmp, path)
    return len(rows)


def read(path: Path, ident: dict[str, Any] | None = None, max_age_h: float = DEFAULT_MAX_AGE_H,
         now: dt.datetime | None = None) -> Artifact:
    """The artifact at ``path``; with ``ident`` (this run's :func:`identity`) refuse one that does not fit it or
    is older than ``max_age_h`` hours. Raises :class:`SiteVerdictsError`."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SiteVerdictsError(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError:
        raise SiteVerdictsError(f"{path}: not JSON (write it with --site-verdicts-out)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SiteVerdictsError(f"{path}: not a site verdicts file (write it with --site-verdicts-out)")
    if data.get("version") != VERSION:
        raise SiteVerdictsError(f"{path}: format version {data.get('version')!r}; this pytest-vpro "
                                f"({__version__}) reads version {VERSION}: write it again with this version")
    if ident is not None:
        _refuse_misfit(path, data, ident, max_age_h, now or dt.datetime.now(dt.timezone.utc))
    written = data.get("written", "?")
    note = f"verdict from the site verdicts file {path.name}, written {written} by run {data.get('run')}"
    verdicts = {}
    for n, row in enumerate(data.get("verdicts") or [], 1):
        try:
            message = f"{row['message']}\n  ({note}; not computed again here)" if row["message"] else ""
            evidence = (*map(dict, row.get("evidence", [])), {"name": "verdict source", "body": note, "kind": "text"})
            if row["outcome"] not in OUTCOMES:
                raise ValueError(row["outcome"])
            verdicts[(row["check"], row["target"])] = Verdict(row["outcome"], message, evidence,
                                                              float(row.get("duration", 0.0)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise SiteVerdictsError(f"{path}: verdict {n} is not one this version writes (check, target, "
                                    "outcome, message): write the file again with --site-verdicts-out") from None
    return Artifact(path, data, verdicts)


OUTCOMES = ("passed", "failed", "skipped", "error")


FIT = (("environment_sha256", "environment file"), ("catalog_sha256", "checks catalog"),
       ("pytest_vpro", "pytest-vpro version"), ("allow_disruptive", "--allow-disruptive setting"))


def _refuse_misfit(path: Path, data: dict[str, Any], ident: dict[str, Any], max_age_h: float,
                   now: dt.datetime) -> None:
    for key, what in FIT:
        if data.get(key) != ident[key]:
            raise SiteVerdictsError(
                f"{path}: written for environment {data.get('environment')!r} with another {what} ({key} "
                f"{data.get(key)!r}, this run: {ident[key]!r}); a shard takes only the verdicts of its own estate: "
                "run the site job again with this run's environment file, catalog and options")
    try:
        written = dt.datetime.fromisoformat(str(data.get("written")))
        age = (now - written).total_seconds()
    except (TypeError, ValueError):
        raise SiteVerdictsError(f"{path}: no valid time of writing ({data.get('written')!r})") from None
    if age < -CLOCK_SKEW_S:
        raise SiteVerdictsError(f"{path}: written {data['written']}, {-age / 60:.0f} minutes in this machine's "
                                "future: the clocks of the site job's machine and this one disagree")
    if age > max_age_h * 3600:
        raise SiteVerdictsError(f"{path}: written {data['written']}, {age / 3600:.1f} h ago, older than "
                                f"--site-verdicts-max-age {max_age_h:g} h: the site may have changed since; "
                                "run the site job again")


def seed(artifact: Artifact, engine: Engine) -> list[Entry]:
    """Put the artifact's verdicts into the engine's store before any check runs; returns the site and server
    entries it has no verdict for (computed here as usual)."""
    missing = []
    for entry in sitewide(engine):
        verdict = artifact.verdicts.get((entry.check.id, entry.target.key))
        if verdict is None:
            missing.append(entry)
        elif engine.store.claim(entry.nodeid):  # another worker may have seeded it already
            engine.store.put(entry.nodeid, verdict)
    return missing
