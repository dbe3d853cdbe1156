"""Read a file over SMB2/3 with smbprotocol's ``smbclient`` API (no hand-written protocol).

Used for the Configuration Manager logs: ``\\\\<site server>\\SMS_<code>\\Logs\\AMTOPMGR.LOG`` and an in-band
client's ``\\\\<pc>\\C$\\Windows\\System32\\CCM\\Logs\\OOBMGMT.LOG``. Files are opened read-only and streamed
(a log of a gigabyte is never held in memory: the caller iterates). Authentication: NTLM with a user and
password, or Kerberos with the caller's ticket cache when no password is given. Errors are
:class:`~pytest_vpro.probes.errors.ProbeError` sentences naming the UNC path.

Bounds smbprotocol does not have, added here:

* memory: its transport allocates whatever a message's 4-byte length prefix says (a server announcing 4 GiB made
  the process allocate 4 GB). MS-SMB2 2.1 gives the length 3 bytes (at most 16 MiB - 1), so :class:`_BoundedTcp`,
  put in place of smbprotocol's ``Tcp`` transport, refuses a larger one and closes the connection, and the read
  fails with :class:`~pytest_vpro.probes.errors.ReplyTooLarge`;
* time: most of its waits have no timeout (a tree connect, an open, a read), and its socket reads wait up to 600 s
  for the next byte. Every exchange (the session setup, the open, each chunk read, the log-off) runs under a
  :class:`~pytest_vpro.probes.deadline.Deadline` of connect + read timeout, which shuts the connection's socket
  when it passes; the connect tries every address of the name within it.
"""
from __future__ import annotations

import contextlib
import errno
import importlib.util
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import IO, Any, Iterator

from . import deadline
from .errors import MalformedReply, ProbeError, ReplyTooLarge, Unreachable, too_late

SMB_PORT = 445
#: The largest SMB2 message: MS-SMB2 2.1, the Direct TCP StreamProtocolLength is 3 bytes.
MAX_MESSAGE = 0xFFFFFF


class FileMissing(ProbeError):
    """The share answered and has no such file (a log's ``.lo_`` history before its first rollover)."""


