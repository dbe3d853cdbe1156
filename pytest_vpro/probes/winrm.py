"""Read-only WMI over WinRM (WS-Management), on top of :class:`pytest_vpro.probes.wsman.WsmanClient`.

Facts from Microsoft's WinRM documentation (MS-WSMV) as the WinRM clients use them:

* a WMI class is the resource URI ``http://schemas.microsoft.com/wbem/wsman/1/wmi/<namespace>/<Class>``,
  e.g. ``.../wmi/root/cimv2/Win32_OperatingSystem``, ``.../wmi/root/sms/site_LAB/SMS_Site``,
  ``.../wmi/root/default/StdRegProv``;
* a WQL query is an Enumerate of ``.../wmi/<namespace>/*`` with
  ``<w:Filter Dialect="http://schemas.microsoft.com/wbem/wsman/1/WQL">SELECT ...</w:Filter>``;
* a method is ``Action = <resource URI>/<Method>`` with a ``<Method>_INPUT`` body (as for AMT);
  ``StdRegProv.GetStringValue``/``GetDWORDValue`` take ``hDefKey`` (hive number), ``sSubKeyName``,
  ``sValueName`` and answer ``sValue``/``uValue`` and ``ReturnValue`` (0 found; non-zero is a Win32 error such as
  2, not found).

WinRM answers every property as text; :func:`typed` turns the known numeric and boolean properties
(:data:`PROPERTY_TYPES`) and CIM datetimes into Python values. This probe never changes a server: only the
methods in :data:`READ_ONLY_METHODS` can be invoked, anything else raises :class:`NotReadOnly` before a byte is
sent.

Authentication (docs/protocols.md, "WinRM authentication"): Windows' WinRM service has ``Auth/Kerberos`` and
``Auth/Negotiate`` on and ``Auth/Basic`` off by default, on the client side too; so :func:`select_auth`, which the
checks use, offers Kerberos first (``Negotiate`` with a Kerberos token for ``HTTP/<fqdn>`` without a port, as
WinRM registers it, with mutual authentication): a ``kerberos`` credential through requests-kerberos
(``HTTPKerberosAuth``, the caller's ticket cache), a user with a password through the console's GSSAPI code
(:mod:`pytest_vpro.probes.kerberos`, a private ticket cache). HTTP Basic comes second, and only for a host the
environment names in ``credentials.winrm.basic_hosts``, and only over https. WinRM over http encrypts each
message with the SPNEGO session key (MS-WSMV); this probe does not implement that wrap, so it speaks WinRM over
https (5986) only. Credentials go only to the host the environment names (the URL's host must be that host or
its address), and no redirect is ever followed (:class:`~pytest_vpro.probes.wsman.Redirected`).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests

from pytest_vpro.probes import errors
from pytest_vpro.probes.kerberos import KdcTimeout, KerberosError, NegotiateAuth
from pytest_vpro.probes.wsman import AuthFailed, ConfigurationError, Instance, KerberosAuth, WsmanClient

WMI_BASE = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
WQL_DIALECT = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
WINRM_PORT_HTTP, WINRM_PORT_HTTPS = 5985, 5986
CIMV2, DEFAULT = "root/cimv2", "root/default"

#: Registry hives as StdRegProv numbers them (WMI StdRegProv documentation).
HIVES = {"HKEY_CLASSES_ROOT": 0x80000000, "HKCR": 0x80000000, "HKEY_CURRENT_USER": 0x80000001,
         "HKCU": 0x80000001, "HKEY_LOCAL_MACHINE": 0x80000002, "HKLM": 0x80000002,
         "HKEY_USERS": 0x80000003, "HKU": 0x80000003, "HKEY_CURRENT_CONFIG": 0x80000005, "HKCC": 0x80000005}

#: The only methods this probe will call: reads that change nothing.
READ_ONLY_METHODS = frozenset({
    ("StdRegProv", "GetStringValue"), ("StdRegProv", "GetDWORDValue"), ("StdRegProv", "GetExpandedStringValue"),
    ("StdRegProv", "GetMultiStringValue"), ("StdRegProv", "GetBinaryValue"), ("StdRegProv", "GetQWORDValue"),
    ("StdRegProv", "EnumKey"), ("StdRegProv", "EnumValues"), ("StdRegProv", "CheckAccess"),
})

#: Properties that are not strings, per class (WMI class documentation); everything else stays text.
PROPERTY_TYPES: dict[str, dict[str, type]] = {
    "Win32_OperatingSystem": {"ServicePackMajorVersion": int, "ServicePackMinorVersion": int, "ProductType": int},
    "Win32_ComputerSystem": {"TotalPhysicalMemory": int, "PartOfDomain": bool, "DomainRole": int},
    "Win32_Service": {"Started": bool, "ProcessId": int, "AcceptStop": bool},
    "Win32_OptionalFeature": {"InstallState": int},
    "Win32_ServerFeature": {"ID": int, "ParentID": int},
    "Win32_UTCTime": {"Year": int, "Month": int, "Day": int, "Hour": int, "Minute": int, "Second": int},
    "Win32_LocalTime": {"Year": int, "Month": int, "Day": int, "Hour": int, "Minute": int, "Second": int},
    "SMS_Site": {"BuildNumber": int, "Type": int, "Status": int, "Mode": int},
    "SMS_R_System": {"ResourceId": int, "Client": int, "AMTStatus": int, "Active": int, "Obsolete": int,
                     "ResourceType": int},
    "SMS_FullCollectionMembership": {"ResourceID": int, "IsDirect": bool, "IsClient": bool},
    "SMS_Collection": {"MemberCount": int},
    "SMS_CollectionSettings": {"AMTAutoProvisionEnabled": bool},
    "Win32_SystemDriver": {"Started": bool},
    "Win32_PnPEntity": {"ConfigManagerErrorCode": int},
    "Win32_TimeZone": {"Bias": int, "StandardBias": int, "DaylightBias": int},
    "Win32_PnPSignedDriver": {"IsSigned": bool},
    "CCM_OutOfBandManagementSettings": {"AutoProvision": bool},
    "SMS_SCI_SysResUse": {"Type": int},
    "SMS_SCI_Component": {"Type": int, "FileType": int},
    "Props": {"Value": int},  # SMS_EmbeddedProperty inside SMS_SCI_Component.Props
}
#: Array properties: WS-MAN cannot tell a one-element array from a scalar, so these always become lists.
ARRAY_PROPERTIES = frozenset({"Props", "PropLists", "Values", "ResourceNames", "IPAddresses", "IPSubnets",
                              "MACAddresses", "AgentName", "SystemOUName", "SystemGroupName"})


class NotReadOnly(PermissionError):
    """A method that is not on the read-only allow-list was asked for."""


def wmi_uri(class_name: str, namespace: str = CIMV2) -> str:
    """``http://schemas.microsoft.com/wbem/wsman/1/wmi/<namespace>/<Class>`` (``\\`` in a namespace becomes ``/``)."""
    if "://" in class_name:
        return class_name
    ns = namespace.replace("\\", "/").strip("/")
    return f"{WMI_BASE}{ns}/{class_name}"


