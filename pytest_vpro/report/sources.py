"""``vpro-facts sources RUN``: per check, the sources its verdicts read, from a run's verdict store.

Every verdict holds a "facts read" evidence item (``facts.core.sources``): the facts shared by the fleet's checks
(read once for the run: the site server's ``SMS_R_System``, the directory, a log) and the target's own (its AMT,
its OS). This puts them together per check over every target, the target's name written ``<target>``, so one
line says where a check's verdicts came from. ``docs/sources.md`` is its output for the lab.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ..facts.core import FACTS_READ, SHARED_HEAD


def per_check(run_dir: Path) -> dict[str, dict[str, dict[str, int]]]:
    """``{check id: {"fleet": {fact: targets}, "own": {fact: targets}}}`` from ``run_dir/verdicts.sqlite``."""
    db = run_dir / "verdicts.sqlite"
    if not db.is_file():
        raise FileNotFoundError(f"{db} does not exist: give a run folder (reports/<run id>/)")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT evidence FROM verdicts WHERE evidence LIKE ?", (f'%"{FACTS_READ}"%',)).fetchall()
    finally:
        con.close()
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (text,) in rows:
        for item in json.loads(text):
            if item.get("name") != FACTS_READ or "check" not in item:
                continue
            found = out.setdefault(item["check"], {"fleet": {}, "own": {}})
            section = found["own"]
            for line in item["body"].splitlines():
                if not line.startswith("  "):
                    section = found["fleet"] if line.startswith(SHARED_HEAD) else found["own"]
                    continue
                fact = line.strip()
                if section is found["own"]:  # the target's name, as a whole part of the key (sources())
                    fact = f".{fact}.".replace(f".{item.get('target') or chr(0)}.", ".<target>.")[1:-1]
                section[fact] = section.get(fact, 0) + 1
    return out


def markdown(found: dict[str, dict[str, dict[str, int]]]) -> str:
    lines = ["| check | read once for the run (shared by every target's checks) | read per target |",
             "|---|---|---|"]
    for check in sorted(found):
        fleet, own = (sorted(found[check][k]) for k in ("fleet", "own"))
        lines.append(f"| {check} | {'<br>'.join(f'`{f}`' for f in fleet) or '-'} | "
                     f"{'<br>'.join(f'`{f}`' for f in own) or '-'} |")
    return "\n".join(lines) + "\n"
