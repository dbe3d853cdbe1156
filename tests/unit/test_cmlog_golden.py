"""AMTOPMGR.LOG and OOBMGMT.LOG as the stage 2 and 3 checks read them: golden excerpts, hand-written in the two
formats (not produced by the lab's writer), with a cut-off last line and garbage in between.

What the checks rely on: events per client (by FQDN, UUID or address), a hello's PKI/PSK mode and retry count, the
provisioning certificate's acceptance or rejection, the in-band agent's policy lines, whether the site provisioned
a client (and did not un-provision it since), and the Trace32-like excerpt attached as evidence.
"""
from __future__ import annotations

import datetime as dt
import io

import pytest

from pytest_vpro.lab.windows_client import WindowsClientSpec, history, oobmgmt_message
from pytest_vpro.probes import cmlog
from pytest_vpro.probes.cmlog import LogReader, client_events, events, parse_text, provisioned, trace

U1, U2 = "4c4c4544-0031-3910-8051-b4c04f4e3258", "0a0b0c0d-1111-2222-3333-444455556666"
T = "<SMS_AMT_OPERATION_MANAGER><{}.{:03d}+420><thread={} (0x{:X})>"


def sms(message: str, clock: str, thread: int = 3196, ms: int = 0) -> str:
    return f"{message}  $$" + T.format(f"06-26-2015 {clock}", ms, thread, thread)


AMTOPMGR = "\r\n".join([
    sms("SMS_EXECUTIVE started SMS_AMT_OPERATION_MANAGER as thread ID 3196 (0xC7C).", "08:00:00"),
    sms("Provisioning certificate CN=sccm01.corp.example (thumbprint 0A1B2C) accepted for out of band management",
        "08:00:01", 2712),
    sms(f"AMT Provision Worker: Received hello packet (out of band) from 10.1.2.3: AMT device UUID {U1} "
        "(pc1.corp.example), PKI mode, retry 0", "09:00:00"),
    sms(f"AMT Provision Worker: Start provisioning AMT device pc1.corp.example (10.1.2.3), UUID {U1}",
        "09:00:02", 2712),
    "\x00\x01\x02 binary garbage from a torn write \x7f",
    sms(f"AMT Provision Worker: First stage provisioning completed for AMT device pc1.corp.example, UUID {U1}",
        "09:00:15", 2712),
    sms(f"AMT Provision Worker: Second stage provisioning completed successfully for AMT device pc1.corp.example, "
        f"UUID {U1}", "09:00:40", 2712),
    # a device the site has not imported: no name, only UUID and address
    sms(f"AMT Provision Worker: Received hello packet (out of band) from 10.1.2.9: AMT device UUID {U2} (unknown), "
        "PSK mode, retry 13", "09:10:00"),
    sms(f"AMT Provision Worker: AMT device UUID {U2} from 10.1.2.9 has not been imported for out of band "
        "management; hello packet discarded", "09:10:00"),
    sms(f"AMT Provision Worker: Received hello packet (out of band) from 10.1.2.9: AMT device UUID {U2} (unknown)",
        "09:40:00"),  # an older wording: no mode, no retry count
    sms(f"AMT Clear Worker: Start clearing provisioning data from AMT device pc1.corp.example (10.1.2.3), UUID {U1}",
        "10:00:00", 4020),
    sms(f"AMT Clear Worker: Clearing provisioning data completed successfully for AMT device pc1.corp.example, "
        f"UUID {U1}", "10:00:05", 4020),
    sms("Provisioning certificate CN=sccm01.other.example (thumbprint FF00) rejected: the subject CN domain "
        "other.example differs from the site server's domain corp.example", "11:00:00", 2712),
    "AMT Provision Worker: Received hello packet (out of band) from 10.1.2.3: AMT dev",  # cut off mid-write
]).encode()


