"""A simulated AMT device's hellos to the provisioning server (docs/protocols.md, "The hello packet"), and
a small TCP 9971 listener for tests.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import socketserver
import threading

from pytest_vpro.probes.hello import (
    VERSION_PKI,
    VERSION_PSK,
    Hello,
    MalformedHello,
    encode_hello,
    hello_or_error,
    receive_hello,
)

from .amt_device import HELLO_PORT, Device

log = logging.getLogger(__name__)

def hello_for(device: Device, retry_count: int) -> bytes:
    """The hello this device sends now (docs/protocols.md, "The hello packet")."""
    s = device.spec
    if s.hello_mode.upper() == "PSK":
        pid = (s.pid.encode() + b"\0" * 8)[:8] if s.pid else hashlib.sha256(s.uuid.encode()).digest()[:8]
        return encode_hello(s.uuid, version=VERSION_PSK, retry_count=retry_count, pid=pid)
    hashes = [(t, d) for t, _n, d, enabled, _def in s.hashes if enabled]
    return encode_hello(s.uuid, version=VERSION_PKI, retry_count=retry_count, hashes=hashes)


def hello_delay(interval: float, retry: int) -> float:
    """Less and less often: interval, 2x, 4x ... capped at 64x (real AMT spreads 15 hellos over ~6 h)."""
    return interval * (2 ** min(retry, 6))


async def hello_loop(device: Device, timeout: float = 3.0) -> None:
    """While pre-provisioned, send up to ``hello_max_retries`` hellos to ``provision_server``."""
    assert device.hello_wakeup is not None
    while True:
        s = device.spec
        if s.provisioning_state != 0 or not s.send_hellos or not s.provision_server \
                or device.hellos_sent >= s.hello_max_retries:
            device.hello_wakeup.clear()
            await device.hello_wakeup.wait()
            continue
        retry = device.hellos_sent
        device.hellos_sent += 1
        try:
            _r, w = await asyncio.wait_for(asyncio.open_connection(*s.provision_server,
                                                                    local_addr=(s.address, 0)), timeout)
            w.write(hello_for(device, retry))
            await asyncio.wait_for(w.drain(), timeout)
            w.close()
            await asyncio.wait_for(w.wait_closed(), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            log.debug("hello from %s to %s failed: %s", s.fqdn, s.provision_server, exc)
        device.hello_wakeup.clear()
        try:
            await asyncio.wait_for(device.hello_wakeup.wait(), hello_delay(s.hello_interval, retry))
        except asyncio.TimeoutError:
            pass


class HelloListener:
    """A tiny TCP 9971 receiver that decodes hellos (for tests; the site server simulator has its own).

    ``received`` holds ``(peer_address, Hello | MalformedHello)`` in arrival order.
    """

    def __init__(self, address: str, port: int = HELLO_PORT, *, read_timeout: float = 5.0):
        listener = self
        self.received: list[tuple[str, Hello | MalformedHello]] = []
        self._cond = threading.Condition()

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                item = hello_or_error(receive_hello(self.request, read_timeout))
                with listener._cond:
                    listener.received.append((self.client_address[0], item))
                    listener._cond.notify_all()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server((address, port), Handler)
        self.address, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"hello-listener-{address}", daemon=True)

    def start(self) -> "HelloListener":
        self._thread.start()
        return self

    def wait(self, count: int, timeout: float) -> list[tuple[str, Hello | MalformedHello]]:
        """Wait until ``count`` hellos arrived (or ``timeout`` s passed); return what arrived."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> "HelloListener":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
