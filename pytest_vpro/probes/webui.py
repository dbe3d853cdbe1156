"""The Intel AMT WebUI: an HTTPS GET of ``https://<fqdn>:16993/<page>``, as a browser on the console host makes it.

TLS is verified against the estate's roots (a browser warning is a finding, never skipped). The page is not
interpreted beyond what a person sees first: the status, the ``Server`` header (AMT names itself and its
version there: ``Intel(R) Active Management Technology <version>``), the authentication schemes a 401 offers
and the HTML ``<title>``. Read-only: only GET.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import requests

from . import httpclient
from .errors import ProbeError

MAX_PAGE_BYTES = 512 * 1024
_TITLE = re.compile(rb"<title>\s*(.*?)\s*</title>", re.I | re.S)


@dataclass(frozen=True)
class Page:
    url: str
    status: int
    server: str
    title: str
    offers: tuple[str, ...] = ()  # schemes of WWW-Authenticate on a 401
    text: str = field(default="", repr=False)

    @property
    def is_amt(self) -> bool:
        return "Active Management Technology" in self.server

    def summary(self) -> dict:
        return {"url": self.url, "status": self.status, "server": self.server, "title": self.title,
                "offers": list(self.offers)}


def get(url: str, *, ca_bundle: str | None, timeout: float, auth: requests.auth.AuthBase | None = None,
        connect_timeout: float | None = None) -> Page:
    """GET ``url`` within one deadline (connect + whole page); a :class:`ProbeError` if there is no HTTPS answer
    (refused, no complete answer in time, TLS not trusted), a redirect (never followed: the console user's
    Kerberos ticket goes only to the device) or a page over :data:`MAX_PAGE_BYTES`."""
    try:
        reply = httpclient.get(url, timeout=timeout, connect_timeout=connect_timeout, max_bytes=MAX_PAGE_BYTES,
                               verify=ca_bundle or True, auth=auth)
    except httpclient.TlsFailed as exc:
        raise ProbeError(str(exc)) from None
    headers = {k.lower(): v for k, v in reply.headers.items()}
    challenge = headers.get("www-authenticate", "")
    offers = tuple(sorted({v.strip().split(None, 1)[0] for v in challenge.split(",")
                           if v.strip() and "=" not in v.strip().split(None, 1)[0]}))
    m = _TITLE.search(reply.body)
    return Page(url, reply.status, headers.get("server", ""), m.group(1).decode("utf-8", "replace") if m else "",
                offers, reply.body.decode("utf-8", "replace"))


__all__ = ["Page", "get", "MAX_PAGE_BYTES"]
