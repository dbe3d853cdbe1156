"""Typed reads (and a few clearly separated writes) of an Intel AMT device over WS-MAN.

Classes, properties and value meanings come from ``docs/protocols.md`` ("Classes
the checks read"); every read returns a small dataclass so checks never see XML.
"""
from __future__ import annotations

import base64
import re
import time
import uuid
from dataclasses import dataclass, field

from pytest_vpro.probes.wsman import EndpointReference, Instance, MalformedReply, WsmanClient, WsmanError, resource_uri

PROVISIONING_STATES = {0: "pre-provisioning", 1: "in provisioning", 2: "post-provisioning"}
POWER_STATES = {2: "on", 4: "sleep (S3)", 5: "power cycle", 6: "off-hard", 7: "hibernate (S4)", 8: "off-soft (S5)"}
REDIRECTION_STATES = {32768: (False, False), 32769: (False, True), 32770: (True, False), 32771: (True, True)}
HASH_TYPES = {1: "SHA-1", 2: "SHA-256", 3: "SHA-384"}  # (unconfirmed): numbering of the hello packet
#: AMT_AuthorizationService realm ValueMap (docs/protocols.md, "Classes the checks read").
ACL_REALMS = {2: "redirection", 3: "PT administration", 4: "hardware asset", 5: "remote control", 6: "storage",
              7: "event manager", 8: "storage admin", 9: "agent presence local", 10: "agent presence remote",
              11: "circuit breaker", 12: "network time", 13: "general info", 14: "firmware update", 15: "EIT",
              16: "local UN", 17: "endpoint access control", 18: "endpoint access control admin",
              19: "event log reader", 20: "audit log", 21: "ACL", 23: "DT", 24: "local system"}
#: The one boot configuration AMT has (GWM responses/cim/boot/configsetting/get.xml; MeshCommander amt-0.2.0.js:212)
BOOT_CONFIG = "Intel(r) AMT: Boot Configuration 0"
#: SetBootConfigRole roles: 1 IsNextSingleUse, 32768 IsNotNext (SDK "Set or Disable Boot Configuration Settings for
#: the Next Boot"); MeshCommander and Intel's PowerShell module send 1
ROLE_NEXT_SINGLE_USE, ROLE_NOT_NEXT = 1, 32768
#: AMT_BootSettingData properties a console must not Put back: read-only, reported by the device
#: (MeshCommander index.html powerActionResponse1 deletes them before its Put)
BOOT_READ_ONLY = frozenset({"WinREBootEnabled", "UEFILocalPBABootEnabled", "UEFIHTTPSBootEnabled",
                            "SecureBootControlEnabled", "BootguardStatus", "OptionsCleared", "BIOSLastStatus",
                            "UefiBootParametersArray", "RPEEnabled"})
#: Realms a firmware release introduced: 20 (audit log) and 21 (ACL) from AMT 4.0, 23 from 5.1.
REALMS_SINCE = {20: (4, 0), 21: (4, 0), 23: (5, 1)}


def realm_exists(realm: int, version: tuple[int, ...]) -> bool:
    """Whether AMT ``version`` has ``realm`` at all (an AMT 3.2.1 ACL entry cannot hold realm 20 or 21)."""
    return tuple(version[:2]) >= REALMS_SINCE.get(realm, (0,))


class SidError(ValueError):
    """A ``KerberosUserSid`` that is not the base64 of a binary SID."""


