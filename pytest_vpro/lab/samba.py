"""The lab's Active Directory domain controller: a real Samba AD DC on one loopback address.

Samba gives the lab real LDAP(S), a real KDC, DNS and SMB (docs/lab.md). Everything lives under
``state_dir``: the provisioned databases, our own ``smb.conf`` (never ``/etc/samba/smb.conf``), a client
``krb5.conf``, logs, TLS files and the ``SMS_<site>`` share. The DC is started in the foreground in a session of
its own (``samba -F --no-process-group``), so stopping it means signalling that session and nothing else.

Sources:
- Samba: ``samba-tool domain provision``, ``samba(8)`` (``-F``, ``--no-process-group``), ``smb.conf(5)``
  (``interfaces``, ``bind interfaces only``, ``server services``, ``tls *``, ``dns forwarder``).
- MS-ADTS 6.1.1.2 (computer objects), MS-DTYP 2.5.1 (SDDL), MS-DNSP 2.3.2.1 (dnsProperty),
  2.3.2.2 (dnsRecord), 2.2.2.2.2 (DNS_COUNT_NAME), 2.2.2.2.4 (record data).
- docs/protocols.md, "Active Directory objects for AMT" and "Provisioning certificate rules".

Secrets: the administrator password is handed to Samba's tools on stdin (see ``_TOOL_WITH_SECRET``) and to ldap3
in memory; it never appears on a command line, in a log line or in an exception message.

This module knows nothing of pytest.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ldap3.protocol.formatters.formatters import format_sid
from ldap3.protocol.microsoft import security_descriptor_control

from pytest_vpro.process import ChildProcess

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-samba bindings belong to this interpreter
SAMBA = "samba"
SAMBA_TOOL = "samba-tool"
TREE_DELETE_TIMEOUT_S = 300
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

# Well-known GUIDs and flags (MS-ADTS 5.1.3.2.1 control access rights; MS-CRTD 2.26 name flags).
CERTIFICATE_ENROLLMENT = "0e10c968-78fb-11d2-90d4-00c04f79dc55"
CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT = 0x1
WORKSTATION_TRUST_ACCOUNT = 0x1000
NORMAL_ACCOUNT = 0x200
GROUP_GLOBAL_SECURITY = -2147483646  # groupType: ACCOUNT_GROUP | SECURITY_ENABLED (MS-ADTS 2.2.12)
ENCTYPES_RC4_AES = 0x1C  # msDS-SupportedEncryptionTypes: RC4-HMAC | AES128 | AES256 (MS-KILE 2.2.7)
DSPROPERTY_ZONE_ALLOW_UPDATE = 0x02  # MS-DNSP 2.3.2.1.1
ZONE_UPDATE = {0: "none", 1: "nonsecure and secure", 2: "secure only"}  # MS-DNSP 2.2.6.1.1 fAllowUpdate

DNS_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "AAAA": 28}
DNS_RANK_ZONE = 0xF0
DEFAULT_TTL = 900  # samba-tool dns add's default

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

# Security descriptor (binary, hex on stdin) -> SDDL, with Samba's own NDR parser (MS-DTYP 2.4.6).
_SD_TO_SDDL = r"""
import sys
from samba.dcerpc import security
from samba.ndr import ndr_unpack
sd = ndr_unpack(security.descriptor, bytes.fromhex(sys.stdin.read().strip()))
print(sd.as_sddl(security.dom_sid(sys.argv[1]) if len(sys.argv) > 1 else None))
"""


class SambaError(RuntimeError):
    """A Samba tool or the DC failed; the message carries the tool's output, never a secret."""


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _require(binary: str) -> str:
    path = shutil.which(binary) or (binary if os.path.isabs(binary) and os.access(binary, os.X_OK) else None)
    if not path:
        raise SambaError(f"{binary!r} not found: install the Debian packages samba, samba-ad-dc, python3-samba")
    return path


# --------------------------------------------------------------------------------------------------------------
# DNS records as LDAP dnsNode objects (MS-DNSP 2.3.2.2). Packed here because our interpreter cannot import
# Debian's python3-samba; tests/lab/test_samba.py checks the bytes against Samba's own NDR (dnsp.DnssrvRpcRecord).
# --------------------------------------------------------------------------------------------------------------
def pack_dns_count_name(name: str) -> bytes:
    """DNS_COUNT_NAME (MS-DNSP 2.2.2.2.2): length, label count, length-prefixed labels, a zero terminator."""
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".")]
    raw = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    return bytes([len(raw), len(labels)]) + raw


