"""LDAP / Active Directory probe (ldap3): bind, paged search, security descriptors, token groups.

What the out of band checks read from AD: the OU the site server publishes AMT accounts in and the site server's
rights on it (a security descriptor), the AMT accounts and their SPNs, certificate template objects, and the
console user's group memberships (the ~4 KB Kerberos ticket limit of AMT). See docs/protocols.md, "Active
Directory objects for AMT".

Binding (RFC 4513): Kerberos (SASL GSSAPI, RFC 4752, with the caller's ticket cache) or a simple bind with a
password. Both run over TLS with the certificate verified: LDAPS (636) by default, StartTLS (RFC 4511 4.14) with
``use_ssl=False``. A password never crosses the wire in clear, and never appears in a message.

Sources: RFC 4511 (LDAP), RFC 2696 (paged results control, 1.2.840.113556.1.4.319), MS-ADTS 3.1.1.3.4.1.11
(LDAP_SERVER_SD_FLAGS_OID 1.2.840.113556.1.4.801), MS-ADTS 3.1.1.4.5.19 (tokenGroups), MS-ADTS 5.1.3.2 (access
rights for directory objects) and 5.1.3.3 (generic mapping), MS-DTYP 2.4.2 (SID), 2.4.4 (ACE), 2.4.6 (security
descriptor), 2.5.3.2 (access check), MS-ADTS 2.2.12 (groupType), Microsoft KB327825 (TokenSz formula).

The cut, in the manner of smbprotocol (a friendly API over the structures): this module talks to the directory
(connect and bind, the deadline and byte budget of each exchange, paged and base searches, tokenGroups, SID
lookups) and its errors. What it reads is decoded and judged in :mod:`pytest_vpro.probes.ldap_values` (security
descriptors and the access check, rights masks, well-known SIDs, the token size formula), which needs no server
and no ldap3; its names are re-exported here, so ``from pytest_vpro.probes.ldap import grants`` keeps working.

Connections use ldap3's synchronous strategy: one connection per thread.

Every exchange (connecting: TCP, TLS, StartTLS and the bind; each search) has one deadline, connect + read
timeout: ldap3's ``receive_timeout`` bounds each read only, so a server that trickles its reply is cut by
:class:`~pytest_vpro.probes.deadline.Deadline`, which shuts ``Connection.socket``. What an exchange receives is
counted against :data:`MAX_REPLY_BYTES` (ldap3 keeps a whole reply in memory, and a hostile server decides its
size). Anything ldap3 raises for a reply it cannot decode is a :class:`MalformedReply`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import math
import re
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import ldap3
from impacket.ldap import ldaptypes
from ldap3.core import exceptions as lx
from ldap3.protocol.formatters.formatters import format_sid
from ldap3.protocol.microsoft import security_descriptor_control
from ldap3.utils.conv import escape_bytes

from ..secrets import SecretUnavailable, redact
from . import deadline
from .errors import CLOSED, NO_ANSWER, MalformedReply, ProbeError, ReplyTooLarge, Unreachable, too_late, what_happened
from .ldap_values import (
    ACE_FLAGS,
    FULL_CONTROL,
    GENERIC_MAPPING,
    GROUP_BUILTIN_LOCAL,
    GROUP_DOMAIN_LOCAL,
    GROUP_GLOBAL,
    GROUP_UNIVERSAL,
    RIGHTS,
    SE_DACL_PROTECTED,
    TOKEN_KINDS_D,
    TOKEN_KINDS_S,
    WELL_KNOWN_SIDS,
    Ace,
    SecurityDescriptor,
    expand_generic,
    grants,
    parse_security_descriptor,
    rights_mask,
    rights_names,
    token_size_estimate,
)

if TYPE_CHECKING:
    from ..environment import Credential, Server

LDAPS_PORT, LDAP_PORT = 636, 389
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
SD_FLAGS_OWNER_GROUP_DACL = 0x07  # OWNER | GROUP | DACL_SECURITY_INFORMATION (MS-ADTS 3.1.1.3.4.1.11)
#: The most one exchange (a bind, one page of a search) may receive. A page of 500 computers with their security
#: descriptors is a few MB; AD's own MaxReceiveBuffer is 10 MB.
MAX_REPLY_BYTES = 32 * 1024 * 1024
#: The largest single LDAP message (one entry) accepted: a security descriptor is tens of KB, a group's member
#: list is cut at 1,500 values by AD's range retrieval.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class AuthFailed(ProbeError):
    """The server answered but the bind failed; ``reason`` says why (one of the ``AuthFailed.*`` constants)."""

    BAD_PASSWORD = "bad user name or password"
    NO_PASSWORD = "password not available"
    NO_TICKET = "no usable Kerberos ticket"
    UNKNOWN_SPN = "no Kerberos principal for the LDAP service"
    SIGNING_REQUIRED = "the server requires SASL signing or sealing, which ldap3 does not implement"
    OTHER = "bind refused"

    def __init__(self, where: str, reason: str, detail: str = "") -> None:
        super().__init__(redact(f"LDAP bind to {where} failed: {reason}" + (f" ({detail})" if detail else "")))
        self.where, self.reason, self.detail = where, reason, redact(detail)


class TlsUntrusted(ProbeError):
    """The server's TLS certificate did not verify (unknown CA, expired, or not for this host name)."""


