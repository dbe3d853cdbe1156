"""The Intel AMT WebUI: an HTTPS GET of ``https://<fqdn>:16993/<page>``, as a browser on the console host makes it.

TLS is verified against the estate's roots (a browser warning is a finding, never skipped); a device that refuses
the modern handshake is asked once more with the legacy settings of :mod:`pytest_vpro.probes.tls`, as Internet
Explorer of the time spoke TLS 1.0 to it, and :attr:`Page.tls` says what was used. The page is not
interpreted beyond what a person sees first: the status, the ``Server`` header (AMT names itself and its
version there: ``Intel(R) Active Management Technology <version>``), the authentication schemes a 401 offers
and the HTML ``<title>``. Read-only: only GET.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from . import httpclient, tls
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
    tls: str = ""                 # what the TLS session used: "TLS 1.0, AES128-SHA (legacy fallback)"

    @property
    def is_amt(self) -> bool:
        return "Active Management Technology" in self.server

    def summary(self) -> dict:
        return {"url": self.url, "status": self.status, "server": self.server, "title": self.title,
                "offers": list(self.offers), **({"tls": self.tls} if self.tls else {})}


def get(url: str, *, ca_bundle: str | None, timeout: float, auth: requests.auth.AuthBase | None = None,
        connect_timeout: float | None = None, legacy_ciphers: str = tls.DEFAULT_LEGACY_CIPHERS) -> Page:
    """GET ``url`` within one deadline (connect + whole page); a :class:`ProbeError` if there is no HTTPS answer
    (refused, no complete answer in time, TLS not trusted), a redirect (never followed: the console user's
    Kerberos ticket goes only to the device) or a page over :data:`MAX_PAGE_BYTES`. Toward an AMT port, a
    device that refuses the modern handshake is asked once more with the legacy settings."""
    parts = urlsplit(url)
    amt_tls = parts.scheme == "https" and tls.may_fall_back(parts.port or 443)
    legacy = amt_tls and tls.remembered(parts.hostname or "", parts.port or 443)
    modern_refusal = None
    while True:
        session, adapter = httpclient.direct(), None
        if amt_tls:  # our own contexts, which say what they negotiated
            adapter = tls.RecordingAdapter(ca_bundle, legacy=legacy, ciphers=legacy_ciphers)
            session.mount(f"https://{parts.netloc}/", adapter)
        try:
            reply = httpclient.get(url, timeout=timeout, connect_timeout=connect_timeout, max_bytes=MAX_PAGE_BYTES,
                                   verify=ca_bundle or True, auth=auth, session=session)
        except httpclient.TlsFailed as exc:
            if amt_tls and not legacy and tls.refused_modern(exc):
                modern_refusal, legacy = exc.reason, True
                continue
            if modern_refusal is not None and not tls.verification_failed(exc):
                raise tls.LegacyRefused(parts.netloc, modern_refusal, exc.reason, legacy_ciphers) from None
            if modern_refusal is not None:
                raise ProbeError(f"TLS to {url} failed: modern handshake: {modern_refusal}; legacy fallback "
                                 f"({legacy_ciphers}, TLS 1.0 and later): {exc.reason}") from None
            raise ProbeError(str(exc)) from None
        finally:
            session.close()
        break
    negotiated = adapter.negotiated if adapter is not None else None
    if negotiated is not None and negotiated.legacy:
        tls.remember(parts.hostname or "", parts.port or 443)
    headers = {k.lower(): v for k, v in reply.headers.items()}
    challenge = headers.get("www-authenticate", "")
    offers = tuple(sorted({v.strip().split(None, 1)[0] for v in challenge.split(",")
                           if v.strip() and "=" not in v.strip().split(None, 1)[0]}))
    m = _TITLE.search(reply.body)
    return Page(url, reply.status, headers.get("server", ""), m.group(1).decode("utf-8", "replace") if m else "",
                offers, reply.body.decode("utf-8", "replace"), str(negotiated) if negotiated else "")


__all__ = ["Page", "get", "MAX_PAGE_BYTES"]
