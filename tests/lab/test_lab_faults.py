"""Planted faults (pytest_vpro/lab/faults/) as independent clients and the project's probes see them.

Three labs on net 100, one after the other (class-scoped): A plants every client fault on its own client plus
the site-wide faults that do not get in each other's way; B plants the faults that would spoil A (an expired
issuing CA, a wrong ProvisionServer, restricted realms, a huge console token); C is healthy but for
two faults, and is the healthy side of every site-wide comparison.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from ldap3.protocol.formatters.formatters import format_sid

from pytest_vpro.lab import estate, faults, manager
from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.samba_directory import CERTIFICATE_ENROLLMENT
from pytest_vpro.lab.samba_dns import DSPROPERTY_ZONE_ALLOW_UPDATE, parse_dns_property
from pytest_vpro.probes import dhcp
from pytest_vpro.probes import ldap as ldap_probe
from pytest_vpro.probes import x509 as x509_probe
from pytest_vpro.probes.amt import AmtDevice
from pytest_vpro.probes.dns import Resolver, route_connections
from pytest_vpro.probes.winrm import BasicAuth, WinRM, sms_namespace
from pytest_vpro.probes.wsman import AuthFailed, DigestAuth, HttpStatusError, KerberosAuth, WsmanClient

NET = 100
PLAN = AddressPlan(NET)
CATALOG = Path(__file__).resolve().parents[2] / "pytest_vpro" / "catalog.yaml"

LAB_A = [
    {"fault": "fqdn_underscore", "client": 2}, {"fault": "missing_ptr", "client": 3},
    {"fault": "old_agent", "client": 4}, {"fault": "wrong_ptr", "client": 5},
    {"fault": "no_amt_object", "client": 6}, {"fault": "amt_object_disabled", "client": 7},
    {"fault": "missing_spn", "client": 9}, {"fault": "root_hash_missing", "client": 10},
    {"fault": "power_policy_s0_only", "client": 11}, {"fault": "sol_ider_disabled", "client": 12},
    {"fault": "clock_skew", "client": 13, "seconds": 900}, {"fault": "console_user_not_in_acl", "client": 14},
    {"fault": "kerberos_disabled", "client": "pc0015"}, {"fault": "hostname_mismatch", "client": 16},
    {"fault": "not_imported", "client": 17}, {"fault": "agent_on_oob_client", "client": 18},
    {"fault": "no_hellos", "client": 19}, {"fault": "legacy_amt", "client": 20},
    {"fault": "provisioning_failed", "client": 21, "reason": "planted by the lab"},
    {"fault": "amt_321", "client": 22}, {"fault": "unreachable", "client": "pc0023.vprolab.test"},
    "dhcp_no_option6", "dhcp_no_option15", "dhcp_option81_no_updates", "zone_no_dynamic_updates",
    "issuing_ca_4096", "expired_crl", "prov_cert_no_amt_marker", "prov_cert_no_server_auth",
    "template_no_server_auth", "template_no_subject_in_request", "template_no_enroll_right",
    "amt_container_no_full_control", {"fault": "hotfix_missing", "kb": "KB960804"}, "no_oob_service_point_role",
    "webui_disabled", "sccm_rtm", "winrm_1_0", "no_msxml6", "no_telnet_client",
]
LAB_B = ["expired_issuing_ca", {"fault": "provision_server_wrong_address", "address": f"127.{NET}.0.99"},
         {"fault": "realms_disabled", "realms": [3, 13]}, "console_user_many_groups"]
LAB_C = ["no_provision_server_record", "no_auto_provision_collection"]


def _lab(tmp_path_factory, name: str, lab: dict):
    root = tmp_path_factory.mktemp(name)
    description = root / "lab.yaml"
    description.write_text(json.dumps({"lab": {"net": NET, "canaries": 0, "state_dir": "state", **lab}}))
    state = root / "state"
    t0 = time.monotonic()
    info = manager.up(description, state=state, log=lambda line: None)
    info["_state"], info["_up_s"] = state, time.monotonic() - t0
    try:
        yield info
    finally:
        manager.down(state)


@pytest.fixture(scope="class")
def lab_a(tmp_path_factory):
    yield from _lab(tmp_path_factory, "faults-a", {"clients": 24, "unprovisioned": 1, "faults": LAB_A})


@pytest.fixture(scope="class")
def lab_b(tmp_path_factory):
    yield from _lab(tmp_path_factory, "faults-b", {"clients": 3, "unprovisioned": 1, "faults": LAB_B})


@pytest.fixture(scope="class")
def lab_c(tmp_path_factory):
    yield from _lab(tmp_path_factory, "faults-c", {"clients": 4, "unprovisioned": 1, "faults": LAB_C})


# ---------------------------------------------------------------------------------------------- independent clients
def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)


def dig(*args: str) -> list[str]:
    return run(["dig", "+short", f"@{PLAN.dc}", *args]).stdout.split()


def ldapsearch(info, base: str, ldap_filter: str, *attrs: str, scope: str = "sub") -> str:
    env = {**os.environ, "LDAPTLS_CACERT": info["dc"]["ca_cert"]}
    out = run(["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-H", f"ldaps://{PLAN.dc}", "-x", "-D",
               info["dc"]["admin_user"], "-y", "/dev/stdin", "-s", scope, "-b", base, ldap_filter, *attrs],
              input=info["dc"]["admin_password"], env=env)
    assert out.returncode in (0, 32), out.stderr  # 32: no such object
    return out.stdout


def amtopmgr_log(info, name: str = "AMTOPMGR.LOG") -> str:
    out = run(["smbclient", f"//{PLAN.dc}/SMS_LAB", "-U", "Administrator", "-s", info["dc"]["smb_conf"],
               "-c", f"get Logs/{name} -"], input=info["dc"]["admin_password"] + "\n")
    assert out.returncode == 0, out.stderr
    return out.stdout


def kinit(info, tmp_path, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("KRB5_CONFIG", info["dc"]["krb5_conf"])
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path}/cc")
    assert run(["kinit", info["console"]["user"]], input=info["console"]["password"] + "\n").returncode == 0
    return dict(os.environ)


def device(info, number: int) -> AmtDevice:
    c = info["clients"][number - 1]
    return AmtDevice(WsmanClient.for_amt(c["address"], tls=False, auth=DigestAuth(c["amt_user"], c["amt_password"]),
                                         ca_bundle=None, timeout=5))


def winrm(info, host: str = "sccm01") -> WinRM:
    """WinRM to a lab host as Administrator: Kerberos to the servers and the console host (Basic is off there, as
    on Windows), Basic over https to the in-band PCs, which the lab's environment lists in basic_hosts."""
    auth = (lab_kerberos(info, host) if host in ("sccm01", "ca01", "console01")
            else BasicAuth("Administrator", info["dc"]["admin_password"]))
    return WinRM(f"https://{host}.vprolab.test:5986/wsman", auth=auth, ca_bundle=info["pki"]["root_cert"],
                 timeout=10)


