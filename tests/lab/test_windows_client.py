"""The in-band clients' operating system on net 99: WinRM/WMI (probes/winrm.py and pywinrm) and OOBMGMT.LOG
over a real SMB C$ share (smbclient), parsed by probes/cmlog.py."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from throwaway_tls import write_tls

from pytest_vpro import policy_window as pw
from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.file_server import LabFileServer
from pytest_vpro.lab.samba import alive
from pytest_vpro.lab.windows_client import (
    CCM_COMPONENT,
    MEI_DEVICE_NAME,
    MEI_DRIVER_SERVICE,
    POLICY_CLASS,
    POLICY_ENABLED_PROPERTY,
    POLICY_NAMESPACE,
    WindowsClientProvider,
    WindowsClients,
    WindowsClientSpec,
    oobmgmt_message,
)
from pytest_vpro.probes.cmlog import parse_text
from pytest_vpro.probes.winrm import BasicAuth, NotReadOnly, WinRM, wmi_uri
from pytest_vpro.probes.wsman import SoapFault, WsmanClient

PLAN = AddressPlan(99)
A, B, C = PLAN.client(3), PLAN.client(4), PLAN.client(5)  # 127.99.1.4, .5, .6
USER, PASSWORD = "Administrator", "Cl1ent-P@ss"          # WinRM Basic and SMB
LOG = "WINDOWS/system32/CCM/Logs/OOBMGMT.LOG"

needs_smbd = pytest.mark.skipif(not (shutil.which("smbd") or Path("/usr/sbin/smbd").exists())
                                or not shutil.which("smbclient"), reason="Debian samba/smbclient not installed")


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, str]:
    """A throwaway CA and one WinRM certificate naming the test clients (names and addresses)."""
    return write_tls(tmp_path_factory.mktemp("client-tls"), "Client Test CA", "pc0004.vprolab.test",
                     [f"pc000{i}.vprolab.test" for i in (4, 5, 6)], [A, B, C])


def _specs(log_dirs: dict[str, str], tls: dict[str, str]) -> list[WindowsClientSpec]:
    common = dict(basic_users={USER: PASSWORD}, allow_unencrypted=True, tls_cert=tls["cert"], tls_key=tls["key"])
    return [
        WindowsClientSpec("pc0004.vprolab.test", A, utc_offset_minutes=-420, time_zone_name="Mountain Standard Time",
                          log_dir=log_dirs.get(A, ""), **common),
        WindowsClientSpec("pc0005.vprolab.test", B, mei_started=False, utc_offset_minutes=60, clock_offset_s=600,
                          log_dir=log_dirs.get(B, ""), **common),
        WindowsClientSpec("pc0006.vprolab.test", C, agent_installed=False, mei_installed=False,
                          log_dir=log_dirs.get(C, ""), **common),
    ]


@pytest.fixture(scope="module")
def file_server(tmp_path_factory):
    if not (shutil.which("smbd") or Path("/usr/sbin/smbd").exists()):
        yield None
        return
    fs = LabFileServer(tmp_path_factory.mktemp("file-server"), [A, B, C], password=PASSWORD).start()
    yield fs
    fs.stop()


@pytest.fixture(scope="module")
def clients(tmp_path_factory, tls, file_server):
    tmp = tmp_path_factory.mktemp("clients")
    dirs = {a: str(file_server.ccm_logs_dir(a) if file_server else tmp / a / "Logs") for a in (A, B, C)}
    wc = WindowsClients(_specs(dirs, tls), calls_file=tmp / "calls.jsonl").start()
    yield wc
    wc.stop()


def _winrm(clients, address: str, tls_files: dict[str, str] | None = None) -> WinRM:
    if tls_files:
        return WinRM(clients.winrm_url(address, tls=True), auth=BasicAuth(USER, PASSWORD), ca_bundle=tls_files["ca"],
                     timeout=5)
    return WinRM(clients.winrm_url(address), auth=BasicAuth(USER, PASSWORD, allow_unencrypted=True), ca_bundle=None,
                 timeout=5)


# --- WMI through the project's probe ----------------------------------------------------------------------------
def test_operating_system_time_zone_and_clock(clients, tls):
    with _winrm(clients, A, tls) as w:
        (os_,) = w.enumerate("Win32_OperatingSystem")
        (tz,) = w.enumerate("Win32_TimeZone")
        (cs,) = w.enumerate("Win32_ComputerSystem")
        (product,) = w.enumerate("Win32_ComputerSystemProduct")
    assert (os_["Caption"], os_["CSDVersion"], os_["ServicePackMajorVersion"]) == (
        "Microsoft Windows XP Professional", "Service Pack 3", 3)
    local = os_["LocalDateTime"]
    assert isinstance(local, dt.datetime) and local.utcoffset() == dt.timedelta(minutes=-420)
    assert abs((local - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 5
    assert int(tz["Bias"]) == -420 and tz["StandardName"] == "Mountain Standard Time"
    assert cs["Domain"] == "vprolab.test" and cs["PartOfDomain"] is True
    assert product["UUID"] == clients.spec(A).uuid.upper()
    with _winrm(clients, B) as w:  # B's clock runs 10 minutes ahead, in UTC+1
        local = w.enumerate("Win32_OperatingSystem")[0]["LocalDateTime"]
        (utc,) = w.enumerate("Win32_UTCTime")
    assert local.utcoffset() == dt.timedelta(minutes=60)
    assert 595 < (local - dt.datetime.now(dt.timezone.utc)).total_seconds() < 605
    skew = dt.datetime(utc["Year"], utc["Month"], utc["Day"], utc["Hour"], utc["Minute"], utc["Second"],
                       tzinfo=dt.timezone.utc) - dt.datetime.now(dt.timezone.utc)
    assert 590 < skew.total_seconds() < 605


def test_mei_driver_installed_started_or_not(clients):
    with _winrm(clients, A) as w:
        (drv,) = w.enumerate("Win32_PnPSignedDriver", wql="SELECT DeviceName, DriverVersion FROM "
                             f"Win32_PnPSignedDriver WHERE DeviceName = '{MEI_DEVICE_NAME}'")
        heci = w.get("Win32_SystemDriver", {"Name": MEI_DRIVER_SERVICE})
        (dev,) = w.enumerate("Win32_PnPEntity")
        base = {s["Name"] for s in w.enumerate("Win32_BaseService")}
    assert drv == {"DeviceName": MEI_DEVICE_NAME, "DriverVersion": clients.spec(A).mei_version}
    assert (heci["State"], heci["Started"]) == ("Running", True)
    assert int(dev["ConfigManagerErrorCode"]) == 0
    assert {MEI_DRIVER_SERVICE, "CcmExec", "WinRM"} <= base
    with _winrm(clients, B) as w:
        assert w.get("Win32_SystemDriver", {"Name": MEI_DRIVER_SERVICE})["State"] == "Stopped"
        assert int(w.enumerate("Win32_PnPEntity")[0]["ConfigManagerErrorCode"]) == 22
    with _winrm(clients, C) as w:
        assert w.enumerate("Win32_PnPSignedDriver") == [] and w.enumerate("Win32_SystemDriver") == []
        assert int(w.enumerate("Win32_PnPEntity")[0]["ConfigManagerErrorCode"]) == 28


def test_agent_version_site_and_policy(clients):
    with _winrm(clients, A) as w:
        (client,) = w.enumerate("SMS_Client", "root/ccm")
        (authority,) = w.enumerate("SMS_Authority", "root/ccm",
                                   wql="SELECT * FROM SMS_Authority WHERE Name LIKE 'SMS:%'")
        (policy,) = w.enumerate(POLICY_CLASS, POLICY_NAMESPACE)
        site = w.registry_value("HKLM", r"SOFTWARE\Microsoft\SMS\Mobile Client", "AssignedSiteCode")
        svc = w.get("Win32_Service", {"Name": "CcmExec"})
    assert client["ClientVersion"] == "4.00.6221.1000"
    assert (authority["Name"], authority["CurrentManagementPoint"]) == ("SMS:LAB", "sccm01.vprolab.test")
    assert policy[POLICY_ENABLED_PROPERTY] is True and policy["SiteCode"] == "LAB"
    assert site == "LAB" and svc["State"] == "Running"
    with _winrm(clients, C) as w:  # no agent: no root/ccm namespace, no CcmExec, no registry key
        with pytest.raises(SoapFault):
            w.enumerate("SMS_Client", "root/ccm")
        assert "CcmExec" not in {s["Name"] for s in w.enumerate("Win32_Service")}
        assert w.registry_value("HKLM", r"SOFTWARE\Microsoft\SMS\Mobile Client", "AssignedSiteCode") is None


def test_machine_policy_schedule_and_polling_interval(clients):
    """The agent's last machine policy request (CCM_Scheduler_History, as the check queries it) and its polling
    interval; a PC without the agent has neither namespace."""
    with _winrm(clients, A) as w:
        (history,) = w.enumerate(pw.SCHEDULER_HISTORY, pw.SCHEDULER_NAMESPACE, wql=pw.SCHEDULER_QUERY)
        (agent,) = w.enumerate(pw.POLICY_AGENT_CLASS, pw.POLICY_AGENT_NAMESPACE)
    last = pw.last_request([history])
    assert last is not None and 0 < (dt.datetime.now(dt.timezone.utc) - last).total_seconds() < 3600  # 30 min
    assert last.utcoffset() == dt.timedelta(minutes=-420)  # the client's own zone, UTC-7
    assert str(agent[pw.POLLING_PROPERTY]) == "60"
    with _winrm(clients, C) as w:
        with pytest.raises(SoapFault):
            w.enumerate(pw.SCHEDULER_HISTORY, pw.SCHEDULER_NAMESPACE, wql=pw.SCHEDULER_QUERY)


def test_each_address_is_its_own_client(clients):
    for address in (A, B, C):
        with _winrm(clients, address) as w:
            assert w.enumerate("Win32_ComputerSystem")[0]["Name"] == clients.spec(address).netbios


def test_reads_record_nothing_and_changes_are_refused(clients):
    assert not clients.calls_file.exists()  # every read above left no trace
    with _winrm(clients, A) as w, pytest.raises(NotReadOnly):
        w.invoke("StdRegProv", "SetStringValue", {"hDefKey": 2147483650, "sSubKeyName": "x"})
    raw = WsmanClient(clients.winrm_url(A), auth=BasicAuth(USER, PASSWORD, allow_unencrypted=True), ca_bundle=None,
                      timeout=5)
    with pytest.raises(SoapFault):
        raw.invoke(wmi_uri("StdRegProv", "root/default"), "SetStringValue", {"hDefKey": "2147483650"})
    raw.close()
    calls = [json.loads(line) for line in clients.calls_file.read_text().splitlines()]
    assert [(c["client"], c["op"], c["refused"]) for c in calls] == [("pc0004.vprolab.test", "SetStringValue", True)]
    clients.calls_file.unlink()


def test_basic_auth_is_checked(clients):
    with pytest.raises(Exception, match="401|uthenticat|denied|rejected"):
        WinRM(clients.winrm_url(A), auth=BasicAuth(USER, "wrong", allow_unencrypted=True), ca_bundle=None,
              timeout=5).enumerate("Win32_OperatingSystem")


# --- WMI through an independent client (pywinrm) ----------------------------------------------------------------
def test_pywinrm_reads_every_class(clients, tls):
    """pywinrm (its own envelopes and transport, Basic over https with the CA) enumerates every class of a client
    and sees the same instances, property names and values, as probes/winrm.py."""
    pytest.importorskip("winrm")
    xmltodict = pytest.importorskip("xmltodict")
    from winrm.protocol import Protocol

    p = Protocol(endpoint=clients.winrm_url(A, tls=True), transport="basic", username=USER, password=PASSWORD,
                 ca_trust_path=tls["ca"], server_cert_validation="validate", read_timeout_sec=10,
                 operation_timeout_sec=5)
    soap, enum = "http://www.w3.org/2003/05/soap-envelope", "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
    provider = WindowsClientProvider(clients.spec(A), clients)
    checked = 0
    with _winrm(clients, A, tls) as w:
        for namespace, table in provider.classes().items():
            for cls in table:
                if cls == "StdRegProv":
                    continue
                uri = wmi_uri(cls, namespace)

                def send(action: str, body) -> dict:
                    msg = {"env:Envelope": p.build_wsman_header(f"{enum}/{action}", uri)}
                    msg["env:Envelope"]["env:Body"] = body
                    return xmltodict.parse(p.send_message(xmltodict.unparse(msg)), process_namespaces=True)[
                        f"{soap}:Envelope"][f"{soap}:Body"]

                ctx = send("Enumerate", {"n:Enumerate": None})[f"{enum}:EnumerateResponse"][
                    f"{enum}:EnumerationContext"]
                pull = send("Pull", {"n:Pull": {"n:EnumerationContext": ctx, "n:MaxElements": "100"}})[
                    f"{enum}:PullResponse"]
                assert f"{enum}:EndOfSequence" in pull
                items = (pull.get(f"{enum}:Items") or {}).get(f"{uri}:{cls}", [])
                items = items if isinstance(items, list) else [items]
                ours = w.enumerate(cls, namespace)
                assert len(items) == len(ours), cls
                for theirs, mine in zip(items, ours):
                    names = {k.rsplit(":", 1)[-1] for k in theirs if not k.startswith("@")}
                    assert names == set(mine), cls
                    for key, value in mine.items():
                        if isinstance(value, (str, int)) and not isinstance(value, bool):
                            assert str(theirs[f"{uri}:{key}"] or "") == str(value), (cls, key)
                checked += 1
    expected = sum(1 for table in provider.classes().values() for cls in table if cls != "StdRegProv")
    assert checked == expected >= 14  # root/cimv2, root/ccm, the policy class: every class the PC serves


# --- OOBMGMT.LOG over SMB (smbclient) ---------------------------------------------------------------------------
def _smbget(address: str, local: Path, password: str = PASSWORD) -> subprocess.CompletedProcess:
    """``smbclient //<address>/C$ -c 'get <log> <local>'``; the password goes to stdin, never on a command line."""
    return subprocess.run(["smbclient", f"//{address}/C$", "-U", USER, "-m", "SMB3", "-c", f"get {LOG} {local}"],
                          input=(password + "\n").encode(), capture_output=True, timeout=30)


