"""S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING, in band: the 25 hours run from when automatic provisioning reached
the client's collection (SMS_CollectionSettings.LastModificationTime, SMS_Collection.LastMemberChangeTime), and the
finding says when the agent last requested machine policy (CCM_Scheduler_History). Facts made of data; the lab
proves it end to end (tests/lab/test_faults_provisioning.py, fault inband_policy_never_requested)."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from pytest_vpro import policy_window as pw
from pytest_vpro.checks import Evidence, Finding
from pytest_vpro.probes import cmlog
from pytest_vpro.probes.errors import ProbeError, Undecided
from pytest_vpro.sccm import ProvisioningStatus
from suites.stage2.test_provisioning_requests import test_client_is_within_its_provisioning_request_window as window

FQDN, UUID = "pc0004.corp.example.com", "4c4c4544-0000-1000-8000-000000000004"
CLIENT = SimpleNamespace(name=FQDN, fqdn=FQDN, uuid=UUID, address="10.0.0.4", provisioning="in_band", extra={})
ENV = SimpleNamespace(log_patterns={})
NOW = dt.datetime.now(dt.timezone.utc)
MISSING = "No AMT auto provisioning policy received from site {site}  $$<OobMgmt><11-19-2009 11:35:01.000+300>" \
          "<thread=2644 (0xA54)>\r\n"


def cim(hours_ago: float, offset_min: int = -300) -> str:
    """A CIM DATETIME ``hours_ago`` in the past, written in a zone ``offset_min`` minutes from UTC."""
    t = (NOW - dt.timedelta(hours=hours_ago)).astimezone(dt.timezone(dt.timedelta(minutes=offset_min)))
    return f"{t:%Y%m%d%H%M%S}.{t.microsecond:06d}{'+' if offset_min >= 0 else '-'}{abs(offset_min):03d}"


def collection(cid="LAB00010", *, member=True, auto=True, modified: float | None = 30, changed: float | None = 40):
    return {"id": cid, "name": "vPro clients", "member": member, "auto_provision": auto,
            "collection": {"CollectionID": cid, "Name": "vPro clients", **(
                {} if changed is None else {"LastMemberChangeTime": cim(changed)}), "LastRefreshTime": cim(1)},
            "settings": {"CollectionID": cid, "AMTAutoProvisionEnabled": auto, **(
                {} if modified is None else {"LastModificationTime": cim(modified)})}}


class Facts:
    def __init__(self, collections, *, requested: float | None = 1, agent_log: str = "", scheduler_error=False):
        self.status = ProvisioningStatus(resource={"ResourceId": 1, "AMTStatus": None}, inventory=None, events=[],
                                         decisive=lambda e: False, read_me=self._me)
        self._collections, self.requested, self.agent_log = collections, requested, agent_log
        self.scheduler_error = scheduler_error

    def _me(self):
        raise ProbeError("no answer")

    @property
    def site(self):
        return SimpleNamespace(provisioning_status=lambda: self.status, collections=lambda: self._collections)

    @property
    def logs(self):
        return SimpleNamespace(client_lines=lambda: cmlog.parse_text(self.agent_log))

    @property
    def windows(self):
        return SimpleNamespace(wmi=self.wmi)

    def wmi(self, host, cls, namespace="root/cimv2", wql=None):
        if cls == pw.SCHEDULER_HISTORY:
            assert namespace == pw.SCHEDULER_NAMESPACE and pw.MACHINE_POLICY_REQUEST in (wql or "")
            if self.scheduler_error:
                raise ProbeError("root/ccm/Scheduler: access denied")
            return [] if self.requested is None else [
                {"ScheduleID": pw.MACHINE_POLICY_REQUEST, "UserSID": "Machine", "LastTriggerTime": cim(self.requested)},
                {"ScheduleID": "{00000000-0000-0000-0000-000000000022}", "LastTriggerTime": cim(0.1)}]
        assert (cls, namespace) == (pw.POLICY_AGENT_CLASS, pw.POLICY_AGENT_NAMESPACE)
        return [{pw.POLLING_PROPERTY: 60}]


def outcome(facts, env=ENV) -> str:
    try:
        window(client=CLIENT, env=env, facts=facts, evidence=Evidence())
    except pytest.skip.Exception as exc:
        return f"skipped: {exc.msg}"
    except Finding as exc:
        return f"failed: {exc.found} / {exc.expected}"
    return "passed"


def test_past_25_hours_without_a_request_since_the_setting_fails_saying_so():
    result = outcome(Facts([collection(modified=30, changed=40)], requested=50))
    assert result.startswith("failed: automatic provisioning reached collection vPro clients (LAB00010)"), result
    assert "30 h ago" in result and "no provisioning policy in OOBMGMT.LOG" in result
    assert "has not requested machine policy since the setting was enabled" in result
    assert "within 25 hours" in result and "download machine policy" in result


def test_the_later_of_setting_and_membership_starts_the_clock():
    assert outcome(Facts([collection(modified=40, changed=20)], requested=50)) == "passed"   # joined 20 h ago
    result = outcome(Facts([collection(modified=26, changed=60)], requested=50))
    assert result.startswith("failed") and "26 h ago" in result, result


def test_a_request_since_the_setting_fails_only_on_what_proves_the_policy_missing():
    """The agent asked for machine policy after the setting: the policy may have come with lines of another
    wording, so a missing line proves nothing, unless the agent's own line says so or the site words it."""
    result = outcome(Facts([collection()], requested=1))
    assert result.startswith("skipped: cannot decide: automatic provisioning reached collection"), result
    assert ", after the setting took effect" in result and "log_patterns.policy_downloaded" in result
    written = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%m-%d-%Y %H:%M:%S.000+000")
    missing = MISSING.format(site="LAB").replace("11-19-2009 11:35:01.000+300", written)
    result = outcome(Facts([collection()], requested=1, agent_log=missing))
    assert result.startswith("failed") and "its agent logged 'No AMT auto provisioning policy received" in result
    # the same line written before the setting reached the collection proves nothing about the policy since
    old = outcome(Facts([collection()], requested=1, agent_log=MISSING.format(site="LAB")))
    assert old.startswith("skipped: cannot decide"), old
    worded = SimpleNamespace(log_patterns={"policy_downloaded": [r"Machine policy with provisioning arrived"]})
    assert outcome(Facts([collection()], requested=1), env=worded).startswith("failed")