def lab_kerberos(info, host: str):
    from pytest_vpro.probes.kerberos import ConsoleCredentials, NegotiateAuth, use_config

    use_config(info["dc"]["krb5_conf"])
    creds = ConsoleCredentials.with_password("Administrator@VPROLAB.TEST", info["dc"]["admin_password"])
    return NegotiateAuth(creds, "VPROLAB.TEST", mutual=True, spn=f"HTTP/{host}.vprolab.test@VPROLAB.TEST")


def console_files(info) -> set[str]:
    """The files of the console host's system folder the console checks look for (CIM_DataFile)."""
    with route_connections(Resolver([PLAN.dc]), ["vprolab.test"]), winrm(info, "console01") as w:
        return {f["Name"].rsplit("\\", 1)[-1] for f in w.enumerate("CIM_DataFile")}


def site_wmi(info) -> dict:
    """What the site server says over WinRM, read once per lab."""
    with route_connections(Resolver([PLAN.dc]), ["vprolab.test"]), winrm(info) as w:
        sms = sms_namespace("LAB")
        return {
            "site": w.enumerate("SMS_Site", sms)[0],
            "roles": [r["RoleName"] for r in w.enumerate("SMS_SCI_SysResUse", sms)],
            "component": w.enumerate("SMS_SCI_Component", sms)[0],
            "systems": {s["NetbiosName"]: s for s in w.enumerate("SMS_R_System", sms)},
            "collections": w.enumerate("SMS_CollectionSettings", sms),
            "hotfixes": {h["HotFixID"] for h in w.enumerate("Win32_QuickFixEngineering")},
            "products": [p["Name"] for p in w.enumerate("Win32_Product")],
            "features": {f["Name"]: f["InstallState"] for f in w.enumerate("Win32_OptionalFeature")},
            "stack": w.registry_value("HKLM", r"SOFTWARE\Microsoft\Windows\CurrentVersion\WSMAN", "StackVersion"),
            "full_version": w.registry_value("HKLM", r"SOFTWARE\Wow6432Node\Microsoft\SMS\Setup", "Full Version"),
        }