def sid_from_wire(value: str) -> str:
    """``KerberosUserSid`` as AMT sends it (base64 of a binary SID, MS-DTYP 2.4.2.2) -> ``S-1-5-21-...``.

    Layout: revision (1 byte, 1), sub-authority count (1 byte, at most 15), identifier authority (6 bytes,
    big-endian), then count sub-authorities (u32, little-endian)."""
    try:
        data = base64.b64decode(value.strip(), validate=True)
    except (ValueError, TypeError):
        raise SidError(f"KerberosUserSid {value[:60]!r} is not base64") from None
    if len(data) < 8:
        raise SidError(f"KerberosUserSid of {len(data)} bytes is shorter than a SID header (8)")
    revision, count = data[0], data[1]
    if revision != 1 or count > 15 or len(data) != 8 + 4 * count:
        raise SidError(f"KerberosUserSid {data.hex()} is not a SID (revision {revision}, {count} sub-authorities, "
                       f"{len(data)} bytes)")
    authority = int.from_bytes(data[2:8], "big")
    subs = [int.from_bytes(data[8 + 4 * i: 12 + 4 * i], "little") for i in range(count)]
    return "-".join(["S", str(revision), str(authority), *map(str, subs)])


def sid_to_wire(sid: str) -> str:
    """``S-1-5-21-...`` -> base64 of its binary form (what AMT stores and sends; the inverse of
    :func:`sid_from_wire`)."""
    parts = sid.strip().split("-")
    if len(parts) < 3 or parts[0].upper() != "S" or not all(p.isdigit() for p in parts[1:]):
        raise SidError(f"{sid!r} is not a SID in S-1-... form")
    revision, authority, *subs = (int(p) for p in parts[1:])
    if len(subs) > 15 or authority >= 1 << 48 or any(s >= 1 << 32 for s in subs):
        raise SidError(f"{sid!r} does not fit a binary SID")
    data = bytes([revision, len(subs)]) + authority.to_bytes(6, "big") + b"".join(s.to_bytes(4, "little")
                                                                                   for s in subs)
    return base64.b64encode(data).decode("ascii")


class AmtCallFailed(WsmanError):
    """A method answered with a non-zero ReturnValue."""

    def __init__(self, method: str, return_value: int):
        self.method, self.return_value = method, return_value
        super().__init__(f"{method} returned {return_value}")


def _int(value, default: int | None = None) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _list(value) -> list:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _bool(value) -> bool:
    return str(value).strip().lower() in ("true", "1")


@dataclass(frozen=True)
class Provisioning:
    state: int
    mode: int | None

    @property
    def state_name(self) -> str:
        return PROVISIONING_STATES.get(self.state, f"unknown ({self.state})")

    def mode_name(self, version: tuple[int, ...] = (7,)) -> str:
        """AMT 7+: 1 admin control, 4 client control; before AMT 6: 1 enterprise, 2 small business."""
        names = {1: "admin control", 4: "client control"} if version >= (7,) else {1: "enterprise", 2: "small business"}
        return names.get(self.mode or 0, f"unknown ({self.mode})")


@dataclass(frozen=True)
class Version:
    text: str

    @property
    def parts(self) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", self.text)[:4])

    def at_least(self, *minimum: int) -> bool:
        return self.parts >= minimum


@dataclass(frozen=True)
class GeneralSettings:
    host_name: str
    domain_name: str
    network_interface_enabled: bool
    digest_realm: str

    @property
    def fqdn(self) -> str:
        return f"{self.host_name}.{self.domain_name}" if self.domain_name else self.host_name


@dataclass(frozen=True)
class PowerStatus:
    state: int
    available: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return POWER_STATES.get(self.state, f"unknown ({self.state})")


def me_on_states(description: str) -> frozenset[str]:
    """Host S-states the ME is on (or wakes) in, read from a power scheme description.

    The descriptions are MEBx "ME ON in Host Sleep States" texts such as
    ``Desktop: ON in S0, ME Wake in S3, S4-5`` (public MEBx screens); "S4-5"/"S4-S5" means S4 and S5.
    """
    states = {"S0"} if re.search(r"\bS0\b", description) else set()
    for m in re.finditer(r"S(\d)(?:\s*-\s*S?(\d))?", description):
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        states.update(f"S{i}" for i in range(lo, hi + 1) if i != 1 and i != 2)
    return frozenset(states)


