"""The assembled lab (``vpro-lab up --clients 50``) against independent clients nobody here wrote.

dig, kinit/kvno, ldapsearch, openssl verify -crl_check, PyPI ``amt`` and
requests-kerberos talk to the lab the way they would talk to a real estate;
``vpro-lab down`` then leaves no process and no listener behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vpro.lab import manager
from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.run import load_environment

NET = 96


def vpro_lab(description: Path, state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_vpro.lab.cli", "--description", str(description),
                           "--state", str(state), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    description = root / "lab.yaml"
    description.write_text(f"lab: {{clients: 10, net: {NET}, canaries: 1, unprovisioned: 1, state_dir: state}}\n")
    state = root / "state"
    up = vpro_lab(description, state, "up", "--clients", "50")
    assert up.returncode == 0, up.stdout + up.stderr
    info = json.loads((state / "lab.json").read_text())
    yield {"info": info, "state": state, "description": description, "up": up}
    if manager.status(state):
        vpro_lab(description, state, "down")


def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


def test_up_reports_progress_and_writes_a_private_state_file(lab):
    assert "ready: 50 clients" in lab["up"].stdout
    state_file = lab["state"] / "lab.json"
    assert oct(state_file.stat().st_mode & 0o777) == "0o600"
    info = lab["info"]
    for key in ("domain", "realm", "dc", "dns", "dhcp", "pki", "site_server", "clients", "environment_file"):
        assert key in info, key
    assert {"address", "admin_user", "admin_password", "smb_conf", "krb5_conf"} <= set(info["dc"])
    assert {"fqdn", "address", "uuid", "amt_user", "amt_password"} <= set(info["clients"][0])
    assert len(info["clients"]) == 50


def test_status_finds_the_running_lab(lab):
    out = vpro_lab(lab["description"], lab["state"], "status")
    assert out.returncode == 0 and json.loads(out.stdout)["clients"] == 50


def test_dig_forward_reverse_and_provision_server(lab):
    plan, dns = AddressPlan(NET), lab["info"]["dns"]["address"]
    assert run(["dig", "+short", f"@{dns}", "pc0042.vprolab.test", "A"]).stdout.split() == [plan.client(41)]
    assert run(["dig", "+short", f"@{dns}", "-x", plan.client(41)]).stdout.split() == ["pc0042.vprolab.test."]
    assert run(["dig", "+short", f"@{dns}", "ProvisionServer.vprolab.test"]).stdout.split() == [plan.site_server]


def test_kinit_as_the_console_user_and_a_ticket_for_a_device(lab, tmp_path):
    info = lab["info"]
    env = {**os.environ, "KRB5_CONFIG": info["dc"]["krb5_conf"], "KRB5CCNAME": f"FILE:{tmp_path}/cc"}
    kinit = run(["kinit", info["console"]["user"]], input=info["console"]["password"] + "\n", env=env)
    assert kinit.returncode == 0, kinit.stderr
    kvno = run(["kvno", "HTTP/pc0001.vprolab.test:16993"], env=env)
    assert kvno.returncode == 0 and "kvno =" in kvno.stdout, kvno.stderr
    klist = run(["klist"], env=env)
    assert f"krbtgt/{info['realm']}@{info['realm']}" in klist.stdout
    assert f"HTTP/pc0001.vprolab.test:16993@{info['realm']}" in klist.stdout


def test_ldapsearch_finds_the_amt_object_and_its_spns(lab):
    info = lab["info"]
    env = {**os.environ, "LDAPTLS_CACERT": info["dc"]["ca_cert"]}
    out = run(["ldapsearch", "-LLL", "-H", f"ldaps://{info['dc']['address']}", "-x", "-D",
               info["dc"]["admin_user"], "-y", "/dev/stdin", "-b", "OU=AMT,DC=vprolab,DC=test",
               "(servicePrincipalName=HTTP/pc0007.vprolab.test:16993)", "servicePrincipalName"],
              input=info["dc"]["admin_password"], env=env)
    assert out.returncode == 0, out.stderr
    assert "servicePrincipalName: HTTP/pc0007.vprolab.test:16992" in out.stdout


def test_openssl_verifies_a_device_certificate_against_the_served_crl(lab, tmp_path):
    import requests

    info, plan = lab["info"], AddressPlan(NET)
    crl = requests.get(f"http://{plan.ca}/pki/issuing.crl", headers={"Host": "ca01.vprolab.test"}, timeout=5)
    assert crl.status_code == 200
    (tmp_path / "issuing.crl.der").write_bytes(crl.content)
    assert run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "issuing.crl.der"),
                "-out", str(tmp_path / "issuing.crl")]).returncode == 0
    leaf = lab["state"] / "pki" / "devices" / "pc0003.vprolab.test.pem"
    out = run(["openssl", "verify", "-CAfile", info["pki"]["root_cert"], "-untrusted", info["pki"]["issuing_cert"],
               "-crl_check", "-CRLfile", str(tmp_path / "issuing.crl"), str(leaf)])
    assert out.returncode == 0 and out.stdout.strip().endswith(": OK"), out.stdout + out.stderr


def test_pypi_amt_reads_the_power_state(lab):
    from amt.client import Client

    client = lab["info"]["clients"][4]
    status = Client(client["address"], client["amt_password"], username=client["amt_user"]).power_status()
    assert str(status) in ("2", "on")


def test_requests_kerberos_is_accepted_by_a_device_over_tls(lab, tmp_path):
    import requests
    from requests_kerberos import HTTPKerberosAuth

    info, plan = lab["info"], AddressPlan(NET)
    os.environ["KRB5_CONFIG"] = info["dc"]["krb5_conf"]
    os.environ["KRB5CCNAME"] = f"FILE:{tmp_path}/cc"
    assert run(["kinit", info["console"]["user"]], input=info["console"]["password"] + "\n").returncode == 0
    body = ('<?xml version="1.0" encoding="utf-8"?><Envelope xmlns="http://www.w3.org/2003/05/soap-envelope" '
            'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
            'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><Header>'
            '<a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</a:Action><a:To>/wsman</a:To>'
            '<w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings</w:ResourceURI>'
            '<a:MessageID>1</a:MessageID></Header><Body/></Envelope>')
    session = requests.Session()
    from requests.adapters import HTTPAdapter

    class Pinned(HTTPAdapter):  # connect to the device's address, verify the certificate for its FQDN
        def init_poolmanager(self, *a, **kw):
            kw["server_hostname"] = "pc0002.vprolab.test"
            kw["assert_hostname"] = "pc0002.vprolab.test"
            super().init_poolmanager(*a, **kw)

    session.mount("https://", Pinned())
    auth = HTTPKerberosAuth(hostname_override="pc0002.vprolab.test:16993", mutual_authentication=2)
    reply = session.post(f"https://{plan.client(1)}:16993/wsman", data=body, auth=auth,
                         verify=info["pki"]["root_cert"], timeout=10,
                         headers={"Content-Type": "application/soap+xml; charset=utf-8"})
    assert reply.status_code == 200, reply.status_code
    assert "AMT_GeneralSettings" in reply.text and "pc0002" in reply.text


def _smb_log(info, name: str = "AMTOPMGR.LOG") -> str:
    out = run(["smbclient", f"//{info['dc']['address']}/SMS_LAB", "-U", "Administrator", "-s", info["dc"]["smb_conf"],
               "-c", f"get Logs/{name} -"], input=info["dc"]["admin_password"] + "\n")
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_smbclient_reads_amtopmgr_log_with_a_hello_from_the_unprovisioned_pc(lab):
    import time
    info = lab["info"]
    unprovisioned = info["clients"][-1]
    assert unprovisioned["provisioned"] is False
    deadline, text = time.monotonic() + 15, ""
    while time.monotonic() < deadline and unprovisioned["uuid"] not in text:
        text = _smb_log(info)
        time.sleep(0.5)
    assert f"Received hello packet (out of band) from {unprovisioned['address']}" in text
    assert "Second stage provisioning completed successfully for AMT device pc0002.vprolab.test" in text
    assert "$$<SMS_AMT_OPERATION_MANAGER>" in text
    # pc0001 was provisioned before the log last rolled over: its lines are in the history file only
    assert "pc0001" not in text
    assert "Second stage provisioning completed successfully for AMT device pc0001.vprolab.test" in _smb_log(
        info, "AMTOPMGR.lo_")


def test_pywinrm_enumerates_the_site_servers_hot_fixes(lab, tmp_path, monkeypatch):
    """pywinrm as Windows' WinRM accepts it by default: Kerberos (the lab's site server has Basic off)."""
    import re

    import winrm

    info, plan = lab["info"], AddressPlan(NET)
    monkeypatch.setenv("KRB5_CONFIG", info["dc"]["krb5_conf"])
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path}/cc")
    kinit = run(["kinit", f"Administrator@{info['realm']}"], input=info["dc"]["admin_password"] + "\n")
    assert kinit.returncode == 0, kinit.stderr
    from requests_kerberos import REQUIRED, HTTPKerberosAuth

    # pywinrm's own kerberos transport needs pykerberos; its envelopes over requests-kerberos (pyspnego) instead
    protocol = winrm.Protocol(endpoint=f"https://{plan.site_server}:5986/wsman", transport="basic",
                              username="unused", password="unused",
                              server_cert_validation="validate", ca_trust_path=info["pki"]["root_cert"])
    protocol.transport.build_session()
    protocol.transport.session.auth = HTTPKerberosAuth(mutual_authentication=REQUIRED,
                                                       hostname_override="sccm01.vprolab.test",
                                                       sanitize_mutual_error_response=False)
    protocol.transport.session.mount("https://", _pinned("sccm01.vprolab.test"))  # the certificate names the FQDN
    uri = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/Win32_QuickFixEngineering"
    reply = protocol.send_message(_envelope(uri, "Enumerate", "<wsen:Enumerate/>"))
    context = re.search(rb"<[\w:]*EnumerationContext>([^<]+)<", reply).group(1).decode()
    pulled = protocol.send_message(_envelope(
        uri, "Pull", f"<wsen:Pull><wsen:EnumerationContext>{context}</wsen:EnumerationContext>"
                     "<wsen:MaxElements>50</wsen:MaxElements></wsen:Pull>"))
    assert b"KB942841" in pulled and b"KB960804" in pulled


def _pinned(hostname):
    from requests.adapters import HTTPAdapter

    class Pinned(HTTPAdapter):
        def init_poolmanager(self, *a, **kw):
            kw["server_hostname"] = hostname
            kw["assert_hostname"] = hostname
            super().init_poolmanager(*a, **kw)
    return Pinned()


def _envelope(uri: str, action: str, body: str) -> str:
    return ('<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
            'xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
            'xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
            'xmlns:wsen="http://schemas.xmlsoap.org/ws/2004/09/enumeration"><s:Header>'
            '<wsa:Action s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/09/enumeration/'
            f'{action}</wsa:Action><wsa:To>https://sccm01.vprolab.test:5986/wsman</wsa:To>'
            f'<wsman:ResourceURI s:mustUnderstand="true">{uri}</wsman:ResourceURI>'
            '<wsa:MessageID>uuid:6f3c1bd4-52f9-4bd1-9a64-2d2f1b6e4f10</wsa:MessageID><wsa:ReplyTo><wsa:Address>'
            'http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:Address></wsa:ReplyTo>'
            f'</s:Header><s:Body>{body}</s:Body></s:Envelope>')


def test_unprovision_action_does_what_the_real_one_does(lab):
    """SMS_Collection.AMTOperateForMachines([ResourceID], 64), the documented class method: the service point does
    Unprovision on the device, the certificate is revoked in the served CRL, the AD object deleted."""
    import requests
    from cryptography import x509

    from pytest_vpro.probes.amt import AmtDevice
    from pytest_vpro.probes.dns import Resolver, route_connections
    from pytest_vpro.probes.winrm import NotReadOnly, WinRM
    from pytest_vpro.probes.wsman import DigestAuth, WsmanClient

    info, plan = lab["info"], AddressPlan(NET)
    target = info["clients"][5]  # pc0006, provisioned
    from pytest_vpro.probes.kerberos import ConsoleCredentials, NegotiateAuth, use_config

    use_config(info["dc"]["krb5_conf"])  # Basic is off on the lab's site server, as on Windows: Kerberos
    creds = ConsoleCredentials.with_password("Administrator@VPROLAB.TEST", info["dc"]["admin_password"])
    url = "https://sccm01.vprolab.test:5986/wsman"
    auth = NegotiateAuth(creds, "VPROLAB.TEST", spn="HTTP/sccm01.vprolab.test@VPROLAB.TEST")
    with route_connections(Resolver([info["dns"]["address"]]), ["vprolab.test"]):
        reader = WinRM(url, auth=auth, ca_bundle=info["pki"]["root_cert"], timeout=10)
        (system,) = reader.enumerate("SMS_R_System", "root/sms/site_LAB", wql="SELECT ResourceId FROM SMS_R_System "
                                     f"WHERE Name = '{target['fqdn'].split('.')[0].upper()}'")
        params = {"ResourceIDs": [int(str(system["ResourceId"]))], "Opcode": 64}
        with pytest.raises(NotReadOnly):  # the project's WinRM probe is read-only: it refuses before sending
            reader.invoke("SMS_Collection", "AMTOperateForMachines", params, namespace="root/sms/site_LAB")
        writer = WsmanClient(url, auth=auth, ca_bundle=info["pki"]["root_cert"], timeout=30)  # as the console does
        result = writer.invoke("http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_LAB/SMS_Collection",
                               "AMTOperateForMachines", params)
    assert str(result.get("ReturnValue")) == "0", result
    device = AmtDevice(WsmanClient.for_amt(target["address"], tls=False,
                                           auth=DigestAuth(target["amt_user"], target["amt_password"]),
                                           ca_bundle=None, timeout=10))
    deadline = time.monotonic() + 15  # the service point works its queue off
    while device.provisioning().state != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # then it revokes the certificate and deletes the object
    assert device.provisioning().state == 0
    crl = x509.load_der_x509_crl(requests.get(f"http://{plan.ca}/pki/issuing.crl", timeout=5).content)
    leaf = x509.load_pem_x509_certificate(
        (lab["state"] / "pki" / "devices" / f"{target['fqdn']}.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    dig = run(["dig", "+short", f"@{info['dns']['address']}", target["fqdn"]])
    assert dig.stdout.split() == [target["address"]]  # the host record stays: only the AMT object goes
    env = {**os.environ, "LDAPTLS_CACERT": info["dc"]["ca_cert"]}
    out = run(["ldapsearch", "-LLL", "-H", f"ldaps://{info['dc']['address']}", "-x", "-D", info["dc"]["admin_user"],
               "-y", "/dev/stdin", "-b", "OU=AMT,DC=vprolab,DC=test", f"(dNSHostName={target['fqdn']})", "cn"],
              input=info["dc"]["admin_password"], env=env)
    assert out.returncode == 0 and "dn:" not in out.stdout
    text = _smb_log(info)
    assert "Clearing provisioning data completed successfully for AMT device pc0006.vprolab.test" in text


def test_clients_from_an_ldap_query_of_an_ou(lab, tmp_path):
    """The environment loader's ldap: source against the lab's real DC (LDAPS, verified, simple bind)."""
    from pytest_vpro import environment as envmod

    info = lab["info"]
    roots = tmp_path / "roots.pem"  # the estate's roots: the lab PKI's and the CA that issued the DC's LDAPS cert
    roots.write_text(Path(info["pki"]["root_cert"]).read_text() + Path(info["dc"]["ca_cert"]).read_text())
    (tmp_path / "admin.secret").write_text(info["dc"]["admin_password"])
    (tmp_path / "env.yaml").write_text(f"""
