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

Connections use ldap3's synchronous strategy: one connection per thread.

Every exchange (connecting: TCP, TLS, StartTLS and the bind; each search) has one deadline, connect + read
timeout: ldap3's ``receive_timeout`` bounds each read only, so a server that trickles its reply is cut by
:class:`~pytest_vpro.probes.deadline.Deadline`, which shuts ``Connection.socket``. What an exchange receives is
counted against :data:`MAX_REPLY_BYTES` (ldap3 keeps a whole reply in memory, and a hostile server decides its
size). Anything ldap3 raises for a reply it cannot decode is a :class:`MalformedReply`.
"""
from __future__ import annotations

import contextlib
import math
import ssl
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
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
        import gssapi  # noqa: PLC0415 (only Kerberos binds need it)
    except ImportError as exc:
        raise ProbeError(f"Kerberos bind needs the gssapi package: {exc}") from None
    try:
        creds = gssapi.Credentials(usage="initiate")
        if creds.lifetime == 0:
            raise AuthFailed(where, AuthFailed.NO_TICKET, "the ticket has expired")
    except gssapi.exceptions.GSSError as exc:
        raise _kerberos_failure(where, exc) from None


def _is_ip(host: str) -> bool:
    import ipaddress  # noqa: PLC0415

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


# --------------------------------------------------------------------------- security descriptors

# MS-ADTS 5.1.3.2 (ACCESS_MASK for directory objects; SDDL abbreviation in the comment) and MS-DTYP 2.4.3.
RIGHTS: dict[str, int] = {
    "CREATE_CHILD": 0x1,            # CC
    "DELETE_CHILD": 0x2,            # DC
    "LIST_CHILDREN": 0x4,           # LC
    "SELF": 0x8,                    # SW  validated write
    "READ_PROPERTY": 0x10,          # RP
    "WRITE_PROPERTY": 0x20,         # WP
    "DELETE_TREE": 0x40,            # DT
    "LIST_OBJECT": 0x80,            # LO
    "CONTROL_ACCESS": 0x100,        # CR  extended right
    "DELETE": 0x10000,              # SD
    "READ_CONTROL": 0x20000,        # RC
    "WRITE_DAC": 0x40000,           # WD
    "WRITE_OWNER": 0x80000,         # WO
    "SYNCHRONIZE": 0x100000,
    "ACCESS_SYSTEM_SECURITY": 0x1000000,
    "MAXIMUM_ALLOWED": 0x2000000,
    "GENERIC_ALL": 0x10000000,      # GA
    "GENERIC_EXECUTE": 0x20000000,  # GX
    "GENERIC_WRITE": 0x40000000,    # GW
    "GENERIC_READ": 0x80000000,     # GR
}
FULL_CONTROL = 0xF01FF  # every directory right + DELETE, READ_CONTROL, WRITE_DAC, WRITE_OWNER ("GA" once stored)
# MS-ADTS 5.1.3.3: how generic rights map to directory rights.
GENERIC_MAPPING = {
    RIGHTS["GENERIC_READ"]: 0x20094,     # RC | LC | RP | LO
    RIGHTS["GENERIC_WRITE"]: 0x20028,    # RC | SW | WP
    RIGHTS["GENERIC_EXECUTE"]: 0x20004,  # RC | LC
    RIGHTS["GENERIC_ALL"]: FULL_CONTROL,
}
ACE_FLAGS = {"OBJECT_INHERIT": 0x01, "CONTAINER_INHERIT": 0x02, "NO_PROPAGATE_INHERIT": 0x04,
             "INHERIT_ONLY": 0x08, "INHERITED": 0x10, "SUCCESSFUL_ACCESS": 0x40, "FAILED_ACCESS": 0x80}
_ALLOW_TYPES = {0x00, 0x05, 0x09, 0x0B}   # ACCESS_ALLOWED[_OBJECT][_CALLBACK]_ACE_TYPE
_DENY_TYPES = {0x01, 0x06, 0x0A, 0x0C}
_AUDIT_TYPES = {0x02, 0x07, 0x0D, 0x0F}
SE_DACL_PROTECTED = 0x1000  # MS-DTYP 2.4.6 control flag PD: inheritance from the parent is blocked


def expand_generic(mask: int) -> int:
    """``mask`` with generic rights replaced by the directory rights they stand for (MS-ADTS 5.1.3.3)."""
    out = mask
    for generic, specific in GENERIC_MAPPING.items():
        if mask & generic:
            out = (out & ~generic) | specific
    return out


def rights_names(mask: int) -> tuple[str, ...]:
    """Names of the rights in ``mask``; ``FULL_CONTROL`` stands for all of 0xF01FF."""
    names: list[str] = []
    if mask & FULL_CONTROL == FULL_CONTROL:
        names.append("FULL_CONTROL")
        mask &= ~FULL_CONTROL
    names.extend(name for name, bit in RIGHTS.items() if mask & bit)
    return tuple(names)


def rights_mask(rights: int | str | Iterable[str]) -> int:
    """A mask from a mask or from right names (``"FULL_CONTROL"``, ``"CREATE_CHILD"``, ...)."""
    if isinstance(rights, int):
        return rights
    names = [rights] if isinstance(rights, str) else list(rights)
    mask = 0
    for name in names:
        key = name.upper()
        if key == "FULL_CONTROL":
            mask |= FULL_CONTROL
        elif key in RIGHTS:
            mask |= RIGHTS[key]
        else:
            raise ValueError(f"unknown right {name!r} (known: FULL_CONTROL, {', '.join(RIGHTS)})")
    return mask


@dataclass(frozen=True)
class Ace:
    """One access control entry (MS-DTYP 2.4.4). GUIDs are lower-case strings, or None."""

    kind: str                          # "allow" | "deny" | "audit" | "other"
    trustee: str                       # SID, S-1-5-21-...
    mask: int
    rights: tuple[str, ...]
    object_type: str | None            # the property, property set, extended right or child class
    inherited_object_type: str | None  # the class of child objects the ACE is inherited by
    flags: tuple[str, ...]             # names from ACE_FLAGS
    ace_type: int

    @property
    def inherited(self) -> bool:
        """Inherited from a parent (not set on this object itself)."""
        return "INHERITED" in self.flags

    @property
    def inherit_only(self) -> bool:
        return "INHERIT_ONLY" in self.flags

    @property
    def inheritable(self) -> bool:
        """Passed on to child containers (or objects)."""
        return "CONTAINER_INHERIT" in self.flags or "OBJECT_INHERIT" in self.flags

    def __str__(self) -> str:
        parts = [self.kind.upper(), self.trustee, "|".join(self.rights) or hex(self.mask)]
        if self.object_type:
            parts.append(f"object={self.object_type}")
        if self.inherited_object_type:
            parts.append(f"for={self.inherited_object_type}")
        if self.flags:
            parts.append(",".join(self.flags))
        return " ".join(parts)


@dataclass(frozen=True)
class SecurityDescriptor:
    """Owner, group and DACL of an object. ``dacl`` is None for a NULL DACL (which grants everyone everything)."""

    owner: str | None
    group: str | None
    dacl: tuple[Ace, ...] | None
    control: int
    raw: bytes

    @property
    def dacl_protected(self) -> bool:
        """Inheritance from the parent is blocked (SE_DACL_PROTECTED)."""
        return bool(self.control & SE_DACL_PROTECTED)

    def aces_for(self, sids: str | Iterable[str]) -> list[Ace]:
        wanted = {sids} if isinstance(sids, str) else set(sids)
        return [a for a in self.dacl or () if a.trustee in wanted]

    def describe(self) -> str:
        """A readable dump for a report's evidence."""
        lines = [f"owner {self.owner}", f"group {self.group}",
                 "DACL (protected)" if self.dacl_protected else "DACL"]
        lines += [f"  {a}" for a in self.dacl] if self.dacl is not None else ["  NULL DACL (everyone: everything)"]
        return "\n".join(lines)


