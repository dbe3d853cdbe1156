"""Stage 2 and 3 judge provisioning from what SCCM and the ME hold; AMTOPMGR.LOG lines are evidence.

The checks run here against facts made of data (the lab proves them end to end, tests/lab/test_faults_provisioning.py):
a client SCCM reports provisioned (SMS_R_System.AMTStatus 3) passes, or is not applicable, whatever its log holds; a
missing line whose wording has no public source never fails a client by itself: the check says it cannot decide,
unless the environment file gives the site's wording; the ME's own state and SCCM's "detected" still fail a client
provisioned outside the site.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_vpro.checks import Evidence, Finding
from pytest_vpro.probes import cmlog
from pytest_vpro.probes.amt import Provisioning as MeState
from pytest_vpro.probes.errors import ProbeError
from pytest_vpro.sccm import ProvisioningStatus, amt_status_text
from suites.stage2.test_in_band import test_agent_downloaded_the_enabled_provisioning_policy as policy_downloaded
from suites.stage2.test_provisioning_requests import (
    test_client_is_sending_hellos as sending_hello,
)
from suites.stage2.test_provisioning_requests import (
    test_me_is_unprovisioned as me_unprovisioned,
)
from suites.stage2.test_provisioning_requests import (
    test_site_server_logged_a_ztc_request_from_the_client as ztc_received,
)
from suites.stage2.test_provisioning_requests import (
    test_site_server_logged_hellos_from_the_client as hello_received,
)
from suites.stage3.test_provisioning import test_site_server_logged_provisioning_completed as completed
from suites.stage4.test_power_control import test_client_is_discovered_as_a_management_controller as discovered

FQDN, UUID = "pc0001.corp.example.com", "4c4c4544-0000-1000-8000-000000000001"
CLIENT = SimpleNamespace(name=FQDN, fqdn=FQDN, uuid=UUID, address="10.0.0.1", provisioning="out_of_band", extra={})
IN_BAND = SimpleNamespace(**{**vars(CLIENT), "provisioning": "in_band"})


def sms(message: str, when: str = "11-19-2009 11:35:01.000+300") -> str:
    return f"{message}  $$<SMS_AMT_OPERATION_MANAGER><{when}><thread=2880 (0xB40)>\r\n"


LAB_LINES = (  # the lab's own wording (lab/cmlog.py): the parser's unsourced defaults
    sms(f"AMT Provision Worker: Received hello packet (out of band) from 10.0.0.1: AMT device UUID {UUID} ({FQDN}), "
        "PKI mode, retry 0"),
    sms(f"AMT Provision Worker: Start provisioning AMT device {FQDN} (10.0.0.1), UUID {UUID}"),
    sms(f"AMT Provision Worker: First stage provisioning completed for AMT device {FQDN}, UUID {UUID}"),
    sms(f"AMT Provision Worker: Second stage provisioning completed successfully for AMT device {FQDN}, UUID {UUID}"),
)


class Facts:
    """What the checks read: the provisioning status, no listener, the agent's log, AMT over WS-MAN."""

    def __init__(self, amt_status=None, log: tuple[str, ...] = (), me: int | None = None, *, resource: bool = True,
                 patterns=None, agent_log: str = "", inventory: int | None = None):
        self.patterns = patterns or {}
        by_client = cmlog.events(cmlog.parse_text("".join(log)), self.patterns)
        self.status = ProvisioningStatus(
            resource={"ResourceId": 1, "AMTStatus": amt_status, "AMTFullVersion": "6.2.10"} if resource else None,
            inventory=None if inventory is None else {"ResourceID": 1, "ProvisionState": inventory},
            events=cmlog.client_events(by_client, fqdn=FQDN, uuid=UUID, ip="10.0.0.1"),
            decisive=lambda event: cmlog.decisive(event, self.patterns), read_me=self.amt_provisioning)
        self.me, self.agent_log = me, agent_log

    def amt_provisioning(self):
        if self.me is None:
            raise ProbeError("pc0001.corp.example.com:16993: no answer")
        return MeState(self.me, 1)

    @property
    def site(self):
        return SimpleNamespace(provisioning_status=lambda: self.status, wmi=self.site_wmi,
                               member_of=lambda rid: {m["CollectionID"] for m in self.site_wmi(
                                   "SMS_FullCollectionMembership") if m["ResourceID"] == rid})

    @property
    def hellos(self):
        return SimpleNamespace(heard=lambda: None)

    @property
    def logs(self):
        return SimpleNamespace(client_lines=lambda: cmlog.parse_text(self.agent_log))

    @property
    def amt(self):
        return SimpleNamespace(provisioning=self.amt_provisioning)

    def site_wmi(self, cls):
        return {"SMS_R_System": [{"ResourceId": 1, "Name": "PC0001", "ResourceNames": [FQDN],
                                  "AMTStatus": self.status.amt_status, "AMTFullVersion": "6.2.10"}],
                "SMS_FullCollectionMembership": [{"CollectionID": "ABC00010", "ResourceID": 1}]}[cls]


