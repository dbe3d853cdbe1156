"""The lab's Samba AD DC, checked with independent clients: MIT kinit/kvno, OpenLDAP ldapsearch, BIND dig,
smbclient, and Samba's own NDR code for the bytes we pack by hand."""
from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.samba import SambaDC, alive
from pytest_vpro.lab.samba_client import SYSTEM_PYTHON
from pytest_vpro.lab.samba_directory import CERTIFICATE_ENROLLMENT
from pytest_vpro.lab.samba_dns import pack_dns_count_name, pack_dns_record, parse_dns_property, reverse_name

CLIENTS = 3
TOKEN_GROUPS = 40
LOG_TEXT = "Hello received from pc0001  $$<SMS_AMT_OPERATION_MANAGER><11-21-2026 10:00:00.000+000><thread=1 (0x1)>\n"


def run(argv, *, env=None, stdin=None, timeout=30):
    """Run a client tool; fail with its output (never skip) if it is missing or fails."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except FileNotFoundError:
        pytest.fail(f"{argv[0]} is not installed (Debian packages krb5-user, ldap-utils, dnsutils, smbclient)")
    assert done.returncode == 0, f"{argv[0]} failed ({done.returncode}): {done.stderr}{done.stdout}"
    return done.stdout


@pytest.fixture(scope="module")
def estate(samba_dc: SambaDC, tmp_path_factory):
    """A small estate built with the helpers the lab uses: site server, AMT OU + ACE, AMT accounts, console
    user, a user in 40 groups, the web server template, A/PTR records, ProvisionServer, the SMS share log."""
    dc, plan = samba_dc, AddressPlan(91)
    started = time.monotonic()
    password = f"Con-{secrets.token_urlsafe(9)}-7x"
    sccm = dc.add_computer("SCCM01", dns_host_name=f"sccm01.{dc.domain}")
    dc.add_ou(dc.amt_ou())
    dc.grant_full_control(dc.amt_ou(), "SCCM01$")
    amt = [dc.add_amt_account(f"pc{i + 1:04d}.{dc.domain}") for i in range(CLIENTS)]
    dc.add_user("amtadmin", password)
    groups = [dc.add_group(f"lab-group-{n:02d}") for n in range(TOKEN_GROUPS)]
    dc.add_user("bigtoken", password, groups=groups)
    template = dc.add_cert_template("IntelAMTWebServer", enroll_for=["SCCM01$"])
    dc.create_zone(dc.reverse_zone())
    hosts = {f"sccm01.{dc.domain}": plan.site_server, f"ca01.{dc.domain}": plan.ca,
             **{f"pc{i + 1:04d}.{dc.domain}": plan.client(i) for i in range(CLIENTS)}}
    for fqdn, address in hosts.items():
        dc.add_host(fqdn, address)
    dc.add_dns_record("ProvisionServer", "A", plan.site_server)
    logs = dc.share_dirs["SMS_LAB"] / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "AMTOPMGR.LOG").write_text(LOG_TEXT)
    keytab = tmp_path_factory.mktemp("keytab") / "amt.keytab"
    dc.export_keytab(keytab, [spn for dn in amt for spn in dc.get_spns(dn)])
    work = tmp_path_factory.mktemp("clients")
    return {"sccm": sccm, "amt": amt, "password": password, "template": template, "plan": plan,
            "keytab": keytab, "work": work, "seconds": time.monotonic() - started}


def krb_env(dc: SambaDC, work, name: str) -> dict:
    return {"KRB5_CONFIG": str(dc.krb5_conf), "KRB5CCNAME": f"FILE:{work}/{name}.ccache"}


# ---- bytes we pack by hand, against golden bytes and Samba's own NDR ------------------------------------------
GOLDEN_A = bytes.fromhex("0400 0100 05f0 0000 01000000 00000384 00000000 00000000 7f5b000a".replace(" ", ""))


def test_dns_record_golden_bytes():
    assert pack_dns_record("A", "127.91.0.10") == GOLDEN_A
    assert pack_dns_count_name("sccm01.vprolab.test") == b"\x15\x03\x06sccm01\x07vprolab\x04test\x00"
    assert reverse_name("127.91.1.2", "91.127.in-addr.arpa") == "2.1"


@pytest.mark.parametrize("rtype,value", [("A", "127.91.1.250"), ("PTR", "pc0001.vprolab.test"),
                                         ("CNAME", "sccm01.vprolab.test")])
def test_dns_record_matches_samba_ndr(rtype, value):
    """Samba's dnsp.DnssrvRpcRecord must unpack our bytes to the same record and pack it back identically."""
    script = (
        "import sys\nfrom samba.dcerpc import dnsp\nfrom samba.ndr import ndr_unpack, ndr_pack\n"
        "b = bytes.fromhex(sys.argv[1]); r = ndr_unpack(dnsp.DnssrvRpcRecord, b)\n"
        "assert ndr_pack(r) == b, ndr_pack(r).hex()\n"
        "print(r.wType, r.dwTtlSeconds, r.rank, r.data)\n")
    out = run([SYSTEM_PYTHON, "-c", script, pack_dns_record(rtype, value).hex()])
    wtype, ttl, rank, data = out.split()
    assert (int(wtype), int(ttl), int(rank), data) == ({"A": 1, "CNAME": 5, "PTR": 12}[rtype], 900, 0xF0, value)


