"""A simulated Configuration Manager 2007 site server: WinRM/WMI, the out of band service point, AMTOPMGR.LOG.

What it serves (docs/lab.md; the guide's Stages 1-3 and 7):

* **WinRM** on ``address:5985`` (http) and ``address:5986`` (https, with the spec's certificate), path ``/wsman``,
  on the WS-MAN core of :mod:`pytest_vpro.lab.wsman_server`: the WMI classes the checks read, in
  ``root/cimv2``, ``root/sms``, ``root/sms/site_<CODE>`` and ``root/default`` (``StdRegProv``), Enumerate with the
  WQL filter dialect (a small WQL subset: ``SELECT props|* FROM Class [WHERE ...]`` with ``= <> != < > <= >=``,
  ``LIKE``, ``IS [NOT] NULL``, ``AND``/``OR``/``NOT``, parentheses), Get by key properties, and the read-only
  ``StdRegProv`` methods. Authentication as WinRM offers it: ``Negotiate`` (Kerberos, SPN ``HTTP/<fqdn>``, the
  core's :class:`NegotiateAcceptor` over the spec's keytab) and HTTP ``Basic`` over https (over http only with
  ``allow_unencrypted``, WinRM's ``AllowUnencrypted``). The core has no Basic hook, so :class:`WinrmServer`
  subclasses :class:`WsmanServer` for it, and to serialize WMI embedded objects (``SMS_SCI_Component.Props``).
* **Out of band service point** on ``address:9971``: decodes each hello (:mod:`pytest_vpro.probes.hello`) and
  appends the "hello received" line to ``<log_dir>/AMTOPMGR.LOG`` (SMS format, :mod:`pytest_vpro.lab.cmlog`).
  The lab sets ``log_dir`` to the ``Logs`` folder of the directory Samba shares as ``SMS_<CODE>``.
* **History**: at start, on an empty log, the lines a real log would already hold for provisioned clients
  (hello or ZTC request, provisioning started, first and second stage completed), stamped in the past; the
  ``history_rolled_over`` earliest clients were provisioned before the log last rolled over, so their lines are
  only in ``AMTOPMGR.lo_`` (a real site's log keeps one history file). Past ``log_max_bytes`` the log rolls over
  as it grows. A provisioning certificate near or past its end gets the lines real logs show for it.
* **SMS_R_System.AMTStatus** as the site sets it: null (unknown) until it knows a client's AMT (a hello from the
  imported client, an in-band ZTC request), then 2 (not provisioned), 3 once provisioned; the in-band agents'
  hardware inventory in ``SMS_G_System_AMT_AGENT`` (ProvisionState 0 or 2).
* **Out of band operations** through the SMS Provider's documented methods (docs/protocols.md, "Out of band
  operations"): ``SMS_Collection.AMTOperateForMachines(ResourceIDs[], Opcode)`` (a class method) and
  ``AMTOperateForCollection(Opcode)`` (on a collection instance). The provider checks that the caller holds
  "Manage management controllers" on the class or on a collection holding each resource (else the WMI access
  denied error, ``WBEM_E_ACCESS_DENIED``), queues the operation and returns 0; the out of band service point's
  worker then performs it against the devices through the pluggable hooks: WakeUp/Restart/Shutdown as a
  ``RequestPowerStateChange`` on the device, DiscoveryBMC as a read of its ``ProvisioningState`` (which sets
  ``AMTStatus``), Partial/FullUnprovision in the order the real site server works (WS-MAN ``Unprovision`` on the
  device, revoke the web server certificate and publish the CRL, delete the AD object), with the
  un-provisioning lines in the log. Every call is appended to the JSONL ``calls`` file; reads are never
  recorded, so an empty calls file proves a read-only run. With the service point stopped
  (``oob_service_point_running`` false) calls are accepted and queued and nothing happens, as on a real site.
* **Registry** through ``StdRegProv``; on a 64-bit server (``os_architecture``) Configuration Manager's keys
  are where a 32-bit program's writes land, ``HKLM\\SOFTWARE\\Wow6432Node\\Microsoft\\SMS\\...``.

Lab simplifications: the hello does not start a provisioning run (provisioned clients are data), nor does an
un-provisioned client in an auto-provisioning collection get provisioned again; WinRM accepts plaintext SOAP
after Negotiate on http (real WinRM wraps it in SPNEGO message encryption); group membership for the SMS
permissions comes from the spec (``memberships``), not from the caller's token; a stopped service point still
logs hellos (only the operations queue stops); ``Identify`` is not served (the core needs an Action header).

Every name no public source confirms is in :data:`UNCONFIRMED` (and the texts in ``lab/cmlog.py``).

Run as a process: ``python -m pytest_vpro.lab.site_server --spec site.json [--calls calls.jsonl]``; it prints one
``READY ...`` line and stops cleanly on SIGTERM/SIGINT. In-process: ``SiteServerSimulator(spec).start()``/``stop()``.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import datetime as dt
import hmac
import importlib
import json
import logging
import queue
import re
import sys
import threading
import time
import uuid as uuidlib
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from aiohttp import web

from pytest_vpro.lab.cmlog import CmLogWriter
from pytest_vpro.lab.service import BackgroundService, serve_as_process
from pytest_vpro.lab.wsman_server import (
    Denied,
    Fault,
    NegotiateAcceptor,
    ServerInstance,
    WsmanEndpoint,
    WsmanRequest,
    WsmanServer,
    destination_unreachable,
    invalid_selectors,
    server_ssl_context,
)
from pytest_vpro.probes.hello import MAX_HELLO_BYTES, Hello, MalformedHello, hello_or_error
from pytest_vpro.probes.wsman import local_name

log = logging.getLogger(__name__)

WMI_BASE = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
WQL_DIALECT = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
HTTP_PORT, HTTPS_PORT, HELLO_PORT = 5985, 5986, 9971
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
#: SP2-only out of band settings in SMS_SCI_Component SMS_AMT_OPERATION_MANAGER Props (setting -> PropertyName);
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
    "SMS_CollectionSettings.AMTAutoProvisionEnabled": "property name",
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
class SiteServerSpec:
    """Everything that makes the simulated site server; JSON-loadable with :meth:`load`."""

    address: str
    fqdn: str = "sccm01.vprolab.test"
    site_code: str = "LAB"
    site_name: str = "vPro Lab Primary Site"
    site_version: str = "4.00.6221.1000"       # SP1; SP2 is 4.00.6487.2000
    build_number: int = 6221
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
    collections: list[dict[str, Any]] = field(default_factory=list)  # {CollectionID, Name, members, amt_auto_provision}
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
    http_port: int = HTTP_PORT
    https_port: int = HTTPS_PORT
    tls_cert: str = ""
    tls_key: str = ""
    basic_users: dict[str, str] = field(default_factory=dict, repr=False)
    allow_unencrypted: bool = False             # WinRM AllowUnencrypted: Basic over http
    kerberos_keytab: str = ""
    kerberos_realm: str = ""
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
            import yaml  # noqa: PLC0415 - only for a YAML spec file
            return cls.from_dict(yaml.safe_load(text))
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def client(self, fqdn: str) -> ClientRecord | None:
        return next((c for c in self.clients if c.fqdn == fqdn.lower().rstrip(".")), None)

    def client_by_uuid(self, device_uuid: uuidlib.UUID | str) -> ClientRecord | None:
        u = str(uuidlib.UUID(str(device_uuid)))
        return next((c for c in self.clients if c.uuid == u), None)


# --- WQL (a subset) --------------------------------------------------------------------------------------------
class WqlError(ValueError):
    """The query is outside the supported subset."""


_WQL_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*'|\"[^\"]*\")|(?P<num>-?\d+(?:\.\d+)?)|"
                        r"(?P<op><>|!=|<=|>=|=|<|>)|(?P<punct>[(),*])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class WqlQuery:
    class_name: str
    properties: list[str] | None  # None: *
    where: Callable[[Mapping[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _WQL_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise WqlError(f"unexpected character at position {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _like(pattern: str) -> re.Pattern[str]:
    rx, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%":
            rx += ".*"
        elif ch == "_":
            rx += "."
        elif ch == "[":
            end = pattern.find("]", i)
            if end < 0:
                raise WqlError("unclosed [ in LIKE pattern")
            body = pattern[i + 1:end]
            rx += "[" + ("^" + re.escape(body[1:]) if body.startswith("^") else re.escape(body)) + "]"
            i = end
        else:
            rx += re.escape(ch)
        i += 1
    return re.compile(rx, re.I | re.S)


def _compare(value: Any, op: str, literal: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_compare(v, op, literal) for v in value)
    if value is None or literal is None:
        return False
    if isinstance(literal, bool):
        left: Any = str(value).lower() in ("true", "1")
        right: Any = literal
    elif isinstance(literal, float):
        try:
            left, right = float(value), literal
        except (TypeError, ValueError):
            return False
    else:
        left, right = str(value).lower(), str(literal).lower()
    return {"=": left == right, "<>": left != right, "!=": left != right, "<": left < right, ">": left > right,
            "<=": left <= right, ">=": left >= right}[op]


class _WqlParser:
    def __init__(self, text: str):
        self.toks, self.i = _tokens(text), 0

    def peek(self, word: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        kind, val = self.toks[self.i]
        return word is None or val.upper() == word

    def take(self, word: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks) or (word is not None and self.toks[self.i][1].upper() != word):
            raise WqlError(f"expected {word or 'more'}")
        self.i += 1
        return self.toks[self.i - 1]

    def query(self) -> WqlQuery:
        self.take("SELECT")
        props: list[str] | None = None
        if self.peek("*"):
            self.take("*")
        else:
            props = [self.ident()]
            while self.peek(","):
                self.take(",")
                props.append(self.ident())
        self.take("FROM")
        cls = self.ident()
        where: Callable[[Mapping[str, Any]], bool] = lambda inst: True  # noqa: E731
        if self.peek("WHERE"):
            self.take("WHERE")
            where = self.expr()
        if self.i != len(self.toks):
            raise WqlError(f"unexpected {self.toks[self.i][1]!r}")
        return WqlQuery(cls, props, where)

    def ident(self) -> str:
        kind, val = self.take()
        if kind != "word":
            raise WqlError(f"expected a name, found {val!r}")
        return val

    def expr(self):
        left = self.term()
        while self.peek("OR"):
            self.take("OR")
            a, b = left, self.term()
            left = lambda inst, a=a, b=b: a(inst) or b(inst)  # noqa: E731
        return left

    def term(self):
        left = self.factor()
        while self.peek("AND"):
            self.take("AND")
            a, b = left, self.factor()
            left = lambda inst, a=a, b=b: a(inst) and b(inst)  # noqa: E731
        return left

    def factor(self):
        if self.peek("NOT"):
            self.take("NOT")
            inner = self.factor()
            return lambda inst: not inner(inst)
        if self.peek("("):
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner
        return self.comparison()

    def literal(self) -> Any:
        kind, val = self.take()
        if kind == "str":  # a backslash escapes the next character, as in WQL ('C:\\WINDOWS')
            body = val[1:-1].replace("''", "'") if val[0] == "'" else val[1:-1]
            return re.sub(r"\\(.)", r"\1", body)
        if kind == "num":
            return float(val)
        if kind == "word" and val.upper() in ("TRUE", "FALSE"):
            return val.upper() == "TRUE"
        if kind == "word" and val.upper() == "NULL":
            return None
        raise WqlError(f"expected a value, found {val!r}")

    def comparison(self):
        prop = self.ident()

        def value(inst: Mapping[str, Any]) -> Any:
            return next((v for k, v in inst.items() if k.lower() == prop.lower()), None)

        if self.peek("IS"):
            self.take("IS")
            negate = self.peek("NOT") and bool(self.take("NOT"))
            self.take("NULL")
            return lambda inst: (value(inst) is None) != negate
        if self.peek("LIKE"):
            self.take("LIKE")
            lit = self.literal()
            if not isinstance(lit, str):
                raise WqlError("LIKE needs a string")
            rx = _like(lit)
            return lambda inst: any(rx.fullmatch(str(v)) for v in (value(inst) if isinstance(value(inst), list)
                                                                    else [value(inst)]) if v is not None)
        kind, op = self.take()
        if kind != "op":
            raise WqlError(f"expected a comparison operator, found {op!r}")
        lit = self.literal()
        return lambda inst: _compare(value(inst), op, lit)


def parse_wql(text: str) -> WqlQuery:
    """Parse the supported WQL subset; raise :class:`WqlError` otherwise."""
    return _WqlParser(text).query()


# --- WinRM authentication and serialization around the core ----------------------------------------------------
class BasicAuthenticator:
    """Server side of HTTP Basic (RFC 7617). It sits in :attr:`WsmanEndpoint.digest`, the core's only other
    slot, so the core's 401 advertises ``Basic``; :class:`WinrmServer` routes ``Basic`` headers to it."""

    scheme = "Basic"

    def __init__(self, users: Mapping[str, str], realm: str = "WSMAN"):
        self._users, self.realm = dict(users), realm

    def __repr__(self) -> str:
        return f"BasicAuthenticator(users={sorted(self._users)!r})"

    def challenge(self, stale: bool = False) -> str:
        return f'Basic realm="{self.realm}"'

    def authenticate(self, method: str, path: str, value: str) -> str:
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise Denied() from None
        expected = self._users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise Denied()
        return user