def smbprotocol_client():
    """smbprotocol's high-level API: the package ``smbclient`` installed beside ``smbprotocol``.

    Not a plain ``import smbclient``: impacket (a dependency, for security descriptors) installs an example
    *script* ``smbclient.py`` into the interpreter's ``bin`` folder, and when pytest runs as the ``pytest``
    command that folder is ``sys.path[0]``, so the plain import finds the script. The package is loaded from
    smbprotocol's own folder under its own name, once.
    """
    _bound_the_transport()
    found = sys.modules.get("smbclient")
    if found is not None and hasattr(found, "register_session"):
        return found
    import smbprotocol  # noqa: PLC0415 - smbprotocol (and its cryptography, pyspnego) loads only when a share is read

    folder = Path(smbprotocol.__file__).resolve().parent.parent / "smbclient"
    spec = importlib.util.spec_from_file_location("smbclient", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["smbclient"] = module  # its submodules import "smbclient._io" etc. through this entry
    spec.loader.exec_module(module)
    return module


def unc(host: str, share: str, path: str) -> str:
    return "\\\\" + host + "\\" + share.strip("\\/") + "\\" + path.replace("/", "\\").strip("\\")


# --------------------------------------------------------------------------- smbprotocol's transport, bounded

_REFUSED: dict[tuple[str, int], int] = {}  # (server, port) -> the length a message announced, when refused
_TRANSPORT_LOCK = threading.Lock()


def _bound_the_transport() -> None:
    """Make smbprotocol connect through :class:`_BoundedTcp` (its ``Connection.connect`` names the class ``Tcp``
    of ``smbprotocol.connection``). Done once; every other behaviour of the transport is smbprotocol's own."""
    import smbprotocol.connection  # noqa: PLC0415 - smbprotocol loads only when a share is read
    from smbprotocol.transport import Tcp  # noqa: PLC0415 - smbprotocol loads only when a share is read

    with _TRANSPORT_LOCK:
        if getattr(smbprotocol.connection.Tcp, "vpro_bounded", False):
            return

        class _BoundedTcp(Tcp):
            """smbprotocol's Direct TCP transport with a bounded message length and the caller's deadline."""

            vpro_bounded = True

            def connect(self) -> None:
                limit = deadline.current()
                if limit is None:
                    return super().connect()
                with self._sock_lock:
                    if not self.connected:  # type: ignore[has-type]  # smbprotocol's Tcp sets it in __init__
                        try:  # every address of the name, within the exchange's deadline
                            self._sock = deadline.connect(self.server, self.port, self.timeout or limit.seconds, limit)
                        except OSError as err:  # smbprotocol's own wording and type (smb.py's callers read it)
                            raise ValueError(f"Failed to connect to '{self.server}:{self.port}': {err}") from err
                        self._sock.settimeout(None)
                        self.connected = True
                return None

            def send(self, header: bytes) -> None:
                limit = deadline.current()  # requests are sent from the caller's thread, under its deadline
                if limit is not None and self._sock is not None:
                    limit.watch(self._sock)
                return super().send(header)

            def recv(self, timeout: float) -> bytes:
                b_size, timeout = self._recv(4, timeout)
                if not b_size:
                    return b""
                size = struct.unpack(">L", b_size)[0]
                if size > MAX_MESSAGE:  # smbprotocol would allocate it whole before reading a byte of it
                    _REFUSED[(self.server.lower(), self.port)] = size
                    self.close()
                    return b""  # a closed connection: the waiting caller fails, and asks _REFUSED why
                return self._recv(size, timeout)[0]

        smbprotocol.connection.Tcp = _BoundedTcp


# --------------------------------------------------------------------------- reading a file

@contextlib.contextmanager
def open_file(host: str, share: str, path: str, *, user: str | None, password: str | None, timeout: float,
              port: int = SMB_PORT, connect_timeout: float | None = None) -> Iterator[IO[bytes]]:
    """A read-only binary stream of ``\\\\host\\share\\path``, over a connection closed after the read.

    Each exchange (session setup, open, each read of the stream, log-off) has a deadline of ``connect_timeout``
    (default ``timeout``) + ``timeout``.

    smbclient pools one connection per host, each with a receiver thread that waits in ``select()``, for the
    life of the process: at 1,000 clients that was hundreds of idle connections, and ``select()`` fails once a
    socket's number passes 1023 ("filedescriptor out of range"). A log is read once per host per run.
    """
    budget = (timeout if connect_timeout is None else connect_timeout) + timeout
    with _host_lock(host, port):  # reads of one host share its connection: one at a time
        yield from _read(host, share, path, user=user, password=password, timeout=timeout, port=port, budget=budget)


def _host_lock(host: str, port: int) -> threading.Lock:
    with _LOCKS_LOCK:
        return _LOCKS.setdefault((host.lower(), port), threading.Lock())


_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _read(host: str, share: str, path: str, *, user: str | None, password: str | None, timeout: float,
          port: int, budget: float) -> Iterator[IO[bytes]]:
    smbclient = smbprotocol_client()
    name = unc(host, share, path)
    _REFUSED.pop((host.lower(), port), None)

    def register() -> None:
        smbclient.register_session(host, username=user, password=password, port=port,
                                   connection_timeout=max(1, int(round(timeout))),
                                   auth_protocol="ntlm" if password else "kerberos")

    try:
        try:  # on a thread of its own: a Kerberos logon asks the KDC inside libkrb5, where no socket can be shut
            deadline.call(register, budget, lambda: too_late(host, port, budget, deadline.abandoned()),
                          name=f"smb {host}")
        except ProbeError:
            raise
        except Exception as exc:  # noqa: BLE001 - every library exception becomes a sentence about the server
            raise _failure(exc, host, port, name, user, deadline.Deadline(budget), "session") from None
        with _exchange(host, port, name, user, budget):
            stream = smbclient.open_file(name, mode="rb", share_access="rw", port=port)
        try:
            yield _Bounded(stream, host, port, name, user, budget)  # type: ignore[misc]  # a read-only IO[bytes]
        finally:
            with contextlib.suppress(Exception):
                with _exchange(host, port, name, user, budget):
                    stream.close()
    finally:  # one connection per read: smbclient would keep one (and its thread) per host for the whole run
        with contextlib.suppress(Exception):
            with deadline.Deadline(budget, f"SMB log-off {host}"):
                smbclient.delete_session(host, port=port, timeout=max(1, int(budget)))


@contextlib.contextmanager
def _exchange(host: str, port: int, name: str, user: str | None, budget: float) -> Iterator[deadline.Deadline]:
    """One SMB exchange within ``budget`` seconds, its library exceptions turned into ProbeErrors."""
    limit = deadline.Deadline(budget, f"SMB {name}")
    try:
        with limit:
            yield limit
        if limit.expired:
            raise limit.too_late(host, port)
    except ProbeError:
        raise
    except Exception as exc:  # noqa: BLE001 - every library exception becomes a sentence about the server
        raise _failure(exc, host, port, name, user, limit, "read") from None


def _failure(exc: Exception, host: str, port: int, name: str, user: str | None, limit: deadline.Deadline | None,
             step: str) -> ProbeError:
    """What the server did, from what smbprotocol raised."""
    from smbprotocol.exceptions import SMBAuthenticationError, SMBException, SMBOSError, SMBResponseException  # noqa: PLC0415 - smbprotocol loads only when a share is read

    refused = _REFUSED.pop((host.lower(), port), None)
    if refused is not None:
        return ReplyTooLarge(f"{host}:{port} announced an SMB message of {refused:,} bytes, more than the "
                             f"{MAX_MESSAGE:,} SMB2 allows; the connection was closed before reading it")
    if limit is not None and limit.expired:
        return limit.too_late(host, port)
    if isinstance(exc, SMBOSError):
        return (FileMissing if exc.errno == errno.ENOENT else ProbeError)(f"{name}: {exc.strerror}")
    if isinstance(exc, SMBAuthenticationError):
        return ProbeError(f"SMB logon to {host} as {user or 'the Kerberos ticket'} failed: {exc}")
    if isinstance(exc, SMBResponseException):
        return ProbeError(f"{name}: {exc}")
    seconds = limit.seconds if limit is not None else None
    cause = exc.__cause__ if isinstance(exc, ValueError) and isinstance(exc.__cause__, OSError) else exc
    if isinstance(cause, (socket.timeout, TimeoutError, ConnectionError, socket.gaierror)) or cause is not exc:
        if isinstance(cause, ConnectionRefusedError):
            return Unreachable(host, port, None, "connection refused")
        if isinstance(cause, socket.gaierror):
            return Unreachable(host, port, None, "the name does not resolve")
        return Unreachable(host, port, seconds, "no answer")
    if isinstance(exc, SMBException):
        what = "session to" if step == "session" else "read of"
        return ProbeError(f"SMB {what} {host if step == 'session' else name} failed: {exc}")
    # struct.error, KeyError, ValueError ... from bytes smbprotocol could not decode: not an SMB2 server's reply
    return MalformedReply(f"{host}:{port} answered with something that is not a valid SMB2 reply")


class _Bounded:
    """The open file, each read within its own deadline."""

    def __init__(self, stream: Any, host: str, port: int, name: str, user: str | None, budget: float) -> None:
        self._stream, self._args = stream, (host, port, name, user, budget)

    def read(self, size: int = -1) -> bytes:
        with _exchange(*self._args):
            return self._stream.read(size)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._stream, attr)
