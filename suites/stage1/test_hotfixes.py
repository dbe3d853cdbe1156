"""Stage 1: "Required hot fixes installed on SCCM servers (see Appendix A)." One test per hot fix of Appendix A.

Each fix is looked for in Win32_QuickFixEngineering, then under the registry's Uninstall\\<KB> key (updates that
register only there), on the servers of the row's scope. Where a fix applies, and what stands in for it, is the
guide's Appendix A and the prerequisites page (seed 004), in one table per fix below:

- KB899900 (WinHTTP SPN with a port): Windows Server 2003; "included in Windows Server 2003 SP2".
- KB908209 (IE Kerberos on a non-standard port): browser hosts on Windows XP / Server 2003; "included in Windows
  XP SP3 and Windows Server 2003 SP2 but the registry entry is not included and must still be added".
- KB942841 (SSL/TLS to the AMT out-of-band interface): Windows Server 2003 ("If you are running Windows Server
  2003 Service Pack 2, the following hotfix must be installed: 942841").
- KB960804: "Hot fix rollup package containing KB954718, KB955126, KB955114, KB955355, KB956337, KB957183,
  KB957469 and KB959040" for Configuration Manager 2007 SP1: each of the eight passes with the rollup. The
  catalog narrows some to sites with particular clients (AMT 2.x, AMT 4/5, pre-3.2.1, RTM child sites); the
  guide's Stage 1 asks for all of them, and an inventory cannot show clients not yet discovered, so all are
  required on an SP1 site (an SP2 site postdates the rollup).
- KB936059 (WinRM 1.1 update): Windows XP / Server 2003; a WinRM stack of 1.1 or later confirms it.
- KB932303 (WMI with the .NET Framework 2.0): Windows XP / Server 2003 servers with .NET 2.0.
- KB940848 (MMC rollup): Windows Server 2003, XP and Vista.
"""
import re

import pytest

from pytest_vpro.checks import expect, not_applicable

ROLLUP = "KB960804"
UNINSTALL_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall"
KB908209_KEY = r"HKLM\SOFTWARE\Microsoft\Internet Explorer\MAIN\FeatureControl\FEATURE_INCLUDE_PORT_IN_SPN_KB908209"
DOTNET20_KEY = r"HKLM\SOFTWARE\Microsoft\NET Framework Setup\NDP\v2.0.50727"
#: Where Windows keeps the WinRM stack version (unconfirmed: the lab's, pytest_vpro.lab.site_server.WINRM_STACK_KEY).
WINRM_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WSMAN"


def version(text) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text or "")))


class Windows:
    """The Windows release of a host, as Win32_OperatingSystem says."""

    def __init__(self, host, facts):
        os = facts.windows.wmi(host, "Win32_OperatingSystem")[0]
        self.release, self.sp = version(os.get("Version"))[:2], os.get("ServicePackMajorVersion") or 0
        self.workstation, self.text = os.get("ProductType") == 1, f"{os.get('Caption')} {os.get('CSDVersion') or ''}"

    def __str__(self) -> str:
        return self.text.strip()


def site_version(env, facts) -> tuple[int, ...]:
    found = facts.site.wmi("SMS_Site", f"SELECT * FROM SMS_Site WHERE SiteCode = '{env.site.code}'")
    return version(found[0]["Version"]) if found else ()


def require(host, facts, evidence, kb: str, *, included: str = "", rollup: str = "") -> None:
    """Pass if ``included`` names what already includes ``kb``, or ``kb`` (or ``rollup``) is installed."""
    fixes = facts.windows.wmi(host, "Win32_QuickFixEngineering")
    installed = sorted({str(f.get("HotFixID", "")).upper() for f in fixes})
    evidence.attach("Win32_QuickFixEngineering HotFixIDs", installed)
    if included:
        evidence.attach(f"{kb} not needed", included)
        return
    if kb in installed or (rollup and rollup in installed):
        return
    if any(facts.windows.registry(host, rf"{UNINSTALL_KEY}\{k}", "DisplayName") for k in (kb, rollup) if k):
        return
    either = f" or the rollup {rollup}" if rollup else ""
    expect(False, found=f"{kb}{either} not installed ({len(installed)} hot fixes in Win32_QuickFixEngineering, "
                        f"none under {UNINSTALL_KEY})", expected=f"{kb}{either} installed")


def windows_2003(host, facts, kb: str) -> Windows:
    w = Windows(host, facts)
    if w.release != (5, 2):
        not_applicable(f"{w}: {kb} is for Windows Server 2003")
    return w


def sp1_site(env, facts, kb: str) -> None:
    found = site_version(env, facts)
    if found[2:3] != (6221,):
        not_applicable(f"{kb} is for Configuration Manager 2007 SP1 (build 6221); site {env.site.code} runs "
                       f"{'.'.join(map(str, found)) or 'unknown'}")