class WinrmServer(WsmanServer):
    """The core server with HTTP Basic (the core has no hook for it)."""

    def _authenticate(self, ep: WsmanEndpoint, request: web.Request) -> tuple[str, dict[str, str]]:
        value = request.headers.get("Authorization", "")
        scheme = value.split(None, 1)[0].lower() if value else ""
        basic = ep.digest if isinstance(ep.digest, BasicAuthenticator) else None
        if basic is not None:
            if scheme == "basic":
                return basic.authenticate(request.method, request.path_qs, value.split(None, 1)[1]
                                          if " " in value else ""), {}
            if scheme == "digest":
                raise Denied()
        if ep.digest is None and ep.negotiate is None:
            raise Denied()  # WinRM never serves anonymous requests
        return super()._authenticate(ep, request)


# --- the WMI provider ---------------------------------------------------------------------------------------------
Hook = Callable[..., Any]
HOOK_ORDER = ("amt_unprovision", "revoke_certificate", "delete_ad_object")  # un-provisioning, in this order
#: ``amt_power(record, power_state)``: RequestPowerStateChange on the device; ``amt_discover(record)``: its
#: ProvisioningState (None: no answer)
OPERATION_HOOKS = ("amt_power", "amt_discover")
HOOKS = HOOK_ORDER + OPERATION_HOOKS


