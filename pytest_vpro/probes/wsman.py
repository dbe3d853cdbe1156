"""A small WS-Management client, as Intel AMT (and Windows WinRM) speak it.

Spec: DMTF DSP0226 (WS-Management 1.0) over SOAP 1.2, WS-Addressing 2004/08,
WS-Transfer and WS-Enumeration 2004/09; the AMT dialect is described in
``docs/protocols.md`` ("WS-Management on AMT").

The cut, in the manner of smbprotocol (a friendly API over the wire layer): this module is the client (the
operations Get, Put, Enumerate/Pull and method calls; HTTP transport, authentication, TLS, deadlines, the
transcript and the errors of all of these). Building envelopes and parsing replies into instances is in
:mod:`pytest_vpro.probes.wsman_envelope`, which the lab's simulated server shares and which needs none of this
module's transport. Its names are re-exported here: ``from pytest_vpro.probes.wsman import Instance`` keeps
working.

Transport and authentication come from maintained libraries: ``requests`` (keep-alive
sessions, TLS verified against a caller-given CA bundle), ``requests.auth.HTTPDigestAuth``
(RFC 2617/7616) and ``requests_kerberos.HTTPKerberosAuth`` (SPNEGO ``Negotiate``).
A reply's size is bounded here before it is parsed.
"""
from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

import requests

from pytest_vpro.probes import deadline, errors, httpclient, tls
from pytest_vpro.probes.wsman_envelope import (
    AMT_PORT_HTTP,
    AMT_PORT_HTTPS,
    ANONYMOUS,
    ENDPOINT,
    NS_SOAP,
    NS_WSA,
    NS_WSEN,
    NS_WSMAN,
    NS_WXF,
    NS_XSI,
    PATH,
    EndpointReference,
    Instance,
    MalformedReply,
    Reply,
    ReplyTooLarge,
    SoapFault,
    WsmanError,
    body_instance,
    build_envelope,
    element_to_instance,
    element_to_value,
    local_name,
    parse_envelope,
    properties_xml,
    require_namespace,
    resource_uri,
)


# --- errors of the client (the wire layer's WsmanError, SoapFault, MalformedReply, ReplyTooLarge: wsman_envelope)
class Unreachable(WsmanError, errors.Unreachable):
    """No TCP answer: connection timed out, refused or reset."""

    def __init__(self, host: str, port: int, timeout: float, why: str = "timeout"):
        how = errors.vocabulary("no answer" if why == "timeout" else why)
        if how != why or how in errors.VOCABULARY:  # what the target did, in the words of every probe
            errors.Unreachable.__init__(self, host, port, timeout, how)
        else:  # the client's own account of an exchange cut short ("gave no complete answer within 3 s ...")
            Exception.__init__(self, f"{host}:{port} {why}")
            self.how = why
        self.host, self.port, self.timeout, self.why = host, port, timeout, why


class AuthFailed(WsmanError):
    """The server still answered 401 after we authenticated."""

    def __init__(self, scheme: str, url: str, detail: str = "", offered: str = ""):
        self.scheme, self.url, self.detail = scheme, url, detail
        self.offered = offered  # the 401's WWW-Authenticate: the schemes the server offers
        msg = f"{scheme} authentication to {url} was refused"
        super().__init__(msg + (f": {detail}" if detail else ""))


class KerberosTokenTooLarge(AuthFailed):
    """The device refused our Negotiate token as too big (AMT's ~4 KB ticket limit, docs/protocols.md).

    Modelled as HTTP 400 to a request that carried a Negotiate header; what real AMT
    firmware answers is *(unconfirmed)*.
    """


class TlsError(WsmanError):
    """TLS handshake or certificate verification failed."""

    def __init__(self, url: str, reason: str):
        self.url, self.reason = url, reason
        super().__init__(f"TLS to {url} failed: {reason}")


class LegacyTlsRefused(tls.LegacyRefused, WsmanError):
    """No handshake with the modern settings nor with the legacy suites (which have no public source): the
    checks that need this device cannot decide (:class:`pytest_vpro.probes.errors.Undecided`)."""


class HttpStatusError(WsmanError):
    """An HTTP status that is neither success, a fault nor an auth failure (e.g. 404 on legacy AMT)."""

    def __init__(self, url: str, status: int, reason: str = ""):
        self.url, self.status = url, status
        super().__init__(f"HTTP {status} {reason} from {url}".rstrip())


