"""The site server simulator on net 95, read through probes/winrm.py and checked by an independent client (pywinrm)."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from throwaway_tls import write_tls

from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.site_server import (
    APPENDIX_A,
    KB908209_KEY,
    OPERATE_FOR_COLLECTION,
    OPERATE_FOR_MACHINES,
    SMS_COLLECTION,
    SMS_PERMISSIONS,
    ClientRecord,
    SiteServerSimulator,
    SiteServerSpec,
    parse_wql,
)
from pytest_vpro.probes.cmlog import LogReader, client_events, events
from pytest_vpro.probes.hello import encode_hello
from pytest_vpro.probes.winrm import BasicAuth, NotReadOnly, WinRM, sms_namespace, wmi_uri
from pytest_vpro.probes.wsman import AuthFailed, SoapFault, WsmanClient

PLAN = AddressPlan(95)
SITE = sms_namespace("LAB")
USER, PASSWORD = "labadmin", "Site-P@ss1"
KERBEROS_ADDRESS = "127.95.0.41"  # a second simulator, next to the module's one
UUIDS = [str(uuid.UUID(int=0x4C4C4544_0000_1000_8000_000000000000 + i)) for i in range(1, 4)]


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, str]:
    """A throwaway CA and a WinRM certificate for sccm01.vprolab.test / the site server's address."""
    return write_tls(tmp_path_factory.mktemp("site-tls"), "Site Test CA", "sccm01.vprolab.test",
                     ["sccm01.vprolab.test"], [PLAN.site_server, KERBEROS_ADDRESS])


def _spec(tmp: Path, tls: dict[str, str], **overrides) -> SiteServerSpec:
    clients = [
        ClientRecord("pc0001.vprolab.test", UUIDS[0], PLAN.client(0), provisioned=True,
                     provisioned_at="2009-03-02T10:00:00+00:00"),
        ClientRecord("pc0002.vprolab.test", UUIDS[1], PLAN.client(1), amt_full_version="3.2.1"),
        ClientRecord("pc0003.vprolab.test", UUIDS[2], PLAN.client(2), client=1, client_version="4.00.6221.1000",
                     imported_oob=False, provisioned=True, provisioned_at="2009-03-02T11:00:00+00:00"),
    ]
    base = dict(address=PLAN.site_server, clients=clients, basic_users={USER: PASSWORD}, allow_unencrypted=True,
                tls_cert=tls["cert"], tls_key=tls["key"], log_dir=str(tmp / "SMS_LAB" / "Logs"),
                calls_file=str(tmp / "calls.jsonl"), oob={
                    "webui_enabled": 1, "realms_enabled": [2, 3, 13], "provisioning_account": "VPROLAB\\amtprov",
                    "amt_container": "OU=AMT,DC=vprolab,DC=test", "certificate_template": "IntelAMTWebServer",
                    "issuing_ca": "ca01.vprolab.test\\vPro Lab Issuing CA",
                    "provisioning_certificate_thumbprint": "AB" * 20})
    base.update(overrides)
    return SiteServerSpec(**base)


@pytest.fixture(scope="module")
def site(tmp_path_factory, tls):
    """A running simulator whose hooks only record what they were asked (discovery answers pre-provisioning).
    labadmin holds every right on the collection class."""
    tmp = tmp_path_factory.mktemp("site")
    hooked: list[tuple] = []
    hooks = {name: (lambda c, name=name: hooked.append((name, c.fqdn)))
             for name in ("amt_unprovision", "revoke_certificate", "delete_ad_object")}
    hooks["amt_power"] = lambda c, state: hooked.append(("amt_power", c.fqdn, state))
    hooks["amt_discover"] = lambda c: hooked.append(("amt_discover", c.fqdn)) or 0
    sim = SiteServerSimulator(_spec(tmp, tls, permissions=[{"UserName": f"VPROLAB\\{USER}",
                                                            "rights": list(SMS_PERMISSIONS)}]), hooks=hooks)
    sim.hooked = hooked
    with sim:
        yield sim