class SiteServerProvider:
    """The WMI classes of the site server, as a :class:`~pytest_vpro.lab.wsman_server.Provider`."""

    def __init__(self, spec: SiteServerSpec, sim: "SiteServerSimulator"):
        self.spec, self.sim = spec, sim

    # -- data --
    def classes(self) -> dict[str, dict[str, Callable[[], list[dict[str, Any]]]]]:
        s = self.spec
        site_ns = f"root/sms/site_{s.site_code}".lower()
        return {
            "root/cimv2": {
                "Win32_OperatingSystem": lambda: [{
                    "Caption": s.os_caption, "Version": s.os_version, "CSDVersion": s.csd_version,
                    "ServicePackMajorVersion": s.service_pack_major, "ServicePackMinorVersion": 0,
                    "BuildNumber": s.os_version.rsplit(".", 1)[-1], "OSArchitecture": s.os_architecture,
                    "ProductType": 3, "CSName": s.fqdn.split(".")[0].upper(),
                    "WindowsDirectory": "C:\\WINDOWS", "SystemDirectory": "C:\\WINDOWS\\system32",
                    "Name": f"{s.os_caption}|C:\\WINDOWS|\\Device\\Harddisk0\\Partition1"}],
                "Win32_ComputerSystem": lambda: [{
                    "Name": s.fqdn.split(".")[0].upper(), "DNSHostName": s.fqdn.split(".")[0],
                    "Domain": s.fqdn.split(".", 1)[-1], "PartOfDomain": True, "DomainRole": 3,
                    "TotalPhysicalMemory": s.total_physical_memory}],
                "Win32_QuickFixEngineering": lambda: [{
                    "HotFixID": kb, "Description": "Hotfix", "ServicePackInEffect": "SP3",
                    "CSName": s.fqdn.split(".")[0].upper()} for kb in s.hotfixes or []],
                "Win32_Product": lambda: [{
                    "Name": p["Name"], "Version": p.get("Version", ""), "Vendor": p.get("Vendor", ""),
                    "IdentifyingNumber": "{" + str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, p["Name"])).upper() + "}"}
                    for p in self._products()],
                "Win32_Service": lambda: [{"Started": svc.get("State") == "Running", **svc}
                                          for svc in self._services()],
                "Win32_OptionalFeature": lambda: [{"Name": n, "Caption": n, "InstallState": v}
                                                  for n, v in s.optional_features.items()],
                "Win32_ServerFeature": lambda: [{"ID": i + 1, "Name": n, "ParentID": 0}
                                                for i, n in enumerate(s.server_features)],
                "Win32_UTCTime": lambda: [self._utc_time()],
                "Win32_NetworkAdapterConfiguration": lambda: [{
                    "Index": 1, "Description": "Intel(R) PRO/1000 MT Network Connection", "IPEnabled": True,
                    "DHCPEnabled": False, "IPAddress": [s.address], "IPSubnet": ["255.255.0.0"],
                    "DNSHostName": s.fqdn.split(".")[0], "DNSDomain": s.fqdn.split(".", 1)[-1],
                    "DNSServerSearchOrder": list(s.dns_servers),
                    "WINSPrimaryServer": s.wins_servers[0] if s.wins_servers else None,
                    "WINSSecondaryServer": s.wins_servers[1] if len(s.wins_servers) > 1 else None}],
            },
            "root/sms": {
                "SMS_ProviderLocation": lambda: [{
                    "Machine": s.fqdn.split(".")[0].upper(), "NamespacePath":
                    f"\\\\{s.fqdn.split('.')[0].upper()}\\root\\sms\\site_{s.site_code}",
                    "ProviderForLocalSite": True, "SiteCode": s.site_code}],
            },
            site_ns: {
                "SMS_Site": lambda: [{
                    "SiteCode": s.site_code, "SiteName": s.site_name, "Version": s.site_version,
                    "BuildNumber": s.build_number, "ServerName": s.fqdn.upper(), "InstallDir": s.install_dir,
                    "Type": 2, "Status": 1, "ReportingSiteCode": ""}],
                "SMS_SCI_SysResUse": lambda: [{
                    "SiteCode": s.site_code, "RoleName": role, "NetworkOSPath": f"\\\\{s.fqdn.upper()}",
                    "NALPath": f'["Display=\\\\{s.fqdn.upper()}\\"]MSWNET:["SMS_SITE={s.site_code}"]'
                               f"\\\\{s.fqdn.upper()}\\",
                    "NALType": "Windows NT Server", "ItemName": f"{role}|{s.fqdn.upper()}",
                    "ItemType": "System Resource Usage", "Type": 2} for role in s.roles],
                # network discovery only when enabled: the lab's site otherwise lists its one component
                "SMS_SCI_Component": lambda: [self._oob_component()] + ([self._network_discovery()]
                                                                         if s.network_discovery else []),
                "SMS_R_System": lambda: [self._system(c) for c in s.clients],
                AMT_INVENTORY_CLASS: lambda: [{  # the agents' hardware inventory of SMS_AMTObject
                    "ResourceID": c.resource_id, "AMT": c.amt_full_version,
                    "ProvisionState": 2 if c.provisioned else 0} for c in s.clients if c.client],
                "SMS_Collection": lambda: [{
                    "CollectionID": col["CollectionID"], "Name": col["Name"], "Comment": col.get("Comment", ""),
                    "MemberCount": len(col.get("members", []))} for col in s.collections],
                "SMS_CollectionSettings": lambda: [{
                    "CollectionID": col["CollectionID"],
                    "AMTAutoProvisionEnabled": bool(col.get("amt_auto_provision", False))} for col in s.collections],
                "SMS_FullCollectionMembership": lambda: [{
                    "CollectionID": col["CollectionID"], "ResourceID": c.resource_id, "Name": c.netbios,
                    "IsDirect": True, "IsClient": bool(c.client)}
                    for col in s.collections for c in s.clients if c.fqdn in col.get("members", [])],
                "SMS_UserClassPermissions": lambda: [{
                    "UserName": p["UserName"], "ObjectKey": p.get("ObjectKey", SMS_OBJECT_COLLECTION),
                    "ClassPermissions": permission_bits(p["rights"])}
                    for p in s.permissions or [] if not p.get("InstanceKey")],
                "SMS_UserInstancePermissions": lambda: [{
                    "UserName": p["UserName"], "ObjectKey": p.get("ObjectKey", SMS_OBJECT_COLLECTION),
                    "InstanceKey": p["InstanceKey"], "InstancePermissions": permission_bits(p["rights"])}
                    for p in s.permissions or [] if p.get("InstanceKey")],
            },
            "root/default": {"StdRegProv": lambda: []},
        }

    def _products(self) -> list[dict[str, str]]:
        extra = [{"Name": "Intel(R) AMT WS-MAN Translator", "Version": "1.2.0", "Vendor": "Intel Corporation"}]
        return list(self.spec.products) + (extra if self.spec.wsman_translator else [])

    def _services(self) -> list[dict[str, str]]:
        extra = [{"Name": "WSMANTranslator", "DisplayName": "Intel(R) AMT WS-MAN Translator", "State": "Running",
                  "StartMode": "Auto", "PathName": r"C:\Program Files\Intel\WS-MAN Translator\translator.exe"}]
        return list(self.spec.services) + (extra if self.spec.wsman_translator else [])

    @staticmethod
    def _utc_time() -> dict[str, Any]:
        now = dt.datetime.now(dt.timezone.utc)
        return {"Year": now.year, "Month": now.month, "Day": now.day, "Hour": now.hour, "Minute": now.minute,
                "Second": now.second, "DayOfWeek": (now.weekday() + 1) % 7}

    def _oob_component(self) -> dict[str, Any]:
        s = self.spec
        props = []
        for setting, (name, slot) in OOB_PROPS.items():
            value = s.oob.get(setting, "")
            props.append({"PropertyName": name, "Value": int(value) if slot == "Value" and value != "" else 0,
                          "Value1": value if slot == "Value1" else "", "Value2": ""})
        props += [{"PropertyName": name, "Value": int(s.oob.get(setting, 0) or 0), "Value1": "", "Value2": ""}
                  for setting, name in OOB_SP2_PROPS.items()]
        lists = [{"PropertyListName": name, "Values": [str(v) for v in s.oob.get(setting, [])]}
                 for setting, name in OOB_PROP_LISTS.items()]
        return {"SiteCode": s.site_code, "ComponentName": "SMS_AMT_OPERATION_MANAGER",
                "ItemName": f"SMS_AMT_OPERATION_MANAGER|{s.fqdn.upper()}", "ItemType": "Component",
                "FileType": 2, "Type": 2, "Props": props, "PropLists": lists}

    def _network_discovery(self) -> dict[str, Any]:
        s = self.spec
        component, enable = NETWORK_DISCOVERY
        return {"SiteCode": s.site_code, "ComponentName": component, "ItemName": f"{component}|{s.fqdn.upper()}",
                "ItemType": "Component", "FileType": 2, "Type": 2, "PropLists": [],
                "Props": [{"PropertyName": enable, "Value": int(s.network_discovery), "Value1": "", "Value2": ""}]}

    def _system(self, c: ClientRecord) -> dict[str, Any]:
        agents = [OOB_IMPORT_AGENT] if c.imported_oob else []
        if c.client:
            agents.append("Heartbeat Discovery")
        return {"ResourceId": c.resource_id, "Name": c.netbios, "NetbiosName": c.netbios,
                "ResourceNames": [c.fqdn], "SMBIOSGUID": c.uuid.upper(),
                "IPAddresses": [c.address] if c.address else [],
                "Client": c.client, "ClientVersion": c.client_version or None, "AMTStatus": c.status(),
                "AMTFullVersion": c.amt_full_version, "AgentName": agents, "Active": 1, "Obsolete": 0,
                "ResourceType": 5, "ResourceDomainORWorkgroup": self.spec.fqdn.split(".", 2)[1].upper()}

    # -- routing --
    def _split(self, uri: str) -> tuple[str, str]:
        if not uri.lower().startswith(WMI_BASE):
            raise destination_unreachable(uri)
        ns, _, cls = uri[len(WMI_BASE):].rstrip("/").rpartition("/")
        return ns.lower(), cls

    def _table(self, uri: str) -> tuple[str, Callable[[], list[dict[str, Any]]]]:
        ns, cls = self._split(uri)
        for name, fn in self.classes().get(ns, {}).items():
            if name.lower() == cls.lower():
                return name, fn
        raise destination_unreachable(uri)

    def _uri(self, ns: str, cls: str) -> str:
        return f"{WMI_BASE}{ns}/{cls}"

    # -- Provider --
    def get(self, req: WsmanRequest) -> ServerInstance:
        name, fn = self._table(req.resource_uri)
        instances = fn()
        if not req.selectors and len(instances) == 1:
            return ServerInstance(name, req.resource_uri, instances[0])
        if not req.selectors:
            raise invalid_selectors("the key properties of the instance are missing")
        for inst in instances:
            lower = {k.lower(): v for k, v in inst.items()}
            if any(k.lower() not in lower for k in req.selectors):
                raise invalid_selectors()
            if all(str(lower[k.lower()]).lower() == v.lower() for k, v in req.selectors.items()):
                return ServerInstance(name, req.resource_uri, inst)
        raise invalid_selectors("no instance has these key values")

    def enumerate(self, req: WsmanRequest) -> list[ServerInstance]:
        ns, cls = self._split(req.resource_uri)
        filt = None
        if req.body is not None:
            filt = next((c for c in req.body if local_name(c.tag) == "Filter"), None)
        if filt is None:
            if cls == "*":
                raise Fault("Sender", "wsman:CannotProcessFilter", "enumerating * needs a WQL filter")
            name, fn = self._table(req.resource_uri)
            return [ServerInstance(name, req.resource_uri, i) for i in fn()]
        dialect = filt.get("Dialect") or ""
        if dialect != WQL_DIALECT:
            raise Fault("Sender", "wsen:FilterDialectRequestedUnavailable",
                        f"the filter dialect {dialect or '(none)'} is not supported")
        try:
            query = parse_wql("".join(filt.itertext()))
        except WqlError as exc:
            raise Fault("Sender", "wsman:CannotProcessFilter", f"the WQL query is not valid: {exc}") from None
        if cls != "*" and cls.lower() != query.class_name.lower():
            raise Fault("Sender", "wsman:CannotProcessFilter", "the query selects from another class")
        name, fn = self._table(self._uri(ns, query.class_name))
        uri = self._uri(ns, name)
        out = []
        for inst in fn():
            if query.where(inst):
                if query.properties is not None:
                    want = {p.lower() for p in query.properties}
                    inst = {k: v for k, v in inst.items() if k.lower() in want}
                out.append(ServerInstance(name, uri, inst))
        return out

    def put(self, req: WsmanRequest, properties: dict[str, Any]) -> ServerInstance:
        raise Fault("Sender", "wsman:AccessDenied", "the lab site server's WMI classes are read-only over WinRM")

    def invoke(self, req: WsmanRequest, method: str, params: dict[str, Any]) -> ServerInstance:
        name, _fn = self._table(req.resource_uri)
        if name == "StdRegProv" and method in ("GetStringValue", "GetDWORDValue", "GetBinaryValue", "EnumKey"):
            out = self._registry(method, params)
        elif name == SMS_COLLECTION and method in (OPERATE_FOR_MACHINES, OPERATE_FOR_COLLECTION):
            out = {"ReturnValue": self._operate(req, method, params)}
        else:
            raise Fault("Sender", "wsa:ActionNotSupported", f"{name} has no method {method}", "",
                        "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault")
        return ServerInstance(f"{method}_OUTPUT", req.resource_uri, out)

    def _operate(self, req: WsmanRequest, method: str, params: Mapping[str, Any]) -> int:
        """AMTOperateForMachines (the class method: ResourceIDs[], Opcode) or AMTOperateForCollection (on the
        instance its CollectionID selector names: Opcode): the caller's right checked, the operation queued."""
        s = self.spec
        try:
            opcode = int(str(params.get("Opcode", params.get("opcode", ""))).strip())
        except ValueError:
            raise Fault("Sender", "wsman:InvalidParameter", "Opcode must be a UInt32") from None
        if method == OPERATE_FOR_COLLECTION:
            wanted = {k.lower(): v for k, v in req.selectors.items()}.get("collectionid", "")
            col = next((c for c in s.collections if c["CollectionID"].lower() == wanted.lower()), None)
            if col is None:
                raise invalid_selectors("AMTOperateForCollection is called on an SMS_Collection instance "
                                        "(selector CollectionID)")
            targets = [c for c in s.clients if c.fqdn in col.get("members", [])]
            collections = [col["CollectionID"]]
        else:
            ids = params.get("ResourceIDs", [])
            ids = ids if isinstance(ids, list) else [ids]
            targets = [c for c in (s.client_by_resource(i) for i in ids) if c is not None]
            collections = None
            if len(targets) != len(ids):
                self.sim.record_operation(method, params, opcode, 1, req.principal)
                return 1  # a resource the site does not know
        denied = [c.fqdn for c in targets if not self.sim.may_manage(req.principal, c, collections)]
        if denied:
            self.sim.record_operation(method, params, opcode, f"access denied: {', '.join(denied)}", req.principal)
            raise Fault("Sender", "wsman:AccessDenied",
                        f"WBEM_E_ACCESS_DENIED (0x{WBEM_E_ACCESS_DENIED:08X}): {req.principal or 'the caller'} "
                        f"lacks '{MANAGE_RIGHT}' for {', '.join(denied)}")
        if opcode not in OPCODE_NAMES:
            self.sim.record_operation(method, params, opcode, 1, req.principal)
            return 1
        self.sim.record_operation(method, params, opcode, 0, req.principal)
        self.sim.queue_operation(opcode, targets)
        return 0

    def _registry(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        try:
            hive = int(str(params.get("hDefKey", HKLM)).strip())
        except ValueError:
            return {"ReturnValue": 87}  # ERROR_INVALID_PARAMETER
        key = str(params.get("sSubKeyName", "")).strip("\\").lower()
        name = str(params.get("sValueName", "")).lower()
        if method == "EnumKey":  # the immediate subkeys of key, from every stored path below it
            depth = len(key.split("\\")) if key else 0
            paths = [sub.strip("\\") for h, _, sub in (p.partition("\\") for p in self.spec.registry)
                     if HIVE_NUMBERS.get(h.upper()) == hive]
            below = {p.split("\\")[depth] for p in paths if not key or p.lower().startswith(key + "\\")}
            if not below and key not in {p.lower() for p in paths}:
                return {"ReturnValue": 2}  # ERROR_FILE_NOT_FOUND
            return {"sNames": sorted(below), "ReturnValue": 0}
        for path, values in self.spec.registry.items():
            h, _, sub = path.partition("\\")
            if HIVE_NUMBERS.get(h.upper()) == hive and sub.strip("\\").lower() == key:
                for vname, value in values.items():
                    if vname.lower() == name:
                        if method == "GetDWORDValue":
                            return {"uValue": value, "ReturnValue": 0} if isinstance(value, int) \
                                else {"ReturnValue": 1}
                        if method == "GetBinaryValue":  # REG_BINARY: uint8 uValue[]
                            return {"uValue": list(value), "ReturnValue": 0} if isinstance(value, bytes) \
                                else {"ReturnValue": 1}
                        return {"sValue": value, "ReturnValue": 0} if isinstance(value, str) \
                            else {"ReturnValue": 1}
                return {"ReturnValue": 1}  # value not found (Win32 error code, as StdRegProv returns)
        return {"ReturnValue": 2}  # ERROR_FILE_NOT_FOUND: no such key


# --- the simulator ------------------------------------------------------------------------------------------------
def _resolve(path: str) -> Hook:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class SiteServerSimulator(BackgroundService):
    """WinRM, the 9971 hello listener and AMTOPMGR.LOG for one :class:`SiteServerSpec`.

    ``hooks`` (``amt_unprovision``, ``revoke_certificate``, ``delete_ad_object``) are called with the
    :class:`ClientRecord` by the un-provision action, in that order; ``amt_power`` and ``amt_discover`` by the
    power and discovery operations; a missing hook is skipped. Without ``hooks``, the spec's ``callbacks``
    ("module:function") are imported. Operations run on the service point's worker thread, one at a time;
    :meth:`wait_idle` waits for the queue to drain.
    """

    thread_name = "site-server"
    start_timeout = 30.0

    def __init__(self, spec: SiteServerSpec, *, hooks: Mapping[str, Hook] | None = None,
                 calls_file: str | Path | None = None):
        self.spec = spec
        unknown = set(hooks or {}) - set(HOOKS)
        unknown |= set(spec.callbacks) - set(HOOKS) if hooks is None else set()
        if unknown:
            raise ValueError(f"unknown hook(s) {sorted(unknown)}; known: {HOOKS}")
        self.hooks: dict[str, Hook] = dict(hooks) if hooks is not None else {
            k: _resolve(v) for k, v in spec.callbacks.items()}
        path = calls_file or spec.calls_file
        self.calls_file = Path(path) if path else None
        self.calls: list[dict[str, Any]] = []
        self.log = CmLogWriter(Path(spec.log_dir) / LOG_NAME, max_bytes=spec.log_max_bytes) if spec.log_dir else None
        self.provider = SiteServerProvider(spec, self)
        self.server: WinrmServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._hello_server: asyncio.AbstractServer | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.hellos: deque[tuple[str, Hello | MalformedHello]] = deque(maxlen=10000)  # (peer, hello) as received
        self.operations: queue.Queue[tuple[int, list[ClientRecord]] | None] = queue.Queue()
        self.pending: list[tuple[int, list[ClientRecord]]] = []  # queued while the service point is stopped
        self._worker: threading.Thread | None = None
        self.start_seconds = 0.0

    def __repr__(self) -> str:
        return f"SiteServerSimulator({self.spec.fqdn!r} at {self.spec.address})"

    @property
    def log_path(self) -> Path | None:
        return self.log.path if self.log else None

    def winrm_url(self, tls: bool = False) -> str:
        port = self.spec.https_port if tls else self.spec.http_port
        return f"{'https' if tls else 'http'}://{self.spec.address}:{port}/wsman"

    # -- recording and logging --
    def _record(self, call: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(call)
            if self.calls_file is not None:
                with self.calls_file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(call, default=str) + "\n")

    def _event(self, event: str, client: ClientRecord | None = None, *, when: dt.datetime | None = None,
               thread: str = "provision", **fields: Any) -> None:
        if self.log is None:
            return
        if client is not None:
            fields = {"fqdn": client.fqdn, "uuid": client.uuid, "ip": client.address,
                      "mode": client.provisioning_mode, **fields}
        self.log.event(event, when=when, thread=THREADS[thread], **fields)

    def write_history(self) -> None:
        """On an empty log: the lines a real log already holds: the component accepting its provisioning
        certificate, every provisioned client's provisioning, and the ZTC requests of in-band clients awaiting
        provisioning (the lab's site server does not provision them)."""
        if self.log is None or (self.log.path.exists() and self.log.path.stat().st_size > 0):
            return
        base = dt.datetime.now().astimezone() - dt.timedelta(seconds=self.spec.history_age_s)
        rows = []
        provisioned = [c for c in self.spec.clients if c.provisioned]
        rolled = {c.fqdn for c in provisioned[:max(0, self.spec.history_rolled_over)]}
        for i, c in enumerate(self.spec.clients):
            if not c.provisioned:
                if c.client and c.ztc_requested:
                    rows.append((base + dt.timedelta(minutes=5 * i), "ztc_request", "hello", c, {}))
                continue
            t0 = dt.datetime.fromisoformat(c.provisioned_at).astimezone() if c.provisioned_at \
                else base + dt.timedelta(minutes=5 * i) - dt.timedelta(days=30 if c.fqdn in rolled else 0)
            first = ("ztc_request", {}) if c.client else ("hello_received", {"retry": 0})
            steps = [(first[0], 0, "hello", first[1]), ("provisioning_started", 2, "provision", {}),
                     ("first_stage_completed", 15, "provision", {}), ("second_stage_completed", 40, "provision", {})]
            rows += [(t0 + dt.timedelta(seconds=s), ev, th, c, extra) for ev, s, th, extra in steps]
        rows.sort(key=lambda r: r[0])
        if self.spec.provisioning_certificate_cn:  # configured before any client was provisioned
            self.log.event("provisioning_certificate_accepted",
                           when=(rows[0][0] if rows else base) - dt.timedelta(minutes=10),
                           thread=THREADS["provision"], fqdn=self.spec.provisioning_certificate_cn,
                           thumbprint=self.spec.oob.get("provisioning_certificate_thumbprint", "").upper())
        last_rolled = max((n for n, r in enumerate(rows) if r[3].fqdn in rolled), default=-1)
        for n, (when, ev, th, c, extra) in enumerate(rows):
            self._event(ev, c, when=when, thread=th, **extra)
            if n == last_rolled:
                self.log.rotate()  # the log rolled over: what it held so far is only in AMTOPMGR.lo_ now
        self._certificate_warnings()

    def _certificate_warnings(self) -> None:
        """The daily lines a real AMTOPMGR.LOG shows for a provisioning certificate near its end, and once it has
        expired (wording: CERTIFICATE_EXPIRING, CERTIFICATE_UNLOADED)."""
        if not self.spec.provisioning_certificate_not_after or self.log is None:
            return
        end = dt.datetime.fromisoformat(self.spec.provisioning_certificate_not_after).astimezone()
        now = dt.datetime.now().astimezone()
        thumbprint = str(self.spec.oob.get("provisioning_certificate_thumbprint", "")).upper()
        days = (end - now).days
        if now >= end:
            self.log.write(CERTIFICATE_UNLOADED.format(thumbprint=thumbprint), when=now - dt.timedelta(minutes=1),
                           thread=THREADS["provision"])
        elif days <= CERT_WARNING_DAYS:
            self.log.write(CERTIFICATE_EXPIRING.format(thumbprint=thumbprint, days=days),
                           when=now - dt.timedelta(minutes=1), thread=THREADS["provision"], type_=3)

    # -- the SMS Provider's operations --
    def _holders(self, principal: str) -> set[str]:
        """The names a caller holds rights by: ``DOMAIN\\user`` (from ``user@REALM`` or ``user``) and its groups."""
        domain = self.spec.fqdn.split(".")[1].upper() if "." in self.spec.fqdn else "WORKGROUP"
        user = principal.split("@", 1)[0]
        user = user if "\\" in user else f"{domain}\\{user}"
        groups = next((g for u, g in self.spec.memberships.items() if u.lower() == user.lower()), [])
        return {n.lower() for n in [user, *groups]}

    def may_manage(self, principal: str, client: ClientRecord, collections: list[str] | None = None) -> bool:
        """Whether ``principal`` holds "Manage management controllers" on the collection class, or on one of
        ``collections`` (default: every collection the client is a member of) as an instance right."""
        holders = self._holders(principal)
        if collections is None:
            collections = [c["CollectionID"] for c in self.spec.collections if client.fqdn in c.get("members", [])]
        wanted = {c.lower() for c in collections}
        for p in self.spec.permissions or []:
            if p["UserName"].lower() not in holders or MANAGE_RIGHT not in p["rights"]:
                continue
            if p.get("ObjectKey", SMS_OBJECT_COLLECTION) != SMS_OBJECT_COLLECTION:
                continue
            if not p.get("InstanceKey") or p["InstanceKey"].lower() in wanted:
                return True
        return False

    def record_operation(self, method: str, params: Mapping[str, Any], opcode: int, result: Any,
                         principal: str) -> None:
        ids = params.get("ResourceIDs", [])
        self._record({"ts": time.time(), "server": self.spec.fqdn, "class": SMS_COLLECTION, "op": method,
                      "params": {"ResourceIDs": [int(i) for i in (ids if isinstance(ids, list) else [ids])
                                                 if str(i).strip().isdigit()], "Opcode": opcode},
                      "opcode": OPCODE_NAMES.get(opcode, str(opcode)), "return": result, "principal": principal})

    def queue_operation(self, opcode: int, targets: list[ClientRecord]) -> None:
        """Hand an accepted operation to the out of band service point (queued while it is stopped)."""
        if not self.spec.oob_service_point_running:
            self.pending.append((opcode, targets))
            return
        self.operations.put((opcode, targets))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the service point has performed every queued operation."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.operations.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def _work(self) -> None:
        while True:
            item = self.operations.get()
            try:
                if item is None:
                    return
                opcode, targets = item
                for client in targets:
                    self._perform(opcode, client)
            except Exception:
                log.exception("out of band operation failed")
            finally:
                self.operations.task_done()

    def _perform(self, opcode: int, client: ClientRecord) -> None:
        name = OPCODE_NAMES.get(opcode, "")
        if opcode in POWER_REQUESTS:
            hook = self.hooks.get("amt_power")
            if hook is not None:
                try:
                    hook(client, POWER_REQUESTS[opcode])
                except Exception as exc:  # noqa: BLE001 - an unreachable device: nothing happens, as on a site
                    log.info("%s on %s failed: %s", name, client.fqdn, exc)
        elif opcode == OPCODES["DiscoveryBMC"]:
            self.discover(client)
        elif opcode in (OPCODES["PartialUnprovision"], OPCODES["FullUnprovision"]):
            self.unprovision(client.fqdn)

    def discover(self, client: ClientRecord) -> int | None:
        """Discover Management Controllers for one client: AMTStatus from what its AMT answers (0 no answer,
        2 pre-provisioning, 3 post-provisioning by this site, 1 provisioned but not by this site)."""
        hook = self.hooks.get("amt_discover")
        if hook is None:
            return client.status()
        try:
            state = hook(client)
        except Exception:  # noqa: BLE001 - no answer over the network: not supported (AMTStatus 0)
            state = None
        if state is None:
            client.amt_status = AMT_STATUS["not_supported"]
        elif int(state) == 0:
            client.amt_status = AMT_STATUS["not_provisioned"]
        else:
            client.amt_status = AMT_STATUS["provisioned" if client.provisioned else "detected"]
        return client.amt_status  # type: ignore[return-value]

    # -- the un-provision action --
    def unprovision(self, fqdn: str) -> int:
        """Clear a client's AMT provisioning as the site server does; returns 0, or 5 for an unknown client,
        or 2 when a hook failed (the failure is logged with its reason). AMTStatus is left as it was: the site
        updates it when it provisions a client or discovers its management controller."""
        client = self.spec.client(fqdn)
        rv = 5 if client is None else 0
        if client is not None:
            self._event("unprovision_started", client, thread="clear")
            for name in HOOK_ORDER:
                hook = self.hooks.get(name)
                if hook is None:
                    continue
                try:
                    hook(client)
                except Exception as exc:  # noqa: BLE001 - a failed step is a logged finding, not a crash
                    reason = f"{name}: {type(exc).__name__}: {str(exc)[:200]}"
                    self._event("unprovision_failed", client, thread="clear", reason=reason)
                    rv = 2
                    break
            if rv == 0:
                if client.amt_status == "auto":  # AMTStatus stays what the site last knew until a discovery
                    client.amt_status = client.status()
                client.provisioned = False
                self._event("unprovision_completed", client, thread="clear")
        return rv

    # -- hellos --
    async def _on_hello(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = (writer.get_extra_info("peername") or ("", 0))[0]
        data = b""
        try:
            while len(data) <= MAX_HELLO_BYTES:
                chunk = await asyncio.wait_for(reader.read(4096), 5.0)
                if not chunk:
                    break
                data += chunk
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()
        hello = hello_or_error(data)
        self.hellos.append((peer, hello))
        if isinstance(hello, MalformedHello):
            self._event("hello_malformed", thread="hello", ip=peer, reason=str(hello))
            return
        client = self.spec.client_by_uuid(hello.uuid)
        if client is not None and client.imported_oob:  # before the log line: who reads the line sees AMTStatus 2
            client.hello_heard = True  # the site now knows its AMT: AMTStatus 2 (not provisioned, can be)
        self._event("hello_received", thread="hello", ip=peer, uuid=str(hello.uuid), mode=hello.mode,
                    retry=hello.retry_count, fqdn=client.fqdn if client and client.imported_oob else "")
        if client is None or not client.imported_oob:
            self._event("hello_not_imported", thread="hello", ip=peer, uuid=str(hello.uuid))

    # -- life cycle --
    def _endpoint(self, tls: bool) -> WsmanEndpoint:
        s = self.spec
        negotiate = None
        if s.kerberos_keytab and s.kerberos_realm:
            negotiate = NegotiateAcceptor(s.kerberos_keytab, f"HTTP/{s.fqdn}@{s.kerberos_realm}",
                                          max_token_bytes=64 * 1024)
        basic = BasicAuthenticator(s.basic_users) if s.basic_users and (tls or s.allow_unencrypted) else None
        return WsmanEndpoint(self.provider, digest=basic, negotiate=negotiate,  # type: ignore[arg-type]
                             server_header="Microsoft-HTTPAPI/1.0")

    async def start_async(self) -> None:
        t0 = time.perf_counter()
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self.write_history()
        self.server = WinrmServer()
        self.server.add(self.spec.address, self.spec.http_port, self._endpoint(False))
        if self.spec.tls_cert and self.spec.tls_key:
            self.server.add(self.spec.address, self.spec.https_port, self._endpoint(True),
                            server_ssl_context(self.spec.tls_cert, self.spec.tls_key))
        self._worker = threading.Thread(target=self._work, name="oob-service-point", daemon=True)
        self._worker.start()
        try:
            await self.server.start()
            self._hello_server = await asyncio.start_server(self._on_hello, self.spec.address, self.spec.hello_port,
                                                            reuse_address=True)
        except BaseException:
            await self.stop_async()
            raise
        self.start_seconds = time.perf_counter() - t0

    async def stop_async(self) -> None:
        if self._hello_server is not None:
            self._hello_server.close()
            await self._hello_server.wait_closed()
            self._hello_server = None
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._worker is not None:
            self.operations.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._worker.join, 30.0)
            self._worker = None


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_vpro.lab.site_server",
                                     description="Simulated Configuration Manager 2007 site server")
    parser.add_argument("--spec", required=True, help="site server spec (JSON or YAML)")
    parser.add_argument("--calls", help="append every state-changing call to this JSONL file")
    args = parser.parse_args(list(argv) if argv is not None else None)
    sim = SiteServerSimulator(SiteServerSpec.load(args.spec), calls_file=args.calls)
    s = sim.spec
    return serve_as_process(sim, lambda: (
        f"READY site server {s.fqdn} at {s.address}: WinRM {s.http_port}"
        f"{'/' + str(s.https_port) if s.tls_cert else ''}, hello {s.hello_port},"
        f" log {sim.log_path or '-'} in {sim.start_seconds:.2f} s"))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["SiteServerSpec", "ClientRecord", "SiteServerSimulator", "SiteServerProvider", "WinrmServer",
           "BasicAuthenticator", "parse_wql", "WqlError", "applicable_hotfixes", "APPENDIX_A", "OOB_PROPS",
           "OOB_PROP_LISTS", "AMT_STATUS", "UNCONFIRMED", "SMS_COLLECTION", "OPERATE_FOR_MACHINES",
           "OPERATE_FOR_COLLECTION", "OPCODES", "MANAGE_RIGHT", "WBEM_E_ACCESS_DENIED", "WOW64_SOFTWARE",
           "KB908209_KEY", "WINRM_STACK_KEY", "HOOK_ORDER", "HOOKS", "main"]
