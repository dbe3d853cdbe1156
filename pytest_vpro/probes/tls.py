"""TLS toward Intel AMT: the modern handshake first, and one legacy retry for the firmware of the guide's time.

Every TLS connection the probes make to an AMT port (16992-16995: WS-MAN, the WebUI, redirection, the certificate
read) goes through this module. Certificate and host-name verification are the same on both attempts; what the
legacy attempt adds, and only toward :data:`AMT_PORTS` and only after the device refused the modern handshake:

* TLS 1.0 and 1.1 allowed (``minimum_version`` TLSv1). AMT gained TLS 1.2 only in release 12; the 3.2.1-6.x
  firmware that Configuration Manager 2007 managed speaks TLS 1.0 (Intel AMT SDK, docs/protocols.md "TLS").
* ``@SECLEVEL=0``: OpenSSL 3 refuses TLS 1.0/1.1 and SHA-1 signatures at any higher security level.
* the RSA key-exchange AES-CBC-SHA suites, ``AES128-SHA`` (0x002F) and ``AES256-SHA`` (0x0035), the suites a
  captured scan of an AMT 7 device lists. The exact list of 3.2.1-6.x firmware has no public source: it is
  ``expected.amt_legacy_tls_ciphers`` in the environment file (an OpenSSL cipher string).
* legacy renegotiation (``OP_LEGACY_SERVER_CONNECT``, 0x4 where this Python lacks the name): AMT does not
  implement RFC 5746 and OpenSSL 3 clients otherwise stop with "unsafe legacy renegotiation disabled".

A device that needed the legacy attempt is remembered for the rest of the process (its next connections go
straight to the legacy settings), and :class:`Negotiated` says what was used, for the evidence:
``TLS 1.0, AES128-SHA (legacy fallback)``.
"""
from __future__ import annotations

import socket
import ssl
import threading
import warnings
from dataclasses import dataclass

from . import deadline, httpclient
from .errors import ProbeError, Undecided

#: The AMT ports: WS-MAN/WebUI (16992 plain, 16993 TLS), redirection (16994 plain, 16995 TLS).
AMT_PORTS = frozenset({16992, 16993, 16994, 16995})
#: TLS_RSA_WITH_AES_128_CBC_SHA (0x002F) and TLS_RSA_WITH_AES_256_CBC_SHA (0x0035), OpenSSL names.
DEFAULT_LEGACY_CIPHERS = "AES128-SHA:AES256-SHA"
OP_LEGACY_SERVER_CONNECT = getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
#: OpenSSL reasons that mean "this peer does not speak the modern handshake" (not "this peer is not trusted").
REFUSALS = frozenset({
    "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE", "TLSV1_ALERT_PROTOCOL_VERSION", "WRONG_VERSION_NUMBER",
    "SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_CIPHERS_AVAILABLE", "NO_SHARED_CIPHER", "NO_SUITABLE_SIGNATURE_ALGORITHM",
    "UNSAFE_LEGACY_RENEGOTIATION_DISABLED", "TLSV1_ALERT_INSUFFICIENT_SECURITY", "DH_KEY_TOO_SMALL",
    "UNEXPECTED_EOF_WHILE_READING", "CA_MD_TOO_WEAK", "EE_KEY_TOO_SMALL", "CA_KEY_TOO_SMALL",
})
#: X.509 verify results that only the security level causes: a SHA-1 signature (68) or a short key (66, 67) in
#: the chain. Trust, dates and names are judged the same on the legacy attempt.
LEVEL_ONLY_VERIFY_CODES = frozenset({66, 67, 68})
LEVEL_ONLY_VERIFY_MESSAGES = ("EE certificate key too weak", "CA certificate key too weak",
                              "CA signature digest algorithm too weak")
PROTOCOL_NAMES = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3",
                  "SSLv3": "SSL 3.0"}

_needs_legacy: set[tuple[str, int]] = set()
_needs_legacy_lock = threading.Lock()


@dataclass(frozen=True)
class Negotiated:
    """What a TLS session with a device used: ``protocol`` ("TLS 1.0"), ``cipher`` (OpenSSL name), ``legacy``."""

    protocol: str
    cipher: str
    legacy: bool = False

    def __str__(self) -> str:
        return f"{self.protocol}, {self.cipher}" + (" (legacy fallback)" if self.legacy else "")


class HandshakeRefused(ssl.SSLError):
    """Neither the modern nor the legacy handshake completed, the legacy one on a certificate it could not
    verify: a finding. The text names both reasons."""