def sms_namespace(site_code: str) -> str:
    """The SMS Provider namespace of a site: ``root/sms/site_<CODE>``."""
    if not re.fullmatch(r"[A-Za-z0-9]{3}", site_code):
        raise ValueError(f"site code must be three letters or digits, not {site_code!r}")
    return f"root/sms/site_{site_code.upper()}"


@dataclass(frozen=True)
class BasicAuth:
    """HTTP Basic credentials. WinRM accepts them over http only with ``AllowUnencrypted``; so does this probe."""

    user: str
    password: str = field(repr=False)
    allow_unencrypted: bool = False
    scheme = "basic"

    def for_url(self, url: str) -> requests.auth.AuthBase:
        if urlsplit(url).scheme != "https" and not self.allow_unencrypted:
            raise ValueError("Basic authentication over plain http sends the password in clear; use https "
                             "(or allow_unencrypted=True for a server configured with AllowUnencrypted)")
        return requests.auth.HTTPBasicAuth(self.user, self.password)


def winrm_kerberos(fqdn: str, mutual: bool = True) -> KerberosAuth:
    """Kerberos to WinRM from the caller's ticket cache (requests-kerberos): SPN ``HTTP/<fqdn>`` (no port)."""
    return KerberosAuth(spn_host=fqdn, mutual=mutual)


#: What an administrator runs on the host to turn Kerberos back on (``winrm set``, Microsoft's WinRM docs).
KERBEROS_ON = 'winrm set winrm/config/service/auth @{Kerberos="true"}'


