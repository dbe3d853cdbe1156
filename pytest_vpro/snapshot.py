"""Fact snapshots: every fact a run observed, written with ``--facts-out FILE`` and replayed with ``--facts-in FILE``.

A snapshot is JSON Lines, one fact per line, sorted, so two nightly snapshots diff with ``vpro-facts diff A B``
(or any text diff)::

    {"format": "pytest-vpro facts", "version": 1, "environment": "lab", "created": "...", "inventory": {...},
     "causes": [...]}
    {"target": "client:pc0001.vprolab.test", "name": "amt.provisioning", "value": {...}}
    {"target": "client:pc0002.vprolab.test", "name": "amt.provisioning", "error": {...}}

Values are the facts' Python values in a tagged JSON form (dataclasses of ``pytest_vpro`` by name, datetimes,
bytes in base64, certificates and CRLs in PEM/DER); errors are the :class:`ProbeError` a fetch raised (a host that
did not answer is a fact too). What cannot be encoded (sessions, connections) is not a fact and is not written.
Secrets are not facts; every line still goes through the run's redactor before it is written.

Replaying never touches the network: a fact that is not in the snapshot is a :class:`ProbeError` for the check
("not observed in the snapshot"), so a check added after the snapshot was taken says so instead of guessing.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import enum
import importlib
import json
import os
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any, Iterable

from .probes.errors import ProbeError
from .probes.wsman_envelope import Instance
from .report import sources as report_sources

FORMAT, VERSION = "pytest-vpro facts", 1
PART_PREFIX = "facts-part-"


class Unencodable(TypeError):
    pass


class SnapshotError(Exception):
    """A snapshot file that cannot be read; the message names the file and line."""


# ----------------------------------------------------------------------------------------------- encoding
def encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return {"__t": "tuple", "v": [encode(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"__t": "frozenset" if isinstance(value, frozenset) else "set",
                "v": sorted((encode(v) for v in value), key=lambda x: json.dumps(x, sort_keys=True))}
    if isinstance(value, Instance):  # a dict that keeps its class name: before plain dicts
        return {"__t": "wsman.Instance", "cls": value.class_name, "v": encode(dict(value))}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and "__t" not in value:
            return {k: encode(v) for k, v in value.items()}
        return {"__t": "dict", "v": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (bytes, bytearray)):
        return {"__t": "bytes", "v": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dt.datetime):
        return {"__t": "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {"__t": "date", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"__t": "timedelta", "v": value.total_seconds()}
    if isinstance(value, enum.Enum):
        return {"__t": "enum", "cls": _name(type(value)), "v": encode(value.value)}
    if isinstance(value, ProbeError):
        return {"__t": "error", "cls": _name(type(value)), "message": str(value),
                "attrs": {k: v for k, v in vars(value).items() if isinstance(v, (str, int, float, type(None)))}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if not cls.__module__.startswith("pytest_vpro."):
            raise Unencodable(f"{_name(cls)} is not a pytest_vpro type")
        return {"__t": "dc", "cls": _name(cls),
                "v": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    x509 = _x509_kind(value)
    if x509:
        from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415 - cryptography loads only when a snapshot holds a certificate or CRL

        return {"__t": x509, "v": base64.b64encode(value.public_bytes(Encoding.DER)).decode()}
    raise Unencodable(f"{type(value).__module__}.{type(value).__qualname__}")


def _x509_kind(value: Any) -> str | None:
    from cryptography import x509  # noqa: PLC0415 - cryptography loads only when a snapshot holds a certificate or CRL

    if isinstance(value, x509.Certificate):
        return "x509.cert"
    if isinstance(value, x509.CertificateRevocationList):
        return "x509.crl"
    return None


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith("pytest_vpro."):  # a snapshot names only our own types; never import others
        raise SnapshotError(f"type {name} is not a pytest_vpro type")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get("__t")
    if tag is None:
        return {k: decode(v) for k, v in value.items()}
    v = value.get("v")
    if tag == "tuple":
        return tuple(decode(x) for x in v)
    if tag in ("set", "frozenset"):
        return (frozenset if tag == "frozenset" else set)(_hashable(decode(x)) for x in v)
    if tag == "dict":
        return {_hashable(decode(k)): decode(x) for k, x in v}
    if tag == "bytes":
        return base64.b64decode(v)
    if tag == "datetime":
        return dt.datetime.fromisoformat(v)
    if tag == "date":
        return dt.date.fromisoformat(v)
    if tag == "timedelta":
        return dt.timedelta(seconds=v)
    if tag == "enum":
        return _load_class(value["cls"])(decode(v))
    if tag == "error":
        cls = _load_class(value["cls"])
        if not (isinstance(cls, type) and issubclass(cls, ProbeError)):
            raise SnapshotError(f"{value['cls']} is not a ProbeError")
        exc = cls.__new__(cls)
        Exception.__init__(exc, value["message"])
        exc.__dict__.update(value.get("attrs") or {})
        return exc
    if tag == "dc":
        cls = _load_class(value["cls"])
        fields = {k: decode(x) for k, x in v.items()}
        init = {f.name: fields[f.name] for f in dataclasses.fields(cls) if f.init and f.name in fields}
        obj = cls(**init)
        for f in dataclasses.fields(cls):
            if not f.init and f.name in fields:
                object.__setattr__(obj, f.name, fields[f.name])
        return obj
    if tag == "x509.cert":
        from cryptography import x509  # noqa: PLC0415 - cryptography loads only when a snapshot holds a certificate or CRL

        return x509.load_der_x509_certificate(base64.b64decode(v))
    if tag == "x509.crl":
        from cryptography import x509  # noqa: PLC0415 - cryptography loads only when a snapshot holds a certificate or CRL

        return x509.load_der_x509_crl(base64.b64decode(v))
    if tag == "wsman.Instance":
        inst = Instance(value["cls"])
        inst.update(decode(v))
        return inst
    raise SnapshotError(f"unknown tag {tag!r}")


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


# ----------------------------------------------------------------------------------------------- writing
class Recorder:
    """Appends every fact this process observes to its own part file in the run folder (merged at the end)."""

    def __init__(self, run_dir: Path, redact) -> None:
        self.path = run_dir / f"{PART_PREFIX}{os.getpid()}.jsonl"
        self._redact = redact
        self._lock = threading.Lock()
        self.skipped: set[str] = set()

    def record(self, target: str, name: str, *, value: Any = None, error: ProbeError | None = None) -> None:
        try:
            row = {"target": target, "name": name}
            row.update({"error": encode(error)} if error is not None else {"value": encode(value)})
        except Unencodable:
            self.skipped.add(name)  # a session or connection: not a fact
            return
        line = self._redact(json.dumps(row, sort_keys=True))
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def merge(run_dir: Path, out: Path, *, environment: str, inventory: Any = None, causes: Any = None) -> int:
    """Merge the run's part files into ``out`` (sorted, one line per fact); returns the number of facts.

    ``causes``: the run's survey of the shared services (``causes.json``'s rows), kept in the header so that
    ``--facts-in`` attributes findings as the recorded run did. An optional key of version 1: a snapshot without
    it (written before) replays with no causes, and a reader that does not know it ignores it."""
    rows: dict[tuple[str, str], str] = {}
    for part in sorted(run_dir.glob(f"{PART_PREFIX}*.jsonl")):
        for line in part.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["target"], row["name"])] = line
    header = {"format": FORMAT, "version": VERSION, "environment": environment,
              "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "facts": len(rows),
              "inventory": inventory, **({"causes": causes} if causes is not None else {})}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(header, sort_keys=True) + "\n")
        for key in sorted(rows):
            f.write(rows[key] + "\n")
    tmp.replace(out)
    return len(rows)


# ----------------------------------------------------------------------------------------------- reading
def read(path: Path) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    """The header and the raw rows of a snapshot, ``{(target, name): row}``; SnapshotError names file:line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from None
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    header: dict[str, Any] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if n == 1:
            if row.get("format") != FORMAT or row.get("version") != VERSION:
                raise SnapshotError(f"{path}:1: not a pytest-vpro facts snapshot (version {VERSION})")
            header = row
            continue
        if not isinstance(row, dict) or "target" not in row or "name" not in row:
            raise SnapshotError(f"{path}:{n}: a fact needs 'target' and 'name'")
        rows[(row["target"], row["name"])] = row
    if not header:
        raise SnapshotError(f"{path}: empty file")
    return header, rows