def pack_dns_record(rtype: str, value: str, *, ttl: int = DEFAULT_TTL, serial: int = 1) -> bytes:
    """One ``dnsRecord`` attribute value (MS-DNSP 2.3.2.2) for a static record (TimeStamp 0)."""
    rtype = rtype.upper()
    if rtype == "A":
        data = ipaddress.IPv4Address(value).packed
    elif rtype == "AAAA":
        data = ipaddress.IPv6Address(value).packed
    elif rtype in ("CNAME", "PTR", "NS"):
        data = pack_dns_count_name(value)
    else:
        raise ValueError(f"record type {rtype} not supported (A, AAAA, CNAME, PTR, NS)")
    # DataLength, Type, Version=5, Rank, Flags (little endian); TtlSeconds is big endian; Reserved; TimeStamp.
    head = struct.pack("<HHBBHI", len(data), DNS_TYPES[rtype], 5, DNS_RANK_ZONE, 0, serial)
    return head + struct.pack(">I", ttl) + struct.pack("<II", 0, 0) + data


def parse_dns_property(blob: bytes) -> tuple[int, bytes]:
    """dnsProperty (MS-DNSP 2.3.2.1): returns (Id, Data)."""
    data_length, _name_length, _flag, _version, prop_id = struct.unpack_from("<IIIII", blob)
    return prop_id, blob[20:20 + data_length]


def pack_dns_property(prop_id: int, data: bytes) -> bytes:
    return struct.pack("<IIIII", len(data), 1, 0, 1, prop_id) + data + b"\x00"


def reverse_name(address: str, zone: str) -> str:
    """The owner name of ``address``'s PTR record relative to the in-addr.arpa ``zone``."""
    full = ipaddress.IPv4Address(address).reverse_pointer
    suffix = "." + zone.rstrip(".").lower()
    if not full.endswith(suffix):
        raise ValueError(f"{address} is not in reverse zone {zone}")
    return full[: -len(suffix)]


