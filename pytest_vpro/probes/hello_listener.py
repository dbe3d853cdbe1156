"""A passive hello listener on TCP 9971: which clients are sending hello packets, and what they say.

The guide, Stage 2: "verify the Intel AMT client is sending 'hello' messages (use a network packet capture tool to
monitor the network ...)". This module is that capture for a run: a plain TCP listener at an address the devices
send their hellos to (ProvisionServer pointed at a diagnostic host, or the lab's console address), decoding every
hello with :mod:`pytest_vpro.probes.hello`. It never answers a device: it reads the packet and closes, as the out
of band service point does before it starts provisioning, so nothing is provisioned by it.

It is OPT-IN: ``pytest --hello-listen ADDR:PORT [--hello-wait SECONDS]`` (default wait 60 s). Without the option
the hello checks judge from AMTOPMGR.LOG instead. The controller process binds the listener when the run starts
(before a lab it starts,
so the first hellos are heard) and appends each hello, as received, to ``<run dir>/hellos.jsonl``; xdist workers
read that file (:class:`HelloCapture` in ``read`` mode), so only one process ever binds the port. The first line of
the file says where the listener listens, since when and for how long checks wait:

    {"listening": "127.77.0.14:9971", "started": 1764000000.0, "wait_s": 60}
    {"peer": "127.77.1.3", "at": 1764000003.2, "data": "0100030000000000..."}

A check asks :meth:`HelloCapture.seen` for one client (by UUID or by the address the hello came from); it returns
as soon as a hello from that client is there, or at ``started + wait_s`` with what arrived (so a run waits at most
``wait_s`` for all its silent clients together, not per client). Only packets that decode as a hello (version,
UUID, hash list or PID) count: whatever else a client's address sent (an HTTP request, garbage, a packet cut short)
is evidence, from :meth:`HelloCapture.malformed`, never a hello.

The listener is exposed to whatever can reach its port, so it is bounded: at most :data:`MAX_CONNECTIONS` senders
at once (more are closed at once), each connection read within :data:`READ_TIMEOUT_S` in all (a trickling sender is
cut there), at most :data:`MAX_PER_PEER` packets kept per sender address and :data:`MAX_SPOOL_BYTES` of spool in
all; what is not kept is counted (:attr:`HelloCapture.dropped`, :attr:`HelloCapture.refused`).
"""
from __future__ import annotations

import datetime as dt
import json
import socketserver
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ProbeError
from .hello import HASH_TYPES, Hello, MalformedHello, decode_hello, receive_hello

DEFAULT_WAIT_S = 60.0
SPOOL_NAME = "hellos.jsonl"
READ_TIMEOUT_S = 5.0       # one connection, from accept to the last byte
MAX_CONNECTIONS = 64       # senders read at once; AMT sends one hello per connection and closes it
MAX_PER_PEER = 32          # packets kept per sender address (a device retries up to 14 times)
MAX_SPOOL_BYTES = 32 * 1024 * 1024
MALFORMED_KEPT_BYTES = 256  # of a packet that is not a hello, only its start is kept as evidence


