"""The only state-changing calls pytest-vpro makes: power control, SOL/IDER sessions, un-provisioning.

Stage 4's power control and stage 7's un-provisioning go through Configuration Manager, as the console does: the
SMS Provider's ``SMS_Collection.AMTOperateForMachines(ResourceIDs[], Opcode)`` (CM2007 SDK; docs/protocols.md,
"Out of band operations"), called over WinRM as the console user, and their results are observed where they
land: the power state and provisioning state from AMT, ``AMTStatus`` from SCCM. Stage 5's SOL/IDER session talks
to AMT directly, as the out of band management console does.

Guide: Stage 4 "perform power control operations. Verify that clients can be powered down correctly ... powered-up
correctly after the power down operation"; Stage 5 "Verify SOL / IDER can be used to display the client BIOS
console output and boot the client from an IDE image"; Stage 7 "use Delete provisioning data from the management
controller option to delete all data from Intel AMT memory".

Who may call them: every function here first checks that its caller is the test function of a catalog row marked
``disruptive: true`` and that the target is ``canary: true`` (:func:`_permit`), and raises :class:`NotPermitted`
before a byte is sent otherwise. The plugin, in turn, runs disruptive rows only with ``--allow-disruptive`` and
only on canaries (``pytest_vpro/gating.py``). Read-only code never imports this module: ``facts`` reads through
``AMT_READS``, the WinRM probe refuses every method but registry reads, and ``tests/lab/test_read_only.py`` proves
that a run without ``--allow-disruptive`` records no state-changing call anywhere in the lab.

What they did is recorded per target in the run's record (:func:`pytest_vpro.facts.run_record`), which every
process of the run reads: the un-provisioned client's certificate serial (read before un-provisioning), the
outcome. A change that can be undone is undone (power back on) and what could not be is said.
"""
from __future__ import annotations

import fcntl
import json
import select
import socket
import ssl
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import catalog
from ..facts import run_record_path
from . import deadline
from . import redirection as redir
from . import tls
from .errors import MalformedReply, ProbeError, Unreachable

#: The SMS Provider's class method for out of band operations on chosen computers, and the opcodes the checks use
#: (CM2007 SDK, "AMTOperateForMachines Method in Class SMS_Collection"): 1 WakeUp, 3 Shutdown, 8 DiscoveryBMC
#: (fills AMTStatus and AMTFullVersion), 64 FullUnprovision ("Resets the AMT device ... to the factory default
#: settings": the guide's "delete all data from Intel AMT memory"). ReturnValue 0 is success.
SMS_COLLECTION, OPERATE_FOR_MACHINES = "SMS_Collection", "AMTOperateForMachines"
WAKE_UP, SHUTDOWN, DISCOVERY_BMC, FULL_UNPROVISION = 1, 3, 8, 64
OPCODE_NAMES = {WAKE_UP: "WakeUp", SHUTDOWN: "Shutdown", DISCOVERY_BMC: "DiscoveryBMC",
                FULL_UNPROVISION: "FullUnprovision"}
#: The DMTF power states that are "off" (6 off-hard, 8 off-soft): which one SCCM's Shutdown requests is not
#: documented ("Causes a hard reset of the computer. This does not shut the operating system down"), so either
#: counts.
OFF_STATES = frozenset({6, 8})
#: SMS_R_System.AMTStatus 3, Provisioned (docs/protocols.md, "SMS_R_System").
AMT_STATUS_PROVISIONED = 3


class NotPermitted(PermissionError):
    """A state-changing call from anything but a disruptive check on a canary target."""


# --------------------------------------------------------------------------------------------------------------
# the guard and the record
# --------------------------------------------------------------------------------------------------------------
def _permit(target: Any) -> str:
    """The check id of the caller's caller, if it is a disruptive row and ``target`` is a canary."""
    frame = sys._getframe(2)
    func = next((v for v in frame.f_globals.values() if getattr(v, "__code__", None) is frame.f_code), None)
    ids = [m.args[0] for m in getattr(func, "pytestmark", []) if m.name == "check" and m.args]
    row = catalog.load().get(ids[0]) if ids else None
    if row is None or not row.disruptive:
        raise NotPermitted(f"{frame.f_code.co_name} is not the test of a disruptive catalog row: "
                           "state-changing calls are refused")
    if not getattr(target, "canary", False):
        raise NotPermitted(f"{getattr(target, 'name', target)} is not a canary: {row.id} may not change it")
    _record(target.name, disruptive=True)
    return row.id


