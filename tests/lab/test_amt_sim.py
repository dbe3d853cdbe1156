"""The AMT device simulator on net 92, checked by our WS-MAN client and by an independent one (PyPI ``amt``)."""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.amt_sim import AclEntry, AmtSimulator, DeviceSpec, HelloListener, spec_to_dict
from pytest_vpro.probes import kerberos
from pytest_vpro.probes.amt import AmtCallFailed, AmtDevice
from pytest_vpro.probes.hello import Hello
from pytest_vpro.probes.wsman import (
    AuthFailed,
    DigestAuth,
    HttpStatusError,
    KerberosAuth,
    KerberosTokenTooLarge,
    SoapFault,
    TlsError,
    Unreachable,
    WsmanClient,
    resource_uri,
)

PLAN = AddressPlan(92)
DOMAIN = "vprolab.test"
PASSWORD = "Lab-P@ss1"
HASH = bytes.fromhex("ab" * 32)
HELLO_PORT = 19971  # the test's own listener, so a running site-server simulator on 9971 is never disturbed


# --- a throwaway CA ------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, key, signer, *, ca=False, sans=()):
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return b.sign(signer, hashes.SHA256())


def _write(path: Path, cert, key) -> tuple[str, str]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(_name("vprolab test root"), _name("vprolab test root"), ca_key, ca_key, ca=True)
    ca_file, _ = _write(d / "ca", ca, ca_key)

    def issue(label: str, dns: str, ip: str | None):
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(dns)] + ([x509.IPAddress(ipaddress.ip_address(ip))] if ip else [])
        return _write(d / label, _cert(_name(dns), ca.subject, key, ca_key, sans=sans), key)

    return {"ca": ca_file, "issue": issue}


def _spec(i: int, pki, **kw) -> DeviceSpec:
    fqdn, addr = f"pc{i + 1:04d}.{DOMAIN}", PLAN.client(i)
    cert, key = pki["issue"](f"pc{i}", fqdn, addr) if kw.pop("tls", True) else ("", "")
    base = dict(fqdn=fqdn, address=addr, uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, fqdn)), digest_password=PASSWORD,
                tls_cert=cert, tls_key=key, hashes=[(2, "vprolab root", HASH, True, False)],
                kerberos_realm="VPROLAB.TEST", kerberos_spns=[f"HTTP/{fqdn}:16992", f"HTTP/{fqdn}:16993"],
                acl=[AclEntry(kerberos_sid="S-1-5-21-1-2-3-1105", realms=[3, 5, 13])],
                clock_offset_s=-30, send_hellos=True, provision_server=(PLAN.site_server, HELLO_PORT), hello_interval=0.2)
    base.update(kw)
    return DeviceSpec(**base)


@pytest.fixture(scope="module")
def hellos():
    with HelloListener(PLAN.site_server, HELLO_PORT) as listener:
        yield listener


@pytest.fixture(scope="module")
def estate(pki, hellos, tmp_path_factory):
    """pc0001 healthy, pc0002 "ON in S0" policy, pc0003 wrong-host cert, pc0004 legacy AMT 3.0, pc0005 pre-provisioned."""
    state = tmp_path_factory.mktemp("sim") / "calls.jsonl"
    wrong_cert = pki["issue"]("wrong", "other.example.test", None)
    specs = [
        _spec(0, pki),
        _spec(1, pki, power_scheme="Desktop: ON in S0", provisioning_mode=4),
        _spec(2, pki, tls_cert=wrong_cert[0], tls_key=wrong_cert[1]),
        _spec(3, pki, amt_version="3.0.0", tls=False),
        _spec(4, pki, provisioning_state=0, tls=False),
    ]
    sim = AmtSimulator(specs, state_file=state).start()
    yield sim
    sim.stop()


