"""Kerberos as the out of band console user: a TGT in a private ticket cache, service tickets for AMT SPNs, and
HTTP ``Negotiate`` with exactly those credentials.

* The console user's password (a secret reference, resolved by the caller) goes to the KDC through GSSAPI's
  ``acquire_cred_with_password`` (MIT krb5's ``gss_acquire_cred_with_password``): no ``kinit`` process, never on
  a command line. MIT krb5 keeps the TGT (and the service tickets got with it) in a private in-memory ticket
  cache of these credentials, so the caller's own cache is neither used nor changed, and nothing is written to
  disk. (Storing them into a named cache with ``gss_store_cred_into`` lost the cache now and then under load.)
* AMT's service principal carries the port: ``HTTP/<fqdn>:16993@<REALM>`` (docs/protocols.md), imported as a
  Kerberos principal name, not a host-based service (no DNS canonicalization of ``fqdn:16993``).
* :class:`NegotiateAuth` gives ``requests`` (and so :class:`~pytest_vpro.probes.wsman.WsmanClient`) an
  ``Authorization: Negotiate`` header with a Kerberos token made with these credentials (RFC 4559); with
  ``mutual`` it checks the server's reply token (mutual authentication), as requests-kerberos does.
  requests-kerberos itself only takes the default cache or a password, hence this small auth class.
* ``krb5.conf``: :func:`use_config` points ``KRB5_CONFIG`` at the estate's file (the lab's is in its state
  folder); MIT krb5 reads it whenever it makes a context.
* Deadlines: MIT krb5 asks a KDC on its own schedule (UDP, then TCP, three passes over the KDCs: 27 s for one
  that never answers, whatever the environment's timeouts), inside one C call that holds no socket of ours. So
  every call that may reach the KDC (the TGT, a service ticket) runs on the credentials' own worker thread
  (:class:`~pytest_vpro.probes.deadline.Worker`), and the caller stops waiting after ``timeout`` with a
  :class:`KdcTimeout`; the abandoned thread ends when libkrb5 gives up.
"""
from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from . import deadline
from .errors import ProbeError

_CONFIG_LOCK = threading.Lock()


class KerberosError(ProbeError):
    """The KDC or GSSAPI refused: ``str()`` carries GSSAPI's own words (e.g. 'Server not found in Kerberos
    database', 'Clock skew too great', 'Preauthentication failed')."""


class KdcTimeout(KerberosError):
    """No answer from the realm's KDC within the deadline (or the run was interrupted while waiting)."""


#: Seconds a KDC exchange may take when the caller gives none (the environment's default connect + read).
DEFAULT_TIMEOUT = 13.0


