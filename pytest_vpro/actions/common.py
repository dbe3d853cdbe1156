"""What every action shares: the permit and the run record, the opcodes and states, the console's device,
polling, and the SMS Provider as the console user."""
from __future__ import annotations

import fcntl
import json
import time
from typing import Any, Callable

from ..permits import Permit, require
from ..probes.amt import AmtDevice
from ..probes.errors import ProbeError
from ..probes.kerberos import NegotiateAuth
from ..probes.winrm import WinRM, sms_namespace, wmi_uri

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
    return AmtDevice(facts.connect.wsman(NegotiateAuth(facts.console.credentials(), env.site.realm)))


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


