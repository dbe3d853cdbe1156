"""The only state-changing calls pytest-vpro makes: power control, SOL/IDER sessions, un-provisioning.

Stage 4's power control and stage 7's un-provisioning go through Configuration Manager, as the console does: the
SMS Provider's ``SMS_Collection.AMTOperateForMachines(ResourceIDs[], Opcode)`` (CM2007 SDK; docs/protocols.md,
"Out of band operations"), called over WinRM as the console user, and their results are observed where they
land: the power state and provisioning state from AMT, ``AMTStatus`` from SCCM. Stage 5's power control and SOL/IDER
session talk to AMT directly, as the out of band management console does.

Guide: Stage 4 "perform power control operations. Verify that clients can be powered down correctly ... powered-up
correctly after the power down operation"; Stage 5 "Verify power control can be used to power down and power up
the client."; "Verify SOL / IDER can be used to display the client BIOS
console output and boot the client from an IDE image"; Stage 7 "use Delete provisioning data from the management
controller option to delete all data from Intel AMT memory".

Who may call them: the engine (``pytest_vpro/gating.py``) runs a catalog row marked ``disruptive: true`` only with
``--allow-disruptive`` and only on canaries, and holds a permit for that check and target while it runs
(``pytest_vpro/permits.py``); every function here asks for the permit first and raises :class:`NotPermitted`
before a byte is sent without one. Read-only code never imports this module: ``facts`` reads through
``AMT_READS``, the WinRM probe refuses every method but registry reads, and ``tests/lab/test_read_only.py`` proves
that a run without ``--allow-disruptive`` records no state-changing call anywhere in the lab.

What they did is recorded per target in the run's record (the permit names its file; facts read it back), which
every process of the run reads: the un-provisioned client's certificate serial (read before un-provisioning), the
outcome. A change that can be undone is undone (power back on, the IDE-R boot settings put back) and what could
not be is said.
"""
from __future__ import annotations

import fcntl
import json
import select
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .permits import NotPermitted, Permit, require
from .probes import deadline, tls
from .probes import redirection as redir
from .probes import x509 as certs
from .probes.amt import BOOT_READ_ONLY, ROLE_NEXT_SINGLE_USE, AmtDevice
from .probes.errors import MalformedReply, ProbeError, Unreachable
from .probes.kerberos import NegotiateAuth
from .probes.winrm import WinRM, sms_namespace, wmi_uri
from .probes.wsman import DigestAuth, SoapFault, WsmanClient

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


__all__ = ["NotPermitted", "console_power_cycle", "power_cycle", "sol_ider_session", "unprovision"]


# --------------------------------------------------------------------------------------------------------------
# the guard and the record
# --------------------------------------------------------------------------------------------------------------
def _permit(target: Any, action: str) -> Permit:
    """The engine's permit for ``target`` (NotPermitted without one); what follows is recorded as disruptive."""
    permit = require(target, action)
    _record(permit, disruptive=True)
    return permit


def _record(permit: Permit, **values: Any) -> dict[str, Any]:
    """Merge ``values`` into the permit's target's entry of the run's record (a file the run's processes share)."""
    target = permit.target.name
    path = permit.record_file
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
    port = env.expected["ports"]["amt_https"]
    return AmtDevice(WsmanClient(f"https://{facts.target.name}:{port}/wsman",
                                 auth=NegotiateAuth(facts.console.credentials(), env.site.realm),
                                 ca_bundle=env.pki.get("trusted_roots"), timeout=env.timeouts["read"],
                                 connect_timeout=env.timeouts["connect"], legacy_ciphers=tls.ciphers_of(env)))


def _poll(read: Callable[[], Any], done: Callable[[Any], bool], seconds: float) -> tuple[Any, float]:
    """Call ``read`` every 0.25 s until ``done`` says yes of what it read or ``seconds`` pass: (the last value
    read, seconds waited)."""
    start = time.monotonic()
    while True:
        value = read()
        if done(value) or time.monotonic() - start >= seconds:
            return value, time.monotonic() - start
        time.sleep(0.25)


def _wait_for(device, state: int | frozenset[int], seconds: float) -> tuple[int | None, float, str]:
    """Poll PowerState until ``state`` (or one of them) or ``seconds`` pass: (last state seen, seconds waited,
    last error)."""
    states = state if isinstance(state, frozenset) else frozenset({state})
    seen: list[int | None] = [None]  # the last state read; an error in between keeps it

    def read() -> tuple[int | None, str]:
        try:
            seen[0] = device.power_state().state
            return seen[0], ""
        except ProbeError as exc:  # the ME may be out of reach while the host changes state
            return seen[0], str(exc)

    (last, error), waited = _poll(read, lambda got: got[0] in states, seconds)
    return last, waited, error