class Replay:
    """The facts of a snapshot, decoded on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header, self._rows = read(path)
        self._lock = threading.Lock()

    def lookup(self, target: str, name: str) -> tuple[bool, Any]:
        """``(True, value)``; raises the recorded ProbeError; ``(False, None)`` if the fact was not observed."""
        row = self._rows.get((target, name))
        if row is None:
            return False, None
        if "error" in row:
            raise decode(row["error"])
        return True, decode(row["value"])


# ----------------------------------------------------------------------------------------------- diff
def diff(a: Path, b: Path) -> Iterable[str]:
    """Lines describing what changed from snapshot ``a`` to ``b``, per target and fact."""
    _, ra = read(a)
    _, rb = read(b)
    for key in sorted(set(ra) | set(rb)):
        target, name = key
        x, y = ra.get(key), rb.get(key)
        if x is None:
            yield f"+ {target} {name}: {_show(y)}"
        elif y is None:
            yield f"- {target} {name}: {_show(x)}"
        elif _body(x) != _body(y):
            yield f"~ {target} {name}: {_show(x)} -> {_show(y)}"


def _body(row: dict[str, Any]) -> str:
    return json.dumps({k: row[k] for k in ("value", "error") if k in row}, sort_keys=True)


def _show(row: dict[str, Any], limit: int = 160) -> str:
    text = f"error {row['error'].get('message')}" if "error" in row else json.dumps(row["value"], sort_keys=True)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ----------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``vpro-facts diff A B`` (what changed in the estate between two snapshots) and ``vpro-facts show A``."""
    parser = argparse.ArgumentParser(prog="vpro-facts", description="Read and compare pytest-vpro fact snapshots "
                                     "(written by pytest --facts-out=FILE).")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("diff", help="what changed from snapshot A to snapshot B (+ new, - gone, ~ changed)")
    d.add_argument("a", type=Path)
    d.add_argument("b", type=Path)
    d.add_argument("--target", help="only this target (FQDN, or a substring of it)")
    s = sub.add_parser("show", help="the snapshot's header and its facts per target")
    s.add_argument("a", type=Path)
    r = sub.add_parser("sources", help="per check, the facts its verdicts read (shared by the fleet or the "
                       "target's own), from a run folder's verdict store, as a Markdown table")
    r.add_argument("run", type=Path, help="a run folder, reports/<run id>/ (or reports/latest)")
    args = parser.parse_args(argv)
    if args.command == "sources":
        try:
            print(report_sources.markdown(report_sources.per_check(args.run)), end="")
        except (OSError, sqlite3.Error, ValueError) as exc:
            print(f"vpro-facts: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        if args.command == "diff":
            changes = [line for line in diff(args.a, args.b) if not args.target or args.target in line.split()[1]]
            for line in changes:
                print(line)
            print(f"{len(changes)} change(s)", file=sys.stderr)
            return 1 if changes else 0
        header, rows = read(args.a)
        print(json.dumps({k: v for k, v in header.items() if k != "inventory"}, sort_keys=True))
        per_target: dict[str, int] = {}
        errors: dict[str, int] = {}
        for target, _ in rows:
            per_target[target] = per_target.get(target, 0) + 1
        for (target, _), row in rows.items():
            if "error" in row:
                errors[target] = errors.get(target, 0) + 1
        for target in sorted(per_target):
            print(f"{target}: {per_target[target]} facts" + (f", {errors[target]} errors" if target in errors else ""))
        return 0
    except SnapshotError as exc:
        print(f"vpro-facts: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
