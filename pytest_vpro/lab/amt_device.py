"""A simulated Intel AMT device: its WS-MAN classes and methods (the model); its specification is in :mod:`.amt_spec`.

Behaviour follows ``docs/protocols.md``; WS-MAN transport and auth come from
:mod:`pytest_vpro.lab.wsman_server`. One process (one event loop) serves many devices,
each on its own loopback address, port 16992 (HTTP) and, with a certificate, 16993 (TLS).

Modelling decisions (lab simplifications, each in one place):
 * AMT before 3.2.1 had no WS-MAN (only the legacy EOI SOAP services): such a device
   answers 404 on ``/wsman`` (:data:`.amt_spec.FIRST_WSMAN_VERSION`).
 * The ME is unreachable while the host is in a sleep state its power policy does not
   cover (e.g. policy "ON in S0" and the PC off): the connection is dropped unanswered.
 * Pre-provisioned devices (state 0) serve 16993 with a self-signed setup certificate (see
   ``builder._setup_certificate``). Real firmware answers WS-MAN there only to the provisioning server,
   which presents a certificate chain whose root hash the device lists in its hello (docs/protocols.md,
   "An un-provisioned device"). A modern lab's device still answers WS-MAN with the digest account
   (lab shortcut, kept for the modern lab's tests); with ``setup_answers_wsman`` false (a lab of 2009)
   a device in its initial setup answers nothing on 16992 and resets 16993 after the TLS handshake,
   until ``CommitChanges`` moves it to post-provisioning (real provisioning runs a PSK/PKI TLS handshake
   first). A device un-provisioned during the run keeps answering: what firmware serves right after a
   full un-provision is not modelled.
 * ``AMT_EthernetPortSettings``: the wired port (``... Settings 0``) and a laptop's wireless
   port (``... Settings 1``, PhysicalConnectionType 3) on ``wireless_address``, where the device
   also answers; ``AMT_8021XProfile`` (wired 802.1X) and ``CIM_WiFiEndpointSettings`` with
   ``CIM_IEEE8021xSettings`` (wireless profiles, paired by ElementName: the association classes
   are not modelled).
 * ReturnValue numbers for refused calls follow CIM (0 ok, 2 unspecified error,
   5 invalid parameter); which number real firmware picks is *(unconfirmed)*.
 * Redirection (TLS 16995) speaks the messages of :mod:`pytest_vpro.probes.redirection` (docs/protocols.md
   "Redirection"). The host boots from IDE-R only as real firmware does: when the console set the boot
   configuration before the reset (``AMT_BootSettingData.UseIDER`` and ``CIM_BootService.SetBootConfigRole``
   role 1), the BIOS offers IDE-R boot (``AMT_BootCapabilities.IDER``) and an IDE-R session enabled the
   device for the reboot; the BIOS then reads block 0 of the console's image (READ(10) in an IDE-R
   command) and boots it if it carries the 0x55AA signature. SOL shows the BIOS only when ``UseSOL``
   was set. After the boot the one-time options are cleared (``OptionsCleared``) and the role is
   spent, as the boot settings' descriptions say. The BIOS's other ATAPI commands (INQUIRY, MODE
   SENSE, ...) are not modelled. Kerberos on the redirection port takes a ticket for the device's
   16993 SPN *(unconfirmed)*.
 * The WebUI (GET on 16993 ``/``, ``/logon.htm``, ``/index.htm``): ``/`` is public, the other
   pages need Digest or Kerberos like WS-MAN; a device whose WebUI is off answers 404 *(unconfirmed)*.

The simulator that serves devices is :mod:`pytest_vpro.lab.amt_sim`; hellos are in :mod:`.amt_hello`, redirection
and the WebUI in :mod:`.amt_redirection`.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from pytest_vpro.lab.wsman_server import (
    Fault,
    ServerInstance,
    WsmanRequest,
    access_denied,
    amt_digest_realm,
    destination_unreachable,
    invalid_representation,
    invalid_selectors,
)
from pytest_vpro.probes import redirection as redir
from pytest_vpro.probes.amt import realm_exists, sid_to_wire
from pytest_vpro.probes.wsman import EndpointReference, resource_uri

from .amt_spec import DeviceSpec

if TYPE_CHECKING:
    from .amt_redirection import RedirectionSession

log = logging.getLogger(__name__)
HTTP_PORT, HTTPS_PORT, HELLO_PORT = 16992, 16993, 9971
REDIRECTION_TLS_PORT = 16995  # SOL/IDER over TLS (16994 is the plain one, unused once TLS is configured)


@dataclass(frozen=True)
class PowerScheme:
    """One ``AMT_SystemPowerScheme``. Descriptions are the MEBx "ME ON in Host Sleep States"
    texts seen on public MEBx screens; the GUIDs and InstanceIDs are *(unconfirmed)*."""

    instance_id: str
    description: str
    guid: str
    me_on: frozenset[str]


POWER_SCHEMES: tuple[PowerScheme, ...] = (
    PowerScheme("Intel(r) AMT Power Scheme 1", "Desktop: ON in S0", "00000000-0000-4000-8000-000000000001",
                frozenset({"S0"})),
    PowerScheme("Intel(r) AMT Power Scheme 2", "Desktop: ON in S0, ME Wake in S3, S4-5",
                "00000000-0000-4000-8000-000000000002", frozenset({"S0", "S3", "S4", "S5"})),
    PowerScheme("Intel(r) AMT Power Scheme 3", "Desktop: ON in S0, S3, S4-5", "00000000-0000-4000-8000-000000000003",
                frozenset({"S0", "S3", "S4", "S5"})),
    PowerScheme("Intel(r) AMT Power Scheme 4", "Mobile: ON in S0", "00000000-0000-4000-8000-000000000004",
                frozenset({"S0"})),
    PowerScheme("Intel(r) AMT Power Scheme 5", "Mobile: ON in S0, ME Wake in S3, S4-S5 (AC only)",
                "00000000-0000-4000-8000-000000000005", frozenset({"S0", "S3", "S4", "S5"})),
)
#: CIM power states (docs/protocols.md, "Classes the checks read") -> ACPI sleep state the host is in.
POWER_TO_SSTATE = {2: "S0", 4: "S3", 7: "S4", 8: "S5", 6: "S5"}
#: RequestPowerStateChange: requested state -> (states it may be requested from, resulting state).
POWER_TRANSITIONS: dict[int, tuple[frozenset[int], int]] = {
    2: (frozenset({4, 6, 7, 8}), 2),   # power on
    8: (frozenset({2}), 8),            # off-soft
    6: (frozenset({2, 4, 7}), 6),      # off-hard
    5: (frozenset({2}), 2),            # power cycle: back on
    10: (frozenset({2}), 2),           # master bus reset: back on
    4: (frozenset({2}), 4),            # standby (S3)
    7: (frozenset({2}), 7),            # hibernate (S4)
}
RV_OK, RV_ERROR, RV_INVALID_REFERENCE, RV_INVALID_PARAMETER = 0, 2, 4, 5
#: The realm of power control (docs/protocols.md, "realms": 5 remote control): a Kerberos user's power request
#: is refused without it.
REMOTE_CONTROL_REALM = 5
#: AMT_BootSettingData as a device with no one-time option pending holds it: the capture GWM
#: responses/amt/boot/settingdata/get.xml, without its UEFI-era properties (docs/lab.md: which firmware release
#: added which property is not public here; the console Puts back what the device returned, so it does not matter)
BOOT_SETTINGS_CLEARED = {
    "BIOSPause": "false", "BIOSSetup": "false", "BootMediaIndex": "0", "ConfigurationDataReset": "false",
    "ElementName": "Intel(r) AMT Boot Configuration Settings", "FirmwareVerbosity": "0",
    "ForcedProgressEvents": "false", "IDERBootDevice": "0", "InstanceID": "Intel(r) AMT:BootSettingData 0",
    "LockKeyboard": "false", "LockPowerButton": "false", "LockResetButton": "false", "LockSleepButton": "false",
    "OptionsCleared": "true", "OwningEntity": "Intel(r) AMT", "ReflashBIOS": "false", "UseIDER": "false",
    "UseSOL": "false", "UseSafeMode": "false", "UserPasswordBypass": "false",
}
BOOT_SETTINGS_READ_ONLY = frozenset({"OptionsCleared"})
#: the one-time options the BIOS clears after the boot
BOOT_FLAGS = ("BIOSPause", "BIOSSetup", "ConfigurationDataReset", "ForcedProgressEvents", "LockKeyboard",
              "LockPowerButton", "LockResetButton", "LockSleepButton", "ReflashBIOS", "UseIDER", "UseSOL",
              "UseSafeMode", "UserPasswordBypass")
#: AMT_BootCapabilities (GWM responses/amt/boot/capabilities/get.xml); IDER follows DeviceSpec.bios_ider_boot
BOOT_CAPABILITIES = {
    "BIOSPause": "false", "BIOSReflash": "true", "BIOSSetup": "true", "ConfigurationDataReset": "false",
    "ElementName": "Intel(r) AMT: Boot Capabilities", "ForceCDorDVDBoot": "true", "ForceDiagnosticBoot": "false",
    "ForceHardDriveBoot": "true", "ForceHardDriveSafeModeBoot": "false", "ForcePXEBoot": "true",
    "ForcedProgressEvents": "true", "IDER": "true", "InstanceID": "Intel(r) AMT:BootCapabilities 0",
    "KeyboardLock": "true", "PowerButtonLock": "false", "ResetButtonLock": "false", "SOL": "true",
    "SleepButtonLock": "false", "UserPasswordBypass": "true", "VerbosityQuiet": "false",
    "VerbosityScreenBlank": "false", "VerbosityVerbose": "false",
}
BOOT_CONFIG_ID = "Intel(r) AMT: Boot Configuration 0"
READ_ONLY_METHODS = {"GetLowAccuracyTimeSynch", "EnumerateUserAclEntries", "GetUserAclEntryEx"}


def scheme_by(key: str) -> PowerScheme:
    """Look a scheme up by InstanceID, description or GUID."""
    for s in POWER_SCHEMES:
        if key in (s.instance_id, s.description, s.guid):
            return s
    raise KeyError(key)


def _sel(uri_class: str, **selectors: str) -> EndpointReference:
    return EndpointReference(resource_uri(uri_class), selectors)


def _managed_system() -> EndpointReference:
    return _sel("CIM_ComputerSystem", CreationClassName="CIM_ComputerSystem", Name="ManagedSystem")


class DeviceModel:
    """One AMT device's state and the WS-MAN instance table it is read as (the model): what Get and Enumerate
    see. :class:`Device` serves it, and its methods change it."""

    def __init__(self, spec: DeviceSpec, record: Callable[[dict[str, Any]], None]):
        self.spec = spec
        self.in_initial_setup = spec.provisioning_state == 0  # until provisioned (CommitChanges)
        self._record = record
        self.realm = amt_digest_realm(spec.uuid)
        self.hello_wakeup: asyncio.Event | None = None  # set by the simulator's loop
        self.hellos_sent = 0
        self.sessions: set[RedirectionSession] = set()  # open SOL/IDER sessions
        self.general: dict[str, Any] = {
            "ElementName": "Intel(r) AMT: General Settings", "InstanceID": "Intel(r) AMT: General Settings",
            "NetworkInterfaceEnabled": "true", "DigestRealm": self.realm, "IdleWakeTimeout": "65535",
            "HostName": spec.host_name, "DomainName": spec.domain_name, "PingResponseEnabled": "true",
            "WsmanOnlyMode": "false", "PreferredAddressFamily": "0", "DHCPv6ConfigurationTimeout": "0",
            "DDNSUpdateEnabled": "false", "DDNSPeriodicUpdateInterval": "1440", "DDNSTTL": "900",
            "AMTNetworkEnabled": "1", "RmcpPingResponseEnabled": "true", "PowerSource": "0",
        }
        self.redirection: dict[str, Any] = {
            "CreationClassName": "AMT_RedirectionService", "ElementName": "Intel(r) AMT Redirection Service",
            "Name": "Intel(r) AMT Redirection Service", "SystemCreationClassName": "CIM_ComputerSystem",
            "SystemName": "Intel(r) AMT", "EnabledState": str(spec.redirection_state),
            "ListenerEnabled": "true" if spec.redirection_listener else "false", "AccessLog": [],
        }
        self.boot_settings: dict[str, Any] = dict(BOOT_SETTINGS_CLEARED)
        self.boot_next = False   # Boot Configuration 0 has the role of the next boot (SetBootConfigRole 1)
        self.boot_source = ""    # ChangeBootOrder's source (InstanceID of a CIM_BootSourceSetting), "" none

    # -- helpers --
    @property
    def sstate(self) -> str:
        return POWER_TO_SSTATE.get(self.spec.power_state, "S0")

    @property
    def scheme(self) -> PowerScheme:
        return scheme_by(self.spec.power_scheme)

    def me_reachable(self) -> bool:
        """The ME answers only in S-states its power policy keeps it on (or wakes it) in."""
        return self.sstate in self.scheme.me_on

    def answers_wsman(self) -> bool:
        """WS-MAN (and the WebUI) answer: the ME is reachable, and not in an initial setup that serves only the
        provisioning server (``setup_answers_wsman`` false)."""
        return self.me_reachable() and (self.spec.setup_answers_wsman or not self.in_initial_setup)

    # -- instances --
    def _instances(self) -> dict[str, Callable[[], list[dict[str, Any]]]]:
        s = self.spec
        return {
            "AMT_GeneralSettings": lambda: [dict(self.general)],
            "AMT_SetupAndConfigurationService": lambda: [{
                "CreationClassName": "AMT_SetupAndConfigurationService",
                "ElementName": "Intel(r) AMT Setup and Configuration Service",
                "Name": "Intel(r) AMT Setup and Configuration Service", "SystemCreationClassName": "CIM_ComputerSystem",
                "SystemName": "Intel(r) AMT", "EnabledState": "5", "ProvisioningMode": str(s.provisioning_mode),
                "ProvisioningState": str(s.provisioning_state), "ProvisioningServerOTP": None,
                "ZeroTouchConfigurationEnabled": "true",
            }],
            "CIM_SoftwareIdentity": lambda: [
                {"InstanceID": iid, "IsEntity": "true", "VersionString": ver}
                for iid, ver in (("Flash", s.amt_version), ("Netstack", s.amt_version), ("AMTApps", s.amt_version),
                                 ("AMT", s.amt_version), ("Sku", "16392"), ("VendorID", "8086"),
                                 ("Build Number", "1000"), ("Recovery Version", s.amt_version))
            ],
            "CIM_ComputerSystem": lambda: [{
                "CreationClassName": "CIM_ComputerSystem", "Name": "ManagedSystem", "ElementName": "Managed System",
                "EnabledState": "2" if s.power_state == 2 else "3", "RequestedState": "0",
            }],
            "CIM_AssociatedPowerManagementService": lambda: [{
                "AvailableRequestedPowerStates": [str(k) for k in sorted(POWER_TRANSITIONS)
                                                  if s.power_state in POWER_TRANSITIONS[k][0]],
                "PowerState": str(s.power_state),
                "ServiceProvided": _sel("CIM_PowerManagementService", CreationClassName="CIM_PowerManagementService",
                                        Name="Intel(r) AMT Power Management Service",
                                        SystemCreationClassName="CIM_ComputerSystem", SystemName="Intel(r) AMT"),
                "UserOfService": _managed_system(),
            }],
            "CIM_PowerManagementService": lambda: [{
                "CreationClassName": "CIM_PowerManagementService",
                "ElementName": "Intel(r) AMT Power Management Service",
                "EnabledState": "5", "Name": "Intel(r) AMT Power Management Service",
                "SystemCreationClassName": "CIM_ComputerSystem", "SystemName": "Intel(r) AMT",
            }],
            "AMT_SystemPowerScheme": lambda: [{
                "Description": p.description, "ElementName": "Intel(r) AMT Power Scheme", "InstanceID": p.instance_id,
                "SchemeGUID": base64.b64encode(uuid.UUID(p.guid).bytes_le).decode(),
            } for p in POWER_SCHEMES],
            "CIM_ElementSettingData": lambda: [{
                "IsCurrent": "1" if p == self.scheme else "2", "IsDefault": "2",
                "ManagedElement": _managed_system(),
                "SettingData": _sel("AMT_SystemPowerScheme", InstanceID=p.instance_id),
            } for p in POWER_SCHEMES],
            "AMT_RedirectionService": lambda: [dict(self.redirection)],
            "AMT_ProvisioningCertificateHash": lambda: [{
                "Description": "Certificate Hash Entry", "ElementName": name, "Enabled": str(enabled).lower(),
                "HashData": base64.b64encode(digest).decode(), "HashType": str(htype),
                "InstanceID": f"Intel(r) AMT Certificate Hash: {i}", "IsDefault": str(default).lower(),
            } for i, (htype, name, digest, enabled, default) in enumerate(s.hashes)],
            "AMT_KerberosSettingData": lambda: [{
                "ElementName": "Intel (r) AMT: Kerberos Settings", "InstanceID": "Intel (r) AMT: Kerberos Settings",
                "KrbEnabled": "true" if s.kerberos_enabled and s.kerberos_realm else "false",
                "MaximumClockTolerance": "5", "RealmName": s.kerberos_realm,
                "ServicePrincipalName": list(s.kerberos_spns),
                "ServicePrincipalProtocol": ["0", "1"][: len(s.kerberos_spns)],
                "SupportedEncryptionAlgorithms": ["0", "1", "2"], "ConfiguredEncryptionAlgorithms": ["0", "1", "2"],
            }],
            "AMT_AuthorizationService": lambda: [{
                "CreationClassName": "AMT_AuthorizationService", "ElementName": "Intel(r) AMT Authorization Service",
                "Name": "Intel(r) AMT Authorization Service", "SystemCreationClassName": "CIM_ComputerSystem",
                "SystemName": "Intel(r) AMT",
            }],
            "AMT_EthernetPortSettings": lambda: self._ethernet_ports(),
            "AMT_8021XProfile": lambda: [] if s.ieee8021x_protocol is None else [{
                "ElementName": "Intel(r) AMT 802.1x Profile", "InstanceID": "Intel(r) AMT 802.1x Profile 0",
                "Enabled": "true", "ActiveInS0": "true", "AuthenticationProtocol": str(s.ieee8021x_protocol),
                "RoamingIdentity": "", "ServerCertificateName": "", "ServerCertificateNameComparison": "2",
                "Username": f"{s.host_name.upper()}$", "Domain": s.domain_name.split(".")[0].upper(),
                "PxeTimeout": "120"}],
            "CIM_WiFiEndpointSettings": lambda: [{
                "ElementName": p["name"], "InstanceID": f"Intel(r) AMT:WiFi Endpoint Settings {p['name']}",
                "Priority": str(i + 1), "SSID": p.get("ssid", p["name"]), "BSSType": "3",
                "AuthenticationMethod": str(p["authentication"]), "EncryptionMethod": str(p["encryption"]),
            } for i, p in enumerate(s.wifi_profiles)],
            "CIM_IEEE8021xSettings": lambda: [{
                "ElementName": p["name"], "InstanceID": f"Intel(r) AMT: 8021X Settings {p['name']}",
                "AuthenticationProtocol": str(p["protocol"]), "RoamingIdentity": "",
                "ServerCertificateNameComparison": "2",
            } for p in s.wifi_profiles if p.get("protocol") is not None],
            "AMT_BootSettingData": lambda: [dict(self.boot_settings)],
            "AMT_BootCapabilities": lambda: [{**BOOT_CAPABILITIES, "IDER": "true" if s.bios_ider_boot else "false"}],
            "CIM_BootConfigSetting": lambda: [{"ElementName": "Intel(r) AMT: Boot Configuration",
                                               "InstanceID": BOOT_CONFIG_ID}],
            "CIM_BootService": lambda: [{
                "CreationClassName": "CIM_BootService", "ElementName": "Intel(r) AMT Boot Service", "EnabledState": "2",
                "Name": "Intel(r) AMT Boot Service", "OperationalStatus": "0", "RequestedState": "12",
                "SystemCreationClassName": "CIM_ComputerSystem", "SystemName": "Intel(r) AMT"}],
            "AMT_TimeSynchronizationService": lambda: [{
                "CreationClassName": "AMT_TimeSynchronizationService",
                "ElementName": "Intel(r) AMT Time Synchronization Service",
                "Name": "Intel(r) AMT Time Synchronization Service", "SystemCreationClassName": "CIM_ComputerSystem",
                "SystemName": "Intel(r) AMT", "LocalTimeSyncEnabled": "0", "TimeSource": "1",
            }],
        }

    def _ethernet_ports(self) -> list[dict[str, Any]]:
        """The wired port (InstanceID ``... Settings 0``) and, on a laptop, the wireless one (``... Settings 1``,
        PhysicalConnectionType 3: wireless LAN); the MAC addresses are made up from the UUID."""
        s = self.spec
        mac = "-".join(f"{b:02x}" for b in (b"\x00\x1c\xc0" + uuid.UUID(s.uuid).bytes[-3:]))
        ports = [(0, s.address, s.dhcp_enabled, "0", mac)]
        if s.wireless_address:
            ports.append((1, s.wireless_address, True, "3", mac[:-2] + f"{(int(mac[-2:], 16) + 1) % 256:02x}"))
        return [{
            "ElementName": "Intel(r) AMT Ethernet Port Settings",
            "InstanceID": f"Intel(r) AMT Ethernet Port Settings {n}",
            "VLANTag": "0", "SharedMAC": "true", "MACAddress": mac_, "LinkIsUp": "true",
            "LinkPolicy": ["1", "14", "16"] if n == 0 else ["1", "16"], "SharedStaticIp": "false" if dhcp else "true",
            "SharedDynamicIP": "true" if dhcp else "false", "IpSyncEnabled": "true", "DHCPEnabled": str(dhcp).lower(),
            "IPAddress": address, "SubnetMask": "255.255.0.0", "PhysicalConnectionType": kind,
        } for n, address, dhcp, kind, mac_ in ports]


class Device(DeviceModel):
    """One AMT device's WS-MAN provider (see :class:`~pytest_vpro.lab.wsman_server.Provider`): Get, Enumerate,
    Put and Invoke over its :class:`DeviceModel`, the methods, and the BIOS POST a power-on starts."""

    def _log(self, req: WsmanRequest, op: str, cls: str, params: dict[str, Any], rv: int) -> None:
        self._record({"ts": time.time(), "device": self.spec.fqdn, "address": self.spec.address, "op": op,
                      "class": cls, "params": params, "return": rv, "principal": req.principal})

    def _lookup(self, req: WsmanRequest) -> tuple[str, list[dict[str, Any]]]:
        cls = req.resource_uri.rstrip("/").rsplit("/", 1)[-1]
        table = self._instances()
        if cls not in table or resource_uri(cls) != req.resource_uri:
            raise destination_unreachable(req.resource_uri)
        return cls, table[cls]()

    def _select(self, req: WsmanRequest, instances: list[dict[str, Any]]) -> dict[str, Any]:
        """Pick the instance the selectors name; selectors naming no property are ignored, as AMT does."""
        for inst in instances:
            if all(k not in inst or str(inst[k]) == v for k, v in req.selectors.items()):
                return inst
        raise invalid_selectors()

    # -- Provider --
    def get(self, req: WsmanRequest) -> ServerInstance:
        cls, instances = self._lookup(req)
        if not instances:
            raise invalid_selectors("no such instance")
        return ServerInstance(cls, req.resource_uri, self._select(req, instances))

    def enumerate(self, req: WsmanRequest) -> list[ServerInstance]:
        cls, instances = self._lookup(req)
        return [ServerInstance(cls, req.resource_uri, i) for i in instances]

    def put(self, req: WsmanRequest, properties: dict[str, Any]) -> ServerInstance:
        cls, instances = self._lookup(req)
        targets = {"AMT_GeneralSettings": self.general, "AMT_RedirectionService": self.redirection,
                   "AMT_BootSettingData": self.boot_settings}
        if cls not in targets:
            raise Fault("Sender", "wsa:ActionNotSupported", f"{cls} cannot be changed with Put")
        target = targets[cls]
        unknown = set(properties) - set(target)
        if unknown:
            raise invalid_representation(f"unknown properties for {cls}: {sorted(unknown)}")
        if cls == "AMT_BootSettingData":
            read_only = sorted(set(properties) & BOOT_SETTINGS_READ_ONLY)
            if read_only:
                raise invalid_representation(f"read-only properties of {cls}: {read_only}")
            flags = [k for k, v in properties.items() if k in BOOT_FLAGS and str(v).lower() not in ("true", "false")]
            if flags:
                raise invalid_representation(f"{cls}: {flags} must be true or false")
            properties = {k: str(v).lower() if k in BOOT_FLAGS else str(v) for k, v in properties.items()}
            properties["OptionsCleared"] = "false" if any(properties.get(k, target.get(k)) == "true"
                                                          for k in BOOT_FLAGS) else "true"
        redirection_states = ("32768", "32769", "32770", "32771")
        if cls == "AMT_RedirectionService" and str(properties.get("EnabledState", "32771")) not in redirection_states:
            raise invalid_representation("EnabledState must be 32768..32771")
        changed = {k: v for k, v in properties.items() if target.get(k) != v}
        target.update(properties)
        if cls == "AMT_RedirectionService":
            self.spec.redirection_state = int(target["EnabledState"])
            self.spec.redirection_listener = str(target["ListenerEnabled"]).lower() == "true"
        if cls == "AMT_GeneralSettings":
            self.spec.host_name, self.spec.domain_name = target["HostName"], target["DomainName"]
        self._log(req, "Put", cls, changed, RV_OK)
        return ServerInstance(cls, req.resource_uri, dict(target))

    def invoke(self, req: WsmanRequest, method: str, params: dict[str, Any]) -> ServerInstance:
        cls, instances = self._lookup(req)
        handler = getattr(self, f"_m_{cls}_{method}", None)
        if handler is None:
            raise Fault("Sender", "wsa:ActionNotSupported", f"{cls} has no method {method}", "",
                        "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault")
        if instances:
            self._select(req, instances)
        out = handler(req, params)
        if method not in READ_ONLY_METHODS:
            self._log(req, method, cls, {k: v for k, v in params.items() if "Password" not in k},
                      int(out.get("ReturnValue", 0)))
        return ServerInstance(f"{method}_OUTPUT", req.resource_uri, out)

    # -- methods --
    def _m_CIM_PowerManagementService_RequestPowerStateChange(self, req, params) -> dict[str, Any]:
        if "@" in req.principal and not any(REMOTE_CONTROL_REALM in e.realms for e in self.spec.acl
                                            if e.kerberos_sid):
            raise access_denied()  # a Kerberos user without the remote control realm (lab: any Kerberos entry's)
        try:
            wanted = int(str(params.get("PowerState", "")).strip())
        except ValueError:
            return {"ReturnValue": RV_INVALID_PARAMETER}
        if wanted not in POWER_TRANSITIONS:
            return {"ReturnValue": RV_INVALID_PARAMETER}
        allowed_from, result = POWER_TRANSITIONS[wanted]
        if self.spec.power_state not in allowed_from:
            return {"ReturnValue": RV_ERROR}
        if wanted in (6, 8) and self.spec.power_off_ignored:
            return {"ReturnValue": RV_OK}  # accepted, and nothing happens
        boots = result == 2 and (wanted in (5, 10) or self.spec.power_state != 2)
        self.spec.power_state = result
        if boots:
            asyncio.get_running_loop().create_task(self.post())
        return {"ReturnValue": RV_OK}

    def _m_CIM_BootConfigSetting_ChangeBootOrder(self, req, params) -> dict[str, Any]:
        """No ``Source``: no forced boot device; a source: a ``CIM_BootSourceSetting`` reference (AMT 5.0 and
        earlier take the parameter as ``source``: GWM ``cim/boot/configsetting.go``)."""
        source = params.get("Source", params.get("source"))
        if not source:
            self.boot_source = ""
            return {"ReturnValue": RV_OK}
        if not isinstance(source, dict) or not source.get("Selectors", {}).get("InstanceID"):
            return {"ReturnValue": RV_INVALID_PARAMETER}
        self.boot_source = source["Selectors"]["InstanceID"]
        return {"ReturnValue": RV_OK}

    def _m_CIM_BootService_SetBootConfigRole(self, req, params) -> dict[str, Any]:
        """Role 1 (IsNextSingleUse) or 32768 (IsNotNext) for ``Intel(r) AMT: Boot Configuration 0``."""
        config = params.get("BootConfigSetting")
        if not isinstance(config, dict) or config.get("Selectors", {}).get("InstanceID") != BOOT_CONFIG_ID:
            return {"ReturnValue": RV_INVALID_REFERENCE}
        role = str(params.get("Role", "")).strip()
        if role not in ("1", "32768"):
            return {"ReturnValue": RV_INVALID_PARAMETER}
        self.boot_next = role == "1"
        return {"ReturnValue": RV_OK}

    # -- the host boots (BIOS POST) --
    async def post(self) -> None:
        """The BIOS starts: it takes the one-time boot options (and clears them), shows its banner over SOL if
        UseSOL was set, and boots from IDE-R if the console configured it and an IDE-R session serves it."""
        settings, configured = dict(self.boot_settings), self.boot_next
        self.boot_settings.update({k: "false" for k in BOOT_FLAGS}, IDERBootDevice="0", OptionsCleared="true")
        self.boot_next = False  # the role was for this boot only
        use_sol = configured and settings.get("UseSOL") == "true"
        use_ider = configured and settings.get("UseIDER") == "true" and self.spec.bios_ider_boot
        sol = [x for x in self.sessions if x.started and x.kind == redir.SOL] if use_sol else []
        ider = next((x for x in self.sessions if x.started and x.kind == redir.IDER and x.ider_enabled), None)

        def say(text: str) -> None:
            for x in sol:
                x.send_text(text)
        say(f"Intel(R) Active Management Technology {self.spec.amt_version}\r\n"
            "Press <CTRL-P> to enter the MEBx setup menu\r\nPress <F2> to enter BIOS Setup\r\n")
        if not use_ider or ider is None:
            why = ("no IDE-R boot requested" if not (configured and settings.get("UseIDER") == "true") else
                   "IDE-R boot is disabled in BIOS Setup" if not self.spec.bios_ider_boot else "no IDE-R session")
            say(f"Booting from hard disk... ({why})\r\n")
            return
        cdrom = settings.get("IDERBootDevice") == "1"
        sector = await ider.read_block(0, cdrom)
        if len(sector) >= redir.SECTOR and sector[510:512] == b"\x55\xaa":
            label = sector[:510].split(b"\0", 1)[0].decode("ascii", "replace")
            say(f"Booting from IDE-R {'CD-ROM' if cdrom else 'floppy'}: {label}\r\n")
            self._record({"ts": time.time(), "device": self.spec.fqdn, "address": self.spec.address,
                          "op": "IDERBoot", "class": "AMT_RedirectionService", "params": {"label": label},
                          "return": RV_OK, "principal": ider.principal})
        else:
            say("IDE-R: no bootable image\r\n")

    def _m_AMT_SetupAndConfigurationService_Unprovision(self, req, params) -> dict[str, Any]:
        if self.spec.provisioning_state == 0:
            return {"ReturnValue": RV_ERROR}
        self.spec.provisioning_state = 0
        self.in_initial_setup = True  # factory defaults (CM2007's FullUnprovision, docs/protocols.md): set up anew
        self.hellos_sent = 0
        if self.hello_wakeup is not None:
            self.hello_wakeup.set()
        return {"ReturnValue": RV_OK}

    def _m_AMT_SetupAndConfigurationService_CommitChanges(self, req, params) -> dict[str, Any]:
        self.spec.provisioning_state = 2
        self.in_initial_setup = False
        return {"ReturnValue": RV_OK}

    def _m_AMT_SystemPowerScheme_SetPowerScheme(self, req, params) -> dict[str, Any]:
        key = req.selectors.get("InstanceID") or str(params.get("InstanceID", ""))
        try:
            self.spec.power_scheme = scheme_by(key).description
        except KeyError:
            return {"ReturnValue": RV_INVALID_PARAMETER}
        return {"ReturnValue": RV_OK}

    def _m_AMT_TimeSynchronizationService_GetLowAccuracyTimeSynch(self, req, params) -> dict[str, Any]:
        return {"Ta0": str(int(time.time() + self.spec.clock_offset_s)), "ReturnValue": RV_OK}

    def _m_AMT_TimeSynchronizationService_SetHighAccuracyTimeSynch(self, req, params) -> dict[str, Any]:
        try:
            ta0, tm1 = int(params["Ta0"]), int(params["Tm1"])
        except (KeyError, ValueError):
            return {"ReturnValue": RV_INVALID_PARAMETER}
        self.spec.clock_offset_s = tm1 - ta0 if abs(tm1 - time.time()) < 3600 else self.spec.clock_offset_s
        return {"ReturnValue": RV_OK}

    def _m_AMT_AuthorizationService_EnumerateUserAclEntries(self, req, params) -> dict[str, Any]:
        try:
            start = int(params.get("StartIndex", "1") or 1)
        except ValueError:
            return {"ReturnValue": RV_INVALID_PARAMETER}
        handles = [str(i + 1) for i in range(len(self.spec.acl))][max(start - 1, 0): max(start - 1, 0) + 50]
        return {"TotalCount": str(len(self.spec.acl)), "HandlesCount": str(len(handles)), "Handles": handles,
                "ReturnValue": RV_OK}

    def _m_AMT_AuthorizationService_GetUserAclEntryEx(self, req, params) -> dict[str, Any]:
        try:
            entry = self.spec.acl[int(params.get("Handle", "0")) - 1]
        except (ValueError, IndexError):
            return {"ReturnValue": RV_INVALID_PARAMETER}
        out: dict[str, Any] = {}
        if entry.kerberos_sid:  # the binary SID, base64 (AMT_AuthorizationService MOF: a Base64 uint8[])
            out["KerberosUserSid"] = sid_to_wire(entry.kerberos_sid)
        else:
            out["DigestUsername"] = entry.digest_user
        realms = [r for r in entry.realms if realm_exists(r, self.spec.version_tuple)]  # 20/21 only from 4.0
        out.update({"AccessPermission": str(entry.access), "Realms": [str(r) for r in realms],
                    "ReturnValue": RV_OK})
        return out