# --------------------------------------------------------------------------------------------------------------
# the SMS Provider, as the console user
# --------------------------------------------------------------------------------------------------------------
class _SmsProvider:
    """The site's SMS Provider over WinRM as the console user (Kerberos, SPN ``HTTP/<site server>``): the
    console's own identity, so its rights on the collection are what is tested."""
    def __init__(self, facts, env) -> None:

        site = facts.server("site_server")
        self.namespace = sms_namespace(env.site.code)
        auth = NegotiateAuth(facts.console.credentials(), env.site.realm, spn=f"HTTP/{site.name}@{env.site.realm}")
        self.winrm = WinRM(site.winrm or f"https://{site.name}:5986/wsman", auth=auth,
                           ca_bundle=env.pki.get("trusted_roots"), timeout=max(env.timeouts["read"], 30.0))

    def operate(self, resource_id: int, opcode: int) -> str:
        """``SMS_Collection.AMTOperateForMachines([resource_id], opcode)``: "ReturnValue 0", or what went wrong."""
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
    permit = _permit(client, "power control")
    return facts.get("action.power_cycle", lambda: _power_cycle(facts, env, permit))


def _may_power_down(device, cycle: PowerCycle) -> bool:
    """Only a client that is on, and whose ME stays on in S5 (off, the ME would not answer: nobody could power
    the canary on again); else ``cycle`` says why not."""
    before = cycle.before
    if before != 2:
        cycle.down.answer, cycle.down.reached = f"not sent: the client was not on (PowerState {before})", before
        return False
    policy = device.power_policy()
    if "S5" not in policy.me_on:
        cycle.down.answer, cycle.down.reached = (f"not sent: the active power package '{policy.description}' "
                                                 "turns the ME off in S5, so the client could not be powered on "
                                                 "again out of band"), before
        cycle.note = "power-down refused to leave the client unreachable"
        return False
    return True


def _power_cycle(facts, env, permit: Permit) -> PowerCycle:
    device, wait = _console_device(facts, env), _wait(env)
    before = device.power_state().state
    cycle = PowerCycle(before, PowerStep(SHUTDOWN, through_sccm=True))
    if not _may_power_down(device, cycle):
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
        _record(permit, power={"before": before, "after": cycle.up.reached, "restored": cycle.restored})
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
# power control from the out of band management console (S5-CONSOLE-POWER-CONTROL)
# --------------------------------------------------------------------------------------------------------------
#: What the console's power control asks AMT for, directly: 8 (off-soft), then 2 (on) (docs/protocols.md,
#: "request_power_state").
CONSOLE_POWER_OFF, CONSOLE_POWER_ON = 8, 2


def console_power_cycle(client, env, facts) -> PowerCycle:
    """Power the client off and on again as the out of band management console does: to AMT directly, over TLS
    16993 as the console user (Kerberos), ``CIM_PowerManagementService.RequestPowerStateChange`` 8 then 2,
    watching the PowerState AMT reports for each (stage 4's power control goes through the site instead:
    :func:`power_cycle`).

    Done once per process for a client. Power is put back on whenever the client went off;
    :attr:`PowerCycle.restored` says whether that worked.
    """
    permit = _permit(client, "power control from the out of band console")
    return facts.get("action.console_power_cycle", lambda: _console_power_cycle(facts, env, permit))


def _console_power_cycle(facts, env, permit: Permit) -> PowerCycle:
    device, wait = _console_device(facts, env), _wait(env)
    before = device.power_state().state
    cycle = PowerCycle(before, PowerStep(CONSOLE_POWER_OFF))
    if not _may_power_down(device, cycle):
        return cycle
    _request(device, cycle.down)
    if cycle.down.answer == "ReturnValue 0":
        cycle.down.reached, cycle.down.seconds, cycle.down.error = _wait_for(device, CONSOLE_POWER_OFF, wait)
    else:
        cycle.down.reached = before
    if not cycle.down.ok:
        cycle.note = "the client did not go off, so power-up was not tried"
        if cycle.down.reached in OFF_STATES:  # off in another state: put it back on all the same
            cycle.up = PowerStep(CONSOLE_POWER_ON)
            _request(device, cycle.up)
            cycle.up.reached, cycle.up.seconds, cycle.up.error = _wait_for(device, CONSOLE_POWER_ON, wait)
        _record(permit, console_power={"before": before, "after": cycle.down.reached if cycle.up is None
                                       else cycle.up.reached, "restored": cycle.restored})
        return cycle
    cycle.up = PowerStep(CONSOLE_POWER_ON)
    _request(device, cycle.up)
    if cycle.up.answer == "ReturnValue 0":
        cycle.up.reached, cycle.up.seconds, cycle.up.error = _wait_for(device, CONSOLE_POWER_ON, wait)
    else:
        cycle.up.reached = cycle.down.reached
    if not cycle.up.ok:
        cycle.note = "could not restore: the client is still off; power it on locally"
    _record(permit, console_power={"before": before, "after": cycle.up.reached, "restored": cycle.restored})
    return cycle