@dataclass(frozen=True)
class PowerPolicy:
    instance_id: str
    description: str
    guid: str

    @property
    def me_on(self) -> frozenset[str]:
        return me_on_states(self.description)

    @property
    def on_in_all_states(self) -> bool:
        """The guide's "S0-S5" policy: the ME stays reachable while the PC sleeps or is off."""
        return {"S0", "S3", "S4", "S5"} <= self.me_on


@dataclass(frozen=True)
class Redirection:
    enabled_state: int
    listener_enabled: bool

    @property
    def sol(self) -> bool:
        return REDIRECTION_STATES.get(self.enabled_state, (False, False))[0]

    @property
    def ider(self) -> bool:
        return REDIRECTION_STATES.get(self.enabled_state, (False, False))[1]


@dataclass(frozen=True)
class CertificateHash:
    instance_id: str
    name: str
    hash_type: int
    digest: bytes = field(repr=False)
    enabled: bool
    is_default: bool

    @property
    def hash_type_name(self) -> str:
        return HASH_TYPES.get(self.hash_type, f"unknown ({self.hash_type})")

    @property
    def hex(self) -> str:
        return self.digest.hex()


@dataclass(frozen=True)
class KerberosSettings:
    realm: str
    spns: tuple[str, ...]
    enabled: bool
    max_clock_tolerance_min: int | None


@dataclass(frozen=True)
class AclEntry:
    handle: int
    kerberos_sid: str          # S-1-... decoded from the wire; "" for a digest entry or an undecodable value
    digest_user: str
    realms: tuple[int, ...]
    access: int | None
    kerberos_sid_wire: str = ""  # KerberosUserSid as sent (base64 of the binary SID)
    sid_problem: str = ""        # why kerberos_sid_wire did not decode

    @property
    def realm_names(self) -> tuple[str, ...]:
        return tuple(ACL_REALMS.get(r, str(r)) for r in self.realms)


@dataclass(frozen=True)
class ClockReading:
    device_time: int
    local_time: float    #: this machine's clock when the answer arrived
    sent: float | None = None  #: this machine's clock when the call was sent (None: unknown)

    @property
    def offset_s(self) -> float:
        """Device clock minus ours (positive: the device is ahead), at the middle of the call's round trip."""
        middle = self.local_time if self.sent is None else (self.sent + self.local_time) / 2
        return self.device_time - middle

    @property
    def uncertainty_s(self) -> float:
        """How far ``offset_s`` may be off: half the round trip (the device read its clock somewhere in it) plus
        1 s, since ``Ta0`` is whole seconds."""
        return (0.0 if self.sent is None else (self.local_time - self.sent) / 2) + 1.0


#: AMT_8021XProfile / CIM_IEEE8021xSettings AuthenticationProtocol (Intel AMT SDK; open-amt-cloud-toolkit).
EAP_PROTOCOLS = {0: "EAP-TLS", 1: "EAP-TTLS/MSCHAPv2", 2: "PEAPv0/EAP-MSCHAPv2", 3: "PEAPv1/EAP-GTC",
                 4: "EAP-FAST/MSCHAPv2", 5: "EAP-FAST/GTC", 6: "EAP-MD5", 7: "EAP-PSK", 8: "EAP-SIM", 9: "EAP-AKA",
                 10: "EAP-FAST/TLS"}
#: CIM_WiFiEndpointSettings (DMTF CIM schema) AuthenticationMethod and EncryptionMethod.
WIFI_AUTHENTICATION = {1: "Other", 2: "Open System", 3: "Shared Key", 4: "WPA PSK", 5: "WPA IEEE 802.1x",
                       6: "WPA2 PSK", 7: "WPA2 IEEE 802.1x"}
WIFI_ENCRYPTION = {1: "Other", 2: "WEP", 3: "TKIP", 4: "CCMP (AES)", 5: "None"}


@dataclass(frozen=True)
class EthernetPort:
    """One ``AMT_EthernetPortSettings``: ``... Settings 0`` is the wired port, ``... Settings 1`` the wireless one
    (PhysicalConnectionType 3 on firmware that reports it)."""

    instance_id: str
    dhcp_enabled: bool
    ip_address: str
    mac_address: str
    link_up: bool
    physical_type: int | None

    @property
    def wireless(self) -> bool:
        return self.physical_type == 3 or (self.physical_type is None and self.instance_id.rstrip().endswith(" 1"))


