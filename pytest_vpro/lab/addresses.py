"""The lab's address plan: every lab host gets its own loopback address.

Linux routes all of 127.0.0.0/8 to ``lo``, so each simulated host can bind the
well-known ports it would have on a real network (53, 88, 389, 16992, ...) on
an address of its own, with no root-only tricks and no traffic leaving the
machine. A lab is placed in ``127.<net>.0.0/16``; two labs (a background
``vpro-lab up`` and a test's private lab) only need different ``net`` numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NET = 77  # 127.77.0.0/16
MAX_CLIENTS = 250 * 200  # 127.N.1.1 .. 127.N.200.250


@dataclass(frozen=True)
class AddressPlan:
    net: int = DEFAULT_NET

    def _addr(self, third: int, fourth: int) -> str:
        return f"127.{self.net}.{third}.{fourth}"

    @property
    def dc(self) -> str:           # Samba AD DC: LDAP, LDAPS, Kerberos, DNS, SMB
        return self._addr(0, 10)

    @property
    def site_server(self) -> str:  # site server simulator: WinRM, out of band service point (9971)
        return self._addr(0, 11)

    @property
    def dhcp(self) -> str:         # DHCP server
        return self._addr(0, 12)

    @property
    def ca(self) -> str:           # PKI: CRL and AIA over HTTP
        return self._addr(0, 13)

    @property
    def console(self) -> str:      # the out of band console host
        return self._addr(0, 14)

    def client(self, index: int) -> str:
        """Address of client ``index`` (0-based)."""
        if not 0 <= index < MAX_CLIENTS:
            raise ValueError(f"client index {index} outside 0..{MAX_CLIENTS - 1}")
        return self._addr(1 + index // 250, 1 + index % 250)

    def wireless(self, index: int) -> str:
        """The wireless address of laptop client ``index`` (127.<net>.201+.x)."""
        return self._addr(201 + index // 250, 1 + index % 250)

    @property
    def network(self) -> str:
        return f"127.{self.net}.0.0/16"