class LegacyRefused(Undecided):
    """The device refused the modern handshake and the legacy one too, not on its certificate (no shared suite or
    protocol): the legacy suites have no public source (``expected.amt_legacy_tls_ciphers``), so nothing is
    decided about the device."""

    def __init__(self, where: str, modern: str, legacy: str, ciphers: str) -> None:
        super().__init__(f"TLS to {where}: the device refused the modern handshake ({modern}) and the legacy one "
                         f"({legacy}) with the suites {ciphers} over TLS 1.0 and later; which suites AMT 3.2.1-6.x "
                         "offers has no public source: add the device's to expected.amt_legacy_tls_ciphers")
        self.where, self.modern, self.legacy, self.ciphers = where, modern, legacy, ciphers


def verification_failed(exc: BaseException) -> bool:
    """True when ``exc`` is (or wraps) a certificate verification failure: a finding, whatever the suites."""
    return any(isinstance(e, ssl.SSLCertVerificationError) for e in _ssl_errors(exc)) or \
        "certificate verify failed" in str(exc).lower()


def ciphers_of(env) -> str:
    """The legacy suites an environment names (``expected.amt_legacy_tls_ciphers``), else the default."""
    return (getattr(env, "expected", None) or {}).get("amt_legacy_tls_ciphers") or DEFAULT_LEGACY_CIPHERS


def may_fall_back(port: int | None) -> bool:
    return port in AMT_PORTS


def remembered(host: str, port: int) -> bool:
    """True when ``host:port`` needed the legacy settings earlier in this process."""
    with _needs_legacy_lock:
        return (host.lower(), port) in _needs_legacy


def remember(host: str, port: int) -> None:
    with _needs_legacy_lock:
        _needs_legacy.add((host.lower(), port))


def forget() -> None:
    """Forget every remembered device (tests)."""
    with _needs_legacy_lock:
        _needs_legacy.clear()


def client_context(cafile: str | None, *, legacy: bool = False,
                   ciphers: str = DEFAULT_LEGACY_CIPHERS) -> ssl.SSLContext:
    """A verified client context: Python's defaults (TLS 1.2+, certificates checked against ``cafile``, host
    names checked), or the same with the legacy settings of the module docstring."""
    ctx = ssl.create_default_context(cafile=cafile)
    return _legacy(ctx, ciphers) if legacy else _modern(ctx)


def inspection_context(*, legacy: bool = False, ciphers: str = DEFAULT_LEGACY_CIPHERS) -> ssl.SSLContext:
    """An unverified context, only for :func:`pytest_vpro.probes.net.peer_tls`, which reads the certificate a
    device presents in order to judge it and sends nothing over the connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return _legacy(ctx, ciphers) if legacy else _modern(ctx)


def _modern(ctx: ssl.SSLContext) -> ssl.SSLContext:
    # A Python built --with-ssl-default-suites=openssl (Debian's python3) leaves the minimum version to OpenSSL
    # (it reads MINIMUM_SUPPORTED): TLS 1.2 is said here, so that the modern attempt is the same on every build.
    if ctx.minimum_version < ssl.TLSVersion.TLSv1_2:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _legacy(ctx: ssl.SSLContext, ciphers: str) -> ssl.SSLContext:
    with warnings.catch_warnings():  # TLSVersion.TLSv1 is deprecated: using it is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    try:
        ctx.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    except ssl.SSLError:
        raise ProbeError(f"the legacy TLS suites {ciphers!r} (expected.amt_legacy_tls_ciphers) name no cipher "
                         "this machine's OpenSSL offers") from None
    ctx.options |= OP_LEGACY_SERVER_CONNECT
    return ctx


def _ssl_errors(exc: BaseException | None):
    seen: set[int] = set()
    stack = [exc]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            yield cur
        stack += [cur.__cause__, cur.__context__, getattr(cur, "reason", None),
                  *(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))]


def refused_modern(exc: BaseException) -> bool:
    """True when ``exc`` (anywhere in its chain) is a handshake the modern settings could not complete with a
    peer that might speak the legacy ones: a protocol or suite refusal, a close during the handshake, or a
    verification that failed only on the security level (a SHA-1 signature, a short key)."""
    for err in _ssl_errors(exc):
        if isinstance(err, ssl.SSLCertVerificationError):
            if getattr(err, "verify_code", None) in LEVEL_ONLY_VERIFY_CODES:
                return True
            continue
        # a close during the handshake: an EOF, or a close_notify (SSLZeroReturnError), which a Python 3.11.2 asyncio
        # server (Debian's) sends where 3.11.7 drops the connection
        if isinstance(err, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) or (err.reason or "") in REFUSALS:
            return True
    text = str(exc)  # a wrapper that kept only OpenSSL's words: "[SSL: UNSUPPORTED_PROTOCOL] ..."
    return any(f"[SSL: {name}]" in text for name in REFUSALS) or "EOF occurred in violation of protocol" in text \
        or "TLS/SSL connection has been closed (EOF)" in text \
        or any(words in text for words in LEVEL_ONLY_VERIFY_MESSAGES)


def reason(exc: BaseException) -> str:
    """The TLS library's own words for a failed handshake ("certificate verify failed: Hostname mismatch")."""
    for err in _ssl_errors(exc):
        message = getattr(err, "verify_message", None)
        if message:
            return f"certificate verify failed: {message}"
    for err in _ssl_errors(exc):
        if err.reason:
            return err.reason.lower().replace("_", " ")
    return str(exc)[:300]


