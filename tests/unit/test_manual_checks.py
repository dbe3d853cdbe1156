"""Issue 15: a manual check quotes the guide, one hop from its words, as an automated check's docstring does.

``manual_check(ID, guide=...)`` in ``suites/``: the quote must be the catalog row's ``guide`` field (the seed's
verbatim words), whitespace aside; ``...`` marks a cut, and each piece between cuts must be found there. The
quote becomes the test's docstring and evidence "the guide asks" on every outcome.
"""
import ast
import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from pytest_vpro.checks import Evidence, manual_check

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "pytest_vpro" / "catalog.yaml"
CUT = re.compile(r"\s*\.\.\.\s*")


def normal(text: str) -> str:
    return " ".join(text.split())


def called(node: ast.AST) -> str:
    return getattr(node.func, "id", getattr(node.func, "attr", "")) if isinstance(node, ast.Call) else ""


def manual_calls() -> list[tuple[str, str | None, str | None]]:
    """(file:line, check id, guide quote) of every ``manual_check(...)`` call in suites/; None: not a literal."""
    calls = []
    for path in sorted((ROOT / "suites").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if called(node) == "manual_check":
                check_id = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
                guide = next((kw.value.value for kw in node.keywords
                              if kw.arg == "guide" and isinstance(kw.value, ast.Constant)), None)
                calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", check_id, guide))
    return calls


@pytest.fixture(scope="module")
def rows():
    return {row["id"]: row for row in yaml.safe_load(CATALOG.read_text(encoding="utf-8"))}


def test_every_manual_row_has_one_manual_check_and_only_manual_rows_do(rows):
    ids = [check_id for _, check_id, _ in manual_calls()]
    assert None not in ids, "manual_check's first argument is the row id, as a string literal"
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    manual_rows = {rid for rid, row in rows.items() if row["automated"] is False}
    assert set(ids) == manual_rows, {"no manual_check": sorted(manual_rows - set(ids)),
                                     "not a manual row": sorted(set(ids) - manual_rows)}


def test_every_quote_is_the_catalog_rows_guide_words(rows):
    wrong = []
    for where, check_id, guide in manual_calls():
        if guide is None:
            wrong.append(f"{where} {check_id}: guide= must be a string literal quoting the guide")
            continue
        catalog = normal(rows[check_id]["guide"])
        for piece in filter(None, CUT.split(normal(guide))):
            if piece not in catalog:
                wrong.append(f"{where} {check_id}: {piece!r} is not in the catalog row's guide: {catalog!r}")
    assert not wrong, "\n".join(wrong)


def test_quotes_are_whole_passages_not_fragments():
    """A quote of a few words would pass the test above and still be two hops from the guide."""
    short = [f"{where} {check_id}" for where, check_id, guide in manual_calls()
             if guide is not None and any(len(p.split()) < 5 for p in filter(None, CUT.split(normal(guide))))]
    assert not short, short


def test_guide_is_required_and_not_empty():
    with pytest.raises(TypeError):
        manual_check("X-MANUAL")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        manual_check("X-MANUAL", guide="  ")


QUOTE = "Check Intel AMT is enabled in BIOS\n   (check using BIOS Setup)."
ASKS = "Check Intel AMT is enabled in BIOS (check using BIOS Setup)."


def _env(attestation):
    return SimpleNamespace(attestation=lambda check_id, target: attestation, attestation_max_age_days=30,
                           file=Path("site.yaml"))


def test_the_quote_is_the_tests_docstring():
    test = manual_check("X-MANUAL", guide=QUOTE)
    assert f'"{ASKS}"' in test.__doc__ and "X-MANUAL" in test.__doc__
    assert test.__name__ == "test_manual_x_manual"


@pytest.mark.parametrize("age_days, outcome", [(None, "manual check not attested"), (400, "too old"), (1, None)])
def test_the_guide_asks_is_evidence_on_every_outcome(age_days, outcome):
    attestation = None if age_days is None else SimpleNamespace(
        by="A. Admin", at=dt.date.today() - dt.timedelta(days=age_days), seen="AMT enabled", target="pc01")
    evidence = Evidence()
    test = manual_check("X-MANUAL", guide=QUOTE)
    if outcome is None:
        test(env=_env(attestation), target="pc01", evidence=evidence)
    else:
        with pytest.raises(pytest.skip.Exception, match=outcome):
            test(env=_env(attestation), target="pc01", evidence=evidence)
    assert evidence.items[0] == {"name": "the guide asks", "body": ASKS, "kind": "text"}
    assert [i["name"] for i in evidence.items] == ["the guide asks"] + (["attestation"] if outcome is None else [])
