"""Errors every probe raises: a target that cannot be asked is a finding, not a crash."""
from __future__ import annotations

import socket


class ProbeError(Exception):
    """A fact could not be read. ``str()`` is a complete sentence for a report."""


# What a target did, in one vocabulary whatever library made the call (issue 18): every probe's Unreachable says
# one of these, so a finding reads the same over WS-MAN, LDAP, SMB, DNS or a TCP probe.
NO_ANSWER = "no answer"                  # no answer from HOST:PORT within N s
REFUSED = "connection refused"           # connection refused from HOST:PORT (nothing listens: a reset to the SYN)
DID_NOT_RESOLVE = "did not resolve"      # HOST did not resolve (no address for the name)
CLOSED = "closed the connection"         # HOST:PORT closed the connection (reset or closed before the reply)
NO_ROUTE = "no route"                    # no route to HOST:PORT (the network says the address is unreachable)
MALFORMED = "answered malformed"         # MalformedReply
BAD_CREDENTIALS = "refused our credentials"
UNTRUSTED = "certificate not trusted"

VOCABULARY = frozenset({NO_ANSWER, REFUSED, DID_NOT_RESOLVE, CLOSED, NO_ROUTE, MALFORMED, BAD_CREDENTIALS,
                        UNTRUSTED})

#: the words libraries (and older probe code) use, mapped onto the vocabulary; the first match wins
_SYNONYMS = (
    (DID_NOT_RESOLVE, ("did not resolve", "does not resolve", "not resolved", "failed to resolve",
                       "name or service not known", "nodename nor servname", "invalid server address",
                       "temporary failure in name resolution", "estate dns", "no address associated", "nameresolution",
                       "getaddrinfo")),
    (REFUSED, ("refused",)),
    (NO_ROUTE, ("no route", "network is unreachable", "host is unreachable")),
    (CLOSED, ("reset", "aborted", "remotedisconnected", "connection lost", "closed connection",
              "connection closed", "broken pipe", "closed the connection", "connection was closed")),
    (NO_ANSWER, ("no answer", "timed out", "timeout")),
)


def vocabulary(how: str) -> str:
    """``how`` (a library's or an older probe's words for a failed connection) in the vocabulary above; words
    that name none of them stay as they are (e.g. "gave no complete answer within 3 s")."""
    text = (how or "").lower()
    if text.startswith(("gave no complete answer", "no complete answer", "was abandoned", "interrupted",
                        "no ldap server answered")):
        return how
    for word, clues in _SYNONYMS:
        if any(clue in text for clue in clues):
            return word
    return "could not connect" if text.startswith("unreachable (") else how


def what_happened(exc: BaseException) -> str:
    """The vocabulary's word for a failed connection, from the exception types of its chain first (socket,
    urllib3 and requests keep the OS's error as a cause), then from their words; never a library's repr."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        if isinstance(cur, socket.gaierror) or name in ("NameResolutionError", "LDAPInvalidServerError"):
            return DID_NOT_RESOLVE
        if isinstance(cur, ConnectionRefusedError):
            return REFUSED
        if isinstance(cur, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) \
                or name in ("RemoteDisconnected", "ProtocolError", "IncompleteRead"):
            return CLOSED
        if isinstance(cur, (TimeoutError, socket.timeout)) or name in ("ConnectTimeoutError", "ReadTimeoutError",
                                                                        "ConnectTimeout", "ReadTimeout"):
            return NO_ANSWER
        if isinstance(cur, OSError) and cur.errno in (101, 113):  # ENETUNREACH, EHOSTUNREACH
            return NO_ROUTE
        nxt = cur.__cause__ or cur.__context__
        if nxt is None:
            nxt = next((a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)), None)
        if nxt is None:
            why = getattr(cur, "reason", None)
            nxt = why if isinstance(why, BaseException) else None
        cur = nxt
    word = vocabulary(str(exc))
    return word if word != str(exc) else "could not connect"


class Unreachable(ProbeError):
    """No answer (timeout, refused, reset, a name that does not resolve). The first one for a host is remembered
    for the run. ``how`` is put in the vocabulary above (:func:`vocabulary`), so the sentence is the same
    whichever library failed."""

    def __init__(self, host: str, port: int | None, timeout: float | None, how: str = "no answer") -> None:
        how = vocabulary(how)
        where = f"{host}:{port}" if port else host
        if how == NO_ANSWER:
            text = f"no answer from {where}" + (f" within {timeout:g} s" if timeout else "")
        elif how == DID_NOT_RESOLVE:
            text = f"{host} did not resolve (no address for the name)"
        elif how in (CLOSED, NO_ROUTE):
            text = f"{where} closed the connection" if how == CLOSED else f"no route to {where}"
        else:
            text = f"{how} from {where}"
        super().__init__(text)
        self.host, self.port, self.timeout, self.how = host, port, timeout, how


def too_late(host: str, port: int | None, seconds: float, interrupted: bool = False) -> Unreachable:
    """The :class:`Unreachable` of an exchange cut at its deadline (or abandoned when the run was interrupted)."""
    where = f"{host}:{port}" if port else host
    how = "interrupted" if interrupted else f"no complete answer within {seconds:g} s"
    exc = Unreachable(host, port, seconds, how)
    exc.args = (f"the exchange with {where} was abandoned: the run was interrupted" if interrupted
                else f"{where} gave no complete answer within {seconds:g} s (connect and whole reply)",)
    return exc


class MalformedReply(ProbeError):
    """The target answered, but not in the protocol's form."""


class ReplyTooLarge(MalformedReply):
    """The target's reply is larger than the probe accepts; it was refused before it filled memory."""


class Redirected(ProbeError):
    """The target answered with an HTTP redirect. Redirects are never followed: credentials go only to the host
    the environment names, and a device that sends its client elsewhere is a finding in itself."""

    def __init__(self, url: str, status: int, location: str) -> None:
        where = location or "(no Location header)"
        super().__init__(f"{url} answered HTTP {status}, redirecting to {where}; redirects are not followed")
        self.url, self.status, self.location = url, status, location


class NotObserved(ProbeError):
    """A replayed snapshot (``--facts-in``) does not hold the fact: the run that wrote it never read it. A finding
    like any ProbeError, unless the check knows the fact is one it reads since that version (it may then cannot
    decide)."""


class Undecided(ProbeError):
    """The fact depends on a wire detail no public source gives (docs/protocols.md lists them; each is a setting),
    and that detail did not fit this target: the check cannot decide. The engine reports it visibly, as skipped
    with "cannot decide", and it does not close the stage gate."""