def _guid(raw: Any) -> str | None:
    return str(uuid.UUID(bytes_le=bytes(raw))) if raw else None


def parse_security_descriptor(blob: bytes) -> SecurityDescriptor:
    """Parse a self-relative SECURITY_DESCRIPTOR (MS-DTYP 2.4.6) with impacket's ``ldaptypes``."""
    try:
        sd = ldaptypes.SR_SECURITY_DESCRIPTOR(data=blob)
        owner = sd["OwnerSid"].formatCanonical() if sd["OffsetOwner"] else None
        group = sd["GroupSid"].formatCanonical() if sd["OffsetGroup"] else None
        dacl = tuple(_ace(a) for a in sd["Dacl"].aces) if sd["OffsetDacl"] else None
        control = int(sd["Control"])
    except Exception as exc:  # noqa: BLE001 (impacket raises plain Exceptions, KeyError, struct.error)
        raise MalformedReply(f"unparseable security descriptor ({len(blob)} bytes): {exc}") from None
    return SecurityDescriptor(owner, group, dacl, control, bytes(blob))


def _ace(ace: Any) -> Ace:
    body, ace_type = ace["Ace"], ace["AceType"]
    kind = ("allow" if ace_type in _ALLOW_TYPES else "deny" if ace_type in _DENY_TYPES
            else "audit" if ace_type in _AUDIT_TYPES else "other")
    mask = body["Mask"]["Mask"] if "Mask" in body.fields else 0
    sid = body["Sid"].formatCanonical() if "Sid" in body.fields else ""
    is_object = "ObjectType" in body.fields
    flags = tuple(name for name, bit in ACE_FLAGS.items() if ace["AceFlags"] & bit)
    return Ace(kind=kind, trustee=sid, mask=mask, rights=rights_names(mask),
               object_type=_guid(body["ObjectType"]) if is_object else None,
               inherited_object_type=_guid(body["InheritedObjectType"]) if is_object else None,
               flags=flags, ace_type=ace_type)


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