def outcome(check, facts, client=CLIENT, **kw) -> str:
    try:
        check(client=client, facts=facts, evidence=Evidence(), **kw)
    except pytest.skip.Exception as exc:
        return f"skipped: {exc.msg}"
    except Finding as exc:
        return f"failed: {exc.found}"
    return "passed"


ENV = SimpleNamespace(log_patterns={})


# -- a client provisioned before AMTOPMGR.LOG rolled over (and its history rolled over again): no line at all --
def test_sccm_provisioned_client_without_any_log_line_passes_stages_2_and_3():
    facts = Facts(amt_status=3, me=2)
    assert outcome(hello_received, facts).startswith("skipped: not applicable: provisioned (SMS_R_System.AMTStatus 3")
    assert outcome(sending_hello, facts).startswith("skipped: not applicable: provisioned")
    assert outcome(me_unprovisioned, facts).startswith("skipped: not applicable: already provisioned by the site")
    assert outcome(completed, facts) == "passed"
    assert outcome(discovered, facts) == "passed"


def test_a_provisioned_client_whose_me_does_not_answer_still_passes_stage_3():
    assert outcome(completed, Facts(amt_status=3)) == "passed"  # WS-MAN trouble is another check's finding


def test_the_lines_of_the_history_count_as_the_log():
    """What facts.logs.site_events reads: AMTOPMGR.lo_ first, then AMTOPMGR.LOG."""
    assert cmlog.history_path("Logs/AMTOPMGR.LOG") == "Logs/AMTOPMGR.lo_"
    facts = Facts(amt_status=3, log=LAB_LINES, me=2)
    assert outcome(hello_received, facts) == "passed"
    assert [e.kind for e in facts.status.events] == ["hello_received", "provisioning_started",
                                                     "first_stage_completed", "second_stage_completed"]


# -- no line, a client not reported provisioned: the state decides, or the check says it cannot --------------------
def test_a_missing_hello_line_alone_cannot_decide():
    got = outcome(hello_received, Facts(amt_status=2))
    assert got.startswith("skipped: cannot decide: no hello packet from pc0001") and "log_patterns.hello_received" in got
    assert outcome(sending_hello, Facts(amt_status=2)).startswith("skipped: cannot decide")


def test_the_sites_wording_in_the_environment_makes_a_missing_line_count():
    patterns = {"hello_received": [r"Hello from (?P<uuid>[0-9a-f-]{36})"]}
    got = outcome(hello_received, Facts(amt_status=2, patterns=patterns))
    assert got.startswith("failed: no hello packet from pc0001")


@pytest.mark.parametrize("amt_status, me, found", [
    (None, None, "AMTStatus null (unknown): it never contacted the out of band service point"),
    (0, None, "AMTStatus 0 (not supported): its AMT network interface is closed"),
    (1, None, "AMTStatus 1 (detected): provisioned outside the site"),
    (2, 2, "the ME is post-provisioning (ProvisioningState 2), while the site reports SMS_R_System.AMTStatus 2"),
])
def test_what_the_site_or_the_me_holds_fails_a_client_without_hellos(amt_status, me, found):
    got = outcome(hello_received, Facts(amt_status=amt_status, me=me))
    assert got.startswith("failed: no hello packet from pc0001") and found in got, got


