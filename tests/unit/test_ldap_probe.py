"""probes/ldap.py: security descriptor parsing against golden bytes, the access walk, TokenSz, error mapping.

GOLDEN_SD was produced by Samba's own NDR code (an implementation independent of impacket, which the probe uses):

    /usr/bin/python3 -c "from samba.dcerpc import security; from samba.ndr import ndr_pack
    print(ndr_pack(security.descriptor.from_sddl(SDDL, security.dom_sid('S-1-5-21-1-2-3'))).hex())"

with SDDL = GOLDEN_SDDL below.
"""
from __future__ import annotations

import socket

import pytest

from pytest_vpro.environment import Credential
from pytest_vpro.probes import ldap as probe
from pytest_vpro.probes.errors import MalformedReply, Unreachable
from pytest_vpro.secrets import SecretRef

DOM = "S-1-5-21-1-2-3"
COMPUTER_CLASS = "bf967a86-0de6-11d0-a285-00aa003049e2"  # schemaIDGUID of class computer (MS-ADSC)
GOLDEN_SDDL = ("O:DAG:DUD:(A;CI;GA;;;S-1-5-21-1-2-3-1105)(D;;WD;;;S-1-5-21-1-2-3-1107)"
               f"(OA;CI;CCDC;{COMPUTER_CLASS};;S-1-5-21-1-2-3-1106)(OA;CIIO;RP;;{COMPUTER_CLASS};AU)"
               "(A;ID;0xf01ff;;;S-1-1-0)")
GOLDEN_SD = bytes.fromhex(
    "010004801400000030000000000000004c00000001050000000000051500000001000000020000000300000000020000"
    "010500000000000515000000010000000200000003000000010200000400c40005000000000224000000001001050000"
    "000000051500000001000000020000000300000051040000010024000000040001050000000000051500000001000000"
    "020000000300000053040000050238000300000001000000867a96bfe60dd011a28500aa003049e20105000000000005"
    "1500000001000000020000000300000052040000050a28001000000002000000867a96bfe60dd011a28500aa003049e2"
    "01010000000000050b00000000101400ff010f00010100000000000100000000")


def test_golden_security_descriptor():
    sd = probe.parse_security_descriptor(GOLDEN_SD)
    assert sd.owner == f"{DOM}-512" and sd.group == f"{DOM}-513" and not sd.dacl_protected
    a, deny, obj, inherit_only, inherited = sd.dacl
    assert (a.kind, a.trustee, a.mask, a.rights, a.flags) == (
        "allow", f"{DOM}-1105", 0x10000000, ("GENERIC_ALL",), ("CONTAINER_INHERIT",))
    assert (a.object_type, a.inherited_object_type, a.inherited, a.inheritable) == (None, None, False, True)
    assert (deny.kind, deny.trustee, deny.rights, deny.flags) == ("deny", f"{DOM}-1107", ("WRITE_DAC",), ())
    assert (obj.kind, obj.ace_type, obj.rights, obj.object_type, obj.inherited_object_type) == (
        "allow", 0x05, ("CREATE_CHILD", "DELETE_CHILD"), COMPUTER_CLASS, None)
    assert (inherit_only.trustee, inherit_only.rights, inherit_only.inherited_object_type, inherit_only.flags) == (
        "S-1-5-11", ("READ_PROPERTY",), COMPUTER_CLASS, ("CONTAINER_INHERIT", "INHERIT_ONLY"))
    assert (inherited.trustee, inherited.mask, inherited.rights, inherited.inherited) == (
        "S-1-1-0", 0xF01FF, ("FULL_CONTROL",), True)
    assert sd.raw == GOLDEN_SD
    assert str(obj) == f"ALLOW {DOM}-1106 CREATE_CHILD|DELETE_CHILD object={COMPUTER_CLASS} CONTAINER_INHERIT"
    assert sd.describe().splitlines()[:3] == [f"owner {DOM}-512", f"group {DOM}-513", "DACL"]


def test_grants():
    sd = probe.parse_security_descriptor(GOLDEN_SD)
    site_server, denied, creator = f"{DOM}-1105", f"{DOM}-1107", f"{DOM}-1106"
    assert probe.grants(sd, site_server, "FULL_CONTROL")  # GA expands to 0xF01FF (MS-ADTS 5.1.3.3)
    assert probe.grants(sd, site_server, ["CREATE_CHILD", "WRITE_PROPERTY"], to_children=True)
    assert probe.grants(sd, site_server, probe.FULL_CONTROL, inherited=False)
    assert not probe.grants(sd, site_server, "FULL_CONTROL", inherited=True)
    # object ACE: creating computers, not anything else
    assert probe.grants(sd, creator, "CREATE_CHILD", object_type=COMPUTER_CLASS)
    assert not probe.grants(sd, creator, "CREATE_CHILD")
    assert not probe.grants(sd, creator, "CREATE_CHILD", object_type="bf967aba-0de6-11d0-a285-00aa003049e2")
    # inherit-only: nothing on the OU, READ_PROPERTY on computers created under it
    assert not probe.grants(sd, "S-1-5-11", "READ_PROPERTY")
    assert probe.grants(sd, "S-1-5-11", "READ_PROPERTY", to_children=True, child_class=COMPUTER_CLASS)
    assert not probe.grants(sd, "S-1-5-11", "READ_PROPERTY", to_children=True,
                            child_class="bf967aba-0de6-11d0-a285-00aa003049e2")
    # the deny ACE comes before Everyone's full control; a set of SIDs is a user plus its groups
    assert not probe.grants(sd, denied, "READ_CONTROL")
    assert not probe.grants(sd, [denied, "S-1-1-0"], "WRITE_DAC")
    assert probe.grants(sd, [denied, "S-1-1-0"], "WRITE_OWNER")
    assert not probe.grants(sd, "S-1-5-21-9-9-9-500", "READ_CONTROL")