# ---- the DC itself ---------------------------------------------------------------------------------------------
def test_listens_only_on_its_address(samba_dc: SambaDC):
    pids = set(samba_dc.processes())
    out = run(["ss", "-H", "-ltnup"])
    ours = [line for line in out.splitlines() if any(f"pid={pid}," in line for pid in pids)]
    assert ours, "no listening sockets found for the DC's processes"
    local = {line.split()[4].rsplit(":", 1)[0] for line in ours}
    assert local == {samba_dc.address}, local
    ports = {int(line.split()[4].rsplit(":", 1)[1]) for line in ours}
    assert {53, 88, 389, 445, 636} <= ports


def test_kinit_and_service_ticket_for_amt_spn(samba_dc, estate):
    env = krb_env(samba_dc, estate["work"], "amtadmin")
    run(["kinit", f"amtadmin@{samba_dc.realm}"], env=env, stdin=estate["password"] + "\n")
    out = run(["kvno", f"HTTP/pc0001.{samba_dc.domain}:16993"], env=env)
    assert "kvno = " in out
    # The exported keytab decrypts that ticket: what the AMT simulator will do.
    run(["kvno", "-k", str(estate["keytab"]), f"HTTP/pc0001.{samba_dc.domain}:16993"], env=env)
    assert "aes256-cts" in run(["klist", "-ke", str(estate["keytab"])])


def test_whole_domain_keytab_decrypts_spn_tickets(samba_dc, estate):
    """export_keytab() with no principals names entries by account (PC0002-AMT$); MIT's acceptor, given no server
    name, tries every key of the keytab, so the one fast export serves all AMT SPNs."""
    env = krb_env(samba_dc, estate["work"], "amtadmin-all")
    run(["kinit", f"amtadmin@{samba_dc.realm}"], env=env, stdin=estate["password"] + "\n")
    keytab = samba_dc.export_keytab(estate["work"] / "domain.keytab")
    assert f"PC0002-AMT$@{samba_dc.realm}" in run(["klist", "-k", str(keytab)])
    run(["kvno", "-k", str(keytab), f"HTTP/pc0002.{samba_dc.domain}:16992"], env=env)


def test_ldapsearch_finds_amt_object_and_spns(samba_dc, estate):
    env = {"LDAPTLS_CACERT": str(samba_dc.ca_cert), "LDAPTLS_REQCERT": "demand",
           "LDAPCONF": "/dev/null", "LDAPRC": "/dev/null"}  # keep the machine's ldap.conf out
    pwfile = estate["work"] / "ldap.pw"
    pwfile.touch(mode=0o600)
    pwfile.write_text(estate["password"])
    out = run(["ldapsearch", "-LLL", "-o", "nettimeout=10", "-H", samba_dc.ldaps_url, "-x",
               "-D", f"amtadmin@{samba_dc.domain}", "-y", str(pwfile), "-b", samba_dc.amt_ou(),
               f"(servicePrincipalName=HTTP/pc0001.{samba_dc.domain}:16993)", "servicePrincipalName"], env=env)
    assert f"dn: CN=PC0001,{samba_dc.amt_ou()}" in out
    assert f"servicePrincipalName: HTTP/pc0001.{samba_dc.domain}:16992" in out
    assert f"servicePrincipalName: HTTP/pc0001.{samba_dc.domain}:16993" in out


def test_dns_forward_reverse_and_provision_server(samba_dc, estate):
    plan = estate["plan"]
    dig = ["dig", "+short", "+time=2", "+tries=1", f"@{samba_dc.address}"]
    assert run(dig + [f"pc0001.{samba_dc.domain}", "A"]).split() == [plan.client(0)]
    assert run(dig + ["-x", plan.client(2)]).split() == [f"pc0003.{samba_dc.domain}."]
    assert run(dig + [f"ProvisionServer.{samba_dc.domain}", "A"]).split() == [plan.site_server]
    assert run(dig + [f"{samba_dc.fqdn}", "A"]).split() == [samba_dc.address]
    assert run(dig + ["-x", plan.site_server]).split() == [f"sccm01.{samba_dc.domain}."]