def test_of_several_collections_the_earliest_window_counts():
    late, early = collection("LAB00011", modified=2, changed=2), collection("LAB00010", modified=30, changed=40)
    assert "LAB00010" in outcome(Facts([late, early]))
    assert outcome(Facts([late, {**early, "member": False}])) == "passed"  # the client is only in the late one


def test_within_the_window_passes():
    assert outcome(Facts([collection(modified=5, changed=40)], requested=30)) == "passed"


def test_no_collection_with_the_setting_is_the_collection_checks_finding():
    for cols in ([], [collection(auto=False)], [collection(member=False)]):
        result = outcome(Facts(cols))
        assert result.startswith("skipped: not applicable") and "S2-INBAND-AUTO-PROVISIONING-COLLECTION" in result


def test_unreadable_times_cannot_decide():
    for col in (collection(modified=None), collection(changed=None)):
        result = outcome(Facts([col]))
        assert result.startswith("skipped: cannot decide: collection vPro clients (LAB00010)"), result
    with pytest.raises(Undecided):
        pw.window([{**collection(), "settings": {"LastModificationTime": "yesterday"}}])


def test_the_last_request_unread_or_absent_is_said():
    unread = outcome(Facts([collection()], scheduler_error=True))  # unread: it proves nothing
    assert unread.startswith("skipped: cannot decide") and "its last machine policy request was not read" in unread
    never = outcome(Facts([collection()], requested=None))  # read, and none: the agent never asked
    assert never.startswith("failed") and "no machine policy request in CCM_Scheduler_History" in never


def test_the_policy_in_the_agents_log_passes():
    line = "AMT auto provisioning policy downloaded from site LAB  $$<OobMgmt><11-19-2009 11:35:01.000+300>" \
           "<thread=2644 (0xA54)>\r\n"
    assert outcome(Facts([collection()], agent_log=line)) == "passed"


def test_wmi_times():
    assert pw.wmi_time("20091119113501.000000-300") == dt.datetime(2009, 11, 19, 16, 35, 1, tzinfo=dt.timezone.utc)
    assert pw.wmi_time("2009-11-19T11:35:01Z") == dt.datetime(2009, 11, 19, 11, 35, 1, tzinfo=dt.timezone.utc)
    assert pw.wmi_time("2009-11-19T11:35:01") is None and pw.wmi_time(None) is None and pw.wmi_time("") is None


class LogUnread(Facts):
    @property
    def logs(self):
        def unread():
            raise ProbeError("OOBMGMT.LOG: access denied")
        return SimpleNamespace(client_lines=unread)


def test_a_log_not_read_is_not_a_log_without_the_policy():
    """With the site's wording given, a missing policy line decides; a log that could not be read does not."""
    worded = SimpleNamespace(log_patterns={"policy_downloaded": [r"Machine policy with provisioning arrived"]})
    result = outcome(LogUnread([collection()], requested=1), env=worded)
    assert result.startswith("skipped: cannot decide") and "OOBMGMT.LOG not read" in result, result


def test_an_unreadable_request_time_is_not_never_requested():
    rows = [{"ScheduleID": pw.MACHINE_POLICY_REQUEST, "LastTriggerTime": "20261206101500.000000"}]  # no offset
    with pytest.raises(Undecided, match="is not a WMI datetime with its offset"):
        pw.last_request(rows)
    result = outcome(Facts([collection()], requested=None))  # no row of the schedule: never requested, decided
    assert result.startswith("failed") and "has no machine policy request" in result, result
