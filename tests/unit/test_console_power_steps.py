"""The console's power cycle (actions/power.py) when the client goes off in another state than asked (6, off-hard,
for 8, off-soft): it is put back on all the same, and a refused power-on is not waited for."""
from __future__ import annotations

import time
from types import SimpleNamespace

from pytest_vpro.actions import power
from pytest_vpro.probes.errors import ProbeError


class Device:
    """AMT that goes off-hard (6) when asked for off-soft (8), and refuses or accepts power-on."""

    def __init__(self, refuse_on: bool):
        self.state, self.refuse_on, self.asked = 2, refuse_on, []

    def power_state(self):
        return SimpleNamespace(state=self.state)

    def power_policy(self):
        return SimpleNamespace(me_on=("S0", "S3", "S4", "S5"), description="always on")

    def request_power_state(self, state):
        self.asked.append(state)
        if state == 2 and self.refuse_on:
            raise ProbeError("RequestPowerStateChange returned 2 (not supported)")
        self.state = 6 if state == 8 else state


def cycle(monkeypatch, device):
    monkeypatch.setattr(power, "_console_device", lambda facts, env: device)
    monkeypatch.setattr(power, "_wait", lambda env: 3.0)
    monkeypatch.setattr(power, "_record", lambda permit, **values: values)
    return power._console_power_cycle(None, None, None)


def test_off_in_another_state_is_put_back_on(monkeypatch):
    device = Device(refuse_on=False)
    result = cycle(monkeypatch, device)
    assert device.asked == [8, 2] and result.up.reached == 2 and result.restored
    assert result.note.startswith("the client went off in another state (PowerState 6)")  # the check fails on it


def test_a_refused_power_on_is_not_waited_for(monkeypatch):
    device = Device(refuse_on=True)
    start = time.monotonic()
    result = cycle(monkeypatch, device)
    assert time.monotonic() - start < 5.0  # the down step waited 3 s for 8; the refused 2, not at all (was 3 s more)
    assert result.up.answer.startswith("RequestPowerStateChange returned 2") and result.up.reached == 6
    assert not result.restored
