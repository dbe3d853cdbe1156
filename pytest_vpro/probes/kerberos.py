"""Kerberos as the out of band console user: a TGT in a private ticket cache, service tickets for AMT SPNs, and
HTTP ``Negotiate`` with exactly those credentials.

* The console user's password (a secret reference, resolved by the caller) goes to the KDC through GSSAPI's
  ``acquire_cred_with_password`` (MIT krb5's ``gss_acquire_cred_with_password``): no ``kinit`` process, never on
  a command line. MIT krb5 keeps the TGT (and the service tickets got with it) in a private in-memory ticket
  cache of these credentials, so the caller's own cache is neither used nor changed, and nothing is written to
  disk. (Storing them into a named cache with ``gss_store_cred_into`` lost the cache now and then under load.)
* AMT's service principal carries the port: ``HTTP/<fqdn>:16993@<REALM>`` (notes/amt-protocol.md), imported as a
  Kerberos principal name, not a host-based service (no DNS canonicalization of ``fqdn:16993``).
* :class:`NegotiateAuth` gives ``requests`` (and so :class:`~pytest_vpro.probes.wsman.WsmanClient`) an
  ``Authorization: Negotiate`` header with a Kerberos token made with these credentials (RFC 4559); with
  ``mutual`` it checks the server's reply token (mutual authentication), as requests-kerberos does.
  requests-kerberos itself only takes the default cache or a password, hence this small auth class.
* ``krb5.conf``: :func:`use_config` points ``KRB5_CONFIG`` at the estate's file (the lab's is in its state
  folder); MIT krb5 reads it whenever it makes a context.
"""
from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import requests

from .errors import ProbeError


_CONFIG_LOCK = threading.Lock()


class KerberosError(ProbeError):
    """The KDC or GSSAPI refused: ``str()`` carries GSSAPI's own words (e.g. 'Server not found in Kerberos
    database', 'Clock skew too great', 'Preauthentication failed')."""


def _gss_reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    minor = text.split("Minor (", 1)
    if len(minor) == 2 and "):" in minor[1]:
        return minor[1].split("):", 1)[1].strip()
    return text[:300]


def use_config(path: str | None) -> None:
    """Make this process's Kerberos library read ``path`` as krb5.conf (None: leave the system's)."""
    if not path:
        return
    with _CONFIG_LOCK:
        os.environ["KRB5_CONFIG"] = str(path)


#: Service tickets the run's working cache holds before it starts again from the TGT (see ConsoleCredentials).
CACHE_TICKETS = 128


@dataclass
class ConsoleCredentials:
    """The console user's initiator credentials, in a private ticket cache.

    ``creds`` holds the TGT as acquired and is never used for a context. Service tickets go to a working cache of
    the run's own (``cache``, default a memory cache of this process), copied from it: the caller's ticket cache
    is only read. Every AP-REQ makes MIT krb5 scan its cache for the service ticket, so a cache holding one
    ticket per device made a fleet's run quadratic: at 1,000 clients, libkrb5 copying cache entries was 3.4 % of
    the process's CPU samples (perf), with 4.7 % more in memmove. The working cache starts again from ``creds``
    (the TGT; with ``from_default_cache``, the caller's tickets as they were) after :data:`CACHE_TICKETS`
    service tickets; a device whose ticket went gets another from the KDC.
    """

    principal: str
    creds: Any = field(repr=False)
    #: GSSAPI calls on these credentials, one at a time: MIT krb5 fetches the TGT and caches service tickets
    #: in the credentials' memory cache on first use, which is not safe from several threads at once.
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)
    cache: str = ""  # the working cache's name; "" is MEMORY:vpro-console-<pid>-<id>
    _working: Any = field(default=None, init=False, repr=False, compare=False)
    _spns: set = field(default_factory=set, init=False, repr=False, compare=False)

    def _working_creds(self, spn: str) -> Any:
        """Credentials on the working cache, started again from the TGT when a new ``spn`` would make it hold more
        than :data:`CACHE_TICKETS` service tickets. Called under ``lock``."""
        import gssapi  # noqa: PLC0415

        if self._working is None or (spn not in self._spns and len(self._spns) >= CACHE_TICKETS):
            store = {b"ccache": (self.cache or f"MEMORY:vpro-console-{os.getpid()}-{id(self)}").encode()}
            gssapi.raw.store_cred_into(store, self.creds, usage="initiate", mech=gssapi.MechType.kerberos,
                                       overwrite=True)  # re-initialised: a copy of creds, no ticket of ours
            self._working = gssapi.Credentials(usage="initiate", store=store)
            self._spns.clear()
        self._spns.add(spn)
        return self._working

    @classmethod
    def with_password(cls, principal: str, password: str) -> "ConsoleCredentials":
        """A TGT for ``principal`` (``user@REALM``) from the KDC, kept in a private in-memory cache.

        Done in a thread of its own: MIT krb5's GSSAPI keeps a Kerberos context per thread, made with the
        krb5.conf of its time; a new thread starts from the current one."""
        out: list = []

        def acquire() -> None:
            try:
                out.append(cls._with_password(principal, password))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                out.append(exc)
        worker = threading.Thread(target=acquire, name="vpro-kinit")
        worker.start()
        worker.join()
        if isinstance(out[0], BaseException):
            raise out[0]
        return out[0]

    @classmethod
    def _with_password(cls, principal: str, password: str) -> "ConsoleCredentials":
        import gssapi  # noqa: PLC0415

        name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
        try:
            acquired = gssapi.raw.acquire_cred_with_password(name, password.encode("utf-8"), usage="initiate",
                                                             mechs=[gssapi.MechType.kerberos])
            creds = gssapi.Credentials(acquired.creds)
            creds.inquire(name=False, lifetime=True, usage=False, mechs=False)  # the AS exchange happens now
        except gssapi.exceptions.GSSError as exc:
            raise KerberosError(f"no Kerberos ticket for {principal}: {_gss_reason(exc)}") from None
        return cls(principal, creds)

    @classmethod
    def from_default_cache(cls, cache: str = "") -> "ConsoleCredentials":
        """The caller's own tickets (``credentials.console: kerberos``); their cache is read, never written."""
        import gssapi  # noqa: PLC0415

        try:
            creds = gssapi.Credentials(usage="initiate")
            return cls(str(creds.name), creds, cache=cache)
        except gssapi.exceptions.GSSError as exc:
            raise KerberosError(f"no Kerberos ticket in the default cache: {_gss_reason(exc)}") from None

    def token(self, spn: str, *, mutual: bool = False):
        """``(context, first token)`` of a Kerberos security context for ``spn`` (``HTTP/fqdn:16993@REALM``).

        The token is the AP-REQ: getting it means the KDC issued a service ticket for ``spn``. HTTP
        ``Negotiate`` carries it as it is (RFC 4559 allows the raw Kerberos token; AMT and HTTP.sys accept it):
        MIT's SPNEGO cannot use password-acquired credentials. A :class:`KerberosError` says why not.
        """
        import gssapi  # noqa: PLC0415

        flags = [gssapi.RequirementFlag.out_of_sequence_detection]
        if mutual:
            flags.append(gssapi.RequirementFlag.mutual_authentication)
        mech = gssapi.MechType.kerberos
        try:
            with self.lock:
                ctx = gssapi.SecurityContext(name=gssapi.Name(spn, gssapi.NameType.kerberos_principal),
                                             creds=self._working_creds(spn), usage="initiate", mech=mech,
                                             flags=flags)
                return ctx, ctx.step()
        except gssapi.exceptions.GSSError as exc:
            raise KerberosError(f"no service ticket for {spn} as {self.principal}: {_gss_reason(exc)}") from None


