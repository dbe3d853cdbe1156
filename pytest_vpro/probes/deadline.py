"""Deadlines for network exchanges: connect plus the whole reply, not only each read.

The libraries the probes use (requests/urllib3, ldap3, smbprotocol, the ssl module) bound each socket read with a
timeout, never an exchange: a server that sends one byte just inside the read timeout keeps a read going for ever.
None of them offers a bound on the whole exchange, so this module adds one from outside, the same way for all of
them: while a :class:`Deadline` is open, the sockets of its exchange are handed to it (:meth:`Deadline.watch`), and
when it passes, one watcher thread shuts them down (``shutdown(SHUT_RDWR)``). A read blocked on a shut socket
returns at once, the library raises its own error, and the probe, seeing :attr:`Deadline.expired`, reports "gave
no complete answer within N s" instead.

Where a call blocks in C code that holds no socket of ours (MIT krb5 asking a KDC: it retries on its own schedule,
27 s for a KDC that never answers, whatever our timeouts), a socket cannot be shut: :class:`Worker` runs such
calls on a daemon thread of its own and stops waiting at the deadline; the abandoned thread ends when the library
gives up, and never keeps the process from exiting.

When a run is interrupted, :func:`abandon_all` expires every open deadline at once (and every deadline opened
after it), so in-flight calls end within a fraction of a second instead of at their deadlines.
"""
from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from . import errors

#: How often the watcher shuts sockets again for an expired exchange that is still open: a library that tries
#: another address (ldap3, for a name with several) opens a new socket after the first one was shut.
REAPPLY_S = 0.05

_cond = threading.Condition()
_open: set["Deadline"] = set()
_watcher: threading.Thread | None = None
_abandoned = threading.Event()
_local = threading.local()