class AuthRefused(AuthFailed):
    """The WinRM server refused every scheme this probe may use with it: the host, what it did, what Windows
    accepts by default, and what to do, in one sentence."""

    def __init__(self, host: str, tried: list[str], offered: str):
        self.host, self.tried, self.offered = host, tried, offered
        self.scheme, self.url, self.detail = "/".join(t.split(" ", 1)[0].lower() for t in tried), host, ""
        offer = f"it offers {offered}" if offered else "it offers no authentication scheme this probe can use"
        errors.ProbeError.__init__(self,
            f"WinRM on {host} refused {'; '.join(tried)} ({offer}); expected: Kerberos (Negotiate) accepted, as "
            f"Windows does by default (WinRM service Auth/Kerberos true); action: on {host} turn Kerberos on "
            f"({KERBEROS_ON}) and check that the computer account has the SPN HTTP/{host}")


class CredentialsRejected(AuthFailed):
    """The WinRM server offers the scheme this probe used and rejected the credentials sent with it."""

    def __init__(self, host: str, scheme: str):
        self.host, self.scheme, self.url, self.detail = host, scheme.lower(), host, ""
        self.tried, self.offered = [scheme], scheme
        errors.ProbeError.__init__(self,
            f"WinRM on {host} rejected the {scheme} credentials of credentials.winrm (it offers {scheme}); expected: "
            f"the account and password accepted; action: check the user and the password credentials.winrm names")


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.rsplit(": ", 1)[-1] if ": " in text else text


def _about_the_host(exc: KerberosError) -> bool:
    """A Kerberos error about the host's service ticket or its answer (not the KDC's silence, nor our TGT)."""
    text = str(exc)
    return not isinstance(exc, KdcTimeout) and text.startswith(("no service ticket", "mutual authentication"))


def _offered(exc: Exception) -> str:
    return " ".join(str(getattr(exc, "offered", "") or "").split())[:200]


def select_auth(host: str, url: str, cred: Any, *, realm: str, address: str | None = None,
                kerberos_credentials: Any = None) -> list[Any]:
    """The authentications to try with WinRM on ``host`` at ``url``, in order: Kerberos, then Basic if allowed.

    ``cred`` is the environment's ``credentials.winrm`` (:class:`~pytest_vpro.environment.Credential`):
    ``kerberos`` (the caller's ticket cache, requests-kerberos) or a user with a password, which
    ``kerberos_credentials()`` turns into :class:`~pytest_vpro.probes.kerberos.ConsoleCredentials` (called only
    here, when the first WinRM call needs it). Basic is added only if ``host`` is in the credential's
    ``basic_hosts`` and the URL is https. Raises :class:`~pytest_vpro.probes.wsman.ConfigurationError` for a URL
    on another host than ``host`` (no credential goes to a host the environment does not name) and for plain http.
    """
    parts = urlsplit(url)
    named = {host.lower().rstrip(".")} | ({address} if address else set())
    if (parts.hostname or "").lower().rstrip(".") not in named:
        raise ConfigurationError(f"{url}: WinRM URL of {host} names another host ({parts.hostname}); credentials "
                                 f"go only to the host the environment names")
    if parts.scheme != "https":
        raise ConfigurationError(f"{url}: WinRM over http needs SPNEGO message encryption, which this probe does "
                                 f"not implement; use https (port {WINRM_PORT_HTTPS}) for {host}")
    if cred is None:
        raise errors.ProbeError("no WinRM credential in the environment file (credentials.winrm)")
    fqdn = host.lower().rstrip(".")
    if cred.kerberos:
        return [winrm_kerberos(fqdn)]
    auths: list[Any] = [_LazyNegotiate(kerberos_credentials, realm, f"HTTP/{fqdn}@{realm}")]
    if fqdn in {h.lower().rstrip(".") for h in getattr(cred, "basic_hosts", ())}:
        auths.append(BasicAuth(cred.user, cred.password.resolve()))
    return auths


@dataclass(frozen=True)
class _LazyNegotiate:
    """:class:`NegotiateAuth` whose credentials (a TGT from the KDC) are asked for at the first request."""

    credentials: Any = field(repr=False)
    realm: str
    spn: str
    mutual: bool = True
    scheme = "kerberos"

    def for_url(self, url: str) -> requests.auth.AuthBase:
        return _DeferredAuth(lambda: NegotiateAuth(self.credentials(), self.realm, mutual=self.mutual,
                                                   spn=self.spn).for_url(url))


class _DeferredAuth(requests.auth.AuthBase):
    def __init__(self, make: Any) -> None:
        self._make = make
        self._auth: requests.auth.AuthBase | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._auth is None:
            self._auth = self._make()
        return self._auth(request)


