"""Windows over read-only WinRM: WMI classes, registry values and subkeys (``StdRegProv``), and the
certificate stores Windows builds from the registry. Estate facts: shared by every check in this process; an
unanswering host costs one timeout."""
from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from ..environment import Client, Server
from ..probes import x509 as x509_probe
from ..probes.errors import MalformedReply
from . import ipsec
from .core import key

if TYPE_CHECKING:
    from . import Facts

#: Where 64-bit Windows keeps a 32-bit program's HKLM\SOFTWARE (WOW64 registry redirection).
WOW64_SOFTWARE = r"SOFTWARE\Wow6432Node"


def _wmi_time(instance: dict[str, Any], host: str, class_name: str) -> float:
    """A ``Win32_UTCTime`` / ``Win32_LocalTime`` instance (Year, Month, Day, Hour, Minute, Second) as seconds
    since 1970, read as if UTC (for Win32_LocalTime: the wall clock)."""
    try:
        y, mo, d, h, mi, sec = (int(instance[p]) for p in ("Year", "Month", "Day", "Hour", "Minute", "Second"))
        return dt.datetime(y, mo, d, h, mi, sec, tzinfo=dt.timezone.utc).timestamp()
    except (KeyError, TypeError, ValueError):
        raise MalformedReply(f"{host} returned a {class_name} without a valid Year..Second") from None