def _record(target: str, **values: Any) -> dict[str, Any]:
    """Merge ``values`` into ``target``'s entry of the run's record (a file the run's processes share)."""
    path = run_record_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        entry = data.setdefault(target, {})
        for key, value in values.items():
            entry[key] = {**entry.get(key, {}), **value} if isinstance(value, dict) else value
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, default=str))
        tmp.replace(path)
        return entry


def _console_device(facts, env):
    """The client's AMT over TLS 16993 as the console user (Kerberos), for power control."""
    from .amt import AmtDevice  # noqa: PLC0415
    from .kerberos import NegotiateAuth
    from .wsman import WsmanClient

    port = env.expected["ports"]["amt_https"]
    return AmtDevice(WsmanClient(f"https://{facts.target.name}:{port}/wsman",
                                 auth=NegotiateAuth(facts.console_credentials(), env.site.realm),
                                 ca_bundle=env.pki.get("trusted_roots"), timeout=env.timeouts["read"],
                                 legacy_ciphers=tls.ciphers_of(env)))


def _wait_for(device, state: int | frozenset[int], seconds: float) -> tuple[int | None, float, str]:
    """Poll PowerState until ``state`` (or one of them) or ``seconds`` pass: (last state seen, seconds waited,
    last error)."""
    start, seen, error = time.monotonic(), None, ""
    states = state if isinstance(state, frozenset) else frozenset({state})
    while True:
        try:
            seen, error = device.power_state().state, ""
        except ProbeError as exc:  # the ME may be out of reach while the host changes state
            error = str(exc)
        if seen in states or time.monotonic() - start >= seconds:
            return seen, time.monotonic() - start, error
        time.sleep(0.25)


# --------------------------------------------------------------------------------------------------------------
# the SMS Provider, as the console user
# --------------------------------------------------------------------------------------------------------------
class _SmsProvider:
    """The site's SMS Provider over WinRM as the console user (Kerberos, SPN ``HTTP/<site server>``): the
    console's own identity, so its rights on the collection are what is tested."""

    def __init__(self, facts, env) -> None:
        from .kerberos import NegotiateAuth  # noqa: PLC0415
        from .winrm import WinRM, sms_namespace

        site = facts.server("site_server")
        self.namespace = sms_namespace(env.site.code)
        auth = NegotiateAuth(facts.console_credentials(), env.site.realm, spn=f"HTTP/{site.name}@{env.site.realm}")
        self.winrm = WinRM(site.winrm or f"https://{site.name}:5986/wsman", auth=auth,
                           ca_bundle=env.pki.get("trusted_roots"), timeout=max(env.timeouts["read"], 30.0))

    def operate(self, resource_id: int, opcode: int) -> str:
        """``SMS_Collection.AMTOperateForMachines([resource_id], opcode)``: "ReturnValue 0", or what went wrong."""
        from .winrm import wmi_uri  # noqa: PLC0415

        call = f"{OPERATE_FOR_MACHINES}([{resource_id}], {opcode}) ({OPCODE_NAMES.get(opcode, opcode)})"
        try:
            out = self.winrm.client.invoke(wmi_uri(SMS_COLLECTION, self.namespace), OPERATE_FOR_MACHINES,
                                           {"ResourceIDs": [resource_id], "Opcode": opcode})
        except ProbeError as exc:
            return f"{call} failed: {exc}"
        return f"{call}: ReturnValue {str(out.get('ReturnValue')).strip()}"

    def system(self, fqdn: str) -> dict[str, Any] | None:
        """The client's SMS_R_System record, read now (by FQDN in ResourceNames, else by NetBIOS name)."""
        rows = self.winrm.enumerate("SMS_R_System", self.namespace)
        host = fqdn.split(".")[0].upper()[:15]
        return next((r for r in rows if fqdn in [str(n).lower() for n in r.get("ResourceNames") or []]), None) \
            or next((r for r in rows if str(r.get("NetbiosName", "")).upper() == host), None)

    def close(self) -> None:
        self.winrm.client.close()


def _succeeded(answer: str) -> bool:
    return answer.endswith(": ReturnValue 0")


