"""The operating-system side of the lab's in-band clients: WinRM/WMI and the client's ``OOBMGMT.LOG``.

What the guide's Stage 2 in-band checks (seed 000, "Stage 2 - Provisioning Requests Received at SCCM Server")
read on a client, served for every :class:`WindowsClientSpec` by ONE :class:`WindowsClients` object (one event
loop, in a thread or as a process):

* **WinRM** on the client's own address, ``5985`` (http) and ``5986`` (https, with the spec's certificate), path
  ``/wsman``, on the site server's WinRM machinery (:class:`pytest_vpro.lab.site_server.WinrmServer`, its WQL
  subset, HTTP ``Basic`` and Kerberos ``Negotiate`` with SPN ``HTTP/<fqdn>``): :class:`WindowsClientProvider`
  subclasses :class:`~pytest_vpro.lab.site_server.SiteServerProvider` and only replaces its class table.
  Classes: ``root/cimv2`` Win32_OperatingSystem (Caption, CSDVersion, LocalDateTime), Win32_ComputerSystem,
  Win32_ComputerSystemProduct (UUID = the AMT device UUID), Win32_TimeZone (Bias), Win32_UTCTime,
  Win32_LocalTime, Win32_Service, Win32_SystemDriver and Win32_BaseService (the MEI/HECI driver),
  Win32_PnPEntity and Win32_PnPSignedDriver (what Device Manager shows); ``root/ccm`` SMS_Client (ClientVersion),
  SMS_Authority (``SMS:<site>``, CurrentManagementPoint); the automatic provisioning policy in
  :data:`POLICY_NAMESPACE`, with the policy agent's ``CCM_PolicyAgent_Configuration`` (polling interval); the machine
  policy schedule's ``CCM_Scheduler_History`` in ``root/ccm/Scheduler`` (last triggered ``policy_requested_age_s``
  ago); ``root/default`` StdRegProv (read-only methods). Without the agent, ``root/ccm`` and
  its policy namespace do not exist (WS-MAN ``DestinationUnreachable``), as on a PC without the client.
* **OOBMGMT.LOG** in the CCM format (:class:`pytest_vpro.lab.cmlog.CmLogWriter` ``fmt="ccm"``) in the spec's
  ``log_dir`` (the lab points it at the SMB file server's ``C$\\WINDOWS\\system32\\CCM\\Logs``): on an empty
  log, the lines of a client that downloaded the policy, found the MEI driver and sent its provisioning request,
  stamped ``history_age_s`` in the past in the client's own time zone. A spec whose agent, driver or policy is
  missing writes what that client would log instead (see :func:`history`).

Everything is read-only: Put and any method outside StdRegProv's reads are refused, and each refused attempt is
appended to the JSONL ``calls`` file, so an empty (absent) calls file proves that nothing tried to change a client.

Sources: Microsoft WMI class documentation (Win32_OperatingSystem, Win32_TimeZone, Win32_SystemDriver,
Win32_PnPEntity ``ConfigManagerErrorCode``: 0 working, 22 disabled, 28 no driver installed); the guide (MEI
formerly HECI driver "installed and started", agent 4.0.6221.1000 = SP1, policy "downloaded and enabled" seen in
OOBMGMT.LOG); ``docs/protocols.md`` (CCM log format). Every name no public source confirms is in the one
table :data:`UNCONFIRMED`, the log texts in :data:`OOBMGMT_MESSAGES`; both, and :class:`WindowsClientSpec`, live in
:mod:`.windows_spec` (plain data the lab's faults change without aiohttp) and are re-exported here.

Run as a process: ``python -m pytest_vpro.lab.windows_client --spec clients.json [--calls calls.jsonl]`` (a JSON
list of specs, or ``{"clients": [...]}``); it prints one ``READY ...`` line and stops cleanly on SIGTERM/SIGINT.
In-process: ``WindowsClients(specs).start()`` / ``stop()``. This module knows nothing of pytest.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import sys
import threading
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from pytest_vpro.lab.cmlog import CmLogWriter
from pytest_vpro.lab.service import BackgroundService, serve_as_process
from pytest_vpro.lab.site_provider import SiteServerProvider, cim_datetime
from pytest_vpro.lab.windows_spec import (
    CCM_COMPONENT,
    CCM_THREAD,
    LMS_SERVICE,
    LOG_NAME,
    LOG_SUBDIR,
    MACHINE_POLICY_REQUEST,
    MACHINE_USER_SID,
    MEI_DEVICE_NAME,
    MEI_DEVICE_STATUS,
    MEI_DRIVER_SERVICE,
    MEI_HARDWARE_ID,
    MOBILE_CLIENT_KEY,
    OOBMGMT_MESSAGES,
    POLICY_AGENT_CLASS,
    POLICY_CLASS,
    POLICY_ENABLED_PROPERTY,
    POLICY_NAMESPACE,
    POLICY_POLLING_MINUTES,
    SCHEDULER_HISTORY,
    SCHEDULER_NAMESPACE,
    SP1_CLIENT_VERSION,
    UNCONFIRMED,
    WindowsClientSpec,
    oobmgmt_message,
)
from pytest_vpro.lab.winrm_server import WinrmServer
from pytest_vpro.lab.wsman_server import Fault, ServerInstance, WsmanRequest

log = logging.getLogger(__name__)

# --- the WMI provider ---------------------------------------------------------------------------------------------
class WindowsClientProvider(SiteServerProvider):
    """The WMI classes of one client, on the site server provider's routing, WQL, Get and StdRegProv code."""

    def __init__(self, spec: WindowsClientSpec, clients: "WindowsClients"):
        super().__init__(spec, None)  # type: ignore[arg-type]  # the site server's 'sim' is only for its method
        self.clients = clients

    def classes(self) -> dict[str, dict[str, Callable[[], list[dict[str, Any]]]]]:
        s: WindowsClientSpec = self.spec  # type: ignore[assignment]
        table: dict[str, dict[str, Callable[[], list[dict[str, Any]]]]] = {
            "root/cimv2": {
                "Win32_OperatingSystem": lambda: [self._os()],
                "Win32_ComputerSystem": lambda: [{
                    "Name": s.netbios, "DNSHostName": s.fqdn.split(".")[0], "Domain": s.workgroup or s.domain,
                    "PartOfDomain": not s.workgroup, "DomainRole": 0 if s.workgroup else 1,
                    "Manufacturer": "Intel Corporation",
                    "Model": "vPro Lab PC", "CurrentTimeZone": s.utc_offset_minutes}],
                "Win32_ComputerSystemProduct": lambda: [{
                    "UUID": s.uuid.upper(), "Name": "vPro Lab PC", "Vendor": "Intel Corporation",
                    "IdentifyingNumber": s.netbios}],
                "Win32_TimeZone": lambda: [{
                    "Bias": s.utc_offset_minutes, "Caption": self._tz_caption(), "StandardName": s.time_zone_name,
                    "DaylightName": s.time_zone_name, "StandardBias": 0, "DaylightBias": 0}],
                "Win32_UTCTime": lambda: [self._clock(s.now().astimezone(dt.timezone.utc))],
                "Win32_LocalTime": lambda: [self._clock(s.now())],
                "Win32_Service": lambda: self._services(),
                "Win32_SystemDriver": lambda: self._drivers(),
                "Win32_BaseService": lambda: self._services() + self._drivers(),
                "Win32_PnPEntity": lambda: [self._mei_device()],
                "Win32_PnPSignedDriver": lambda: [self._mei_signed_driver()] if s.mei_installed else [],
                "Win32_QuickFixEngineering": lambda: [{"HotFixID": kb, "Description": "Update", "CSName": s.netbios}
                                                      for kb in s.hotfixes],
                "CIM_DataFile": lambda: [{"Name": path.lower(), "FileName": path.rsplit("\\", 1)[-1].rsplit(".", 1)[0],
                                          "Extension": path.rsplit(".", 1)[-1].lower(), "Drive": path[:2].lower()}
                                         for path in s.files],
                "Win32_OptionalFeature": lambda: [{"Name": n, "Caption": n, "InstallState": v}
                                                  for n, v in s.optional_features.items()],
            },
            "root/default": {"StdRegProv": lambda: []},
        }
        if s.agent_installed:
            table["root/ccm"] = {
                "SMS_Client": lambda: [{"ClientVersion": s.agent_version, "ClientType": 1,
                                        "EnableAutoAssignment": False}],
                "SMS_Authority": lambda: [{"Name": f"SMS:{s.site_code}", "CurrentManagementPoint":
                                           s.management_point, "Index": 1, "Capabilities": ""}]
                if s.site_code else [],
            }
            table[POLICY_NAMESPACE.lower()] = {
                POLICY_CLASS: lambda: [self._policy()] if s.policy_downloaded else [],
                POLICY_AGENT_CLASS: lambda: [{"SiteSettingsKey": 1,
                                              "PolicyRequestAssignmentTimeout": POLICY_POLLING_MINUTES}]}
            table[SCHEDULER_NAMESPACE.lower()] = {SCHEDULER_HISTORY: lambda: [self._machine_policy_schedule()]}
        return table

    # -- data --
    def _os(self) -> dict[str, Any]:
        s: WindowsClientSpec = self.spec  # type: ignore[assignment]
        now = s.now()
        return {"Caption": s.os_caption, "Version": s.os_version, "CSDVersion": s.csd_version,
                "ServicePackMajorVersion": s.service_pack_major, "ServicePackMinorVersion": 0,
                "BuildNumber": s.os_version.rsplit(".", 1)[-1], "OSArchitecture": "32-bit",
                "ProductType": s.product_type, "WindowsDirectory": "C:\\WINDOWS",
                "SystemDirectory": "C:\\WINDOWS\\system32",
                "CSName": s.netbios, "CurrentTimeZone": s.utc_offset_minutes,
                "LocalDateTime": cim_datetime(now),
                "LastBootUpTime": cim_datetime(now - dt.timedelta(hours=8)),
                "Name": f"{s.os_caption}|C:\\WINDOWS|\\Device\\Harddisk0\\Partition1"}

    def _machine_policy_schedule(self) -> dict[str, Any]:
        """CCM_Scheduler_History of the Machine Policy Assignments Request: evaluated since the agent started, last
        triggered ``policy_requested_age_s`` ago."""
        s: WindowsClientSpec = self.spec  # type: ignore[assignment]
        now = s.now()
        first = now - dt.timedelta(seconds=max(s.history_age_s, s.policy_requested_age_s))
        return {"ScheduleID": MACHINE_POLICY_REQUEST, "UserSID": MACHINE_USER_SID, "FirstEvalTime": cim_datetime(first),
                "LastTriggerTime": cim_datetime(now - dt.timedelta(seconds=s.policy_requested_age_s)),
                "TriggerState": ""}

    def _tz_caption(self) -> str:
        s: WindowsClientSpec = self.spec  # type: ignore[assignment]
        m = s.utc_offset_minutes
        return f"(GMT{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}) {s.time_zone_name}"

    @staticmethod
    def _clock(t: dt.datetime) -> dict[str, Any]:
        return {"Year": t.year, "Month": t.month, "Day": t.day, "Hour": t.hour, "Minute": t.minute,
                "Second": t.second, "DayOfWeek": (t.weekday() + 1) % 7}

    def _services(self) -> list[dict[str, Any]]:
        s: WindowsClientSpec = self.spec  # type: ignore[assignment]
        out = [{"Name": "WinRM", "DisplayName": "Windows Remote Management (WS-Management)", "State": "Running",
                "StartMode": "Auto", "PathName": r"C:\WINDOWS\System32\svchost.exe -k WinRM"}]
        if s.agent_installed:
            out.append({"Name": "CcmExec", "DisplayName": "SMS Agent Host", "State": "Running", "StartMode": "Auto",
                        "PathName": r"C:\WINDOWS\system32\CCM\CcmExec.exe"})
        if s.mei_installed:
            out.append({"Name": LMS_SERVICE, "DisplayName": "Intel(R) Management and Security Application Local"
                        " Management Service", "State": "Running" if s.mei_started else "Stopped",
                        "StartMode": "Auto", "PathName": r"C:\Program Files\Intel\AMT\LMS.exe"})
        return [{"Started": svc["State"] == "Running", "ServiceType": "Own Process", **svc} for svc in out]

    def _drivers(self) -> list[dict[str, Any]]:
        s: WindowsClientSpec = self.spec  # type: ignore[assignment]
        if not s.mei_installed:
            return []
        state = "Running" if s.mei_started else "Stopped"
        return [{"Name": MEI_DRIVER_SERVICE, "DisplayName": MEI_DEVICE_NAME, "Description": MEI_DEVICE_NAME,
                 "State": state, "Started": s.mei_started, "StartMode": "Manual" if s.mei_started else "Disabled",
                 "ServiceType": "Kernel Driver",
                 "PathName": rf"C:\WINDOWS\system32\DRIVERS\{MEI_DRIVER_SERVICE}.sys"}]

    def _mei_device(self) -> dict[str, Any]:
        s: WindowsClientSpec = self.spec  # type: ignore[assignment]
        code = MEI_DEVICE_STATUS[s.mei_state]
        return {"Name": MEI_DEVICE_NAME if s.mei_installed else "PCI Simple Communications Controller",
                "DeviceID": MEI_HARDWARE_ID + r"&SUBSYS_00000000&REV_06\3&11583659&0&B0",
                "PNPDeviceID": MEI_HARDWARE_ID + r"&SUBSYS_00000000&REV_06\3&11583659&0&B0",
                "Manufacturer": "Intel" if s.mei_installed else None, "Service": MEI_DRIVER_SERVICE
                if s.mei_installed else None, "ConfigManagerErrorCode": code,
                "Status": "OK" if code == 0 else "Error"}

    def _mei_signed_driver(self) -> dict[str, Any]:
        s: WindowsClientSpec = self.spec  # type: ignore[assignment]
        return {"DeviceName": MEI_DEVICE_NAME, "DriverVersion": s.mei_version, "DriverProviderName": "Intel",
                "Manufacturer": "Intel", "DeviceClass": "SYSTEM", "IsSigned": True, "InfName": "oem7.inf",
                "HardWareID": MEI_HARDWARE_ID + "&SUBSYS_00000000&REV_06",
                "DeviceID": MEI_HARDWARE_ID + r"&SUBSYS_00000000&REV_06\3&11583659&0&B0",
                "DriverDate": cim_datetime(dt.datetime(2009, 11, 19, tzinfo=dt.timezone.utc))}

    def _policy(self) -> dict[str, Any]:
        s: WindowsClientSpec = self.spec  # type: ignore[assignment]
        return {"SiteSettingsKey": 1, POLICY_ENABLED_PROPERTY: s.policy_enabled, "SiteCode": s.site_code,
                "PolicySource": "SMS:" + s.site_code, "PolicyID": "{" + str(uuidlib.uuid5(
                    uuidlib.NAMESPACE_URL, f"{s.site_code}/oob")).upper() + "}", "PolicyVersion": "1.00"}

    # -- Provider: refuse and record every change --
    def put(self, req: WsmanRequest, properties: dict[str, Any]) -> ServerInstance:
        self.clients.record(self.spec.fqdn, "Put", req.resource_uri, {}, req.principal)  # type: ignore[attr-defined]
        raise Fault("Sender", "wsman:AccessDenied", "the lab client's WMI classes are read-only over WinRM")

    def invoke(self, req: WsmanRequest, method: str, params: dict[str, Any]) -> ServerInstance:
        name, _fn = self._table(req.resource_uri)
        if name == "StdRegProv" and method in ("GetStringValue", "GetDWORDValue", "GetBinaryValue", "EnumKey"):
            return ServerInstance(f"{method}_OUTPUT", req.resource_uri, self._registry(method, params))
        self.clients.record(self.spec.fqdn, method, req.resource_uri, {}, req.principal)  # type: ignore[attr-defined]
        raise Fault("Sender", "wsa:ActionNotSupported", f"{name} has no method {method} in the lab", "",
                    "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault")


