"""The guide's checks as data.

``catalog.yaml`` (beside this module) holds every distinct check of the two
seed documents: the troubleshooting guide (stages 1-7, the per-component
checklists, Appendix A's hot fixes) and the Configuration Manager 2007
prerequisites page. A test in ``suites/stageN/`` names its row with
``@pytest.mark.check("ID")``; everything else about it (stage, component,
scope, Allure labels, the corrective action on failure) comes from here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")
COMPONENTS = ("client", "network", "site_server", "active_directory", "certificate_authority", "console")
SEEDS = {"000": "Troubleshooting Guide: Deploying Intel vPro Technology and Microsoft SCCM",
         "004": "Prerequisites for Out of Band Management (Configuration Manager 2007)"}


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    stages: tuple[int, ...]
    test_stage: int
    components: tuple[str, ...]
    scope: str
    applies_to: str
    guide: str
    corrective_action: str
    method: str
    automated: bool
    disruptive: bool
    severity: str
    sources: tuple[tuple[str, str], ...]

    @property
    def scope_kind(self) -> str:
        """``site``, ``server`` or ``client``: the name of the argument its test takes."""
        return self.scope.split(":", 1)[0]


@functools.lru_cache(maxsize=4)
def load(path: Path = CATALOG_FILE) -> dict[str, Check]:
    rows = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    out: dict[str, Check] = {}
    for row in rows:
        check = Check(
            id=row["id"], title=row["title"], stages=tuple(row.get("stages") or ()),
            test_stage=int(row["test_stage"]), components=tuple(row["components"]), scope=row["scope"],
            applies_to=row.get("applies_to", "all"), guide=" ".join(str(row.get("guide", "")).split()),
            corrective_action=" ".join(str(row.get("corrective_action", "")).split()),
            method=" ".join(str(row.get("method", "")).split()), automated=bool(row["automated"]),
            disruptive=bool(row.get("disruptive", False)), severity=row.get("severity", "normal"),
            sources=tuple((str(s["seed"]), s["section"]) for s in row.get("sources", ())))
        if check.id in out:
            raise ValueError(f"{path}: check id {check.id} appears twice")
        out[check.id] = check
    return out


def for_config(config) -> dict[str, Check]:
    """The catalog a pytest run uses: ``vpro_catalog`` in the ini file (for the project's own tests), or ours."""
    configured = config.getini("vpro_catalog")
    return load(config.rootpath / configured if configured else CATALOG_FILE)


def stage_labels(check: Check) -> list[str]:
    stages = check.stages or (check.test_stage,)
    return [f"Stage {n}" for n in stages]