def _wait(env) -> float:
    """How long an operation may take to show: the service point queues it and works it off."""
    return max(env.timeouts["read"], 10.0)


# --------------------------------------------------------------------------------------------------------------
# power control (S4-POWER-DOWN, S4-POWER-UP)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class PowerStep:
    requested: int               # the PowerState asked for (SOL/IDER restart), or the SMS opcode (1, 3)
    answer: str = ""             # "...: ReturnValue 0", or why the request failed
    reached: int | None = None   # PowerState last seen
    seconds: float = 0.0
    error: str = ""              # last read error while waiting
    through_sccm: bool = False   # requested is an AMTOperateForMachines opcode

    @property
    def ok(self) -> bool:
        if self.through_sccm:
            return self.reached in OFF_STATES if self.requested == SHUTDOWN else self.reached == 2
        return self.reached == (2 if self.requested == 2 else self.requested)


@dataclass
class PowerCycle:
    before: int | None
    down: PowerStep
    up: PowerStep | None = None
    note: str = ""

    @property
    def restored(self) -> bool:
        return self.before != 2 or self.down.reached not in OFF_STATES or bool(self.up and self.up.ok)

    def evidence(self) -> dict[str, Any]:
        return {"before": self.before, "down": asdict(self.down), "up": asdict(self.up) if self.up else None,
                "restored": self.restored, "note": self.note}


def power_cycle(client, env, facts) -> PowerCycle:
    """Power the client off and on again through Configuration Manager, as the console's power control does:
    ``AMTOperateForMachines([ResourceID], 3)`` (Shutdown), then ``(..., 1)`` (WakeUp), watching the PowerState AMT
    reports (CIM_AssociatedPowerManagementService) for each.

    Done once per process for a client, shared by S4-POWER-DOWN and S4-POWER-UP. Power is put back on whenever
    the client went off; :attr:`PowerCycle.restored` says whether that worked.
    """
    _permit(client)
    return facts.get("action.power_cycle", lambda: _power_cycle(facts, env))


def _power_cycle(facts, env) -> PowerCycle:
    device, wait = _console_device(facts, env), _wait(env)
    before = device.power_state().state
    cycle = PowerCycle(before, PowerStep(SHUTDOWN, through_sccm=True))
    if before != 2:
        cycle.down.answer, cycle.down.reached = f"not sent: the client was not on (PowerState {before})", before
        return cycle
    policy = device.power_policy()
    if "S5" not in policy.me_on:  # off, the ME would not answer: nobody could power the canary on again
        cycle.down.answer, cycle.down.reached = (f"not sent: the active power package '{policy.description}' "
                                                 "turns the ME off in S5, so the client could not be powered on "
                                                 "again out of band"), before
        cycle.note = "power-down refused to leave the client unreachable"
        return cycle
    provider = _SmsProvider(facts, env)
    try:
        system = provider.system(facts.target.name)
        if system is None:
            cycle.down.answer, cycle.down.reached = (f"not sent: {facts.target.name} has no SMS_R_System record "
                                                     "in the site"), before
            cycle.note = "the site does not know the client"
            return cycle
        rid = int(str(system.get("ResourceId", system.get("ResourceID"))))
        cycle.down.answer = provider.operate(rid, SHUTDOWN)
        if _succeeded(cycle.down.answer):
            cycle.down.reached, cycle.down.seconds, cycle.down.error = _wait_for(device, OFF_STATES, wait)
        else:
            cycle.down.reached = before
        if cycle.down.reached not in OFF_STATES:
            cycle.note = "the client did not go off, so power-up was not tried"
            return cycle
        cycle.up = PowerStep(WAKE_UP, through_sccm=True)
        cycle.up.answer = provider.operate(rid, WAKE_UP)
        if _succeeded(cycle.up.answer):
            cycle.up.reached, cycle.up.seconds, cycle.up.error = _wait_for(device, 2, wait)
        else:
            cycle.up.reached = cycle.down.reached
        if not cycle.up.ok:
            cycle.note = "could not restore: the client is still off; power it on locally"
        _record(facts.target.name, power={"before": before, "after": cycle.up.reached, "restored": cycle.restored})
        return cycle
    finally:
        provider.close()


def _request(device, step: PowerStep) -> None:
    try:
        device.request_power_state(step.requested)
        step.answer = "ReturnValue 0"
    except ProbeError as exc:
        step.answer = str(exc)