# --------------------------------------------------------------------------------------------------------------
# SOL and IDE-R (S5-SOL-IDER-SESSION)
# --------------------------------------------------------------------------------------------------------------
#: The boot settings of an IDE-R boot, as MeshCommander's "Reset to IDE-R Floppy" writes them (index.html,
#: powerActionResponse1, action 200): IDE-R from the floppy device (IDERBootDevice 0), SOL on (the console is
#: watching the terminal), every other one-time option off. Only the properties the device returned are written.
IDER_BOOT_SETTINGS = {"UseIDER": True, "IDERBootDevice": 0, "UseSOL": True, "BIOSPause": False, "BIOSSetup": False,
                      "BootMediaIndex": 0, "FirmwareVerbosity": 0, "ForcedProgressEvents": False,
                      "LockKeyboard": False, "LockPowerButton": False, "LockResetButton": False,
                      "LockSleepButton": False, "ReflashBIOS": False, "UseSafeMode": False,
                      "UserPasswordBypass": False, "ConfigurationDataReset": False, "EnforceSecureBoot": False,
                      "SecureErase": False}


@dataclass
class RedirectionResult:
    sol: str = ""                          # "started", or why not
    ider: str = ""
    boot_config: str = ""                  # "set", or why not (the steps before the reset)
    boot_steps: list[str] = field(default_factory=list)  # each WS-MAN call of the boot configuration, and its answer
    reboot: str = ""                       # the power request that restarted the host
    sol_text: str = ""                     # what SOL showed while it booted
    ider_reads: list[int] = field(default_factory=list)  # blocks the client read from the image
    restored: str = ""                     # "yes: ...", or what is left set on the client
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
    """What a console does to boot a client from an image over IDE-R, watching it over SOL.

    1. A SOL and an IDE-R session on TLS 16995 as the console user (Kerberos); the IDE-R device is enabled for
       the next reboot (DisableEnableFeatures, start "on reboot").
    2. The boot configuration, as MeshCommander and Intel's PowerShell module set it: ``AMT_BootCapabilities``
       must offer IDER; ``CIM_BootConfigSetting.ChangeBootOrder`` with no source; ``AMT_BootSettingData`` Put
       with ``UseIDER`` (floppy device) and ``UseSOL``; ``CIM_BootService.SetBootConfigRole`` role 1 (the next
       boot only); ChangeBootOrder again with no source (MeshCommander's order).
    3. ``RequestPowerStateChange``: 10 (master bus reset) if the client is on, 2 (power on) if not.
    4. SOL must show the BIOS; the client must read ``image`` (default :func:`redirection.boot_image`) over IDE-R
       and boot it.
    5. Restore: ``AMT_BootSettingData`` as it was read before (the firmware clears the one-time options after
       the boot; this puts them back if it did not), read back to confirm. The client is left running: it
       restarted, that cannot be undone.
    """
    permit = _permit(client, "an SOL/IDE-R session with a reset")
    image = image or redir.boot_image()
    port = env.expected["ports"]["redirection_tls"]
    timeout = env.timeouts["read"]
    result = RedirectionResult()
    sessions: dict[str, _Redirection] = {}
    device, before = None, None
    try:
        for kind, name in ((redir.SOL, "sol"), (redir.IDER, "ider")):
            conn = _Redirection(client.name, port, env.pki.get("trusted_roots"), timeout,
                                tls.ciphers_of(env))
            sessions[name] = conn
            result.tls = str(conn.negotiated)
            token = facts.console.credentials().token(facts.amt.spn())[1]  # one AP-REQ per session (no replays)
            setattr(result, name, conn.open(kind, token))
        if result.sol != "started" or result.ider != "started":
            return result
        device = _console_device(facts, env)
        before = _set_boot_configuration(device, result)
        if result.boot_config != "set":
            return result
        state = device.power_state().state
        wanted = 10 if state == 2 else 2
        step = PowerStep(wanted)
        _request(device, step)
        result.reboot = f"RequestPowerStateChange({wanted}) from PowerState {state}: {step.answer}"
        _record(permit, redirection={"reboot": result.reboot})
        if step.answer != "ReturnValue 0":
            return result
        with deadline.Deadline(2 * timeout + 1, f"SOL and IDE-R {client.name}") as limit:  # a record a byte at a time
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
        if device is not None and before is not None:
            _restore_boot_configuration(device, before, result)
            _record(permit, redirection={"boot_config": result.boot_config, "restored": result.restored})