def _client(estate, pki, i: int, *, tls=True, password=PASSWORD, timeout=5.0) -> WsmanClient:
    addr = PLAN.client(i)
    return WsmanClient.for_amt(addr, tls=tls, auth=DigestAuth("admin", password),
                               ca_bundle=pki["ca"] if tls else None, timeout=timeout)


def test_tls_digest_reads_every_class(estate, pki):
    dev = AmtDevice(_client(estate, pki, 0))
    spec = estate.devices[f"pc0001.{DOMAIN}"].spec
    assert dev.provisioning().state == 2 and dev.provisioning().mode_name((6,)) == "enterprise"
    assert dev.version().text == "6.2.10" and dev.version().at_least(3, 2, 1)
    gs = dev.general_settings()
    assert gs.fqdn == spec.fqdn and gs.network_interface_enabled
    assert gs.digest_realm.startswith("Digest:") and len(gs.digest_realm) == 39
    ps = dev.power_state()
    assert ps.state == 2 and 8 in ps.available and ps.name == "on"
    policy = dev.power_policy()
    assert policy.description == "Desktop: ON in S0, ME Wake in S3, S4-5" and policy.on_in_all_states
    assert len(dev.power_schemes()) >= 4
    red = dev.redirection()
    assert red.enabled_state == 32771 and red.sol and red.ider and red.listener_enabled
    [h] = dev.certificate_hashes()
    assert (h.hash_type_name, h.digest, h.enabled, h.is_default) == ("SHA-256", HASH, True, False)
    krb = dev.kerberos_settings()
    assert krb.realm == "VPROLAB.TEST" and f"HTTP/{spec.fqdn}:16993" in krb.spns and krb.enabled
    [acl] = dev.acl_entries()
    assert acl.kerberos_sid == "S-1-5-21-1-2-3-1105" and acl.realm_names == (
        "PT administration", "remote control", "general info")
    # on the wire, as AMT sends it: the base64 of the binary SID (1, 5 sub-authorities, authority 5, LE words)
    assert acl.kerberos_sid_wire == base64.b64encode(bytes.fromhex(
        "010500000000000515000000010000000200000003000000" "51040000")).decode() and not acl.sid_problem
    assert -35 < dev.clock().offset_s < -25


def test_server_header_and_content_type(estate, pki):
    r = requests.post(f"http://{PLAN.client(0)}:16992/wsman", data=b"", timeout=5)
    assert r.status_code == 401
    assert r.headers["Server"] == "Intel(R) Active Management Technology 6.2.10"
    assert r.headers["WWW-Authenticate"].startswith('Digest realm="Digest:')
    assert 'qop="auth"' in r.headers["WWW-Authenticate"]


def test_wrong_password_is_auth_failed(estate, pki):
    with pytest.raises(AuthFailed, match="digest authentication") as exc:
        AmtDevice(_client(estate, pki, 0, password="wrong")).provisioning()
    assert "wrong" not in str(exc.value)


def test_wrong_host_certificate_is_a_tls_error(estate, pki):
    with pytest.raises(TlsError) as exc:
        AmtDevice(_client(estate, pki, 2)).provisioning()
    assert "Hostname mismatch" in exc.value.reason or "match" in exc.value.reason


def test_unknown_class_is_destination_unreachable(estate, pki):
    with pytest.raises(SoapFault) as exc:
        _client(estate, pki, 0).get(resource_uri("AMT_NoSuchClass"))
    assert exc.value.subcode == "wsa:DestinationUnreachable"


def test_legacy_amt_has_no_wsman(estate, pki):
    with pytest.raises(HttpStatusError) as exc:
        AmtDevice(_client(estate, pki, 3, tls=False)).provisioning()
    assert exc.value.status == 404