def test_dns_record_delete(samba_dc, estate):
    samba_dc.add_dns_record("gone", "CNAME", f"sccm01.{samba_dc.domain}")
    dig = ["dig", "+short", "+time=2", "+tries=1", f"@{samba_dc.address}", f"gone.{samba_dc.domain}", "CNAME"]
    assert run(dig).split() == [f"sccm01.{samba_dc.domain}."]
    samba_dc.delete_dns_record("gone")
    assert run(dig).split() == []


def test_zone_allow_update_readable_over_ldap(samba_dc, estate):
    assert samba_dc.zone_allow_update() == 2  # secure only, Samba's default for the domain zone
    props = samba_dc.read(samba_dc.zone_dn(), ["dNSProperty"])["dNSProperty"]
    assert any(parse_dns_property(p) == (2, b"\x02") for p in props)


def test_smbclient_reads_log_from_sms_share(samba_dc, estate):
    auth = estate["work"] / "smb.auth"
    auth.touch(mode=0o600)
    auth.write_text(f"username = amtadmin\npassword = {estate['password']}\ndomain = {samba_dc.netbios}\n")
    client_conf = estate["work"] / "client-smb.conf"
    client_conf.write_text("[global]\n\tclient min protocol = SMB2\n")
    out = run(["smbclient", f"//{samba_dc.address}/SMS_LAB", "-s", str(client_conf), "-A", str(auth),
               "-c", "get logs/AMTOPMGR.LOG -"])
    assert LOG_TEXT.strip() in out


def test_amt_ou_grants_site_server_full_control_inherited(samba_dc, estate):
    sid = samba_dc.sid_of("SCCM01$")
    ou = samba_dc.sddl(samba_dc.amt_ou())
    # AD stores (A;CI;GA) as full control on the OU itself plus an inherit-only generic ACE for children.
    assert f"(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;{sid})" in ou
    assert f"(A;CIIO;GA;;;{sid})" in ou
    child = samba_dc.sddl(estate["amt"][0])
    assert f"(A;ID;RPWPCRCCDCLCLORCWOWDSDDTSW;;;{sid})" in child  # full control, inherited from the OU


def test_web_server_template(samba_dc, estate):
    dn = estate["template"]
    attrs = samba_dc.read(dn, ["pKIExtendedKeyUsage", "msPKI-Certificate-Name-Flag", "objectClass"])
    assert attrs["pKIExtendedKeyUsage"] == [b"1.3.6.1.5.5.7.3.1"]
    assert int(attrs["msPKI-Certificate-Name-Flag"][0]) & 1
    assert b"pKICertificateTemplate" in attrs["objectClass"]
    sid = samba_dc.sid_of("SCCM01$")
    sddl = samba_dc.sddl(dn)
    assert f"(OA;;CR;{CERTIFICATE_ENROLLMENT};;{sid})" in sddl
    assert f"(A;;RPLCLORC;;;{sid})" in sddl


def test_token_user_has_40_groups(samba_dc, estate):
    samba_dc.conn.search(samba_dc.account_dn("bigtoken"), "(objectClass=*)", "BASE", attributes=["tokenGroups"])
    groups = samba_dc.conn.response[0]["raw_attributes"]["tokenGroups"]
    assert len(groups) >= TOKEN_GROUPS


def test_set_spns_and_delete(samba_dc, estate):
    dn = samba_dc.add_amt_account(f"spare.{samba_dc.domain}", ports=(16993,))
    samba_dc.set_spns(dn, [f"HTTP/spare.{samba_dc.domain}:16992"])
    assert samba_dc.get_spns(dn) == [f"HTTP/spare.{samba_dc.domain}:16992"]
    samba_dc.delete(dn)
    assert not samba_dc.exists(dn)


def test_admin_password_never_in_logs_or_errors(samba_dc, estate):
    for log in (p for p in samba_dc.state_dir.rglob("*.log") if p.is_file()):
        assert samba_dc._password not in log.read_text(errors="replace"), log
    with pytest.raises(Exception) as info:
        samba_dc._admin_tool("dns", "zonedelete", samba_dc.address, "no-such-zone.test")
    assert samba_dc._password not in str(info.value)


def test_stop_leaves_nothing_then_restarts(samba_dc, estate):
    """Last: stop() ends every process of the DC's session and frees the address; start() comes back fast."""
    assert samba_dc.running
    procs = samba_dc.processes()
    assert any("smbd" in Path(f"/proc/{pid}/comm").read_text() for pid in procs)
    samba_dc.stop()
    assert alive(procs) == {}
    out = run(["ss", "-H", "-ltnu", "src", samba_dc.address])
    assert out.strip() == "", out
    started = time.monotonic()
    samba_dc.start()
    assert time.monotonic() - started < 10
    assert samba_dc.exists(estate["amt"][0])
