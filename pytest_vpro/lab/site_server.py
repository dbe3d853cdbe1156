"""A simulated Configuration Manager 2007 site server: WinRM/WMI, the out of band service point, AMTOPMGR.LOG.

This module is the simulator; beside it, :mod:`.site_spec` (the names, documented and unconfirmed, and the
specification the lab plants), :mod:`.site_provider` (the WMI provider), :mod:`.winrm_server` (Basic
authentication and WMI around the WS-MAN core) and :mod:`.wql` (the WQL subset).

What it serves (docs/lab.md; the guide's Stages 1-3 and 7):

* **WinRM** on ``address:5985`` (http) and ``address:5986`` (https, with the spec's certificate), path ``/wsman``,
  on the WS-MAN core of :mod:`pytest_vpro.lab.wsman_server`: the WMI classes the checks read, in
  ``root/cimv2``, ``root/sms``, ``root/sms/site_<CODE>`` and ``root/default`` (``StdRegProv``), Enumerate with the
  WQL filter dialect (a small WQL subset: ``SELECT props|* FROM Class [WHERE ...]`` with ``= <> != < > <= >=``,
  ``LIKE``, ``IS [NOT] NULL``, ``AND``/``OR``/``NOT``, parentheses), Get by key properties, and the read-only
  ``StdRegProv`` methods. Authentication as WinRM offers it: ``Negotiate`` (Kerberos, SPN ``HTTP/<fqdn>``, the
  core's :class:`NegotiateAcceptor` over the spec's keytab) and HTTP ``Basic`` over https (over http only with
  ``allow_unencrypted``, WinRM's ``AllowUnencrypted``). The core has no Basic hook, so :class:`WinrmServer`
  subclasses :class:`WsmanServer` for it, and to serialize WMI embedded objects (``SMS_SCI_Component.Props``).
* **Out of band service point** on ``address:9971``: decodes each hello (:mod:`pytest_vpro.probes.hello`) and
  appends the "hello received" line to ``<log_dir>/AMTOPMGR.LOG`` (SMS format, :mod:`pytest_vpro.lab.cmlog`).
  The lab sets ``log_dir`` to the ``Logs`` folder of the directory Samba shares as ``SMS_<CODE>``.
* **History**: at start, on an empty log, the lines a real log would already hold for provisioned clients
  (hello or ZTC request, provisioning started, first and second stage completed), stamped in the past; the
  ``history_rolled_over`` earliest clients were provisioned before the log last rolled over, so their lines are
  only in ``AMTOPMGR.lo_`` (a real site's log keeps one history file). Past ``log_max_bytes`` the log rolls over
  as it grows. A provisioning certificate near or past its end gets the lines real logs show for it.
* **SMS_R_System.AMTStatus** as the site sets it: null (unknown) until it knows a client's AMT (a hello from the
  imported client, an in-band ZTC request), then 2 (not provisioned), 3 once provisioned; the in-band agents'
  hardware inventory in ``SMS_G_System_AMT_AGENT`` (ProvisionState 0 or 2).
* **Out of band operations** through the SMS Provider's documented methods (docs/protocols.md, "Out of band
  operations"): ``SMS_Collection.AMTOperateForMachines(ResourceIDs[], Opcode)`` (a class method) and
  ``AMTOperateForCollection(Opcode)`` (on a collection instance). The provider checks that the caller holds
  "Manage management controllers" on the class or on a collection holding each resource (else the WMI access
  denied error, ``WBEM_E_ACCESS_DENIED``), queues the operation and returns 0; the out of band service point's
  worker then performs it against the devices through the pluggable hooks: WakeUp/Restart/Shutdown as a
  ``RequestPowerStateChange`` on the device, DiscoveryBMC as a read of its ``ProvisioningState`` (which sets
  ``AMTStatus``), Partial/FullUnprovision in the order the real site server works (WS-MAN ``Unprovision`` on the
  device, revoke the web server certificate and publish the CRL, delete the AD object), with the
  un-provisioning lines in the log. Every call is appended to the JSONL ``calls`` file; reads are never
  recorded, so an empty calls file proves a read-only run. With the service point stopped
  (``oob_service_point_running`` false) calls are accepted and queued and nothing happens, as on a real site.
* **Registry** through ``StdRegProv``; on a 64-bit server (``os_architecture``) Configuration Manager's keys
  are where a 32-bit program's writes land, ``HKLM\\SOFTWARE\\Wow6432Node\\Microsoft\\SMS\\...``.

Lab simplifications: the hello does not start a provisioning run (provisioned clients are data), nor does an
un-provisioned client in an auto-provisioning collection get provisioned again; WinRM accepts plaintext SOAP
after Negotiate on http (real WinRM wraps it in SPNEGO message encryption); group membership for the SMS
permissions comes from the spec (``memberships``), not from the caller's token; a stopped service point still
logs hellos (only the operations queue stops); ``Identify`` is not served (the core needs an Action header).

Every name no public source confirms is in :data:`UNCONFIRMED` (and the texts in ``lab/cmlog.py``).

Run as a process: ``python -m pytest_vpro.lab.site_server --spec site.json [--calls calls.jsonl]``; it prints one
``READY ...`` line and stops cleanly on SIGTERM/SIGINT. In-process: ``SiteServerSimulator(spec).start()``/``stop()``.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import logging
import queue
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_vpro.lab.cmlog import CmLogWriter
from pytest_vpro.lab.service import BackgroundService, serve_as_process
from pytest_vpro.probes.hello import MAX_HELLO_BYTES, Hello, MalformedHello, hello_or_error

from .site_provider import HOOK_ORDER, HOOKS, Hook, SiteServerProvider
from .site_spec import (
    AMT_STATUS,
    APPENDIX_A,
    CERT_WARNING_DAYS,
    CERTIFICATE_EXPIRING,
    CERTIFICATE_UNLOADED,
    IPSEC_GPO_KEY,
    KB908209_KEY,
    LOG_NAME,
    MANAGE_RIGHT,
    NETWORK_DISCOVERY,
    OOB_PROP_LISTS,
    OOB_PROPS,
    OOB_SP2_PROPS,
    OPCODE_NAMES,
    OPCODES,
    OPERATE_FOR_COLLECTION,
    OPERATE_FOR_MACHINES,
    POWER_REQUESTS,
    SMS_COLLECTION,
    SMS_OBJECT_COLLECTION,
    SMS_PERMISSIONS,
    THREADS,
    UNCONFIRMED,
    WBEM_E_ACCESS_DENIED,
    WINRM_STACK_KEY,
    WOW64_SOFTWARE,
    ClientRecord,
    SiteServerSpec,
    applicable_hotfixes,
)
from .winrm_server import BasicAuthenticator, WinrmServer
from .wql import WqlError, parse_wql

log = logging.getLogger(__name__)


# --- the simulator ------------------------------------------------------------------------------------------------
def _resolve(path: str) -> Hook:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class AmtOpmgrLog:
    """The site's AMTOPMGR.LOG as the simulator writes it: the history a real log already holds at start, the
    provisioning certificate's warnings, and one line per event (:data:`THREADS` names the worker)."""

    spec: SiteServerSpec
    log: CmLogWriter | None

    def _event(self, event: str, client: ClientRecord | None = None, *, when: dt.datetime | None = None,
               thread: str = "provision", **fields: Any) -> None:
        if self.log is None:
            return
        if client is not None:
            fields = {"fqdn": client.fqdn, "uuid": client.uuid, "ip": client.address,
                      "mode": client.provisioning_mode, **fields}
        self.log.event(event, when=when, thread=THREADS[thread], **fields)

    def write_history(self) -> None:
        """On an empty log: the lines a real log already holds: the component accepting its provisioning
        certificate, every provisioned client's provisioning, and the ZTC requests of in-band clients awaiting
        provisioning (the lab's site server does not provision them)."""
        if self.log is None or (self.log.path.exists() and self.log.path.stat().st_size > 0):
            return
        base = dt.datetime.now().astimezone() - dt.timedelta(seconds=self.spec.history_age_s)
        rows = []
        provisioned = [c for c in self.spec.clients if c.provisioned]
        rolled = {c.fqdn for c in provisioned[:max(0, self.spec.history_rolled_over)]}
        for i, c in enumerate(self.spec.clients):
            if not c.provisioned:
                if c.client and c.ztc_requested:
                    rows.append((base + dt.timedelta(minutes=5 * i), "ztc_request", "hello", c, {}))
                continue
            t0 = dt.datetime.fromisoformat(c.provisioned_at).astimezone() if c.provisioned_at \
                else base + dt.timedelta(minutes=5 * i) - dt.timedelta(days=30 if c.fqdn in rolled else 0)
            first = ("ztc_request", {}) if c.client else ("hello_received", {"retry": 0})
            steps = [(first[0], 0, "hello", first[1]), ("provisioning_started", 2, "provision", {}),
                     ("first_stage_completed", 15, "provision", {}), ("second_stage_completed", 40, "provision", {})]
            rows += [(t0 + dt.timedelta(seconds=s), ev, th, c, extra) for ev, s, th, extra in steps]
        rows.sort(key=lambda r: r[0])
        if self.spec.provisioning_certificate_cn:  # configured before any client was provisioned
            self.log.event("provisioning_certificate_accepted",
                           when=(rows[0][0] if rows else base) - dt.timedelta(minutes=10),
                           thread=THREADS["provision"], fqdn=self.spec.provisioning_certificate_cn,
                           thumbprint=self.spec.oob.get("provisioning_certificate_thumbprint", "").upper())
        last_rolled = max((n for n, r in enumerate(rows) if r[3].fqdn in rolled), default=-1)
        for n, (when, ev, th, c, extra) in enumerate(rows):
            self._event(ev, c, when=when, thread=th, **extra)
            if n == last_rolled:
                self.log.rotate()  # the log rolled over: what it held so far is only in AMTOPMGR.lo_ now
        self._certificate_warnings()

    def _certificate_warnings(self) -> None:
        """The daily lines a real AMTOPMGR.LOG shows for a provisioning certificate near its end, and once it has
        expired (wording: CERTIFICATE_EXPIRING, CERTIFICATE_UNLOADED)."""
        if not self.spec.provisioning_certificate_not_after or self.log is None:
            return
        end = dt.datetime.fromisoformat(self.spec.provisioning_certificate_not_after).astimezone()
        now = dt.datetime.now().astimezone()
        thumbprint = str(self.spec.oob.get("provisioning_certificate_thumbprint", "")).upper()
        days = (end - now).days
        if now >= end:
            self.log.write(CERTIFICATE_UNLOADED.format(thumbprint=thumbprint), when=now - dt.timedelta(minutes=1),
                           thread=THREADS["provision"])
        elif days <= CERT_WARNING_DAYS:
            self.log.write(CERTIFICATE_EXPIRING.format(thumbprint=thumbprint, days=days),
                           when=now - dt.timedelta(minutes=1), thread=THREADS["provision"], type_=3)