class WindowsFacet:
    """``facts.windows``: a server or an in-band client, through WinRM (``credentials.winrm``)."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def wmi(self, host: Server | Client, class_name: str, namespace: str = "root/cimv2",
            wql: str | None = None) -> list[dict[str, Any]]:
        """Instances of ``class_name`` on ``host`` (a WQL query ``wql`` if given)."""
        connect = self.facts.connect
        return self.facts.estate.per_host(host.name, key("wmi", host.name, namespace, wql or class_name),
                                          lambda: connect.winrm(host).enumerate(class_name, namespace, wql))

    def clock(self, host: Server | Client) -> dict[str, Any]:
        """``host``'s clock and time zone: ``Win32_UTCTime`` read with the round trip of its call, against this
        machine's clock, and ``Win32_TimeZone`` / ``Win32_LocalTime``: ``{"offset_s", "uncertainty_s", "bias",
        "zone", "local_minus_utc_min"}`` (offset: the host minus this machine at the middle of the round trip;
        uncertainty: half the round trip plus 1 s, as the classes give whole seconds; bias: ``Win32_TimeZone.Bias``
        in minutes; ``local_minus_utc_min``: Win32_LocalTime minus Win32_UTCTime, None if either is unread)."""
        connect = self.facts.connect

        def read() -> dict[str, Any]:
            winrm = connect.winrm(host)
            sent = time.time()
            utc = winrm.enumerate("Win32_UTCTime")
            received = time.time()
            if not utc:
                raise MalformedReply(f"{host.name} returned no Win32_UTCTime instance")
            when = _wmi_time(utc[0], host.name, "Win32_UTCTime")
            zone = (winrm.enumerate("Win32_TimeZone") or [{}])[0]
            local = winrm.enumerate("Win32_LocalTime")
            local_minus = (round((_wmi_time(local[0], host.name, "Win32_LocalTime") - when) / 60)
                           if local else None)
            bias = str(zone.get("Bias"))
            return {"offset_s": when - (sent + received) / 2, "uncertainty_s": (received - sent) / 2 + 1.0,
                    "bias": int(bias) if str(bias).lstrip("-").isdigit() else None,
                    "zone": str(zone.get("StandardName") or zone.get("Caption") or ""),
                    "local_minus_utc_min": local_minus}
        return self.facts.estate.per_host(host.name, key("clock", host.name), read)

    def registry(self, host: Server | Client, path: str, value: str,
                 kind: str = "string") -> str | int | bytes | list[str] | None:
        """A registry value on ``host`` via ``StdRegProv`` (``path`` like ``HKLM\\SOFTWARE\\...``); None if absent."""
        hive, _, sub = path.partition("\\")
        connect = self.facts.connect
        return self.facts.estate.per_host(host.name, key("reg", host.name, path, value, kind),
                                          lambda: connect.winrm(host).registry_value(hive, sub, value, kind))

    def ipsec_policies(self, host: Server | Client) -> list[ipsec.AssignedPolicy]:
        """The domain and the local IPsec policy assigned to ``host``, each followed to its rules and filters
        (:mod:`pytest_vpro.facts.ipsec`); [] when none is assigned."""
        return ipsec.assigned_policies(self.facts, host)

    def registry_subkeys(self, host: Server | Client, path: str) -> list[str] | None:
        """Names of the subkeys of ``path`` on ``host`` (``StdRegProv.EnumKey``); None if the key is absent."""
        hive, _, sub = path.partition("\\")
        connect = self.facts.connect
        return self.facts.estate.per_host(host.name, key("regkeys", host.name, path),
                                          lambda: connect.winrm(host).registry_subkeys(hive, sub))

    def sms_registry(self, host: Server | Client, subkey: str, value: str,
                     kind: str = "string") -> tuple[str | int | bytes | list[str] | None, str]:
        """A value of Configuration Manager's own key ``SOFTWARE\\Microsoft\\SMS\\<subkey>`` and the key it was read
        from. Configuration Manager 2007 is a 32-bit program, so on 64-bit Windows its keys are in the 32-bit view,
        ``HKLM\\SOFTWARE\\Wow6432Node\\Microsoft\\SMS\\...``; a 64-bit reader (WinRM's StdRegProv) sees that view
        there. That path is read first, then the native one (32-bit Windows has no Wow6432Node): docs/protocols.md,
        "Registry views". (None, the native key) if neither holds it."""
        paths = [rf"HKLM\{view}\Microsoft\SMS\{subkey}" for view in (WOW64_SOFTWARE, "SOFTWARE")]
        for path in paths:
            found = self.registry(host, path, value, kind)
            if found is not None:
                return found, path
        return None, paths[-1]

    def certificate_store(self, host: Server, store: str) -> dict[str, Any]:
        """The computer's logical certificate store ``store`` (``MY`` Personal, ``CA`` Intermediate, ``ROOT``
        Trusted Root, ``TRUST``, ``NTAUTH``) of ``host`` as Windows opens it: every physical store behind it
        (:func:`~pytest_vpro.probes.x509.physical_stores`: the computer's own, Group Policy's, the Enterprise
        one autoenrollment downloads from the directory), read from its registry over WinRM:
        ``{thumbprint: certificate}``; a ``Blob`` that does not parse is ``{thumbprint: ValueError}``.
        :meth:`certificate_store_origins` says which physical store holds each."""
        out: dict[str, Any] = {}
        for _store, certificates in self.physical_certificate_stores(host, store):
            for thumbprint, cert in certificates.items():
                if thumbprint not in out or isinstance(out[thumbprint], ValueError):
                    out[thumbprint] = cert
        return out

    def certificate_store_origins(self, host: Server, store: str) -> dict[str, list[str]]:
        """``{thumbprint: [title of each physical store holding it, ...]}`` of the logical store ``store``, e.g.
        ``["Trusted Root Certification Authorities (Enterprise)"]``."""
        out: dict[str, list[str]] = {}
        for physical, certificates in self.physical_certificate_stores(host, store):
            for thumbprint in certificates:
                out.setdefault(thumbprint, []).append(physical.title)
        return out

    def physical_certificate_stores(self, host: Server, store: str) -> list[tuple[Any, dict[str, Any]]]:
        """``[(PhysicalStore, {thumbprint: certificate or ValueError}), ...]`` behind the logical store ``store``
        of ``host``, each read once per run (an absent key is an empty store)."""
        def read(path: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for thumbprint in self.registry_subkeys(host, path) or []:
                blob = self.registry(host, rf"{path}\{thumbprint}", "Blob", "binary")
                try:
                    out[thumbprint.upper()] = x509_probe.parse_store_blob(blob if isinstance(blob, bytes) else b"")
                except ValueError as exc:
                    out[thumbprint.upper()] = exc
            return out
        return [(physical, self.facts.estate.get(key("certstore", host.name, physical.key.lower()),
                                                 lambda path=physical.key: read(path)))
                for physical in x509_probe.physical_stores(store)]