# --------------------------------------------------------------------------------------------------------------
# SOL and IDER (S5-SOL-IDER-SESSION)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class RedirectionResult:
    sol: str = ""                          # "started", or why not
    ider: str = ""
    reboot: str = ""                       # the power request that restarted the host
    sol_text: str = ""                     # what SOL showed while it booted
    ider_reads: list[int] = field(default_factory=list)  # sectors the client read from the image
    tls: str = ""                          # what the redirection TLS session used (probes/tls.py)

    @property
    def bios_seen(self) -> bool:
        return "Active Management Technology" in self.sol_text or "BIOS" in self.sol_text

    @property
    def booted_from_image(self) -> bool:
        return "Booting from IDE-R" in self.sol_text and 0 in self.ider_reads

    def evidence(self) -> dict[str, Any]:
        return asdict(self)


def sol_ider_session(client, env, facts, image: bytes | None = None) -> RedirectionResult:
    """Open a SOL and an IDER session on TLS 16995 as the console user, restart the client through WS-MAN
    (power cycle, or power on if it is off) and watch: SOL must show the BIOS, the client must boot from ``image``
    (default: :func:`pytest_vpro.probes.redirection.boot_image`) served over IDER. The client is left running
    (it restarted: that cannot be undone)."""
    _permit(client)
    image = image or redir.boot_image()
    port = env.expected["ports"]["redirection_tls"]
    timeout = env.timeouts["read"]
    result = RedirectionResult()
    sessions = {}
    try:
        for kind, start, name in ((redir.SOL, redir.START_SOL, "sol"), (redir.IDER, redir.START_IDER, "ider")):
            conn = _Redirection(client.name, port, env.pki.get("trusted_roots"), timeout,
                                tls.ciphers_of(env))
            sessions[name] = conn
            result.tls = str(conn.negotiated)
            token = facts.console_credentials().token(facts.amt_spn())[1]  # one AP-REQ per session (no replays)
            setattr(result, name, conn.open(kind, token, start))
        if result.sol != "started" or result.ider != "started":
            return result
        device = _console_device(facts, env)
        state = device.power_state().state
        wanted = 5 if state == 2 else 2
        step = PowerStep(wanted)
        _request(device, step)
        result.reboot = f"RequestPowerStateChange({wanted}) from PowerState {state}: {step.answer}"
        _record(client.name, redirection={"reboot": result.reboot})
        if step.answer != "ReturnValue 0":
            return result
        with deadline.Deadline(2 * timeout + 1, f"SOL and IDER {client.name}") as limit:  # a record a byte at a time
            limit.watch(sessions["sol"].sock)
            limit.watch(sessions["ider"].sock)
            try:
                _watch(sessions["sol"], sessions["ider"], image, result, until=time.monotonic() + 2 * timeout)
            except ProbeError:
                if limit.expired:
                    raise limit.too_late(client.name, port) from None
                raise
        return result
    finally:
        for conn in sessions.values():
            conn.close()