def test_golden_amtopmgr_events_per_client():
    reader = LogReader(io.BytesIO(AMTOPMGR))
    by_client = events(list(reader))
    assert reader.skipped == 1 and reader.truncated == 1
    pc1 = client_events(by_client, fqdn="PC1.corp.example.")
    assert [e.kind for e in pc1] == ["hello_received", "provisioning_started", "first_stage_completed",
                                     "second_stage_completed", "unprovision_started", "unprovision_completed"]
    assert (pc1[0].mode, pc1[0].retry, pc1[0].ip, pc1[0].uuid) == ("PKI", 0, "10.1.2.3", U1)
    assert pc1[0].time == dt.datetime(2015, 6, 26, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    # the un-imported device is found by its UUID or its address, not by a name
    stranger = client_events(by_client, fqdn="pc9.corp.example", ip="10.1.2.9")
    assert [(e.kind, e.mode, e.retry) for e in stranger] == [("hello_received", "PSK", 13),
                                                              ("hello_received", None, None)]
    assert client_events(by_client, uuid=U2.upper()) == stranger
    assert all(e.fqdn is None for e in stranger)


def test_golden_certificate_events():
    found = [e for evs in events(parse_text(AMTOPMGR)).values() for e in evs if e.kind.startswith("provisioning_cert")]
    assert [(e.kind, e.fqdn) for e in found] == [("provisioning_certificate_accepted", "sccm01.corp.example"),
                                                 ("provisioning_certificate_rejected", "sccm01.other.example")]
    assert found[1].reason == "the subject CN domain other.example differs from the site server's domain corp.example"


def test_provisioned_means_completed_and_not_undone_since():
    pc1 = client_events(events(parse_text(AMTOPMGR)), fqdn="pc1.corp.example")
    completed = next(e for e in pc1 if e.kind == "second_stage_completed")
    assert provisioned(pc1[:4]) == completed                 # completed
    assert provisioned(pc1[:3]) is None                      # started, first stage only
    assert provisioned(pc1) is None                          # un-provisioned afterwards
    again = pc1 + [cmlog.Event("second_stage_completed", pc1[-1].time, "pc1.corp.example")]
    assert provisioned(again) is again[-1]                   # provisioned again
    assert provisioned([]) is None


def test_trace_shows_time_thread_and_message_like_trace32():
    pc1 = client_events(events(parse_text(AMTOPMGR)), fqdn="pc1.corp.example")
    lines = trace(pc1).splitlines()
    assert lines[0] == ("06-26-2015 09:00:00   3196  AMT Provision Worker: Received hello packet (out of band) from "
                        f"10.1.2.3: AMT device UUID {U1} (pc1.corp.example), PKI mode, retry 0")
    assert lines[-1].startswith("06-26-2015 10:00:05   4020  AMT Clear Worker: Clearing provisioning data completed")
    assert trace(pc1, limit=2).count("\n") == 1
    assert trace([]) == "(no line names this client)"


CCM = "\r\n".join([
    '<![LOG[Out of band management agent started; Configuration Manager client version 4.00.6221.1000]LOG]!>'
    '<time="07:59:00.000+420" date="06-26-2015" component="OobMgmt" context="" type="1" thread="2644" file="">',
    '<![LOG[AMT auto provisioning policy downloaded from site ABC]LOG]!><time="08:00:00.000+420" '
    'date="06-26-2015" component="OobMgmt" context="" type="1" thread="2644" file="">',
    '<![LOG[AMT auto provisioning is enabled in policy]LOG]!><time="08:00:01.000+420" date="06-26-2015" '
    'component="OobMgmt" context="" type="1" thread="2644" file="">',
    '<![LOG[Sent AMT provisioning request (in-band) for pc4.corp.example, AMT device UUID ' + U1 + ', to site '
    'server sccm01.corp.example]LOG]!><time="08:00:03.000+420" date="06-26-2015" component="OobMgmt" context="" '
    'type="1" thread="2644" file="">',
    '<![LOG[AMT auto provisioning is disabled in pol',  # cut off
])


def test_golden_oobmgmt_policy_lines():
    reader = LogReader(io.StringIO(CCM))
    lines = list(reader)
    assert reader.truncated == 1 and [ln.format for ln in lines] == ["ccm"] * 4
    found = [e for evs in events(lines).values() for e in evs]
    assert [e.kind for e in found] == ["policy_downloaded", "policy_enabled", "provisioning_request_sent"]
    assert (found[2].fqdn, found[2].uuid) == ("pc4.corp.example", U1)


@pytest.mark.parametrize("spec, kinds", [
    ({}, ["policy_downloaded", "policy_enabled", "provisioning_request_sent"]),
    ({"policy_enabled": False}, ["policy_downloaded", "policy_disabled"]),
    ({"policy_downloaded": False}, ["policy_missing"]),
    ({"site_code": ""}, ["policy_missing"]),
    ({"mei_started": False}, ["policy_downloaded", "policy_enabled"]),
])
def test_every_oobmgmt_text_the_lab_writes_is_an_event(spec, kinds):
    """The patterns match the lab's OOBMGMT.LOG texts (windows_client.OOBMGMT_MESSAGES), line for line."""
    client = WindowsClientSpec(fqdn="pc4.vprolab.test", address="127.1.1.4", **spec)
    text = "\r\n".join(cmlog_ccm(oobmgmt_message(event, **fields)) for _o, event, fields, _t in history(client))
    assert [e.kind for evs in events(parse_text(text)).values() for e in evs] == kinds


def cmlog_ccm(message: str) -> str:
    return (f'<![LOG[{message}]LOG]!><time="08:00:00.000+000" date="06-26-2015" component="OobMgmt" context="" '
            'type="1" thread="2644" file="">')


def test_a_site_pattern_may_capture_mode_and_retry():
    line = parse_text(sms(f"Hello from {U1} at 10.1.2.3 (ver=PSK, count=7)", "09:00:00"))
    custom = {"hello_received": [r"Hello from (?P<uuid>[0-9a-f-]{36}) at (?P<ip>[\d.]+) "
                                 r"\(ver=(?P<mode>\w+), count=(?P<retry>\d+)\)"]}
    (ev,) = events(line, custom)[U1]
    assert (ev.kind, ev.mode, ev.retry, ev.ip) == ("hello_received", "PSK", 7, "10.1.2.3")
    with pytest.raises(ValueError, match="unknown group"):
        cmlog.compile_patterns({"hello_received": r"(?P<count>\d+)"})


def _scan(by_client, fqdn=None, uuid=None, ip=None):
    """What client_events returned before it had an index: a scan of every event (the reference)."""
    want = {x for x in ((fqdn or "").lower().rstrip("."), (uuid or "").lower(), ip or "") if x}
    found = [e for evs in by_client.values() for e in evs if {e.fqdn, e.uuid, e.ip} & want]
    return sorted(found, key=lambda e: (e.time is None, e.time.timestamp() if e.time else 0))


@pytest.mark.parametrize("query", [{"fqdn": "pc1.corp.example"}, {"uuid": U1}, {"ip": "10.1.2.3"},
                                   {"fqdn": "PC1.corp.example.", "uuid": U1, "ip": "10.1.2.3"},
                                   {"fqdn": "pc9.corp.example", "ip": "10.1.2.9"}, {"uuid": U2.upper()},
                                   {"fqdn": "nobody.corp.example"}, {}])
def test_the_index_finds_what_a_scan_finds_in_the_same_order(query):
    by_client = events(list(LogReader(io.BytesIO(AMTOPMGR))))
    index = cmlog.index_by_name(by_client)  # built once per log by facts.logs.client_events, shared by every client
    assert client_events(by_client, index=index, **query) == _scan(by_client, **query)
    assert client_events(by_client, **query) == _scan(by_client, **query)
