"""Issue 16, item 7: public captured replies of real AMT firmware, read by the probes as they read a device.

Every vector's origin and licence is in README.md. The WS-MAN replies are served byte for byte by a loopback
server (``replay.py``) and read through ``AmtDevice`` over ``WsmanClient``; the hello packets go through
``probes.hello.decode_hello``. What a vector says is asserted as its source shows it, not as the lab would say it.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from replay import replaying

from pytest_vpro.probes import hello as hello_probe
from pytest_vpro.probes.amt import AmtDevice
from pytest_vpro.probes.wsman import DigestAuth, WsmanClient

HERE = Path(__file__).resolve().parent
G = "gwm/amt/"
C = "gwm/cim/"
REPLIES = {
    ("AMT_SetupAndConfigurationService", "Get"): G + "setupandconfiguration/get.xml",
    ("AMT_GeneralSettings", "Get"): G + "general/get.xml",
    ("AMT_RedirectionService", "Get"): G + "redirectionservice/get.xml",
    ("AMT_KerberosSettingData", "Get"): G + "kerberos/get.xml",
    ("AMT_AuthorizationService", "EnumerateUserAclEntries"): G + "authorization/enumerateuseraclentries.xml",
    ("AMT_AuthorizationService", "GetUserAclEntryEx"): G + "authorization/getuseraclentryex.xml",
    ("AMT_TimeSynchronizationService", "GetLowAccuracyTimeSynch"): G + "timesynchronization/getlowaccuracytimesynch.xml",
    ("AMT_SystemPowerScheme", "Enumerate"): G + "systempowerscheme/enumerate.xml",
    ("AMT_SystemPowerScheme", "Pull"): G + "systempowerscheme/pull.xml",
    ("AMT_EthernetPortSettings", "Enumerate"): G + "ethernetport/enumerate.xml",
    ("AMT_EthernetPortSettings", "Pull"): G + "ethernetport/pull.xml",
    ("CIM_AssociatedPowerManagementService", "Get"): C + "associatedpower/managementservice/get.xml",
    ("CIM_SoftwareIdentity", "Enumerate"): C + "software/identity/enumerate.xml",
    ("CIM_SoftwareIdentity", "Pull"): C + "software/identity/pull.xml",
}


@pytest.fixture(scope="module")
def device():
    with replaying(REPLIES) as url:
        yield AmtDevice(WsmanClient(url, auth=DigestAuth("admin", "not-sent"), ca_bundle=None, timeout=5))


def test_setup_and_configuration(device):
    p = device.provisioning()
    assert (p.state, p.state_name, p.mode, p.mode_name((12,))) == (2, "post-provisioning", 1, "admin control")


def test_version_is_the_amt_instance_of_software_identity(device):
    v = device.version()
    assert v.text == "12.0.67" and v.at_least(3, 2, 1) and v.parts[:2] == (12, 0)


def test_general_settings_and_the_digest_realm_form(device):
    g = device.general_settings()
    assert (g.host_name, g.domain_name, g.network_interface_enabled) == ("Test Host Name", "Test Domain Name", True)
    assert g.digest_realm == "Digest:F3EB554784E729164447A89F60B641C5"


def test_redirection_service(device):
    r = device.redirection()
    assert (r.enabled_state, r.sol, r.ider, r.listener_enabled) == (32771, True, True, True)


def test_kerberos_settings_without_a_realm(device):
    k = device.kerberos_settings()
    assert (k.realm, k.spns, k.enabled, k.max_clock_tolerance_min) == ("", (), False, None)


def test_acl_entries_are_digest_users_with_one_realm_each(device):
    entries = device.acl_entries()
    assert [e.handle for e in entries] == [1, 2]  # TotalCount 2, Handles 1 and 2
    assert all((e.digest_user, e.kerberos_sid, e.realms, e.access, e.sid_problem) == ("$$uns", "", (16,), 0, "")
               for e in entries)
    assert entries[0].realm_names == ("local UN",)


def test_clock_power_and_network(device):
    assert device.clock().device_time == 1704586865
    power = device.power_state()
    assert power.state == 2 and power.name == "on" and power.available == (10, 8, 5, 11, 4, 7, 14, 12)
    schemes = device.power_schemes()
    assert [(s.instance_id, s.description) for s in schemes] == [
        ("SCHEME 0", "Mobile: ON in S0"), ("SCHEME 1", "Mobile: ON in S0, ME Wake in S3, S4-5 (AC only)")]
    assert str(uuid.UUID(schemes[0].guid)) == schemes[0].guid  # base64 of 16 bytes, shown as a GUID
    wired, wireless = device.ethernet_settings()
    assert wired.instance_id.endswith("Settings 0") and not wired.wireless
    assert wireless.instance_id.endswith("Settings 1") and wireless.wireless and wireless.physical_type == 3


def test_a_kerberos_entry_is_decoded_from_its_binary_sid():
    """Derived (README.md): the GWM reply's shape with a KerberosUserSid; no public capture of one exists."""
    replies = {**REPLIES, ("AMT_AuthorizationService", "GetUserAclEntryEx"): "derived/getuseraclentryex-kerberos.xml"}
    with replaying(replies) as url:
        entries = AmtDevice(WsmanClient(url, auth=DigestAuth("admin", "x"), ca_bundle=None, timeout=5)).acl_entries()
    assert {(e.kerberos_sid, e.kerberos_sid_wire, e.realms, e.access) for e in entries} == {
        ("S-1-5-21-1004336348-1177238915-682003330-512", "AQUAAAAAAAUVAAAA3PTcO4M9K0aCi6YoAAIAAA==", (2, 4, 5, 13), 2)}


