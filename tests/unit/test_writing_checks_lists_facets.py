"""docs/writing-checks.md lists every public method of every facet a check may call (``facts.<facet>.<method>(``),
so that the document a check's author reads is the whole of what ``facts`` offers."""
from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

from pytest_vpro.facts import FACETS, Facts

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-checks.md"
#: the core's own methods a check calls (the rest of the core is the facets' plumbing)
CORE = ("server", "changed", "derived", "get")


def _facets() -> dict[str, object]:
    facts = Facts(SimpleNamespace(key="client:pc01.test", kind="client", name="pc01.test"), env=None)
    out = {}
    for path in FACETS:
        obj: object = facts
        for part in path.split("."):
            obj = getattr(obj, part)
        out[path] = obj
    return out


def public_methods(facet: object) -> list[str]:
    return sorted(name for name, member in inspect.getmembers(type(facet), inspect.isfunction)
                  if not name.startswith("_"))


def test_every_public_facet_method_is_in_the_doc():
    text = DOC.read_text()
    missing = [f"facts.{path}.{name}(" for path, facet in _facets().items() for name in public_methods(facet)
               if f"facts.{path}.{name}(" not in text]
    missing += [f"facts.{name}(" for name in CORE if f"`facts.{name}(" not in text]
    assert not missing, f"docs/writing-checks.md does not list: {', '.join(missing)}"


def test_every_facet_is_an_attribute_of_facts_with_methods():
    for path, facet in _facets().items():
        assert public_methods(facet), path
    names = {n for n, v in vars(Facts(SimpleNamespace(key="site:x", kind="site", name="x"), env=None)).items()
             if hasattr(v, "facts") and n != "connect"}
    assert names == {p for p in FACETS if "." not in p}, "FACETS lists every facet of Facts"
