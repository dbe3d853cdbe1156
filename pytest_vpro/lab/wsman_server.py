"""A WS-Management server core on aiohttp, for simulated AMT devices and the WinRM of a simulated Windows server.

Spec: DMTF DSP0226 (WS-Management 1.0), SOAP 1.2 (and its HTTP binding: Sender faults
answer 400, Receiver faults 500), WS-Transfer/WS-Enumeration 2004/09; the AMT dialect in
``docs/protocols.md``. Envelopes are parsed leniently, by local name: both the
``a:``/``w:`` style of the open-source AMT clients and the ``s:``/``wsa:``/``wsman:`` style
of PyPI ``amt`` are accepted, with or without ``mustUnderstand``.

Hand-written on purpose (no maintained Python WS-MAN *server* exists):
 * SOAP envelopes (a few fixed headers);
 * server-side HTTP Digest, RFC 7616/2617 with ``qop=auth`` and MD5 as AMT uses it
   (aiohttp has no server-side Digest). Nonces are stateless (timestamp + HMAC), so a
   thousand devices cost no per-nonce memory; ``nc`` replay is not tracked (lab only).
Kerberos uses python-gssapi as the acceptor with a keytab.

Many endpoints in one process and one event loop: a single aiohttp application and
runner, one ``TCPSite`` per (address, port), each TLS site with its own ``SSLContext``;
a request is routed to its endpoint by the local socket address it arrived on.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import ssl
import struct
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol
from urllib.request import parse_http_list, parse_keqv_list
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET
from aiohttp import web
from defusedxml import DefusedXmlException
from multidict import CIMultiDict

from pytest_vpro.probes.wsman_envelope import (
    ANONYMOUS,
    ENDPOINT,
    NS_SOAP,
    NS_WSA,
    NS_WSEN,
    NS_WSMAN,
    NS_XSI,
    EndpointReference,
    element_to_instance,
    local_name,
)

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 512 * 1024
FAULT_DETAIL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/"
ACTION_WSA_FAULT = NS_WSA + "/fault"
ACTION_WSMAN_FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
ACTION_WSEN_FAULT = NS_WSEN + "/fault"


# --- faults (DSP0226 section 14) -------------------------------------------------------
class Fault(Exception):
    """A SOAP fault to send back. ``subcode`` is ``prefix:Name`` with wsa/wsman/wsen prefixes."""

    def __init__(self, code: str, subcode: str, reason: str, detail: str = "", action: str = ACTION_WSMAN_FAULT):
        super().__init__(reason)
        self.code, self.subcode, self.reason, self.detail, self.action = code, subcode, reason, detail, action

    @property
    def http_status(self) -> int:
        return 400 if self.code == "Sender" else 500


def destination_unreachable(uri: str) -> Fault:
    return Fault("Sender", "wsa:DestinationUnreachable",
                 f"No route can be determined to reach the destination role defined by the WS-Addressing To ({uri}).",
                 FAULT_DETAIL + "InvalidResourceURI", ACTION_WSA_FAULT)


def action_not_supported(action: str) -> Fault:
    return Fault("Sender", "wsa:ActionNotSupported", f"The action is not supported by the service: {action}",
                 "", ACTION_WSA_FAULT)


def invalid_selectors(reason: str = "The Selectors for the resource were not valid.") -> Fault:
    return Fault("Sender", "wsman:InvalidSelectors", reason, FAULT_DETAIL + "UnexpectedSelectors")


def invalid_representation(reason: str) -> Fault:
    return Fault("Sender", "wsman:InvalidRepresentation", reason, FAULT_DETAIL + "InvalidValues")


def schema_validation_error(reason: str) -> Fault:
    return Fault("Sender", "wsman:SchemaValidationError", reason)


def access_denied() -> Fault:
    return Fault("Sender", "wsman:AccessDenied", "The sender was not authorized to access the resource.")


def invalid_enumeration_context() -> Fault:
    return Fault("Receiver", "wsen:InvalidEnumerationContext",
                 "The supplied enumeration context is invalid.", "", ACTION_WSEN_FAULT)


# --- requests and instances -------------------------------------------------------------
@dataclass
class WsmanRequest:
    """One parsed WS-MAN request, independent of the client's prefix style."""

    action: str
    resource_uri: str
    message_id: str
    selectors: dict[str, str]
    body: Any  # first child element of Body, or None
    principal: str = ""  # authenticated user ("admin", or a Kerberos principal)
    local: tuple[str, int] = ("", 0)

    def body_properties(self) -> dict[str, Any]:
        """Children of the body element as ``{name: text | list | {ResourceURI, Selectors}}``."""
        return dict(element_to_instance(self.body)) if self.body is not None else {}