class NoSuchObject(ProbeError):
    """The DN searched for does not exist (resultCode 32, noSuchObject)."""


# --------------------------------------------------------------------------- connecting

def _split_server(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host and "]" not in port:
        return host.strip("[]"), int(port)
    return text, default_port


def connect(servers: list[str] | tuple[str, ...], *, credential: "Credential", ca_file: str | None,
            timeout: float, use_ssl: bool = True, connect_timeout: float | None = None) -> ldap3.Connection:
    """A bound, read-only connection to the first of ``servers`` (``host`` or ``host:port``) that answers.

    ``credential.kerberos``: SASL GSSAPI with the caller's ticket cache (SPN ``ldap/<host>``: give FQDNs).
    Otherwise a simple bind as ``credential.user`` (UPN, ``DOMAIN\\user`` or DN) with the password resolved
    from its reference. ``ca_file`` (PEM) is the trust anchor for the server certificate; None means the
    system's trust store. The server's host name (or address) must match the certificate. Each exchange (TCP,
    TLS and the bind; each search) gets one deadline, ``connect_timeout`` (default ``timeout``) + ``timeout``
    rounded up to whole seconds as ldap3 applies it, whatever the number of addresses the server's name has.

    Raises Unreachable (no server answered), TlsUntrusted, AuthFailed, ProbeError.
    """
    if not servers:
        raise ProbeError("no LDAP server to connect to")
    failures: list[Unreachable] = []
    for text in servers:
        host, port = _split_server(text, LDAPS_PORT if use_ssl else LDAP_PORT)
        try:
            return _connect_one(host, port, credential, ca_file, timeout, use_ssl,
                                timeout if connect_timeout is None else connect_timeout)
        except Unreachable as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    raise Unreachable(", ".join(f"{f.host}:{f.port}" for f in failures), None, timeout,
                      "no LDAP server answered (" + "; ".join(str(f) for f in failures) + ")")


def _connect_one(host: str, port: int, credential: "Credential", ca_file: str | None, timeout: float,
                 use_ssl: bool, connect_timeout: float) -> ldap3.Connection:
    where = f"{host}:{port}"
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file, sni=None if _is_ip(host) else host)
    server = ldap3.Server(host, port=port, use_ssl=use_ssl, tls=tls, get_info=ldap3.NONE,
                          connect_timeout=connect_timeout, mode=ldap3.IP_V4_ONLY)
    # ldap3 packs the receive timeout into SO_RCVTIMEO as whole seconds: round up.
    receive = max(1, math.ceil(timeout))
    options: dict[str, Any] = {"read_only": True, "receive_timeout": receive,
                               "raise_exceptions": True, "auto_referrals": False, "client_strategy": ldap3.SYNC}
    if credential.kerberos:
        _require_ticket(where)
        conn = ldap3.Connection(server, authentication=ldap3.SASL, sasl_mechanism=ldap3.KERBEROS, **options)
    else:
        try:
            password = credential.password.resolve() if credential.password else None
        except SecretUnavailable as exc:
            raise AuthFailed(where, AuthFailed.NO_PASSWORD, str(exc)) from None
        if not password or not credential.user:  # an empty password would be an unauthenticated bind (RFC 4513 5.1.2)
            raise AuthFailed(where, AuthFailed.NO_PASSWORD, "a simple bind needs a user and a non-empty password")
        conn = ldap3.Connection(server, user=credential.user, password=password,
                                authentication=ldap3.SIMPLE, **options)
    # Every exchange on it: connect + the read timeout ldap3 really applies (so that a server that is merely
    # silent is still "no answer within the timeout", and only one that trickles meets the deadline).
    conn.vpro_budget = connect_timeout + receive

    def open_and_bind() -> None:
        with _errors(where, timeout, conn):
            conn.open()
            _count(conn)
            if not use_ssl:
                conn.start_tls()
                _count(conn)  # StartTLS put a new (TLS) socket in place
            conn.bind()

    try:
        if credential.kerberos:  # the SASL bind asks the KDC for a ticket inside libkrb5: no socket to shut
            deadline.call(open_and_bind, conn.vpro_budget,
                          lambda: too_late(host, port, conn.vpro_budget, deadline.abandoned()), name=f"ldap {where}")
        else:
            open_and_bind()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.unbind()
        raise
    return conn