def _set_boot_configuration(device, result: RedirectionResult):
    """Step 2 of :func:`sol_ider_session`; returns the settings read before (to restore), or None if nothing was
    changed. ``result.boot_config`` says "set" or why not."""


    try:
        capabilities: dict | None = device.boot_capabilities()
    except SoapFault as exc:  # a firmware without the class: no advance check (the boot itself still shows it)
        capabilities = None
        result.boot_steps.append(f"AMT_BootCapabilities not read ({exc}): IDE-R boot not checked in advance")
    except ProbeError as exc:
        result.boot_config = f"could not read AMT_BootCapabilities: {exc}"
        return None
    try:
        before = device.boot_settings()
    except ProbeError as exc:
        result.boot_config = f"could not read AMT_BootSettingData: {exc}"
        return None
    if capabilities is not None:
        result.boot_steps.append(f"AMT_BootCapabilities IDER={capabilities.get('IDER')}, "
                                 f"SOL={capabilities.get('SOL')}")
    if capabilities is not None and not capabilities.get("IDER"):
        result.boot_config = ("the BIOS does not offer IDE-R boot (AMT_BootCapabilities.IDER is not true): "
                              "not changed, not restarted")
        return None
    missing = [k for k in ("UseIDER", "IDERBootDevice") if k not in before]
    if missing:
        result.boot_config = f"AMT_BootSettingData has no {', '.join(missing)}: not changed, not restarted"
        return None
    writable = {k: v for k, v in before.items() if k not in BOOT_READ_ONLY}
    wanted = {**writable, **{k: v for k, v in IDER_BOOT_SETTINGS.items() if k in before}}
    steps = (("ChangeBootOrder (no source)", device.clear_boot_order),
             ("Put AMT_BootSettingData UseIDER=true IDERBootDevice=0 UseSOL=true",
              lambda: device.put_boot_settings(wanted)),
             (f"SetBootConfigRole({ROLE_NEXT_SINGLE_USE})", lambda: device.set_boot_config_role(ROLE_NEXT_SINGLE_USE)),
             ("ChangeBootOrder (no source)", device.clear_boot_order))
    for label, call in steps:
        try:
            call()
        except ProbeError as exc:
            result.boot_steps.append(f"{label}: {exc}")
            result.boot_config = f"{label} refused: {exc}"
            return before
        result.boot_steps.append(f"{label}: ok")
    result.boot_config = "set"
    return before