@dataclass
class ServerInstance:
    """What a provider returns: a class name, its resource URI and its properties (order kept)."""

    class_name: str
    resource_uri: str
    properties: Mapping[str, Any]


class Provider(Protocol):
    """What an endpoint dispatches to; raise :class:`Fault` for errors."""

    def get(self, req: WsmanRequest) -> ServerInstance: ...

    def put(self, req: WsmanRequest, properties: dict[str, Any]) -> ServerInstance: ...

    def enumerate(self, req: WsmanRequest) -> list[ServerInstance]: ...

    def invoke(self, req: WsmanRequest, method: str, params: dict[str, Any]) -> ServerInstance: ...


def parse_request(data: bytes) -> WsmanRequest:
    """Parse an envelope by local names (lenient on prefixes); raise :class:`Fault` if unusable."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except (DefusedXmlException, SafeET.ParseError) as exc:
        raise schema_validation_error(f"request is not acceptable XML: {type(exc).__name__}") from None
    if local_name(root.tag) != "Envelope" or not root.tag.startswith(f"{{{NS_SOAP}}}"):
        raise Fault("Sender",
                    "s:VersionMismatch" if local_name(root.tag) == "Envelope" else "wsman:SchemaValidationError",
                    "request is not a SOAP 1.2 envelope")
    header = body = None
    for child in root:
        name = local_name(child.tag)
        if name == "Header":
            header = child
        elif name == "Body":
            body = child
    if header is None or body is None:
        raise schema_validation_error("envelope needs a Header and a Body")
    fields: dict[str, str] = {}
    selectors: dict[str, str] = {}
    for h in header:
        name = local_name(h.tag)
        if name == "SelectorSet":
            for s in h:
                key = s.get("Name") or s.get(f"{{{NS_WSMAN}}}Name")
                if key:
                    selectors[key] = (s.text or "").strip()
        elif name in ("Action", "ResourceURI", "MessageID", "To"):
            fields[name] = (h.text or "").strip()
    if not fields.get("Action"):
        raise Fault("Sender", "wsa:MessageInformationHeaderRequired", "Action header missing", "", ACTION_WSA_FAULT)
    first = next(iter(body), None)
    return WsmanRequest(fields["Action"], fields.get("ResourceURI", ""), fields.get("MessageID", ""), selectors, first)


# --- serialization --------------------------------------------------------------------
def _value_xml(tag: str, value: Any) -> str:
    if isinstance(value, EndpointReference):
        sel = "".join(f"<wsman:Selector Name={quoteattr(k)}>{escape(str(v))}</wsman:Selector>"
                      for k, v in value.selectors.items())
        return (f"<{tag}><wsa:Address>{escape(value.address)}</wsa:Address><wsa:ReferenceParameters>"
                f"<wsman:ResourceURI>{escape(value.resource_uri)}</wsman:ResourceURI>"
                f"<wsman:SelectorSet>{sel}</wsman:SelectorSet></wsa:ReferenceParameters></{tag}>")
    if isinstance(value, Mapping):  # an embedded object (WMI's SMS_EmbeddedProperty, for one): nested elements
        prefix = tag.split(":", 1)[0] + ":" if ":" in tag else ""
        return f"<{tag}>{''.join(_value_xml(prefix + str(k), v) for k, v in value.items())}</{tag}>"
    if isinstance(value, (list, tuple)):
        return "".join(_value_xml(tag, v) for v in value)
    if value is None:
        return f'<{tag} xsi:nil="true"/>'
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{tag}>{escape(str(value))}</{tag}>"


def instance_xml(inst: ServerInstance, prefix: str = "h") -> str:
    """``<h:Class xmlns:h="uri"><h:Prop>..</h:Prop></h:Class>`` (properties in the resource's namespace)."""
    inner = "".join(_value_xml(f"{prefix}:{k}", v) for k, v in inst.properties.items())
    open_tag = f"<{prefix}:{inst.class_name} xmlns:{prefix}={quoteattr(inst.resource_uri)}>"
    return f"{open_tag}{inner}</{prefix}:{inst.class_name}>"


def response_envelope(action: str, relates_to: str, body: str, resource_uri: str = "") -> bytes:
    res = f"<wsman:ResourceURI>{escape(resource_uri)}</wsman:ResourceURI>" if resource_uri else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:wsa="{NS_WSA}" xmlns:wsman="{NS_WSMAN}" '
        f'xmlns:wsen="{NS_WSEN}" xmlns:xsi="{NS_XSI}"><s:Header>'
        f"<wsa:To>{ANONYMOUS}</wsa:To><wsa:RelatesTo>{escape(relates_to)}</wsa:RelatesTo>"
        f"<wsa:Action>{escape(action)}</wsa:Action><wsa:MessageID>uuid:{uuid.uuid4()}</wsa:MessageID>{res}"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode("utf-8")


def fault_envelope(fault: Fault, relates_to: str) -> bytes:
    detail = ""
    if fault.detail:
        detail = f"<s:Detail><wsman:FaultDetail>{escape(fault.detail)}</wsman:FaultDetail></s:Detail>"
    body = (f"<s:Fault><s:Code><s:Value>s:{fault.code}</s:Value><s:Subcode><s:Value>{escape(fault.subcode)}"
            f"</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en-US\">{escape(fault.reason)}"
            f"</s:Text></s:Reason>{detail}</s:Fault>")
    return response_envelope(fault.action, relates_to, body)


# --- authentication ---------------------------------------------------------------------
class Denied(Exception):
    """Authentication refused: ``status`` 401 (try again) or 400 (token refused outright)."""

    def __init__(self, status: int = 401, reason: str = "Unauthorized",
                 challenge_extra: Mapping[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.challenge_extra = status, reason, dict(challenge_extra or {})


def amt_digest_realm(seed: str) -> str:
    """AMT's realm form ``Digest:`` + 32 hex digits (docs/protocols.md), derived from ``seed`` (the device UUID)."""
    return "Digest:" + hashlib.md5(seed.encode()).hexdigest().upper()


class DigestAuthenticator:
    """Server side of HTTP Digest (RFC 7616 section 3.4, RFC 2617), ``qop=auth``, MD5."""

    scheme = "Digest"

    def __init__(self, realm: str, users: Mapping[str, str], *, nonce_ttl: float = 300.0, secret: bytes | None = None):
        self.realm = realm
        self._users = dict(users)
        self._alternates: dict[str, str] = {}
        self.nonce_ttl = nonce_ttl
        self._secret = secret or secrets.token_bytes(32)

    def __repr__(self) -> str:
        return f"DigestAuthenticator(realm={self.realm!r}, users={sorted(self._users)!r})"

    def set_password(self, user: str, password: str) -> None:
        self._users[user] = password

    def also_accept(self, user: str, password: str) -> None:
        """A second password ``user`` answers to (a lab fault: an old password that was never replaced)."""
        self._alternates[user] = password

    def _nonce(self, ts: int | None = None) -> str:
        ts = int(time.time()) if ts is None else ts
        raw = struct.pack(">Q", ts)
        mac = hmac.new(self._secret, raw + self.realm.encode(), hashlib.sha256).digest()[:16]
        return (raw + mac).hex()

    def _nonce_state(self, nonce: str) -> str:
        try:
            raw = bytes.fromhex(nonce)
        except ValueError:
            return "bad"
        if len(raw) != 24 or not hmac.compare_digest(self._nonce(struct.unpack(">Q", raw[:8])[0]), nonce):
            return "bad"
        age = time.time() - struct.unpack(">Q", raw[:8])[0]
        return "fresh" if -5 <= age <= self.nonce_ttl else "stale"

    def challenge(self, stale: bool = False) -> str:
        return (f'Digest realm="{self.realm}", nonce="{self._nonce()}", '
                f'stale="{"true" if stale else "false"}", qop="auth"')

    def authenticate(self, method: str, path: str, value: str) -> str:
        """Check an ``Authorization: Digest ...`` value; return the user or raise :class:`Denied`."""
        try:
            p = parse_keqv_list(parse_http_list(value))
        except ValueError:
            raise Denied() from None
        user = p.get("username", "")
        need = ("realm", "nonce", "uri", "response", "nc", "cnonce", "qop")
        if any(k not in p for k in need) or p["qop"] != "auth" or p["realm"] != self.realm:
            raise Denied()
        if p.get("algorithm", "MD5").upper() != "MD5" or user not in self._users:
            raise Denied()
        if p["uri"] != path:
            raise Denied(400, "Bad Request")
        state = self._nonce_state(p["nonce"])
        if state == "bad":
            raise Denied()
        passwords = [self._users[user]] + ([self._alternates[user]] if user in self._alternates else [])
        if not any(hmac.compare_digest(digest_response(user, self.realm, password, method, p["uri"], p["nonce"],
                                                       p["nc"], p["cnonce"]), p["response"].lower())
                   for password in passwords):
            raise Denied()
        if state == "stale":
            raise Denied(401, "Unauthorized", {"stale": "true"})
        return user


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def digest_response(user: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, nc: str, cnonce: str, qop: str = "auth") -> str:
    """RFC 2617 section 3.2.2.1 ``request-digest`` for ``qop=auth``, MD5."""
    ha1 = _md5(f"{user}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


class NegotiateAcceptor:
    """Kerberos through SPNEGO ``Negotiate`` (RFC 4559), python-gssapi as the acceptor.

    The acceptor credential is bound to ``spn`` (e.g. ``HTTP/pc0001.vprolab.test:16993@VPROLAB.TEST``)
    in ``keytab``, so only tickets encrypted with this device account's key are accepted; a
    ticket for another device fails. MIT krb5 does not tell the SPNs of one account apart
    (``HTTP/fqdn:16992`` and ``:16993`` share the account's key), and neither, presumably, does AMT.
    Tokens larger than ``max_token_bytes`` (decoded) are refused with HTTP 400, modelling
    AMT's ~4 KB ticket limit (docs/protocols.md; the exact status real firmware sends is
    *(unconfirmed)*), so a client can tell "ticket too big" (400) from "not accepted" (401).
    """

    scheme = "Negotiate"

    def __init__(self, keytab: str, spn: str, *, max_token_bytes: int = 4096):
        self.keytab, self.spn, self.max_token_bytes = keytab, spn, max_token_bytes
        self._creds = None

    def __repr__(self) -> str:
        return f"NegotiateAcceptor(spn={self.spn!r}, max_token_bytes={self.max_token_bytes})"

    def challenge(self, stale: bool = False) -> str:
        return "Negotiate"

    def _credentials(self):
        import gssapi  # noqa: PLC0415 - libgssapi only where Kerberos is served

        if self._creds is None:
            name = gssapi.Name(self.spn, name_type=gssapi.NameType.kerberos_principal)
            self._creds = gssapi.Credentials(name=name, usage="accept", store={"keytab": self.keytab})
        return self._creds

    def accept(self, value: str) -> tuple[str, str | None]:
        """Check an ``Authorization: Negotiate <b64>`` value; return (principal, reply token b64)."""
        import gssapi  # noqa: PLC0415 - libgssapi only where Kerberos is served

        b64 = value.split(None, 1)[1].strip() if " " in value else ""
        if len(b64) > (self.max_token_bytes * 4) // 3 + 8:
            raise Denied(400, "Bad Request (Kerberos token too large)")
        try:
            token = base64.b64decode(b64, validate=True)
        except ValueError:
            raise Denied() from None
        if len(token) > self.max_token_bytes:
            raise Denied(400, "Bad Request (Kerberos token too large)")
        try:
            ctx = gssapi.SecurityContext(creds=self._credentials(), usage="accept")
            out = ctx.step(token)
            # python-gssapi keeps a failure that came with an error token and raises it on the next use
            if not ctx.complete:
                raise Denied()
            principal = str(ctx.initiator_name)
        except gssapi.raw.misc.GSSError as exc:  # base of gssapi.exceptions.GSSError
            log.info("Negotiate refused for %s: %s", self.spn, str(exc)[:300])
            raise Denied() from None
        return principal, (base64.b64encode(out).decode() if out else None)


# --- endpoints and the server --------------------------------------------------------
@dataclass
class WsmanEndpoint:
    """One listening WS-MAN service: what to dispatch to and how to authenticate."""

    provider: Provider
    digest: DigestAuthenticator | None = None
    negotiate: NegotiateAcceptor | None = None
    server_header: str = "Intel(R) Active Management Technology 6.2.10"
    latency_s: float = 0.0
    enabled: bool = True  # False: /wsman answers 404 (e.g. AMT before 3.2.1, no WS-MAN)
    path: str = "/wsman"
    reachable: Callable[[], bool] | None = None  # False: drop the connection unanswered (ME powered down)
    #: HTML pages served on GET beside ``path`` (AMT's WebUI): ``public(path)`` and ``render(path, principal)``
    #: (None: 404); pages that are not public authenticate like WS-MAN.
    web: Any = None


@dataclass
class _Enumeration:
    items: list[ServerInstance]
    resource_uri: str
    expires: float
    pos: int = 0


class WsmanServer:
    """Serves many :class:`WsmanEndpoint` objects, one per (address, port), in one event loop."""

    def __init__(self, *, enumeration_ttl: float = 120.0, max_enumerations: int = 20000):
        self._endpoints: dict[tuple[str, int], WsmanEndpoint] = {}
        self._ssl: dict[tuple[str, int], ssl.SSLContext | None] = {}
        self._enums: dict[str, _Enumeration] = {}
        self.enumeration_ttl, self.max_enumerations = enumeration_ttl, max_enumerations
        self._runner: web.AppRunner | None = None
        self._sites: list[web.TCPSite] = []

    def add(self, address: str, port: int, endpoint: WsmanEndpoint, ssl_context: ssl.SSLContext | None = None) -> None:
        self._endpoints[(address, port)] = endpoint
        self._ssl[(address, port)] = ssl_context

    def endpoint(self, address: str, port: int) -> WsmanEndpoint:
        return self._endpoints[(address, port)]

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        for (addr, port), ctx in self._ssl.items():
            site = web.TCPSite(self._runner, addr, port, ssl_context=ctx, backlog=64, reuse_address=True)
            await site.start()
            self._sites.append(site)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner, self._sites = None, []

    # -- HTTP --
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        key = (sock[0], sock[1]) if sock else ("", 0)
        ep = self._endpoints.get(key)
        if ep is not None and ep.reachable is not None and not ep.reachable():
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()  # nothing is sent: the peer sees a reset
        headers = {"Server": ep.server_header} if ep else {}
        if ep is not None and ep.web is not None and request.path != ep.path and request.method in ("GET", "HEAD"):
            return self._page(ep, request, headers)
        if ep is None or not ep.enabled or request.path != ep.path:
            return web.Response(status=404, text="Not Found", headers=headers)
        if request.method != "POST":
            return web.Response(status=405, headers={**headers, "Allow": "POST"})
        try:
            principal, extra = self._authenticate(ep, request)
        except Denied as denied:
            return _refusal(ep, denied, headers)
        headers.update(extra)
        data = await request.read()
        if ep.latency_s > 0:
            await asyncio.sleep(ep.latency_s)
        status, payload = self._dispatch(ep, data, principal, key)
        return web.Response(status=status, body=payload, headers=headers,
                            content_type="application/soap+xml", charset="utf-8")

    def _page(self, ep: WsmanEndpoint, request: web.Request, headers: dict[str, str]) -> web.Response:
        principal = None
        if ep.web.render(request.path, None) is None:
            return web.Response(status=404, text="Not Found", headers=headers)
        if not ep.web.public(request.path):
            try:
                principal, extra = self._authenticate(ep, request)
            except Denied as denied:
                return _refusal(ep, denied, headers)
            headers = {**headers, **extra}
        return web.Response(status=200, text=ep.web.render(request.path, principal), content_type="text/html",
                            headers=headers)

    def _authenticate(self, ep: WsmanEndpoint, request: web.Request) -> tuple[str, dict[str, str]]:
        value = request.headers.get("Authorization", "")
        scheme = value.split(None, 1)[0].lower() if value else ""
        if scheme == "digest" and ep.digest is not None:
            return ep.digest.authenticate(request.method, request.path_qs, value.split(None, 1)[1]), {}
        if scheme in ("negotiate", "kerberos") and ep.negotiate is not None:
            principal, token = ep.negotiate.accept(value)
            return principal, ({"WWW-Authenticate": f"Negotiate {token}"} if token else {})
        if ep.digest is None and ep.negotiate is None:
            return "", {}
        raise Denied()

    def _dispatch(self, ep: WsmanEndpoint, data: bytes, principal: str, local: tuple[str, int]) -> tuple[int, bytes]:
        relates = ""
        try:
            req = parse_request(data)
            relates = req.message_id
            req.principal, req.local = principal, local
            action, body, uri = self._operate(ep.provider, req)
            return 200, response_envelope(action, relates, body, uri)
        except Fault as fault:
            return fault.http_status, fault_envelope(fault, relates)
        except Exception:  # a provider bug must not kill the device: answer InternalError
            log.exception("WS-MAN provider failed")
            return 500, fault_envelope(Fault("Receiver", "wsman:InternalError", "internal error"), relates)

    def _operate(self, provider: Provider, req: WsmanRequest) -> tuple[str, str, str]:
        a = req.action
        if a == ENDPOINT.GET:
            return ENDPOINT.GET_RESPONSE, instance_xml(provider.get(req)), req.resource_uri
        if a == ENDPOINT.PUT:
            if req.body is None:
                raise invalid_representation("Put needs an instance in the Body")
            return ENDPOINT.PUT_RESPONSE, instance_xml(provider.put(req, req.body_properties())), req.resource_uri
        if a == ENDPOINT.ENUMERATE:
            return ENDPOINT.ENUMERATE_RESPONSE, self._enumerate(provider, req), ""
        if a == ENDPOINT.PULL:
            return ENDPOINT.PULL_RESPONSE, self._pull(req), ""
        if a == ENDPOINT.RELEASE:
            self._enums.pop(_context_of(req), None)
            return NS_WSEN + "/ReleaseResponse", "", ""
        if req.resource_uri and a.startswith(req.resource_uri.rstrip("/") + "/"):
            method = a[len(req.resource_uri.rstrip("/")) + 1:]
            if req.body is not None and local_name(req.body.tag) != f"{method}_INPUT":
                raise schema_validation_error(f"body must be {method}_INPUT")
            out = provider.invoke(req, method, req.body_properties())
            return a + "Response", instance_xml(out), req.resource_uri
        raise action_not_supported(a)

    def _enumerate(self, provider: Provider, req: WsmanRequest) -> str:
        items = provider.enumerate(req)
        now = time.monotonic()
        if len(self._enums) >= self.max_enumerations:
            for k in [k for k, e in self._enums.items() if e.expires < now] or list(self._enums)[:1000]:
                self._enums.pop(k, None)
        ctx = str(uuid.uuid4())
        self._enums[ctx] = _Enumeration(list(items), req.resource_uri, now + self.enumeration_ttl)
        return (f"<wsen:EnumerateResponse><wsen:EnumerationContext>{ctx}</wsen:EnumerationContext>"
                "</wsen:EnumerateResponse>")

    def _pull(self, req: WsmanRequest) -> str:
        ctx = _context_of(req)
        enum = self._enums.get(ctx)
        if enum is None or enum.expires < time.monotonic():
            self._enums.pop(ctx, None)
            raise invalid_enumeration_context()
        max_el = 1
        if req.body is not None:
            for c in req.body:
                if local_name(c.tag) == "MaxElements":
                    try:
                        max_el = max(1, min(int((c.text or "1").strip()), 1000))
                    except ValueError:
                        raise schema_validation_error("MaxElements is not a number") from None
        chunk = enum.items[enum.pos: enum.pos + max_el]
        enum.pos += len(chunk)
        items = "".join(instance_xml(i) for i in chunk)
        if enum.pos >= len(enum.items):
            self._enums.pop(ctx, None)
            tail = "<wsen:EndOfSequence/>"
        else:
            tail = f"<wsen:EnumerationContext>{ctx}</wsen:EnumerationContext>"
        return f"<wsen:PullResponse><wsen:Items>{items}</wsen:Items>{tail}</wsen:PullResponse>"


def _context_of(req: WsmanRequest) -> str:
    if req.body is None:
        raise invalid_enumeration_context()
    for c in req.body.iter():
        if local_name(c.tag) == "EnumerationContext":
            return (c.text or "").strip()
    raise invalid_enumeration_context()


def _refusal(ep: "WsmanEndpoint", denied: "Denied", headers: dict[str, str]) -> web.Response:
    """A refused request: 400 with the reason (e.g. a Kerberos token too large), else 401 with the challenges."""
    if denied.status == 400:
        return web.Response(status=400, reason=denied.reason, text=denied.reason, headers=headers)
    return web.Response(status=401, text="Unauthorized", headers=_challenges(ep, denied, headers))


def _challenges(ep: WsmanEndpoint, denied: Denied, base: Mapping[str, str]) -> CIMultiDict:
    """One ``WWW-Authenticate`` header per scheme the endpoint accepts."""
    h: CIMultiDict[str] = CIMultiDict(base)
    if ep.digest is not None:
        h.add("WWW-Authenticate", ep.digest.challenge(stale=denied.challenge_extra.get("stale") == "true"))
    if ep.negotiate is not None:
        h.add("WWW-Authenticate", ep.negotiate.challenge())
    return h


#: What AMT firmware of the guide's time offers (docs/protocols.md "TLS"): TLS 1.0 only, RSA key exchange,
#: AES-CBC-SHA (0x002F, 0x0035). (Real firmware also lacks RFC 5746 secure renegotiation; an OpenSSL server always
#: has it, so the lab cannot show that part: the client's OP_LEGACY_SERVER_CONNECT is sourced, not lab-proven.)
LEGACY_PROTOCOL, LEGACY_CIPHERS = "TLSv1", "AES128-SHA:AES256-SHA"


def server_ssl_context(cert_file: str, key_file: str, profile: str = "modern") -> ssl.SSLContext:
    """A TLS server context for one device: ``modern`` (TLS 1.2+), or ``legacy``, the TLS of AMT 3.2.1-6.x
    (:data:`LEGACY_CIPHERS` over TLS 1.0 only; security level 0, which SHA-1 certificates need too)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if profile == "legacy":
        ctx.set_ciphers(f"{LEGACY_CIPHERS}:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
    elif profile == "modern":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    else:
        raise ValueError(f"TLS profile must be modern or legacy, not {profile!r}")
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


__all__ = [
    "Fault", "WsmanRequest", "ServerInstance", "Provider", "WsmanEndpoint", "WsmanServer",
    "DigestAuthenticator", "NegotiateAcceptor", "digest_response", "Denied", "amt_digest_realm", "server_ssl_context",
    "parse_request", "instance_xml", "response_envelope", "fault_envelope", "destination_unreachable",
    "action_not_supported", "invalid_selectors", "invalid_representation", "access_denied",
    "schema_validation_error", "invalid_enumeration_context",
]
