"""Stage 5 and the prerequisites page: the Windows of the hosts that run the out of band console.

Guide, Stage 5: "If SOL is not operational, check the Windows telnet client is installed on the system hosting
the SCCM OOB Console."; "Multi-tier PKI (where applicable) certificates configured correctly in SCCM Console
certificate stores. In a multi-tier PKI environment, if SOL / IDER is not operational, check that both root and
all subordinate CA certificates from the Enterprise PKI are in the local machine Trusted Root Certificate
Authority store on systems hosting the SCCM OOB Console."
Prerequisites (seed 004): "Windows Remote Management (WinRM) 1.1 or later must be installed ... on any computer
that runs a remote Configuration Manager console."; "MSXML 6.0 is required on computers that run the out of band
management console."; "The Windows feature, Telnet Client, must be installed on computers running Windows Vista
or Windows Server 2008 if the computers run the out of band management console and perform serial-over-LAN
commands."

Files are read with CIM_DataFile and software from the registry, never Win32_Product (enumerating it makes Windows
Installer verify and repair every product).
"""
import datetime as dt
import re

import pytest
from cryptography import x509

from pytest_vpro.checks import expect, not_applicable
from pytest_vpro.probes import x509 as certs
from pytest_vpro.probes.wsman import SoapFault

from ..stage1.test_pki import store_evidence, stores_read

#: Where Windows keeps the WinRM stack version (unconfirmed: the lab's, pytest_vpro.lab.site_server.WINRM_STACK_KEY).
WINRM_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WSMAN"
PUBLIC_KEY_SERVICES = "CN=Public Key Services,CN=Services,CN=Configuration"


def version(text) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text or "")))


def windows(host, facts) -> dict:
    return facts.windows.wmi(host, "Win32_OperatingSystem")[0]


def system_file(host, facts, name: str) -> tuple[str, list]:
    """``%windir%\\system32\\<name>`` on ``host`` and the CIM_DataFile rows found for it."""
    path = (windows(host, facts).get("SystemDirectory") or r"C:\WINDOWS\system32") + "\\" + name
    quoted = path.replace("\\", "\\\\").replace("'", "\\'")
    return path, facts.windows.wmi(host, "CIM_DataFile",
                                   wql=f"SELECT Name, Version FROM CIM_DataFile WHERE Name = '{quoted}'")


@pytest.mark.check("PRE-WINRM-CONSOLE")
def test_console_host_has_winrm_1_1(server, facts):
    stack = facts.windows.registry(server, WINRM_KEY, "StackVersion")
    how = f"StackVersion {stack}"
    if not stack:
        os_version = version(windows(server, facts).get("Version"))
        fixes = {str(f.get("HotFixID", "")).upper() for f in facts.windows.wmi(server, "Win32_QuickFixEngineering")}
        stack, how = ("1.1", "built into Windows Vista / Server 2008") if os_version >= (6, 0) else \
            ("1.1", "KB936059 installed") if "KB936059" in fixes else ("", "no StackVersion and no KB936059")
    expect(version(stack) >= (1, 1), found=f"WinRM {stack or 'unknown'} ({how})", expected="WinRM 1.1 or later")


@pytest.mark.check("PRE-MSXML6-CONSOLE")
def test_console_host_has_msxml6(server, facts, evidence):
    path, found = system_file(server, facts, "msxml6.dll")
    evidence.attach("CIM_DataFile", found)
    expect(found, found=f"no {path}", expected="MSXML 6.0 installed (msxml6.dll in the system folder)")


@pytest.mark.check("S5-CONSOLE-TELNET-CLIENT")
def test_console_host_has_the_telnet_client(server, facts, evidence):
    try:  # Windows 7 / Server 2008 R2 and later say it directly
        feature = facts.windows.wmi(server, "Win32_OptionalFeature",
                            wql="SELECT Name, InstallState FROM Win32_OptionalFeature WHERE Name = 'TelnetClient'")
    except SoapFault:  # no such class on XP, Server 2003, Vista and Server 2008
        feature = []
    if feature:
        evidence.attach("Win32_OptionalFeature", feature)
        state = feature[0].get("InstallState")
        expect(state == 1, found=f"the TelnetClient feature has InstallState {state}",
               expected="TelnetClient installed (InstallState 1)")
        return
    path, found = system_file(server, facts, "telnet.exe")
    evidence.attach("CIM_DataFile", found)
    expect(found, found=f"no {path}", expected="the Telnet client installed (telnet.exe in the system folder)")


def enterprise_cas(env, facts) -> list[x509.Certificate]:
    """The CA certificates AD publishes (AIA and Certification Authorities), in date, one per thumbprint."""
    forest = ",".join(f"DC={p}" for p in (env.site.forest or env.site.name).split("."))
    found: dict[str, x509.Certificate] = {}
    now = dt.datetime.now(dt.timezone.utc)
    for container in ("AIA", "Certification Authorities"):
        for entry in facts.directory.search(f"CN={container},{PUBLIC_KEY_SERVICES},{forest}",
                                       "(objectClass=certificationAuthority)", ("cACertificate",), scope="one"):
            for der in entry["raw_attributes"].get("cACertificate") or []:
                cert = x509.load_der_x509_certificate(bytes(der))
                if cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:  # renewed-away ones stay in AIA
                    found[certs.fingerprint(cert, "sha1").upper()] = cert
    return list(found.values())


@pytest.mark.check("S5-MULTITIER-PKI-CONSOLE-ROOT-STORE")
def test_console_trusts_every_enterprise_ca(server, env, facts, evidence):
    cas = enterprise_cas(env, facts)
    expect(cas, found="no CA certificate published in AD (AIA, Certification Authorities)",
           expected="the enterprise PKI's CA certificates in AD")
    if all(c.subject == c.issuer for c in cas):
        not_applicable("a single-tier PKI: no subordinate CA")
    stored = facts.windows.certificate_store_origins(server, "ROOT")  # the computer's, Group Policy's and Enterprise's
    evidence.attach("CA certificates", {certs.common_name(c): certs.fingerprint(c, "sha1").upper() for c in cas})
    evidence.attach("Trusted Root stores on the console host", store_evidence(facts, server, ("ROOT",)))
    evidence.attach("where each CA certificate is", {certs.common_name(c): ", ".join(
        stored.get(certs.fingerprint(c, "sha1").upper(), [])) or "nowhere" for c in cas})
    missing = [certs.common_name(c) for c in cas if certs.fingerprint(c, "sha1").upper() not in stored]
    expect(not missing, found=f"{', '.join(missing)} not in {server.name}'s {stores_read('ROOT')}",
           expected="the root and every subordinate CA certificate in Local Computer > Trusted Root "
                    "Certification Authorities")
