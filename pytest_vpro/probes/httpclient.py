"""HTTP sessions for the estate: straight to the host, or through the environment's proxy for CRL/AIA downloads;
every exchange within a deadline, never following a redirect (:func:`get`).

Devices (WS-MAN, the WebUI) and servers are always reached directly: their traffic, credentials included,
never goes to a proxy. CRL and AIA locations may be public (a commercial CA's provisioning certificate), so
downloads honour ``http_proxy`` / ``https_proxy`` / ``no_proxy``.

Why the sessions do not let requests read the environment itself (``trust_env``): requests iterates
``os.environ`` on every request to find proxies, while pytest sets and removes ``PYTEST_CURRENT_TEST`` in its
main thread as tests run; a prefetch thread iterating at that moment fails (``KeyError: 'PYTEST_CURRENT_TEST'``,
seen at 100 clients). The proxy settings are read once instead, when this module is imported; the plugin
imports it at start-up, in the main thread.
"""
from __future__ import annotations

import http.client
import re
import socket
import tempfile
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions

from . import deadline, errors
from .errors import MalformedReply, ProbeError, Redirected, ReplyTooLarge, Unreachable

PROXIES: dict[str, str] = urllib.request.getproxies_environment()


def direct() -> requests.Session:
    """A session that goes straight to the host, whatever the environment's proxy settings."""
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", _Adapter())
    session.mount("https://", _Adapter())
    return session


def proxies_for(url: str, proxies: dict[str, str] | None = None) -> dict[str, str]:
    """The proxies a download of ``url`` goes through: the environment's, unless ``no_proxy`` exempts the host."""
    proxies = PROXIES if proxies is None else proxies
    host = urlsplit(url).hostname or ""
    if not proxies or urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return {}
    return {scheme: proxy for scheme, proxy in proxies.items() if scheme != "no"}


# --------------------------------------------------------------------------- deadlines on every exchange
#
# requests' timeout bounds each socket read, never an exchange (a server trickling a byte at a time keeps a GET
# going for ever), and urllib3 tries every address of a name with the whole connect timeout each. The sessions
# made here therefore connect through deadline.connect (every address within the exchange's budget) and hand
# their sockets to the caller's open deadline.Deadline, which shuts them when it passes. Outside a Deadline
# they behave exactly as requests' own.

def _new_conn_within_deadline(conn, original):
    limit = deadline.current()
    if limit is None:
        return original()
    timeout = conn.timeout if isinstance(conn.timeout, (int, float)) else limit.seconds
    try:
        # urllib3's own connect uses _dns_host: the name as given, before any proxy
        sock = deadline.connect(conn._dns_host, conn.port, timeout, limit)  # noqa: SLF001
    except socket.gaierror as exc:
        raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise urllib3.exceptions.ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={timeout})") from exc
    except OSError as exc:
        raise urllib3.exceptions.NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
    for option in conn.socket_options or ():
        sock.setsockopt(*option)
    limit.watch_copy(sock)  # a copy: TLS wrapping moves the descriptor out of this socket object
    return sock


def _watch_reused(conn) -> None:
    limit = deadline.current()
    if limit is not None and conn.sock is not None:  # a kept-alive connection made by an earlier exchange
        limit.watch(conn.sock)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self):
        return _new_conn_within_deadline(self, super()._new_conn)

    def request(self, *args, **kwargs):
        _watch_reused(self)
        return super().request(*args, **kwargs)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self):
        return _new_conn_within_deadline(self, super()._new_conn)

    def request(self, *args, **kwargs):
        _watch_reused(self)
        return super().request(*args, **kwargs)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections that keep to the caller's deadline."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


# --------------------------------------------------------------------------- trust for downloads

_BUNDLES: dict[str, str] = {}
_BUNDLES_LOCK = threading.Lock()


def public_and(roots: str | None) -> str | bool:
    """A CA bundle of the public roots requests trusts (certifi's) and the estate's own ``roots`` (a PEM file):
    what a CRL or AIA download over https is verified against, since its location may be the estate's CA or a
    public one. True (the public roots only) without ``roots``. Made once per file, in the temporary folder."""
    if not roots:
        return True
    with _BUNDLES_LOCK:
        if roots not in _BUNDLES:
            folder = Path(tempfile.mkdtemp(prefix="vpro-ca-"))
            bundle = folder / "public-and-estate.pem"
            bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + Path(roots).read_bytes())
            _BUNDLES[roots] = str(bundle)
        return _BUNDLES[roots]


