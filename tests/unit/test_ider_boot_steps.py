"""The boot configuration steps of S5-SOL-IDER-SESSION (actions/redirection.py) against a stand-in device: what is
written, in which order, and what the result says when a step is refused (unit tests of two functions)."""
from __future__ import annotations

import pytest

from pytest_vpro import actions
from pytest_vpro.probes.amt import AmtCallFailed
from pytest_vpro.probes.wsman import SoapFault

SETTINGS = {"InstanceID": "Intel(r) AMT:BootSettingData 0", "UseIDER": "false", "UseSOL": "false",
            "IDERBootDevice": "0", "BIOSPause": "false", "OptionsCleared": "true", "BIOSLastStatus": ["2", "0"]}


class Device:
    def __init__(self, capabilities=None, refuse=""):
        self.capabilities, self.refuse, self.calls = capabilities, refuse, []
        self.settings = dict(SETTINGS)

    def boot_capabilities(self):
        if self.capabilities is None:
            raise SoapFault("Sender", "wsa:DestinationUnreachable", "no such class")
        return self.capabilities

    def boot_settings(self):
        return dict(self.settings)

    def put_boot_settings(self, values):
        self.calls.append(("Put", dict(values)))
        if self.refuse == "Put":
            raise SoapFault("Sender", "wsman:InvalidRepresentation", "refused")
        self.settings.update({k: str(v).lower() for k, v in values.items()})

    def clear_boot_order(self):
        self.calls.append(("ChangeBootOrder", None))

    def set_boot_config_role(self, role):
        self.calls.append(("SetBootConfigRole", role))
        if self.refuse == "Role":
            raise AmtCallFailed("SetBootConfigRole", 4)


def test_the_consoles_order_and_only_writable_properties_the_device_returned():
    device = Device({"IDER": True, "SOL": True})
    result = actions.RedirectionResult()
    before = actions.redirection._set_boot_configuration(device, result)
    assert result.boot_config == "set" and before == SETTINGS
    assert [c[0] for c in device.calls] == ["ChangeBootOrder", "Put", "SetBootConfigRole", "ChangeBootOrder"]
    put = device.calls[1][1]
    assert put == {"InstanceID": "Intel(r) AMT:BootSettingData 0", "UseIDER": True, "UseSOL": True,
                   "IDERBootDevice": 0, "BIOSPause": False}  # no read-only, nothing the device did not return
    assert device.calls[2][1] == 1


def test_a_firmware_without_boot_capabilities_is_still_configured():
    device, result = Device(None), actions.RedirectionResult()
    actions.redirection._set_boot_configuration(device, result)
    assert result.boot_config == "set" and "IDE-R boot not checked in advance" in result.boot_steps[0]


@pytest.mark.parametrize("refuse, step", [("Put", "Put AMT_BootSettingData"), ("Role", "SetBootConfigRole(1)")])
def test_a_refused_step_is_named_and_what_was_read_is_kept_for_the_restore(refuse, step):
    device, result = Device({"IDER": True}, refuse), actions.RedirectionResult()
    before = actions.redirection._set_boot_configuration(device, result)
    assert result.boot_config.startswith(f"{step}") and " refused: " in result.boot_config
    assert before == SETTINGS


def test_the_restore_puts_back_what_was_read_and_says_what_is_left():
    device, result = Device({"IDER": True}), actions.RedirectionResult()
    before = actions.redirection._set_boot_configuration(device, result)
    actions.redirection._restore_boot_configuration(device, before, result)
    assert result.restored == "yes: UseIDER=false, UseSOL=false as before"
    assert "OptionsCleared" not in device.calls[-1][1] and device.calls[-1][1]["UseIDER"] == "false"
    stuck = Device({"IDER": True}, "Put")
    actions.redirection._restore_boot_configuration(stuck, SETTINGS, result)
    assert result.restored.startswith("no: AMT_BootSettingData could not be put back")