@pytest.fixture(scope="module")
def winrm(site) -> WinRM:
    with WinRM(site.winrm_url(), auth=BasicAuth(USER, PASSWORD, allow_unencrypted=True), ca_bundle=None,
               timeout=5) as w:
        yield w


def _log_lines(path: Path) -> list:
    if not path.exists():
        return []
    with open(path, "rb") as fh:
        return list(LogReader(fh))


def _log_events(site) -> dict:
    """AMTOPMGR.LOG's events after its history's (AMTOPMGR.lo_), as the checks read them."""
    return events(_log_lines(site.log.history) + _log_lines(site.log_path))


# --- WMI classes --------------------------------------------------------------------------------------------------
def test_operating_system_and_computer(winrm):
    (os_,) = winrm.enumerate("Win32_OperatingSystem")
    assert os_["Caption"] == "Microsoft(R) Windows(R) Server 2003, Enterprise Edition"
    assert (os_["Version"], os_["CSDVersion"], os_["ServicePackMajorVersion"]) == ("5.2.3790", "Service Pack 2", 2)
    (cs,) = winrm.enumerate("Win32_ComputerSystem")
    assert cs["PartOfDomain"] is True and cs["Domain"] == "vprolab.test" and cs["TotalPhysicalMemory"] > 2 ** 30
    (utc,) = winrm.enumerate("Win32_UTCTime")
    assert abs(dt.datetime(utc["Year"], utc["Month"], utc["Day"], utc["Hour"], utc["Minute"], utc["Second"],
                           tzinfo=dt.timezone.utc) - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(seconds=5)


def test_hotfixes_default_to_what_appendix_a_needs_on_sp2(winrm):
    ids = {h["HotFixID"] for h in winrm.enumerate("Win32_QuickFixEngineering")}
    assert ids == set(APPENDIX_A) - {"KB899900", "KB908209"}  # both are in Windows Server 2003 SP2
    assert "KB942841" in ids and "KB960804" in ids


def test_products_services_features(winrm):
    names = {p["Name"] for p in winrm.enumerate("Win32_Product")}
    assert "MSXML 6.0 Parser" in names and not any("Translator" in n for n in names)
    svc = winrm.get("Win32_Service", {"Name": "WinRM"})
    assert svc["State"] == "Running" and svc["Started"] is True
    assert winrm.enumerate("Win32_OptionalFeature") == [{"Name": "TelnetClient", "Caption": "TelnetClient",
                                                          "InstallState": 1}]
    assert winrm.enumerate("Win32_ServerFeature") == []


def test_site_roles_and_version(winrm):
    (site,) = winrm.enumerate("SMS_Site", SITE)
    assert (site["SiteCode"], site["Version"], site["BuildNumber"], site["Type"]) == ("LAB", "4.00.6221.1000",
                                                                                     6221, 2)
    roles = {r["RoleName"]: r["NetworkOSPath"] for r in winrm.enumerate("SMS_SCI_SysResUse", SITE)}
    assert roles["SMS Out of Band Service Point"] == "\\\\SCCM01.VPROLAB.TEST"
    assert {"SMS Site Server", "SMS Reporting Point"} <= set(roles)
    (loc,) = winrm.enumerate("SMS_ProviderLocation", "root/sms")
    assert loc["SiteCode"] == "LAB" and loc["NamespacePath"].endswith("\\root\\sms\\site_LAB")


def test_out_of_band_component_settings(winrm):
    (comp,) = winrm.enumerate("SMS_SCI_Component", SITE)
    assert comp["ComponentName"] == "SMS_AMT_OPERATION_MANAGER"
    props = {p["PropertyName"]: p for p in comp["Props"]}
    assert props["Enable Web UI"]["Value"] == 1
    assert props["AMT AD Container"]["Value1"] == "OU=AMT,DC=vprolab,DC=test"
    assert props["AMT Web Server Certificate Template"]["Value1"] == "IntelAMTWebServer"
    assert props["AMT Provisioning Certificate Thumbprint"]["Value1"] == "AB" * 20
    assert comp["PropLists"] == [{"PropertyListName": "AMT Enabled Realms", "Values": ["2", "3", "13"]}]


def test_collections_and_systems(winrm):
    systems = {s["ResourceNames"][0]: s for s in winrm.enumerate("SMS_R_System", SITE)}
    assert systems["pc0001.vprolab.test"]["Client"] == 0 and systems["pc0001.vprolab.test"]["AMTStatus"] == 3
    assert systems["pc0001.vprolab.test"]["SMBIOSGUID"] == UUIDS[0].upper()
    assert systems["pc0002.vprolab.test"]["AMTFullVersion"] == "3.2.1"
    assert systems["pc0003.vprolab.test"]["ClientVersion"] == "4.00.6221.1000"
    assert "Out of Band Management Controller Import" not in systems["pc0003.vprolab.test"]["AgentName"]
    cols = {c["CollectionID"]: c for c in winrm.enumerate("SMS_Collection", SITE)}
    assert cols["SMS00001"]["MemberCount"] == 3 and cols["LAB00001"]["MemberCount"] == 2
    settings = {c["CollectionID"]: c["AMTAutoProvisionEnabled"] for c in winrm.enumerate("SMS_CollectionSettings",
                                                                                          SITE)}
    assert settings == {"SMS00001": False, "LAB00001": True}
    modified = [c["LastModificationTime"] for c in winrm.enumerate("SMS_CollectionSettings", SITE)]
    changed = [c[p] for c in cols.values() for p in ("LastMemberChangeTime", "LastRefreshTime")]
    assert all(isinstance(t, dt.datetime) and t.tzinfo and t < dt.datetime.now(dt.timezone.utc)
               for t in modified + changed), (modified, changed)
    oob = [m["ResourceID"] for m in winrm.enumerate("SMS_FullCollectionMembership", SITE)
           if m["CollectionID"] == "LAB00001"]
    assert sorted(oob) == sorted(systems[f"pc000{i}.vprolab.test"]["ResourceId"] for i in (1, 2))


def test_registry_values(winrm):
    assert winrm.registry_value("HKLM", KB908209_KEY, "iexplore.exe", "dword") == 1
    assert winrm.registry_value("HKLM", r"SOFTWARE\Microsoft\SMS\Setup", "Full Version") == "4.00.6221.1000"
    assert winrm.registry_value("HKLM", r"SOFTWARE\Microsoft\Windows\CurrentVersion\WSMAN", "StackVersion") == "1.1"
    assert winrm.registry_value("HKLM", r"SOFTWARE\Nope", "x") is None
    assert winrm.registry_value("HKLM", KB908209_KEY, "iexplore.exe", "string") is None  # wrong type


def test_wql_filter(winrm):
    rows = winrm.enumerate("Win32_Service", wql="SELECT Name, State FROM Win32_Service "
                                                "WHERE Name LIKE 'sms[_]%' AND NOT State <> 'Running'")
    assert rows == [{"Name": "SMS_EXECUTIVE", "State": "Running"},
                    {"Name": "SMS_SITE_COMPONENT_MANAGER", "State": "Running"}]
    provisioned = winrm.enumerate("SMS_R_System", SITE, wql="SELECT * FROM SMS_R_System WHERE AMTStatus = 3 "
                                                            "AND (Client = 0 OR ClientVersion IS NULL)")
    assert [s["Name"] for s in provisioned] == ["PC0001"]
    unknown = winrm.enumerate("SMS_R_System", SITE, wql="SELECT Name FROM SMS_R_System WHERE AMTStatus IS NULL")
    assert unknown in ([{"Name": "PC0002"}], [])  # null until its first hello (test_hello_packet_appears_as_event)
    assert winrm.enumerate("Win32_QuickFixEngineering", wql="select * from Win32_QuickFixEngineering "
                                                            "where HotFixID = 'kb899900'") == []
    with pytest.raises(SoapFault, match="CannotProcessFilter"):
        winrm.enumerate("Win32_Service", wql="SELECT * FROM Win32_Service WHERE Name ~ 'x'")


def test_wql_parser_unit():
    q = parse_wql("SELECT Name FROM Win32_Product WHERE Name LIKE 'Intel%Translator%' OR Version >= 6")
    assert q.class_name == "Win32_Product" and q.properties == ["Name"]
    assert q.where({"Name": "Intel(R) AMT WS-MAN Translator"}) and q.where({"Name": "x", "Version": "6.1"})
    assert not q.where({"Name": "MSXML 6.0 Parser", "Version": "5"})


def test_unknown_class_and_missing_keys(winrm):
    with pytest.raises(SoapFault, match="DestinationUnreachable"):
        winrm.enumerate("Win32_NoSuchClass")
    with pytest.raises(SoapFault, match="InvalidSelectors"):
        winrm.get("Win32_Service", {"Name": "NoSuchService"})


def test_refuses_methods_that_are_not_read_only(winrm, site):
    with pytest.raises(NotReadOnly):
        winrm.invoke("StdRegProv", "SetDWORDValue", {"hDefKey": 2147483650, "sSubKeyName": "x"})
    with pytest.raises(NotReadOnly):
        winrm.invoke(SMS_COLLECTION, OPERATE_FOR_MACHINES, {"ResourceIDs": [16777220], "Opcode": 64}, namespace=SITE)
    assert site.calls == []


def test_basic_auth_is_required_and_checked(site):
    bad = WinRM(site.winrm_url(), auth=BasicAuth(USER, "wrong", allow_unencrypted=True), ca_bundle=None, timeout=5)
    with pytest.raises(AuthFailed):
        bad.enumerate("Win32_OperatingSystem")
    with pytest.raises(ValueError, match="clear"):
        WinRM(site.winrm_url(), auth=BasicAuth(USER, PASSWORD), ca_bundle=None, timeout=5)


def test_https_with_the_lab_ca(site, tls):
    with WinRM(site.winrm_url(tls=True), auth=BasicAuth(USER, PASSWORD), ca_bundle=tls["ca"], timeout=5) as w:
        assert w.enumerate("SMS_Site", SITE)[0]["SiteCode"] == "LAB"


# --- the out of band service point and the log --------------------------------------------------------------------
def test_history_lines_for_provisioned_clients(site):
    evs = _log_events(site)
    assert [e.kind for e in evs["pc0001.vprolab.test"]][:4] == [
        "hello_received", "provisioning_started", "first_stage_completed", "second_stage_completed"]
    assert [e.kind for e in evs["pc0003.vprolab.test"]][:4] == [
        "ztc_request", "provisioning_started", "first_stage_completed", "second_stage_completed"]
    assert evs["pc0001.vprolab.test"][0].time == dt.datetime(2009, 3, 2, 10, tzinfo=dt.timezone.utc)
    assert "pc0002.vprolab.test" not in evs


def test_the_earliest_client_was_provisioned_before_the_log_rolled_over(site):
    """history_rolled_over (default 1): pc0001's lines are only in AMTOPMGR.lo_, the others' in AMTOPMGR.LOG."""
    old, current = (events(_log_lines(path)) for path in (site.log.history, site.log_path))
    assert site.log.history.name == "AMTOPMGR.lo_"
    assert [e.kind for e in old["pc0001.vprolab.test"]] == [
        "hello_received", "provisioning_started", "first_stage_completed", "second_stage_completed"]
    assert "pc0003.vprolab.test" not in old and "pc0003.vprolab.test" in current
    assert {e.kind for e in current.get("pc0001.vprolab.test", [])} <= {"unprovision_started", "unprovision_completed"}


def test_hardware_inventory_of_in_band_clients(winrm):
    (row,) = winrm.enumerate("SMS_G_System_AMT_AGENT", SITE)  # pc0003, the only one with the agent
    (pc3,) = winrm.enumerate("SMS_R_System", SITE, wql="SELECT ResourceId FROM SMS_R_System WHERE Name = 'PC0003'")
    assert (str(row["ResourceID"]), str(row["ProvisionState"])) == (str(pc3["ResourceId"]), "2")


def _send_hello(payload: bytes, source: str) -> None:
    with socket.create_connection((PLAN.site_server, 9971), timeout=5, source_address=(source, 0)) as s:
        s.sendall(payload)


def _wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def test_hello_packet_appears_as_event(site):
    _send_hello(encode_hello(UUIDS[1], retry_count=3, hashes=[(2, b"\x11" * 32)]), PLAN.client(1))
    hellos = _wait_for(lambda: [e for e in client_events(_log_events(site), uuid=UUIDS[1])
                                if e.kind == "hello_received"])
    assert hellos and hellos[-1].fqdn == "pc0002.vprolab.test" and hellos[-1].ip == PLAN.client(1)
    assert "retry 3" in hellos[-1].line.message
    assert site.spec.client("pc0002.vprolab.test").status() == 2  # the site knows its AMT now: not provisioned


def test_hello_from_unknown_device_and_garbage(site):
    stranger = str(uuid.uuid4())
    _send_hello(encode_hello(stranger), PLAN.client(9))
    _send_hello(b"\x07" * 10, PLAN.client(9))
    evs = _wait_for(lambda: client_events(_log_events(site), uuid=stranger))
    assert [e.kind for e in evs] == ["hello_received"] and evs[0].fqdn is None
    text = _wait_for(lambda: "Invalid hello packet" in site.log_path.read_text() and site.log_path.read_text())
    assert f"{stranger} from {PLAN.client(9)} has not been imported" in text


# --- the un-provision action --------------------------------------------------------------------------------------
def _operate(site, tls, ids, opcode, user=USER, password=PASSWORD):
    client = WsmanClient(site.winrm_url(tls=True), auth=BasicAuth(user, password), ca_bundle=tls["ca"], timeout=5)
    out = client.invoke(wmi_uri(SMS_COLLECTION, SITE), OPERATE_FOR_MACHINES, {"ResourceIDs": ids, "Opcode": opcode})
    assert site.wait_idle()
    return out["ReturnValue"]


def test_amt_operate_for_machines_unprovisions_through_the_service_point(site, tls):
    """FullUnprovision (64): the hooks in the real order, the log lines, the call recorded; AMTStatus changes only
    when the site discovers the management controller again (DiscoveryBMC, 8)."""
    site.hooked.clear()
    pc1 = site.spec.client("pc0001.vprolab.test")
    assert _operate(site, tls, [pc1.resource_id], 64) == "0"
    assert site.hooked == [("amt_unprovision", "pc0001.vprolab.test"), ("revoke_certificate", "pc0001.vprolab.test"),
                           ("delete_ad_object", "pc0001.vprolab.test")]
    kinds = [e.kind for e in _log_events(site)["pc0001.vprolab.test"]]
    assert kinds[-2:] == ["unprovision_started", "unprovision_completed"]
    w = WinRM(site.winrm_url(tls=True), auth=BasicAuth(USER, PASSWORD), ca_bundle=tls["ca"], timeout=5)
    query = "SELECT AMTStatus FROM SMS_R_System WHERE Name = 'PC0001'"
    assert w.enumerate("SMS_R_System", SITE, wql=query) == [{"AMTStatus": 3}]  # what the site last knew
    assert _operate(site, tls, [pc1.resource_id], 8) == "0"
    assert w.enumerate("SMS_R_System", SITE, wql=query) == [{"AMTStatus": 2}]  # discovered: not provisioned
    calls = [json.loads(line) for line in Path(site.spec.calls_file).read_text().splitlines()]
    assert [(c["op"], c["params"], c["return"], c["principal"]) for c in calls][-2:] == [
        (OPERATE_FOR_MACHINES, {"ResourceIDs": [pc1.resource_id], "Opcode": 64}, 0, USER),
        (OPERATE_FOR_MACHINES, {"ResourceIDs": [pc1.resource_id], "Opcode": 8}, 0, USER)]
    assert _operate(site, tls, [999], 64) == "1"  # a resource the site does not know


def test_power_operations_and_the_collection_method(site, tls):
    site.hooked.clear()
    pc2 = site.spec.client("pc0002.vprolab.test")
    assert _operate(site, tls, [pc2.resource_id], 3) == "0"
    assert _operate(site, tls, [pc2.resource_id], 1) == "0"
    assert site.hooked == [("amt_power", "pc0002.vprolab.test", 8), ("amt_power", "pc0002.vprolab.test", 2)]
    client = WsmanClient(site.winrm_url(tls=True), auth=BasicAuth(USER, PASSWORD), ca_bundle=tls["ca"], timeout=5)
    col = site.spec.collections[1]["CollectionID"]  # the out of band collection: pc0001, pc0002
    out = client.invoke(wmi_uri(SMS_COLLECTION, SITE), OPERATE_FOR_COLLECTION, {"Opcode": 2}, {"CollectionID": col})
    assert out["ReturnValue"] == "0" and site.wait_idle()
    assert site.hooked[2:] == [("amt_power", "pc0001.vprolab.test", 10), ("amt_power", "pc0002.vprolab.test", 10)]


def test_operations_need_the_manage_right_and_a_running_service_point(tmp_path, tls):
    hooked = []
    perms = [{"UserName": f"VPROLAB\\{USER}", "InstanceKey": "LAB00001", "rights": ["Read",
                                                                                   "Manage management controllers"]}]
    spec = _spec(tmp_path, tls, address="127.95.0.22", tls_cert="", log_dir="", permissions=perms)
    with SiteServerSimulator(spec, hooks={"amt_power": lambda c, s: hooked.append((c.fqdn, s))}) as sim:
        client = WsmanClient(sim.winrm_url(), auth=BasicAuth(USER, PASSWORD, allow_unencrypted=True), ca_bundle=None,
                             timeout=5)
        pc1, pc3 = spec.client("pc0001.vprolab.test"), spec.client("pc0003.vprolab.test")
        uri = wmi_uri(SMS_COLLECTION, SITE)
        assert client.invoke(uri, OPERATE_FOR_MACHINES, {"ResourceIDs": [pc1.resource_id], "Opcode": 3})[
            "ReturnValue"] == "0"  # pc0001 is in LAB00001
        with pytest.raises(SoapFault, match=r"WBEM_E_ACCESS_DENIED \(0x80041003\).*pc0003"):
            client.invoke(uri, OPERATE_FOR_MACHINES, {"ResourceIDs": [pc3.resource_id], "Opcode": 3})
        assert sim.wait_idle() and hooked == [("pc0001.vprolab.test", 8)]
        spec.oob_service_point_running = False  # stopped: accepted, queued, never performed
        assert client.invoke(uri, OPERATE_FOR_MACHINES, {"ResourceIDs": [pc1.resource_id], "Opcode": 1})[
            "ReturnValue"] == "0"
        assert sim.wait_idle() and hooked == [("pc0001.vprolab.test", 8)] and len(sim.pending) == 1
        assert [c["return"] for c in sim.calls] == [0, "access denied: pc0003.vprolab.test", 0]


def test_sms_keys_are_in_the_32_bit_view_on_a_64_bit_server(tmp_path, tls):
    spec = _spec(tmp_path, tls, address="127.95.0.23", tls_cert="", log_dir="", os_architecture="64-bit")
    with SiteServerSimulator(spec) as sim:
        with WinRM(sim.winrm_url(), auth=BasicAuth(USER, PASSWORD, allow_unencrypted=True), ca_bundle=None,
                   timeout=5) as w:
            assert w.registry_value("HKLM", r"SOFTWARE\Wow6432Node\Microsoft\SMS\Setup", "Full Version") == \
                "4.00.6221.1000"
            assert w.registry_value("HKLM", r"SOFTWARE\Microsoft\SMS\Setup", "Full Version") is None


def test_failing_hook_is_logged_as_failure(tmp_path, tls):
    def revoke(_client):
        raise PermissionError("CA refused the revocation")

    spec = _spec(tmp_path, tls, address="127.95.0.21", tls_cert="", log_dir=str(tmp_path / "Logs"))
    with SiteServerSimulator(spec, hooks={"revoke_certificate": revoke}) as sim:
        assert sim.unprovision("pc0003.vprolab.test") == 2
    (failed,) = [e for e in _log_events(sim)["pc0003.vprolab.test"] if e.kind == "unprovision_failed"]
    assert failed.reason == "revoke_certificate: PermissionError: CA refused the revocation"
    assert spec.client("pc0003.vprolab.test").provisioned is True


# --- independent client -------------------------------------------------------------------------------------------
def test_pywinrm_enumerates_a_class(site):
    """pywinrm (its own envelope style, Basic auth, transport) enumerates Win32_QuickFixEngineering."""
    winrm_lib = pytest.importorskip("winrm")
    xmltodict = pytest.importorskip("xmltodict")
    from winrm.protocol import Protocol

    p = Protocol(endpoint=site.winrm_url(), transport="basic", username=USER, password=PASSWORD,
                 read_timeout_sec=10, operation_timeout_sec=5)
    uri = wmi_uri("Win32_QuickFixEngineering")
    soap, enum = "http://www.w3.org/2003/05/soap-envelope", "http://schemas.xmlsoap.org/ws/2004/09/enumeration"

    def send(action: str, body: dict) -> dict:
        msg = {"env:Envelope": p.build_wsman_header(f"{enum}/{action}", uri)}
        msg["env:Envelope"]["env:Body"] = body
        return xmltodict.parse(p.send_message(xmltodict.unparse(msg)), process_namespaces=True)[
            f"{soap}:Envelope"][f"{soap}:Body"]

    context = send("Enumerate", {"n:Enumerate": {"w:OptimizeEnumeration": None}})[
        f"{enum}:EnumerateResponse"][f"{enum}:EnumerationContext"]
    pull = send("Pull", {"n:Pull": {"n:EnumerationContext": context, "n:MaxElements": "100"}})[f"{enum}:PullResponse"]
    assert f"{enum}:EndOfSequence" in pull
    items = pull[f"{enum}:Items"][f"{uri}:Win32_QuickFixEngineering"]
    assert {i[f"{uri}:HotFixID"] for i in items} == set(APPENDIX_A) - {"KB899900", "KB908209"}
    msg = {"env:Envelope": p.build_wsman_header(f"{enum}/Enumerate", uri)}
    msg["env:Envelope"]["env:Body"] = {"n:Enumerate": None}
    with pytest.raises(winrm_lib.exceptions.InvalidCredentialsError):
        Protocol(endpoint=site.winrm_url(), transport="basic", username=USER, password="wrong",
                 read_timeout_sec=10, operation_timeout_sec=5).send_message(xmltodict.unparse(msg))


# --- process mode -------------------------------------------------------------------------------------------------
def test_process_mode_starts_serves_and_stops_on_sigterm(tmp_path, tls):
    spec = _spec(tmp_path, tls, address="127.95.0.31", tls_cert="", calls_file="")
    spec_file, calls = tmp_path / "site.json", tmp_path / "calls.jsonl"
    spec_file.write_text(json.dumps(spec.to_dict()))
    proc = subprocess.Popen([sys.executable, "-m", "pytest_vpro.lab.site_server", "--spec", str(spec_file),
                             "--calls", str(calls)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY site server sccm01.vprolab.test at 127.95.0.31"), proc.stderr.read()
        w = WinRM("http://127.95.0.31:5985/wsman", auth=BasicAuth(USER, PASSWORD, allow_unencrypted=True),
                  ca_bundle=None, timeout=5)
        assert w.enumerate("SMS_Site", SITE)[0]["Version"] == "4.00.6221.1000"
        assert not calls.exists()  # reads change nothing
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    for port in (5985, 9971):  # nothing left listening
        with pytest.raises(OSError):
            socket.create_connection(("127.95.0.31", port), timeout=1).close()


# --- Kerberos (Negotiate) against the lab's Samba KDC -------------------------------------------------------------
@pytest.fixture(scope="module")
def samba_dc(tmp_path_factory):
    samba = pytest.importorskip("pytest_vpro.lab.samba")
    if not Path("/usr/sbin/samba").exists():
        pytest.skip("Samba is not installed")
    dc = samba.SambaDC(tmp_path_factory.mktemp("samba-dc-95"), PLAN.dc,
                       admin_password=f"Adm-{uuid.uuid4().hex[:12]}-9a")
    dc.provision()
    dc.start()
    yield dc
    dc.stop()


def test_kerberos_negotiate_with_the_lab_kdc(samba_dc, tmp_path, tls, monkeypatch):
    """A real ticket for HTTP/sccm01.vprolab.test (WinRM's SPN: no port) accepted over https; other SPNs refused."""
    from pytest_vpro.probes.winrm import winrm_kerberos

    samba_dc.add_computer("SCCM01", spns=["HTTP/sccm01.vprolab.test", "HOST/sccm01.vprolab.test"],
                          dns_host_name="sccm01.vprolab.test")
    samba_dc.add_computer("OTHER01", spns=["HTTP/other01.vprolab.test"])
    keytab = samba_dc.export_keytab(tmp_path / "sccm01.keytab", ["HTTP/sccm01.vprolab.test",
                                                                 "HTTP/other01.vprolab.test"])
    password = f"Con-{uuid.uuid4().hex[:10]}-7x"
    samba_dc.add_user("cmadmin", password)
    monkeypatch.setenv("KRB5_CONFIG", str(samba_dc.krb5_conf))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path}/cm.ccache")
    subprocess.run(["kinit", f"cmadmin@{samba_dc.realm}"], input=password + "\n", text=True, check=True,
                   capture_output=True, timeout=30)
    spec = _spec(tmp_path, tls, address=KERBEROS_ADDRESS, basic_users={}, kerberos_keytab=str(keytab),
                 kerberos_realm=samba_dc.realm, log_dir=str(tmp_path / "Logs"))
    with SiteServerSimulator(spec):
        url = f"https://{KERBEROS_ADDRESS}:5986/wsman"
        with WinRM(url, auth=winrm_kerberos("sccm01.vprolab.test"), ca_bundle=tls["ca"], timeout=10) as w:
            assert w.enumerate("SMS_Site", SITE)[0]["SiteCode"] == "LAB"
        with WinRM(url, auth=winrm_kerberos("other01.vprolab.test"), ca_bundle=tls["ca"], timeout=10) as w:
            with pytest.raises(AuthFailed):
                w.enumerate("SMS_Site", SITE)
        with WinRM(url, auth=BasicAuth(USER, PASSWORD), ca_bundle=tls["ca"], timeout=10) as w:
            with pytest.raises(AuthFailed):  # no Basic users configured: Basic is not offered
                w.enumerate("SMS_Site", SITE)


def test_spec_callbacks_are_imported_by_name(tmp_path, tls):
    spec = _spec(tmp_path, tls, callbacks={"amt_unprovision": "builtins:repr"})
    assert SiteServerSimulator(spec).hooks == {"amt_unprovision": repr}
    with pytest.raises(ValueError, match="unknown hook"):
        SiteServerSimulator(_spec(tmp_path, tls, callbacks={"format_disk": "os:remove"}))
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    again = SiteServerSpec.load(spec_file)
    assert again.clients == spec.clients and again.oob == spec.oob and again.hotfixes == spec.hotfixes