class _Counted:
    """``Connection.socket``, bounding what each exchange receives. ldap3 allocates and copies a whole message in
    memory (4 KB at a time, each copy of all received so far), so a message over :data:`MAX_MESSAGE_BYTES` is
    refused when its BER header announces it, and an exchange's messages together may not pass
    :data:`MAX_REPLY_BYTES`. Everything else goes to the socket itself, so ldap3 (and the ssl module, which
    wraps it for StartTLS) sees a socket."""

    def __init__(self, sock: Any, where: str) -> None:
        self.socket_for_deadline = sock
        self.where = where
        self.received = 0
        self._head = b""  # the header of the next message, while it is incomplete
        self._left = 0    # bytes of the current message still to come

    def recv(self, size: int, *args: Any) -> bytes:
        data = self.socket_for_deadline.recv(size, *args)
        self.received += len(data)
        if self.received > MAX_REPLY_BYTES:
            raise ReplyTooLarge(f"{self.where} sent more than {MAX_REPLY_BYTES:,} bytes in one reply; the "
                                "connection was closed there")
        self._follow(data)
        return data

    def _follow(self, data: bytes) -> None:
        """Walk the BER headers of the messages in ``data`` (X.690 8.1: tag, then a short or long length)."""
        i = 0
        while i < len(data):
            if self._left:
                step = min(self._left, len(data) - i)
                self._left -= step
                i += step
                continue
            self._head += data[i:i + 1]
            i += 1
            if len(self._head) < 2:
                continue
            first = self._head[1]
            if first < 0x80:
                length = first
            elif first == 0x80 or first > 0x84:  # indefinite (LDAP forbids it) or a length of over 4 bytes
                raise MalformedReply(f"{self.where} answered with something that is not a valid LDAP reply")
            elif len(self._head) < 2 + (first & 0x7F):
                continue
            else:
                length = int.from_bytes(self._head[2:2 + (first & 0x7F)], "big")
            if length > MAX_MESSAGE_BYTES:
                raise ReplyTooLarge(f"{self.where} announced an LDAP message of {length:,} bytes, more than the "
                                    f"{MAX_MESSAGE_BYTES:,} accepted; the connection was closed before reading it")
            self._head, self._left = b"", length

    def __getattr__(self, name: str) -> Any:
        return getattr(self.socket_for_deadline, name)


def _count(conn: ldap3.Connection) -> None:
    """Put the byte counter on the connection's socket (again, once ldap3 has replaced it) and reset it."""
    sock = conn.socket
    if sock is None:
        return
    if not isinstance(sock, _Counted):
        conn.socket = sock = _Counted(sock, f"{conn.server.host}:{conn.server.port}")
    sock.received = 0  # per exchange; the BER walk goes on across exchanges (ldap3 may have read ahead)