def test_an_unknown_client_fails_the_hello_row():
    assert "no SMS_R_System resource" in outcome(hello_received, Facts(resource=False))


def test_the_me_unprovisioned_row_takes_sccms_not_provisioned_when_amt_does_not_answer():
    assert outcome(me_unprovisioned, Facts(amt_status=2)) == "passed"
    assert "AMTStatus 1 (detected)" in outcome(me_unprovisioned, Facts(amt_status=1))
    assert "post-provisioning (ProvisioningState 2) but the site never provisioned it" in outcome(
        me_unprovisioned, Facts(amt_status=2, me=2))


# -- stage 3: SCCM's record, the ME, and the log's story of a client not provisioned --------------------------------
def test_stage_3_fails_a_client_sccm_does_not_report_provisioned_with_the_logs_story():
    failed = sms(f"AMT Provision Worker: Provisioning failed for AMT device {FQDN}, UUID {UUID}. Reason: TLS handshake "
                 "failed", "11-19-2009 11:40:01.000+300")
    got = outcome(completed, Facts(amt_status=2, log=LAB_LINES[:2] + (failed,), me=0))
    assert got == ("failed: provisioning failed (2009-11-19 11:40:01): TLS handshake failed; "
                   f"{amt_status_text(2)}")
    assert outcome(completed, Facts(amt_status=2)).startswith("failed: no provisioning started for pc0001")


def test_stage_3_before_discovery_takes_the_sites_log_and_the_me():
    assert outcome(completed, Facts(amt_status=None, log=LAB_LINES, me=2)) == "passed"
    assert "but the ME is pre-provisioning" in outcome(completed, Facts(amt_status=3, me=0))


# -- in band: the agent's own lines, the ZTC request ----------------------------------------------------------------
def ccm(message: str) -> str:
    return (f'<![LOG[{message}]LOG]!><time="10:00:00.000+000" date="11-19-2009" component="OobMgmt" context="" '
            f'type="1" thread="1" file="">\r\n')


def test_in_band_rows_judge_the_agents_lines_and_never_a_missing_one_alone():
    no_policy = ccm("No AMT auto provisioning policy received from site ABC")
    got = outcome(ztc_received, Facts(amt_status=None, agent_log=no_policy), IN_BAND, env=ENV)
    assert got.startswith("failed: no ZTC provisioning request from pc0001") and "No AMT auto provisioning" in got
    assert outcome(ztc_received, Facts(amt_status=2), IN_BAND, env=ENV).startswith("skipped: cannot decide")
    assert outcome(policy_downloaded, Facts(amt_status=2), IN_BAND, env=ENV).startswith("skipped: cannot decide")
    assert outcome(policy_downloaded, Facts(amt_status=3), IN_BAND, env=ENV).startswith("skipped: cannot decide")
    assert outcome(policy_downloaded, Facts(amt_status=2, agent_log=no_policy), IN_BAND, env=ENV).startswith(
        "failed: 'No AMT auto provisioning policy received")
    assert outcome(ztc_received, Facts(amt_status=3), IN_BAND, env=ENV).startswith("skipped: not applicable")
    assert outcome(me_unprovisioned, Facts(amt_status=None, inventory=2), IN_BAND).startswith(
        "failed: the hardware inventory reports the ME provisioned")


# -- stage 4: the documented AMTStatus --------------------------------------------------------------------------------
def test_stage_4_wants_amt_status_3():
    assert outcome(discovered, Facts(amt_status=3)) == "passed"
    assert outcome(discovered, Facts(amt_status=None)).startswith("failed: SMS_R_System.AMTStatus null (unknown)")
    assert outcome(discovered, Facts(amt_status=2)).startswith("failed: SMS_R_System.AMTStatus 2 (not provisioned)")