def peer_certificate(address: str) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # we inspect it, we do not trust it
    with socket.create_connection((address, 16993), timeout=5) as raw, context.wrap_socket(raw) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def prop(component: dict, name: str):
    return next(p for p in component["Props"] if p["PropertyName"] == name)


# ---------------------------------------------------------------------------------------------- data, no lab
def test_every_fault_is_documented_and_names_real_catalog_checks():
    import yaml

    ids = {row["id"] for row in yaml.safe_load(CATALOG.read_text())}
    for row in faults.table():
        assert row["changes"] and bool(row["fails"]) != bool(row["passes"]), row["fault"]  # a healthy variant passes
        for check in row["fails"] + row["passes"]:
            assert check in ids or check == "HF-<kb>", (row["fault"], check)
        assert all(row["param_docs"].values()), row["fault"]
    doc = (Path(__file__).resolve().parents[2] / "docs" / "lab.md").read_text()
    assert all(f"`{name}`" in doc for name in faults.FAULTS)


@pytest.mark.parametrize("entry, message", [
    ({"fault": "no_such_fault"}, "unknown fault 'no_such_fault'; known faults: agent_on_oob_client"),
    ({"fault": "clock_skew"}, "clock_skew is a client fault"),
    ({"fault": "clock_skew", "client": 9}, "client 9 is not in this lab"),
    ({"fault": "clock_skew", "client": 1, "secs": 5}, "has no parameter(s) secs; its parameters: seconds"),
    ({"fault": "clock_skew", "client": 1, "seconds": "lots"}, "clock_skew.seconds must be int or float"),
    ({"fault": "dhcp_no_option6", "client": 1}, "is site-wide"),
    ({"fault": "old_agent", "client": 1}, "needs an in-band client; pc0001.vprolab.test is out-of-band"),
    ({"fault": "hotfix_missing", "kb": "KB1"}, "'KB1' is not a hot fix the site server lists"),
    ({"fault": "provision_server_wrong_address", "address": "sccm02"}, "'sccm02' is not an IPv4 address"),
])
def test_bad_faults_are_refused_with_the_known_ones_named(tmp_path, entry, message):
    path = tmp_path / "lab.yaml"
    path.write_text(json.dumps({"lab": {"clients": 8, "net": NET, "faults": [entry]}}))
    with pytest.raises(estate.DescriptionError) as err:
        estate.load_description(path)
    assert message in str(err.value) and "lab.faults[0]" in str(err.value)


def test_a_fault_needing_a_provisioned_client_is_judged_after_the_other_faults():
    clients = estate.plan_clients(estate.Description(clients=4, net=NET), PLAN)
    with pytest.raises(estate.DescriptionError, match="missing_spn needs a provisioned client"):
        faults.parse([{"fault": "no_hellos", "client": 2}, {"fault": "missing_spn", "client": 2}], clients)


