"""Structural rules of the checks catalog ``pytest_vpro/catalog.yaml``.

The catalog is data: one row per distinct check of the troubleshooting guide (seed 000) and of the Configuration
Manager 2007 prerequisites page (seed 004). These tests keep the data well formed so the plugin can rely on it.
"""

import re
from pathlib import Path

import pytest
import yaml

CATALOG = Path(__file__).resolve().parents[2] / "pytest_vpro" / "catalog.yaml"

KEYS = [
    "id", "title", "stages", "test_stage", "components", "scope", "applies_to", "guide",
    "corrective_action", "method", "automated", "disruptive", "severity", "sources",
]
STRING_KEYS = ["id", "title", "scope", "applies_to", "guide", "corrective_action", "method", "severity"]
ID_RE = re.compile(r"^(S[1-7]|PRE|HF|GEN)-[A-Z0-9-]+$")
COMPONENTS = {"client", "network", "site_server", "active_directory", "certificate_authority", "console"}
ROLES = {"site_server", "oob_service_point", "domain_controller", "dns", "dhcp", "issuing_ca",
         "reporting_point", "oob_console", "wsman_translator"}
SCOPES = {"site", "client"} | {f"server:{role}" for role in ROLES}
SEVERITIES = {"critical", "normal", "minor"}
SEEDS = {"000", "004"}
# Appendix A of the guide (seed 000), including the rollup KB960804 and its eight members.
APPENDIX_A = ["KB899900", "KB908209", "KB942841", "KB960804", "KB954718", "KB955126", "KB955114", "KB955355",
              "KB956337", "KB957183", "KB957469", "KB959040", "KB936059", "KB932303", "KB940848"]


@pytest.fixture(scope="module")
def rows():
    with CATALOG.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, list) and data, "catalog must be a non-empty YAML list"
    return data


def _each(rows):
    for row in rows:
        yield row.get("id", "<no id>"), row


def test_every_row_is_a_mapping_with_keys_in_order(rows):
    for rid, row in _each(rows):
        assert isinstance(row, dict), rid
        assert list(row) == KEYS, f"{rid}: keys {list(row)} != {KEYS}"


def test_value_types(rows):
    for rid, row in _each(rows):
        for key in STRING_KEYS:
            assert isinstance(row[key], str) and row[key].strip(), f"{rid}: {key} must be a non-empty string"
        assert isinstance(row["stages"], list), rid
        assert all(type(s) is int for s in row["stages"]), rid
        assert type(row["test_stage"]) is int, rid
        assert isinstance(row["components"], list) and row["components"], rid
        assert type(row["automated"]) is bool and type(row["disruptive"]) is bool, rid
        assert isinstance(row["sources"], list), rid


def test_ids_unique_and_well_formed(rows):
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    bad = [i for i in ids if not ID_RE.match(i)]
    assert not bad, bad


def test_titles_unique_and_short(rows):
    titles = [row["title"] for row in rows]
    assert len(titles) == len(set(titles)), sorted({t for t in titles if titles.count(t) > 1})
    long = [row["id"] for row in rows if len(row["title"]) > 90]
    assert not long, long


def test_stages(rows):
    for rid, row in _each(rows):
        stages = row["stages"]
        assert set(stages) <= set(range(1, 8)), rid
        assert stages == sorted(set(stages)), f"{rid}: stages must be sorted and unique"
        assert 1 <= row["test_stage"] <= 7, rid
        if stages:
            assert row["test_stage"] == min(stages), f"{rid}: test_stage must be the earliest stage"
        else:
            assert rid.startswith(("GEN-", "PRE-")), f"{rid}: only GEN-/PRE- rows may have no stage"


def test_stage_prefix_matches_test_stage(rows):
    for rid, row in _each(rows):
        m = re.match(r"^S([1-7])-", rid)
        if m:
            assert int(m.group(1)) == row["test_stage"], rid
            assert row["stages"], f"{rid}: guide rows list their stages"


def test_components_scope_severity(rows):
    for rid, row in _each(rows):
        assert set(row["components"]) <= COMPONENTS, f"{rid}: {row['components']}"
        assert len(row["components"]) == len(set(row["components"])), rid
        assert row["scope"] in SCOPES, f"{rid}: {row['scope']}"
        assert row["severity"] in SEVERITIES, f"{rid}: {row['severity']}"


def test_every_appendix_a_hot_fix_has_a_row(rows):
    hf_ids = [row["id"] for row in rows if row["id"].startswith("HF-")]
    missing = [kb for kb in APPENDIX_A if not any(kb in rid for rid in hf_ids)]
    assert not missing, missing


def test_hot_fix_rows_carry_the_check_hot_fixes_stages(rows):
    for rid, row in _each(rows):
        if rid.startswith("HF-"):
            assert {1, 3, 4} <= set(row["stages"]), rid


def test_disruptive_rows_are_automated(rows):
    bad = [row["id"] for row in rows if row["disruptive"] and not row["automated"]]
    assert not bad, bad


def test_every_row_has_a_source(rows):
    for rid, row in _each(rows):
        assert row["sources"], f"{rid}: no source"
        for src in row["sources"]:
            assert isinstance(src, dict) and set(src) == {"seed", "section"}, rid
            assert src["seed"] in SEEDS, rid
            assert isinstance(src["section"], str) and src["section"].strip(), rid


def test_sources_agree_with_stages(rows):
    """A row that cites a stage section lists that stage, and a guide (S) row cites each stage it lists."""
    for rid, row in _each(rows):
        cited = {int(m.group(1)) for src in row["sources"]
                 if (m := re.match(r"^Stage ([1-7]) ", src["section"]))}
        assert cited <= set(row["stages"]), f"{rid}: cites stages {sorted(cited)} not listed"
        if rid.startswith("S"):
            assert cited == set(row["stages"]), f"{rid}: lists stages it does not cite"


def test_prerequisites_rows_cite_seed_004(rows):
    for rid, row in _each(rows):
        if rid.startswith("PRE-"):
            assert any(src["seed"] == "004" for src in row["sources"]), rid


def test_components_include_every_cited_component_section(rows):
    """A row cited from a 'Troubleshooting by Component' section lists that component."""
    section_component = {
        "Client": "client", "Network": "network", "SCCM Servers": "site_server",
        "Active Directory": "active_directory", "Certificate Authority": "certificate_authority",
        "Other": "console",
    }
    for rid, row in _each(rows):
        for src in row["sources"]:
            prefix = "Troubleshooting by Component / "
            if src["section"].startswith(prefix):
                component = section_component[src["section"][len(prefix):]]
                assert component in row["components"], f"{rid}: cites {src['section']} but lacks {component}"


def test_manual_rows_say_what_is_attested(rows):
    for rid, row in _each(rows):
        if not row["automated"]:
            assert "attest" in row["method"].lower(), f"{rid}: manual rows describe the attested evidence"