def test_fidelity_with_pypi_amt_power_off_and_on(estate):
    """The independent client (``amtctrl``'s library) reads and changes the power state over HTTP 16992."""
    import amt.client

    client = amt.client.Client(PLAN.client(0), PASSWORD)  # fixed port 16992, username admin, no TLS support
    assert client.power_status() == "2"
    before = len(estate.calls)
    assert client.power_off() == 0
    assert client.power_status() == "8"
    assert client.power_on() == 0
    assert client.power_status() == "2"
    ops = [(c["op"], c["params"]["PowerState"], c["return"]) for c in estate.calls[before:]]
    assert ops == [("RequestPowerStateChange", "8", 0), ("RequestPowerStateChange", "2", 0)]


def test_reads_log_nothing_and_power_changes_are_logged(estate, pki):
    dev = AmtDevice(_client(estate, pki, 0))
    before = len(estate.calls)
    dev.power_state(), dev.power_policy(), dev.acl_entries(), dev.clock(), dev.certificate_hashes()
    assert len(estate.calls) == before
    dev.request_power_state(5)  # power cycle: back on
    with pytest.raises(AmtCallFailed) as exc:
        dev.request_power_state(2)  # already on: an invalid transition
    assert exc.value.return_value != 0
    assert [c["op"] for c in estate.calls[before:]] == ["RequestPowerStateChange"] * 2
    lines = [json.loads(x) for x in estate.state_file.read_text().splitlines()]
    assert lines[-1]["device"] == f"pc0001.{DOMAIN}" and lines[-1]["return"] != 0
    assert dev.power_state().state == 2


def test_me_off_in_s5_with_an_s0_only_policy(estate, pki):
    dev = AmtDevice(_client(estate, pki, 1, timeout=2))
    assert not dev.power_policy().on_in_all_states
    dev.request_power_state(8)
    try:
        with pytest.raises(Unreachable):
            dev.power_state()
    finally:
        estate.devices[f"pc0002.{DOMAIN}"].spec.power_state = 2  # the user presses the power button
    assert dev.power_state().state == 2


def test_put_persists_and_is_logged(estate, pki):
    c = _client(estate, pki, 0)
    uri = resource_uri("AMT_RedirectionService")
    current = dict(c.get(uri))
    current.update(EnabledState="32768", ListenerEnabled="false")
    current.pop("AccessLog", None)
    c.put(uri, current)
    red = AmtDevice(c).redirection()
    assert (red.sol, red.ider, red.listener_enabled) == (False, False, False)
    assert estate.calls[-1]["op"] == "Put" and estate.calls[-1]["class"] == "AMT_RedirectionService"
    current.update(EnabledState="32771", ListenerEnabled="true")
    c.put(uri, current)


def test_set_power_scheme(estate, pki):
    dev = AmtDevice(_client(estate, pki, 0))
    original = dev.power_policy()
    target = next(p for p in dev.power_schemes() if p.description == "Desktop: ON in S0")
    dev.set_power_scheme(target.instance_id)
    assert dev.power_policy() == target
    dev.set_power_scheme(original.instance_id)


def test_latency_is_applied_per_call(estate, pki):
    c = _client(estate, pki, 0)
    estate.set_latency(f"pc0001.{DOMAIN}", 300)
    try:
        c.get(resource_uri("AMT_GeneralSettings"))  # warm the connection and the digest nonce
        t0 = time.monotonic()
        c.get(resource_uri("AMT_GeneralSettings"))
        assert time.monotonic() - t0 >= 0.3
    finally:
        estate.set_latency(f"pc0001.{DOMAIN}", 0)


def test_pre_provisioned_device_sends_hellos(estate, hellos):
    spec = estate.devices[f"pc0005.{DOMAIN}"].spec
    got = hellos.wait(2, timeout=5)
    mine = [h for addr, h in got if addr == spec.address]
    assert len(mine) >= 2
    first = mine[0]
    assert isinstance(first, Hello) and first.uuid == uuid.UUID(spec.uuid)
    assert first.hashes == ((2, HASH),) and first.mode == "PKI"
    assert [h.retry_count for h in mine[:2]] == [0, 1]