# ---------------------------------------------------------------------------------------------- lab A
class TestClientFaults:
    def test_lab_json_records_what_was_planted(self, lab_a):
        planted = {(f["fault"], f["client"]) for f in lab_a["faults"]}
        assert ("fqdn_underscore", "pc_0002.vprolab.test") in planted and ("webui_disabled", None) in planted
        hotfix = next(f for f in lab_a["faults"] if f["fault"] == "hotfix_missing")
        assert hotfix["params"] == {"kb": "KB960804"} and hotfix["fails"] == ["HF-KB960804"]
        assert lab_a["_up_s"] < 40

    def test_dns(self, lab_a):
        assert dig("pc_0002.vprolab.test") == [PLAN.client(1)]           # fqdn_underscore
        assert dig("-x", PLAN.client(0)) == ["pc0001.vprolab.test."]      # healthy
        assert dig("-x", PLAN.client(2)) == []                            # missing_ptr
        assert dig("pc0003.vprolab.test") == [PLAN.client(2)]
        assert dig("-x", PLAN.client(4)) == ["old-pc0005.vprolab.test."]  # wrong_ptr
        assert dig("ProvisionServer.vprolab.test") == [PLAN.site_server]

    def test_directory_objects(self, lab_a):
        amt = "OU=AMT,DC=vprolab,DC=test"
        found = ldapsearch(lab_a, amt, "(objectClass=computer)", "cn", "servicePrincipalName",
                           "userAccountControl", scope="one")
        objects = {block.split("\n")[0]: block for block in found.strip().split("\n\n")}
        assert "dn: CN=PC0001,OU=AMT,DC=vprolab,DC=test" in objects
        assert "dn: CN=PC0006,OU=AMT,DC=vprolab,DC=test" not in objects                  # no_amt_object
        assert "userAccountControl: 4096" in objects["dn: CN=PC0001,OU=AMT,DC=vprolab,DC=test"]
        assert "userAccountControl: 4098" in objects["dn: CN=PC0007,OU=AMT,DC=vprolab,DC=test"]  # disabled
        pc9 = objects["dn: CN=PC0009,OU=AMT,DC=vprolab,DC=test"]                         # missing_spn
        assert "HTTP/pc0009.vprolab.test:16992" in pc9 and "HTTP/pc0009.vprolab.test:16993" not in pc9
        assert "dn: CN=PC_0002,OU=AMT,DC=vprolab,DC=test" in objects

    def test_kerberos_tickets(self, lab_a, tmp_path, monkeypatch):
        kinit(lab_a, tmp_path, monkeypatch)
        assert run(["kvno", "HTTP/pc0001.vprolab.test:16993"]).returncode == 0
        assert run(["kvno", "HTTP/pc0006.vprolab.test:16993"]).returncode != 0   # no_amt_object
        # kerberos_disabled: Negotiate is refused, KrbEnabled is false; a healthy device takes the same ticket
        for number, works in ((1, True), (15, False)):
            c = lab_a["clients"][number - 1]
            client = WsmanClient(f"http://{c['address']}:16992/wsman", ca_bundle=None, timeout=5,
                                 auth=KerberosAuth(spn_host=f"{c['fqdn']}:16992"))
            if works:
                assert AmtDevice(client).general_settings().host_name == "pc0001"
            else:
                with pytest.raises(AuthFailed):
                    AmtDevice(client).general_settings()
        assert device(lab_a, 1).kerberos_settings().enabled is True
        assert device(lab_a, 15).kerberos_settings().enabled is False

    def test_device_settings_over_wsman(self, lab_a):
        healthy = device(lab_a, 1)
        root = x509_probe.fingerprint(x509.load_pem_x509_certificate(
            Path(lab_a["pki"]["root_cert"]).read_bytes()), "sha256")
        assert [h.hex for h in healthy.certificate_hashes()] == [root]
        assert [h.hex for h in device(lab_a, 10).certificate_hashes()] == []              # root_hash_missing
        assert healthy.power_policy().on_in_all_states
        assert not device(lab_a, 11).power_policy().on_in_all_states                     # power_policy_s0_only
        assert healthy.redirection().enabled_state == 32771
        assert device(lab_a, 12).redirection().enabled_state == 32768                     # sol_ider_disabled
        assert abs(healthy.clock().offset_s) < 5
        assert 890 < device(lab_a, 13).clock().offset_s < 910                             # clock_skew
        console = ldapsearch(lab_a, "CN=Users,DC=vprolab,DC=test", "(sAMAccountName=amtadmin)", "objectSid")
        console_sid = format_sid(base64.b64decode(console.split("objectSid:: ")[1].split()[0]))
        assert [e.kerberos_sid for e in healthy.acl_entries()] == [console_sid]
        assert [e.kerberos_sid for e in device(lab_a, 14).acl_entries()][0].endswith("-500")  # not_in_acl
        assert healthy.general_settings().host_name == "pc0001"
        assert device(lab_a, 16).general_settings().host_name == "pc0016-me"             # hostname_mismatch
        assert device(lab_a, 2).general_settings().host_name == "pc_0002"
        assert device(lab_a, 22).version().text == "3.2.1"                               # amt_321
        with pytest.raises(HttpStatusError):                                              # legacy_amt: no WS-MAN
            device(lab_a, 20).version()
        assert device(lab_a, 19).provisioning().state == 0                                # no_hellos
        with pytest.raises(ConnectionRefusedError):                                       # unreachable
            socket.create_connection((PLAN.client(22), 16992), timeout=3)

    def test_device_tls_certificates(self, lab_a):
        assert x509_probe.common_name(peer_certificate(PLAN.client(0))) == "pc0001.vprolab.test"
        assert not x509_probe.is_self_signed(peer_certificate(PLAN.client(0)))
        assert x509_probe.is_self_signed(peer_certificate(PLAN.client(21)))              # amt_321

    def test_amtopmgr_log(self, lab_a):
        deadline, text = time.monotonic() + 15, ""
        healthy_unprovisioned = lab_a["clients"][23]
        while healthy_unprovisioned["uuid"] not in text and time.monotonic() < deadline:
            time.sleep(0.5)
            text = amtopmgr_log(lab_a)
        assert f"Received hello packet (out of band) from {PLAN.client(23)}" in text
        assert lab_a["clients"][18]["uuid"] not in text and "pc0019" not in text          # no_hellos
        assert ("Provisioning failed for AMT device pc0021.vprolab.test, UUID "
                f"{lab_a['clients'][20]['uuid']}. Reason: planted by the lab") in text      # provisioning_failed
        assert "Second stage provisioning completed successfully for AMT device pc0021" not in text
        assert "Second stage provisioning completed successfully for AMT device pc0008" in text
        assert "pc0001" not in text  # provisioned before the log rolled over: only in its history
        assert "Second stage provisioning completed successfully for AMT device pc0001" in amtopmgr_log(
            lab_a, "AMTOPMGR.lo_")

    def test_site_server_over_winrm(self, lab_a):
        wmi = site_wmi(lab_a)
        systems = wmi["systems"]
        assert "Out of Band Management Controller Import" in systems["PC0001"]["AgentName"]
        assert "Out of Band Management Controller Import" not in systems["PC0017"].get("AgentName", [])
        assert systems["PC0001"]["Client"] == 0 and systems["PC0018"]["Client"] == 1         # agent_on_oob
        assert systems["PC0008"]["ClientVersion"] == "4.00.6221.1000"
        assert systems["PC0004"]["ClientVersion"] == "4.00.5931.0001"                        # old_agent
        assert systems["PC0020"]["AMTFullVersion"] == "3.0.0"                                # legacy_amt
        assert systems["PC0022"]["AMTFullVersion"] == "3.2.1"                                # amt_321
        assert not any("Translator" in p for p in wmi["products"])
        # site-wide: the healthy values are asserted on lab C
        assert wmi["site"]["Version"] == "4.00.5931.0000" == wmi["full_version"]            # sccm_rtm
        assert "SMS Out of Band Service Point" not in wmi["roles"]                           # no_oob_sp_role
        assert prop(wmi["component"], "Enable Web UI")["Value"] == 0                         # webui_disabled
        assert "KB960804" not in wmi["hotfixes"] and "KB942841" in wmi["hotfixes"]          # hotfix_missing
        assert wmi["stack"] == "1.0" and "KB936059" not in wmi["hotfixes"]                   # winrm_1_0
        assert not {"msxml6.dll", "telnet.exe"} & console_files(lab_a)                      # no_msxml6, no_telnet

    def test_dhcp_options(self, lab_a):
        reply = dhcp.inform(PLAN.dhcp, client_address=PLAN.client(0), fqdn="pc0001.vprolab.test", timeout=3)
        assert reply.dns_servers == [] and reply.domain_name is None                        # option 6, 15
        assert reply.client_fqdn.no_updates and not reply.client_fqdn.server_updates_a      # option 81

    def test_directory_settings(self, lab_a):
        zone = ldapsearch(lab_a, "DC=vprolab.test,CN=MicrosoftDNS,DC=DomainDnsZones,DC=vprolab,DC=test",
                          "(objectClass=dnsZone)", "dNSProperty", scope="base")
        assert _allow_update(zone) == 0                                                      # zone_no_dynamic_upd.
        template = ldapsearch(lab_a, "CN=IntelAMTWebServer,CN=Certificate Templates,CN=Public Key Services,"
                              "CN=Services,CN=Configuration,DC=vprolab,DC=test", "(objectClass=*)",
                              "pKIExtendedKeyUsage", "msPKI-Certificate-Name-Flag", scope="base")
        assert "pKIExtendedKeyUsage: 1.3.6.1.5.5.7.3.2" in template                          # no_server_auth
        assert "msPKI-Certificate-Name-Flag: 0" in template                                  # no_subject
        rights = _site_server_rights(lab_a)
        assert not rights["template_enroll"]                                                 # no_enroll_right
        assert not rights["container_full_control"] and rights["container_read"]             # no_full_control

    def test_pki(self, lab_a):
        chain = x509_probe.load_chain(Path(lab_a["pki"]["provisioning_chain"]).read_bytes())
        leaf, issuing = chain[0], chain[1]
        assert not x509_probe.has_amt_provisioning_marker(leaf)                              # no_amt_marker
        assert not x509_probe.has_eku(leaf, "1.3.6.1.5.5.7.3.1")                             # no_server_auth
        assert x509_probe.key_bits(issuing) == 4096                                          # issuing_ca_4096
        with pytest.raises(x509_probe.CrlProblem, match="expired"):                          # expired_crl
            x509_probe.fetch_crl(f"http://{PLAN.ca}/pki/issuing.crl")