# --- typing -------------------------------------------------------------------------------
_CIM_DATETIME = re.compile(r"^(\d{14})\.(\d{6})([+-])(\d{3})$")


def cim_datetime(text: str) -> dt.datetime | str:
    """A CIM ``yyyymmddHHMMSS.mmmmmmsUUU`` or an xs:dateTime (WinRM's ``cim:Datetime``) as a datetime."""
    m = _CIM_DATETIME.match(text.strip())
    try:
        if m:
            minutes = int(m[4]) * (1 if m[3] == "+" else -1)
            return dt.datetime.strptime(m[1] + m[2], "%Y%m%d%H%M%S%f").replace(
                tzinfo=dt.timezone(dt.timedelta(minutes=minutes)))
        return dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return text


def _convert(kind: type, value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, list):
        return [_convert(kind, v) for v in value]
    text = str(value).strip()
    try:
        if kind is bool:
            return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
        return kind(text)
    except (KeyError, ValueError):
        return value


def typed(instance: Mapping[str, Any], class_name: str | None = None) -> dict[str, Any]:
    """A plain dict of ``instance`` with the known non-string properties converted; datetimes unwrapped."""
    cls = class_name or str(getattr(instance, "class_name", "") or "")
    types = PROPERTY_TYPES.get(cls, {})
    out: dict[str, Any] = {}
    for key, value in instance.items():
        if key in ARRAY_PROPERTIES and value is not None and not isinstance(value, list):
            value = [value]
        if isinstance(value, dict) and set(value) == {"Datetime"}:
            value = cim_datetime(str(value["Datetime"]))
        elif key in types:
            value = _convert(types[key], value)
        elif isinstance(value, Instance):
            value = typed(value, key)
        elif isinstance(value, list):
            value = [typed(v, key) if isinstance(v, Instance) else v for v in value]
        out[key] = value
    return out


# --- the client -----------------------------------------------------------------------------
_WQL_CLASS = re.compile(r"^\s*select\s+.+?\s+from\s+([A-Za-z_][A-Za-z0-9_]*)", re.I | re.S)


