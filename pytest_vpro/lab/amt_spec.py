"""A simulated Intel AMT PC's specification (what an estate file lists): plain data, no aiohttp, so the lab's
faults can change it without the [lab] extra. The device that serves it is :mod:`pytest_vpro.lab.amt_device`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: AMT before 3.2.1 had no WS-MAN (only the legacy EOI SOAP services): such a device answers 404 on ``/wsman``.
FIRST_WSMAN_VERSION = (3, 2, 1)


@dataclass
class AclEntry:
    """A user ACL entry: a Kerberos SID (or a digest user name) and its realms (docs/protocols.md, "Classes the
    checks read").

    ``kerberos_sid`` is written here as text (S-1-...); the device sends it as real firmware does, the base64
    of the binary SID, and leaves out the realms its version does not have (20, 21 before AMT 4.0)."""

    kerberos_sid: str = ""
    digest_user: str = ""
    realms: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 7, 12, 13])
    access: int = 2  # 0 local, 1 network, 2 any


@dataclass
class DeviceSpec:
    """Everything that makes one simulated AMT PC (an estate file lists these)."""

    fqdn: str
    address: str
    uuid: str
    amt_version: str = "6.2.10"
    provisioning_state: int = 2
    provisioning_mode: int = 1
    power_state: int = 2
    power_scheme: str = "Desktop: ON in S0, ME Wake in S3, S4-5"
    redirection_state: int = 32771
    redirection_listener: bool = True
    # (type, name, digest, enabled, default)
    hashes: list[tuple[int, str, bytes, bool, bool]] = field(default_factory=list)
    host_name: str = ""
    domain_name: str = ""
    digest_user: str = "admin"
    digest_password: str = field(default="P@ssw0rd", repr=False)
    kerberos_realm: str = ""
    kerberos_keytab: str = ""
    kerberos_spns: list[str] = field(default_factory=list)
    kerberos_enabled: bool = True
    max_token_bytes: int = 4096
    acl: list[AclEntry] = field(default_factory=list)
    clock_offset_s: float = 0.0
    latency_ms: float = 0.0
    tls_cert: str = ""
    tls_key: str = ""
    #: "modern" (TLS 1.2+) or "legacy" (TLS 1.0 only, AES-CBC-SHA: AMT 3.2.1-6.x; docs/protocols.md "TLS")
    tls_profile: str = "modern"
    send_hellos: bool = True
    #: False (a lab of 2009): in its initial setup (ProvisioningState 0 from the start, until CommitChanges) the
    #: device answers no WS-MAN and no WebUI, as real firmware (docs/protocols.md "An un-provisioned device")
    setup_answers_wsman: bool = True
    provision_server: tuple[str, int] | None = None
    hello_interval: float = 1.0
    hello_max_retries: int = 15
    hello_mode: str = "PKI"
    pid: str = ""
    dhcp_enabled: bool = True            # AMT_EthernetPortSettings.DHCPEnabled of the wired port
    wireless_address: str = ""           # a wireless port (Ethernet Port Settings 1) with this address
    ieee8021x_protocol: int | None = None  # wired 802.1X (AMT_8021XProfile) AuthenticationProtocol, None: off
    #: wireless profiles: {"name", "ssid", "authentication" (CIM_WiFiEndpointSettings.AuthenticationMethod),
    #: "encryption" (EncryptionMethod), "protocol" (CIM_IEEE8021xSettings.AuthenticationProtocol, for 802.1X)}
    wifi_profiles: list[dict[str, Any]] = field(default_factory=list)
    webui_enabled: bool = True           # the WebUI on 16993 (the site's "Enable Web UI", pushed at provisioning)
    power_off_ignored: bool = False      # RequestPowerStateChange(8/6) answers 0 but the host stays on
    bios_ider_boot: bool = True          # the BIOS offers IDE-R boot (AMT_BootCapabilities.IDER); off in BIOS Setup
    #: a second password the admin account answers to (a MEBx password provisioning did not replace); "" none
    digest_also_accepts: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        host, _, domain = self.fqdn.partition(".")
        self.host_name = self.host_name or host
        self.domain_name = self.domain_name or domain
        self.hashes = [(int(t), n, bytes.fromhex(d) if isinstance(d, str) else bytes(d), bool(e), bool(f))
                       for t, n, d, e, f in self.hashes]
        self.acl = [a if isinstance(a, AclEntry) else AclEntry(**a) for a in self.acl]
        if self.provision_server is not None:
            self.provision_server = (str(self.provision_server[0]), int(self.provision_server[1]))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DeviceSpec":
        return cls(**data)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.amt_version.split(".")[:3] if p.isdigit())

    @property
    def has_wsman(self) -> bool:
        return self.version_tuple >= FIRST_WSMAN_VERSION