def _require_ticket(where: str) -> None:
    """Fail with AuthFailed(NO_TICKET) before connecting when the ticket cache holds no usable ticket.

    ldap3 answers a GSSAPI failure by aborting the SASL bind first, and the server's reply to the abort would
    hide the real cause; asking GSSAPI for the initiator's credentials up front keeps it (RFC 2743 2.1.1)."""
    try:
        import gssapi  # noqa: PLC0415 - gssapi (libgssapi) loads only for a Kerberos bind
    except ImportError as exc:
        raise ProbeError(f"Kerberos bind needs the gssapi package: {exc}") from None
    try:
        creds = gssapi.Credentials(usage="initiate")
        if creds.lifetime == 0:
            raise AuthFailed(where, AuthFailed.NO_TICKET, "the ticket has expired")
    except gssapi.exceptions.GSSError as exc:
        raise _kerberos_failure(where, exc) from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def _errors(where: str, timeout: float | None, conn: ldap3.Connection | None = None) -> Iterator[None]:
    """One exchange on ``conn``: within its deadline and byte budget, and ldap3 (and gssapi) exceptions turned
    into ProbeErrors that never let a secret through."""
    host, _, port = where.rpartition(":")
    seconds = getattr(conn, "vpro_budget", None) or 2 * (timeout or 10)
    limit = deadline.Deadline(seconds, f"LDAP {where}")
    try:
        with limit:
            if conn is not None:
                limit.watch_source(lambda: conn.socket)  # ldap3 replaces it (TLS, another address of the name)
                _count(conn)
            yield
            if limit.expired:
                raise limit.too_late(host, int(port))
    except ProbeError:
        raise
    except Exception as exc:  # noqa: BLE001 - every library exception becomes a sentence about the server
        if limit.expired:
            raise limit.too_late(host, int(port)) from None
        raise _ldap_failure(where, host, int(port), timeout, exc) from None


def _ldap_failure(where: str, host: str, port: int, timeout: float | None, exc: Exception) -> ProbeError:
    """What the server did, from what ldap3 (or gssapi) raised."""
    if isinstance(exc, lx.LDAPInvalidCredentialsResult):
        return AuthFailed(where, AuthFailed.BAD_PASSWORD, _ad_reason(exc))
    if isinstance(exc, lx.LDAPNoSuchObjectResult):
        return NoSuchObject(redact(f"no such object at {where}: {exc.dn or exc.message or exc}"))
    if isinstance(exc, lx.LDAPCertificateError):
        return TlsUntrusted(f"TLS certificate of {where} does not name this host: {str(exc)[-200:]}")
    if isinstance(exc, (lx.LDAPSocketOpenError, lx.LDAPStartTLSError)):
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
            return TlsUntrusted(f"TLS certificate of {where} not trusted: {text[-300:]}")
        return Unreachable(host, port, timeout, what_happened(exc))  # the vocabulary of errors.py, not ldap3's
    if isinstance(exc, lx.LDAPResponseTimeoutError):
        return Unreachable(host, port, timeout, NO_ANSWER)
    if isinstance(exc, (lx.LDAPSocketReceiveError, lx.LDAPSessionTerminatedByServerError)):
        return Unreachable(host, port, timeout, CLOSED)
    if isinstance(exc, lx.LDAPPackageUnavailableError):
        return ProbeError(f"Kerberos bind needs the gssapi package: {exc}")
    if isinstance(exc, lx.LDAPOperationResult):
        if exc.result == 8 and "sasl" in (exc.message or "").lower():  # e.g. Samba < 4.20 GSSAPI over LDAPS
            return AuthFailed(where, AuthFailed.SIGNING_REQUIRED, f"{exc.description}: {exc.message}")
        if exc.result in (8, 13, 48, 49, 50):  # strongerAuthRequired, confidentialityRequired, inappropriate-
            return AuthFailed(where, AuthFailed.OTHER, f"{exc.description}: {exc.message}")
        return ProbeError(redact(f"LDAP operation at {where} failed: {exc.description} {exc.message}"))
    if type(exc).__module__.startswith("gssapi"):  # gssapi.exceptions.GSSError and friends (imported lazily)
        return _kerberos_failure(where, exc)
    if isinstance(exc, lx.LDAPException) and not isinstance(exc, lx.LDAPUnknownResponseError):
        return ProbeError(redact(f"LDAP error at {where}: {exc}"))
    # What pyasn1 and ldap3's decoder raise for bytes that are not an LDAP message (KeyError, IndexError,
    # PyAsn1Error, TypeError, ValueError, ...), and a reply to no request of ours: the server sent something else.
    return MalformedReply(f"{where} answered with something that is not a valid LDAP reply")


