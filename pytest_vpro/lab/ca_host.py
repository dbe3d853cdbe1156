"""The issuing CA's host, as the site server and the checks see it: WinRM/WMI with CertSvc's registry, RPC 135.

The lab's certificates are made by :mod:`pytest_vpro.lab.pki`; this is the Windows side of ``ca01``: what
Certificate Services keeps in the registry, read remotely with ``StdRegProv`` over WinRM on ``5985``/``5986``
(the site server simulator's WinRM machinery, :class:`~pytest_vpro.lab.site_server.WinrmServer`, with a class
table of its own, as :mod:`pytest_vpro.lab.windows_client` does), and a listener on TCP 135, the RPC endpoint
mapper through which the site server reaches the CA's DCOM enrollment interface (ICertRequest). The lab accepts
and closes those connections: no RPC is spoken, only the port's reachability is real.

Registry (Microsoft AD CS, Windows Server 2003; MS-CSRA 3.1.1.7 for the access rights):

* ``HKLM\\SYSTEM\\CurrentControlSet\\Services\\CertSvc\\Configuration``: ``Active`` (REG_SZ) names the CA;
* ``...\\Configuration\\<CA name>``: ``CAType`` (DWORD: 0 enterprise root, 1 enterprise subordinate, 3 and 4
  stand-alone), ``CAServerName``, ``CommonName``, and ``Security`` (REG_BINARY): a self-relative security
  descriptor whose ACE masks are CA rights: ``CA_ACCESS_ADMIN`` 0x1 (Manage CA), ``CA_ACCESS_OFFICER`` 0x2 (Issue
  and Manage Certificates), ``CA_ACCESS_AUDITOR`` 0x4, ``CA_ACCESS_OPERATOR`` 0x8, ``CA_ACCESS_READ`` 0x100,
  ``CA_ACCESS_ENROLL`` 0x200 (Request Certificates);
* ``...\\<CA name>\\PolicyModules\\CertificateAuthority_MicrosoftDefault.Policy``: ``RequestDisposition`` (DWORD;
  ``REQDISP_ISSUE`` 0x1, the enterprise default: issue at once; ``REQDISP_PENDING`` 0x100: every request waits
  for a certificate manager).

Run in the lab by :mod:`pytest_vpro.lab.builder` (a thread, one event loop). This module knows nothing of pytest.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from impacket.ldap import ldaptypes

from pytest_vpro.lab.service import BackgroundService
from pytest_vpro.lab.site_provider import SiteServerProvider
from pytest_vpro.lab.winrm_host import WinrmHostSettings
from pytest_vpro.lab.winrm_server import WinrmServer
from pytest_vpro.lab.wsman_server import (
    Fault,
    ServerInstance,
    WsmanRequest,
)

CERTSVC_KEY = r"SYSTEM\CurrentControlSet\Services\CertSvc\Configuration"
POLICY_MODULE = "CertificateAuthority_MicrosoftDefault.Policy"
CA_ACCESS = {"ADMIN": 0x1, "OFFICER": 0x2, "AUDITOR": 0x4, "OPERATOR": 0x8, "READ": 0x100, "ENROLL": 0x200}
REQDISP_ISSUE, REQDISP_PENDING = 0x1, 0x100
ENUM_ENTERPRISE_SUBCA = 1
SE_DACL_PRESENT, SE_SELF_RELATIVE = 0x0004, 0x8000


def pack_security_descriptor(owner: str, aces: list[tuple[str, int]]) -> bytes:
    """A self-relative security descriptor (MS-DTYP 2.4.6) with an owner and a DACL of allow ACEs (sid, mask)."""
    sd = ldaptypes.SR_SECURITY_DESCRIPTOR()
    sd["Revision"], sd["Sbz1"], sd["Control"] = b"\x01", b"\x00", SE_SELF_RELATIVE | SE_DACL_PRESENT
    sd["OwnerSid"] = ldaptypes.LDAP_SID()
    sd["OwnerSid"].fromCanonical(owner)
    sd["GroupSid"], sd["Sacl"] = b"", b""
    acl = ldaptypes.ACL()
    acl["AclRevision"], acl["Sbz1"], acl["Sbz2"] = 2, 0, 0
    acl.aces = []
    for sid, mask in aces:
        ace = ldaptypes.ACE()
        ace["AceType"], ace["AceFlags"] = ldaptypes.ACCESS_ALLOWED_ACE.ACE_TYPE, 0
        body = ldaptypes.ACCESS_ALLOWED_ACE()
        body["Mask"] = ldaptypes.ACCESS_MASK()
        body["Mask"]["Mask"] = mask
        body["Sid"] = ldaptypes.LDAP_SID()
        body["Sid"].fromCanonical(sid)
        ace["Ace"] = body
        acl.aces.append(ace)
    sd["Dacl"] = acl
    return sd.getData()


@dataclass
class CaHostSpec(WinrmHostSettings):
    """The CA host: its name and address, the CA's registry settings, RPC; its WinRM as every lab Windows host's
    (:class:`~pytest_vpro.lab.winrm_host.WinrmHostSettings`)."""

    address: str
    fqdn: str
    ca_name: str
    domain_sid: str
    site_server_sid: str = ""           # the site server's computer account: granted Issue and Manage
    officer_for_site_server: bool = True
    request_disposition: int = REQDISP_ISSUE
    ca_type: int = ENUM_ENTERPRISE_SUBCA
    rpc: bool = True                    # the RPC endpoint mapper (TCP 135) accepts connections
    rpc_port: int = 135
    registry: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        full = CA_ACCESS["ADMIN"] | CA_ACCESS["OFFICER"] | CA_ACCESS["READ"] | CA_ACCESS["ENROLL"]
        aces = [("S-1-5-32-544", CA_ACCESS["ADMIN"] | CA_ACCESS["OFFICER"]),  # BUILTIN\Administrators
                (f"{self.domain_sid}-512", full), (f"{self.domain_sid}-519", full),  # Domain, Enterprise Admins
                ("S-1-5-11", CA_ACCESS["READ"] | CA_ACCESS["ENROLL"])]  # Authenticated Users
        if self.site_server_sid and self.officer_for_site_server:
            aces.append((self.site_server_sid, CA_ACCESS["OFFICER"] | CA_ACCESS["READ"]))
        ca_key = rf"HKLM\{CERTSVC_KEY}\{self.ca_name}"
        self.registry = {
            rf"HKLM\{CERTSVC_KEY}": {"Active": self.ca_name},
            ca_key: {"CAType": self.ca_type, "CAServerName": self.fqdn, "CommonName": self.ca_name,
                     "Security": pack_security_descriptor("S-1-5-32-544", aces)},
            rf"{ca_key}\PolicyModules": {"Active": POLICY_MODULE},
            rf"{ca_key}\PolicyModules\{POLICY_MODULE}": {"RequestDisposition": self.request_disposition},
            **self.registry,
        }


class CaHostProvider(SiteServerProvider):
    """The CA host's WMI classes on the site server provider's routing, WQL and StdRegProv code."""

    def __init__(self, spec: CaHostSpec):
        super().__init__(spec, None)  # type: ignore[arg-type]

    def classes(self) -> dict[str, dict[str, Callable[[], list[dict[str, Any]]]]]:
        s: CaHostSpec = self.spec  # type: ignore[assignment]
        return {
            "root/cimv2": {
                "Win32_OperatingSystem": lambda: [{
                    "Caption": "Microsoft(R) Windows(R) Server 2003, Enterprise Edition", "Version": "5.2.3790",
                    "CSDVersion": "Service Pack 2", "ServicePackMajorVersion": 2, "ProductType": 3,
                    "CSName": s.fqdn.split(".")[0].upper()}],
                "Win32_Service": lambda: [{
                    "Name": "CertSvc", "DisplayName": "Certificate Services", "State": "Running", "Started": True,
                    "StartMode": "Auto", "PathName": r"C:\WINDOWS\system32\certsrv.exe"}],
            },
            "root/default": {"StdRegProv": lambda: []},
        }

    def put(self, req: WsmanRequest, properties: dict[str, Any]) -> ServerInstance:
        raise Fault("Sender", "wsman:AccessDenied", "the lab CA host's WMI classes are read-only over WinRM")

    def invoke(self, req: WsmanRequest, method: str, params: dict[str, Any]) -> ServerInstance:
        name, _fn = self._table(req.resource_uri)
        if name == "StdRegProv" and method in ("GetStringValue", "GetDWORDValue", "GetBinaryValue", "EnumKey"):
            return ServerInstance(f"{method}_OUTPUT", req.resource_uri, self._registry(method, params))
        raise Fault("Sender", "wsa:ActionNotSupported", f"{name} has no method {method} in the lab", "",
                    "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault")


class CaHost(BackgroundService):
    """WinRM (5985/5986) and the RPC endpoint mapper port (135) of the CA host."""

    thread_name = "ca-host"
    start_timeout = 30.0

    def __init__(self, spec: CaHostSpec):
        self.spec = spec
        self.server: WinrmServer | None = None
        self._rpc: asyncio.AbstractServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.start_seconds = 0.0

    def __repr__(self) -> str:
        return f"CaHost({self.spec.fqdn!r} at {self.spec.address})"

    @staticmethod
    async def _on_rpc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()  # reachability only: the lab speaks no DCE/RPC

    async def start_async(self) -> None:
        t0 = time.perf_counter()
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        s = self.spec
        self.server = WinrmServer()
        self.server.add_host(s.address, s.fqdn, s, lambda: CaHostProvider(s))
        try:
            await self.server.start()
            if s.rpc:
                self._rpc = await asyncio.start_server(self._on_rpc, s.address, s.rpc_port, reuse_address=True)
        except BaseException:
            await self.stop_async()
            raise
        self.start_seconds = time.perf_counter() - t0

    async def stop_async(self) -> None:
        if self._rpc is not None:
            self._rpc.close()
            await self._rpc.wait_closed()
            self._rpc = None
        if self.server is not None:
            await self.server.stop()
            self.server = None