def _entries(local: Path):
    return parse_text(local.read_bytes())


@needs_smbd
def test_smbclient_gets_each_clients_own_log(clients, tmp_path):
    a, b = _smbget(A, tmp_path / "a.log"), _smbget(B, tmp_path / "b.log")
    assert a.returncode == 0 and b.returncode == 0, (a.stdout, b.stdout)
    la, lb = _entries(tmp_path / "a.log"), _entries(tmp_path / "b.log")
    assert {e.format for e in la + lb} == {"ccm"}
    spec_a = clients.spec(A)
    assert [e.message for e in la] == [
        oobmgmt_message("agent_started", version="4.00.6221.1000"),
        oobmgmt_message("policy_downloaded", site_code="LAB"),
        oobmgmt_message("policy_enabled"), oobmgmt_message("mei_found", mei_version=spec_a.mei_version),
        oobmgmt_message("provisioning_request_sent", fqdn=spec_a.fqdn, uuid=spec_a.uuid,
                        site_server="sccm01.vprolab.test")]
    assert {e.component for e in la} == {CCM_COMPONENT}
    assert all(e.time.utcoffset() == dt.timedelta(minutes=-420) for e in la)  # the client's own time zone
    assert 86000 < (dt.datetime.now(dt.timezone.utc) - la[0].time).total_seconds() < 86500
    assert spec_a.fqdn in la[-1].message and spec_a.fqdn not in (tmp_path / "b.log").read_text()
    assert lb[-1].type == 3 and "not started" in lb[-1].message  # B: MEI driver not started, no request
    assert not any("provisioning request" in e.message for e in lb)
    assert (tmp_path / "a.log").read_bytes().count(b"\r\n") == 5  # CRLF as Windows writes