class Redirected(WsmanError, errors.Redirected):
    """The device answered with a redirect; it is never followed (no request, and so no credential, leaves for
    the place it names)."""

    def __init__(self, url: str, status: int, location: str):
        errors.Redirected.__init__(self, url, status, location)


class ConfigurationError(WsmanError, ValueError):
    """The client cannot be made as asked (a URL that is not http(s), https without a CA bundle, Basic over
    plain http): a problem of the environment file, reported as a finding on the target."""


# --- authentication ------------------------------------------------------------------
@dataclass(frozen=True)
class DigestAuth:
    """HTTP Digest credentials (RFC 2617/7616), given to requests' ``HTTPDigestAuth``."""

    user: str
    password: str = field(repr=False)
    scheme = "digest"

    def for_url(self, url: str) -> requests.auth.AuthBase:
        return _Digest(self.user, self.password)


class _Digest(requests.auth.HTTPDigestAuth):
    """requests' Digest, answering only a challenge it can answer, with a bounded 401 body.

    requests raises ``KeyError`` for a challenge without ``realm`` or ``nonce``, sends the request again without
    an answer for an algorithm or qop it does not know, and reads the whole body of the 401 into memory. Such a
    challenge is left unanswered here (the 401 stands, and :attr:`problem` says why), and a 401 body over
    :data:`MAX_CHALLENGE_BODY` is refused before requests reads it.
    """

    MAX_CHALLENGE_BODY = 64 * 1024
    ALGORITHMS = ("MD5", "MD5-SESS", "SHA", "SHA-256", "SHA-512")

    problem = ""

    def handle_401(self, r: requests.Response, **kwargs: Any) -> requests.Response:
        challenge = r.headers.get("www-authenticate", "")
        if 400 <= r.status_code < 500 and "digest" in challenge.lower():
            self.problem = _digest_problem(challenge)
            if self.problem:
                self._thread_local.num_401_calls = 1
                return r  # not answered: the caller reports the 401 with the problem
            _read_challenge_body(r, self.MAX_CHALLENGE_BODY)
        return super().handle_401(r, **kwargs)


def _digest_problem(header: str) -> str:
    """Why a ``WWW-Authenticate: Digest ...`` challenge cannot be answered, or "" (RFC 7616 3.3)."""
    params = requests.utils.parse_dict_header(re.sub(r"(?i)^.*?digest\s+", "", header, count=1))
    missing = [name for name in ("realm", "nonce") if not params.get(name)]
    if missing:
        return f"the device's Digest challenge has no {' and no '.join(missing)}"
    algorithm = (params.get("algorithm") or "MD5").upper()
    if algorithm not in _Digest.ALGORITHMS:
        return f"the device's Digest challenge asks for the unknown algorithm {algorithm[:40]!r}"
    qop = params.get("qop")
    if qop and "auth" not in [q.strip() for q in qop.split(",")]:
        return f"the device's Digest challenge offers only qop {qop[:40]!r}, not 'auth'"
    return ""


def _read_challenge_body(r: requests.Response, limit: int) -> None:
    """Read the 401's body (requests reads it whole before answering the challenge) up to ``limit`` bytes."""
    declared = r.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ReplyTooLarge(f"the device's 401 challenge announced a body of {int(declared):,} bytes, more than "
                            f"the {limit:,} accepted")
    body = bytearray()
    for chunk in r.iter_content(8192):
        body += chunk
        if len(body) > limit:
            raise ReplyTooLarge(f"the device's 401 challenge has a body over {limit:,} bytes")
    r._content = bytes(body)  # noqa: SLF001 - what requests' own r.content does once it has read the body


