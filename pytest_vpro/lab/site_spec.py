"""The site server simulator's names, documented and unconfirmed, and its specification (what the lab plants)."""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .winrm_host import WinrmHostSettings

log = logging.getLogger(__name__)

WMI_BASE = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
WQL_DIALECT = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
HELLO_PORT = 9971
LOG_NAME = "AMTOPMGR.LOG"
HKLM = 0x80000002
HIVE_NUMBERS = {"HKCR": 0x80000000, "HKCU": 0x80000001, "HKLM": 0x80000002, "HKU": 0x80000003, "HKCC": 0x80000005,
                "HKEY_CLASSES_ROOT": 0x80000000, "HKEY_CURRENT_USER": 0x80000001,
                "HKEY_LOCAL_MACHINE": 0x80000002, "HKEY_USERS": 0x80000003, "HKEY_CURRENT_CONFIG": 0x80000005}
THREADS = {"hello": 3196, "provision": 2712, "clear": 4020}  # SMS log thread ids of the simulated workers

# --- documented (docs/protocols.md, "Configuration Manager 2007") ------------------------------------------------
#: SMS_R_System.AMTStatus ("About the AMT Status and Out of Band Management", ConfigMgr 2007 SP1+); unknown is null.
AMT_STATUS = {"unknown": None, "not_supported": 0, "detected": 1, "not_provisioned": 2, "provisioned": 3}
#: The hardware inventory class of the agent's SMS_AMTObject on the site, and the ProvisionState values (0 factory
#: setup mode, 1 setup mode, 2 operational mode) the Intel vPro Expert Center post gives.
AMT_INVENTORY_CLASS = "SMS_G_System_AMT_AGENT"
#: The provisioning certificate lines real AMTOPMGR.LOG files show (Intel vPro Expert Center, 2009-12-15).
CERTIFICATE_EXPIRING = ("Error: The provisioning certificate with the thumbprint {thumbprint} will expire in {days} "
                        "day(s). Please ensure that this certificate is renewed. (CertID = 1)")
CERTIFICATE_UNLOADED = "Remove unused provision certificate with hash {thumbprint} from memory."
#: SMS_Collection's out of band methods and their opcodes (CM2007 SDK, "AMTOperateForMachines Method in Class
#: SMS_Collection", "AMTOperateForCollection Method in Class SMS_Collection"); 0 success, non-zero failure.
SMS_COLLECTION = "SMS_Collection"
OPERATE_FOR_MACHINES, OPERATE_FOR_COLLECTION = "AMTOperateForMachines", "AMTOperateForCollection"
OPCODES = {"WakeUp": 1, "Restart": 2, "Shutdown": 3, "DiscoveryBMC": 8, "ReinventoryBMC": 16,
           "PartialUnprovision": 32, "FullUnprovision": 64, "Provision": 128, "ReProvision": 256}
OPCODE_NAMES = {v: k for k, v in OPCODES.items()}
#: The RequestPowerStateChange value the lab's service point sends for each power opcode (SCCM's own choice is not
#: documented; these are MeshCommander's power on, reset and power off: docs/protocols.md).
POWER_REQUESTS = {OPCODES["WakeUp"]: 2, OPCODES["Restart"]: 10, OPCODES["Shutdown"]: 8}
#: The WMI error a provider gives a caller without the right ("WMI Error Constants": WBEM_E_ACCESS_DENIED).
WBEM_E_ACCESS_DENIED = 0x80041003
#: The right an operation on a management controller needs (the console's "Manage management controllers").
MANAGE_RIGHT = "Manage management controllers"
#: Where a 32-bit program's HKLM\SOFTWARE keys are on 64-bit Windows (WOW64 registry redirection).
WOW64_SOFTWARE = r"SOFTWARE\Wow6432Node"