class _Redirection:
    """One TLS connection to the redirection port, verified against the estate's roots.

    The connection (every address of the name, the TLS handshake) and each exchange (:meth:`open`, :meth:`expect`)
    have a deadline of twice the timeout: the ssl module's timeout bounds each read, and a device that trickles a
    TLS record keeps one read going; the deadline shuts the socket instead. A message that is not in the
    protocol's layout, or larger than :attr:`redirection.Reader.MAX`, is a :class:`MalformedReply`."""

    def __init__(self, host: str, port: int, ca_bundle: str | None, timeout: float,
                 legacy_ciphers: str = tls.DEFAULT_LEGACY_CIPHERS) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        attempts = 2 if tls.may_fall_back(port) else 1  # a refused modern handshake is tried once more, legacy
        limit = deadline.Deadline(2 * timeout * attempts, f"redirection {host}:{port}")
        with limit:
            try:  # verified; a device that refuses the modern handshake is asked once with the legacy settings
                self.sock, self.negotiated = tls.connect(host, port, cafile=ca_bundle, timeout=timeout,
                                                         ciphers=legacy_ciphers, limit=limit)
            except (TimeoutError, socket.timeout):
                raise Unreachable(host, port, timeout) from None
            except (ssl.SSLError, OSError) as exc:
                if limit.expired:
                    raise limit.too_late(host, port) from None
                if isinstance(exc, ssl.SSLError):
                    raise ProbeError(f"TLS to {host}:{port} failed: {tls.reason(exc)}") from None
                raise Unreachable(host, port, timeout, "connection refused" if isinstance(exc, ConnectionRefusedError)
                                  else exc.strerror or str(exc)) from None
        self.frames = redir.Reader()
        self.pending: list[redir.Message] = []

    def send(self, m: redir.Message) -> None:
        self.sock.sendall(redir.encode(m))

    def receive(self, timeout: float) -> redir.Message | None:
        deadline_at = time.monotonic() + timeout
        while not self.pending:
            left = deadline_at - time.monotonic()
            if left <= 0:
                return None
            if not self.sock.pending():
                ready, _, _ = select.select([self.sock], [], [], left)
                if not ready:
                    return None
            try:
                data = self.sock.recv(65536)
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                raise ProbeError(f"{self.host}:{self.port} closed the redirection session")
            try:
                self.pending += self.frames.feed(data)
            except redir.ProtocolError as exc:
                raise MalformedReply(f"{self.host}:{self.port} sent a redirection message that is not in the "
                                     f"protocol's layout ({exc})") from None
        return self.pending.pop(0)

    def exchange(self) -> deadline.Deadline:
        """A deadline for one exchange on this session (twice the timeout), watching its socket."""
        limit = deadline.Deadline(2 * self.timeout, f"redirection {self.host}:{self.port}")
        limit.watch(self.sock)
        return limit

    def expect(self, command: int) -> redir.Message:
        with self.exchange() as limit:
            try:
                m = self.receive(self.timeout)
            except ProbeError:
                if limit.expired:
                    raise limit.too_late(self.host, self.port) from None
                raise
        if m is None or m.command != command:
            raise ProbeError(f"{self.host}:{self.port}: no reply 0x{command:02x} within {self.timeout:g} s"
                             + (f" (got 0x{m.command:02x})" if m else ""))
        return m

    def open(self, kind: bytes, token: bytes, start: int) -> str:
        """StartRedirectionSession, Kerberos authentication, then StartSOL/IDERRedirection: 'started' or why not."""
        name = kind.decode().strip()
        self.send(redir.Message(redir.START_SESSION, session=kind))
        if self.expect(redir.START_SESSION_REPLY).status != redir.STATUS_SUCCESS:
            return f"{name} session refused by the device (redirection disabled?)"
        self.send(redir.Message(redir.AUTHENTICATE, auth_type=redir.AUTH_KERBEROS, data=token))
        if self.expect(redir.AUTHENTICATE_REPLY).status != redir.STATUS_SUCCESS:
            return f"{name} Kerberos authentication refused"
        self.send(redir.Message(start, seq=1))
        if self.expect(start + 1).status != redir.STATUS_SUCCESS:
            return f"Start{name}Redirection refused"
        return "started"

    def close(self) -> None:
        try:
            self.send(redir.Message(redir.END_SESSION))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _watch(sol: _Redirection, ider: _Redirection, image: bytes, result: RedirectionResult, until: float) -> None:
    """Serve the image's sectors over IDER and collect SOL text until the boot line or ``until``."""
    while time.monotonic() < until and "Booting from" not in result.sol_text \
            and "no bootable image" not in result.sol_text:
        for conn in (ider, sol):
            m = conn.receive(0.1)
            if m is None:
                continue
            if m.command == redir.SOL_DATA_FROM_HOST:
                result.sol_text += m.data.decode("ascii", "replace")
            elif m.command == redir.IDER_READ:
                result.ider_reads.append(m.lba)
                chunk = image[m.lba * redir.SECTOR:(m.lba + max(m.count, 1)) * redir.SECTOR]
                conn.send(redir.Message(redir.IDER_DATA, seq=m.seq, data=chunk))


