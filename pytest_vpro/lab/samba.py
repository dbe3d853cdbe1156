"""The lab's Active Directory domain controller: a real Samba AD DC on one loopback address.

Samba gives the lab real LDAP(S), a real KDC, DNS and SMB (docs/lab.md). Everything lives under
``state_dir``: the provisioned databases, our own ``smb.conf`` (never ``/etc/samba/smb.conf``), a client
``krb5.conf``, logs, TLS files and the ``SMS_<site>`` share. The DC is started in the foreground in a session of
its own (``samba -F --no-process-group``), so stopping it means signalling that session and nothing else.

:class:`SambaDC` is provisioning, the samba process's life cycle and keytab export; it is composed of the parts
that talk to the running DC: :mod:`.samba_client` (samba-tool, the admin LDAPS connection), :mod:`.samba_directory`
(accounts, SPNs, ACLs, Public Key Services objects) and :mod:`.samba_dns` (zones and records). Its configuration
files are written by :mod:`.samba_conf`.

Sources:
- Samba: ``samba-tool domain provision``, ``samba(8)`` (``-F``, ``--no-process-group``), ``smb.conf(5)``.
- proc(5) (``/proc/<pid>/stat``), unshare(1), mount(8).

Secrets: the administrator password is handed to Samba's tools on stdin and to ldap3 in memory
(:mod:`.samba_client`); it never appears on a command line, in a log line or in an exception message.

This module knows nothing of pytest.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import ldap3

from pytest_vpro.process import ChildProcess

from .samba_client import SYSTEM_PYTHON, SambaError, redact, require
from .samba_conf import write_krb5_conf, write_smb_conf, write_tls
from .samba_directory import PublicKeyServices, SambaDirectory
from .samba_dns import SambaDNS

SAMBA = "samba"
UNSHARE = "unshare"

# smbd finds winbindd (SID -> uid mapping, needed for every SMB session on a DC) at the compiled-in
# /run/samba/winbindd; only Samba's test wrappers can move it. And samba, smbd and winbindd open their
# compiled-in log files under /var/log/samba before they read smb.conf. So samba runs in a private mount
# namespace (unshare(1), needs root) where our state_dir/run is mounted on /run/samba and our log dir on
# /var/log/samba: the machine's copies are never touched, and two lab DCs never meet there. Without
# /run/samba (fresh container) a private tmpfs on /run gives us one. "$1" is our run dir, "$2" our log dir;
# the rest is the samba command line, exec'd so that the pid we hold is samba's.
_PRIVATE_RUN = (
    'set -e; run="$1"; log="$2"; shift 2; '
    'if [ ! -d /run/samba ]; then mount -t tmpfs -o mode=0755 lab-run /run; mkdir /run/samba; fi; '
    'mount --bind "$run" /run/samba; '
    'if [ -d /var/log/samba ]; then mount --bind "$log" /var/log/samba; fi; '
    'exec "$@"'
)

# Exports the keys of many principals (account names or SPNs) into one keytab in one process; the same call
# as `samba-tool domain exportkeytab --principal=...`, without paying Python's start-up per principal.
_EXPORT_KEYTABS = r"""
import sys
import samba.dckeytab  # registers Net.export_keytab
from samba.net import Net
from samba.param import LoadParm
lp = LoadParm(); lp.load(sys.argv[1])
net = Net(None, lp)
for principal in sys.argv[3:]:
    net.export_keytab(keytab=sys.argv[2], principal=principal or None)  # "" means every principal
