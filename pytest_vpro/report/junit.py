"""A run's ``junit.xml`` as pytest-vpro reads it back: one :class:`JunitCase` per ``<testcase>``."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JunitCase:
    """One ``<testcase>`` of a run's junit.xml, with its pytest-vpro properties (vpro_check, vpro_target, ...)."""

    nodeid: str
    props: dict[str, str]
    outcome: str  # passed | failed | error | skipped
    message: str  # the element's message attribute
    text: str     # its text (the failure's full report)


def read_junit(junit: Path) -> list[JunitCase]:
    cases = []
    for case in ET.parse(junit).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        outcome, message, text = "passed", "", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message, text = child.get("message") or "", child.text or ""
        cases.append(JunitCase(f"{case.get('classname')}::{case.get('name')}", props, outcome, message, text))
    return cases