# --- OOBMGMT.LOG --------------------------------------------------------------------------------------------------
def history(spec: WindowsClientSpec) -> list[tuple[float, str, dict[str, Any], int]]:
    """The OOBMGMT.LOG events of a client as ``(seconds after the first, event, fields, type)``: what its agent
    logged after receiving (or missing) the policy. No agent: no lines (the client has no CCM folder)."""
    if not spec.agent_installed:
        return []
    f = {"site_code": spec.site_code, "version": spec.agent_version, "mei_version": spec.mei_version,
         "fqdn": spec.fqdn, "uuid": spec.uuid, "site_server": spec.site_server}
    rows: list[tuple[float, str, dict[str, Any], int]] = [(0, "agent_started", f, 1)]
    if not spec.policy_downloaded or not spec.site_code:
        return rows + [(60, "policy_missing", f, 2)]
    rows.append((60, "policy_downloaded", f, 1))
    if not spec.policy_enabled:
        return rows + [(61, "policy_disabled", f, 1)]
    rows.append((61, "policy_enabled", f, 1))
    if spec.mei_state != "started":
        reason = "the driver is not installed" if not spec.mei_installed else "the driver is not started"
        return rows + [(62, "mei_missing", {**f, "reason": reason}, 3)]
    return rows + [(62, "mei_found", f, 1), (63, "provisioning_request_sent", f, 1)]