@needs_smbd
def test_smb_refuses_other_paths_passwords_and_writes(clients, file_server, tmp_path):
    c = _smbget(C, tmp_path / "c.log")  # no agent: no CCM folder on that PC
    assert c.returncode != 0 and b"NT_STATUS_OBJECT_PATH_NOT_FOUND" in c.stdout + c.stderr
    bad = _smbget(A, tmp_path / "bad.log", password="wrong")
    assert bad.returncode != 0 and b"NT_STATUS_LOGON_FAILURE" in bad.stdout + bad.stderr
    (tmp_path / "x.txt").write_text("x")
    put = subprocess.run(["smbclient", f"//{A}/C$", "-U", USER, "-c", f"put {tmp_path / 'x.txt'} x.txt"],
                         input=(PASSWORD + "\n").encode(), capture_output=True, timeout=30)
    assert b"NT_STATUS_ACCESS_DENIED" in put.stdout + put.stderr or b"NT_STATUS_MEDIA_WRITE_PROTECTED" in put.stdout
    assert not (file_server.drive_dir(A) / "x.txt").exists()


# --- life cycle -------------------------------------------------------------------------------------------------
def _listening(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=0.5).close()
        return True
    except OSError:
        return False


@needs_smbd
def test_stop_leaves_no_process_or_listener(tmp_path, tls):
    addrs = ["127.99.3.1", "127.99.3.2"]
    fs = LabFileServer(tmp_path / "fs", addrs, password=PASSWORD).start()
    specs = [WindowsClientSpec(f"pc90{i}.vprolab.test", a, basic_users={USER: PASSWORD}, tls_cert=tls["cert"],
                               tls_key=tls["key"], log_dir=str(fs.ccm_logs_dir(a))) for i, a in enumerate(addrs)]
    wc = WindowsClients(specs).start()
    try:
        assert _smbget(addrs[1], tmp_path / "x.log").returncode == 0  # a session child of smbd is started and ends
        procs = fs.processes()
        assert procs and all(_listening(a, p) for a in addrs for p in (445, 5985, 5986))
    finally:
        wc.stop()
        fs.stop()
    assert not alive(procs)
    assert not any(_listening(a, p) for a in addrs for p in (445, 5985, 5986))
    fs.stop()  # idempotent
    wc.stop()


def test_process_mode_serves_and_stops_on_sigterm(tmp_path):
    spec = WindowsClientSpec("pc0901.vprolab.test", "127.99.3.9", basic_users={USER: PASSWORD},
                             allow_unencrypted=True, log_dir=str(tmp_path / "Logs"))
    spec_file = tmp_path / "clients.json"
    spec_file.write_text(json.dumps({"clients": [spec.to_dict()]}))
    proc = subprocess.Popen([sys.executable, "-m", "pytest_vpro.lab.windows_client", "--spec", str(spec_file),
                             "--calls", str(tmp_path / "calls.jsonl")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY Windows clients: 1"), proc.stderr.read()
        w = WinRM("http://127.99.3.9:5985/wsman", auth=BasicAuth(USER, PASSWORD, allow_unencrypted=True),
                  ca_bundle=None, timeout=5)
        assert w.enumerate("SMS_Client", "root/ccm")[0]["ClientVersion"] == "4.00.6221.1000"
        assert (tmp_path / "Logs" / "OOBMGMT.LOG").read_text().count("<![LOG[") == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert not (tmp_path / "calls.jsonl").exists()
    assert not _listening("127.99.3.9", 5985)
