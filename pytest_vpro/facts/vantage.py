"""The network as a host of the estate sees it: TCP ports and name resolution probed *from* a server whose entry
has ``testinfra:`` (the console host, the out of band service point), through pytest-testinfra's backend.

The guide asks for ports "from the out of band service point" and "from computers running the out of band
management console"; :mod:`.network` probes from this machine. A server with ``testinfra: <backend URL>`` is a
vantage point: ``testinfra.get_host(url).addr(name)`` runs testinfra's Addr module there (``getent ahosts`` for
``is_resolvable``; ``nc -w 1 -z``, or ``timeout 1 bash -c '... > /dev/tcp/...'`` where nc is missing, for
``port(p).is_reachable``). Those are POSIX commands: on a ``winrm://`` backend (a Windows console host) they do
not run, so this facet says it cannot decide (:class:`VantageUndecided`) without sending anything, and the check
falls back to this machine's view, saying so.

Deadlines: every command Addr runs is prefixed with coreutils ``timeout`` (its ``_prefix`` hook, the one its
network namespaces use), so a resolver or a connect that hangs ends within the environment's timeouts; the ssh
and paramiko backends get the connect timeout as their own ``timeout`` unless the URL sets one.

Secrets: a URL's password is a reference, as everywhere in an environment file (:mod:`pytest_vpro.secrets`):
``paramiko://admin:env:VPRO_ADMIN01_PASSWORD@admin01.corp.example.com`` (a ``file:`` path percent-encoded:
``file:secrets%2Fadmin01.secret``). It is resolved only when the backend is built; :func:`display_url` (what
findings, evidence and logs show) keeps the reference and never the value. A password written in clear is
refused (masked, registered with the redactor): the vantage point cannot decide.
"""
from __future__ import annotations

import math
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..probes.errors import ProbeError
from ..secrets import MASK, REDACTOR, SecretRef, is_reference, redact
from .core import key

if TYPE_CHECKING:
    from ..environment import Server
    from . import Facts

#: backends whose commands run in a POSIX shell, where testinfra's Addr (getent, nc, bash) works
POSIX_BACKENDS = ("local", "ssh", "safe-ssh", "paramiko")


class VantageUndecided(ProbeError):
    """A vantage point cannot decide (its backend runs no POSIX shell, its URL cannot be used, the backend
    failed): the check says so and falls back to this machine's view; never a failure of the target."""


def _split(url: str) -> tuple[urllib.parse.SplitResult, str | None]:
    parts = urllib.parse.urlsplit(url if "://" in url else f"paramiko://{url}")  # testinfra's default backend
    userinfo, at, _ = parts.netloc.rpartition("@")
    password = userinfo.partition(":")[2] if at and ":" in userinfo else None
    return parts, (urllib.parse.unquote(password) if password is not None else None)


