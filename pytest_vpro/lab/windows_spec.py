"""The lab's in-band clients' names, documented and unconfirmed (the one :data:`UNCONFIRMED` table, the
OOBMGMT.LOG texts), and their specification: plain data, no aiohttp, so the lab's faults can change a client
without the [lab] extra. The server that serves them is :mod:`pytest_vpro.lab.windows_client`."""
from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .site_spec import WINRM_STACK_KEY
from .winrm_host import WinrmHostSettings

LOG_NAME = "OOBMGMT.LOG"
LOG_SUBDIR = r"WINDOWS\system32\CCM\Logs"  # under C:\ on Windows XP (the CCM client's log folder)
SP1_CLIENT_VERSION = "4.00.6221.1000"       # the guide: "SCCM agent from Microsoft SCCM SP1 is 4.0.6221.1000"
MOBILE_CLIENT_KEY = r"SOFTWARE\Microsoft\SMS\Mobile Client"  # values AssignedSiteCode, ProductVersion

# --- names no public source confirms: ALL (unconfirmed), kept in this one table --------------------------------
MEI_DEVICE_NAME = "Intel(R) Management Engine Interface"
MEI_DRIVER_SERVICE = "HECI"           # Win32_SystemDriver.Name of the MEI (formerly HECI) kernel driver
MEI_DEFAULT_VERSION = "6.2.0.1046"    # a MEI driver of the AMT 6.x generation
MEI_HARDWARE_ID = r"PCI\VEN_8086&DEV_3B64"  # the MEI PCI function of a 5 series (AMT 6) chipset
LMS_SERVICE = "LMS"                   # Intel Management and Security Application Local Management Service
TABLET_PC_KEY = r"SYSTEM\WPA\TabletPC"  # DWORD Installed = 1 on Windows XP Tablet PC Edition
#: Win32_PnPEntity.ConfigManagerErrorCode the device shows for each driver state (codes are documented; which
#: one a real "installed but not started" MEI shows is the guess).
MEI_DEVICE_STATUS = {"started": 0, "not_started": 22, "not_installed": 28}
POLICY_NAMESPACE = "root/ccm/Policy/Machine/ActualConfig"
POLICY_CLASS = "CCM_OutOfBandManagementSettings"   # the automatic (in-band) provisioning policy
POLICY_ENABLED_PROPERTY = "AutoProvision"
#: The agent's machine policy schedule (CM2007 SDK: CCM_Scheduler_History, cc144694; "Machine Policy Assignments
#: Request", TriggerSchedule cc146704) and its polling interval (CCM_PolicyAgent_Configuration, cc146098).
SCHEDULER_NAMESPACE, SCHEDULER_HISTORY = "root/ccm/Scheduler", "CCM_Scheduler_History"
MACHINE_POLICY_REQUEST = "{00000000-0000-0000-0000-000000000021}"
MACHINE_USER_SID = "Machine"          # CCM_Scheduler_History.UserSID of machine schedules
POLICY_AGENT_CLASS = "CCM_PolicyAgent_Configuration"
POLICY_POLLING_MINUTES = 60           # PolicyRequestAssignmentTimeout: 60 is current branch's documented default
CCM_COMPONENT = "OobMgmt"             # the ``component`` attribute of OOBMGMT.LOG lines
CCM_THREAD = 2644                     # thread id of the simulated CCM out of band agent
UNCONFIRMED: dict[str, Any] = {
    "MEI device name": MEI_DEVICE_NAME, "MEI driver service (Win32_SystemDriver)": MEI_DRIVER_SERVICE,
    "MEI driver version": MEI_DEFAULT_VERSION, "MEI hardware id": MEI_HARDWARE_ID,
    "LMS service name": LMS_SERVICE, "MEI ConfigManagerErrorCode per state": MEI_DEVICE_STATUS,
    "Tablet PC Edition marker": TABLET_PC_KEY + r"\Installed",
    "policy namespace": POLICY_NAMESPACE, "policy class": POLICY_CLASS,
    "policy enabled property": POLICY_ENABLED_PROPERTY, "OOBMGMT.LOG component": CCM_COMPONENT,
    "OOBMGMT.LOG texts": "OOBMGMT_MESSAGES",
    "Win32_TimeZone.Bias sign": "minutes east of UTC (negative west), as Win32_OperatingSystem.CurrentTimeZone",
    "SMS_Client / SMS_Authority properties": "ClientVersion, ClientType; Name, CurrentManagementPoint, Index",
    "Server header": "Microsoft-HTTPAPI/1.0",
    "CCM_Scheduler_History.UserSID of machine schedules": MACHINE_USER_SID,
    "PolicyRequestAssignmentTimeout default (CM2007)": POLICY_POLLING_MINUTES,
}

#: event -> OOBMGMT.LOG text (str.format fields: site_code, version, mei_version, fqdn, uuid, site_server, reason).
#: ALL (unconfirmed): no public source gives the CCM out of band agent's wording.
OOBMGMT_MESSAGES: dict[str, str] = {
    "agent_started": "Out of band management agent started; Configuration Manager client version {version}",
    "policy_downloaded": "AMT auto provisioning policy downloaded from site {site_code}",
    "policy_enabled": "AMT auto provisioning is enabled in policy",
    "policy_disabled": "AMT auto provisioning is disabled in policy; no provisioning request will be sent",
    "policy_missing": "No AMT auto provisioning policy received from site {site_code}",
    "mei_found": "Intel(R) Management Engine Interface driver found, version {mei_version}",
    "mei_missing": "Cannot connect to the Intel(R) Management Engine Interface driver: {reason}",
    "provisioning_request_sent": "Sent AMT provisioning request (in-band) for {fqdn}, AMT device UUID {uuid},"
                                 " to site server {site_server}",
}


