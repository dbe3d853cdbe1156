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
from .errors import ProbeError, Unreachable

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


def get(url: str, *, ca_bundle: str | None, timeout: float, auth: requests.auth.AuthBase | None = None) -> Page:
    """GET ``url``; a :class:`ProbeError` if there is no HTTPS answer (refused, timeout, TLS not trusted)."""
    host = url.split("/")[2]
    try:
        with httpclient.direct() as session, session.get(url, verify=ca_bundle or True, timeout=(timeout, timeout),
                                                   auth=auth, stream=True, allow_redirects=False) as resp:
            body = resp.raw.read(MAX_PAGE_BYTES, decode_content=True) or b""
            offers = tuple(sorted({v.strip().split(None, 1)[0] for v in resp.headers.get("WWW-Authenticate", "")
                                   .split(",") if v.strip() and "=" not in v.strip().split(None, 1)[0]}))
            m = _TITLE.search(body)
            return Page(url, resp.status_code, resp.headers.get("Server", ""),
                        m.group(1).decode("utf-8", "replace") if m else "", offers,
                        body.decode("utf-8", "replace"))
    except requests.exceptions.SSLError as exc:
        raise ProbeError(f"TLS to {url} failed: {_short(exc)}") from None
    except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout):
        raise Unreachable(host, None, timeout) from None
    except requests.exceptions.ConnectionError as exc:
        how = "connection refused" if "refused" in str(exc).lower() else "no answer"
        raise Unreachable(host, None, timeout, how) from None


def _short(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"certificate verify failed: ([^(\]]+)", text)
    return f"certificate verify failed: {m.group(1).strip()}" if m else text[:300]


__all__ = ["Page", "get", "MAX_PAGE_BYTES"]