def _kdc_timeout(what: str, seconds: float) -> KdcTimeout:
    if deadline.abandoned():
        return KdcTimeout(f"{what}: abandoned, the run was interrupted")
    return KdcTimeout(f"{what}: no answer from the Kerberos KDC within {seconds:g} s")


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
    timeout: float = DEFAULT_TIMEOUT  # seconds a service ticket may take (the KDC's answer)
    _working: Any = field(default=None, init=False, repr=False, compare=False)
    _spns: set = field(default_factory=set, init=False, repr=False, compare=False)
    _worker: Any = field(default=None, init=False, repr=False, compare=False)
    _worker_lock: Any = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def _working_creds(self, spn: str) -> Any:
        """Credentials on the working cache, started again from the TGT when a new ``spn`` would make it hold more
        than :data:`CACHE_TICKETS` service tickets. Called under ``lock``."""
        import gssapi  # noqa: PLC0415 - gssapi (libgssapi) loads only when a Kerberos ticket is needed

        if self._working is None or (spn not in self._spns and len(self._spns) >= CACHE_TICKETS):
            ccache = self.cache or f"MEMORY:vpro-console-{os.getpid()}-{id(self)}"
            store: dict[bytes | str, bytes | str] = {b"ccache": ccache.encode()}
            gssapi.raw.store_cred_into(store, self.creds, usage="initiate", mech=gssapi.MechType.kerberos,
                                       overwrite=True)  # re-initialised: a copy of creds, no ticket of ours
            self._working = gssapi.Credentials(usage="initiate", store=store)
            self._spns.clear()
        self._spns.add(spn)
        return self._working

    @classmethod
    def with_password(cls, principal: str, password: str, timeout: float = DEFAULT_TIMEOUT) -> "ConsoleCredentials":
        """A TGT for ``principal`` (``user@REALM``) from the KDC, kept in a private in-memory cache, within
        ``timeout`` seconds (:class:`KdcTimeout` otherwise).

        Done in a thread of its own: MIT krb5's GSSAPI keeps a Kerberos context per thread, made with the
        krb5.conf of its time; a new thread starts from the current one. It is a daemon thread, left behind
        when the KDC does not answer in time."""
        worker = deadline.Worker("vpro-kinit")
        try:
            creds = worker.call(lambda: cls._with_password(principal, password), timeout,
                                lambda: _kdc_timeout(f"no Kerberos ticket for {principal}", timeout))
        finally:
            worker.abandon()
        creds.timeout = timeout
        return creds

    @classmethod
    def _with_password(cls, principal: str, password: str) -> "ConsoleCredentials":
        import gssapi  # noqa: PLC0415 - gssapi (libgssapi) loads only when a Kerberos ticket is needed

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
    def from_default_cache(cls, cache: str = "", timeout: float = DEFAULT_TIMEOUT) -> "ConsoleCredentials":
        """The caller's own tickets (``credentials.console: kerberos``); their cache is read, never written."""
        import gssapi  # noqa: PLC0415 - gssapi (libgssapi) loads only when a Kerberos ticket is needed

        try:
            creds = gssapi.Credentials(usage="initiate")
            return cls(str(creds.name), creds, cache=cache, timeout=timeout)
        except gssapi.exceptions.GSSError as exc:
            raise KerberosError(f"no Kerberos ticket in the default cache: {_gss_reason(exc)}") from None

    def token(self, spn: str, *, mutual: bool = False):
        """``(context, first token)`` of a Kerberos security context for ``spn`` (``HTTP/fqdn:16993@REALM``).

        The token is the AP-REQ: getting it means the KDC issued a service ticket for ``spn``. HTTP
        ``Negotiate`` carries it as it is (RFC 4559 allows the raw Kerberos token; AMT and HTTP.sys accept it):
        MIT's SPNEGO cannot use password-acquired credentials. A :class:`KerberosError` says why not.
        """
        import gssapi  # noqa: PLC0415 - gssapi (libgssapi) loads only when a Kerberos ticket is needed

        flags = [gssapi.RequirementFlag.out_of_sequence_detection]
        if mutual:
            flags.append(gssapi.RequirementFlag.mutual_authentication)
        mech = gssapi.MechType.kerberos

        def ask():  # on the worker: the first AP-REQ for an SPN is a TGS exchange with the KDC
            try:
                with self.lock:
                    ctx = gssapi.SecurityContext(name=gssapi.Name(spn, gssapi.NameType.kerberos_principal),
                                                 creds=self._working_creds(spn), usage="initiate", mech=mech,
                                                 flags=flags)
                    return ctx, ctx.step()
            except gssapi.exceptions.GSSError as exc:
                raise KerberosError(f"no service ticket for {spn} as {self.principal}: {_gss_reason(exc)}") from None

        with self._worker_lock:
            if self._worker is None:
                self._worker = deadline.Worker(f"vpro-kerberos {self.principal}")
            worker = self._worker
        try:
            return worker.call(ask, self.timeout,
                               lambda: _kdc_timeout(f"no service ticket for {spn} as {self.principal}", self.timeout))
        except KdcTimeout:
            with self._worker_lock:
                if self._worker is worker:
                    self._worker = None  # abandoned with its stuck call: later tickets get a fresh thread
            raise


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
        if resp.status_code >= 300:
            return resp  # refused or redirected: the caller reports the status (a redirect is never followed)
        import gssapi  # noqa: PLC0415 - gssapi (libgssapi) loads only when a Kerberos ticket is needed

        value = next((v.split(None, 1)[1] for v in resp.headers.get("WWW-Authenticate", "").split(",")
                      if v.strip().lower().startswith("negotiate ")), "")
        try:
            if not value:
                raise KerberosError("no Negotiate token in the reply")
            if not self.creds.lock.acquire(timeout=self.creds.timeout):  # held by a call stuck in the KDC
                raise KerberosError("the credentials stayed busy with an unanswered KDC request")
            try:
                ctx.step(base64.b64decode(value.strip()))
            finally:
                self.creds.lock.release()
            if not ctx.complete:
                raise KerberosError("the reply token did not complete the context")
        except (gssapi.exceptions.GSSError, ValueError) as exc:
            raise KerberosError(f"mutual authentication of {self.spn} failed: {_gss_reason(exc)}") from None
        return resp


__all__ = ["ConsoleCredentials", "NegotiateAuth", "KerberosError", "KdcTimeout", "service_ticket_size",
           "use_config"]
