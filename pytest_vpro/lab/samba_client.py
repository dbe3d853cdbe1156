"""The lab DC's administrative interfaces, shared by every part of :class:`pytest_vpro.lab.samba.SambaDC`:
Samba's tools run against the DC's own smb.conf, and the one admin LDAPS connection with its basic reads.

Secrets: the administrator password is handed to Samba's tools on stdin (see ``_TOOL_WITH_SECRET``) and to ldap3
in memory; it never appears on a command line, in a log line or in an exception message.
"""
from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Iterable
from pathlib import Path

import ldap3
from ldap3.protocol.formatters.formatters import format_sid

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-samba bindings belong to this interpreter
SAMBA_TOOL = "samba-tool"
TREE_DELETE_TIMEOUT_S = 300

# Runs a samba-tool command with one secret option whose value is read from stdin, so the secret is in
# neither argv nor the environment of any process. Same entry point as /usr/bin/samba-tool.
_TOOL_WITH_SECRET = r"""
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
secret = sys.stdin.readline().rstrip("\n")
flag, args = sys.argv[1], sys.argv[2:]
from samba.netcmd.main import cmd_sambatool
cmd = cmd_sambatool()
try:
    rc = cmd._run("samba-tool", args[0], *args[1:], flag + "=" + secret)
except SystemExit as e:
    rc = e.code
except Exception as e:
    cmd.show_command_error(e)
    rc = 1
sys.exit(rc)
"""


class SambaError(RuntimeError):
    """A Samba tool or the DC failed; the message carries the tool's output, never a secret."""


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def require(binary: str) -> str:
    path = shutil.which(binary) or (binary if os.path.isabs(binary) and os.access(binary, os.X_OK) else None)
    if not path:
        raise SambaError(f"{binary!r} not found: install the Debian packages samba, samba-ad-dc, python3-samba")
    return path


def conn_closed(conn: ldap3.Connection) -> bool:
    return conn.closed or not conn.bound


class SambaClient:
    """samba-tool and LDAP against the DC; the DC (:class:`pytest_vpro.lab.samba.SambaDC`) sets the attributes."""

    address: str
    domain: str
    netbios: str
    base_dn: str
    config_dn: str
    smb_conf: Path
    krb5_conf: Path
    sam_ldb: Path
    ca_cert: Path
    _password: str
    _conn: ldap3.Connection | None
    _domain_sid: str | None

    # ---------------------------------------------------------------------------------------------------------
    # Tools
    # ---------------------------------------------------------------------------------------------------------
    def _run(self, argv: list[str], *, timeout: float = 60, stdin: str | None = None,
             env: dict | None = None) -> str:
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "KRB5_CONFIG": str(self.krb5_conf), **(env or {})})
        except subprocess.TimeoutExpired:
            raise SambaError(f"{argv[0]} {argv[1:3]} timed out after {timeout} s") from None
        if done.returncode != 0:
            shown = " ".join(argv[:4]) if argv[0] != SYSTEM_PYTHON else "python3 helper " + " ".join(argv[3:5])
            raise SambaError(f"{shown} failed ({done.returncode}): "
                             + redact((done.stderr or done.stdout)[-2000:], self._password))
        return done.stdout

    def samba_tool(self, *args: str, timeout: float = 60) -> str:
        """``samba-tool`` against this DC's smb.conf (local database access needs no password)."""
        return self._run([require(SAMBA_TOOL), *args, "-s", str(self.smb_conf)], timeout=timeout)

    def _samba_tool_secret(self, flag: str, args: list[str], *, timeout: float = 60) -> str:
        require(SAMBA_TOOL)
        return self._run([require(SYSTEM_PYTHON), "-c", _TOOL_WITH_SECRET, flag, *args],
                         stdin=self._password + "\n", timeout=timeout)

    def _admin_tool(self, *args: str, timeout: float = 60) -> str:
        """A samba-tool command that talks to the running DC over RPC as Administrator."""
        return self._samba_tool_secret("--password", [*args, "-s", str(self.smb_conf),
                                                      f"--username={self.netbios}\\Administrator"],
                                       timeout=timeout)

    # ---------------------------------------------------------------------------------------------------------
    # LDAP
    # ---------------------------------------------------------------------------------------------------------
    def ldap(self, user: str | None = None, password: str | None = None, *, timeout: float = 30) -> ldap3.Connection:
        """A new ldap3 connection over LDAPS verified against the DC's TLS CA; simple bind (default: Administrator)."""
        tls = ldap3.Tls(ca_certs_file=str(self.ca_cert), validate=ssl.CERT_REQUIRED)
        server = ldap3.Server(self.address, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE,
                              connect_timeout=5)
        conn = ldap3.Connection(server, user=user or f"Administrator@{self.domain}",
                                password=password if user else self._password, receive_timeout=timeout,
                                raise_exceptions=True, read_only=False)
        conn.bind()
        conn.password = None  # ldap3's repr() shows the password; it is not needed after the bind
        return conn

    @property
    def conn(self) -> ldap3.Connection:
        """The one shared admin connection used by the estate helpers."""
        if self._conn is None or conn_closed(self._conn):
            self._conn = self.ldap()
        return self._conn

    def _add(self, dn: str, object_class, attributes: dict) -> str:
        self.conn.add(dn, object_class, attributes)
        return dn

    def exists(self, dn: str) -> bool:
        try:
            return self.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["1.1"])
        except ldap3.core.exceptions.LDAPNoSuchObjectResult:
            return False

    def read(self, dn: str, attributes: Iterable[str], *, controls=None) -> dict:
        """Raw attribute values (lists of bytes) of ``dn``."""
        self.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes), controls=controls)
        return dict(self.conn.response[0]["raw_attributes"])

    def delete(self, dn: str, *, tree: bool = False) -> None:
        """Delete ``dn`` (with ``tree``, its subtree too, via the tree-delete control)."""
        if not tree:
            self.conn.delete(dn)
            return
        # A tree delete answers once the whole subtree is gone: 1,200 computers took over the 30 s of the shared
        # connection on a loaded machine (CI, a fresh root). Its own connection, with a deadline for its size.
        conn = self.ldap(timeout=TREE_DELETE_TIMEOUT_S)
        try:
            conn.delete(dn, controls=[("1.2.840.113556.1.4.805", True, None)])
        finally:
            conn.unbind()

    @property
    def domain_sid(self) -> str:
        if self._domain_sid is None:
            self._domain_sid = format_sid(self.read(self.base_dn, ["objectSid"])["objectSid"][0])
        return self._domain_sid

    def account_dn(self, account: str) -> str:
        """DN of the account with sAMAccountName ``account`` (``SCCM01$``, ``amtadmin``)."""
        self.conn.search(self.base_dn, f"(sAMAccountName={ldap3.utils.conv.escape_filter_chars(account)})",
                         ldap3.SUBTREE, attributes=["1.1"])
        hits = [e["dn"] for e in self.conn.response if e.get("type") == "searchResEntry"]
        if not hits:
            raise SambaError(f"no account {account!r}")
        return hits[0]

    def sid_of(self, account_or_dn: str) -> str:
        """The objectSid (S-1-5-21-...) of an account name or a DN."""
        dn = account_or_dn if "=" in account_or_dn else self.account_dn(account_or_dn)
        return format_sid(self.read(dn, ["objectSid"])["objectSid"][0])