# --------------------------------------------------------------------------- one bounded GET

@dataclass(frozen=True)
class Reply:
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes


class TlsFailed(ProbeError):
    """The TLS handshake failed or the certificate did not verify; ``reason`` is OpenSSL's own words."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"TLS to {url} failed: {reason}")
        self.url, self.reason = url, reason


def get(url: str, *, timeout: float, connect_timeout: float | None = None, max_bytes: int,
        verify: bool | str = True, auth: requests.auth.AuthBase | None = None, proxies: dict[str, str] | None = None,
        session: requests.Session | None = None) -> Reply:
    """GET ``url`` within one deadline (connect + whole reply: ``connect_timeout`` + ``timeout``), at most
    ``max_bytes`` of body, never following a redirect. Any status is returned (the caller judges it) except a
    redirect, which raises :class:`~pytest_vpro.probes.errors.Redirected` naming where it pointed. Raises
    :class:`~pytest_vpro.probes.errors.Unreachable`, :class:`TlsFailed`,
    :class:`~pytest_vpro.probes.errors.ReplyTooLarge` or :class:`~pytest_vpro.probes.errors.MalformedReply`,
    each a sentence saying what the server did: never a library exception."""
    parts = urlsplit(url)
    host, port = parts.hostname or url, parts.port
    connect_timeout = timeout if connect_timeout is None else connect_timeout
    own = session is None
    session = session or direct()
    limit = deadline.Deadline(connect_timeout + timeout, f"GET {url}")
    try:
        with limit, session.get(url, timeout=(connect_timeout, timeout), stream=True, allow_redirects=False,
                                verify=verify, auth=auth, proxies=proxies or {}) as resp:
            if resp.is_redirect or 300 <= resp.status_code < 400:
                raise Redirected(url, resp.status_code, resp.headers.get("Location", ""))
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ReplyTooLarge(f"{url} announced {int(declared):,} bytes, more than the {max_bytes:,} "
                                    "accepted; not downloaded")
            body = bytearray()
            for chunk in resp.iter_content(65536):
                body += chunk
                if len(body) > max_bytes:
                    raise ReplyTooLarge(f"{url} sent more than the {max_bytes:,} bytes accepted; the download "
                                        "was stopped there")
            if limit.expired:  # a body read until the server closes would look complete once its socket is shut
                raise limit.too_late(host, port)
            return Reply(url, resp.status_code, dict(resp.headers), bytes(body))
    except ProbeError:
        raise
    except requests.exceptions.SSLError as exc:
        if limit.expired:
            raise limit.too_late(host, port) from None
        raise TlsFailed(url, tls_reason(exc)) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError) as exc:
        if limit.expired:
            raise limit.too_late(host, port) from None
        raise Unreachable(host, port, timeout, connection_failure(exc)) from None
    except requests.exceptions.InvalidURL as exc:
        raise ProbeError(f"{url} is not a URL that can be fetched ({_first_line(exc)})") from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
            ValueError, UnicodeError) as exc:  # bad headers, bad chunking, bad encodings, garbage for HTTP
        if limit.expired:
            raise limit.too_late(host, port) from None
        raise MalformedReply(f"{url} answered with something that is not a valid HTTP reply "
                             f"({_first_line(exc)})") from None
    finally:
        if own:
            session.close()


def connection_failure(exc: BaseException) -> str:
    """What a failed connection did, in the probes' one vocabulary (:func:`errors.what_happened`): refused,
    closed the connection, no answer, did not resolve; never urllib3's repr."""
    return errors.what_happened(exc)


def tls_reason(exc: BaseException) -> str:
    """OpenSSL's own words for a failed handshake (e.g. 'certificate verify failed: self-signed certificate')."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        message = getattr(cur, "verify_message", None)
        if message:
            return f"certificate verify failed: {message}"
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException):
                inner = tls_reason(arg)
                if inner and not inner.startswith("HTTPS"):
                    return inner
        why = getattr(cur, "reason", None)  # urllib3's wrapped exception; an ssl.SSLError's is a string
        cur = cur.__cause__ or cur.__context__ or (why if isinstance(why, BaseException) else None)
    match = re.search(r"certificate verify failed: ([^(\]]+)", str(exc))
    return f"certificate verify failed: {match.group(1).strip()}" if match else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