def _restore_boot_configuration(device, before, result: RedirectionResult) -> None:
    """Step 5: AMT_BootSettingData back as it was (writable properties), then read back."""
    writable = {k: v for k, v in before.items() if k not in BOOT_READ_ONLY}
    try:
        device.put_boot_settings(writable)
        after = device.boot_settings()
    except ProbeError as exc:
        result.restored = f"no: AMT_BootSettingData could not be put back ({exc}); UseIDER may still be set"
        return
    left = {k: after.get(k) for k in ("UseIDER", "UseSOL", "IDERBootDevice")
            if str(after.get(k)).lower() != str(before.get(k)).lower()}
    result.restored = (f"yes: UseIDER={after.get('UseIDER')}, UseSOL={after.get('UseSOL')} as before" if not left
                       else f"no: {', '.join(f'{k}={v}' for k, v in left.items())} after the restore")


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
        self.kind = b""
        self.seq = 0                    # the next sequence number this console sends (SOL data, IDE-R)
        self.read_buffer = 8192         # the device's IDE-R read buffer (OpenSession reply)

    def send(self, m: redir.Message) -> None:
        self.sock.sendall(redir.encode(m))

    def send_seq(self, command: int, **fields: Any) -> None:
        """Send a message that carries this side's sequence number, and count it."""
        self.send(redir.Message(command, seq=self.seq, **fields))
        self.seq += 1

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
        """The next message but heartbeats and keep-alives, which must be ``command``."""
        with self.exchange() as limit:
            try:
                while True:
                    m = self.receive(self.timeout)
                    if m is None or m.command not in (redir.SOL_HEARTBEAT, redir.IDER_HEARTBEAT,
                                                      redir.SOL_CONTROLS_FROM_HOST):
                        break
            except ProbeError:
                if limit.expired:
                    raise limit.too_late(self.host, self.port) from None
                raise
        if m is None or m.command != command:
            raise ProbeError(f"{self.host}:{self.port}: no {redir.NAMES.get(command, hex(command))} within "
                             f"{self.timeout:g} s" + (f" (got {m.name or hex(m.command)})" if m else ""))
        return m

    def open(self, kind: bytes, token: bytes, auth_type: int = redir.AUTH_KERBEROS) -> str:
        """StartRedirectionSession, authentication (Kerberos: ``token`` is the AP-REQ), then StartSOLRedirection,
        or for IDE-R OpenSession and the device enabled for the next reboot: 'started' or why not."""
        name = "IDE-R" if kind == redir.IDER else "SOL"
        self.kind = kind
        self.send(redir.Message(redir.START_SESSION, session=kind))
        reply = self.expect(redir.START_SESSION_REPLY)
        if reply.status != redir.STATUS_SUCCESS:
            why = {redir.STATUS_BUSY: "busy", redir.STATUS_UNSUPPORTED: "unsupported"}.get(reply.status, "refused")
            return f"{name} session refused by the device (status {reply.status}: {why}; redirection disabled?)"
        self.send(redir.Message(redir.AUTHENTICATE, auth_type=auth_type, data=token))
        if self.expect(redir.AUTHENTICATE_REPLY).status != redir.STATUS_SUCCESS:
            return f"{name} {'Kerberos ' if auth_type == redir.AUTH_KERBEROS else ''}authentication refused"
        if kind == redir.SOL:
            self.send_seq(redir.START_SOL, settings=redir.SOL_SETTINGS)
            if self.expect(redir.START_SOL_REPLY).status != redir.STATUS_SUCCESS:
                return "StartSOLRedirection refused"
            return "started"
        self.send_seq(redir.IDER_OPEN, settings=redir.IDER_SETTINGS)
        opened = self.expect(redir.IDER_OPEN_REPLY)
        if opened.value != 0:
            return f"IDE-R OpenSession answered protocol {opened.value} (0 expected)"
        self.read_buffer = min(opened.buffers[0] or 8192, 8192)
        self.send_seq(redir.IDER_FEATURES, feature=redir.FEATURE_SET_REGISTER_STATE,
                      value=redir.FEATURE_ENABLE | redir.START_ON_REBOOT)
        enabled = self.expect(redir.IDER_FEATURES_REPLY)
        if enabled.value != 1:
            return f"the device did not enable the IDE-R device for the next reboot (answer {enabled.value})"
        return "started"

    def close(self) -> None:
        try:
            if self.kind == redir.SOL:
                self.send_seq(redir.END_SOL)
            elif self.kind == redir.IDER:
                self.send_seq(redir.IDER_CLOSE)
            self.send(redir.Message(redir.END_SESSION))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _serve_ider(conn: _Redirection, m: redir.Message, image: bytes, result: RedirectionResult) -> None:
    """Answer one IDE-R command from the client's BIOS with the image as a read-only floppy (MeshCommander
    handleSCSI): TEST UNIT READY ok, READ(10)/READ(6) the blocks, anything else "invalid command"."""
    device = redir.DEVICE_CDROM if m.is_cdrom else redir.DEVICE_FLOPPY
    block = redir.CD_SECTOR if m.is_cdrom else redir.SECTOR
    read = redir.read_request(m.cdb)
    if m.cdb[:1] == bytes([redir.SCSI_TEST_UNIT_READY]):
        conn.send_seq(redir.IDER_COMMAND_END, attributes=2, device=device)
        return
    if read is None:
        conn.send_seq(redir.IDER_COMMAND_END, attributes=2, device=device, sense=(0x05, 0x20, 0x00))
        return
    lba, blocks = read
    result.ider_reads.append(lba)
    data = image[lba * block:(lba + blocks) * block]
    if not blocks or len(data) < blocks * block:
        conn.send_seq(redir.IDER_COMMAND_END, attributes=2, device=device, sense=(0x05, 0x21, 0x00))  # out of range
        return
    step = max(conn.read_buffer, block)
    for start in range(0, len(data), step):
        last = start + step >= len(data)
        conn.send_seq(redir.IDER_DATA_TO_HOST, attributes=2 if last else 0, device=device,
                      data=data[start:start + step])


