"""Power control: stage 4 through the site (S4-POWER-DOWN, S4-POWER-UP), stage 5 from the console
(S5-CONSOLE-POWER-CONTROL)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..permits import Permit
from ..probes.errors import ProbeError
from .common import (
    OFF_STATES,
    SHUTDOWN,
    WAKE_UP,
    _console_device,
    _permit,
    _record,
    _SmsProvider,
    _succeeded,
    _wait,
    _wait_for,
)


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
        _settle(device, cycle.down, _succeeded(cycle.down.answer), OFF_STATES, wait, before)
        if cycle.down.reached not in OFF_STATES:
            cycle.note = "the client did not go off, so power-up was not tried"
            return cycle
        cycle.up = PowerStep(WAKE_UP, through_sccm=True)
        cycle.up.answer = provider.operate(rid, WAKE_UP)
        _settle(device, cycle.up, _succeeded(cycle.up.answer), 2, wait, cycle.down.reached)
        if not cycle.up.ok:
            cycle.note = "could not restore: the client is still off; power it on locally"
        _record(permit, power={"before": before, "after": cycle.up.reached, "restored": cycle.restored})
        return cycle
    finally:
        provider.close()


def _settle(device, step: PowerStep, accepted: bool, states: int | frozenset[int], wait: float,
            otherwise: int | None) -> None:
    """Once a request was accepted, wait for ``states``; a refused one leaves the client where it was
    (``otherwise``)."""
    if accepted:
        step.reached, step.seconds, step.error = _wait_for(device, states, wait)
    else:
        step.reached = otherwise


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
    _settle(device, cycle.down, cycle.down.answer == "ReturnValue 0", CONSOLE_POWER_OFF, wait, before)
    if not cycle.down.ok:
        cycle.note = "the client did not go off, so power-up was not tried"
        if cycle.down.reached in OFF_STATES:  # off in another state: put it back on all the same
            cycle.note = (f"the client went off in another state (PowerState {cycle.down.reached}) than asked, "
                          "and power-up was tried to put it back on")
            cycle.up = PowerStep(CONSOLE_POWER_ON)
            _request(device, cycle.up)
            _settle(device, cycle.up, cycle.up.answer == "ReturnValue 0", CONSOLE_POWER_ON, wait,
                    cycle.down.reached)  # a refused power-on: no wait, the client stays where it went
        _record(permit, console_power={"before": before, "after": cycle.down.reached if cycle.up is None
                                       else cycle.up.reached, "restored": cycle.restored})
        return cycle
    cycle.up = PowerStep(CONSOLE_POWER_ON)
    _request(device, cycle.up)
    _settle(device, cycle.up, cycle.up.answer == "ReturnValue 0", CONSOLE_POWER_ON, wait, cycle.down.reached)
    if not cycle.up.ok:
        cycle.note = "could not restore: the client is still off; power it on locally"
    _record(permit, console_power={"before": before, "after": cycle.up.reached, "restored": cycle.restored})
    return cycle