def test_null_dacl_and_rights_names():
    sd = probe.SecurityDescriptor(owner=None, group=None, dacl=None, control=0, raw=b"")
    assert probe.grants(sd, "S-1-5-7", "FULL_CONTROL") and "NULL DACL" in sd.describe()
    assert probe.rights_names(0xF01FF | 0x100000) == ("FULL_CONTROL", "SYNCHRONIZE")
    assert probe.rights_mask(["READ_PROPERTY", "list_children"]) == 0x14
    assert probe.expand_generic(0x80000000) == 0x20094
    with pytest.raises(ValueError, match="unknown right"):
        probe.rights_mask("READ_MINDS")


def test_malformed_security_descriptor():
    with pytest.raises(MalformedReply, match="unparseable security descriptor"):
        probe.parse_security_descriptor(GOLDEN_SD[:40])


def test_token_size_formula():
    # KB327825: 1200 + 40 d + 8 s
    assert probe.token_size_estimate({}) == 1200
    assert probe.token_size_estimate({"global": 40}) == 1200 + 8 * 40
    assert probe.token_size_estimate({"domain_local": 30, "universal_other_domain": 5, "sid_history": 2,
                                      "global": 10, "universal_same_domain": 3}) == 1200 + 40 * 37 + 8 * 13
    assert probe.token_size_estimate({"unresolved": 1}) == 1240
    # about 30 domain-local groups pass AMT's ~4 KB limit only just; 75 do not
    assert probe.token_size_estimate({"domain_local": 70}) < 4096 < probe.token_size_estimate({"domain_local": 75})
    with pytest.raises(ValueError, match="unknown group kind"):
        probe.token_size_estimate({"local": 1})
    with pytest.raises(ValueError, match="negative"):
        probe.token_size_estimate({"global": -1})


def test_sid_filter_is_binary():
    assert probe._sid_filter(["S-1-5-32-544"]) == (
        r"(|(objectSid=\01\02\00\00\00\00\00\05\20\00\00\00\20\02\00\00))")


def test_split_server():
    assert probe._split_server("dc01.lab.test", 636) == ("dc01.lab.test", 636)
    assert probe._split_server("dc01.lab.test:3269", 636) == ("dc01.lab.test", 3269)


# --------------------------------------------------------------------------- error mapping against sockets

def _password_credential(monkeypatch) -> Credential:
    monkeypatch.setenv("VPRO_TEST_LDAP_PW", "Secret-Value-123")
    return Credential(user="reader@lab.test", password=SecretRef("env:VPRO_TEST_LDAP_PW"))


def test_refused_is_unreachable(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.94.3.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unreachable) as caught:
        probe.connect([f"127.94.3.1:{port}"], credential=_password_credential(monkeypatch), ca_file=None,
                      timeout=0.5)
    assert caught.value.how == "connection refused" and caught.value.port == port


def test_every_server_is_tried(monkeypatch):
    ports = []
    for last in (1, 2):
        with socket.socket() as s:
            s.bind((f"127.94.3.{last}", 0))
            ports.append(s.getsockname()[1])
    with pytest.raises(Unreachable, match="no LDAP server answered") as caught:
        probe.connect([f"127.94.3.1:{ports[0]}", f"127.94.3.2:{ports[1]}"],
                      credential=_password_credential(monkeypatch), ca_file=None, timeout=0.5)
    assert "Secret-Value-123" not in str(caught.value)


def test_silent_server_is_a_timeout(monkeypatch):
    """A listener that accepts and never speaks TLS: no answer within the timeout."""
    with socket.socket() as s:
        s.bind(("127.94.3.3", 0))
        s.listen(4)
        with pytest.raises(Unreachable) as caught:
            probe.connect([f"127.94.3.3:{s.getsockname()[1]}"], credential=_password_credential(monkeypatch),
                          ca_file=None, timeout=0.5)
    assert "Secret-Value-123" not in str(caught.value)


def test_missing_password_is_auth_failed(monkeypatch):
    monkeypatch.delenv("VPRO_TEST_LDAP_PW", raising=False)
    cred = Credential(user="reader@lab.test", password=SecretRef("env:VPRO_TEST_LDAP_PW"))
    with pytest.raises(probe.AuthFailed) as caught:
        probe.connect(["127.94.3.4"], credential=cred, ca_file=None, timeout=0.5)
    assert caught.value.reason == probe.AuthFailed.NO_PASSWORD
