"""Simulated Intel AMT devices served from one event loop: the runner.

The device model is :mod:`.amt_device`; hellos :mod:`.amt_hello`; redirection and the WebUI
:mod:`.amt_redirection`.

Run as a process: ``python -m pytest_vpro.lab.amt_sim --spec estate.json`` (JSON or YAML:
``{"devices": [DeviceSpec fields...]}``); or in a thread with ``AmtSimulator(...).start()``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from pytest_vpro.lab.service import BackgroundService, serve_as_process
from pytest_vpro.lab.wsman_server import (
    DigestAuthenticator,
    NegotiateAcceptor,
    WsmanEndpoint,
    WsmanServer,
    server_ssl_context,
)

from .amt_device import (
    HTTP_PORT,
    HTTPS_PORT,
    POWER_SCHEMES,
    REDIRECTION_TLS_PORT,
    Device,
    PowerScheme,
    scheme_by,
)
from .amt_hello import HelloListener, hello_delay, hello_for, hello_loop
from .amt_redirection import RedirectionSession, WebUI
from .amt_spec import AclEntry, DeviceSpec

# What the lab and its tests import from here.
__all__ = ["POWER_SCHEMES", "AclEntry", "AmtSimulator", "Device", "DeviceSpec", "HelloListener", "PowerScheme",
           "hello_delay", "hello_for", "load_specs", "scheme_by", "spec_to_dict"]

class AmtSimulator(BackgroundService):
    """Serves every device in ``specs`` from one event loop (in a thread, or in this process's main loop)."""

    thread_name = "amt-sim"
    start_timeout = 120.0

    def __init__(self, specs: list[DeviceSpec], *, state_file: str | Path | None = None,
                 http_port: int = HTTP_PORT, https_port: int = HTTPS_PORT):
        self.state_file = Path(state_file) if state_file else None
        self.http_port, self.https_port = http_port, https_port
        self.calls: list[dict[str, Any]] = []
        self._calls_lock = threading.Lock()
        self.devices: dict[str, Device] = {s.fqdn: Device(s, self._record) for s in specs}
        self.server: WsmanServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._redirection: list[asyncio.AbstractServer] = []
        self.redirection_port = REDIRECTION_TLS_PORT
        self.start_seconds = 0.0

    def _record(self, call: dict[str, Any]) -> None:
        with self._calls_lock:
            self.calls.append(call)
            if self.state_file is not None:
                with self.state_file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(call, default=str) + "\n")

    def by_address(self, address: str) -> Device:
        return next(d for d in self.devices.values() if d.spec.address == address)

    # -- inside the loop --
    async def start_async(self) -> None:
        t0 = time.perf_counter()
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self.server = WsmanServer()
        for dev in self.devices.values():
            self._add_device(dev)
        await self.server.start()
        for dev in self.devices.values():
            await self._start_redirection(dev)
        for dev in self.devices.values():
            dev.hello_wakeup = asyncio.Event()
            self._tasks.append(asyncio.create_task(hello_loop(dev), name=f"hello-{dev.spec.fqdn}"))
        self.start_seconds = time.perf_counter() - t0

    def _add_device(self, dev: Device) -> None:
        s = dev.spec
        digest = DigestAuthenticator(dev.realm, {s.digest_user: s.digest_password})
        if s.digest_also_accepts:
            digest.also_accept(s.digest_user, s.digest_also_accepts)

        def endpoint(port: int) -> WsmanEndpoint:
            negotiate = None
            spn = f"HTTP/{s.fqdn}:{port}"
            if s.kerberos_keytab and s.kerberos_realm and (not s.kerberos_spns or spn in s.kerberos_spns):
                negotiate = NegotiateAcceptor(s.kerberos_keytab, f"{spn}@{s.kerberos_realm}",
                                              max_token_bytes=s.max_token_bytes)
            return WsmanEndpoint(dev, digest=digest, negotiate=negotiate,
                                 server_header=f"Intel(R) Active Management Technology {s.amt_version}",
                                 latency_s=s.latency_ms / 1000, enabled=s.has_wsman, reachable=dev.answers_wsman,
                                 web=WebUI(dev) if port == self.https_port else None)

        assert self.server is not None
        for address in filter(None, (s.address, s.wireless_address)):  # a laptop answers on both ports
            self.server.add(address, self.http_port, endpoint(self.http_port))
            if s.tls_cert and s.tls_key:
                self.server.add(address, self.https_port, endpoint(self.https_port),
                                server_ssl_context(s.tls_cert, s.tls_key, s.tls_profile))

    async def _start_redirection(self, dev: Device) -> None:
        """The redirection listener (SOL/IDER, TLS on 16995) of a provisioned device whose
        ``AMT_RedirectionService.ListenerEnabled`` is true: :class:`RedirectionSession` per connection (a
        connection that sends nothing is closed after 10 s)."""
        s = dev.spec
        if not (s.redirection_listener and s.tls_cert and s.tls_key and s.provisioning_state == 2):
            return
        negotiate = None
        if s.kerberos_keytab and s.kerberos_realm and s.kerberos_enabled:
            negotiate = NegotiateAcceptor(s.kerberos_keytab, f"HTTP/{s.fqdn}:{self.https_port}@{s.kerberos_realm}",
                                          max_token_bytes=s.max_token_bytes)

        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await RedirectionSession(dev, writer, negotiate).run(reader)

        self._redirection.append(await asyncio.start_server(
            session, s.address, self.redirection_port, ssl=server_ssl_context(s.tls_cert, s.tls_key, s.tls_profile),
            reuse_address=True))

    def set_latency(self, fqdn: str, latency_ms: float) -> None:
        """Change a device's per-call latency at run time."""
        dev = self.devices[fqdn]
        dev.spec.latency_ms = latency_ms
        assert self.server is not None
        for port in (self.http_port, self.https_port):
            try:
                self.server.endpoint(dev.spec.address, port).latency_s = latency_ms / 1000
            except KeyError:
                pass

    async def stop_async(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for server in self._redirection:
            server.close()
        self._redirection = []
        if self.server is not None:
            await self.server.stop()



def load_specs(path: str | Path) -> list[DeviceSpec]:
    """Read ``{"devices": [...]}`` (or a bare list) from a JSON or YAML estate file."""
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith((".yaml", ".yml")):
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    items = data["devices"] if isinstance(data, dict) else data
    return [DeviceSpec.from_dict(d) for d in items]


def spec_to_dict(spec: DeviceSpec) -> dict[str, Any]:
    """JSON-ready form of a spec (hash digests as hex); the inverse of :meth:`DeviceSpec.from_dict`."""
    d = asdict(spec)
    d["hashes"] = [(t, n, dg.hex(), e, f) for t, n, dg, e, f in spec.hashes]
    return d


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_vpro.lab.amt_sim", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="estate file (JSON or YAML) listing the devices")
    parser.add_argument("--state-file", help="append every state-changing call to this JSONL file")
    parser.add_argument("--http-port", type=int, default=HTTP_PORT)
    parser.add_argument("--https-port", type=int, default=HTTPS_PORT)
    args = parser.parse_args(argv)
    sim = AmtSimulator(load_specs(args.spec), state_file=args.state_file,
                       http_port=args.http_port, https_port=args.https_port)
    return serve_as_process(sim, lambda: f"READY {len(sim.devices)} devices in {sim.start_seconds:.2f} s")


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DeviceSpec", "AclEntry", "Device", "AmtSimulator", "HelloListener", "PowerScheme", "POWER_SCHEMES",
           "scheme_by", "load_specs", "spec_to_dict", "hello_for", "hello_delay"]