def _ad_reason(exc: lx.LDAPOperationResult) -> str:
    """AD's diagnostic (``80090308: LdapErr: ... data 52e``) names the cause: 52e bad password, 775 locked..."""
    message = (exc.message or "").strip()
    return message[:200]


def _kerberos_failure(where: str, exc: Exception) -> AuthFailed:
    text = str(exc)
    name = type(exc).__name__
    if name in ("MissingCredentialsError", "ExpiredCredentialsError") or "credentials cache" in text.lower() \
            or "expired" in text.lower():
        return AuthFailed(where, AuthFailed.NO_TICKET, text[-300:])
    if "not found in kerberos database" in text.lower():
        return AuthFailed(where, AuthFailed.UNKNOWN_SPN, text[-300:])
    return AuthFailed(where, AuthFailed.OTHER, text[-300:])


def _where(conn: ldap3.Connection) -> str:
    return f"{conn.server.host}:{conn.server.port}"


def _timeout(conn: ldap3.Connection) -> float | None:
    return conn.receive_timeout


# --------------------------------------------------------------------------- searching

_SCOPES = {"base": ldap3.BASE, "one": ldap3.LEVEL, "subtree": ldap3.SUBTREE}


def search_paged(conn: ldap3.Connection, base: str, ldap_filter: str, attributes: list[str] | tuple[str, ...],
                 page_size: int = 500, limit: int | None = None, *, scope: str = "subtree",
                 controls: list | None = None) -> Iterator[dict[str, Any]]:
    """Entries under ``base`` matching ``ldap_filter``, fetched a page at a time (RFC 2696), so a directory of
    10,000 objects never exceeds the server's size limit (AD: MaxPageSize 1,000, MaxResultSetSize).

    Yields ``{"dn", "attributes", "raw_attributes"}``; stops after ``limit`` entries (and tells the server to
    drop the rest of the result set). Each page is copied before it is yielded, so ``conn`` may be used for
    other searches while iterating. Referrals are skipped.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    cookie: bytes | None = None
    count = 0
    while True:
        size = page_size if limit is None else min(page_size, limit - count)
        with _errors(_where(conn), _timeout(conn), conn):
            conn.search(base, ldap_filter, _SCOPES[scope], attributes=list(attributes), paged_size=size,
                        paged_cookie=cookie, controls=controls)
            page = [{"dn": e["dn"], "attributes": dict(e["attributes"]), "raw_attributes": dict(e["raw_attributes"])}
                    for e in conn.response if e.get("type") == "searchResEntry"]
            cookie = (conn.result.get("controls") or {}).get(PAGED_RESULTS_OID, {}).get("value", {}).get("cookie")
        for entry in page:
            yield entry
            count += 1
        if not cookie:
            return
        if limit is not None and count >= limit:
            with contextlib.suppress(Exception):  # RFC 2696 3: size 0 with the cookie abandons the search
                conn.search(base, ldap_filter, _SCOPES[scope], attributes=["1.1"], paged_size=0,
                            paged_cookie=cookie, controls=controls)
            return


def _read_base(conn: ldap3.Connection, dn: str, attributes: list[str], controls: list) -> list[dict[str, Any]]:
    with _errors(_where(conn), _timeout(conn), conn):
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes, controls=controls)
        return [{"dn": e["dn"], "attributes": dict(e["attributes"]), "raw_attributes": dict(e["raw_attributes"])}
                for e in conn.response if e.get("type") == "searchResEntry"]


def root_dse(conn: ldap3.Connection) -> dict[str, Any]:
    """The root DSE's naming contexts (RFC 4512 5.1; MS-ADTS 3.1.1.3.2)."""
    entry = _read_base(conn, "", ["defaultNamingContext", "configurationNamingContext", "dnsHostName",
                                  "rootDomainNamingContext"], [])
    if not entry:
        raise MalformedReply(f"{_where(conn)} returned no root DSE")
    return entry[0]["attributes"]