def _allow_update(ldif: str) -> int:
    for line in ldif.splitlines():
        if line.startswith("dNSProperty:: "):
            prop_id, data = parse_dns_property(base64.b64decode(line.split(":: ", 1)[1]))
            if prop_id == DSPROPERTY_ZONE_ALLOW_UPDATE:
                return data[0]
    raise AssertionError("no allow-update property")


def _site_server_rights(info) -> dict[str, bool]:
    import ldap3

    server = ldap3.Server(PLAN.dc, port=636, use_ssl=True, tls=ldap3.Tls(
        validate=ssl.CERT_REQUIRED, ca_certs_file=info["dc"]["ca_cert"]))
    conn = ldap3.Connection(server, info["dc"]["admin_user"], info["dc"]["admin_password"], auto_bind=True)
    try:
        conn.search("DC=vprolab,DC=test", "(sAMAccountName=SCCM01$)", attributes=["objectSid"])
        sid = str(conn.entries[0].objectSid)
        template = ldap_probe.read_security_descriptor(conn, "CN=IntelAMTWebServer,CN=Certificate Templates,"
                                                       "CN=Public Key Services,CN=Services,CN=Configuration,"
                                                       "DC=vprolab,DC=test")
        container = ldap_probe.read_security_descriptor(conn, "OU=AMT,DC=vprolab,DC=test")
        return {"template_enroll": ldap_probe.grants(template, sid, 0x100, object_type=CERTIFICATE_ENROLLMENT),
                "container_full_control": ldap_probe.grants(container, sid, "GENERIC_ALL"),
                "container_read": ldap_probe.grants(container, sid, "GENERIC_READ")}
    finally:
        conn.unbind()