def write_oobmgmt_log(spec: WindowsClientSpec) -> Path | None:
    """Write the :func:`history` lines into ``<log_dir>/OOBMGMT.LOG`` unless it already has content."""
    if not spec.log_dir or not spec.agent_installed:
        return None
    writer = CmLogWriter(Path(spec.log_dir) / LOG_NAME, fmt="ccm", component=CCM_COMPONENT)
    if writer.path.exists() and writer.path.stat().st_size > 0:
        return writer.path
    start = spec.now() - dt.timedelta(seconds=spec.history_age_s)
    for offset, event, fields, kind in history(spec):
        writer.write(oobmgmt_message(event, **fields), when=start + dt.timedelta(seconds=offset),
                     thread=CCM_THREAD, type_=kind)
    return writer.path


# --- the server ---------------------------------------------------------------------------------------------------
class WindowsClients(BackgroundService):
    """WinRM for every spec on its own address, in one event loop; writes each client's OOBMGMT.LOG at start."""

    thread_name = "windows-clients"
    start_timeout = 30.0

    def __init__(self, specs: Iterable[WindowsClientSpec | Mapping[str, Any]], *,
                 calls_file: str | Path | None = None):
        self.specs = [s if isinstance(s, WindowsClientSpec) else WindowsClientSpec.from_dict(s) for s in specs]
        seen: set[str] = set()
        for s in self.specs:
            if s.address in seen:
                raise ValueError(f"two clients on {s.address}")
            seen.add(s.address)
        self.calls_file = Path(calls_file) if calls_file else None
        self.calls: list[dict[str, Any]] = []
        self.server: WinrmServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.start_seconds = 0.0

    def __repr__(self) -> str:
        return f"WindowsClients({len(self.specs)} clients)"

    def spec(self, fqdn_or_address: str) -> WindowsClientSpec | None:
        key = fqdn_or_address.lower().rstrip(".")
        return next((s for s in self.specs if key in (s.fqdn, s.address)), None)

    def winrm_url(self, fqdn_or_address: str, tls: bool = False) -> str:
        s = self.spec(fqdn_or_address)
        if s is None:
            raise KeyError(fqdn_or_address)
        return s.winrm_url(s.address, tls)

    def log_path(self, fqdn_or_address: str) -> Path | None:
        s = self.spec(fqdn_or_address)
        return Path(s.log_dir) / LOG_NAME if s and s.log_dir else None

    def record(self, fqdn: str, op: str, uri: str, params: Mapping[str, Any], principal: str = "") -> None:
        """Append a (refused) state-changing call to :attr:`calls` and the JSONL calls file."""
        call = {"ts": time.time(), "client": fqdn, "op": op, "uri": uri, "params": dict(params),
                "principal": principal, "refused": True}
        with self._lock:
            self.calls.append(call)
            if self.calls_file is not None:
                with self.calls_file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(call, default=str) + "\n")

    # -- life cycle --
    async def start_async(self) -> None:
        t0 = time.perf_counter()
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        for s in self.specs:
            write_oobmgmt_log(s)
        self.server = WinrmServer()
        for s in self.specs:
            self.server.add_host(s.address, s.fqdn, s, lambda s=s: WindowsClientProvider(s, self))
        try:
            await self.server.start()
        except BaseException:
            await self.stop_async()
            raise
        self.start_seconds = time.perf_counter() - t0

    async def stop_async(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None



def load_specs(path: str | Path) -> list[WindowsClientSpec]:
    """A JSON file holding a list of specs, or ``{"clients": [...]}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    items = data["clients"] if isinstance(data, dict) else data
    return [WindowsClientSpec.from_dict(d) for d in items]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_vpro.lab.windows_client",
                                     description="The lab's in-band clients: WinRM/WMI and OOBMGMT.LOG")
    parser.add_argument("--spec", required=True, help="JSON list of client specs (or {\"clients\": [...]})")
    parser.add_argument("--calls", help="append every refused state-changing call to this JSONL file")
    args = parser.parse_args(list(argv) if argv is not None else None)
    clients = WindowsClients(load_specs(args.spec), calls_file=args.calls)
    return serve_as_process(clients, lambda: (f"READY Windows clients: {len(clients.specs)} on WinRM in "
                                              f"{clients.start_seconds:.2f} s"))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["WindowsClientSpec", "WindowsClients", "WindowsClientProvider", "history", "write_oobmgmt_log",
           "oobmgmt_message", "load_specs", "main", "OOBMGMT_MESSAGES", "UNCONFIRMED", "POLICY_NAMESPACE",
           "POLICY_CLASS", "POLICY_ENABLED_PROPERTY", "MEI_DEVICE_NAME", "MEI_DRIVER_SERVICE", "LOG_NAME",
           "LOG_SUBDIR", "SP1_CLIENT_VERSION", "MOBILE_CLIENT_KEY", "CCM_COMPONENT"]
