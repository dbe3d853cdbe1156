"""IDE-R as consoles do it, against the AMT simulator (net 118): the host boots the console's image only when the
boot configuration was set before the reset, the BIOS clears it after the boot, and every step is in the calls log.

The console side is the probe's own (``actions/redirection.py``: the redirection sessions, the boot configuration, the
image served over IDE-R); it authenticates with the device's digest account (user/password, type 1) instead of
Kerberos, so no KDC is needed here. The suite's run of S5-SOL-IDER-SESSION with Kerberos is in
``test_faults_operations.py`` and ``test_lab_2009.py``.
"""
from __future__ import annotations

import time
import uuid

import pytest
from test_amt_sim import pki  # noqa: F401 - the throwaway CA fixture

from pytest_vpro import actions
from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.amt_sim import AmtSimulator, DeviceSpec
from pytest_vpro.probes import redirection as redir
from pytest_vpro.probes.amt import AmtCallFailed, AmtDevice
from pytest_vpro.probes.wsman import DigestAuth, EndpointReference, SoapFault, WsmanClient, resource_uri

PLAN = AddressPlan(118)
PASSWORD = "Lab-P@ss1"


@pytest.fixture(scope="module")
def sim(pki, tmp_path_factory):  # noqa: F811
    """pc0001 healthy (AMT 6.2), pc0002 AMT 3.2.1 whose BIOS has IDE-R boot switched off."""
    specs = []
    for i, extra in enumerate(({}, {"amt_version": "3.2.1", "bios_ider_boot": False})):
        fqdn, address = f"pc{i + 1:04d}.vprolab.test", PLAN.client(i)
        cert, key = pki["issue"](f"ider{i}", fqdn, address)
        specs.append(DeviceSpec(fqdn=fqdn, address=address, uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, fqdn)),
                                digest_password=PASSWORD, tls_cert=cert, tls_key=key, **extra))
    simulator = AmtSimulator(specs, state_file=tmp_path_factory.mktemp("ider") / "calls.jsonl").start()
    yield simulator
    simulator.stop()


def _device(pki, i: int) -> AmtDevice:  # noqa: F811
    return AmtDevice(WsmanClient.for_amt(PLAN.client(i), auth=DigestAuth("admin", PASSWORD), ca_bundle=pki["ca"],
                                         timeout=5.0))


def _sessions(pki, i: int) -> dict[str, actions.redirection._Redirection]:  # noqa: F811
    credentials = bytes([5]) + b"admin" + bytes([len(PASSWORD)]) + PASSWORD.encode()  # amtterm redir_auth_old
    sessions = {}
    for kind, name in ((redir.SOL, "sol"), (redir.IDER, "ider")):
        conn = actions.redirection._Redirection(PLAN.client(i), 16995, pki["ca"], 5.0)
        assert conn.open(kind, credentials, auth_type=redir.AUTH_USER_PASSWORD) == "started"
        sessions[name] = conn
    return sessions


def _reset_and_watch(device: AmtDevice, sessions, result: actions.RedirectionResult, seconds: float = 3.0) -> None:
    device.request_power_state(10)  # master bus reset, as MeshCommander's "Reset to IDE-R"
    actions.redirection._watch(sessions["sol"], sessions["ider"], redir.boot_image("lab image"), result,
                   until=time.monotonic() + seconds)


def test_the_image_boots_only_after_the_boot_configuration_and_the_bios_clears_it(sim, pki):  # noqa: F811
    device, sessions = _device(pki, 0), _sessions(pki, 0)
    try:
        plain = actions.RedirectionResult()
        _reset_and_watch(device, sessions, plain, seconds=1.5)  # a reset without the boot configuration
        assert plain.ider_reads == [] and not plain.booted_from_image
        assert plain.sol_text == ""  # UseSOL was not set: the BIOS does not redirect its console

        result = actions.RedirectionResult()
        before = actions.redirection._set_boot_configuration(device, result)
        assert result.boot_config == "set", result.boot_steps
        staged = device.boot_settings()
        assert (staged["UseIDER"], staged["UseSOL"], staged["IDERBootDevice"], staged["OptionsCleared"]) == \
            ("true", "true", "0", "false")
        _reset_and_watch(device, sessions, result)
        assert result.booted_from_image and result.ider_reads == [0], result
        assert "Booting from IDE-R floppy: lab image" in result.sol_text and result.bios_seen
    finally:
        for conn in sessions.values():
            conn.close()
    after = device.boot_settings()  # the BIOS took the one-time options and cleared them
    assert (after["UseIDER"], after["UseSOL"], after["OptionsCleared"]) == ("false", "false", "true")
    actions.redirection._restore_boot_configuration(device, before, result)
    assert result.restored.startswith("yes: UseIDER=false"), result.restored
    mine = [c for c in sim.calls if c["device"] == "pc0001.vprolab.test"]
    ops = [c["op"] for c in mine]
    assert ops[:2] == ["StartSOLRedirection", "StartIDERRedirection"]
    configured = ops[ops.index("ChangeBootOrder"):]
    assert configured[:5] == ["ChangeBootOrder", "Put", "SetBootConfigRole", "ChangeBootOrder",
                              "RequestPowerStateChange"], ops
    assert ops.count("IDERBoot") == 1 and ops[-1] == "Put"  # one boot from the image; the restore last
    put = next(c for c in mine if c["op"] == "Put")
    assert put["class"] == "AMT_BootSettingData" and put["params"]["UseIDER"] == "true"
    role = next(c for c in mine if c["op"] == "SetBootConfigRole")
    assert role["params"]["Role"] == "1" and role["return"] == 0


def test_a_bios_without_ide_r_boot_is_reported_before_anything_changes(sim, pki):  # noqa: F811
    device = _device(pki, 1)
    before = len(sim.calls)
    result = actions.RedirectionResult()
    assert actions.redirection._set_boot_configuration(device, result) is None
    assert result.boot_config.startswith("the BIOS does not offer IDE-R boot (AMT_BootCapabilities.IDER")
    assert sim.calls[before:] == []  # reads only
    # and a console that sets it anyway: the BIOS boots its hard disk
    sessions = _sessions(pki, 1)
    try:
        device.clear_boot_order()
        current = {k: v for k, v in device.boot_settings().items() if k != "OptionsCleared"}
        device.put_boot_settings({**current, "UseIDER": "true", "UseSOL": "true"})
        device.set_boot_config_role(1)
        forced = actions.RedirectionResult()
        _reset_and_watch(device, sessions, forced)
    finally:
        for conn in sessions.values():
            conn.close()
    assert not forced.booted_from_image and forced.ider_reads == []
    assert "Booting from hard disk... (IDE-R boot is disabled in BIOS Setup)" in forced.sol_text


def test_the_boot_configuration_calls_are_checked_as_firmware_checks_them(sim, pki):  # noqa: F811
    device = _device(pki, 0)
    uri = resource_uri("AMT_BootSettingData")
    with pytest.raises(SoapFault):  # a read-only property in a Put (MeshCommander removes them first)
        device.client.put(uri, dict(device.boot_settings()))
    other = EndpointReference(resource_uri("CIM_BootConfigSetting"), {"InstanceID": "Intel(r) AMT: Boot Configuration 1"})
    with pytest.raises(AmtCallFailed) as wrong:
        device._call("CIM_BootService", "SetBootConfigRole", {"BootConfigSetting": other, "Role": 1})
    assert wrong.value.return_value == 4  # Invalid Reference
    capabilities = device.boot_capabilities()
    assert capabilities["IDER"] and capabilities["SOL"]