site: {{name: Lab, code: LAB, domain: vprolab.test, amt_container: "OU=AMT,DC=vprolab,DC=test"}}
credentials:
  ldap: {{user: "{info['dc']['admin_user']}", password: "file:admin.secret"}}
servers:
  - {{fqdn: dc01.vprolab.test, roles: [domain_controller], address: {info['dc']['address']}}}
pki: {{trusted_roots: roots.pem}}
clients:
  - {{source: "ldap:OU=AMT,DC=vprolab,DC=test", provisioning: out_of_band}}
""")
    env = load_environment(tmp_path / "env.yaml")
    names = [c.name for c in env.clients]
    provisioned = sorted(c["fqdn"] for c in info["clients"] if c["provisioned"] and c["fqdn"] != "pc0006.vprolab.test")
    assert names == provisioned  # sorted; pc0006 was un-provisioned above, its AMT object deleted
    roots.write_text(Path(info["pki"]["root_cert"]).read_text())  # without the DC's CA: a clear problem, no traceback
    with pytest.raises(envmod.EnvironmentFileError) as failed:
        load_environment(tmp_path / "env.yaml")
    assert "LDAP query of 'OU=AMT,DC=vprolab,DC=test' failed" in failed.value.problems[0]


def test_down_leaves_nothing_behind(lab):
    info = lab["info"]
    out = vpro_lab(lab["description"], lab["state"], "down")
    assert out.returncode == 0 and "stopped" in out.stdout
    assert manager.listening(AddressPlan(NET), info) == []
    assert not manager.alive(info["pid"])