class SambaDC(ChildProcess):
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
        self._write_tls()
        self._write_smb_conf()
        self._write_krb5_conf()
        for path in self.share_dirs.values():
            path.mkdir(parents=True, exist_ok=True)

    def _write_smb_conf(self) -> None:
        """Our own smb.conf: every path under state_dir, only ``address``, no service that talks off-box.

        ``interfaces`` needs a netmask: Samba only accepts an address that lies in a probed interface's
        network, and ``lo`` carries 127.0.0.1/8. Left out of ``server services``: nbt (NetBIOS, broadcasts),
        ntp_signd, wrepl, drepl and kcc (replication, one DC), dnsupdate (runs samba_dnsupdate/nsupdate
        against the system resolver). ``dns forwarder`` is empty: unknown names get NXDOMAIN, nothing leaves.
        The ``SMS_<site>`` shares are read-only to authenticated users; files are opened as root (``force
        user``) because state_dir may sit under a directory the users' mapped uids cannot traverse (pytest's
        0700 tmp root).
        """
        s = self.state_dir
        shares = "".join(
            f"\n[{name}]\n\tpath = {path}\n\tread only = yes\n\tbrowseable = yes\n\tguest ok = no\n"
            "\tforce user = root\n"
            for name, path in self.share_dirs.items())
        self.smb_conf.write_text(f"""# Written by pytest_vpro.lab.samba: the lab's DC only; do not merge into /etc.
[global]
\tnetbios name = {self.hostname.upper()}
\trealm = {self.realm}
\tworkgroup = {self.netbios}
\tserver role = active directory domain controller
\tinterfaces = {self.address}/8
\tbind interfaces only = yes
\tserver services = -nbt -ntp_signd -wrepl -drepl -kcc -dnsupdate{" -ldap" if self.ldap_off else ""}
\tdns forwarder =
\tsmb ports = 445
\tprefork children = {self.prefork_children}
\tprivate dir = {s}/private
\tbinddns dir = {s}/bind-dns
\tlock directory = {s}
\tstate directory = {s}/state
\tcache directory = {s}/cache
\tpid directory = {s}/run
\tncalrpc dir = {s}/run/ncalrpc
\twinbindd socket directory = /run/samba/winbindd
\tntp signd socket directory = {s}/run/ntp_signd
\tusershare path =
\tlog file = {self.log_dir}/samba.log
\tlogging = file
\tlog level = 1
\tmax log size = 10000
\tpanic action =
\tload printers = no
\tprinting = bsd
\tprintcap name = /dev/null
\tdisable spoolss = yes
\tidmap_ldb:use rfc2307 = yes
\tldb:nosync = true
\ttls enabled = yes
\ttls keyfile = {self.tls_dir}/key.pem
\ttls certfile = {self.tls_dir}/cert.pem
\ttls cafile = {self.ca_cert}

[sysvol]
\tpath = {s}/state/sysvol
\tread only = no

[netlogon]
\tpath = {s}/state/sysvol/{self.domain}/scripts
\tread only = no
{shares}""")
        (s / "run").mkdir(exist_ok=True)

    def _write_krb5_conf(self) -> None:
        """A client krb5.conf: the realm's KDC is ``address``; no DNS lookups, no host name canonicalisation."""
        self.krb5_conf.write_text(f"""[libdefaults]
\tdefault_realm = {self.realm}
\tdns_lookup_kdc = false
\tdns_lookup_realm = false
\trdns = false
\tdns_canonicalize_hostname = false
\tudp_preference_limit = 0

[realms]
\t{self.realm} = {{
\t\tkdc = {self.address}
\t\tadmin_server = {self.address}
\t\tdefault_domain = {self.domain}
\t}}

[domain_realm]
\t.{self.domain} = {self.realm}
\t{self.domain} = {self.realm}
""")

    def _write_tls(self) -> None:
        """A lab CA and an LDAPS certificate for the DC with SANs for its FQDN and its address.

        Samba's own autogenerated certificate names only ``DC01.<domain>`` and has no SAN, so a client that
        connects to ``ldaps://<address>`` cannot verify it; this one verifies with the address or the name.
        """

        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vPro lab"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"{self.netbios} DC TLS CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end)
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.fqdn)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName(self.fqdn), x509.IPAddress(ipaddress.IPv4Address(self.address))]), False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .sign(ca_key, hashes.SHA256()))
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        pem = serialization.Encoding.PEM
        self.ca_cert.write_bytes(ca.public_bytes(pem))
        (self.tls_dir / "cert.pem").write_bytes(cert.public_bytes(pem))
        key_path = self.tls_dir / "key.pem"
        key_path.touch(mode=0o600)
        os.chmod(key_path, 0o600)  # Samba refuses a key file others can read
        key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))

    # ---------------------------------------------------------------------------------------------------------
    # Process
    # ---------------------------------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> None:
        """Start ``samba -F`` in a new session (and a private mount namespace, see ``_PRIVATE_RUN``) and wait
        until LDAP, LDAPS, Kerberos, DNS and SMB accept connections and an admin bind over LDAPS succeeds."""
        if self._proc is not None:
            raise SambaError("already started")
        binary = _require(SAMBA)
        if self.ldap_off:
            self._write_smb_conf()
        if busy := [port for port in (389, 88, 53, 445) if self._port_open(port)]:
            raise SambaError(f"{self.address} already serves ports {busy}: another DC or lab uses this address")
        self.log_dir.mkdir(exist_ok=True)
        out = open(self.log_dir / "samba.stdout", "ab")
        env = {**os.environ, "KRB5_CONFIG": str(self.krb5_conf)}
        argv = [_require(UNSHARE), "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _PRIVATE_RUN,
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
        return _redact("\n".join(text.splitlines()[-lines:]), self._password)

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
                             + _redact((done.stderr or done.stdout)[-2000:], self._password))
        return done.stdout

    def samba_tool(self, *args: str, timeout: float = 60) -> str:
        """``samba-tool`` against this DC's smb.conf (local database access needs no password)."""
        return self._run([_require(SAMBA_TOOL), *args, "-s", str(self.smb_conf)], timeout=timeout)

    def _samba_tool_secret(self, flag: str, args: list[str], *, timeout: float = 60) -> str:
        _require(SAMBA_TOOL)
        return self._run([_require(SYSTEM_PYTHON), "-c", _TOOL_WITH_SECRET, flag, *args],
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

    # ---------------------------------------------------------------------------------------------------------
    # Estate objects
    # ---------------------------------------------------------------------------------------------------------
    def add_ou(self, dn: str) -> str:
        if not self.exists(dn):
            self._add(dn, "organizationalUnit", {})
        return dn

    def add_user(self, name: str, password: str, groups: Iterable[str] = (), *, ou_dn: str | None = None) -> str:
        dn = f"CN={name},{ou_dn or 'CN=Users,' + self.base_dn}"
        if not self.exists(dn):
            self._add(dn, "user", {"sAMAccountName": name, "userPrincipalName": f"{name}@{self.domain}",
                                   "unicodePwd": f'"{password}"'.encode("utf-16-le"),
                                   "userAccountControl": NORMAL_ACCOUNT})
        for group in groups:
            self.add_group_member(group, dn)
        return dn

    def add_group(self, name: str, *, ou_dn: str | None = None, group_type: int = GROUP_GLOBAL_SECURITY) -> str:
        dn = f"CN={name},{ou_dn or 'CN=Users,' + self.base_dn}"
        if not self.exists(dn):
            self._add(dn, "group", {"sAMAccountName": name, "groupType": group_type})
        return dn

    def add_group_member(self, group: str, member_dn: str) -> None:
        group_dn = group if "=" in group else self.account_dn(group)
        try:
            self.conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})
        except ldap3.core.exceptions.LDAPEntryAlreadyExistsResult:
            pass

    def add_computer(self, name: str, *, ou_dn: str | None = None, spns: Iterable[str] = (),
                     dns_host_name: str | None = None, with_keys: bool = True,
                     enctypes: int = ENCTYPES_RC4_AES) -> str:
        """A computer account (``NAME$``). ``with_keys`` sets a random password so the KDC can issue tickets
        for its SPNs and ``export_keytab`` can export them; nobody needs to know the password. The password
        costs about 15 ms per account (Samba derives the RC4 and AES keys); without it an add takes ~2 ms."""
        dn = f"CN={name},{ou_dn or 'CN=Computers,' + self.base_dn}"
        attrs = {"sAMAccountName": f"{name[:15]}$", "userAccountControl": WORKSTATION_TRUST_ACCOUNT}
        if dns_host_name:
            attrs["dNSHostName"] = dns_host_name
        if spns := list(spns):
            attrs["servicePrincipalName"] = spns
        if with_keys:
            attrs["unicodePwd"] = f'"{secrets.token_urlsafe(24)}"'.encode("utf-16-le")
            attrs["msDS-SupportedEncryptionTypes"] = enctypes
        return self._add(dn, "computer", attrs)

    def amt_ou(self) -> str:
        return f"OU=AMT,{self.base_dn}"

    @staticmethod
    def amt_spns(fqdn: str, ports: Iterable[int] = (16992, 16993)) -> list[str]:
        """``HTTP/<fqdn>:<port>`` per port (docs/protocols.md, "Active Directory objects for AMT")."""
        return [f"HTTP/{fqdn}:{port}" for port in ports]

    def add_amt_account(self, fqdn: str, *, ou_dn: str | None = None, name: str | None = None,
                        ports: Iterable[int] = (16992, 16993)) -> str:
        """The account object the site server publishes for a provisioned AMT device: a computer named after
        the host (configurable: SCCM's exact naming is unconfirmed) in the AMT OU with the port SPNs."""
        return self.add_computer(name or fqdn.split(".")[0].upper(), ou_dn=ou_dn or self.amt_ou(),
                                 spns=self.amt_spns(fqdn, ports), dns_host_name=fqdn)

    def set_spns(self, dn: str, spns: Iterable[str]) -> None:
        self.conn.modify(dn, {"servicePrincipalName": [(ldap3.MODIFY_REPLACE, list(spns))]})

    def get_spns(self, dn: str) -> list[str]:
        return [v.decode() for v in self.read(dn, ["servicePrincipalName"]).get("servicePrincipalName", [])]

    # ---------------------------------------------------------------------------------------------------------
    # Security descriptors
    # ---------------------------------------------------------------------------------------------------------
    def grant(self, dn: str, sddl_aces: str) -> None:
        """Add ACEs (SDDL, e.g. ``(A;CI;GA;;;S-1-5-21-...)``) to ``dn``'s DACL with ``samba-tool dsacl set``.
        Inheritable ACEs are propagated to existing children by Samba."""
        self.samba_tool("dsacl", "set", f"--objectdn={dn}", f"--sddl={sddl_aces}", "-H", str(self.sam_ldb))

    def grant_full_control(self, dn: str, account: str, *, inherit: bool = True) -> None:
        """Full control for ``account`` on ``dn`` (and, with ``inherit``, on every object under it)."""
        self.grant(dn, f"(A;{'CI' if inherit else ''};GA;;;{self.sid_of(account)})")

    def security_descriptor(self, dn: str) -> bytes:
        """The owner, group and DACL of ``dn`` (SD flags control 0x7, MS-ADTS 3.1.1.3.4.1.11)."""
        values = self.read(dn, ["nTSecurityDescriptor"], controls=security_descriptor_control(sdflags=0x07))
        return values["nTSecurityDescriptor"][0]

    def sddl(self, dn: str) -> str:
        """``dn``'s security descriptor as SDDL, parsed by Samba's own NDR code (``samba.dcerpc.security``)."""
        return sd_to_sddl(self.security_descriptor(dn), self.domain_sid)

    # ---------------------------------------------------------------------------------------------------------
    # Certificate templates (docs/protocols.md, "Provisioning certificate rules")
    # ---------------------------------------------------------------------------------------------------------
    @property
    def templates_dn(self) -> str:
        return f"CN=Certificate Templates,CN=Public Key Services,CN=Services,{self.config_dn}"

    def add_cert_template(self, name: str = "IntelAMTWebServer", *, eku: Iterable[str] = ("1.3.6.1.5.5.7.3.1",),
                          enrollee_supplies_subject: bool = True, enroll_for: Iterable[str] = ("SCCM01$",),
                          display_name: str | None = None, enrollment_flag: int = 0, ra_signature: int = 0) -> str:
        """A ``pKICertificateTemplate`` modelled on the Web Server template CM2007 SP1 used, with Read and the
        Certificate-Enrollment extended right for each account in ``enroll_for``. ``enrollment_flag`` is
        msPKI-Enrollment-Flag (MS-CRTD 2.26: CT_FLAG_PEND_ALL_REQUESTS 0x2 is "CA certificate manager
        approval"), ``ra_signature`` msPKI-RA-Signature (authorized signatures required)."""
        for container in (f"CN=Public Key Services,CN=Services,{self.config_dn}", self.templates_dn):
            if not self.exists(container):
                self._add(container, "container", {})
        dn = f"CN={name},{self.templates_dn}"
        eku = list(eku)
        self._add(dn, "pKICertificateTemplate", {
            "displayName": display_name or name, "flags": 0x20240, "revision": 100,
            "pKIDefaultKeySpec": 1, "pKIMaxIssuingDepth": 0, "pKIKeyUsage": b"\xa0\x00",
            "pKIExtendedKeyUsage": eku, "msPKI-Certificate-Application-Policy": eku,
            "pKIExpirationPeriod": struct.pack("<q", -2 * 365 * 86400 * 10**7),
            "pKIOverlapPeriod": struct.pack("<q", -6 * 7 * 86400 * 10**7),
            "pKICriticalExtensions": "2.5.29.15", "pKIDefaultCSPs": "1,Microsoft RSA SChannel Cryptographic Provider",
            "msPKI-Certificate-Name-Flag": CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT if enrollee_supplies_subject else 0,
            "msPKI-Enrollment-Flag": enrollment_flag, "msPKI-Private-Key-Flag": 0, "msPKI-Minimal-Key-Size": 2048,
            "msPKI-RA-Signature": ra_signature, "msPKI-Template-Schema-Version": 1, "msPKI-Template-Minor-Revision": 1,
        })
        aces = "".join(f"(A;;RPLCLORC;;;{sid})(OA;;CR;{CERTIFICATE_ENROLLMENT};;{sid})"
                       for sid in (self.sid_of(account) for account in enroll_for))
        if aces:
            self.grant(dn, aces)
        return dn

    @property
    def enrollment_services_dn(self) -> str:
        return f"CN=Enrollment Services,CN=Public Key Services,CN=Services,{self.config_dn}"

    def add_enrollment_service(self, name: str, dns_host_name: str, ca_certificate: bytes,
                               templates: Iterable[str]) -> str:
        """The ``pKIEnrollmentService`` an enterprise CA publishes (MS-CRTD 2.1, MS-ADTS): its host, its CA
        certificate (DER) and the certificate templates it issues (``certificateTemplates``)."""
        for container in (f"CN=Public Key Services,CN=Services,{self.config_dn}", self.enrollment_services_dn):
            if not self.exists(container):
                self._add(container, "container", {})
        from cryptography import x509  # noqa: PLC0415

        subject = x509.load_der_x509_certificate(ca_certificate).subject.rfc4514_string()
        dn = f"CN={name},{self.enrollment_services_dn}"
        attrs: dict = {"displayName": name, "dNSHostName": dns_host_name, "cACertificate": [ca_certificate],
                       "cACertificateDN": subject}
        if templates := list(templates):
            attrs["certificateTemplates"] = templates
        return self._add(dn, "pKIEnrollmentService", attrs)

    def add_certification_authority(self, container: str, name: str, ca_certificate: bytes) -> str:
        """A ``certificationAuthority`` under ``CN=<container>,CN=Public Key Services,CN=Services,<config>`` as
        ``certutil -dspublish`` writes it: ``container`` "Certification Authorities" (roots the forest trusts)
        or "AIA" (every CA certificate, intermediates included). The mandatory revocation lists are empty
        (one zero byte, as AD CS writes them)."""
        parent = f"CN={container},CN=Public Key Services,CN=Services,{self.config_dn}"
        for dn in (f"CN=Public Key Services,CN=Services,{self.config_dn}", parent):
            if not self.exists(dn):
                self._add(dn, "container", {})
        dn = f"CN={name},{parent}"
        if self.exists(dn):  # certutil adds the certificate to the object's cACertificate values
            self.conn.modify(dn, {"cACertificate": [(ldap3.MODIFY_ADD, [ca_certificate])]})
            return dn
        return self._add(dn, "certificationAuthority", {"cACertificate": [ca_certificate],
                                                         "authorityRevocationList": [b"\x00"],
                                                         "certificateRevocationList": [b"\x00"]})

    def publish_crl(self, dn: str, crl: bytes) -> str:
        """A CRL at ``dn`` (``CN=<CA>,CN=<CA host>,CN=CDP,CN=Public Key Services,CN=Services,<config>``) as AD CS
        publishes it: a ``cRLDistributionPoint`` whose ``certificateRevocationList`` is the DER CRL; published
        again, the value is replaced."""
        parents = dn.split(",", 1)[1]
        chain = []
        while parents.lower() != self.config_dn.lower() and parents.upper().startswith("CN="):
            chain.append(parents)
            parents = parents.split(",", 1)[1]
        for parent in reversed(chain):
            if not self.exists(parent):
                self._add(parent, "container", {})
        if self.exists(dn):
            self.conn.modify(dn, {"certificateRevocationList": [(ldap3.MODIFY_REPLACE, [crl])]})
            return dn
        return self._add(dn, "cRLDistributionPoint", {"certificateRevocationList": [crl]})

    # ---------------------------------------------------------------------------------------------------------
    # DNS
    # ---------------------------------------------------------------------------------------------------------
    def zone_dn(self, zone: str | None = None) -> str:
        """Where a domain zone lives: ``DC=<zone>,CN=MicrosoftDNS,DC=DomainDnsZones,<base DN>``."""
        return f"DC={(zone or self.domain).lower()},CN=MicrosoftDNS,DC=DomainDnsZones,{self.base_dn}"

    def reverse_zone(self) -> str:
        """The lab's reverse zone: one /16 zone (``<net>.127.in-addr.arpa``) covering every lab address."""
        first, second = self.address.split(".")[:2]
        return f"{second}.{first}.in-addr.arpa"

    def create_zone(self, zone: str) -> None:
        """``samba-tool dns zonecreate`` (RPC to the running DC as Administrator); no-op if it exists."""
        if not self.exists(self.zone_dn(zone)):
            self._admin_tool("dns", "zonecreate", self.address, zone)

    def zone_allow_update(self, zone: str | None = None) -> int:
        """The zone's allow-update setting from its ``dNSProperty`` (MS-DNSP 2.3.2.1; 0 none, 1 nonsecure and
        secure, 2 secure only), read over LDAP at ``zone_dn(zone)``."""
        for blob in self.read(self.zone_dn(zone), ["dNSProperty"]).get("dNSProperty", []):
            prop_id, data = parse_dns_property(blob)
            if prop_id == DSPROPERTY_ZONE_ALLOW_UPDATE:
                return data[0]
        raise SambaError(f"zone {zone or self.domain} has no allow-update property")

    def set_zone_allow_update(self, value: int, zone: str | None = None) -> None:
        """Rewrite the zone's allow-update dNSProperty over LDAP (what the DNS console's setting writes)."""
        props = self.read(self.zone_dn(zone), ["dNSProperty"]).get("dNSProperty", [])
        kept = [blob for blob in props if parse_dns_property(blob)[0] != DSPROPERTY_ZONE_ALLOW_UPDATE]
        new = kept + [pack_dns_property(DSPROPERTY_ZONE_ALLOW_UPDATE, bytes([value]))]
        self.conn.modify(self.zone_dn(zone), {"dNSProperty": [(ldap3.MODIFY_REPLACE, new)]})

    def _node_dn(self, name: str, zone: str) -> str:
        return f"DC={name.lower()},{self.zone_dn(zone)}"

    def add_dns_record(self, name: str, rtype: str, value: str, zone: str | None = None, *,
                       ttl: int = DEFAULT_TTL) -> str:
        """Add a static record as a ``dnsNode``'s ``dnsRecord`` value over LDAP (one round trip; the DNS server
        reads the directory on each query). ``name`` is relative to ``zone`` (default: the domain)."""
        zone = zone or self.domain
        dn = self._node_dn(name, zone)
        blob = pack_dns_record(rtype, value, ttl=ttl)
        try:
            self._add(dn, "dnsNode", {"dnsRecord": [blob], "dNSTombstoned": "FALSE"})
        except ldap3.core.exceptions.LDAPEntryAlreadyExistsResult:
            self.conn.modify(dn, {"dnsRecord": [(ldap3.MODIFY_ADD, [blob])], "dNSTombstoned":
                                  [(ldap3.MODIFY_REPLACE, ["FALSE"])]})
        return dn

    def delete_dns_record(self, name: str, rtype: str | None = None, value: str | None = None,
                          zone: str | None = None) -> None:
        """Delete one record (``rtype`` + ``value``) or, with neither, the whole node."""
        dn = self._node_dn(name, zone or self.domain)
        if rtype is None:
            self.conn.delete(dn)
            return
        self.conn.modify(dn, {"dnsRecord": [(ldap3.MODIFY_DELETE, [pack_dns_record(rtype, value)])]})

    def add_host(self, fqdn: str, address: str) -> None:
        """A and PTR records for a host of the domain (PTR in ``reverse_zone()``)."""
        name = fqdn.lower().removesuffix("." + self.domain)
        self.add_dns_record(name, "A", address)
        zone = self.reverse_zone()
        self.add_dns_record(reverse_name(address, zone), "PTR", fqdn, zone)

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
            self._run([_require(SYSTEM_PYTHON), "-c", _EXPORT_KEYTABS, str(self.smb_conf), str(path), *args],
                      timeout=60 + len(args) * 0.2)
        return Path(path)


    def add_winrm_host(self, name: str, fqdn: str) -> str:
        """A Windows host's computer account (``NAME$``) with the SPN WinRM authenticates to, ``HTTP/<fqdn>``
        (no port), and ``HOST/<fqdn>``, as a domain member has it. Over LDAP: made while the directory answers."""
        return self.add_computer(name, spns=[f"HOST/{fqdn}", f"HTTP/{fqdn}"], dns_host_name=fqdn)

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


def conn_closed(conn: ldap3.Connection) -> bool:
    return conn.closed or not conn.bound


def sd_to_sddl(blob: bytes, domain_sid: str | None = None) -> str:
    """A binary security descriptor as SDDL, parsed by Samba's ``samba.dcerpc.security`` (system python3)."""
    argv = [_require(SYSTEM_PYTHON), "-c", _SD_TO_SDDL] + ([domain_sid] if domain_sid else [])
    done = subprocess.run(argv, input=blob.hex(), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise SambaError(f"could not parse security descriptor: {done.stderr[-500:]}")
    return done.stdout.strip()