# ---------------------------------------------------------------------------------------------- lab B
class TestFaultsThatSpoilALab:
    def test_expired_issuing_ca_breaks_every_chain(self, lab_b):
        chain = x509_probe.load_chain(Path(lab_b["pki"]["provisioning_chain"]).read_bytes())
        assert x509_probe.validity_problems(chain[1])                                        # expired
        out = run(["openssl", "s_client", "-connect", f"{PLAN.client(0)}:16993", "-CAfile",
                   lab_b["pki"]["root_cert"], "-verify_return_error"], input="")
        assert out.returncode != 0 and "certificate has expired" in out.stdout + out.stderr

    def test_provision_server_points_elsewhere_and_hellos_follow_it(self, lab_b):
        from pytest_vpro.lab.amt_sim import HelloListener  # a bare TCP 9971 listener at the wrong address

        assert dig("ProvisionServer.vprolab.test") == [f"127.{NET}.0.99"]
        with HelloListener(f"127.{NET}.0.99") as listener:  # devices retry: the next hello lands here
            arrived = listener.wait(1, timeout=10)
        assert arrived and arrived[0][0] == PLAN.client(2)
        assert lab_b["clients"][2]["uuid"] not in amtopmgr_log(lab_b)

    def test_realms_disabled(self, lab_b):
        assert [e.realms for e in device(lab_b, 1).acl_entries()] == [(3, 13)]

    def test_console_user_many_groups(self, lab_b):
        groups = ldapsearch(lab_b, "CN=amtadmin,CN=Users,DC=vprolab,DC=test", "(objectClass=*)", "tokenGroups",
                            scope="base")
        assert groups.count("tokenGroups:") > 400  # the default count: an AP-REQ over 4096 bytes (test_faults_token)