def service_ticket_size(creds: ConsoleCredentials, spn: str) -> int:
    """Bytes of the Kerberos AP-REQ for ``spn`` (the service ticket plus an authenticator)."""
    return len(creds.token(spn)[1])


@dataclass(frozen=True)
class NegotiateAuth:
    """HTTP ``Negotiate`` with :class:`ConsoleCredentials` for :class:`~pytest_vpro.probes.wsman.WsmanClient`
    (``for_url``) or directly for ``requests`` (:meth:`requests_auth`). The SPN is ``HTTP/<host>:<port>@realm``
    of the URL unless ``spn`` is given."""

    creds: ConsoleCredentials = field(repr=False)
    realm: str
    mutual: bool = False
    spn: str | None = None
    scheme = "kerberos"

    def for_url(self, url: str) -> requests.auth.AuthBase:
        from urllib.parse import urlsplit  # noqa: PLC0415

        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return _Negotiate(self.creds, self.spn or f"HTTP/{parts.hostname}:{port}@{self.realm}", self.mutual)


class _Negotiate(requests.auth.AuthBase):
    """Pre-emptive Negotiate: each request carries a fresh AP-REQ (AMT, like IIS, takes one per request)."""

    def __init__(self, creds: ConsoleCredentials, spn: str, mutual: bool) -> None:
        self.creds, self.spn, self.mutual = creds, spn, mutual

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        ctx, token = self.creds.token(self.spn, mutual=self.mutual)
        request.headers["Authorization"] = "Negotiate " + base64.b64encode(token).decode("ascii")
        if self.mutual:
            request.register_hook("response", lambda resp, **_kw: self._verify(ctx, resp))
        return request

    def _verify(self, ctx, resp: requests.Response) -> requests.Response:
        if resp.status_code >= 400:
            return resp  # refused: the caller reports the status
        import gssapi  # noqa: PLC0415

        value = next((v.split(None, 1)[1] for v in resp.headers.get("WWW-Authenticate", "").split(",")
                      if v.strip().lower().startswith("negotiate ")), "")
        try:
            if not value:
                raise KerberosError("no Negotiate token in the reply")
            with self.creds.lock:
                ctx.step(base64.b64decode(value.strip()))
            if not ctx.complete:
                raise KerberosError("the reply token did not complete the context")
        except (gssapi.exceptions.GSSError, ValueError) as exc:
            raise KerberosError(f"mutual authentication of {self.spn} failed: {_gss_reason(exc)}") from None
        return resp


__all__ = ["ConsoleCredentials", "NegotiateAuth", "KerberosError", "service_ticket_size", "use_config"]