@dataclass(frozen=True)
class KerberosAuth:
    """Kerberos through SPNEGO ``Negotiate``, using the caller's ticket cache.

    AMT's SPN carries the port: ``HTTP/fqdn:16993`` (docs/protocols.md, "Kerberos to AMT":
    the SPN carries the port). ``requests_kerberos`` (via pyspnego) names the target as the GSSAPI
    host-based service ``service@host``; passing ``hostname_override="fqdn:port"`` makes
    that ``HTTP@fqdn:16993``, which MIT krb5 imports as the principal
    ``HTTP/fqdn:16993@<realm>`` (realm from krb5.conf's domain_realm or the referral realm).
    That is the clean, library-only way; ``spn`` overrides the whole ``fqdn:port`` part.
    """

    mutual: bool = False
    service: str = "HTTP"
    spn_host: str | None = None  # "fqdn:port"; default: taken from the URL
    scheme = "kerberos"

    def for_url(self, url: str) -> requests.auth.AuthBase:
        from requests_kerberos import OPTIONAL, REQUIRED, HTTPKerberosAuth  # noqa: PLC0415 - requests_kerberos (pyspnego, gssapi) loads only for a Kerberos exchange

        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return HTTPKerberosAuth(
            mutual_authentication=REQUIRED if self.mutual else OPTIONAL,
            service=self.service,
            hostname_override=self.spn_host or f"{parts.hostname}:{port}",
            # a SOAP fault (HTTP 500) carries no mutual-auth token; keep its body for the caller to read
            sanitize_mutual_error_response=False,
        )


Auth = DigestAuth | KerberosAuth


# --- evidence ------------------------------------------------------------------------
@dataclass
class Exchange:
    """One request/response pair as text, Authorization headers removed."""

    request: str
    response: str


class Transcript:
    """Collects request/response text for evidence; pass one to ``WsmanClient(transcript=)``.

    ``Authorization`` (request) and ``WWW-Authenticate``/``Authentication-Info``
    (response, may carry a Kerberos token) headers are dropped.
    """

    HIDDEN = {"authorization", "www-authenticate", "authentication-info", "cookie", "set-cookie"}

    def __init__(self, limit: int = 200):
        self.limit = limit
        self.exchanges: list[Exchange] = []

    def _headers(self, headers: Mapping[str, str]) -> str:
        return "".join(f"{k}: {v}\n" for k, v in headers.items() if k.lower() not in self.HIDDEN)

    def record(self, request: requests.PreparedRequest, status: int, headers: Mapping[str, str], body: bytes) -> None:
        body_sent = request.body
        req_body = body_sent.decode("utf-8", "replace") if isinstance(body_sent, bytes) else str(body_sent or "")
        sent = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in request.headers.items()}
        req = f"{request.method} {request.url}\n{self._headers(sent)}\n{req_body}"
        resp = f"HTTP {status}\n{self._headers(headers)}\n{body.decode('utf-8', 'replace')}"
        self.exchanges.append(Exchange(req, resp))
        del self.exchanges[: -self.limit]

    def text(self) -> str:
        return "\n\n".join(f">>>\n{e.request}\n<<<\n{e.response}" for e in self.exchanges)


