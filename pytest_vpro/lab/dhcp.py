"""The lab's DHCP server: a real dnsmasq answering DHCPINFORM on loopback.

Why dnsmasq (not Kea or ISC dhcpd):
- It answers a unicast DHCPINFORM (RFC 2131 §3.4) received on ``lo`` and, for a DHCPINFORM,
  replies to the packet's source address and port, so a probe needs no broadcast-capable
  interface, no network namespace and no privileged client port 68.
- It really handles option 81 in that reply: it echoes the client FQDN option (RFC 4702)
  with its flags, S set when it performs the name registration itself, or O and N set when
  told to leave updates to the client (``dhcp-client-update``). Kea 2.2 and ISC dhcpd only
  process option 81 when they commit a lease; their DHCPACK to a DHCPINFORM carries none.
- Limit (documented, not hidden): dnsmasq registers names in its own DNS, it does not send
  RFC 2136 updates to the domain controller. The guide's check is that the DHCP server
  supports option 81, which the echoed option shows; registration in the DC's zone is a
  separate DNS check.

dnsmasq echoes the name the client sent in option 81 (it has no lease for a DHCPINFORM),
so the server needs no per-client table.

Ports: the lab binds UDP ``port`` (67 for the one background lab; tests pass 0 to get a free
one, so several labs can run side by side: dnsmasq binds the DHCP socket to the wildcard
address, and its ``dhcp-alternate-port`` moves it). Only loopback is used.

Fault knobs (data): ``option6=False`` (no DNS servers), ``option15=False`` (no domain name),
``option81="no-updates"`` (reply flags O and N, S cleared: the server will not register the
client in DNS, RFC 4702 §2.1). dnsmasq cannot be made to drop option 81 from its reply
altogether, so "server without option 81 support" is modelled by the N flag only.
"""
from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from pytest_vpro.process import ChildProcess

OPTION81_MODES = ("honoured", "no-updates")


class DhcpServerError(RuntimeError):
    """dnsmasq could not be started or did not come up in time."""


def free_udp_port() -> int:
    """A UDP port nobody holds right now (small race, acceptable for the lab)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


def _udp_port_bound(port: int) -> bool:
    """True once some socket is bound to UDP ``port`` (reads /proc/net/udp, no traffic)."""
    wanted = f":{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1].endswith(wanted) for line in lines if len(line.split()) > 1)


class LabDHCP(ChildProcess):
    """A dnsmasq DHCP server for the lab network, answering on ``address:port``."""

    def __init__(self, state_dir: Path, *, address: str, network: str,
                 dns_servers: Sequence[str], domain: str = "vprolab.test",
                 port: int = 67,
                 option6: bool = True, option15: bool = True, option81: str = "honoured",
                 binary: str = "dnsmasq", start_timeout: float = 5.0) -> None:
        if option81 not in OPTION81_MODES:
            raise ValueError(f"option81 must be one of {OPTION81_MODES}, not {option81!r}")
        self.state_dir = Path(state_dir)
        self.address = address
        self.network = ipaddress.IPv4Network(network)
        self.dns_servers = list(dns_servers)
        self.domain = domain
        self.requested_port = port
        self.port = port
        self.option6, self.option15, self.option81 = option6, option15, option81
        self.binary = binary
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------ files
    @property
    def conf_path(self) -> Path:
        return self.state_dir / "dnsmasq.conf"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "dnsmasq.log"

    def render_config(self) -> str:
        """The dnsmasq configuration for the current settings and faults."""
        net = self.network
        client_port = 68 if self.port == 67 else self.port + 1
        lines = [
            "# written by pytest_vpro.lab.dhcp; DHCP only, DNS disabled",
            "port=0",
            "no-hosts", "no-resolv", "keep-in-foreground", "bind-interfaces",
            "interface=lo",
            f"user={pwd.getpwuid(os.geteuid()).pw_name}",
            f"pid-file={self.state_dir / 'dnsmasq.pid'}",
            f"dhcp-leasefile={self.state_dir / 'dnsmasq.leases'}",
            f"log-facility={self.log_path}",
            "log-dhcp",
            f"dhcp-alternate-port={self.port},{client_port}",
            # static: no dynamic pool; DHCPINFORM only needs the subnet to be known
            f"dhcp-range={net.network_address},static,{net.netmask}",
            "dhcp-authoritative",
        ]
        if self.option6:
            lines.append("dhcp-option=option:dns-server," + ",".join(self.dns_servers))
        if self.option15:
            lines.append(f"domain={self.domain}")
        if self.option81 == "no-updates":
            lines.append("dhcp-client-update")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LabDHCP":
        if self._proc is not None:
            return self
        exe = shutil.which(self.binary)
        if exe is None:
            raise DhcpServerError(f"{self.binary} not found (Debian package 'dnsmasq')")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.requested_port or free_udp_port()
        self.conf_path.write_text(self.render_config())
        self._proc = subprocess.Popen([exe, f"--conf-file={self.conf_path}"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise DhcpServerError(f"dnsmasq exited at start: {err.strip()}")
            if _udp_port_bound(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise DhcpServerError(f"dnsmasq did not bind UDP {self.port} within {self.start_timeout}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()

    def __enter__(self) -> "LabDHCP":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