class WinRM:
    """Read-only WMI over one WinRM endpoint (``https://host:5986/wsman`` or ``http://host:5985/wsman``).

    ``auth`` is a :class:`BasicAuth` or a :class:`~pytest_vpro.probes.wsman.KerberosAuth` (see
    :func:`winrm_kerberos`); ``ca_bundle`` verifies https; ``timeout`` bounds every call.
    """

    def __init__(self, url: str, *, auth: Any, ca_bundle: str | None, timeout: float, **kwargs: Any):
        self._auths = list(auth) if isinstance(auth, (list, tuple)) else [auth]
        if not self._auths:
            raise ConfigurationError(f"{url}: no WinRM authentication to use")
        self._options = dict(ca_bundle=ca_bundle, timeout=timeout, **kwargs)
        self.url = url
        self.host = urlsplit(url).hostname or url
        self._next = 1
        self._settled = len(self._auths) == 1
        self._tried: list[str] = []
        self.client = WsmanClient(url, auth=self._auths[0], **self._options)

    @property
    def auth_scheme(self) -> str:
        """The scheme in use (``kerberos`` or ``basic``)."""
        return self.client.auth.scheme

    def _call(self, operation: Any) -> Any:
        """``operation(client)``; a refused scheme moves on to the next one (:func:`select_auth`'s order) until
        one is accepted; when none is, :class:`AuthRefused` says so."""
        while True:
            try:
                out = operation(self.client)
            except (AuthFailed, KerberosError) as exc:
                self._tried.append(f"{self.client.auth.scheme.capitalize()}"
                                   + (f" ({_reason(exc)})" if isinstance(exc, KerberosError) else ""))
                if self._settled or self._next >= len(self._auths):
                    if isinstance(exc, KerberosError) and not _about_the_host(exc):
                        raise  # the KDC did not answer, or refused our own credentials: not this host's doing
                    offered = _offered(exc)
                    if self.client.auth.scheme == "basic" and "basic" in offered.lower():
                        raise CredentialsRejected(self.host, "Basic") from None  # the right scheme, a wrong password
                    raise AuthRefused(self.host, list(self._tried), offered) from None
                self.client.close()
                self.client = WsmanClient(self.url, auth=self._auths[self._next], **self._options)
                self._next += 1
                continue
            self._settled = True
            return out

    @classmethod
    def for_host(cls, host: str, *, tls: bool = True, port: int | None = None, **kwargs: Any) -> "WinRM":
        scheme, default = ("https", WINRM_PORT_HTTPS) if tls else ("http", WINRM_PORT_HTTP)
        return cls(f"{scheme}://{host}:{port or default}/wsman", **kwargs)

    def __repr__(self) -> str:
        return f"WinRM({self.url!r})"

    def enumerate(self, class_name: str, namespace: str = CIMV2, wql: str | None = None) -> list[dict[str, Any]]:
        """Every instance of ``class_name``; with ``wql``, what the query selects (its FROM names the class)."""
        if wql is None:
            items = self._call(lambda c: c.enumerate(wmi_uri(class_name, namespace)))
        else:
            m = _WQL_CLASS.match(wql)
            if not m:
                raise ValueError("WQL must be 'SELECT ... FROM <Class> ...'")
            if m[1].lower() != class_name.lower():
                raise ValueError(f"WQL selects from {m[1]}, not {class_name}")
            items = self._call(lambda c: c.enumerate(wmi_uri("*", namespace), filter=(WQL_DIALECT, wql)))
        return [typed(i, class_name) for i in items]

    def get(self, class_name: str, selectors: Mapping[str, str], namespace: str = CIMV2) -> dict[str, Any]:
        """One instance by its key properties (e.g. ``{"Name": "WinRM"}`` for Win32_Service)."""
        return typed(self._call(lambda c: c.get(wmi_uri(class_name, namespace), selectors)), class_name)

    def invoke(self, class_name: str, method: str, params: Mapping[str, Any], namespace: str = DEFAULT,
               selectors: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Call a method on the read-only allow-list (:data:`READ_ONLY_METHODS`); anything else raises NotReadOnly."""
        if (class_name, method) not in READ_ONLY_METHODS:
            raise NotReadOnly(f"{class_name}.{method} is not a read-only method; this probe does not call it")
        out = self._call(lambda c: c.invoke(wmi_uri(class_name, namespace), method, params, selectors))
        return dict(out)

    def registry_value(self, hive: str | int, key: str, value: str,
                       kind: str = "string") -> str | int | bytes | list[str] | None:
        """A registry value through ``StdRegProv`` (``kind`` ``"string"``, ``"dword"``, ``"binary"``, whose
        ``uValue`` is an array of bytes, or ``"multi"``, REG_MULTI_SZ, whose ``sValue`` is an array of strings);
        ``None`` if absent."""
        method, out_name = {"string": ("GetStringValue", "sValue"), "dword": ("GetDWORDValue", "uValue"),
                            "binary": ("GetBinaryValue", "uValue"),
                            "multi": ("GetMultiStringValue", "sValue")}[kind]
        hdef = hive if isinstance(hive, int) else HIVES[hive.upper()]
        out = self.invoke("StdRegProv", method, {"hDefKey": hdef, "sSubKeyName": key.strip("\\"),
                                                 "sValueName": value})
        if str(out.get("ReturnValue", "")).strip() != "0" or out.get(out_name) in (None, ""):
            return None
        if kind == "binary":
            items = out[out_name] if isinstance(out[out_name], list) else [out[out_name]]
            return bytes(int(str(b).strip()) for b in items)
        if kind == "multi":
            return [str(v) for v in (out[out_name] if isinstance(out[out_name], list) else [out[out_name]])]
        return (int if kind == "dword" else str)(str(out[out_name]).strip())

    def registry_subkeys(self, hive: str | int, key: str) -> list[str] | None:
        """Names of the subkeys of ``key`` (``StdRegProv.EnumKey``); ``None`` if the key does not exist."""
        hdef = hive if isinstance(hive, int) else HIVES[hive.upper()]
        out = self.invoke("StdRegProv", "EnumKey", {"hDefKey": hdef, "sSubKeyName": key.strip("\\")})
        if str(out.get("ReturnValue", "")).strip() != "0":
            return None
        names = out.get("sNames")
        return [str(n) for n in (names if isinstance(names, list) else [names] if names else [])]

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "WinRM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["WinRM", "BasicAuth", "winrm_kerberos", "select_auth", "AuthRefused", "KERBEROS_ON", "wmi_uri",
           "sms_namespace", "typed", "cim_datetime",
           "NotReadOnly", "READ_ONLY_METHODS", "PROPERTY_TYPES", "ARRAY_PROPERTIES", "HIVES", "WMI_BASE",
           "WQL_DIALECT", "CIMV2",
           "DEFAULT", "WINRM_PORT_HTTP", "WINRM_PORT_HTTPS"]