def test_unprovision_returns_to_pre_provisioning_and_restarts_hellos(estate, pki, hellos):
    dev = AmtDevice(_client(estate, pki, 0))
    dev.unprovision()
    try:
        assert dev.provisioning().state == 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(a == PLAN.client(0) for a, _ in hellos.received):
            time.sleep(0.05)
        assert any(a == PLAN.client(0) for a, _ in hellos.received)
        assert estate.calls[-1]["op"] == "Unprovision"
    finally:
        _client(estate, pki, 0).invoke(resource_uri("AMT_SetupAndConfigurationService"), "CommitChanges", {})
    assert dev.provisioning().state == 2


def test_negotiate_token_over_the_limit_is_400_and_garbage_is_401(tmp_path, pki):
    """The Kerberos acceptor path without a KDC: size limit (400) and an unacceptable token (401)."""
    spec = _spec(9, pki, tls=False, kerberos_keytab=str(tmp_path / "none.keytab"), max_token_bytes=4096)
    with AmtSimulator([spec]):
        url = f"http://{spec.address}:16992/wsman"
        r = requests.post(url, data=b"", timeout=5)
        assert r.status_code == 401
        assert sorted(v.split()[0] for v in r.raw.headers.getlist("WWW-Authenticate")) == ["Digest", "Negotiate"]
        big = requests.post(url, data=b"", timeout=5, headers={"Authorization": "Negotiate " + "QUFB" * 1500})
        assert big.status_code == 400 and "too large" in big.reason
        bad = requests.post(url, data=b"", timeout=5, headers={"Authorization": "Negotiate YWJj"})
        assert bad.status_code == 401


@pytest.fixture(scope="module")
def samba_dc(tmp_path_factory):
    """Our own Samba AD DC on net 92 (plan.dc), so a DC another test run keeps on net 91 is never shared."""
    from pytest_vpro.lab.samba import SambaDC

    dc = SambaDC(tmp_path_factory.mktemp("samba-dc-92"), PLAN.dc, admin_password=f"Adm-{uuid.uuid4().hex[:12]}-9a")
    dc.provision()
    dc.start()
    yield dc
    dc.stop()


@pytest.fixture(scope="module")
def kerberos_device(samba_dc, pki, tmp_path_factory):
    """pc0021 published in AD (AMT OU, SPNs with ports), its keytab exported, a console user with a ticket."""
    fqdn, tmp_path = f"pc0021.{samba_dc.domain}", tmp_path_factory.mktemp("krb")
    samba_dc.add_ou(samba_dc.amt_ou())
    samba_dc.add_amt_account(fqdn)
    samba_dc.add_amt_account(f"pc0022.{samba_dc.domain}")  # another device: another account, another key
    keytab = samba_dc.export_keytab(tmp_path / "amt.keytab", samba_dc.amt_spns(fqdn) + samba_dc.amt_spns(
        f"pc0022.{samba_dc.domain}"))
    password = f"Con-{uuid.uuid4().hex[:10]}-7x"
    samba_dc.add_user("amtconsole", password)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KRB5_CONFIG", str(samba_dc.krb5_conf))
        mp.setenv("KRB5CCNAME", f"FILE:{tmp_path}/console.ccache")
        subprocess.run(["kinit", f"amtconsole@{samba_dc.realm}"], input=password + "\n", text=True, check=True,
                       capture_output=True, timeout=30)
        yield _spec(20, pki, fqdn=fqdn, kerberos_keytab=str(keytab), kerberos_realm=samba_dc.realm,
                    kerberos_spns=samba_dc.amt_spns(fqdn), send_hellos=False)


def _kerberos_client(spec, pki) -> WsmanClient:
    # The URL names the address (no lab DNS here); the SPN names the device: HTTP/<fqdn>:16993.
    return WsmanClient.for_amt(spec.address, auth=KerberosAuth(spn_host=f"{spec.fqdn}:16993"),
                               ca_bundle=pki["ca"], timeout=10)