HELLOS = {
    "hello-1.hex": (True, 0, "939b524b-13d4-1d18-e487-1c697a6b7a2b", 23),
    "hello-2.hex": (True, 0, "939b524b-13d4-1d18-e487-1c697a6b7a2b", 24),
    "hello-3.hex": (True, 1, "d2ffc23e-9dd1-412d-860a-54b2039b72ff", 24),
}


@pytest.mark.parametrize("name", sorted(HELLOS))
def test_captured_hello_packets_decode(name):
    data = bytes.fromhex((HERE / "meshcentral" / name).read_text().strip())
    h = hello_probe.decode_hello(data)
    admin, retry, guid, count = HELLOS[name]
    assert (h.admin_credentials_set, h.version, h.retry_count, str(h.uuid)) == (admin, 3, retry, guid)
    assert len(h.hashes) == count and all(t == 2 and len(d) == 32 for t, d in h.hashes)  # SHA-256 only
    assert h.hashes[0][1].hex().startswith("c3846bf24b9e93ca64274c0ec67c1ecc5e024ffcacd2d74019350e81fe546ae4")


# -- the IDE-R boot configuration (S5-SOL-IDER-SESSION): the calls a console makes, answered by captures
BOOT_REPLIES = {
    ("AMT_BootCapabilities", "Get"): G + "boot/capabilities/get.xml",
    ("AMT_BootSettingData", "Get"): G + "boot/settingdata/get.xml",
    ("AMT_BootSettingData", "Put"): G + "boot/settingdata/put.xml",
    ("CIM_BootConfigSetting", "ChangeBootOrder"): C + "boot/configsetting/changebootorder.xml",
    ("CIM_BootService", "SetBootConfigRole"): C + "boot/service/setbootconfigrole.xml",
}


def test_the_boot_configuration_of_an_ide_r_boot_against_captured_replies():
    from pytest_vpro import actions
    from pytest_vpro.probes.amt import BOOT_READ_ONLY

    with replaying(BOOT_REPLIES) as url:
        device = AmtDevice(WsmanClient(url, auth=DigestAuth("admin", "not-sent"), ca_bundle=None, timeout=5))
        capabilities = device.boot_capabilities()
        assert capabilities["IDER"] and capabilities["SOL"] and not capabilities["BIOSPause"]
        settings = device.boot_settings()
        assert (settings["UseIDER"], settings["IDERBootDevice"], settings["OptionsCleared"]) == ("false", "0", "true")
        assert settings["InstanceID"] == "Intel(r) AMT:BootSettingData 0"
        assert settings["BIOSLastStatus"] == ["2", "0"]  # read-only, repeated: left out of the Put
        result = actions.RedirectionResult()
        before = actions.redirection._set_boot_configuration(device, result)
    assert result.boot_config == "set", result.boot_steps
    assert result.boot_steps[1:] == ["ChangeBootOrder (no source): ok",
                                     "Put AMT_BootSettingData UseIDER=true IDERBootDevice=0 UseSOL=true: ok",
                                     "SetBootConfigRole(1): ok", "ChangeBootOrder (no source): ok"]
    assert before["UseIDER"] == "false" and BOOT_READ_ONLY & set(before)  # what the restore puts back, less these