def negotiated(sock: ssl.SSLSocket, legacy: bool) -> Negotiated:
    version = sock.version() or "?"
    cipher = (sock.cipher() or ("?",))[0]
    return Negotiated(PROTOCOL_NAMES.get(version, version), cipher, legacy)


def connect(host: str, port: int, *, cafile: str | None, timeout: float, inspect_only: bool = False,
            ciphers: str = DEFAULT_LEGACY_CIPHERS,
            limit: deadline.Deadline | None = None) -> tuple[ssl.SSLSocket, Negotiated]:
    """A TLS connection to ``host:port`` (TCP within ``timeout``), modern first, then legacy once if refused;
    verified against ``cafile``, or with ``inspect_only`` (:func:`inspection_context`) not. ``limit``: the
    exchange's :class:`~pytest_vpro.probes.deadline.Deadline` (both attempts connect and shake hands within it).

    OS errors (refused, timeout) propagate as they are; :class:`HandshakeRefused` when neither handshake
    completed on an AMT port; the ``ssl.SSLError`` itself elsewhere."""
    tries = [True] if remembered(host, port) and may_fall_back(port) else [False, True] if may_fall_back(port) \
        else [False]
    first: ssl.SSLError | None = None
    for legacy in tries:
        ctx = inspection_context(legacy=legacy, ciphers=ciphers) if inspect_only \
            else client_context(cafile, legacy=legacy, ciphers=ciphers)
        if limit is None:
            raw = socket.create_connection((host, port), timeout=timeout)
        else:
            raw = deadline.connect(host, port, timeout, limit)
            limit.watch_copy(raw)
        try:
            sock = ctx.wrap_socket(raw, server_hostname=host)
        except (ssl.SSLError, ConnectionResetError) as exc:
            raw.close()
            err = exc if isinstance(exc, ssl.SSLError) else ssl.SSLEOFError(str(exc))
            if legacy:
                modern = reason(first) if first is not None else "not tried again: it was refused earlier in this run"
                if inspect_only or not verification_failed(err):
                    raise LegacyRefused(f"{host}:{port}", modern, reason(err), ciphers) from None
                if first is None:
                    raise
                raise HandshakeRefused(f"modern handshake: {reason(first)}; legacy fallback ({ciphers}, TLS 1.0 "
                                       f"and later): {reason(err)}") from None
            if len(tries) == 1 or not refused_modern(err):
                raise
            first = err
            continue
        if legacy:
            remember(host, port)
        return sock, negotiated(sock, legacy)
    raise AssertionError("unreachable")  # pragma: no cover


class RecordingAdapter(httpclient._Adapter):  # noqa: SLF001 - the probes' shared adapter, extended
    """A requests adapter whose connections use one of :func:`client_context`'s contexts, and remember what the
    last handshake negotiated (:attr:`negotiated`)."""

    def __init__(self, cafile: str | None, *, legacy: bool, ciphers: str = DEFAULT_LEGACY_CIPHERS) -> None:
        self.legacy = legacy
        self.negotiated: Negotiated | None = None
        self.context = client_context(cafile, legacy=legacy, ciphers=ciphers)
        adapter = self

        class _Recording(ssl.SSLSocket):
            def do_handshake(self, block: bool = False) -> None:
                super().do_handshake(block)
                adapter.negotiated = negotiated(self, adapter.legacy)

        self.context.sslsocket_class = _Recording
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["ssl_context"] = self.context
        return super().init_poolmanager(*args, **kwargs)


__all__ = ["AMT_PORTS", "DEFAULT_LEGACY_CIPHERS", "OP_LEGACY_SERVER_CONNECT", "Negotiated", "HandshakeRefused",
           "LegacyRefused", "verification_failed",
           "ciphers_of", "client_context", "inspection_context", "refused_modern", "reason", "connect",
           "RecordingAdapter", "may_fall_back",
           "remembered", "remember", "forget"]