def current_time(conn: ldap3.Connection) -> tuple[float, float, float, str]:
    """The domain controller's clock: the root DSE's ``currentTime`` (RFC 4512 5.1 operational attribute of AD's
    root DSE, MS-ADTS 3.1.1.3.2.1; GeneralizedTime, whole seconds), and this machine's clock when the search was
    sent and when it answered: ``(dc_time, sent, received, dc name)``, times as seconds since 1970 (UTC)."""
    sent = time.time()
    entry = _read_base(conn, "", ["currentTime", "dnsHostName"], [])
    received = time.time()
    raw = (entry[0]["raw_attributes"].get("currentTime") or [b""])[0] if entry else b""
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    match = re.fullmatch(r"(\d{14})(?:[.,]\d+)?Z", text.strip())
    if not match:
        raise MalformedReply(f"{_where(conn)} returned no root DSE currentTime (got {text!r:.40})")
    when = dt.datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)
    name = entry[0]["attributes"].get("dnsHostName") or _where(conn)
    return when.timestamp(), sent, received, str(name[0] if isinstance(name, list) and name else name)


def read_security_descriptor(conn: ldap3.Connection, dn: str) -> SecurityDescriptor:
    """Owner, group and DACL of ``dn``, read with the SD flags control 0x07 so a non-admin can read them
    (without it AD also asks for the SACL, which needs SeSecurityPrivilege, and returns nothing)."""
    controls = security_descriptor_control(criticality=True, sdflags=SD_FLAGS_OWNER_GROUP_DACL)
    entries = _read_base(conn, dn, ["nTSecurityDescriptor"], controls)
    if not entries:
        raise NoSuchObject(f"no such object at {_where(conn)}: {dn}")
    values = entries[0]["raw_attributes"].get("nTSecurityDescriptor") or []
    if not values:
        raise ProbeError(f"{dn}: nTSecurityDescriptor not returned by {_where(conn)} (no right to read it?)")
    return parse_security_descriptor(values[0])


# --------------------------------------------------------------------------- groups and token size

def token_groups(conn: ldap3.Connection, user_dn: str) -> list[str]:
    """SIDs of every security group ``user_dn`` is in, transitively (tokenGroups, MS-ADTS 3.1.1.4.5.19).

    tokenGroups is constructed: the DC only computes it for a base-scope search on the object."""
    entry = _read_base(conn, user_dn, ["tokenGroups"], [])
    if not entry:
        raise NoSuchObject(f"no such object at {_where(conn)}: {user_dn}")
    return [format_sid(v) for v in entry[0]["raw_attributes"].get("tokenGroups", [])]



def token_groups_by_kind(conn: ldap3.Connection, user_dn: str) -> dict[str, int]:
    """Count the user's token groups by TokenSz kind (groupType of each group, the user's sIDHistory)."""
    user = _read_base(conn, user_dn, ["objectSid", "sIDHistory"], [])
    if not user:
        raise NoSuchObject(f"no such object at {_where(conn)}: {user_dn}")
    raw = user[0]["raw_attributes"]
    own_domain = format_sid(raw["objectSid"][0]).rsplit("-", 1)[0]
    counts = dict.fromkeys(TOKEN_KINDS_D + TOKEN_KINDS_S, 0)
    counts["sid_history"] = len(raw.get("sIDHistory", []))
    sids = token_groups(conn, user_dn)
    types = _group_types(conn, sids)
    for sid in sids:
        group_type = types.get(sid)
        if group_type is None:
            counts["unresolved"] += 1
        elif group_type & (GROUP_DOMAIN_LOCAL | GROUP_BUILTIN_LOCAL):
            counts["domain_local"] += 1
        elif group_type & GROUP_UNIVERSAL:
            same = sid.rsplit("-", 1)[0] == own_domain
            counts["universal_same_domain" if same else "universal_other_domain"] += 1
        else:
            counts["global"] += 1
    return counts


def _sid_filter(sids: list[str]) -> str:
    """``(|(objectSid=\\01\\05...)...)``: SIDs in binary (RFC 4515 escapes), which every DC accepts."""
    parts = []
    for sid in sids:
        binary = ldaptypes.LDAP_SID()
        binary.fromCanonical(sid)
        parts.append(f"(objectSid={escape_bytes(binary.getData())})")
    return f"(|{''.join(parts)})"