# --- names no public source confirms: ALL (unconfirmed), kept in this one table --------------------------------
#: SMS_SCI_Component SMS_AMT_OPERATION_MANAGER ``Props`` (setting -> PropertyName, field) and ``PropLists``.
OOB_PROPS: dict[str, tuple[str, str]] = {
    "webui_enabled": ("Enable Web UI", "Value"),                                  # 0/1
    "provisioning_account": ("AMT Provisioning Account", "Value1"),
    "amt_container": ("AMT AD Container", "Value1"),                               # DN of the OU/CN
    "certificate_template": ("AMT Web Server Certificate Template", "Value1"),
    "issuing_ca": ("AMT Issuing CA", "Value1"),
    "provisioning_certificate_thumbprint": ("AMT Provisioning Certificate Thumbprint", "Value1"),
}
OOB_PROP_LISTS: dict[str, str] = {"realms_enabled": "AMT Enabled Realms"}  # setting -> PropertyListName
OOB_IMPORT_AGENT = "Out of Band Management Controller Import"  # SMS_R_System.AgentName of imported computers
WINRM_STACK_KEY = r"SOFTWARE\Microsoft\Windows\CurrentVersion\WSMAN"  # value "StackVersion"
#: SMS_UserClassPermissions.ClassPermissions / SMS_UserInstancePermissions.InstancePermissions bits by right name.
#: READ (bit 0) and MODIFYCOLLECTIONSETTING (bit 21) are in the Configuration Manager 2007 SDK; the two out of band
#: rights SP1 added are not in the SDK pages found: their bits are guesses (unconfirmed). One table: change here.
SMS_PERMISSIONS: dict[str, int] = {
    "Read": 1 << 0, "Modify": 1 << 1, "Delete": 1 << 2, "Administer": 1 << 8, "Read Resource": 1 << 12,
    "Modify Collection Setting": 1 << 21,
    "View management controllers": 1 << 24,    # (unconfirmed)
    "Manage management controllers": 1 << 25,  # (unconfirmed)
}
SMS_OBJECT_COLLECTION = 1  # SMS_UserClassPermissions.ObjectKey for collections (SDK: 1 Collection)
#: SP2-only out of band settings in SMS_SCI_Component SMS_AMT_OPERATION_MANAGER Props (setting -> PropertyName;
#: unconfirmed, the checks read them as expected.sp2_feature_properties, whose defaults these are);
#: a non-zero Value means the feature is in use.
OOB_SP2_PROPS: dict[str, str] = {
    "wired_8021x": "AMT 802.1X Wired Profile Enabled", "wireless": "AMT Wireless Profiles Enabled",
    "auditing": "Enable Auditing", "data_storage": "Enable Data Storage",
    "power_state": "AMT Power State",  # 0: Always on (the default, SP1 behaviour)
    "provisioning_schedule": "Enable Provisioning Schedule",
}
NETWORK_DISCOVERY = ("SMS_NETWORK_DISCOVERY", "Enable Network Discovery")  # component, Props name (Value 0/1)
#: Where Windows keeps the assigned IPsec policy: the domain (Group Policy) one, and the local one.
IPSEC_GPO_KEY = r"SOFTWARE\Policies\Microsoft\Windows\IPSec\GPTIPSECPolicy"  # DSIPSECPolicyPath, ...Name
IPSEC_LOCAL_KEY = r"SOFTWARE\Policies\Microsoft\Windows\IPSec\Policy\Local"  # ActivePolicy
UNCONFIRMED = {
    "SMS_SCI_Component Props names": OOB_PROPS, "SMS_SCI_Component PropLists names": OOB_PROP_LISTS,
    "SMS_R_System.AgentName for OOB import": OOB_IMPORT_AGENT,
    "the CIM power states the service point requests for WakeUp, Restart, Shutdown": POWER_REQUESTS,
    "WinRM version registry value": WINRM_STACK_KEY + r"\StackVersion",
    "SMS_SCI_Component ItemName": "<COMPONENT>|<SERVER FQDN upper case>",
    "SMS permission bits of the out of band rights": SMS_PERMISSIONS,
    "SMS_SCI_Component SP2-only out of band Props names": OOB_SP2_PROPS,
    "network discovery component and its enable property": NETWORK_DISCOVERY,
    "IPsec policy registry values": f"{IPSEC_GPO_KEY}\\DSIPSECPolicyPath, {IPSEC_LOCAL_KEY}\\ActivePolicy",
    "Server header": "Microsoft-HTTPAPI/1.0 (Windows Server 2003 HTTP.sys)",
    "days before expiry when AMTOPMGR.LOG starts warning of the provisioning certificate": "CERT_WARNING_DAYS",
    "SMS_G_System_AMT_AGENT.ResourceID": "the key every SMS_G_System_* inventory class has",
}
CERT_WARNING_DAYS = 30  # the post shows the warning 4 days before and "daily"; when it starts is not known