# --------------------------------------------------------------------------------------------------------------
# un-provisioning through the site server (S7-UNPROVISION-COMPLETES)
# --------------------------------------------------------------------------------------------------------------
def unprovision(client, env, facts) -> dict[str, Any]:
    """Delete the client's provisioning data through Configuration Manager, as the console's "Delete provisioning
    data from the management controller" does: ``AMTOperateForMachines([ResourceID], 64)`` (FullUnprovision).
    Before, the serial of the certificate the client serves on 16993 is recorded (after un-provisioning nothing
    serves it), for S7-WEB-SERVER-CERT-REVOKED. Then it waits for AMT to report pre-provisioning, and asks the
    site to discover the management controller again (``AMTOperateForMachines(..., 8)``, DiscoveryBMC: AMTStatus
    changes only when the site provisions or discovers a client) and waits for its AMTStatus to leave 3.
    Returns the record: ``serial`` (hex), ``answer`` (the call and its ReturnValue, or the error), ``return`` (0
    when the call succeeded), ``state_after`` (ProvisioningState read afterwards over WS-MAN, or the error),
    ``amt_status`` (SMS_R_System.AMTStatus after the discovery), ``discovery`` (that call's answer).

    Un-provisioning is not undone: the guide's Stage 7 ends there, and a client in a collection with automatic
    provisioning is provisioned again by the site (CM2007 library, "How to Remove Provisioning Information for
    AMT-Based Computers")."""
    _permit(client)
    _record(client.name, unprovisioned={"started": time.time()})
    try:
        return _unprovision(client, env, facts)
    except BaseException as exc:
        _record(client.name, unprovisioned={"finished": time.time(), "return": f"not done: {exc}"})
        raise


def _unprovision(client, env, facts) -> dict[str, Any]:
    from . import x509 as certs  # noqa: PLC0415

    cert = facts.peer_certificate(client.name, env.expected["ports"]["amt_https"])
    _record(client.name, unprovisioned={"serial": format(cert.serial_number, "x"), "cdp": certs.cdp_urls(cert),
                                        "issuer": cert.issuer.rfc4514_string()})
    provider = _SmsProvider(facts, env)
    result: dict[str, Any] = {}
    try:
        system = provider.system(client.name)
        if system is None:
            raise ProbeError(f"{client.name} has no SMS_R_System record in site {env.site.code}")
        rid = int(str(system.get("ResourceId", system.get("ResourceID"))))
        result["answer"] = provider.operate(rid, FULL_UNPROVISION)
        result["return"] = 0 if _succeeded(result["answer"]) else result["answer"]
        after: Any = None
        if result["return"] == 0:
            deadline = time.monotonic() + _wait(env)
            while True:
                try:
                    after = _digest_device(facts, env).provisioning().state
                except ProbeError as exc:
                    after = str(exc)
                if after == 0 or time.monotonic() >= deadline:
                    break
                time.sleep(0.25)
        result["state_after"] = after
        result["discovery"] = provider.operate(rid, DISCOVERY_BMC) if result["return"] == 0 else ""
        status = system.get("AMTStatus")
        if _succeeded(result["discovery"]):
            deadline = time.monotonic() + _wait(env)
            while True:
                row = provider.system(client.name) or {}
                status = row.get("AMTStatus")
                if str(status) != str(AMT_STATUS_PROVISIONED) or time.monotonic() >= deadline:
                    break
                time.sleep(0.25)
        result["amt_status"] = None if status is None else int(str(status))
    finally:
        provider.close()
    return _record(client.name, unprovisioned={**result, "finished": time.time()})["unprovisioned"]


def _digest_device(facts, env):
    """A fresh WS-MAN session with the service point's AMT credential (the run's cached reads are from before)."""
    from .amt import AmtDevice  # noqa: PLC0415
    from .wsman import DigestAuth, WsmanClient

    cred = env.credentials.get("amt")
    if cred is None or cred.kerberos:
        return _console_device(facts, env)
    port = env.expected["ports"]["amt_https"]
    return AmtDevice(WsmanClient(f"https://{facts.target.name}:{port}/wsman",
                                 auth=DigestAuth(cred.user, cred.password.resolve()),
                                 ca_bundle=env.pki.get("trusted_roots"), timeout=env.timeouts["read"],
                                 legacy_ciphers=tls.ciphers_of(env)))


__all__ = ["power_cycle", "sol_ider_session", "unprovision", "NotPermitted", "PowerCycle", "PowerStep",
           "RedirectionResult", "SMS_COLLECTION", "OPERATE_FOR_MACHINES", "WAKE_UP", "SHUTDOWN", "DISCOVERY_BMC",
           "FULL_UNPROVISION", "OFF_STATES"]
