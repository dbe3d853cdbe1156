"""The site server's WMI provider: the SMS Provider's classes and methods (``root\\sms\\site_<code>``), the
registry (StdRegProv) and the Windows classes a Configuration Manager 2007 site server answers."""
from __future__ import annotations

import datetime as dt
import logging
import uuid as uuidlib
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pytest_vpro.lab.wsman_server import (
    Fault,
    ServerInstance,
    WsmanRequest,
    destination_unreachable,
    invalid_selectors,
)
from pytest_vpro.probes.wsman import local_name

from .site_spec import (
    AMT_INVENTORY_CLASS,
    HIVE_NUMBERS,
    HKLM,
    MANAGE_RIGHT,
    NETWORK_DISCOVERY,
    OOB_IMPORT_AGENT,
    OOB_PROP_LISTS,
    OOB_PROPS,
    OOB_SP2_PROPS,
    OPCODE_NAMES,
    OPERATE_FOR_COLLECTION,
    OPERATE_FOR_MACHINES,
    SMS_COLLECTION,
    SMS_OBJECT_COLLECTION,
    WBEM_E_ACCESS_DENIED,
    WMI_BASE,
    WQL_DIALECT,
    ClientRecord,
    SiteServerSpec,
    permission_bits,
)
from .wql import WqlError, parse_wql

if TYPE_CHECKING:
    from .site_server import SiteServerSimulator

log = logging.getLogger(__name__)



def cim_datetime(when: dt.datetime | str) -> dict[str, str]:
    """A WMI datetime as WinRM serializes it: ``<p:Prop><cim:Datetime>xs:dateTime</cim:Datetime></p:Prop>`` (an
    ISO string is taken as it is)."""
    when = dt.datetime.fromisoformat(when) if isinstance(when, str) else when
    return {"Datetime": when.isoformat(timespec="microseconds")}


Hook = Callable[..., Any]
HOOK_ORDER = ("amt_unprovision", "revoke_certificate", "delete_ad_object")  # un-provisioning, in this order
#: ``amt_power(record, power_state)``: RequestPowerStateChange on the device; ``amt_discover(record)``: its
#: ProvisioningState (None: no answer)
OPERATION_HOOKS = ("amt_power", "amt_discover")
HOOKS = HOOK_ORDER + OPERATION_HOOKS


def collection_classes(s: SiteServerSpec) -> dict[str, Callable[[], list[dict[str, Any]]]]:
    """The site's collections: SMS_Collection (with LastMemberChangeTime and LastRefreshTime, CM2007 SDK
    cc145320), SMS_CollectionSettings and SMS_FullCollectionMembership."""
    return {
        "SMS_Collection": lambda: [{
            "CollectionID": col["CollectionID"], "Name": col["Name"], "Comment": col.get("Comment", ""),
            "MemberCount": len(col.get("members", [])),
            "LastMemberChangeTime": cim_datetime(s.collection_time(col, "member_changed")),
            "LastRefreshTime": cim_datetime(s.collection_time(col, "refreshed"))} for col in s.collections],
        "SMS_CollectionSettings": lambda: [{
            "CollectionID": col["CollectionID"], "AMTAutoProvisionEnabled": bool(col.get("amt_auto_provision", False)),
            "LastModificationTime": cim_datetime(s.collection_time(col, "settings_modified"))}
            for col in s.collections],
        "SMS_FullCollectionMembership": lambda: [{
            "CollectionID": col["CollectionID"], "ResourceID": c.resource_id, "Name": c.netbios,
            "IsDirect": True, "IsClient": bool(c.client)}
            for col in s.collections for c in s.clients if c.fqdn in col.get("members", [])],
    }


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
                "Win32_LocalTime": lambda: [self._utc_time(local=True)],
                "Win32_TimeZone": lambda: [{
                    "Bias": s.utc_offset_minutes, "StandardName": s.time_zone_name, "DaylightName": s.time_zone_name,
                    "StandardBias": 0, "DaylightBias": 0}],
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
                **collection_classes(s),
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

    def _utc_time(self, local: bool = False) -> dict[str, Any]:
        """Win32_UTCTime (or Win32_LocalTime): the real time plus the server's ``clock_offset_s``."""
        s = self.spec
        now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=getattr(s, "clock_offset_s", 0.0))
        if local:
            now = now.astimezone(dt.timezone(dt.timedelta(minutes=getattr(s, "utc_offset_minutes", 0))))
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
        if name == "StdRegProv" and method in ("GetStringValue", "GetDWORDValue", "GetBinaryValue",
                                                "GetMultiStringValue", "EnumKey"):
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
                        if method == "GetMultiStringValue":  # REG_MULTI_SZ: string sValue[]
                            return {"sValue": list(value), "ReturnValue": 0} if isinstance(value, list) \
                                else {"ReturnValue": 1}
                        return {"sValue": value, "ReturnValue": 0} if isinstance(value, str) \
                            else {"ReturnValue": 1}
                return {"ReturnValue": 1}  # value not found (Win32 error code, as StdRegProv returns)
        return {"ReturnValue": 2}  # ERROR_FILE_NOT_FOUND: no such key