@dataclass(frozen=True)
class WifiProfile:
    """A wireless profile: ``CIM_WiFiEndpointSettings`` and its ``CIM_IEEE8021xSettings`` (paired by ElementName)."""

    name: str
    authentication: int
    encryption: int
    eap_protocol: int | None

    def describe(self) -> str:
        eap = f", {EAP_PROTOCOLS.get(self.eap_protocol, self.eap_protocol)}" if self.eap_protocol is not None else ""
        return (f"{self.name}: {WIFI_AUTHENTICATION.get(self.authentication, self.authentication)}, "
                f"{WIFI_ENCRYPTION.get(self.encryption, self.encryption)}{eap}")


class AmtDevice:
    """Reads of one AMT device; writes are the three methods under "state-changing calls"."""

    def __init__(self, client: WsmanClient):
        self.client = client

    def __repr__(self) -> str:
        return f"AmtDevice({self.client.url!r})"

    def close(self) -> None:
        self.client.close()

    def _get(self, cls: str, selectors=None) -> Instance:
        return self.client.get(resource_uri(cls), selectors)

    def _call(self, cls: str, method: str, params: dict, selectors=None) -> Instance:
        out = self.client.invoke(resource_uri(cls), method, params, selectors)
        rv = _int(out.get("ReturnValue"), -1)
        if rv != 0:
            raise AmtCallFailed(method, rv if rv is not None else -1)
        return out

    # -- reads --
    def provisioning(self) -> Provisioning:
        i = self._get("AMT_SetupAndConfigurationService")
        state = _int(i.get("ProvisioningState"))
        if state is None:
            raise MalformedReply("AMT_SetupAndConfigurationService without ProvisioningState")
        return Provisioning(state, _int(i.get("ProvisioningMode")))

    def version(self) -> Version:
        for inst in self.client.enumerate(resource_uri("CIM_SoftwareIdentity")):
            if inst.get("InstanceID") == "AMT":
                return Version(str(inst.get("VersionString", "")))
        raise MalformedReply("no CIM_SoftwareIdentity with InstanceID=AMT")

    def general_settings(self) -> GeneralSettings:
        i = self._get("AMT_GeneralSettings")
        return GeneralSettings(str(i.get("HostName") or ""), str(i.get("DomainName") or ""),
                               _bool(i.get("NetworkInterfaceEnabled")), str(i.get("DigestRealm") or ""))

    def power_state(self) -> PowerStatus:
        i = self._get("CIM_AssociatedPowerManagementService")
        state = _int(i.get("PowerState"))
        if state is None:
            raise MalformedReply("CIM_AssociatedPowerManagementService without PowerState")
        return PowerStatus(state, tuple(x for x in (_int(v) for v in _list(i.get("AvailableRequestedPowerStates")))
                                        if x is not None))

    def power_schemes(self) -> list[PowerPolicy]:
        return [PowerPolicy(str(i.get("InstanceID", "")), str(i.get("Description", "")), _guid(i.get("SchemeGUID")))
                for i in self.client.enumerate(resource_uri("AMT_SystemPowerScheme"))]

    def power_policy(self) -> PowerPolicy:
        """The active ``AMT_SystemPowerScheme``: the one a ``CIM_ElementSettingData`` with IsCurrent=1 points at."""
        schemes = {p.instance_id: p for p in self.power_schemes()}
        for esd in self.client.enumerate(resource_uri("CIM_ElementSettingData")):
            ref = esd.get("SettingData")
            if _int(esd.get("IsCurrent")) == 1 and isinstance(ref, dict) \
                    and str(ref.get("ResourceURI", "")).endswith("/AMT_SystemPowerScheme"):
                iid = ref.get("Selectors", {}).get("InstanceID", "")
                if iid in schemes:
                    return schemes[iid]
        raise MalformedReply("no current AMT_SystemPowerScheme (CIM_ElementSettingData IsCurrent=1)")

    def redirection(self) -> Redirection:
        i = self._get("AMT_RedirectionService")
        return Redirection(_int(i.get("EnabledState"), 0) or 0, _bool(i.get("ListenerEnabled")))

    def certificate_hashes(self) -> list[CertificateHash]:
        out = []
        for i in self.client.enumerate(resource_uri("AMT_ProvisioningCertificateHash")):
            try:
                digest = base64.b64decode(str(i.get("HashData", "")), validate=True)
            except ValueError:
                raise MalformedReply(f"HashData of {i.get('InstanceID')} is not base64") from None
            out.append(CertificateHash(str(i.get("InstanceID", "")), str(i.get("ElementName", "")),
                                       _int(i.get("HashType"), 0) or 0, digest, _bool(i.get("Enabled")),
                                       _bool(i.get("IsDefault"))))
        return out

    def kerberos_settings(self) -> KerberosSettings:
        i = self._get("AMT_KerberosSettingData")
        spns = tuple(str(s) for s in _list(i.get("ServicePrincipalName")))
        return KerberosSettings(str(i.get("RealmName") or ""), spns,
                                _bool(i.get("KrbEnabled")), _int(i.get("MaximumClockTolerance")))

    def acl_entries(self, limit: int = 1000) -> list[AclEntry]:
        """EnumerateUserAclEntries (pages by StartIndex), then GetUserAclEntryEx per handle."""
        handles: list[int] = []
        start = 1
        while len(handles) < limit:
            out = self._call("AMT_AuthorizationService", "EnumerateUserAclEntries", {"StartIndex": start})
            page = [h for h in (_int(v) for v in _list(out.get("Handles"))) if h is not None]
            handles.extend(page)
            total = _int(out.get("TotalCount"), 0) or 0
            if not page or len(handles) >= total:
                break
            start += len(page)
        entries = []
        for h in handles[:limit]:
            e = self._call("AMT_AuthorizationService", "GetUserAclEntryEx", {"Handle": h})
            wire, sid, problem = str(e.get("KerberosUserSid") or "").strip(), "", ""
            if wire:
                try:
                    sid = sid_from_wire(wire)
                except SidError as exc:
                    problem = str(exc)
            entries.append(AclEntry(h, sid, str(e.get("DigestUsername") or ""),
                                    tuple(r for r in (_int(v) for v in _list(e.get("Realms"))) if r is not None),
                                    _int(e.get("AccessPermission")), wire, problem))
        return entries

    def ethernet_settings(self) -> list[EthernetPort]:
        """Every ``AMT_EthernetPortSettings`` (wired first)."""
        return sorted((EthernetPort(str(i.get("InstanceID", "")), _bool(i.get("DHCPEnabled")),
                                    str(i.get("IPAddress") or ""), str(i.get("MACAddress") or ""),
                                    _bool(i.get("LinkIsUp")), _int(i.get("PhysicalConnectionType")))
                       for i in self.client.enumerate(resource_uri("AMT_EthernetPortSettings"))),
                      key=lambda p: p.instance_id)

    def wired_8021x_protocols(self) -> list[int]:
        """AuthenticationProtocol of each enabled wired 802.1X profile (``AMT_8021XProfile``); [] if none."""
        return [p for i in self.client.enumerate(resource_uri("AMT_8021XProfile")) if _bool(i.get("Enabled"))
                for p in [_int(i.get("AuthenticationProtocol"))] if p is not None]

    def wifi_profiles(self) -> list[WifiProfile]:
        """The wireless profiles, with the EAP method of those that use 802.1X."""
        eap = {str(i.get("ElementName", "")): _int(i.get("AuthenticationProtocol"))
               for i in self.client.enumerate(resource_uri("CIM_IEEE8021xSettings"))}
        return [WifiProfile(str(i.get("ElementName", "")), _int(i.get("AuthenticationMethod"), 0) or 0,
                            _int(i.get("EncryptionMethod"), 0) or 0, eap.get(str(i.get("ElementName", ""))))
                for i in self.client.enumerate(resource_uri("CIM_WiFiEndpointSettings"))]

    def clock(self) -> ClockReading:
        sent = time.time()
        out = self._call("AMT_TimeSynchronizationService", "GetLowAccuracyTimeSynch", {})
        received = time.time()
        ta0 = _int(out.get("Ta0"))
        if ta0 is None:
            raise MalformedReply("GetLowAccuracyTimeSynch without Ta0")
        return ClockReading(ta0, received, sent)

    # -- state-changing calls: callers must gate these (disruptive checks, canary clients only) --
    def request_power_state(self, state: int) -> None:
        """RequestPowerStateChange: 2 on, 8 off-soft, 5 power cycle, 4 standby, 7 hibernate."""
        managed = EndpointReference(resource_uri("CIM_ComputerSystem"),
                                    {"CreationClassName": "CIM_ComputerSystem", "Name": "ManagedSystem"})
        self._call("CIM_PowerManagementService", "RequestPowerStateChange",
                   {"PowerState": int(state), "ManagedElement": managed},
                   {"Name": "Intel(r) AMT Power Management Service"})

    # -- the boot configuration (docs/protocols.md "The IDE-R boot configuration"): S5-SOL-IDER-SESSION only --
    def boot_capabilities(self) -> dict[str, bool]:
        """``AMT_BootCapabilities``: what the BIOS lets AMT do at the next boot (``IDER``, ``SOL``, ...)."""
        found = self._get("AMT_BootCapabilities")
        return {k: _bool(v) for k, v in found.items() if str(v).lower() in ("true", "false")}

    def boot_settings(self) -> Instance:
        """``AMT_BootSettingData`` as the device holds it (the one-time options of the next boot)."""
        return self._get("AMT_BootSettingData")

    def put_boot_settings(self, settings: dict) -> Instance:
        """Put ``AMT_BootSettingData`` (the properties the device returned, minus the read-only ones)."""
        return self.client.put(resource_uri("AMT_BootSettingData"), settings)

    def clear_boot_order(self) -> None:
        """``CIM_BootConfigSetting.ChangeBootOrder`` with no ``Source``: no boot source forced."""
        self._call("CIM_BootConfigSetting", "ChangeBootOrder", {}, {"InstanceID": BOOT_CONFIG})

    def set_boot_config_role(self, role: int) -> None:
        """``CIM_BootService.SetBootConfigRole``: 1 makes ``Intel(r) AMT: Boot Configuration 0`` the configuration
        of the next boot only (IsNextSingleUse), 32768 takes that role away (IsNotNext)."""
        config = EndpointReference(resource_uri("CIM_BootConfigSetting"), {"InstanceID": BOOT_CONFIG})
        self._call("CIM_BootService", "SetBootConfigRole", {"BootConfigSetting": config, "Role": int(role)},
                   {"Name": "Intel(r) AMT Boot Service"})

    def unprovision(self, mode: int = 1) -> None:
        """AMT_SetupAndConfigurationService.Unprovision(ProvisioningMode): back to pre-provisioning."""
        self._call("AMT_SetupAndConfigurationService", "Unprovision", {"ProvisioningMode": mode})

    def set_power_scheme(self, instance_id: str) -> None:
        """Make the ``AMT_SystemPowerScheme`` with this InstanceID the active power policy."""
        self._call("AMT_SystemPowerScheme", "SetPowerScheme", {}, {"InstanceID": instance_id})


def _guid(value) -> str:
    """SchemeGUID is base64 of the 16 GUID bytes (little-endian groups) on the wire."""
    try:
        raw = base64.b64decode(str(value or ""), validate=True)
        return str(uuid.UUID(bytes_le=raw)) if len(raw) == 16 else str(value or "")
    except ValueError:
        return str(value or "")
