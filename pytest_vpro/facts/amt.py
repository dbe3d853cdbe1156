"""AMT over WS-MAN: this client's Intel AMT read as the tool (``facts.amt``) and as the console user
(``facts.console.amt``), its Web UI, and the admin logins the checks try. Reads only: AMT's writes are the
disruptive actions' (``pytest_vpro/actions/``).

One kept-alive WS-MAN session per client and identity; a device that does not answer costs one timeout for all
its reads (AMT's own network stack, 16992-16995, is its own channel: it says nothing of the PC's OS).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..probes import webui as webui_probe
from ..probes.amt import (
    AclEntry,
    AmtDevice,
    CertificateHash,
    ClockReading,
    EthernetPort,
    GeneralSettings,
    KerberosSettings,
    PowerPolicy,
    PowerStatus,
    Provisioning,
    Redirection,
    Version,
    WifiProfile,
)
from ..probes.kerberos import NegotiateAuth
from ..probes.wsman import AuthFailed
from .core import key

if TYPE_CHECKING:
    from . import Facts


class AmtReads:
    """The reads of :class:`~pytest_vpro.probes.amt.AmtDevice` a check may make, each a fact of this client."""

    prefix = "amt"  # of the facts' names: amt.<read>

    def __init__(self, facts: "Facts", session: Callable[[], AmtDevice]) -> None:
        self.facts, self._session = facts, session

    def _read(self, read: str) -> Any:
        facts = self.facts
        return facts.per_host(f"{facts.target.name}:amt", key(self.prefix, read),
                              lambda: self._noting_tls(self._session(), read))

    def _noting_tls(self, device: AmtDevice, read: str) -> Any:
        """``device.<read>()``, noting what its TLS session negotiated (:meth:`AmtFacet.tls`)."""
        try:
            return getattr(device, read)()
        finally:
            negotiated = getattr(getattr(device, "client", None), "negotiated", None)
            if negotiated is not None:
                self.facts.amt_negotiated = str(negotiated)

    def provisioning(self) -> Provisioning:
        """``AMT_SetupAndConfigurationService``: provisioning state and mode."""
        return self._read("provisioning")

    def version(self) -> Version:
        """``CIM_SoftwareIdentity``: the firmware's version."""
        return self._read("version")

    def general_settings(self) -> GeneralSettings:
        """``AMT_GeneralSettings``: host and domain name and the other general settings."""
        return self._read("general_settings")

    def power_state(self) -> PowerStatus:
        """``CIM_AssociatedPowerManagementService``: the PC's power state."""
        return self._read("power_state")

    def power_schemes(self) -> list[PowerPolicy]:
        """``AMT_SystemPowerScheme``: the power packages the firmware offers."""
        return self._read("power_schemes")

    def power_policy(self) -> PowerPolicy:
        """``CIM_ElementSettingData``: the power package in force (in which states AMT answers)."""
        return self._read("power_policy")

    def redirection(self) -> Redirection:
        """``AMT_RedirectionService``: SOL and IDE-R listener and enabled state."""
        return self._read("redirection")

    def certificate_hashes(self) -> list[CertificateHash]:
        """``AMT_ProvisioningCertificateHash``: the root hashes the firmware trusts for provisioning."""
        return self._read("certificate_hashes")

    def kerberos_settings(self) -> KerberosSettings:
        """``AMT_KerberosSettingData``: realm and key version for Kerberos users."""
        return self._read("kerberos_settings")

    def acl_entries(self) -> list[AclEntry]:
        """``AMT_AuthorizationService``: the user ACL entries (Digest and Kerberos users and their realms)."""
        return self._read("acl_entries")

    def clock(self) -> ClockReading:
        """``AMT_TimeSynchronizationService.GetLowAccuracyTimeSynch``: the firmware's clock."""
        return self._read("clock")

    def ethernet_settings(self) -> list[EthernetPort]:
        """``AMT_EthernetPortSettings``: addresses and DHCP of each port."""
        return self._read("ethernet_settings")

    def wired_8021x_protocols(self) -> list[int]:
        """``AMT_8021XProfile``: the enabled 802.1X protocols of the wired profile."""
        return self._read("wired_8021x_protocols")

    def wifi_profiles(self) -> list[WifiProfile]:
        """``CIM_WiFiEndpointSettings`` (and their ``CIM_IEEE8021xSettings``): the wireless profiles."""
        return self._read("wifi_profiles")


class ConsoleAmt(AmtReads):
    """This client's AMT over TLS 16993 as the console user (Kerberos), as the OOB console connects."""

    prefix = "console_amt"


class AmtFacet(AmtReads):
    """``facts.amt``: this client's AMT as the tool (``credentials.amt``), its Web UI, its logins."""

    def __init__(self, facts: "Facts") -> None:
        super().__init__(facts, facts.connect.amt)

    def provisioned(self) -> str | None:
        """Why this client's ME counts as provisioned (the site's word first: ``SMS_R_System.AMTStatus`` 3 or its
        log's completed provisioning, else the ME's own ProvisioningState 2), or None. Before provisioning real
        firmware answers WS-MAN only to the provisioning server (docs/protocols.md "An un-provisioned device"):
        the checks read the ME over WS-MAN only when this says why."""
        status = self.facts.site.provisioning_status()
        return status.by_site() or status.me_provisioned()

    def tls(self) -> str:
        """What this client's WS-MAN session over TLS used ("TLS 1.0, AES128-SHA (legacy fallback)"), once it
        has answered; "" before, or when the session is not over TLS."""
        return self.facts.amt_negotiated

    def spn(self, port: int | None = None) -> str:
        """This client's AMT service principal: ``HTTP/<fqdn>:<port>@<REALM>`` (the port is part of it)."""
        env = self.facts.env
        return f"HTTP/{self.facts.target.name}:{port or env.expected['ports']['amt_https']}@{env.site.realm}"

    def login(self, user: str, password: str) -> bool:
        """One Digest Get of AMT_GeneralSettings on 16993 as ``user``: True if accepted, False if refused (401).
        Read-only; a device that does not answer is a :class:`ProbeError`."""
        def attempt() -> bool:
            device = self.facts.connect.digest_amt(user, password)
            try:
                device.general_settings()
                return True
            except AuthFailed:
                return False
            finally:
                device.client.close()
        return self.facts.per_host(self.facts.target.name, key("amt.login", user), attempt)

    def webui(self, page: str = "/", *, login: bool = False) -> Any:
        """GET ``https://<fqdn>:16993<page>`` (:mod:`pytest_vpro.probes.webui`); with ``login``, as the console
        user with Kerberos and mutual authentication, as Internet Explorer logs on with Windows authentication."""
        facts = self.facts
        env = facts.env
        url = f"https://{facts.target.name}:{env.expected['ports']['amt_https']}{page}"

        def fetch() -> Any:
            auth = NegotiateAuth(facts.connect.console_credentials(), env.site.realm, mutual=True).for_url(url) \
                if login else None
            return webui_probe.get(url, ca_bundle=env.pki.get("trusted_roots"), timeout=env.timeouts["read"],
                                   auth=auth, connect_timeout=env.timeouts["connect"],
                                   legacy_ciphers=facts.connect.legacy_ciphers)
        return facts.per_host(facts.target.name, key("webui", page, login), fetch)