"""


class SambaDC(SambaDirectory, PublicKeyServices, SambaDNS, ChildProcess):
    """A Samba AD DC provisioned into ``state_dir`` and bound only to ``address``."""

    def __init__(self, state_dir: Path, address: str, *, admin_password: str, domain: str = "vprolab.test",
                 netbios: str = "VPROLAB", hostname: str = "dc01", site_code: str = "LAB",
                 share_dirs: dict[str, Path] | None = None, prefork_children: int = 2):
        self.state_dir = Path(state_dir).resolve()
        self.address = address
        self.domain = domain.lower()
        self.realm = domain.upper()
        self.netbios = netbios.upper()
        self.hostname = hostname.lower()
        self.fqdn = f"{self.hostname}.{self.domain}"
        self.site_code = site_code.upper()
        self.base_dn = ",".join(f"DC={part}" for part in self.domain.split("."))
        self.config_dn = f"CN=Configuration,{self.base_dn}"
        self.prefork_children = prefork_children
        #: without its LDAP server (``server services = -ldap``): the lab's ``directory_down`` fault restarts the
        #: DC so, once the directory is populated; DNS, Kerberos and SMB go on answering.
        self.ldap_off = False
        self._password = admin_password
        share = f"SMS_{self.site_code}"
        self.share_dirs = {share: self.state_dir / "shares" / share, **(share_dirs or {})}
        self.smb_conf = self.state_dir / "etc" / "smb.conf"
        self.krb5_conf = self.state_dir / "etc" / "krb5.conf"
        self.private_dir = self.state_dir / "private"
        self.tls_dir = self.private_dir / "tls"
        self.ca_cert = self.tls_dir / "ca.pem"
        self.log_dir = self.state_dir / "log"
        self.sam_ldb = self.private_dir / "sam.ldb"
        self.ldap_url = f"ldap://{address}"
        self.ldaps_url = f"ldaps://{address}"
        self._proc: subprocess.Popen | None = None
        self._conn: ldap3.Connection | None = None
        self._domain_sid: str | None = None

    # ---------------------------------------------------------------------------------------------------------
    # Provisioning and configuration
    # ---------------------------------------------------------------------------------------------------------
    @property
    def provisioned(self) -> bool:
        return self.sam_ldb.exists()

    def provision(self, timeout: float = 120) -> None:
        """``samba-tool domain provision`` into ``state_dir``, then our smb.conf, krb5.conf, TLS and shares."""
        if self.provisioned:
            raise SambaError(f"{self.state_dir} is already provisioned")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        args = ["domain", "provision", f"--realm={self.realm}", f"--domain={self.netbios}",
                "--server-role=dc", "--dns-backend=SAMBA_INTERNAL", "--use-rfc2307",
                f"--host-name={self.hostname}", f"--host-ip={self.address}", f"--targetdir={self.state_dir}",
                f"--option=interfaces={self.address}/8", "--option=bind interfaces only=yes",
                "--option=dns forwarder=", f"--option=log file={self.log_dir}/provision.log"]
        self.log_dir.mkdir(exist_ok=True)
        self._samba_tool_secret("--adminpass", args, timeout=timeout)
        write_tls(self)
        write_smb_conf(self)
        write_krb5_conf(self)
        for path in self.share_dirs.values():
            path.mkdir(parents=True, exist_ok=True)


    # ---------------------------------------------------------------------------------------------------------
    # Process
    # ---------------------------------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> None:
        """Start ``samba -F`` in a new session (and a private mount namespace, see ``_PRIVATE_RUN``) and wait
        until LDAP, LDAPS, Kerberos, DNS and SMB accept connections and an admin bind over LDAPS succeeds."""
        if self._proc is not None:
            raise SambaError("already started")
        binary = require(SAMBA)
        if self.ldap_off:
            write_smb_conf(self)
        if busy := [port for port in (389, 88, 53, 445) if self._port_open(port)]:
            raise SambaError(f"{self.address} already serves ports {busy}: another DC or lab uses this address")
        self.log_dir.mkdir(exist_ok=True)
        out = open(self.log_dir / "samba.stdout", "ab")
        env = {**os.environ, "KRB5_CONFIG": str(self.krb5_conf)}
        argv = [require(UNSHARE), "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _PRIVATE_RUN,
                "sh", str(self.state_dir / "run"), str(self.log_dir), binary, "-F", "--no-process-group",
                "-s", str(self.smb_conf)]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True, env=env)
        out.close()
        deadline = time.monotonic() + timeout
        pending = [88, 53, 445] if self.ldap_off else [389, 636, 88, 53, 445]
        while pending:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self.stop()
                raise SambaError(f"samba exited with {rc} while starting; see {self.log_dir}/samba.stdout\n"
                                 + self._log_tail())
            pending = [port for port in pending if not self._port_open(port)]
            if pending and time.monotonic() > deadline:
                self.stop()
                raise SambaError(f"samba did not open ports {pending} on {self.address} in {timeout} s\n"
                                 + self._log_tail())
            if pending:
                time.sleep(0.1)
        while not self.ldap_off:  # a listening socket is not yet a serving directory: wait for a real bind
            try:
                self._conn = self.ldap(timeout=5)
                return
            except ldap3.core.exceptions.LDAPException as exc:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop()
                    raise SambaError(f"LDAPS bind to {self.address} failed: {type(exc).__name__}\n"
                                     + self._log_tail()) from None
                time.sleep(0.2)

    def _port_open(self, port: int) -> bool:
        try:
            with socket.create_connection((self.address, port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_tail(self, lines: int = 30) -> str:
        log = self.log_dir / "samba.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return redact("\n".join(text.splitlines()[-lines:]), self._password)

    def processes(self) -> dict[int, int]:
        """Live processes of this DC as {pid: session id}: samba's process tree plus every member of the
        sessions in it (smbd and winbindd start sessions of their own; orphans are reparented to init)."""
        return process_tree(self._proc.pid) if self.running else {}

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM every process of the DC, wait, SIGKILL whatever is left; idempotent."""
        if self._proc is None:
            return
        if self._conn is not None:
            try:
                self._conn.unbind()
            except Exception:  # noqa: BLE001 - the server may already be gone
                pass
            self._conn = None
        procs = self.processes() or {self._proc.pid: self._proc.pid}
        _signal(procs, signal.SIGTERM)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(procs, signal.SIGKILL)
            self._proc.wait(timeout=5)
        deadline = time.monotonic() + timeout
        while (left := alive(procs)) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal(left, signal.SIGKILL)
        self._proc = None

    def __enter__(self) -> "SambaDC":
        if not self.provisioned:
            self.provision()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------------------------
    # Kerberos
    # ---------------------------------------------------------------------------------------------------------
    def export_keytab(self, path: Path, principals: Iterable[str] | None = None) -> Path:
        """Export keys into the keytab ``path`` (appended), in one process, as ``samba-tool domain exportkeytab``.

        ``principals``: account names or SPNs (``HTTP/pc0001.vprolab.test:16993``); the entries are named as
        asked, which is what an acceptor matching the ticket's server name needs. About 23 ms per principal.
        ``None`` exports every account of the domain under its account name (``PC0001$@REALM``) in well
        under a second: enough for an acceptor that tries all keytab keys (MIT with GSS_C_NO_NAME)."""
        args = [str(p) for p in principals] if principals is not None else [""]
        if args:
            self._run([require(SYSTEM_PYTHON), "-c", _EXPORT_KEYTABS, str(self.smb_conf), str(path), *args],
                      timeout=60 + len(args) * 0.2)
        return Path(path)

    def export_winrm_keytab(self, fqdn: str, keytab: Path) -> Path:
        """The key of ``HTTP/<fqdn>`` in ``keytab``, for the host's Negotiate acceptor (as ``samba-tool domain
        exportkeytab --principal=HTTP/<fqdn>``; read from the DC's database, so a hung LDAP server is no matter)."""
        Path(keytab).parent.mkdir(parents=True, exist_ok=True)
        return self.export_keytab(Path(keytab), [f"HTTP/{fqdn}"])


def _proc_table() -> dict[int, tuple[str, int, int]]:
    """{pid: (state, ppid, session id)} from /proc/<pid>/stat (proc(5): fields 3, 4 and 6)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            table[int(entry.name)] = (fields[0], int(fields[1]), int(fields[3]))
    return table


def process_tree(root: int) -> dict[int, int]:
    """Live descendants of ``root`` (itself included) and every live member of their sessions: {pid: sid}."""
    table = _proc_table()
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in tree:
            tree.add(pid)
            todo.extend(child for child, (_, ppid, _) in table.items() if ppid == pid)
    sids = {table[pid][2] for pid in tree}
    return {pid: sid for pid, (state, _, sid) in table.items()
            if (pid in tree or sid in sids) and state != "Z"}


def alive(procs: dict[int, int]) -> dict[int, int]:
    """Those of ``procs`` ({pid: sid}) still running in the same session (not zombies, pid not reused)."""
    table = _proc_table()
    return {pid: sid for pid, sid in procs.items()
            if pid in table and table[pid][2] == sid and table[pid][0] != "Z"}


def _signal(procs: dict[int, int], sig: int) -> None:
    for pid in procs:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