class SiteServerSimulator(AmtOpmgrLog, BackgroundService):
    """WinRM, the 9971 hello listener and AMTOPMGR.LOG for one :class:`SiteServerSpec`.

    ``hooks`` (``amt_unprovision``, ``revoke_certificate``, ``delete_ad_object``) are called with the
    :class:`ClientRecord` by the un-provision action, in that order; ``amt_power`` and ``amt_discover`` by the
    power and discovery operations; a missing hook is skipped. Without ``hooks``, the spec's ``callbacks``
    ("module:function") are imported. Operations run on the service point's worker thread, one at a time;
    :meth:`wait_idle` waits for the queue to drain.
    """

    thread_name = "site-server"
    start_timeout = 30.0

    def __init__(self, spec: SiteServerSpec, *, hooks: Mapping[str, Hook] | None = None,
                 calls_file: str | Path | None = None):
        self.spec = spec
        unknown = set(hooks or {}) - set(HOOKS)
        unknown |= set(spec.callbacks) - set(HOOKS) if hooks is None else set()
        if unknown:
            raise ValueError(f"unknown hook(s) {sorted(unknown)}; known: {HOOKS}")
        self.hooks: dict[str, Hook] = dict(hooks) if hooks is not None else {
            k: _resolve(v) for k, v in spec.callbacks.items()}
        path = calls_file or spec.calls_file
        self.calls_file = Path(path) if path else None
        self.calls: list[dict[str, Any]] = []
        self.log = CmLogWriter(Path(spec.log_dir) / LOG_NAME, max_bytes=spec.log_max_bytes) if spec.log_dir else None
        self.provider = SiteServerProvider(spec, self)
        self.server: WinrmServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._hello_server: asyncio.AbstractServer | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.hellos: deque[tuple[str, Hello | MalformedHello]] = deque(maxlen=10000)  # (peer, hello) as received
        self.operations: queue.Queue[tuple[int, list[ClientRecord]] | None] = queue.Queue()
        self.pending: list[tuple[int, list[ClientRecord]]] = []  # queued while the service point is stopped
        self._worker: threading.Thread | None = None
        self.start_seconds = 0.0

    def __repr__(self) -> str:
        return f"SiteServerSimulator({self.spec.fqdn!r} at {self.spec.address})"

    @property
    def log_path(self) -> Path | None:
        return self.log.path if self.log else None

    def winrm_url(self, tls: bool = False) -> str:
        return self.spec.winrm_url(self.spec.address, tls)

    # -- recording --
    def _record(self, call: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(call)
            if self.calls_file is not None:
                with self.calls_file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(call, default=str) + "\n")

    # -- the SMS Provider's operations --
    def _holders(self, principal: str) -> set[str]:
        """The names a caller holds rights by: ``DOMAIN\\user`` (from ``user@REALM`` or ``user``) and its groups."""
        domain = self.spec.fqdn.split(".")[1].upper() if "." in self.spec.fqdn else "WORKGROUP"
        user = principal.split("@", 1)[0]
        user = user if "\\" in user else f"{domain}\\{user}"
        groups = next((g for u, g in self.spec.memberships.items() if u.lower() == user.lower()), [])
        return {n.lower() for n in [user, *groups]}

    def may_manage(self, principal: str, client: ClientRecord, collections: list[str] | None = None) -> bool:
        """Whether ``principal`` holds "Manage management controllers" on the collection class, or on one of
        ``collections`` (default: every collection the client is a member of) as an instance right."""
        holders = self._holders(principal)
        if collections is None:
            collections = [c["CollectionID"] for c in self.spec.collections if client.fqdn in c.get("members", [])]
        wanted = {c.lower() for c in collections}
        for p in self.spec.permissions or []:
            if p["UserName"].lower() not in holders or MANAGE_RIGHT not in p["rights"]:
                continue
            if p.get("ObjectKey", SMS_OBJECT_COLLECTION) != SMS_OBJECT_COLLECTION:
                continue
            if not p.get("InstanceKey") or p["InstanceKey"].lower() in wanted:
                return True
        return False

    def record_operation(self, method: str, params: Mapping[str, Any], opcode: int, result: Any,
                         principal: str) -> None:
        ids = params.get("ResourceIDs", [])
        self._record({"ts": time.time(), "server": self.spec.fqdn, "class": SMS_COLLECTION, "op": method,
                      "params": {"ResourceIDs": [int(i) for i in (ids if isinstance(ids, list) else [ids])
                                                 if str(i).strip().isdigit()], "Opcode": opcode},
                      "opcode": OPCODE_NAMES.get(opcode, str(opcode)), "return": result, "principal": principal})

    def queue_operation(self, opcode: int, targets: list[ClientRecord]) -> None:
        """Hand an accepted operation to the out of band service point (queued while it is stopped)."""
        if not self.spec.oob_service_point_running:
            self.pending.append((opcode, targets))
            return
        self.operations.put((opcode, targets))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the service point has performed every queued operation."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.operations.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def _work(self) -> None:
        while True:
            item = self.operations.get()
            try:
                if item is None:
                    return
                opcode, targets = item
                for client in targets:
                    self._perform(opcode, client)
            except Exception:
                log.exception("out of band operation failed")
            finally:
                self.operations.task_done()

    def _perform(self, opcode: int, client: ClientRecord) -> None:
        name = OPCODE_NAMES.get(opcode, "")
        if opcode in POWER_REQUESTS:
            hook = self.hooks.get("amt_power")
            if hook is not None:
                try:
                    hook(client, POWER_REQUESTS[opcode])
                except Exception as exc:  # noqa: BLE001 - an unreachable device: nothing happens, as on a site
                    log.info("%s on %s failed: %s", name, client.fqdn, exc)
        elif opcode == OPCODES["DiscoveryBMC"]:
            self.discover(client)
        elif opcode in (OPCODES["PartialUnprovision"], OPCODES["FullUnprovision"]):
            self.unprovision(client.fqdn)

    def discover(self, client: ClientRecord) -> int | None:
        """Discover Management Controllers for one client: AMTStatus from what its AMT answers (0 no answer,
        2 pre-provisioning, 3 post-provisioning by this site, 1 provisioned but not by this site)."""
        hook = self.hooks.get("amt_discover")
        if hook is None:
            return client.status()
        try:
            state = hook(client)
        except Exception:  # noqa: BLE001 - no answer over the network: not supported (AMTStatus 0)
            state = None
        if state is None:
            client.amt_status = AMT_STATUS["not_supported"]
        elif int(state) == 0:
            client.amt_status = AMT_STATUS["not_provisioned"]
        else:
            client.amt_status = AMT_STATUS["provisioned" if client.provisioned else "detected"]
        return client.amt_status  # type: ignore[return-value]

    # -- the un-provision action --
    def unprovision(self, fqdn: str) -> int:
        """Clear a client's AMT provisioning as the site server does; returns 0, or 5 for an unknown client,
        or 2 when a hook failed (the failure is logged with its reason). AMTStatus is left as it was: the site
        updates it when it provisions a client or discovers its management controller."""
        client = self.spec.client(fqdn)
        rv = 5 if client is None else 0
        if client is not None:
            self._event("unprovision_started", client, thread="clear")
            for name in HOOK_ORDER:
                hook = self.hooks.get(name)
                if hook is None:
                    continue
                try:
                    hook(client)
                except Exception as exc:  # noqa: BLE001 - a failed step is a logged finding, not a crash
                    reason = f"{name}: {type(exc).__name__}: {str(exc)[:200]}"
                    self._event("unprovision_failed", client, thread="clear", reason=reason)
                    rv = 2
                    break
            if rv == 0:
                if client.amt_status == "auto":  # AMTStatus stays what the site last knew until a discovery
                    client.amt_status = client.status()
                client.provisioned = False
                self._event("unprovision_completed", client, thread="clear")
        return rv

    # -- hellos --
    async def _on_hello(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = (writer.get_extra_info("peername") or ("", 0))[0]
        data = b""
        try:
            while len(data) <= MAX_HELLO_BYTES:
                chunk = await asyncio.wait_for(reader.read(4096), 5.0)
                if not chunk:
                    break
                data += chunk
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()
        hello = hello_or_error(data)
        self.hellos.append((peer, hello))
        if isinstance(hello, MalformedHello):
            self._event("hello_malformed", thread="hello", ip=peer, reason=str(hello))
            return
        client = self.spec.client_by_uuid(hello.uuid)
        if client is not None and client.imported_oob:  # before the log line: who reads the line sees AMTStatus 2
            client.hello_heard = True  # the site now knows its AMT: AMTStatus 2 (not provisioned, can be)
        self._event("hello_received", thread="hello", ip=peer, uuid=str(hello.uuid), mode=hello.mode,
                    retry=hello.retry_count, fqdn=client.fqdn if client and client.imported_oob else "")
        if client is None or not client.imported_oob:
            self._event("hello_not_imported", thread="hello", ip=peer, uuid=str(hello.uuid))

    # -- life cycle --
    async def start_async(self) -> None:
        t0 = time.perf_counter()
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self.write_history()
        self.server = WinrmServer()
        self.server.add_host(self.spec.address, self.spec.fqdn, self.spec, lambda: self.provider)
        self._worker = threading.Thread(target=self._work, name="oob-service-point", daemon=True)
        self._worker.start()
        try:
            await self.server.start()
            self._hello_server = await asyncio.start_server(self._on_hello, self.spec.address, self.spec.hello_port,
                                                            reuse_address=True)
        except BaseException:
            await self.stop_async()
            raise
        self.start_seconds = time.perf_counter() - t0

    async def stop_async(self) -> None:
        if self._hello_server is not None:
            self._hello_server.close()
            await self._hello_server.wait_closed()
            self._hello_server = None
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._worker is not None:
            self.operations.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._worker.join, 30.0)
            self._worker = None


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_vpro.lab.site_server",
                                     description="Simulated Configuration Manager 2007 site server")
    parser.add_argument("--spec", required=True, help="site server spec (JSON or YAML)")
    parser.add_argument("--calls", help="append every state-changing call to this JSONL file")
    args = parser.parse_args(list(argv) if argv is not None else None)
    sim = SiteServerSimulator(SiteServerSpec.load(args.spec), calls_file=args.calls)
    s = sim.spec
    return serve_as_process(sim, lambda: (
        f"READY site server {s.fqdn} at {s.address}: WinRM {s.http_port}"
        f"{'/' + str(s.https_port) if s.tls_cert else ''}, hello {s.hello_port},"
        f" log {sim.log_path or '-'} in {sim.start_seconds:.2f} s"))


if __name__ == "__main__":
    sys.exit(main())


# What the lab and its tests import from here (the names, the provider and the WQL parser live beside it).
__all__ = ["AMT_STATUS", "APPENDIX_A", "BasicAuthenticator", "CERTIFICATE_EXPIRING", "CERTIFICATE_UNLOADED",
           "ClientRecord", "HOOKS", "HOOK_ORDER", "IPSEC_GPO_KEY", "KB908209_KEY", "MANAGE_RIGHT",
           "NETWORK_DISCOVERY", "OOB_PROPS", "OOB_PROP_LISTS", "OOB_SP2_PROPS", "OPCODES",
           "OPERATE_FOR_COLLECTION", "OPERATE_FOR_MACHINES", "SMS_COLLECTION", "SMS_PERMISSIONS",
           "SiteServerProvider", "SiteServerSimulator", "SiteServerSpec", "THREADS", "UNCONFIRMED",
           "WBEM_E_ACCESS_DENIED", "WINRM_STACK_KEY", "WOW64_SOFTWARE", "WinrmServer", "WqlError",
           "applicable_hotfixes", "main", "parse_wql"]