def _by_sid(conn: ldap3.Connection, sids: Iterable[str], attributes: list[str]) -> dict[str, dict[str, Any]]:
    sids = [s for s in dict.fromkeys(sids) if s.startswith("S-1-")]
    base = root_dse(conn).get("defaultNamingContext")
    base = str(base[0] if isinstance(base, list) else base)
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(sids), 50):
        for entry in search_paged(conn, base, _sid_filter(sids[i:i + 50]), ["objectSid"] + attributes):
            found[format_sid(entry["raw_attributes"]["objectSid"][0])] = entry["attributes"]
    return found


def _group_types(conn: ldap3.Connection, sids: list[str]) -> dict[str, int]:
    out = {}
    for sid, attrs in _by_sid(conn, sids, ["groupType"]).items():
        value = attrs.get("groupType")
        value = value[0] if isinstance(value, list) and value else value
        try:  # an int with the schema loaded, a string without (get_info=NONE)
            out[sid] = int(value)  # type: ignore[arg-type]  # anything else is the TypeError below
        except (TypeError, ValueError):
            continue
    return out



def resolve_sids(conn: ldap3.Connection, sids: Iterable[str]) -> dict[str, str]:
    """``{sid: name}``: sAMAccountName from the domain partition, else the well-known name, else the SID."""
    sids = list(dict.fromkeys(sids))
    found = _by_sid(conn, [s for s in sids if s not in WELL_KNOWN_SIDS], ["sAMAccountName", "name"])
    out = {}
    for sid in sids:
        attrs = found.get(sid) or {}
        name = attrs.get("sAMAccountName") or attrs.get("name")
        name = name[0] if isinstance(name, list) and name else name
        out[sid] = name or WELL_KNOWN_SIDS.get(sid) or sid
    return out


# --------------------------------------------------------------------------- the environment's client source

def search_computers(dcs: list["Server"], credential: "Credential", base_dn: str, ldap_filter: str | None = None,
                     *, ca_file: str | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """``[{"fqdn": dNSHostName}]`` of every computer under ``base_dn`` (``clients: - source: "ldap:OU=..."``).

    Each DC is tried by name, then by address. ``ldap_filter`` narrows ``(objectClass=computer)``. Computers
    without a dNSHostName cannot be checked by name and are left out. Sorted by FQDN.
    """
    servers: list[str] = []
    for dc in dcs:
        servers += [dc.name] + ([dc.address] if dc.address and dc.address != dc.name else [])
    extra = ldap_filter.strip() if ldap_filter else ""
    if extra and not extra.startswith("("):
        extra = f"({extra})"
    conn = connect(servers, credential=credential, ca_file=ca_file, timeout=timeout)
    try:
        rows = {}
        for entry in search_paged(conn, base_dn, f"(&(objectClass=computer){extra})", ["dNSHostName"]):
            name = entry["attributes"].get("dNSHostName")
            name = name[0] if isinstance(name, list) and name else name
            if name:
                rows[str(name).lower()] = {"fqdn": str(name).lower()}
        return [rows[k] for k in sorted(rows)]
    finally:
        with contextlib.suppress(Exception):
            conn.unbind()


__all__ = [
    # this module: binds and searches
    "LDAPS_PORT", "LDAP_PORT", "PAGED_RESULTS_OID", "SD_FLAGS_OWNER_GROUP_DACL", "MAX_REPLY_BYTES",
    "MAX_MESSAGE_BYTES", "AuthFailed", "TlsUntrusted", "NoSuchObject", "connect", "search_paged", "root_dse",
    "read_security_descriptor", "token_groups", "token_groups_by_kind", "resolve_sids", "search_computers",
    "format_sid",
    # ldap_values: what is read, decoded and judged
    "RIGHTS", "FULL_CONTROL", "GENERIC_MAPPING", "ACE_FLAGS", "SE_DACL_PROTECTED", "GROUP_BUILTIN_LOCAL",
    "GROUP_GLOBAL", "GROUP_DOMAIN_LOCAL", "GROUP_UNIVERSAL", "TOKEN_KINDS_D", "TOKEN_KINDS_S", "WELL_KNOWN_SIDS",
    "Ace", "SecurityDescriptor", "expand_generic", "rights_names", "rights_mask", "parse_security_descriptor",
    "grants", "token_size_estimate", "current_time",
]
