"""The "facts read" evidence: which sources a check's verdict came from (facts.core.sources), and
``vpro-facts sources``, which puts them together per check from a run's verdict store."""
from __future__ import annotations

import json
import sqlite3

from pytest_vpro import snapshot
from pytest_vpro.facts.core import FACTS_READ, READS, Core, sources
from pytest_vpro.gating import VERDICTS_TABLE
from pytest_vpro.report.sources import markdown, per_check


def test_shared_facts_come_first_and_sessions_are_not_sources():
    reads = [(False, "amt.session"), (False, "amt.AMT_SetupAndConfigurationService"),
             (True, "wmi.sccm01.root/sms/site_LAB.SMS_R_System"), (True, "winrm.session.sccm01"),
             (True, "wmi.sccm01.root/sms/site_LAB.SMS_R_System"), (True, "ldap.gc.connection"),
             (True, "reg.pc0001.lab.test.HKLM\\SOFTWARE\\Microsoft\\SMS.x.string")]
    assert sources(reads, "pc0001.lab.test") == (
        "read once for the run, shared by every target's checks:\n"
        "  wmi.sccm01.root/sms/site_LAB.SMS_R_System\n"
        "read for pc0001.lab.test:\n"
        "  amt.AMT_SetupAndConfigurationService\n"
        "  reg.pc0001.lab.test.HKLM\\SOFTWARE\\Microsoft\\SMS.x.string")
    assert sources([(False, "amt.session")], "pc0001.lab.test") == ""


def test_a_fact_is_the_targets_own_only_where_it_names_the_target_as_a_whole():
    read = [(True, "wmi.sccm01.lab.test.root/sms/site_LAB.SMS_Site")]
    assert sources(read, "lab.test", host=False).startswith("read once for the run")  # the site, by its domain
    assert sources(read, "01.lab.test").startswith("read once for the run")  # a part of a name is not the name
    assert sources(read, "sccm01.lab.test").startswith("read for sccm01.lab.test")


def test_a_read_is_recorded_only_while_a_check_runs():
    core = Core(None, None)  # the cache alone: no target or environment needed to show what get() records
    core.get("dns.a", lambda: 1)
    reads: list = []
    token = READS.set(reads)
    try:
        core.get("dns.a", lambda: 2)  # remembered: a second read is a read all the same
        core.get("dns.b", lambda: 3)
    finally:
        READS.reset(token)
    core.get("dns.c", lambda: 4)
    assert reads == [(True, "dns.a"), (True, "dns.b")]  # this core is its own estate


def _store(tmp_path, rows):
    con = sqlite3.connect(tmp_path / "verdicts.sqlite")
    con.execute(VERDICTS_TABLE)
    for nodeid, evidence in rows:
        con.execute("INSERT INTO verdicts (nodeid, owner, outcome, message, evidence, duration) VALUES "
                    "(?, 0, 'passed', '', ?, 0)", (nodeid, json.dumps(evidence)))
    con.commit()
    con.close()


def test_vpro_facts_sources_puts_every_target_of_a_check_together(tmp_path, capsys):
    def item(target):
        return {"name": FACTS_READ, "kind": "text", "check": "S4-MC-DISCOVERED", "target": target,
                "body": sources([(True, "wmi.sccm01.root/sms/site_LAB.SMS_R_System"), (False, "amt.general")],
                                target)}
    _store(tmp_path, [("a[pc1]", [{"name": "x", "body": "y", "kind": "text"}, item("pc1.lab.test")]),
                      ("a[pc2]", [item("pc2.lab.test")])])
    found = per_check(tmp_path)
    assert found == {"S4-MC-DISCOVERED": {"fleet": {"wmi.sccm01.root/sms/site_LAB.SMS_R_System": 2},
                                          "own": {"amt.general": 2}}}
    assert "| S4-MC-DISCOVERED | `wmi.sccm01.root/sms/site_LAB.SMS_R_System` | `amt.general` |" in markdown(found)
    assert snapshot.main(["sources", str(tmp_path)]) == 0
    assert "S4-MC-DISCOVERED" in capsys.readouterr().out


def test_vpro_facts_sources_names_a_folder_without_a_verdict_store(tmp_path, capsys):
    assert snapshot.main(["sources", str(tmp_path)]) == 2
    assert "verdicts.sqlite does not exist" in capsys.readouterr().err
