"""Stage 5: the out of band management console's power control.

Guide, Stage 5: "Select a provisioned client in SCCM collection, right click and open the SCCM Out of Band (OOB)
Management Console."; "Verify power control can be used to power down and power up the client."

Disruptive (canary clients, ``--allow-disruptive``): one power cycle per client as the console does it, to AMT
directly over TLS 16993 as the console user (Kerberos): ``RequestPowerStateChange`` 8, then 2
(``pytest_vpro/actions/``, :func:`~pytest_vpro.actions.console_power_cycle`), the PowerState read from AMT, power
put back on afterwards. Stage 4's power control goes through the site (``SMS_Collection.AMTOperateForMachines``);
this one does not, so what it proves is the console user's own access: its ACL entry and realms on the device.
"""
import pytest

from pytest_vpro import actions
from pytest_vpro.checks import expect
from pytest_vpro.probes.amt import POWER_STATES


def _state(value: int | None) -> str:
    return f"PowerState {value} ({POWER_STATES.get(value, 'no answer') if value is not None else 'no answer'})"


@pytest.mark.check("S5-CONSOLE-POWER-CONTROL")
def test_console_powers_the_client_down_and_up(client, env, facts, evidence):
    cycle = actions.console_power_cycle(client, env, facts)
    evidence.attach("power cycle from the console", cycle.evidence())
    down, up = cycle.down, cycle.up
    expect(down.ok, found=f"power-down: {_state(down.reached)} {down.seconds:.0f} s after "
                          f"RequestPowerStateChange({down.requested}) as the console user: {down.answer}"
                          + (f"; {cycle.note}" if cycle.note else ""),
           expected="RequestPowerStateChange(8) accepted (ReturnValue 0) and AMT reporting the client off "
                    "(PowerState 8 off-soft), then powered on again")
    expect(up is not None and up.ok,
           found=f"power-up: {_state(up.reached if up else None)} {up.seconds if up else 0:.0f} s after "
                 f"RequestPowerStateChange(2) as the console user: {up.answer if up else 'not sent'}"
                 + (f"; {up.error}" if up and up.error else "") + "; the client is left off",
           expected="RequestPowerStateChange(2) accepted and AMT reporting PowerState 2 (on)")