@pytest.mark.check("HF-KB899900")
def test_kb899900_winhttp_spn_with_port(server, facts, evidence):
    w = windows_2003(server, facts, "KB899900")
    require(server, facts, evidence, "KB899900", included=w.sp >= 2 and f"{w}: SP2 includes KB899900")


@pytest.mark.check("HF-KB908209")
def test_kb908209_ie_kerberos_on_other_ports(server, facts, evidence):
    w = Windows(server, facts)
    if w.release not in ((5, 1), (5, 2)):
        not_applicable(f"{w}: KB908209 is for browsers on Windows XP and Server 2003")
    included = (w.release == (5, 1) and w.sp >= 3) or (w.release == (5, 2) and w.sp >= 2)
    require(server, facts, evidence, "KB908209", included=included and f"{w} includes KB908209")


@pytest.mark.check("HF-KB908209-REGISTRY")
def test_kb908209_registry_entry(server, facts, evidence):
    w = Windows(server, facts)
    if w.release not in ((5, 1), (5, 2)):
        not_applicable(f"{w}: KB908209's registry entry is for browsers on Windows XP and Server 2003")
    value = facts.windows.registry(server, KB908209_KEY, "iexplore.exe", "dword")
    evidence.attach("FEATURE_INCLUDE_PORT_IN_SPN_KB908209", {"iexplore.exe": value})
    expect(value == 1, found=f"iexplore.exe = {value}" if value is not None else "no iexplore.exe value",
           expected=f"DWORD iexplore.exe = 1 under {KB908209_KEY}")


@pytest.mark.check("HF-KB942841")
def test_kb942841_tls_to_amt(server, facts, evidence):
    windows_2003(server, facts, "KB942841")
    require(server, facts, evidence, "KB942841")


@pytest.mark.check("HF-KB960804")
def test_kb960804_rollup(server, env, facts, evidence):
    sp1_site(env, facts, ROLLUP)
    require(server, facts, evidence, ROLLUP)


def rollup_member(server, env, facts, evidence, kb: str) -> None:
    sp1_site(env, facts, kb)
    require(server, facts, evidence, kb, rollup=ROLLUP)


@pytest.mark.check("HF-KB954718")
def test_kb954718_console_to_amt_before_3_2_1(server, env, facts, evidence):
    rollup_member(server, env, facts, evidence, "KB954718")


@pytest.mark.check("HF-KB955126")
def test_kb955126_smsexec_crash_with_amt_software(server, env, facts, evidence):
    rollup_member(server, env, facts, evidence, "KB955126")


@pytest.mark.check("HF-KB955114")
def test_kb955114_smsexec_crash_on_rtm_child_site_ct2(server, env, facts, evidence):
    rollup_member(server, env, facts, evidence, "KB955114")


@pytest.mark.check("HF-KB955355")
def test_kb955355_smsexec_crash_on_long_dn(server, env, facts, evidence):
    rollup_member(server, env, facts, evidence, "KB955355")


@pytest.mark.check("HF-KB956337")
def test_kb956337_amt2_user_acls(server, env, facts, evidence):
    rollup_member(server, env, facts, evidence, "KB956337")


@pytest.mark.check("HF-KB957183")
def test_kb957183_long_group_names(server, env, facts, evidence):
    rollup_member(server, env, facts, evidence, "KB957183")


@pytest.mark.check("HF-KB957469")
def test_kb957469_power_control_amt4_amt5(server, env, facts, evidence):
    rollup_member(server, env, facts, evidence, "KB957469")


@pytest.mark.check("HF-KB959040")
def test_kb959040_amt2_provisioning(server, env, facts, evidence):
    rollup_member(server, env, facts, evidence, "KB959040")


@pytest.mark.check("HF-KB936059")
def test_kb936059_winrm_update(server, facts, evidence):
    w = Windows(server, facts)
    if w.release not in ((5, 1), (5, 2)):
        not_applicable(f"{w}: KB936059 is for Windows XP and Server 2003")
    stack = facts.windows.registry(server, WINRM_KEY, "StackVersion")
    require(server, facts, evidence, "KB936059",
            included=version(stack) >= (1, 1) and f"the WinRM stack is {stack} (KB936059's WinRM 1.1 or later)")


@pytest.mark.check("HF-KB932303")
def test_kb932303_wmi_with_dotnet_2(server, facts, evidence):
    w = Windows(server, facts)
    if w.release not in ((5, 1), (5, 2)):
        not_applicable(f"{w}: KB932303 is for Windows XP and Server 2003")
    if facts.windows.registry(server, DOTNET20_KEY, "Install", "dword") != 1:
        not_applicable("the .NET Framework 2.0 is not installed")
    require(server, facts, evidence, "KB932303")


@pytest.mark.check("HF-KB940848")
def test_kb940848_mmc_rollup(server, facts, evidence):
    w = Windows(server, facts)
    if not (w.release in ((5, 1), (5, 2)) or (w.release == (6, 0) and w.workstation)):
        not_applicable(f"{w}: KB940848 is for Windows Server 2003, XP and Vista")
    require(server, facts, evidence, "KB940848")
