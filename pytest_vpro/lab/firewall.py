"""A firewall that drops: lab endpoints whose TCP SYNs go unanswered, as behind a filtering firewall.

A network firewall (or Windows Firewall) that blocks a port drops the client's SYN: the client hears nothing and
its connect times out (the ``filtered`` verdict of :mod:`pytest_vpro.probes.net`), where a closed port answers with
a reset (``refused``). On loopback there is nobody to drop packets, and the lab does not touch the host's packet
filter (iptables/nftables). Linux itself drops a SYN when the listening socket's accept queue is full
(``tcp_conn_request``: ``LINUX_MIB_LISTENOVERFLOWS``, with ``net.ipv4.tcp_abort_on_overflow`` 0, the default):
so each dropped endpoint is a socket listening with a backlog of 0 whose one queue slot is taken by a connection
the lab makes itself and never accepts. Every later SYN to that address and port is dropped, and nothing is ever
read or answered.

This module knows nothing of pytest.
"""
from __future__ import annotations

import socket
import time


class DroppingFirewall:
    """Drop every SYN to each ``(address, port)`` in ``endpoints`` until :meth:`stop`."""

    def __init__(self, endpoints: list[tuple[str, int]]):
        self.endpoints = list(dict.fromkeys((str(a), int(p)) for a, p in endpoints))
        self._sockets: list[socket.socket] = []

    def start(self, settle_s: float = 2.0) -> "DroppingFirewall":
        fillers = []
        for address, port in self.endpoints:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((address, port))
            listener.listen(0)  # an accept queue of one connection
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex((address, port))
            self._sockets += [listener, filler]
            fillers.append(filler)
        deadline = time.monotonic() + settle_s  # the queue is full once each filler's handshake completed
        for filler in fillers:
            while filler.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and time.monotonic() < deadline:
                try:
                    filler.getpeername()
                    break
                except OSError:
                    time.sleep(0.01)
        return self

    def stop(self) -> None:
        while self._sockets:
            self._sockets.pop().close()