# --- the client ----------------------------------------------------------------------
class WsmanClient:
    """WS-MAN over one keep-alive ``requests.Session``.

    ``ca_bundle`` is the path of the CA certificates that verify the server (required
    for https; ``None`` only for plain http). ``timeout`` bounds each read, ``connect_timeout`` (default:
    ``timeout``) the TCP connect, so a device that drops every SYN costs the environment's connect timeout.
    Toward an AMT port over https, a device that refuses the modern handshake is asked once more with the
    legacy settings of :mod:`pytest_vpro.probes.tls` (``legacy_ciphers``); :attr:`negotiated` says what the
    session used.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: Auth,
        ca_bundle: str | None,
        timeout: float,
        connect_timeout: float | None = None,
        session: requests.Session | None = None,
        max_bytes: int = 4_000_000,
        transcript: Transcript | None = None,
        legacy_ciphers: str = tls.DEFAULT_LEGACY_CIPHERS,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ConfigurationError(f"a WS-MAN URL must be http(s), not {url!r}")
        if parts.scheme == "https" and not ca_bundle:
            raise ConfigurationError(f"{url}: https needs a CA bundle (pki.trusted_roots); TLS is always verified")
        self.url = url
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.auth = auth
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.max_bytes = max_bytes
        self.transcript = transcript
        self.session = session or httpclient.direct()
        try:
            self._requests_auth = auth.for_url(url)
        except ValueError as exc:  # Basic over plain http, for one
            raise ConfigurationError(str(exc)) from None
        # One request at a time per session: Digest's nonce count and the kept-alive connection are per
        # session, and AMT firmware serves only a few connections; callers on other threads queue here.
        self._one_at_a_time = threading.Lock()
        self._worker: deadline.Worker | None = None
        self.legacy_ciphers = legacy_ciphers
        self._amt_tls = parts.scheme == "https" and tls.may_fall_back(self.port)
        self._tls_prefix = f"https://{parts.netloc}/"
        self._legacy = self._amt_tls and tls.remembered(self.host, self.port)
        self.negotiated: tls.Negotiated | None = None

    @classmethod
    def for_amt(cls, host: str, *, tls: bool = True, **kwargs) -> "WsmanClient":
        """Client for an AMT device: ``https://host:16993/wsman`` or ``http://host:16992/wsman``."""
        scheme, port = ("https", AMT_PORT_HTTPS) if tls else ("http", AMT_PORT_HTTP)
        return cls(f"{scheme}://{host}:{port}{PATH}", **kwargs)

    def __repr__(self) -> str:
        return f"WsmanClient({self.url!r}, auth={self.auth.scheme})"

    # -- transport --
    def _post(self, envelope: bytes) -> Reply:
        with self._one_at_a_time:
            return self._post_one(envelope)

    def _post_one(self, envelope: bytes) -> Reply:
        # requests' timeout bounds each socket read, not the exchange: a device that trickles its reply a byte
        # at a time never times out. The exchange runs under a deadline of connect + read timeout, which shuts
        # its socket when it passes (probes/deadline.py); if the exchange still has not ended shortly after (a
        # Kerberos token stuck in the KDC), its thread is abandoned and its session discarded.
        # One long-lived worker per client: requests' Digest state (nonce, count) is per thread.
        retries = 2 if self._amt_tls and not self._legacy else 1  # a legacy retry too
        seconds = (self.connect_timeout + self.timeout) * retries
        limit = deadline.Deadline(seconds, f"WS-MAN {self.url}")
        box: dict[str, Any] = {}
        session = self.session

        def exchange() -> None:
            try:
                with limit:
                    box["resp"] = resp = self._send(session, envelope)
                    with resp:
                        box["body"] = self._read_bounded(resp)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc

        if self._worker is None:
            self._worker = deadline.Worker(f"wsman {self.host}")
        finished = self._worker.run(exchange, seconds + deadline.GRACE_S)
        if not finished or limit.expired:
            if not finished:
                self._worker.abandon()
                self._worker = None
                _abort(box.get("resp"))
            self.session = httpclient.direct()  # the cut one stays with the abandoned exchange
            if limit.interrupted:
                raise Unreachable(self.host, self.port, self.timeout, "was abandoned: the run was interrupted")
            raise Unreachable(self.host, self.port, self.timeout,
                              f"gave no complete answer within {seconds:g} s (reply too slow)")
        if "error" in box:
            raise box["error"]
        resp, body = box["resp"], box["body"]
        if self.transcript is not None:
            self.transcript.record(resp.request, resp.status_code, resp.headers, body)
        return self._interpret(resp, body)

    def _tls_adapter(self, session: requests.Session) -> tls.RecordingAdapter | None:
        """The adapter of ``session`` toward this AMT port, with the current (modern or legacy) settings."""
        if not self._amt_tls:
            return None
        adapter = session.adapters.get(self._tls_prefix)
        if not isinstance(adapter, tls.RecordingAdapter) or adapter.legacy != self._legacy:
            adapter = tls.RecordingAdapter(self.ca_bundle, legacy=self._legacy, ciphers=self.legacy_ciphers)
            session.mount(self._tls_prefix, adapter)
        return adapter

    def _send(self, session: requests.Session, envelope: bytes) -> requests.Response:
        headers = {"Content-Type": "application/soap+xml; charset=utf-8"}
        modern_refusal = None
        while True:
            adapter = self._tls_adapter(session)
            try:
                resp = session.post(
                    self.url, data=envelope, headers=headers, auth=self._requests_auth,
                    verify=self.ca_bundle if self.url.startswith("https") else True,
                    timeout=(self.connect_timeout, self.timeout), stream=True, allow_redirects=False,
                )
            except requests.exceptions.SSLError as exc:
                if adapter is not None and not self._legacy and tls.refused_modern(exc):
                    modern_refusal = tls.reason(exc)
                    self._legacy = True  # one retry, with the legacy settings (probes/tls.py)
                    continue
                if modern_refusal is not None and not tls.verification_failed(exc):
                    raise LegacyTlsRefused(f"{self.host}:{self.port}", modern_refusal, tls.reason(exc),
                                           self.legacy_ciphers) from None
                if modern_refusal is not None:
                    raise TlsError(self.url, f"modern handshake: {modern_refusal}; legacy fallback "
                                             f"({self.legacy_ciphers}, TLS 1.0 and later): {tls.reason(exc)}") from None
                raise TlsError(self.url, _tls_reason(exc)) from None
            except requests.exceptions.ConnectTimeout:
                raise Unreachable(self.host, self.port, self.connect_timeout) from None
            except requests.exceptions.ReadTimeout:
                raise Unreachable(self.host, self.port, self.timeout) from None
            except requests.exceptions.ConnectionError as exc:
                raise Unreachable(self.host, self.port, self.timeout, _conn_reason(exc)) from None
            except errors.ProbeError:
                raise
            except (requests.exceptions.RequestException, ValueError, UnicodeError) as exc:
                # headers, chunking or encodings requests cannot read, a challenge it chokes on
                raise MalformedReply(f"{self.host}:{self.port} answered with something that is not a valid HTTP "
                                     f"reply ({_first_line(exc)})") from None
            if adapter is not None and adapter.negotiated is not None:
                self.negotiated = adapter.negotiated
                if adapter.legacy:
                    tls.remember(self.host, self.port)
            return resp

    def _read_bounded(self, resp: requests.Response) -> bytes:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise ReplyTooLarge(f"reply of {declared} bytes exceeds the {self.max_bytes}-byte limit")
        chunks, size = [], 0
        try:
            for chunk in resp.iter_content(65536):
                size += len(chunk)
                if size > self.max_bytes:
                    raise ReplyTooLarge(f"reply exceeds the {self.max_bytes}-byte limit")
                chunks.append(chunk)
        except requests.exceptions.RequestException as exc:
            why = f"reset while reading ({type(exc).__name__})"
            raise Unreachable(self.host, self.port, self.timeout, why) from None
        return b"".join(chunks)

    def _interpret(self, resp: requests.Response, body: bytes) -> Reply:
        status = resp.status_code
        sent = resp.request.headers.get("Authorization", "")
        sent_negotiate = (sent.decode("latin-1") if isinstance(sent, bytes) else sent).startswith("Negotiate")
        if 300 <= status < 400:  # never followed: the device's credentials go to the device only
            raise Redirected(self.url, status, resp.headers.get("Location", ""))
        if status == 401:
            raise AuthFailed(self.auth.scheme, self.url, getattr(self._requests_auth, "problem", ""),
                             offered=resp.headers.get("WWW-Authenticate", ""))
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        is_soap = ctype in ("application/soap+xml", "text/xml")
        if status == 400 and sent_negotiate and not is_soap:
            raise KerberosTokenTooLarge(self.auth.scheme, self.url, resp.reason or "HTTP 400")
        if status not in (200, 400, 500) or (status != 200 and not is_soap):
            raise HttpStatusError(self.url, status, resp.reason or "")
        if not is_soap:
            raise MalformedReply(f"reply content type is {ctype or 'missing'}, not application/soap+xml")
        return parse_envelope(body)

    # -- operations (DSP0226 sections 7 and 8) --
    def get(self, resource_uri: str, selectors: Mapping[str, str] | None = None) -> Instance:
        """WS-Transfer Get of one instance."""
        env = build_envelope(ENDPOINT.GET, resource_uri, selectors=selectors, timeout_s=self.timeout)
        return body_instance(self._post(env), resource_uri)

    def put(self, resource_uri: str, body_dict: Mapping[str, Any],
            selectors: Mapping[str, str] | None = None) -> Instance:
        """WS-Transfer Put of a whole instance; returns the instance as the server stored it."""
        cls = resource_uri.rstrip("/").rsplit("/", 1)[-1]
        env = build_envelope(ENDPOINT.PUT, resource_uri, selectors=selectors,
                             body=properties_xml(cls, resource_uri, body_dict), timeout_s=self.timeout)
        reply = self._post(env)
        return body_instance(reply, resource_uri) if len(reply.body) else Instance(cls)

    def enumerate(self, resource_uri: str, max_elements: int = 32, max_pulls: int = 1000, *,
                  filter: tuple[str, str] | None = None) -> list[Instance]:  # noqa: A002 - WS-MAN's Filter
        """WS-Enumeration Enumerate, then Pull until ``EndOfSequence``.

        ``filter`` is ``(dialect, query)``, e.g. WinRM's WQL dialect (DSP0226 section 8.3, ``wsman:Filter``).
        """
        body = "<n:Enumerate/>"
        if filter is not None:
            dialect, query = filter
            body = f"<n:Enumerate><w:Filter Dialect={quoteattr(dialect)}>{escape(query)}</w:Filter></n:Enumerate>"
        env = build_envelope(ENDPOINT.ENUMERATE, resource_uri, body=body, timeout_s=self.timeout)
        reply = self._post(env)
        context = reply.body.findtext(f".//{{{NS_WSEN}}}EnumerationContext")
        if context is None:
            raise MalformedReply("EnumerateResponse without EnumerationContext")
        items: list[Instance] = []
        for _ in range(max_pulls):
            pull = (f"<n:Pull><n:EnumerationContext>{escape(context.strip())}</n:EnumerationContext>"
                    f"<n:MaxElements>{max_elements}</n:MaxElements></n:Pull>")
            reply = self._post(build_envelope(ENDPOINT.PULL, resource_uri, body=pull, timeout_s=self.timeout))
            resp = reply.body.find(f"{{{NS_WSEN}}}PullResponse")
            if resp is None:
                raise MalformedReply("Pull reply without PullResponse")
            got = resp.find(f"{{{NS_WSEN}}}Items")
            if got is not None:
                for e in got:
                    require_namespace(e, resource_uri)
                    items.append(element_to_instance(e))
            if resp.find(f"{{{NS_WSEN}}}EndOfSequence") is not None:
                return items
            context = resp.findtext(f"{{{NS_WSEN}}}EnumerationContext") or context
        raise MalformedReply(f"no EndOfSequence after {max_pulls} pulls")

    def invoke(self, resource_uri: str, method: str, params: Mapping[str, Any],
               selectors: Mapping[str, str] | None = None) -> Instance:
        """Call a CIM method: Action = ResourceURI/Method, body ``Method_INPUT``; returns ``Method_OUTPUT``.

        ``ReturnValue`` is in the result (as a string); callers decide what non-zero means.
        """
        env = build_envelope(f"{resource_uri}/{method}", resource_uri, selectors=selectors,
                             body=properties_xml(f"{method}_INPUT", resource_uri, params), timeout_s=self.timeout)
        out = body_instance(self._post(env), resource_uri)
        if "ReturnValue" not in out:
            raise MalformedReply(f"{method} reply has no ReturnValue")
        return out

    def close(self) -> None:
        self.session.close()
        if self._worker is not None:
            self._worker.abandon()
            self._worker = None