def test_kerberos_negotiate_with_the_lab_kdc(kerberos_device, pki):
    """A real ticket from the Samba KDC for HTTP/fqdn:16993, accepted by the simulator's gssapi acceptor."""
    with AmtSimulator([kerberos_device]) as sim:
        assert AmtDevice(_kerberos_client(kerberos_device, pki)).general_settings().fqdn == kerberos_device.fqdn
        # a ticket for another device's SPN is refused, even with that device's key in the same keytab
        wrong = WsmanClient.for_amt(kerberos_device.address, auth=KerberosAuth(spn_host="pc0022.vprolab.test:16993"),
                                    ca_bundle=pki["ca"], timeout=10)
        with pytest.raises(AuthFailed, match="kerberos"):
            wrong.get(resource_uri("AMT_GeneralSettings"))
        assert sim.calls == []


def _klist(cache: str) -> list[str]:
    out = subprocess.run(["klist", "-c", cache], capture_output=True, text=True, timeout=30, check=True).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if "@" in line and line[:1].isdigit())


def test_console_service_tickets_go_to_a_bounded_cache_of_the_runs_own(kerberos_device, pki, samba_dc, tmp_path,
                                                                       monkeypatch):
    """The console user's own cache is only read; the run's cache holds a copy of it and at most CACHE_TICKETS
    service tickets of the run's, and a device still authenticates after the cache started again (klist reads
    both caches)."""
    users = os.environ["KRB5CCNAME"]
    before = _klist(users)
    monkeypatch.setattr(kerberos, "CACHE_TICKETS", 1)
    creds = kerberos.ConsoleCredentials.from_default_cache(cache=f"FILE:{tmp_path}/run.ccache")
    realm = samba_dc.realm
    one, two = (f"HTTP/{kerberos_device.fqdn}:{port}@{realm}" for port in (16993, 16992))
    for spn in (one, two, one):
        creds.token(spn)
    run = _klist(f"FILE:{tmp_path}/run.ccache")  # the user's tickets as they were, and one of the run's
    assert f"krbtgt/{realm}@{realm}" in run and one in run and two not in run  # two went when one came back
    assert set(run) <= set(before) | {one}
    assert _klist(users) == before
    with AmtSimulator([kerberos_device]):
        device = AmtDevice(WsmanClient.for_amt(kerberos_device.address, auth=kerberos.NegotiateAuth(
            creds, realm, spn=one), ca_bundle=pki["ca"], timeout=10))
        assert device.general_settings().fqdn == kerberos_device.fqdn
        creds.token(two)  # the cache starts again without the device's ticket: the next request gets another
        assert device.general_settings().fqdn == kerberos_device.fqdn


def test_kerberos_ticket_over_the_device_limit(kerberos_device, pki):
    import dataclasses

    small = dataclasses.replace(kerberos_device, max_token_bytes=600)  # a console user's real ticket is bigger
    with AmtSimulator([small]):
        with pytest.raises(KerberosTokenTooLarge):
            _kerberos_client(small, pki).get(resource_uri("AMT_GeneralSettings"))


def test_process_mode_serves_devices_and_writes_the_calls_file(tmp_path, pki):
    spec = _spec(10, pki, tls=False, send_hellos=False)
    estate_file, calls = tmp_path / "estate.json", tmp_path / "calls.jsonl"
    estate_file.write_text(json.dumps({"devices": [spec_to_dict(spec)]}))
    proc = subprocess.Popen([sys.executable, "-m", "pytest_vpro.lab.amt_sim", "--spec", str(estate_file),
                             "--state-file", str(calls)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert proc.stdout.readline().startswith("READY 1 devices")
        dev = AmtDevice(WsmanClient.for_amt(spec.address, tls=False, auth=DigestAuth("admin", PASSWORD),
                                            ca_bundle=None, timeout=5))
        assert dev.power_state().state == 2
        assert not calls.exists()
        dev.request_power_state(8)
        assert json.loads(calls.read_text().splitlines()[-1])["params"]["PowerState"] == "8"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