def parse_address(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (IPv4 address or host name) as ``(address, port)``; ValueError with what is wrong."""
    host, sep, port = (text or "").strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not ADDR:PORT (e.g. 127.77.0.14:9971)")
    return host, int(port)


@dataclass(frozen=True)
class SeenHello:
    """One packet as received: who sent it, when (epoch seconds), and the decoded hello or why it is not one."""

    peer: str
    at: float
    hello: Hello | None
    problem: str | None = None
    raw: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def decode(cls, peer: str, at: float, data: bytes) -> "SeenHello":
        try:
            return cls(peer, at, decode_hello(data), raw=data)
        except MalformedHello as exc:
            return cls(peer, at, None, str(exc), raw=data)

    def summary(self) -> dict:
        """Evidence: UUID, PKI/PSK, retry count and hashes (or the decoding problem)."""
        received = dt.datetime.fromtimestamp(self.at, dt.timezone.utc).isoformat(timespec="seconds")
        out: dict[str, Any] = {"from": self.peer, "received": received}
        if self.hello is None:
            return {**out, "malformed": self.problem}
        h = self.hello
        out.update({"uuid": str(h.uuid), "mode": h.mode, "version": h.version, "retry_count": h.retry_count,
                    "admin_credentials_set": h.admin_credentials_set})
        if h.pid is not None:
            out["pid"] = h.pid.hex()
        else:
            out["hashes"] = [{"type": HASH_TYPES.get(t, (f"type {t}",))[0], "hash": d.hex()} for t, d in h.hashes]
        return out


def _matches(seen: SeenHello, device_uuid: str | None, address: str | None) -> bool:
    """A hello (decoded) from the client with ``device_uuid``, or, without a usable UUID, sent from ``address``."""
    if seen.hello is None:
        return False
    if device_uuid:
        try:
            return seen.hello.uuid == uuidlib.UUID(str(device_uuid))
        except ValueError:
            pass
    return bool(address) and seen.peer == address


class HelloCapture:
    """The run's hellos: ``listen`` mode binds ``address:port`` (the controller); ``read`` mode follows the spool
    file another process writes (an xdist worker)."""

    def __init__(self, address: str, port: int, *, wait_s: float = DEFAULT_WAIT_S, spool: Path | None = None,
                 listen: bool = True) -> None:
        self.address, self.port, self.wait_s = address, int(port), float(wait_s)
        self.spool, self.listening = (Path(spool) if spool else None), listen
        self.started = time.time()
        self._seen: list[SeenHello] = []
        self._cond = threading.Condition()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self._read_offset = 0
        self._per_peer: dict[str, int] = {}
        self._spooled = 0
        self.dropped = 0   # packets received and not kept (a sender over MAX_PER_PEER, the spool full)
        self.refused = 0   # connections closed unread (more than MAX_CONNECTIONS at once)

    def __repr__(self) -> str:
        return f"HelloCapture({self.where}, {'listening' if self.listening else 'reading'}, wait {self.wait_s:g} s)"

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def deadline(self) -> float:
        return self.started + self.wait_s

    # ------------------------------------------------------------------ listen mode
    def start(self) -> "HelloCapture":
        """Bind and serve in a thread; an OSError (address in use, not local) says which address failed."""
        capture = self

        slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    capture._received(self.client_address[0], time.time(),
                                      receive_hello(self.request, READ_TIMEOUT_S))
                finally:
                    slots.release()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

            def process_request(self, request, client_address) -> None:
                if not slots.acquire(blocking=False):  # a flood of connections: close the newest at once
                    capture.refused += 1
                    self.shutdown_request(request)
                    return
                super().process_request(request, client_address)

        self._server = Server((self.address, self.port), Handler)
        self.port = self._server.server_address[1]  # port 0: the one the system chose
        self.started = time.time()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"hello-listener-{self.where}", daemon=True)
        self._thread.start()
        if self.spool is not None:
            self.set_spool(self.spool)
        return self

    def set_spool(self, path: Path) -> None:
        """Name the spool file. Listening: write it (the header, then every hello already received); reading:
        follow it."""
        with self._cond:
            self.spool = Path(path)
            if not self.listening:
                return
            lines = [json.dumps({"listening": self.where, "started": self.started, "wait_s": self.wait_s})]
            lines += [json.dumps(self._record(s)) for s in self._seen]
            self.spool.write_text("\n".join(lines) + "\n")

    @staticmethod
    def _record(s: SeenHello) -> dict:
        return {"peer": s.peer, "at": s.at, "data": s.raw.hex()}

    def _received(self, peer: str, at: float, data: bytes) -> None:
        seen = SeenHello.decode(peer, at, data)
        if seen.hello is None:  # evidence only: its start is enough to say what it was
            seen = SeenHello(peer, at, None, seen.problem, data[:MALFORMED_KEPT_BYTES])
        line = json.dumps(self._record(seen)) + "\n"
        with self._cond:
            kept = self._per_peer.get(peer, 0)
            if kept >= MAX_PER_PEER or self._spooled + len(line) > MAX_SPOOL_BYTES:
                self.dropped += 1
                return
            self._per_peer[peer] = kept + 1
            self._spooled += len(line)
            self._seen.append(seen)
            if self.spool is not None:
                with self.spool.open("a") as fh:
                    fh.write(line)
            self._cond.notify_all()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # ------------------------------------------------------------------ read mode
    def _follow(self) -> None:
        """Read what the listening process appended to the spool since the last call."""
        if self.spool is None or not self.spool.exists():
            return
        with self.spool.open("rb") as fh:
            fh.seek(self._read_offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self._read_offset += end + 1
        for raw in chunk[:end].splitlines():
            try:
                row = json.loads(raw)
            except ValueError:
                continue
            if "listening" in row:
                self.started, self.wait_s = float(row["started"]), float(row["wait_s"])
                continue
            try:
                self._seen.append(SeenHello.decode(str(row["peer"]), float(row["at"]), bytes.fromhex(row["data"])))
            except (KeyError, TypeError, ValueError):
                continue

    # ------------------------------------------------------------------ what checks ask
    def all(self) -> list[SeenHello]:
        with self._cond:
            if not self.listening:
                self._follow()
            return list(self._seen)

    def seen(self, device_uuid: str | None = None, address: str | None = None, *, wait: bool = True
             ) -> list[SeenHello]:
        """Hellos (packets that decode as one) from the client with ``device_uuid`` (or sent from ``address``),
        oldest first; with ``wait``, waits until there is one or the capture's deadline passes. What else that
        address sent is :meth:`malformed`."""
        if not self.listening and (self.spool is None or not self.spool.exists()):
            raise ProbeError(f"the hello listener on {self.where} is not running (no {SPOOL_NAME} from the "
                             "controller)")
        while True:
            with self._cond:
                if not self.listening:
                    self._follow()
                found = [s for s in self._seen if _matches(s, device_uuid, address)]
                left = self.deadline - time.time()
                if found or not wait or left <= 0:
                    return found
                if self.listening:
                    self._cond.wait(min(left, 1.0))
                    continue
            time.sleep(min(left, 0.2))


    def malformed(self, address: str | None) -> list[SeenHello]:
        """Packets from ``address`` that are not hellos (each with why), oldest first: evidence, never a hello."""
        if not address:
            return []
        with self._cond:
            if not self.listening:
                self._follow()
            return [s for s in self._seen if s.hello is None and s.peer == address]


def for_run(option: str | None, wait_s: float, *, listen: bool) -> HelloCapture | None:
    """The run's capture for ``--hello-listen ADDR:PORT``: bound and listening in the controller (``listen``), a
    reader of the controller's spool file in an xdist worker; None without the option. The caller names the
    spool file with :meth:`HelloCapture.set_spool` once the run folder exists. ValueError says what failed."""
    if not option:
        return None
    address, port = parse_address(option)
    capture = HelloCapture(address, port, wait_s=wait_s, listen=listen)
    if listen:
        try:
            capture.start()
        except OSError as exc:
            raise ValueError(f"cannot listen for hellos on {address}:{port}: {exc.strerror or exc}") from None
    return capture


__all__ = ["HelloCapture", "SeenHello", "parse_address", "for_run", "DEFAULT_WAIT_S", "SPOOL_NAME"]