def grants(sd: SecurityDescriptor, sid: str | Iterable[str], rights: int | str | Iterable[str],
           object_type: str | None = None, inherited: bool | None = None, *, to_children: bool = False,
           child_class: str | None = None) -> bool:
    """Does the DACL give ``sid`` (or any of a set of SIDs: a user plus its tokenGroups) all of ``rights``?

    The MS-DTYP 2.5.3.2 walk, simplified: ACEs in order; a deny ACE that names a still-wanted right ends it
    with False; allow ACEs remove the rights they give; True once nothing is left. Generic rights are expanded
    (MS-ADTS 5.1.3.3). An object ACE only counts when ``object_type`` names its GUID; a plain ACE counts for any.

    ``inherited``: None any ACE, True only ACEs inherited from a parent, False only explicit ones.
    ``to_children``: judge what the ACEs give objects *created under* this one (inheritable ACEs, optionally
    only those for ``child_class``, a schemaIDGUID) instead of the object itself (non inherit-only ACEs).
    """
    if sd.dacl is None:
        return True
    trustees = {sid} if isinstance(sid, str) else set(sid)
    wanted = expand_generic(rights_mask(rights))
    object_type = object_type.lower() if object_type else None
    child_class = child_class.lower() if child_class else None
    for ace in sd.dacl:
        if ace.trustee not in trustees or ace.kind not in ("allow", "deny"):
            continue
        if inherited is not None and ace.inherited != inherited:
            continue
        if to_children:
            if not ace.inheritable or (ace.inherited_object_type and ace.inherited_object_type != child_class):
                continue
        elif ace.inherit_only:
            continue
        if ace.object_type and ace.object_type != object_type:
            continue
        mask = expand_generic(ace.mask)
        if ace.kind == "deny" and mask & wanted:
            return False
        if ace.kind == "allow":
            wanted &= ~mask
            if not wanted:
                return True
    return False


# --------------------------------------------------------------------------- groups and token size

# MS-ADTS 2.2.12 groupType bits.
GROUP_BUILTIN_LOCAL, GROUP_GLOBAL, GROUP_DOMAIN_LOCAL, GROUP_UNIVERSAL = 0x1, 0x2, 0x4, 0x8
# TokenSz (KB327825): 1200 + 40 * d + 8 * s.
TOKEN_KINDS_D = ("domain_local", "universal_other_domain", "sid_history", "unresolved")
TOKEN_KINDS_S = ("global", "universal_same_domain")


def token_groups(conn: ldap3.Connection, user_dn: str) -> list[str]:
    """SIDs of every security group ``user_dn`` is in, transitively (tokenGroups, MS-ADTS 3.1.1.4.5.19).

    tokenGroups is constructed: the DC only computes it for a base-scope search on the object."""
    entry = _read_base(conn, user_dn, ["tokenGroups"], [])
    if not entry:
        raise NoSuchObject(f"no such object at {_where(conn)}: {user_dn}")
    return [format_sid(v) for v in entry[0]["raw_attributes"].get("tokenGroups", [])]


def token_size_estimate(groups_by_kind: Mapping[str, int]) -> int:
    """Kerberos token size estimate in bytes, Microsoft's TokenSz formula: ``1200 + 40 * d + 8 * s``.

    ``d``: domain-local groups, universal groups of other domains and SID history entries (keys
    ``domain_local``, ``universal_other_domain``, ``sid_history``; ``unresolved`` groups are counted here too,
    the conservative side). ``s``: global groups and universal groups of the user's own domain (``global``,
    ``universal_same_domain``). docs/protocols.md: AMT accepts tickets up to about 4 KB.
    """
    d = s = 0
    for kind, count in groups_by_kind.items():
        if count < 0:
            raise ValueError(f"negative count for {kind!r}")
        if kind in TOKEN_KINDS_D:
            d += count
        elif kind in TOKEN_KINDS_S:
            s += count
        else:
            raise ValueError(f"unknown group kind {kind!r} (known: {', '.join(TOKEN_KINDS_D + TOKEN_KINDS_S)})")
    return 1200 + 40 * d + 8 * s


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


# MS-DTYP 2.4.2.4: well-known SIDs that have no object in the domain partition.
WELL_KNOWN_SIDS = {
    "S-1-1-0": "Everyone", "S-1-3-0": "CREATOR OWNER", "S-1-3-1": "CREATOR GROUP",
    "S-1-5-7": "ANONYMOUS LOGON", "S-1-5-9": "ENTERPRISE DOMAIN CONTROLLERS", "S-1-5-10": "SELF",
    "S-1-5-11": "Authenticated Users", "S-1-5-18": "SYSTEM", "S-1-5-19": "LOCAL SERVICE",
    "S-1-5-20": "NETWORK SERVICE",
}


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