#: Appendix A of the guide (seed 000), with the Windows Server 2003 service pack that already includes a fix.
APPENDIX_A: dict[str, str | None] = {
    "KB899900": "Service Pack 2", "KB908209": "Service Pack 2", "KB942841": None, "KB960804": None,
    "KB954718": None, "KB955126": None, "KB955114": None, "KB955355": None, "KB956337": None, "KB957183": None,
    "KB957469": None, "KB959040": None, "KB936059": None, "KB932303": None, "KB940848": None,
}
KB908209_KEY = (r"SOFTWARE\Microsoft\Internet Explorer\MAIN\FeatureControl"
                r"\FEATURE_INCLUDE_PORT_IN_SPN_KB908209")
DOTNET20_KEY = r"SOFTWARE\Microsoft\NET Framework Setup\NDP\v2.0.50727"  # DWORD Install = 1


def permission_bits(rights: Iterable[str]) -> int:
    """The SMS permission bit field of the named rights (:data:`SMS_PERMISSIONS`)."""
    return sum(SMS_PERMISSIONS[r] for r in set(rights))


def applicable_hotfixes(csd_version: str) -> list[str]:
    """Appendix A hot fixes a server lists in Win32_QuickFixEngineering: those its service pack lacks."""
    return [kb for kb, included in APPENDIX_A.items() if included is None or included != csd_version]


# --- the spec --------------------------------------------------------------------------------------------------
@dataclass
class ClientRecord:
    """One computer the site knows (SMS_R_System), and its provisioning history."""

    fqdn: str
    uuid: str
    address: str = ""
    resource_id: int = 0
    client: int = 0                      # 1: the Configuration Manager client is installed (in-band)
    client_version: str = ""
    amt_full_version: str = "6.2.10"
    imported_oob: bool = True            # imported with the Import Out of Band Management Controller wizard
    provisioned: bool = False
    provisioning_mode: str = "PKI"       # PKI or PSK
    provisioned_at: str = ""             # ISO time of the history lines; default a day before start
    #: SMS_R_System.AMTStatus, or "auto" (:meth:`status`)
    amt_status: int | None | str = "auto"
    ztc_requested: bool = True           # in-band and not provisioned: its agent's ZTC request reached the site
    hello_heard: bool = False            # a hello of this imported client reached the service point

    def __post_init__(self) -> None:
        self.fqdn = self.fqdn.lower()
        self.uuid = str(uuidlib.UUID(str(self.uuid)))

    def status(self) -> int | None:
        """SMS_R_System.AMTStatus now: as set, or by default 3 once provisioned, 2 (not provisioned, can be) once
        the site knows its AMT (a hello heard, an in-band ZTC request), else null: unknown until then."""
        if self.amt_status != "auto":
            return self.amt_status  # type: ignore[return-value]
        if self.provisioned:
            return AMT_STATUS["provisioned"]
        known = self.hello_heard or (self.client and self.ztc_requested)
        return AMT_STATUS["not_provisioned"] if known else AMT_STATUS["unknown"]

    @property
    def netbios(self) -> str:
        return self.fqdn.split(".", 1)[0].upper()[:15]


def _default_registry() -> dict[str, dict[str, Any]]:
    return {
        "HKLM\\" + KB908209_KEY: {"iexplore.exe": 1},
        "HKLM\\" + DOTNET20_KEY: {"Install": 1, "SP": 2},  # .NET Framework 2.0 SP2 (SCCM 2007 needs 2.0)
    }