class Deadline:
    """The deadline of one exchange, ``seconds`` from now.

    Use it as a context manager around the exchange, in the thread that does the I/O: it is then
    :func:`current` there, which is how the HTTP adapter (:mod:`pytest_vpro.probes.httpclient`) finds it. It
    may be made in one thread and entered in another (a worker thread doing the caller's exchange).
    """

    def __init__(self, seconds: float, what: str = "") -> None:
        self.seconds, self.what = float(seconds), what
        self.end = time.monotonic() + self.seconds
        self.expired = False      # its sockets were shut: the deadline passed, or the run was interrupted
        self.interrupted = False  # expired because the run was interrupted (abandon_all)
        self._guard = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._owned: list[socket.socket] = []  # duplicates made for this deadline: closed when it closes
        self._sources: list[Callable[[], Any]] = []
        self._callbacks: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g} s, {self.what or 'exchange'}, {self.left():.2f} s left)"

    # -- the exchange's sockets --
    def left(self) -> float:
        """Seconds until the deadline (0 when it has passed)."""
        return max(0.0, self.end - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` when the deadline passes (at once if it already has)."""
        with self._guard:
            self._sockets.append(sock)
            late = self.expired
        if late:
            _shut(sock)

    def watch_copy(self, sock: socket.socket) -> None:
        """Watch a duplicate of ``sock``: it stays valid when the library moves the original's descriptor into
        another object (``ssl`` wrapping detaches it). The duplicate is closed with the deadline."""
        copy = sock.dup()
        with self._guard:
            self._owned.append(copy)
        self.watch(copy)

    def watch_source(self, get: Callable[[], Any]) -> None:
        """Shut whatever socket ``get()`` returns at expiry, and again while the exchange stays open (for a
        library that keeps its socket in an attribute and replaces it, e.g. ``ldap3.Connection.socket``)."""
        with self._guard:
            self._sources.append(get)
            late = self.expired
        if late:
            _shut(_safe(get))

    def on_expiry(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once when the deadline passes (at once if it already has)."""
        with self._guard:
            late = self.expired
            if not late:
                self._callbacks.append(callback)
        if late:
            callback()

    # -- open / close --
    def __enter__(self) -> "Deadline":
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        stack.append(self)
        _register(self)
        if _abandoned.is_set():
            self._expire(interrupted=True)
        return self

    def __exit__(self, *exc: object) -> None:
        stack = getattr(_local, "stack", [])
        if stack and stack[-1] is self:
            stack.pop()
        _unregister(self)
        with self._guard:
            owned, self._owned = self._owned, []
            self._sockets.clear()
            self._sources.clear()
            self._callbacks.clear()
        for sock in owned:
            try:
                sock.close()
            except OSError:
                pass

    def _expire(self, interrupted: bool = False) -> None:
        with self._guard:
            first = not self.expired
            self.expired = True
            self.interrupted = self.interrupted or interrupted
            sockets = list(self._sockets) + [_safe(get) for get in self._sources]
            callbacks, self._callbacks = (self._callbacks, []) if first else ([], self._callbacks)
        for sock in sockets:
            _shut(sock)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a callback that fails must not stop the watcher
                pass

    def too_late(self, host: str, port: int | None):
        """The :class:`~pytest_vpro.probes.errors.Unreachable` for this exchange cut at its deadline."""
        return errors.too_late(host, port, self.seconds, self.interrupted)


def current() -> Deadline | None:
    """The innermost open deadline of this thread, or None."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def _safe(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except Exception:  # noqa: BLE001 - the source is gone: nothing to shut
        return None


def _shut(sock: Any) -> None:
    """Shut a socket down for both directions; a closed or never-connected one is left alone. The base class's
    method is used on an ``ssl.SSLSocket`` too: its own would also drop the TLS object under the reading thread."""
    if not isinstance(sock, socket.socket):
        sock = getattr(sock, "socket_for_deadline", None)  # a wrapper that names its socket (ldap's byte counter)
        if not isinstance(sock, socket.socket):
            return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


# --------------------------------------------------------------------------- the watcher

def _register(deadline: Deadline) -> None:
    global _watcher
    with _cond:
        _open.add(deadline)
        if _watcher is None or not _watcher.is_alive():
            _watcher = threading.Thread(target=_watch, name="vpro-deadlines", daemon=True)
            _watcher.start()
        _cond.notify()


def _unregister(deadline: Deadline) -> None:
    with _cond:
        _open.discard(deadline)


def _watch() -> None:
    while True:
        with _cond:
            while True:
                now = time.monotonic()
                due = [d for d in _open if d.expired or d.end <= now]
                if due:
                    break
                soonest = min((d.end for d in _open), default=None)
                _cond.wait(None if soonest is None else soonest - now)
        again = any(d.expired for d in due)
        for d in due:
            d._expire()  # noqa: SLF001 - the module's own Deadline
        if again:
            time.sleep(REAPPLY_S)


def abandon_all() -> int:
    """The run is interrupted: expire every open deadline now, and every one opened from now on. Returns how
    many exchanges were in flight."""
    _abandoned.set()
    with _cond:
        pending = list(_open)
    for d in pending:
        d._expire(interrupted=True)  # noqa: SLF001 - the module's own Deadline
    return len(pending)


def abandoned() -> bool:
    """True once :func:`abandon_all` was called in this process."""
    return _abandoned.is_set()


def reset_abandoned() -> None:
    """Allow exchanges again (for a process that goes on after an interrupted run: pytest's own tests)."""
    _abandoned.clear()


# --------------------------------------------------------------------------- connecting

def connect(host: str, port: int, timeout: float, limit: Deadline | None = None,
            family: int = socket.AF_UNSPEC) -> socket.socket:
    """A TCP connection to ``host:port``: each address of the name in turn, each within ``timeout`` and all of
    them within ``limit`` (so a name with many addresses that drop every SYN costs the exchange's budget, not
    one timeout per address). Raises ``socket.gaierror``, ``TimeoutError`` or the last ``OSError``."""
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    last: OSError | None = None
    for af, socktype, proto, _name, address in infos:
        left = limit.left() if limit is not None else timeout
        if left <= 0 or (limit is not None and limit.expired):
            break
        sock = socket.socket(af, socktype, proto)
        if limit is not None:
            limit.watch(sock)  # an interrupt aborts the connect itself
        sock.settimeout(min(timeout, left))
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            last = exc
            sock.close()
    if last is None:
        raise TimeoutError(f"no time left to connect to {host}:{port}")
    raise last


# --------------------------------------------------------------------------- calls that block in C

class Worker:
    """A daemon thread that runs one call at a time and can be abandoned while a call hangs.

    For calls that must stay on one thread (requests' Digest state is per thread; MIT krb5 keeps a context per
    thread) and for calls no socket shutdown can end (a KDC exchange inside libkrb5).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, done = job
            try:
                fn()
            finally:
                done.set()

    def run(self, fn: Callable[[], None], seconds: float) -> bool:
        """Run ``fn`` on the worker; False if it has not finished within ``seconds`` (or, once the run is
        interrupted, within a fraction of a second)."""
        done = threading.Event()
        self._jobs.put((fn, done))
        end = time.monotonic() + seconds
        while not done.wait(min(0.25, max(0.0, end - time.monotonic()))):
            if time.monotonic() >= end or _abandoned.is_set():
                return done.is_set()
        return True

    def call(self, fn: Callable[[], Any], seconds: float, on_timeout: Callable[[], BaseException]) -> Any:
        """``fn()`` on the worker, its result or its exception; ``on_timeout()`` is raised when it does not end
        within ``seconds`` (the worker is then abandoned: make a new one for later calls)."""
        box: dict[str, Any] = {}

        def job() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc

        if not self.run(job, seconds):
            self.abandon()
            raise on_timeout()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def abandon(self) -> None:
        """Stop the thread once its current call (if any) ends."""
        self._jobs.put(None)


def call(fn: Callable[[], Any], seconds: float, on_timeout: Callable[[], BaseException], name: str = "vpro-call"):
    """``fn()`` on a daemon thread of its own, under a :class:`Deadline` of ``seconds`` there; ``on_timeout()``
    is raised when it has not ended a little after that (a call stuck in C code is left behind)."""
    limit = Deadline(seconds, name)

    def bounded():
        with limit:
            return fn()

    worker = Worker(name)
    try:
        return worker.call(bounded, seconds + GRACE_S, on_timeout)
    except BaseException:
        if limit.expired:  # the library's error for the socket shut at the deadline: say what happened
            raise on_timeout() from None
        raise
    finally:
        worker.abandon()


#: How long after its deadline an exchange whose sockets were shut is still waited for (the library raising its
#: error and cleaning up) before its thread is left behind.
GRACE_S = 0.5


__all__ = ["Deadline", "current", "abandon_all", "abandoned", "reset_abandoned", "connect", "Worker", "call",
           "GRACE_S"]
