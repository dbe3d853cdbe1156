"""The lab description's era (docs/lab.md "A lab of 2009"), read and refused without starting a lab."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vpro.lab import estate


def _desc(tmp_path, **lab):
    path = tmp_path / "lab.yaml"
    path.write_text(json.dumps({"lab": {"clients": 6, "net": 118, **lab}}))
    return estate.load_description(path)[0]


def test_modern_is_the_default_and_2009_may_be_a_number(tmp_path):
    assert _desc(tmp_path).era == "modern"
    (tmp_path / "lab.yaml").write_text("lab: {clients: 6, net: 118, era: 2009}\n")  # YAML reads 2009 as an int
    desc = estate.load_description(tmp_path / "lab.yaml")[0]
    assert desc.era == "2009" and desc.of_2009 and desc.signature_hash == "sha1"


def test_a_2009_estate_runs_amt_3_2_1_4_and_5_in_turn(tmp_path):
    desc = _desc(tmp_path, era="2009")
    assert [desc.amt_version_of(i) for i in range(4)] == ["3.2.1", "4.1.3", "5.0.20", "3.2.1"]
    modern = _desc(tmp_path, amt_version="6.2.10")
    assert {modern.amt_version_of(i) for i in range(4)} == {"6.2.10"} and modern.signature_hash == "sha256"


def test_an_unknown_era_is_refused(tmp_path):
    with pytest.raises(estate.DescriptionError, match="lab.era must be one of modern, 2009, found '1999'"):
        _desc(tmp_path, era="1999")


def test_the_shipped_2009_description_is_a_2009_lab():
    desc, state = estate.load_description(Path(__file__).resolve().parents[2] / "environments" / "lab-2009.yaml")
    assert desc.of_2009 and state.name == ".lab-2009" and desc.net != 77
