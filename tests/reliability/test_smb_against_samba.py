"""Issue 14, items 1 and 4 for SMB, against a real Samba: every exchange after the logon has a deadline too.

smbprotocol waits without a timeout for a tree connect, an open and a read, and its socket reads wait 600 s for
the next byte. A fake server cannot get that far (NTLM and SMB signing), so a real standalone ``smbd`` (the lab's
:class:`~pytest_vpro.lab.file_server.LabFileServer`, on net 113) serves the file, and a proxy in front of it relays
every message at full speed until the client sends the command under test, then passes the server's answers on
one byte every ``DRIP`` seconds. ``lab``-marked: it binds port 445 on a fixed loopback address.
"""
from __future__ import annotations

import shutil
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from servers import Server

from pytest_vpro.probes import cmlog, errors, smb

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(not (shutil.which("smbd") or Path("/usr/sbin/smbd").exists()),
                                 reason="Debian samba not installed")]

ADDRESS = "127.113.250.1"
PASSWORD = "Hostile-Smb-Pw-4!"
CONNECT, READ = 0.5, 1.0
DRIP = 0.3
SMB2_TREE_CONNECT, SMB2_CREATE, SMB2_READ = 0x03, 0x05, 0x08
LINE = '<![LOG[AMT auto provisioning policy downloaded from site]LOG]!><time="10:00:00.000+000" date="11-21-2026" ' \
       'component="OOBMgmt" context="" type="1" thread="1" file="x">\n'


@pytest.fixture(scope="module")
def samba(tmp_path_factory):
    from pytest_vpro.lab.file_server import LabFileServer

    fs = LabFileServer(tmp_path_factory.mktemp("smbd"), [ADDRESS], password=PASSWORD).start()
    logs = fs.ccm_logs_dir(ADDRESS)
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "OOBMGMT.LOG").write_text(LINE * 20_000)  # 3 MB: many reads, each with its own deadline
    yield fs
    fs.stop()


class StallingProxy(Server):
    """Relays to smbd; once the client has sent a message with ``command``, the server's bytes come one at a time."""

    def __init__(self, command: int) -> None:
        self.command, self.stalled = command, threading.Event()
        super().__init__(self._relay)

    def _relay(self, conn, server) -> None:
        upstream = socket.create_connection((ADDRESS, 445), timeout=10)
        self._open.append(upstream)

        def up() -> None:  # client -> smbd, message by message, watching for the command
            try:
                while not self.stop.is_set():
                    head = _exactly(conn, 4)
                    body = _exactly(conn, struct.unpack(">L", head)[0])
                    if body[:4] == b"\xfeSMB" and struct.unpack_from("<H", body, 12)[0] == self.command:
                        self.stalled.set()
                    upstream.sendall(head + body)
            except (OSError, EOFError):
                return

        self._start(up)
        while not self.stop.is_set():
            data = upstream.recv(65536)
            if not data:
                return
            if self.stalled.is_set():
                if not self.trickle(conn, data, DRIP):
                    return
            else:
                conn.sendall(data)


def _exactly(sock, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def _read(host: str, port: int) -> bytes:
    with smb.open_file(host, "C$", "WINDOWS/system32/CCM/Logs/OOBMGMT.LOG", user="Administrator",
                       password=PASSWORD, timeout=READ, connect_timeout=CONNECT, port=port) as f:
        out = b""
        while chunk := f.read(65536):
            out += chunk
        return out


def test_a_healthy_read_is_unchanged_through_the_bounded_transport(samba):
    t0 = time.monotonic()
    data = _read(ADDRESS, 445)
    assert data == (LINE * 20_000).encode() and time.monotonic() - t0 < 30
    assert len(list(cmlog.LogReader(__import__("io").BytesIO(data)))) == 20_000


@pytest.mark.parametrize("command", [SMB2_TREE_CONNECT, SMB2_CREATE, SMB2_READ], ids=["tree-connect", "open", "read"])
def test_an_smb_server_that_trickles_after_the_logon_ends_at_the_deadline(samba, command):
    with StallingProxy(command) as proxy:
        t0 = time.monotonic()
        with pytest.raises(errors.ProbeError) as caught:
            _read(proxy.host, proxy.port)
        seconds = time.monotonic() - t0
        assert proxy.stalled.is_set()  # the client got as far as the command under test
    assert isinstance(caught.value, errors.Unreachable) and "no complete answer" in str(caught.value), caught.value
    # the logon (each exchange its own budget) plus the stalled one: far below len(reply) x DRIP
    assert seconds < 2 * (CONNECT + READ) + 2.0, seconds
    assert PASSWORD not in str(caught.value)
