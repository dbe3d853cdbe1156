"""A lab Windows host's WinRM listener settings, written once: the site server's spec
(:class:`~pytest_vpro.lab.site_spec.SiteServerSpec`) and each in-band client's
(:class:`~pytest_vpro.lab.windows_client.WindowsClientSpec`) inherit them, and
:meth:`pytest_vpro.lab.winrm_server.WinrmServer.add_host` serves them.

Plain data (no aiohttp), so the lab's description side can load the specs without the [lab] extra.
"""
from __future__ import annotations

from dataclasses import dataclass, field

HTTP_PORT, HTTPS_PORT = 5985, 5986  # WinRM 2.0's ports (docs/protocols.md, "WinRM authentication"); the lab uses them


@dataclass(kw_only=True)
class WinrmHostSettings:
    """WinRM on one host: http on ``http_port``; https on ``https_port`` once ``tls_cert`` and ``tls_key`` are set;
    HTTP ``Basic`` for ``basic_users`` over https, and over http too with ``allow_unencrypted`` (WinRM's
    ``AllowUnencrypted``); ``Negotiate`` (Kerberos, SPN ``HTTP/<fqdn>``) with ``kerberos_keytab`` and
    ``kerberos_realm``. Keyword-only, so a spec's own positional fields keep their order."""

    http_port: int = HTTP_PORT
    https_port: int = HTTPS_PORT
    tls_cert: str = ""
    tls_key: str = ""
    basic_users: dict[str, str] = field(default_factory=dict, repr=False)
    allow_unencrypted: bool = False      # WinRM AllowUnencrypted: Basic over http
    kerberos_keytab: str = ""            # keys of HTTP/<fqdn>@<realm>
    kerberos_realm: str = ""

    @property
    def serves_https(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    def basic_offered(self, tls: bool) -> bool:
        """Whether the listener (https when ``tls``) offers Basic."""
        return bool(self.basic_users) and (tls or self.allow_unencrypted)

    def negotiate_spn(self, fqdn: str) -> str | None:
        """The Kerberos principal Negotiate accepts tickets for, or None when the host has no keys."""
        return f"HTTP/{fqdn}@{self.kerberos_realm}" if self.kerberos_keytab and self.kerberos_realm else None

    def winrm_url(self, address: str, tls: bool = False) -> str:
        return f"{'https' if tls else 'http'}://{address}:{self.https_port if tls else self.http_port}/wsman"