# ---------------------------------------------------------------------------------------------- lab C
class TestHealthySide:
    def test_site_server_is_healthy_where_lab_a_is_broken(self, lab_c):
        wmi = site_wmi(lab_c)
        assert wmi["site"]["Version"] == "4.00.6221.1000" == wmi["full_version"]
        assert "SMS Out of Band Service Point" in wmi["roles"]
        assert prop(wmi["component"], "Enable Web UI")["Value"] == 1
        assert {"KB960804", "KB942841", "KB936059"} <= wmi["hotfixes"] and wmi["stack"] == "1.1"
        assert {"msxml6.dll", "telnet.exe"} <= console_files(lab_c)
        assert [c["AMTAutoProvisionEnabled"] for c in wmi["collections"]] == [False]  # no_auto_provision

    def test_dhcp_directory_and_pki_are_healthy(self, lab_c):
        reply = dhcp.inform(PLAN.dhcp, client_address=PLAN.client(0), fqdn="pc0001.vprolab.test", timeout=3)
        assert reply.dns_servers == [PLAN.dc] and reply.domain_name == "vprolab.test"
        assert reply.client_fqdn.server_updates_a
        zone = ldapsearch(lab_c, "DC=vprolab.test,CN=MicrosoftDNS,DC=DomainDnsZones,DC=vprolab,DC=test",
                          "(objectClass=dnsZone)", "dNSProperty", scope="base")
        assert _allow_update(zone) != 0
        rights = _site_server_rights(lab_c)
        assert rights["template_enroll"] and rights["container_full_control"]
        chain = x509_probe.load_chain(Path(lab_c["pki"]["provisioning_chain"]).read_bytes())
        assert x509_probe.has_amt_provisioning_marker(chain[0]) and x509_probe.key_bits(chain[1]) == 2048
        assert x509_probe.fetch_crl(f"http://{PLAN.ca}/pki/issuing.crl") is not None
        groups = ldapsearch(lab_c, "CN=amtadmin,CN=Users,DC=vprolab,DC=test", "(objectClass=*)", "tokenGroups",
                            scope="base")
        assert groups.count("tokenGroups:") < 10

    def test_no_provision_server_record_means_no_hellos(self, lab_c):
        assert dig("ProvisionServer.vprolab.test") == []
        time.sleep(2)
        uuid = lab_c["clients"][3]["uuid"]
        hellos = [line for line in amtopmgr_log(lab_c).splitlines() if uuid in line and "hello" in line.lower()]
        assert hellos == []  # (an in-band PC's ZTC request goes through its agent, not ProvisionServer)