def oobmgmt_message(event: str, **fields: Any) -> str:
    """The text of ``event`` with ``fields`` filled in; missing fields become ``unknown``."""

    class _Default(dict):
        def __missing__(self, key: str) -> str:
            return "unknown"

    return OOBMGMT_MESSAGES[event].format_map(_Default({k: v for k, v in fields.items() if v not in (None, "")}))


# --- the spec --------------------------------------------------------------------------------------------------
@dataclass
class WindowsClientSpec(WinrmHostSettings):
    """One in-band client's operating system; JSON-loadable (:meth:`from_dict`). Its WinRM listeners are the
    :class:`WinrmHostSettings` it inherits."""

    fqdn: str
    address: str
    uuid: str = ""                       # SMBIOS UUID = the AMT device UUID; default derived from the fqdn
    # Windows
    os_caption: str = "Microsoft Windows XP Professional"
    os_version: str = "5.1.2600"
    csd_version: str = "Service Pack 3"
    service_pack_major: int = 3
    product_type: int = 1                # Win32_OperatingSystem.ProductType: 1 workstation, 3 server
    tablet_pc: bool = False              # Windows XP Tablet PC Edition (registry TABLET_PC_KEY Installed = 1)
    workgroup: str = ""                  # not joined: a member of this workgroup instead of the domain
    hotfixes: list[str] = field(default_factory=list)         # Win32_QuickFixEngineering HotFixIDs
    files: list[str] = field(default_factory=list)            # CIM_DataFile: full paths that exist
    optional_features: dict[str, int] = field(default_factory=dict)  # Win32_OptionalFeature Name -> InstallState
    winrm_version: str = "1.1"           # registry WINRM_STACK_KEY StackVersion (1.1: XP/2003 with KB936059)
    utc_offset_minutes: int = 0          # the client's time zone, minutes east of UTC (UTC-7: -420)
    time_zone_name: str = "GMT Standard Time"
    clock_offset_s: float = 0.0          # how far the client's clock is ahead of the real time
    # Intel MEI (formerly HECI) driver
    mei_installed: bool = True
    mei_started: bool = True
    mei_version: str = MEI_DEFAULT_VERSION
    # Configuration Manager client (agent)
    agent_installed: bool = True
    agent_version: str = SP1_CLIENT_VERSION
    site_code: str = "LAB"               # assigned site; "" = not assigned
    management_point: str = "sccm01.vprolab.test"
    policy_downloaded: bool = True       # the automatic provisioning policy reached the client
    policy_enabled: bool = True
    policy_requested_age_s: float = 1800.0   # the agent last requested machine policy this long ago
    site_server: str = "sccm01.vprolab.test"  # where the provisioning request goes (log text)
    registry: dict[str, dict[str, Any]] = field(default_factory=dict)
    # OOBMGMT.LOG
    log_dir: str = ""                    # the client's C:\WINDOWS\system32\CCM\Logs; "" writes no log
    history_age_s: float = 86400.0

    def __post_init__(self) -> None:
        self.registry.setdefault("HKLM\\" + WINRM_STACK_KEY, {}).setdefault("StackVersion", self.winrm_version)
        if self.tablet_pc:
            self.registry.setdefault("HKLM\\" + TABLET_PC_KEY, {}).setdefault("Installed", 1)
        self.fqdn = self.fqdn.lower().rstrip(".")
        self.uuid = str(uuidlib.UUID(self.uuid)) if self.uuid else str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS,
                                                                                       self.fqdn))
        self.site_code = self.site_code.upper()
        if self.agent_installed:
            mobile = self.registry.setdefault("HKLM\\" + MOBILE_CLIENT_KEY, {})
            mobile.setdefault("ProductVersion", self.agent_version)
            if self.site_code:
                mobile.setdefault("AssignedSiteCode", self.site_code)
        if self.mei_installed:
            self.registry.setdefault(rf"HKLM\SYSTEM\CurrentControlSet\Services\{MEI_DRIVER_SERVICE}", {
                "Start": 3, "Type": 1, "ImagePath": rf"system32\DRIVERS\{MEI_DRIVER_SERVICE}.sys",
                "DisplayName": MEI_DEVICE_NAME})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "WindowsClientSpec":
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def netbios(self) -> str:
        return self.fqdn.split(".", 1)[0].upper()[:15]

    @property
    def domain(self) -> str:
        return self.fqdn.split(".", 1)[1] if "." in self.fqdn else ""

    @property
    def tz(self) -> dt.timezone:
        return dt.timezone(dt.timedelta(minutes=self.utc_offset_minutes))

    def now(self) -> dt.datetime:
        """The client's clock: real time plus ``clock_offset_s``, in the client's time zone."""
        return dt.datetime.now(self.tz) + dt.timedelta(seconds=self.clock_offset_s)

    @property
    def mei_state(self) -> str:
        return "not_installed" if not self.mei_installed else "started" if self.mei_started else "not_started"
