"""The lab's WinRM server around the WS-MAN core: Basic authentication, the WMI resource URIs and their
serialization; the site server, the CA host and the Windows hosts serve their providers through it."""
from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import Callable, Mapping

from aiohttp import web

from pytest_vpro.lab.winrm_host import WinrmHostSettings
from pytest_vpro.lab.wsman_server import (
    Denied,
    NegotiateAcceptor,
    Provider,
    WsmanEndpoint,
    WsmanServer,
    server_ssl_context,
)

log = logging.getLogger(__name__)


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

    def add_host(self, address: str, fqdn: str, settings: WinrmHostSettings, provider: Callable[[], Provider]) -> None:
        """Serve one Windows host's WinRM as ``settings`` say: http, and https once it has a certificate; each
        listener gets its own provider from ``provider``."""
        for tls in (False, True) if settings.serves_https else (False,):
            spn = settings.negotiate_spn(fqdn)
            negotiate = None if spn is None else NegotiateAcceptor(settings.kerberos_keytab, spn,
                                                                   max_token_bytes=64 * 1024)
            basic = BasicAuthenticator(settings.basic_users) if settings.basic_offered(tls) else None
            endpoint = WsmanEndpoint(provider(), digest=basic, negotiate=negotiate,  # type: ignore[arg-type]
                                     server_header="Microsoft-HTTPAPI/1.0")
            if tls:
                self.add(address, settings.https_port, endpoint,
                         server_ssl_context(settings.tls_cert, settings.tls_key))
            else:
                self.add(address, settings.http_port, endpoint)

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