@dataclass
class SiteServerSpec(WinrmHostSettings):
    """Everything that makes the simulated site server; JSON-loadable with :meth:`load`. Its WinRM listeners
    (ports, TLS files, Basic users, AllowUnencrypted, keytab) are the :class:`WinrmHostSettings` it inherits."""

    address: str
    fqdn: str = "sccm01.vprolab.test"
    site_code: str = "LAB"
    site_name: str = "vPro Lab Primary Site"
    site_version: str = "4.00.6221.1000"       # SP1; SP2 is 4.00.6487.2000
    build_number: int = 0                      # SMS_Site.BuildNumber; 0: the third field of site_version
    service_pack: str = "SP1"
    install_dir: str = r"C:\Program Files\Microsoft Configuration Manager"
    os_caption: str = "Microsoft(R) Windows(R) Server 2003, Enterprise Edition"
    os_version: str = "5.2.3790"
    csd_version: str = "Service Pack 2"
    service_pack_major: int = 2
    os_architecture: str = "32-bit"
    total_physical_memory: int = 4 * 1024 ** 3
    hotfixes: list[str] | None = None           # default: applicable_hotfixes(csd_version)
    products: list[dict[str, str]] = field(default_factory=lambda: [
        {"Name": "MSXML 6.0 Parser", "Version": "6.10.1129.0", "Vendor": "Microsoft Corporation"}])
    wsman_translator: bool = False              # adds "Intel(R) AMT WS-MAN Translator" product and service
    optional_features: dict[str, int] = field(default_factory=lambda: {"TelnetClient": 1})
    server_features: list[str] = field(default_factory=list)
    services: list[dict[str, str]] = field(default_factory=lambda: [
        {"Name": "WinRM", "DisplayName": "Windows Remote Management (WS-Management)", "State": "Running",
         "StartMode": "Auto", "PathName": r"C:\WINDOWS\System32\svchost.exe -k WinRM"},
        {"Name": "SMS_EXECUTIVE", "DisplayName": "SMS Executive", "State": "Running", "StartMode": "Auto",
         "PathName": r"C:\Program Files\Microsoft Configuration Manager\bin\i386\smsexec.exe"},
        {"Name": "SMS_SITE_COMPONENT_MANAGER", "DisplayName": "SMS Site Component Manager", "State": "Running",
         "StartMode": "Auto", "PathName": r"C:\Program Files\Microsoft Configuration Manager\bin\i386\sitecomp.exe"},
    ])
    roles: list[str] = field(default_factory=lambda: [
        "SMS Site Server", "SMS Provider", "SMS Out of Band Service Point", "SMS Reporting Point",
        "SMS Management Point"])
    oob: dict[str, Any] = field(default_factory=lambda: {
        "webui_enabled": 1, "realms_enabled": [2, 3, 4, 5, 6, 7, 12, 13],
        "provisioning_account": "VPROLAB\\amtprov", "amt_container": "OU=AMT,DC=vprolab,DC=test",
        "certificate_template": "IntelAMTWebServer", "issuing_ca": "ca01.vprolab.test\\vPro Lab Issuing CA",
        "provisioning_certificate_thumbprint": ""})
    clients: list[ClientRecord] = field(default_factory=list)
    #: {CollectionID, Name, members, amt_auto_provision, and ISO times: settings_modified
    #: (SMS_CollectionSettings.LastModificationTime), member_changed (SMS_Collection.LastMemberChangeTime), refreshed
    #: (LastRefreshTime); by default before the site's history began, refreshed an hour ago: collection_time}
    collections: list[dict[str, Any]] = field(default_factory=list)
    #: SMS_UserClassPermissions (no InstanceKey) and SMS_UserInstancePermissions (InstanceKey: a CollectionID):
    #: {UserName, rights: [names of SMS_PERMISSIONS], ObjectKey (default 1, collections), InstanceKey}.
    #: Default: the domain's Administrator holds every right on the collection class.
    permissions: list[dict[str, Any]] | None = None
    #: group membership the SMS permissions are judged by: "DOMAIN\\user" -> ["DOMAIN\\group", ...]
    memberships: dict[str, list[str]] = field(default_factory=dict)
    #: the out of band service point's component runs (stopped: operations are queued and never performed)
    oob_service_point_running: bool = True
    network_discovery: bool = False             # SMS_NETWORK_DISCOVERY enabled
    registry: dict[str, dict[str, Any]] = field(default_factory=_default_registry)
    dns_servers: list[str] = field(default_factory=list)  # the network adapter's DNS servers, in order
    wins_servers: list[str] = field(default_factory=list)  # its WINS servers (primary, secondary)
    winrm_version: str = "1.1"
    utc_offset_minutes: int = 0                 # the server's time zone, minutes east of UTC (Win32_TimeZone.Bias)
    time_zone_name: str = "GMT Standard Time"   # Win32_TimeZone.StandardName
    clock_offset_s: float = 0.0                 # how far the server's clock is ahead of the real time
    hello_port: int = HELLO_PORT
    log_dir: str = ""
    calls_file: str = ""
    callbacks: dict[str, str] = field(default_factory=dict)  # process mode: hook name -> "module:function"
    history_age_s: float = 86400.0
    #: how many of the provisioned clients, the earliest, were provisioned before AMTOPMGR.LOG last rolled over:
    #: their lines are only in the history file, AMTOPMGR.lo_ (a real site's log holds about 1 MB)
    history_rolled_over: int = 1
    log_max_bytes: int = 0                      # AMTOPMGR.LOG rolls over to AMTOPMGR.lo_ past this size (0: never)
    provisioning_certificate_cn: str = ""       # the out of band component's certificate, logged as accepted
    provisioning_certificate_not_after: str = ""  # ISO time; near or past it, the log's real warning lines

    def __post_init__(self) -> None:
        self.fqdn = self.fqdn.lower()
        self.site_code = self.site_code.upper()
        self.build_number = self.build_number or int(self.site_version.split(".")[2])
        if self.hotfixes is None:
            self.hotfixes = applicable_hotfixes(self.csd_version)
        self.clients = [c if isinstance(c, ClientRecord) else ClientRecord(**c) for c in self.clients]
        for i, c in enumerate(self.clients):
            c.resource_id = c.resource_id or 16777220 + i
        if not self.collections:
            self.collections = [
                {"CollectionID": "SMS00001", "Name": "All Systems", "members": [c.fqdn for c in self.clients]},
                {"CollectionID": f"{self.site_code}00001", "Name": "vPro Out of Band",
                 "members": [c.fqdn for c in self.clients if c.imported_oob], "amt_auto_provision": True},
            ]
        if self.permissions is None:
            domain = self.fqdn.split(".")[1].upper() if "." in self.fqdn else "WORKGROUP"
            self.permissions = [{"UserName": f"{domain}\\Administrator",
                                 "rights": list(SMS_PERMISSIONS)}]
        self.registry.setdefault("HKLM\\" + self.sms_key("Setup"), {}).setdefault("Full Version", self.site_version)
        self.registry.setdefault("HKLM\\" + WINRM_STACK_KEY, {}).setdefault("StackVersion", self.winrm_version)

    @property
    def is_64_bit(self) -> bool:
        return "64" in self.os_architecture

    def sms_key(self, subkey: str) -> str:
        """Configuration Manager's key ``SOFTWARE\\Microsoft\\SMS\\<subkey>`` as this server holds it: a 32-bit
        program's, so under ``SOFTWARE\\Wow6432Node`` on 64-bit Windows (docs/protocols.md, "Registry views")."""
        return (WOW64_SOFTWARE if self.is_64_bit else "SOFTWARE") + "\\Microsoft\\SMS\\" + subkey

    def collection_time(self, col: Mapping[str, Any], key: str) -> str:
        """A collection's time ``key`` (settings_modified, member_changed, refreshed) as ISO text: the spec's, else
        a week and a day before the site's history began (the administrator set it up before), refreshed an hour ago."""
        now = dt.datetime.now(dt.timezone.utc)
        began = now - dt.timedelta(seconds=self.history_age_s)
        default = {"settings_modified": began - dt.timedelta(days=7), "member_changed": began - dt.timedelta(days=1),
                   "refreshed": now - dt.timedelta(hours=1)}[key]
        return str(col.get(key) or default.isoformat())

    def client_by_resource(self, resource_id: Any) -> "ClientRecord | None":
        try:
            rid = int(str(resource_id).strip())
        except ValueError:
            return None
        return next((c for c in self.clients if c.resource_id == rid), None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SiteServerSpec":
        return cls(**dict(data))

    @classmethod
    def load(cls, path: str | Path) -> "SiteServerSpec":
        """Read a JSON (or YAML, by extension) spec file."""
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith((".yaml", ".yml")):
            return cls.from_dict(yaml.safe_load(text))
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def client(self, fqdn: str) -> ClientRecord | None:
        return next((c for c in self.clients if c.fqdn == fqdn.lower().rstrip(".")), None)

    def client_by_uuid(self, device_uuid: uuidlib.UUID | str) -> ClientRecord | None:
        u = str(uuidlib.UUID(str(device_uuid)))
        return next((c for c in self.clients if c.uuid == u), None)
