"""Stage 1 and the prerequisites page: what in-band provisioning needs from each client's Windows.

Guide, Stage 1: "When using SCCM in-band provisioning, check the SCCM agent is from SCCM SP1 or later (check using
SCCM agent build information SCCM agent from Microsoft SCCM SP1 is 4.0.6221.1000)."; "Clients using in-band
provisioning are domain members."
Prerequisites (seed 004): "If you provision computers for AMT with the Configuration Manager client, computers
must have the client installed for Configuration Manager 2007 SP1 or later. These clients must not be running
Windows 2000 Professional, Windows XP Tablet PC, or versions of Windows XP earlier than SP2."

Each is read from the client's own WMI over WinRM; out of band clients have no agent to ask and are not
applicable.
"""
import re

import pytest

from pytest_vpro.checks import expect, not_applicable
from pytest_vpro.probes.wsman import SoapFault

INVENTORY = "SELECT Name, ResourceNames, AMTFullVersion, ClientVersion FROM SMS_R_System"
#: DWORD Installed = 1 on Windows XP Tablet PC Edition (unconfirmed: the lab's windows_client.TABLET_PC_KEY).
TABLET_PC_KEY = r"HKLM\SYSTEM\WPA\TabletPC"


def version(text) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text or "")))


def in_band(client) -> None:
    if client.provisioning != "in_band":
        not_applicable("an out of band client: in-band provisioning's prerequisites do not apply")


@pytest.mark.check("S1-CLIENT-AGENT-SP1")
def test_agent_is_sp1_or_later(client, env, facts, evidence):
    in_band(client)
    minimum = version(env.expected["sccm_agent_min_version"])
    try:
        agent = facts.windows.wmi(client, "SMS_Client", "root/ccm")
    except SoapFault as fault:
        agent = []
        evidence.attach("root\\ccm", str(fault))
    rows = facts.site.wmi("SMS_R_System", INVENTORY)
    record = next((r for r in rows if client.name in [str(n).lower() for n in r.get("ResourceNames") or []]), {})
    versions = {"client (root\\ccm SMS_Client)": (agent[0].get("ClientVersion") if agent else None),
                "site (SMS_R_System)": record.get("ClientVersion")}
    evidence.attach("agent versions", versions)
    old = [f"{where}: {v or 'no agent'}" for where, v in versions.items() if version(v) < minimum]
    expect(not old, found="; ".join(old), expected=f"{env.expected['sccm_agent_min_version']} (SP1) or later")


@pytest.mark.check("S1-INBAND-CLIENT-DOMAIN-MEMBER")
def test_in_band_client_is_a_domain_member(client, env, facts, evidence):
    in_band(client)
    system = facts.windows.wmi(client, "Win32_ComputerSystem")[0]
    evidence.attach("Win32_ComputerSystem", system)
    expect(system.get("PartOfDomain") is True, found=f"{client.name} is in workgroup {system.get('Domain')}",
           expected="joined to a domain (PartOfDomain true)")
    forest = ",".join(f"DC={p}" for p in (env.site.forest or env.site.name).split("."))
    partitions = facts.directory.search(f"CN=Partitions,CN=Configuration,{forest}", "(&(objectClass=crossRef)"
                                   "(nETBIOSName=*))", ("dnsRoot", "nETBIOSName"), scope="one")
    domains = {str(d).lower() for p in partitions for d in p["attributes"].get("dnsRoot") or []}
    evidence.attach("domains of the forest", sorted(domains))
    expect(str(system.get("Domain", "")).lower() in domains,
           found=f"{client.name} is a member of {system.get('Domain')}, not a domain of the forest "
                 f"{env.site.forest or env.site.name} ({', '.join(sorted(domains))})",
           expected="a member of a domain in the site server's forest")


@pytest.mark.check("PRE-INBAND-CLIENT-OS")
def test_in_band_client_os_is_supported(client, facts, evidence):
    in_band(client)
    os = facts.windows.wmi(client, "Win32_OperatingSystem")[0]
    evidence.attach("Win32_OperatingSystem", os)
    release, sp, caption = version(os.get("Version"))[:2], os.get("ServicePackMajorVersion") or 0, os.get("Caption")
    tablet = release == (5, 1) and ("tablet pc" in str(caption).lower()
                                    or facts.windows.registry(client, TABLET_PC_KEY, "Installed", "dword") == 1)
    bad = ("Windows 2000 or earlier" if release < (5, 1) else "Windows XP Tablet PC Edition" if tablet
           else f"Windows XP before SP2 (SP{sp})" if release == (5, 1) and sp < 2 else "")
    expect(not bad, found=f"{caption} {os.get('CSDVersion') or ''} ({os.get('Version')}): {bad}",
           expected="not Windows 2000, not Windows XP Tablet PC, Windows XP SP2 or later")

