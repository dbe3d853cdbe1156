"""Read a file over SMB2/3 with smbprotocol's ``smbclient`` API (no hand-written protocol).

Used for the Configuration Manager logs: ``\\\\<site server>\\SMS_<code>\\Logs\\AMTOPMGR.LOG`` and an in-band
client's ``\\\\<pc>\\C$\\Windows\\System32\\CCM\\Logs\\OOBMGMT.LOG``. Files are opened read-only and streamed
(a log of a gigabyte is never held in memory: the caller iterates). Authentication: NTLM with a user and
password, or Kerberos with the caller's ticket cache when no password is given. Errors are
:class:`~pytest_vpro.probes.errors.ProbeError` sentences naming the UNC path.
"""
from __future__ import annotations

import contextlib
import importlib.util
import socket
import sys
import threading
from pathlib import Path
from typing import IO, Iterator

from .errors import ProbeError, Unreachable

SMB_PORT = 445


def smbprotocol_client():
    """smbprotocol's high-level API: the package ``smbclient`` installed beside ``smbprotocol``.

    Not a plain ``import smbclient``: impacket (a dependency, for security descriptors) installs an example
    *script* ``smbclient.py`` into the interpreter's ``bin`` folder, and when pytest runs as the ``pytest``
    command that folder is ``sys.path[0]``, so the plain import finds the script. The package is loaded from
    smbprotocol's own folder under its own name, once.
    """
    found = sys.modules.get("smbclient")
    if found is not None and hasattr(found, "register_session"):
        return found
    import smbprotocol  # noqa: PLC0415

    folder = Path(smbprotocol.__file__).resolve().parent.parent / "smbclient"
    spec = importlib.util.spec_from_file_location("smbclient", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["smbclient"] = module  # its submodules import "smbclient._io" etc. through this entry
    spec.loader.exec_module(module)
    return module


def unc(host: str, share: str, path: str) -> str:
    return "\\\\" + host + "\\" + share.strip("\\/") + "\\" + path.replace("/", "\\").strip("\\")


@contextlib.contextmanager
def open_file(host: str, share: str, path: str, *, user: str | None, password: str | None, timeout: float,
              port: int = SMB_PORT) -> Iterator[IO[bytes]]:
    """A read-only binary stream of ``\\\\host\\share\\path``, over a connection closed after the read.

    smbclient pools one connection per host, each with a receiver thread that waits in ``select()``, for the
    life of the process: at 1,000 clients that was hundreds of idle connections, and ``select()`` fails once a
    socket's number passes 1023 ("filedescriptor out of range"). A log is read once per host per run.
    """
    with _host_lock(host, port):  # reads of one host share its connection: one at a time
        yield from _read(host, share, path, user=user, password=password, timeout=timeout, port=port)


def _host_lock(host: str, port: int) -> threading.Lock:
    with _LOCKS_LOCK:
        return _LOCKS.setdefault((host.lower(), port), threading.Lock())


_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _read(host: str, share: str, path: str, *, user: str | None, password: str | None, timeout: float,
          port: int) -> Iterator[IO[bytes]]:
    smbclient = smbprotocol_client()
    from smbprotocol.exceptions import SMBAuthenticationError, SMBException, SMBOSError, SMBResponseException

    name = unc(host, share, path)
    try:
        smbclient.register_session(host, username=user, password=password, port=port,
                                   connection_timeout=max(1, int(round(timeout))),
                                   auth_protocol="ntlm" if password else "kerberos")
    except (socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
        if isinstance(exc, SMBOSError):
            raise ProbeError(f"{name}: {exc.strerror}") from None
        how = "refused" if isinstance(exc, ConnectionRefusedError) else "no answer"
        raise Unreachable(host, port, timeout, how) from None
    except SMBAuthenticationError as exc:
        raise ProbeError(f"SMB logon to {host} as {user or 'the Kerberos ticket'} failed: {exc}") from None
    except ValueError as exc:  # smbprotocol's transport: "Failed to connect to 'host:port': <OSError>"
        cause = exc.__cause__
        if isinstance(cause, OSError):
            raise Unreachable(host, port, timeout,
                              "refused" if isinstance(cause, ConnectionRefusedError) else "no answer") from None
        raise ProbeError(f"SMB session to {host} failed: {exc}") from None
    except SMBException as exc:
        raise ProbeError(f"SMB session to {host} failed: {exc}") from None
    try:
        with smbclient.open_file(name, mode="rb", share_access="rw", port=port) as f:
            yield f
    except SMBOSError as exc:
        raise ProbeError(f"{name}: {exc.strerror}") from None
    except (SMBResponseException, SMBException) as exc:
        raise ProbeError(f"{name}: {exc}") from None
    finally:  # one connection per read: smbclient would keep one (and its thread) per host for the whole run
        with contextlib.suppress(Exception):
            smbclient.delete_session(host, port=port)