def _tls_reason(exc: BaseException) -> str:
    """Find the ssl module's own words (e.g. 'self-signed certificate', 'Hostname mismatch')."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        msg = getattr(cur, "verify_message", None)
        if msg:
            return f"certificate verify failed: {msg}"
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException):
                inner = _tls_reason(arg)
                if inner:
                    return inner
        why = getattr(cur, "reason", None)  # urllib3's wrapped exception; ssl.SSLError's is a string
        cur = cur.__cause__ or cur.__context__ or (why if isinstance(why, BaseException) else None)
    text = str(exc)
    return text[:300]


def _abort(resp: requests.Response | None) -> None:
    """Best effort: shut the socket of an abandoned reply so that its thread ends now."""
    sock = getattr(getattr(getattr(resp, "raw", None), "_connection", None), "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def _conn_reason(exc: BaseException) -> str:
    return errors.what_happened(exc)  # one vocabulary for every probe (errors.py), no library repr


__all__ = [
    "ENDPOINT", "resource_uri", "WsmanClient", "DigestAuth", "KerberosAuth", "Transcript", "Exchange",
    "EndpointReference", "Instance", "Reply", "build_envelope", "parse_envelope", "properties_xml",
    "element_to_instance", "WsmanError", "Unreachable", "AuthFailed", "KerberosTokenTooLarge", "TlsError",
    "SoapFault", "MalformedReply", "HttpStatusError", "LegacyTlsRefused", "Redirected", "ReplyTooLarge",
    "ConfigurationError", "NS_SOAP", "NS_WSA", "NS_WSMAN", "NS_WSEN", "NS_WXF", "NS_XSI", "ANONYMOUS", "PATH",
    "AMT_PORT_HTTP", "AMT_PORT_HTTPS", "local_name", "body_instance", "element_to_value", "require_namespace",
]
