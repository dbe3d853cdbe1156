"""A real SMB file server for the in-band clients' log folders: ``\\\\<client>\\C$``, as on a real PC.

One standalone ``smbd`` (Debian package ``samba``; not the AD DC of :mod:`pytest_vpro.lab.samba`) serves every
client address of the lab. Its share ``C$`` (read-only) has ``path = <state>/hosts/%i/C``: Samba's ``%i`` is
"the IP address of the interface that the client connected to" (smb.conf(5), VARIABLE SUBSTITUTIONS), and with
``bind interfaces only`` smbd listens on each address separately, so ``\\\\127.N.1.4\\C$`` shows
``<state>/hosts/127.N.1.4/C`` and no other client's files. ``server multi channel support = no``: with it on
(4.17's default), smbd hands a new connection carrying a known SMB client GUID to the process already serving
that client, whose ``%i`` is the address it was first reached on; smbprotocol sends one client GUID for every
connection of a process, so ``\\\\pc0004\\C$`` read after ``\\\\pc0008\\C$`` showed pc0008's files. The
clients' ``OOBMGMT.LOG`` go to
:meth:`LabFileServer.ccm_logs_dir` (``C:\\WINDOWS\\system32\\CCM\\Logs``).

Everything lives under ``state_dir``: our own ``smb.conf`` (never ``/etc/samba/smb.conf``), private dir (tdbsam
passdb, secrets.tdb), lock, state, cache, pid and ncalrpc directories, and the logs (``--log-basename``).
Checked with ``strace -f -e trace=file,network`` on Debian 12's smbd 4.17: with these settings a standalone smbd
opens nothing under /run/samba, /var/lib/samba, /var/cache/samba or /var/log/samba, so unlike the AD DC it needs
no private mount namespace; its only foreign reads are /etc (passwd, group, hosts, krb5.conf) and failed connects
to nscd and D-Bus. The exception is RPC: on the first named-pipe open (e.g. ``smbclient -L``, share enumeration
over srvsvc) smbd spawns ``samba-dcerpcd`` in a session of its own, whose ``rpcd_*`` workers create their
compiled-in ``/var/log/samba/log.rpcd_*`` before reading smb.conf. ``rpc start on demand helpers = no`` turns
that off: file access works, share enumeration over RPC does not (a lab gap, see the lead's notes; the DC's
mount-namespace trick in :mod:`pytest_vpro.lab.samba` would lift it). ``_NO_WINBINDD=1`` keeps the NSS winbind
module (listed in Debian's nsswitch.conf) from asking a winbindd.

Authentication: ``security = user`` against the tdbsam passdb. Samba needs a Unix account behind every passdb
user; so that the lab adds no account to the machine, the SMB user (default ``Administrator``) is mapped
(``username map``) onto the existing unprivileged account ``nobody``, whose passdb entry holds the lab
password (``smbpasswd -c <conf> -a -s`` reading it from stdin, never from a command line). Files are read as
root (``force user = root``), as on the DC's shares, because the state dir may sit in a 0700 directory.

Process: ``smbd --foreground --no-process-group -s <conf>`` in a session of its own; :meth:`LabFileServer.stop`
signals that process tree and every member of its sessions, then waits for the listeners to go.

Sources: smb.conf(5) (``%i``, ``interfaces``, ``bind interfaces only``, ``smb ports``, ``disable netbios``,
``username map``, ``passdb backend``, ``force user``), smbd(8) (``--foreground``, ``--no-process-group``,
``--log-basename``), smbpasswd(8) (``-c``, ``-a``, ``-s``). This module knows nothing of pytest.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable

from pytest_vpro.lab.samba import alive, process_tree
from pytest_vpro.process import ChildProcess

SMBD, SMBPASSWD = "smbd", "smbpasswd"
SHARE = "C$"
CCM_LOGS = Path("WINDOWS") / "system32" / "CCM" / "Logs"


class FileServerError(RuntimeError):
    """smbd or smbpasswd failed; the message carries their output, never the password."""


def _require(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if not path:
        raise FileServerError(f"{binary!r} not found: install the Debian package samba")
    return path


class LabFileServer(ChildProcess):
    """A standalone smbd sharing ``C$`` on each address of ``addresses``."""

    def __init__(self, state_dir: str | Path, addresses: Iterable[str], *, password: str,
                 user: str = "Administrator", unix_account: str = "nobody", netbios_name: str = "LABPC",
                 workgroup: str = "VPROLAB", port: int = 445):
        self.state_dir = Path(state_dir).resolve()
        self.addresses = list(dict.fromkeys(addresses))
        if not self.addresses:
            raise ValueError("a file server needs at least one address")
        self.user, self.unix_account, self.port = user, unix_account, port
        self.netbios_name, self.workgroup = netbios_name.upper()[:15], workgroup.upper()
        self._password = password
        self.smb_conf = self.state_dir / "etc" / "smb.conf"
        self.log_dir = self.state_dir / "log"
        self._proc: subprocess.Popen | None = None
        self._procs: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"LabFileServer({str(self.state_dir)!r}, {len(self.addresses)} addresses, user={self.user!r})"

    # -- layout --
    def drive_dir(self, address: str) -> Path:
        """The folder ``\\\\<address>\\C$`` shows."""
        return self.state_dir / "hosts" / address / "C"

    def ccm_logs_dir(self, address: str) -> Path:
        """``C:\\WINDOWS\\system32\\CCM\\Logs`` of the client at ``address``; not created here (a PC without the
        Configuration Manager client has no CCM folder; the log writer creates it)."""
        return self.drive_dir(address) / CCM_LOGS

    def write_conf(self) -> Path:
        """Our own smb.conf and directories; every path under ``state_dir``, only the lab's addresses."""
        s = self.state_dir
        for sub in ("etc", "private", "lock", "state", "cache", "run", "log"):
            (s / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(s / "private", 0o700)
        for address in self.addresses:
            self.drive_dir(address).mkdir(parents=True, exist_ok=True)
        (s / "etc" / "users.map").write_text(f"{self.unix_account} = {self.user}\n")
        interfaces = " ".join(f"{a}/8" for a in self.addresses)  # /8: lo carries 127.0.0.1/8 (see samba_conf.py)
        self.smb_conf.write_text(f"""# Written by pytest_vpro.lab.file_server: the lab clients' C$ shares only.
[global]
\tserver role = standalone server
\tsecurity = user
\tnetbios name = {self.netbios_name}
\tworkgroup = {self.workgroup}
\tpassdb backend = tdbsam:{s}/private/passdb.tdb
\tusername map = {s}/etc/users.map
\tmap to guest = never
\tinterfaces = {interfaces}
\tbind interfaces only = yes
\thosts allow = 127.
\tsmb ports = {self.port}
\tdisable netbios = yes
\tserver multi channel support = no
\tprivate dir = {s}/private
\tlock directory = {s}/lock
\tstate directory = {s}/state
\tcache directory = {s}/cache
\tpid directory = {s}/run
\tncalrpc dir = {s}/run/ncalrpc
\twinbindd socket directory = {s}/run/winbindd
\tusershare path =
\tregistry shares = no
\tinclude system krb5 conf = no
\tlog file = {self.log_dir}/log.%m
\tlogging = file
\tlog level = 1
\tmax log size = 10000
\tpanic action =
\tload printers = no
\tprinting = bsd
\tprintcap name = /dev/null
\tdisable spoolss = yes
\trpc start on demand helpers = no

[{SHARE}]
\tcomment = Default share
\tpath = {s}/hosts/%i/C
\tread only = yes
\tbrowseable = no
\tguest ok = no
\tforce user = root
""")
        return self.smb_conf

    def _env(self) -> dict[str, str]:
        return {**os.environ, "_NO_WINBINDD": "1"}

    def set_password(self, timeout: float = 30) -> None:
        """The passdb entry of the SMB user: ``smbpasswd -a -s`` with the password on stdin (twice)."""
        argv = [_require(SMBPASSWD), "-c", str(self.smb_conf), "-a", "-s", self.unix_account]
        try:
            done = subprocess.run(argv, input=f"{self._password}\n{self._password}\n", capture_output=True,
                                  text=True, timeout=timeout, env=self._env())
        except subprocess.TimeoutExpired:
            raise FileServerError(f"smbpasswd timed out after {timeout} s") from None
        if done.returncode != 0:
            out = (done.stderr or done.stdout)[-1000:].replace(self._password, "***")
            raise FileServerError(f"smbpasswd -a failed ({done.returncode}): {out}")

    # -- process --
    def _port_open(self, address: str) -> bool:
        try:
            with socket.create_connection((address, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def processes(self) -> dict[int, int]:
        """Live processes of this server as {pid: session id} (smbd's tree and the members of its sessions)."""
        return process_tree(self._proc.pid) if self.running else {}

    def start(self, timeout: float = 30) -> "LabFileServer":
        """Write the configuration and passdb, start smbd, wait until every address accepts SMB connections."""
        if self._proc is not None:
            raise FileServerError("already started")
        if busy := [a for a in self.addresses if self._port_open(a)]:
            raise FileServerError(f"port {self.port} is already served on {busy[:5]}")
        self.write_conf()
        self.set_password()
        out = open(self.log_dir / "smbd.stdout", "ab")
        argv = [_require(SMBD), "--foreground", "--no-process-group", "-s", str(self.smb_conf),
                f"--log-basename={self.log_dir}"]
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True, env=self._env(), cwd=self.state_dir)
        finally:
            out.close()
        deadline, pending = time.monotonic() + timeout, list(self.addresses)
        while pending:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self.stop()
                raise FileServerError(f"smbd exited with {rc} while starting\n{self._log_tail()}")
            pending = [a for a in pending if not self._port_open(a)]
            if pending and time.monotonic() > deadline:
                self.stop()
                raise FileServerError(f"smbd did not listen on {pending[:5]} in {timeout} s\n{self._log_tail()}")
            if pending:
                time.sleep(0.05)
        self._procs = self.processes()
        return self

    def _log_tail(self, lines: int = 20) -> str:
        parts = []
        for name in ("smbd.stdout", "log.smbd"):
            path = self.log_dir / name
            if path.exists():
                parts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(parts).replace(self._password, "***")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM every process of the server, wait, SIGKILL what is left, wait for the listeners; idempotent."""
        if self._proc is None:
            return
        procs = {**self._procs, **self.processes()} or {self._proc.pid: self._proc.pid}
        for pid in procs:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        deadline = time.monotonic() + timeout
        while alive(procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in alive(procs):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._proc, self._procs = None, {}
        deadline = time.monotonic() + timeout
        while any(self._port_open(a) for a in self.addresses[:50]) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> "LabFileServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["LabFileServer", "FileServerError", "SHARE", "CCM_LOGS"]