def _with_password(parts: urllib.parse.SplitResult, shown: str | None) -> str:
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and shown is not None:
        userinfo = f"{userinfo.partition(':')[0]}:{shown}"
    query = "&".join(f"{k}={MASK if 'pass' in k.lower() else v}"
                     for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    # by hand: urlunsplit drops the "//" of a URL with no host ("local://")
    return f"{parts.scheme}://{userinfo}{at}{hostport}{parts.path}" + (f"?{query}" if query else "")


def scheme(url: str) -> str:
    """The testinfra backend a URL names (``local``, ``ssh``, ``winrm``, ...)."""
    return urllib.parse.urlsplit(url).scheme.lower() or "paramiko"  # testinfra's default without a scheme


def display_url(url: str) -> str:
    """The URL as findings, evidence and logs show it: a password reference as written (``env:NAME``), a password
    in clear masked, and a query parameter named like a password masked."""
    parts, password = _split(url)
    shown = None
    if password is not None:
        if is_reference(password):
            shown = parts.netloc.rpartition("@")[0].partition(":")[2]  # as written (a file: path percent-encoded)
        else:
            REDACTOR.add(password)
            shown = MASK
    for name, value in urllib.parse.parse_qsl(parts.query):
        if "pass" in name.lower():
            REDACTOR.add(value)
    return redact(_with_password(parts, shown))


def backend_url(url: str, base_dir: Path = Path(".")) -> str:
    """The URL testinfra gets: the password reference resolved (and registered with the redactor).
    :class:`VantageUndecided` for a password in clear; SecretUnavailable (a ProbeError) for an unset one."""
    parts, password = _split(url)
    if password is None:
        return url
    if not is_reference(password):
        REDACTOR.add(password)
        raise VantageUndecided(f"the testinfra URL {display_url(url)} holds its password in clear; write a "
                               "reference (env:NAME or file:PATH) in its place")
    value = SecretRef(password, base_dir).resolve() or ""
    return _with_password(parts, urllib.parse.quote(value, safe=""))


@dataclass(frozen=True)
class VantagePort:
    """One port as a vantage point sees it: reachable or not (testinfra's Addr does not tell refused from
    filtered: ``nc -z`` and the bash fallback only succeed or fail)."""

    host: str
    port: int
    reachable: bool
    elapsed: float

    @property
    def how(self) -> str:
        """``reachable`` or ``not reachable (refused or filtered ...)``, with the time it took."""
        what = "reachable" if self.reachable else "not reachable (refused or filtered: nc -z does not tell which)"
        return f"{what} after {self.elapsed * 1000:.0f} ms"

    def __str__(self) -> str:
        return f"{self.port} on {self.host} {self.how}"


def _given(seen: "VantagePort | ProbeError") -> VantagePort:
    if isinstance(seen, ProbeError):
        raise seen
    return seen


def _bounded_addr(host: Any, deadline: int) -> Any:
    """testinfra's Addr module bound to ``host``, each of its commands (getent, nc, ping) under ``timeout``."""
    from testinfra.modules.addr import Addr  # noqa: PLC0415 - loaded only where a server has testinfra:

    class BoundedAddr(Addr):
        _host = host

        @property
        def _prefix(self) -> str:
            return f"timeout {deadline} {super()._prefix}"

    return BoundedAddr


class VantageFacet:
    """``facts.vantage``: the network seen from the servers whose entry has ``testinfra:``."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def points(self, role: str) -> "list[Server]":
        """The servers of ``role`` that are vantage points (their entry has ``testinfra:``), sorted by name."""
        return [s for s in self.facts.env.servers_with(role) if s.testinfra]

    def name(self, server: "Server") -> str:
        """A vantage point in words for a finding: ``admin01 (testinfra winrm://admin01.corp.example.com)``, the
        URL as :func:`display_url` shows it (no password)."""
        return f"{server.name.split('.')[0]} (testinfra {display_url(server.testinfra or '')})"

    def ports(self, server: "Server", host: str, ports: list[int] | tuple[int, ...]) -> list[VantagePort]:
        """Whether each ``host:port`` is reachable from ``server``, once per run; :class:`VantageUndecided` where
        ``server``'s backend cannot run testinfra's Addr or fails."""
        addr, estate = self._addr(server), self.facts.estate
        name = lambda p: key("vantage", server.name, "tcp", f"{host}:{p}")  # noqa: E731
        todo = [p for p in ports if not estate.has(name(p))]
        if len(todo) > 1 and estate.replay is None:  # at once, as facts.network probes: a dropped client costs one
            with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="vpro-vantage") as pool:  # deadline
                for port, seen in zip(todo, pool.map(lambda p: self._settle(server, addr, host, p), todo)):
                    try:
                        estate.get(name(port), lambda seen=seen: _given(seen))
                    except ProbeError:
                        pass  # remembered: the read below raises it
        return [estate.get(name(p), lambda p=p: self._reachable(server, addr, host, p)) for p in ports]

    def _settle(self, server: "Server", addr: Any, host: str, port: int) -> "VantagePort | ProbeError":
        try:
            return self._reachable(server, addr, host, port)
        except ProbeError as exc:  # handed to the cache, which remembers it
            return exc

    def resolvable(self, server: "Server", name: str) -> bool:
        """Whether ``name`` resolves on ``server`` (``getent ahosts``, bounded by the read timeout), once per run."""
        addr = self._addr(server)
        return bool(self.facts.estate.get(key("vantage", server.name, "resolvable", name),
                                          lambda: self._run(server, lambda: addr()(name).is_resolvable)))

    # ------------------------------------------------------------------ the backend
    def _addr(self, server: "Server") -> Any:
        """A callable giving the bounded Addr class of ``server``'s backend (built on first use, not for a
        backend that cannot run it)."""
        url = server.testinfra or ""
        kind = scheme(url)
        if kind not in POSIX_BACKENDS:
            raise VantageUndecided(
                f"cannot decide from {self.name(server)}: testinfra's addr module runs POSIX commands (getent, nc), "
                f"which a {kind}:// backend does not run")
        timeouts = self.facts.env.timeouts
        deadline = math.ceil(max(timeouts["connect"], timeouts["read"])) + 1

        def build() -> Any:
            import testinfra  # noqa: PLC0415 - loaded only where a server has testinfra:

            options = {"timeout": math.ceil(timeouts["connect"])} if kind in ("ssh", "safe-ssh", "paramiko") else {}
            real = backend_url(url, self.facts.env.file.parent)
            return _bounded_addr(testinfra.get_host(real, **options), deadline)
        return lambda: self._run(server, build)

    def _reachable(self, server: "Server", addr: Any, host: str, port: int) -> VantagePort:
        start = time.monotonic()
        reachable = self._run(server, lambda: addr()(host).port(port).is_reachable)
        return VantagePort(host=host, port=port, reachable=bool(reachable), elapsed=time.monotonic() - start)

    def _run(self, server: "Server", call: Any) -> Any:
        try:
            return call()
        except ProbeError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend's failure: this vantage point cannot decide
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise VantageUndecided(f"cannot decide from {self.name(server)}: its testinfra backend failed "
                                   f"({redact(first)})") from None