def _watch(sol: _Redirection, ider: _Redirection, image: bytes, result: RedirectionResult, until: float) -> None:
    """Serve the image over IDE-R and collect SOL text until the boot line or ``until``."""
    while time.monotonic() < until and "Booting from" not in result.sol_text \
            and "no bootable image" not in result.sol_text:
        for conn in (ider, sol):
            m = conn.receive(0.1)
            if m is None:
                continue
            if m.command == redir.SOL_DATA_FROM_HOST:
                result.sol_text += m.data.decode("ascii", "replace")
            elif m.command == redir.IDER_COMMAND_WRITTEN:
                _serve_ider(conn, m, image, result)
            elif m.command in (redir.SOL_PING, redir.IDER_PING):
                conn.send_seq(redir.SOL_PONG if m.command == redir.SOL_PING else redir.IDER_PONG)
            elif m.command == redir.IDER_RESET:
                conn.send_seq(redir.IDER_RESET_REPLY)


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
    when the call succeeded), ``state_after`` (ProvisioningState read afterwards over WS-MAN, or the error:
    firmware back in its initial setup may answer none), ``amt_status`` (SMS_R_System.AMTStatus after the
    discovery), ``discovery`` (that call's answer).

    Un-provisioning is not undone: the guide's Stage 7 ends there, and a client in a collection with automatic
    provisioning is provisioned again by the site (CM2007 library, "How to Remove Provisioning Information for
    AMT-Based Computers")."""
    permit = _permit(client, "un-provisioning")
    _record(permit, unprovisioned={"started": time.time()})
    try:
        return _unprovision(client, env, facts, permit)
    except BaseException as exc:
        _record(permit, unprovisioned={"finished": time.time(), "return": f"not done: {exc}"})
        raise


def _unprovision(client, env, facts, permit: Permit) -> dict[str, Any]:

    cert = facts.network.peer_certificate(client.name, env.expected["ports"]["amt_https"])
    _record(permit, unprovisioned={"serial": format(cert.serial_number, "x"), "cdp": certs.cdp_urls(cert),
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
        def provisioning_state() -> Any:
            try:
                return _digest_device(facts, env).provisioning().state
            except ProbeError as exc:
                return str(exc)

        after: Any = None
        if result["return"] == 0:
            # 0, or no WS-MAN answer at all: factory defaults of firmware that, in pre-provisioning, serves only
            # its provisioning server (the check judges that from the log and the site)
            after, _ = _poll(provisioning_state, lambda got: got == 0 or isinstance(got, str), _wait(env))
        result["state_after"] = after
        result["discovery"] = provider.operate(rid, DISCOVERY_BMC) if result["return"] == 0 else ""
        status = system.get("AMTStatus")
        if _succeeded(result["discovery"]):
            status, _ = _poll(lambda: (provider.system(client.name) or {}).get("AMTStatus"),
                              lambda got: str(got) != str(AMT_STATUS_PROVISIONED), _wait(env))
        result["amt_status"] = None if status is None else int(str(status))
    finally:
        provider.close()
    return _record(permit, unprovisioned={**result, "finished": time.time()})["unprovisioned"]


def _digest_device(facts, env):
    """A fresh WS-MAN session with the service point's AMT credential (the run's cached reads are from before)."""
    cred = env.credentials.get("amt")
    if cred is None or cred.kerberos:
        return _console_device(facts, env)
    port = env.expected["ports"]["amt_https"]
    return AmtDevice(WsmanClient(f"https://{facts.target.name}:{port}/wsman",
                                 auth=DigestAuth(cred.user, cred.password.resolve()),
                                 ca_bundle=env.pki.get("trusted_roots"), timeout=env.timeouts["read"],
                                 connect_timeout=env.timeouts["connect"], legacy_ciphers=tls.ciphers_of(env)))


__all__ = ["power_cycle", "sol_ider_session", "unprovision", "NotPermitted", "PowerCycle", "PowerStep",
           "RedirectionResult", "SMS_COLLECTION", "OPERATE_FOR_MACHINES", "WAKE_UP", "SHUTDOWN", "DISCOVERY_BMC",
           "FULL_UNPROVISION", "OFF_STATES"]
