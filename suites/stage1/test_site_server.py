"""Stage 1 and the prerequisites page: the site server's Windows, its Configuration Manager roles and settings.

Guide, Stage 1: "Base Microsoft SCCM installation performed in accordance with Microsoft supported hardware and
software recommendations."; "Microsoft SCCM SP1 installed on both SCCM servers and client agents."; "Microsoft
SCCM OOB service point installed on all SCCM primary sites responsible for provisioning clients"; "Intel WS-MAN
Translator installed on any SCCM servers responsible for provisioning legacy clients (i.e., using Intel AMT
firmware earlier than V3.2.1)" and "... responsible for provisioning clients using PSK rather than PKI".
Prerequisites (seed 004): "Windows Remote Management (WinRM) 1.1 or later must be installed on each site system
server that hosts the out of band service point role"; "If the out of band service point site system role is
installed on Windows Server 2003, Windows Server 2003 Service Pack 2 or later is required."; "Full IPsec
environments are not supported. Do not configure IPsec policies for the AMT communication between the out of
band service point site system server and computers that will be managed out of band."; "If you will use network
discovery to identify computers with management controllers, you must first install the out of band service
point, and you might have to configure an AMT Provisioning and Discovery Account."; "If you want to use any of
the following features, the Configuration Manager site must be running Configuration Manager 2007 SP2: ... 802.1X
... wireless ... Auditing ... Data storage ... different power states ... Provisioning schedule"; "To use the
auditing feature in Configuration Manager 2007 SP2, you must have a version of AMT that supports auditing. AMT
versions earlier than 4.0 do not support auditing."; "The reporting point site system role must be installed
before out of band management reports can be displayed."

Installed software is read from services and the registry, never from Win32_Product: enumerating that class
makes Windows Installer verify (and repair) every installed product, which a read-only run must not cause.
"""
import re

import pytest

from pytest_vpro.checks import expect, not_applicable
from pytest_vpro.probes.errors import ProbeError, Undecided
from pytest_vpro.probes.ipsec import TCP

SP1 = (4, 0, 6221, 1000)
INVENTORY = "SELECT Name, ResourceNames, AMTFullVersion, ClientVersion FROM SMS_R_System"
#: Where Windows keeps the WinRM stack version (unconfirmed: the lab's, pytest_vpro.lab.site_server.WINRM_STACK_KEY).
WINRM_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WSMAN"
#: Configuration Manager 2007 site server platforms, from "Configuration Manager 2007 SP1/SP2 Supported
#: Configurations" (not in the seeds: unconfirmed): (Windows version, minimum service pack, minimum site build).
SUPPORTED_SITE_SERVER_OS = {(5, 2): (1, 6221, "Windows Server 2003 SP1 or later (R2 included)"),
                            (6, 0): (0, 6221, "Windows Server 2008"),
                            (6, 1): (0, 6487, "Windows Server 2008 R2, with Configuration Manager 2007 SP2")}
MIN_MEMORY_BYTES = 1 << 30  # 1 GB, the supported configurations' recommended minimum (unconfirmed)
#: The translator's Windows service, by display name (unconfirmed: the lab's "Intel(R) AMT WS-MAN Translator").
TRANSLATOR_SERVICES = ("SELECT Name, DisplayName, State FROM Win32_Service WHERE DisplayName LIKE '%WS-MAN%Translator%'"
                       " OR DisplayName LIKE '%WS-Management%Translator%'")
#: SMS_SCI_Component names (unconfirmed, = pytest_vpro.lab.site_server's OOB_PROPS, NETWORK_DISCOVERY).
OOB_COMPONENT, DISCOVERY_COMPONENT = "SMS_AMT_OPERATION_MANAGER", "SMS_NETWORK_DISCOVERY"
DISCOVERY_ENABLED, DISCOVERY_ACCOUNT = "Enable Network Discovery", "AMT Provisioning Account"
#: The SP2-only out of band features (CM2007 library, docs/protocols.md), in the guide's words. The site control
#: property that turns each on has no public source: ``expected.sp2_feature_properties`` names it, by these keys.
SP2_FEATURES = {"wired_8021x": "802.1X wired networks", "wireless": "wireless networks", "auditing": "auditing",
                "data_storage": "data storage in AMT", "power_state": "a power state other than Always on",
                "provisioning_schedule": "a provisioning schedule for in-band provisioning"}
SP2_BUILD = 6487  # SMS_Site.BuildNumber of SP2 (4.00.6487.2000); R3 requires SP2, R2 leaves the version as it is


def version(text) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text or "")))


def dotted(parts: tuple[int, ...]) -> str:
    return ".".join(map(str, parts))


def windows(host, facts) -> dict:
    return facts.windows.wmi(host, "Win32_OperatingSystem")[0]


def sms_site(env, facts) -> dict:
    found = facts.site.wmi("SMS_Site", f"SELECT * FROM SMS_Site WHERE SiteCode = '{env.site.code}'")
    expect(found, found=f"no SMS_Site {env.site.code} on the SMS Provider", expected=f"the site {env.site.code}")
    return found[0]


def roles_on(env, facts, server, role: str) -> list[dict]:
    """SMS_SCI_SysResUse rows of ``role`` in this site whose NetworkOSPath (\\\\FQDN) names ``server``."""
    names = {server.name.lower(), server.name.split(".")[0].lower()}
    return [r for r in facts.site.wmi("SMS_SCI_SysResUse") if str(r.get("RoleName", "")).lower() == role.lower()
            and str(r.get("SiteCode", "")).upper() == env.site.code.upper()
            and str(r.get("NetworkOSPath", "")).strip("\\").lower() in names]


def component(env, facts, name: str) -> dict[str, dict]:
    """The Props of the site's SMS_SCI_Component ``name``, by PropertyName ({} if the component is absent)."""
    return {k: p for k, p in (component_settings(env, facts, name) or {}).items() if "PropertyName" in p}


def component_settings(env, facts, name: str) -> dict[str, dict] | None:
    """Every Props (SMS_EmbeddedProperty) and PropLists (SMS_EmbeddedPropertyList) entry of the site's
    SMS_SCI_Component ``name``, by PropertyName / PropertyListName (None if the component is absent)."""
    comps = [c for c in facts.site.wmi("SMS_SCI_Component") if c.get("ComponentName") == name
             and str(c.get("SiteCode", "")).upper() == env.site.code.upper()]
    if not comps:
        return None
    held = {p.get("PropertyName"): p for c in comps for p in c.get("Props") or []}
    held.update({p.get("PropertyListName"): p for c in comps for p in c.get("PropLists") or []})
    return held


def turned_on(entry: dict) -> bool:
    """A property with a non-zero Value or a non-empty Value1/Value2, or a property list with a value."""
    if "PropertyListName" in entry:
        return any(str(v).strip() for v in entry.get("Values") or [])
    return str(entry.get("Value") or "").strip().lower() not in ("", "0", "false") or \
        any(str(entry.get(k) or "").strip() for k in ("Value1", "Value2"))


def site_build(sms: dict) -> int | None:
    """The site's build: SMS_Site.BuildNumber (UInt32), else the third field of SMS_Site.Version (4.00.<build>.x)."""
    build = str(sms.get("BuildNumber") or "").strip()
    if build.isdigit() and int(build):
        return int(build)
    parts = version(sms.get("Version"))
    return parts[2] if len(parts) > 2 else None


def unnamed(names: dict[str, str], held: dict | None) -> str:
    """Why the configured property names (``names``: feature -> property) settle nothing, for a "cannot decide"."""
    configured = ", ".join(f"{names[k]!r} ({SP2_FEATURES[k]})" for k in names)
    if held is None:
        return f"the site has no {OOB_COMPONENT} component to hold {configured}"
    return (f"{OOB_COMPONENT} holds none of the configured property names {configured}, which no public source "
            f"confirms; it holds {', '.join(repr(n) for n in sorted(map(str, held))) or 'nothing'}: name this "
            "site's in expected.sp2_feature_properties")


def translator(server, facts, evidence) -> str | None:
    """None if a WS-MAN translator service runs on ``server``; else what was found."""
    services = facts.windows.wmi(server, "Win32_Service", wql=TRANSLATOR_SERVICES)
    evidence.attach("WS-MAN translator services", services)
    running = [s for s in services if s.get("State") == "Running"]
    if running:
        return None
    if services:
        return f"the WS-MAN translator service {services[0].get('Name')} is {services[0].get('State')}"
    return f"no Intel WS-MAN translator service on {server.name}"


@pytest.mark.check("S1-SCCM-SUPPORTED-BASE-INSTALL")
def test_site_server_runs_a_supported_configuration(server, env, facts, evidence):
    os, system, sms = windows(server, facts), facts.windows.wmi(server, "Win32_ComputerSystem")[0], sms_site(env, facts)
    evidence.attach("site server", {"os": os, "memory": system.get("TotalPhysicalMemory"), "site": sms})
    ver, sp, build = version(os.get("Version"))[:2], os.get("ServicePackMajorVersion") or 0, version(sms["Version"])
    platform = SUPPORTED_SITE_SERVER_OS.get(ver)
    problems = []
    if os.get("ProductType") == 1 or "web edition" in str(os.get("Caption")).lower() or platform is None:
        problems.append(f"{os.get('Caption')} {os.get('Version')} is not a site server platform")
    elif sp < platform[0] or build[2:3] < (platform[1],):
        problems.append(f"{os.get('Caption')} SP{sp} with site build {dotted(build)} (needs {platform[2]})")
    if (system.get("TotalPhysicalMemory") or 0) < MIN_MEMORY_BYTES:
        problems.append(f"{(system.get('TotalPhysicalMemory') or 0) >> 20} MB of memory")
    if build < SP1:
        problems.append(f"site {env.site.code} runs {sms['Version']}, before SP1 (no out of band management)")
    expect(not problems, found="; ".join(problems), expected="Windows Server 2003 SP1+/2008 (2008 R2 with SP2), "
           f"at least {MIN_MEMORY_BYTES >> 20} MB, Configuration Manager 2007 SP1 or later")


@pytest.mark.check("S1-SCCM-SP1-SITE")
def test_site_and_site_server_run_sp1_or_later(server, env, facts, evidence):
    sms = sms_site(env, facts)
    full, key = facts.windows.sms_registry(server, "Setup", "Full Version")  # the 32-bit view on 64-bit Windows
    evidence.attach("versions", {"SMS_Site.Version": sms["Version"], f"{key}\\Full Version": full})
    old = [f"SMS_Site {env.site.code} Version {sms['Version']}"] if version(sms["Version"]) < SP1 else []
    old += [f"{server.name} {key}\\Full Version {full or 'absent'}"] if version(full) < SP1 else []
    expect(not old, found="; ".join(old), expected=f"{dotted(SP1)} (SP1) or later")


@pytest.mark.check("S1-OOB-SERVICE-POINT-INSTALLED")
def test_out_of_band_service_point_role_is_installed(server, env, facts, evidence):
    mine = [r for r in facts.site.wmi("SMS_SCI_SysResUse")
            if str(r.get("NetworkOSPath", "")).strip("\\").lower() in (server.name, server.name.split(".")[0])]
    evidence.attach("site system roles of this server", [r.get("RoleName") for r in mine])
    expect(roles_on(env, facts, server, "SMS Out of band service point"),
           found=f"{server.name} has the roles {sorted(r.get('RoleName') for r in mine)} in site {env.site.code}",
           expected="the role 'SMS Out of band service point'")


@pytest.mark.check("PRE-REPORTING-POINT")
def test_reporting_point_role_is_installed(server, env, facts):
    expect(roles_on(env, facts, server, "SMS Reporting Point"),
           found=f"no 'SMS Reporting Point' role on {server.name} in site {env.site.code}",
           expected="the reporting point role (SMS_SCI_SysResUse)")


@pytest.mark.check("S1-WSMAN-TRANSLATOR-LEGACY")
def test_translator_serves_legacy_clients(server, env, facts, evidence):
    floor = version(env.expected["amt_native_min_version"])
    legacy = [f"{r.get('Name')} (AMT {r['AMTFullVersion']})" for r in facts.site.wmi("SMS_R_System", INVENTORY)
              if r.get("AMTFullVersion") and version(r["AMTFullVersion"]) < floor]
    if not legacy:
        not_applicable(f"no client runs AMT below {dotted(floor)} (SMS_R_System.AMTFullVersion)")
    evidence.attach("legacy clients", legacy)
    missing = translator(server, facts, evidence)
    expect(missing is None, found=f"{missing}; legacy clients: {', '.join(legacy[:5])}",
           expected="the Intel WS-MAN Translator installed and running")


@pytest.mark.check("S1-WSMAN-TRANSLATOR-PSK")
def test_translator_serves_psk_clients(server, env, facts, evidence):
    psk = [c.name for c in env.clients if str(c.extra.get("provisioning_mode", "")).lower() == "psk"]
    psk += sorted({key for key, events in facts.logs.site_events().items() for e in events
                   if e.kind == "hello_received" and e.line is not None and re.search(r"\bPSK\b", e.line.message)})
    if not psk:
        not_applicable("no PSK client (inventory provisioning_mode, or PSK hellos in AMTOPMGR.LOG)")
    evidence.attach("PSK clients", psk)
    missing = translator(server, facts, evidence)
    expect(missing is None, found=f"{missing}; PSK clients: {', '.join(psk[:5])}",
           expected="the Intel WS-MAN Translator installed and running")


def winrm_version(host, facts) -> tuple[tuple[int, ...], str]:
    """The WinRM stack version and where it was read: the registry, else Windows 6.x (built in), else KB936059."""
    stack = facts.windows.registry(host, WINRM_KEY, "StackVersion")
    if stack:
        return version(stack), f"StackVersion {stack}"
    if version(windows(host, facts).get("Version")) >= (6, 0):
        return (1, 1), "built into Windows Vista / Server 2008"
    fixes = {str(f.get("HotFixID", "")).upper() for f in facts.windows.wmi(host, "Win32_QuickFixEngineering")}
    return ((1, 1), "KB936059 installed") if "KB936059" in fixes else ((), "no StackVersion and no KB936059")


@pytest.mark.check("PRE-WINRM-SERVICE-POINT")
def test_service_point_has_winrm_1_1(server, facts):
    stack, how = winrm_version(server, facts)
    expect(stack >= (1, 1), found=f"WinRM {dotted(stack) or 'unknown'} ({how})", expected="WinRM 1.1 or later")


@pytest.mark.check("PRE-SERVICE-POINT-WINDOWS-2003-SP2")
def test_service_point_on_windows_2003_has_sp2(server, facts):
    os = windows(server, facts)
    if version(os.get("Version"))[:2] != (5, 2):
        not_applicable(f"{os.get('Caption')} {os.get('Version')} is not Windows Server 2003")
    sp = os.get("ServicePackMajorVersion") or 0
    expect(sp >= 2, found=f"{os.get('Caption')} {os.get('CSDVersion') or 'without a service pack'}",
           expected="Windows Server 2003 Service Pack 2 or later")


#: AMT's ports (docs/protocols.md, "AMT ports"): the service point connects to them; the ME's hellos go to 9971.
AMT_PORTS = (16992, 16993, 16994, 16995)


def amt_packets(env, sp: str, client: str):
    """The packets of AMT traffic between the service point ``sp`` and ``client``: (source, destination, TCP,
    source port, destination port), an ephemeral port None; each side (address, is the service point)."""
    ports = env.expected.get("ports") or {}
    hello = int(ports.get("provisioning", 9971))
    amt = sorted(set(AMT_PORTS) | {int(p) for k, p in ports.items() if k != "provisioning"})
    me, peer = (sp, True), (client, False)
    for port in amt:
        yield me, peer, TCP, None, port
        yield peer, me, TCP, port, None
    yield peer, me, TCP, None, hello
    yield me, peer, TCP, hello, None


def client_address(facts, client) -> str | None:
    """The client's address from the environment, else its A record; None if neither is known (a DNS server that
    does not answer is one client's unknown, not the site-wide check's failure)."""
    if client.address:
        return client.address
    try:
        return next(iter(facts.dns.forward(client.name)), None)
    except ProbeError:
        return None


def covers_amt(env, facts, sp: str, f) -> tuple[bool | None, str]:
    """Whether filter ``f`` matches AMT traffic between the service point and a client of the environment (True,
    with the client), cannot be told (None) or not (False)."""
    sides = (f.source, f.destination)
    specific = any(not (s.any or s.me or s.special) for s in sides)
    clients = [(c.name, client_address(facts, c)) for c in env.clients] if specific else [("any client", "")]
    unknown = False
    for name, address in clients:
        if address is None:  # no address known: whether the filter names it cannot be told
            unknown = True
            continue
        for packet in amt_packets(env, sp, address):
            hit = f.matches(*packet)
            if hit:
                return True, name
            unknown = unknown or hit is None
    return (None if unknown else False), ""


@pytest.mark.check("PRE-NO-IPSEC")
def test_no_ipsec_policy_on_service_point(server, env, facts, evidence):
    policies = facts.windows.ipsec_policies(server)
    evidence.attach("IPsec policy assignments", [p.summary() for p in policies] or "none")
    if not policies:
        return
    sp = server.address or facts.dns.address()
    securing, exempting, unsure = [], [], [f"{p.name}: {why}" for p in policies for why in p.unreadable]
    for policy in policies:
        for rule in policy.rules:
            for f in rule.filters:
                hit, client = covers_amt(env, facts, sp, f)
                said = (f"{policy.kind} '{policy.name}', rule '{rule.name}' (action '{rule.action or 'not read'}'), "
                        f"filter list '{rule.filter_list}', filter {f}")
                if hit is None:
                    unsure.append(f"{said}: one side is a server of the service point's own settings")
                elif hit and rule.permit is None:
                    unsure.append(f"{said}: its action was not read")
                elif hit:
                    (exempting if rule.permit else securing).append(
                        f"{said}, matches AMT traffic between {server.name} ({sp}) and {client}")
    expected = (f"no IPsec filter of an assigned policy covering AMT traffic (TCP {', '.join(map(str, AMT_PORTS))}, "
                "9971) between the service point and the clients")
    if securing and exempting:
        raise Undecided(f"{securing[0]}, and a Permit rule also covers AMT traffic ({exempting[0]}): which one wins "
                        "depends on how specific the filters are, which this check does not judge")
    expect(not securing, found=securing[0] if securing else "", expected=expected)
    if unsure:
        raise Undecided(f"the assigned IPsec policy could not be judged in full: {'; '.join(unsure)}")


@pytest.mark.check("PRE-NETWORK-DISCOVERY-PREREQS")
def test_network_discovery_has_service_point_and_account(site, env, facts, evidence):
    discovery = component(env, facts, DISCOVERY_COMPONENT).get(DISCOVERY_ENABLED) or {}
    if not discovery.get("Value"):
        not_applicable("network discovery is not enabled")
    oob = component(env, facts, OOB_COMPONENT)
    account = (oob.get(DISCOVERY_ACCOUNT) or {}).get("Value1") or ""
    points = [r for r in facts.site.wmi("SMS_SCI_SysResUse") if str(r.get("SiteCode", "")).upper() ==
              env.site.code.upper() and str(r.get("RoleName", "")).lower() == "sms out of band service point"]
    evidence.attach("network discovery prerequisites", {"service points": [r.get("NetworkOSPath") for r in points],
                                                        "provisioning and discovery account": account})
    missing = (["no out of band service point in the site"] if not points else []) + \
              (["no AMT Provisioning and Discovery Account"] if not account else [])
    expect(not missing, found=f"network discovery enabled with {' and '.join(missing)}",
           expected="an out of band service point installed first, and an AMT Provisioning and Discovery Account")


@pytest.mark.check("PRE-SP2-FOR-SP2-FEATURES")
def test_sp2_features_run_on_an_sp2_site(site, env, facts, evidence):
    names = env.expected["sp2_feature_properties"]
    held = component_settings(env, facts, OOB_COMPONENT)
    evidence.attach(f"{OOB_COMPONENT} settings", {"configured (expected.sp2_feature_properties)": names,
                                                  "held": held if held is None else sorted(map(str, held))})
    present = {k: held[n] for k, n in names.items() if held and n in held}
    used = [SP2_FEATURES[k] for k, entry in present.items() if turned_on(entry)]
    evidence.attach("SP2-only features in use", used)
    if not used and present:
        unknown = sorted(set(names) - set(present))
        not_applicable("no SP2-only out of band feature is turned on" + (
            f" (no {OOB_COMPONENT} property {', '.join(names[k] for k in unknown)} to say for "
            f"{', '.join(SP2_FEATURES[k] for k in unknown)})" if unknown else ""))
    sms = sms_site(env, facts)
    build = site_build(sms)
    evidence.attach("site version", {"SMS_Site.Version": sms.get("Version"),
                                     "SMS_Site.BuildNumber": sms.get("BuildNumber"), "build": build})
    if not used and (build or 0) >= SP2_BUILD:
        return  # which features are on is unknown here, and an SP2 site may use them all
    if not used:
        raise Undecided(unnamed(names, held))
    if build is None:
        raise Undecided(f"{', '.join(used)} turned on, and SMS_Site {env.site.code} gives no build "
                        f"(BuildNumber {sms.get('BuildNumber')!r}, Version {sms.get('Version')!r})")
    expect(build >= SP2_BUILD, found=f"{', '.join(used)} turned on; site {env.site.code} runs {sms.get('Version')} "
                                     f"(build {build})",
           expected=f"Configuration Manager 2007 SP2 (build {SP2_BUILD}, 4.00.6487.2000) or later")


def inventory_record(client, facts) -> dict | None:
    """The site's SMS_R_System record of ``client`` (by FQDN in ResourceNames, else by NetBIOS name)."""
    rows = facts.site.wmi("SMS_R_System", INVENTORY)
    host = client.name.split(".")[0].upper()
    return next((r for r in rows if client.name in [str(n).lower() for n in r.get("ResourceNames") or []]),
                next((r for r in rows if str(r.get("Name", "")).upper() == host), None))


@pytest.mark.check("PRE-AUDITING-AMT-4")
def test_audited_clients_run_amt_4(client, env, facts, evidence):
    name = env.expected["sp2_feature_properties"]["auditing"]
    held = component_settings(env, facts, OOB_COMPONENT)
    if held and name in held and not turned_on(held[name]):
        not_applicable("auditing of AMT operations is not turned on")
    record = inventory_record(client, facts)
    amt = (record or {}).get("AMTFullVersion") or facts.amt.version().text
    evidence.attach("AMT version", {"SMS_R_System.AMTFullVersion": (record or {}).get("AMTFullVersion"), "used": amt})
    if not (held and name in held):
        evidence.attach(f"{OOB_COMPONENT} settings", held if held is None else sorted(map(str, held)))
        if version(amt) >= (4, 0):
            return  # whether auditing is on is unknown here, and this AMT supports it either way
        raise Undecided(f"AMT {amt} does not support auditing, and whether the site audits is not known: "
                        + unnamed({"auditing": name}, held))
    expect(version(amt) >= (4, 0), found=f"AMT {amt} with auditing turned on",
           expected="AMT 4.0 or later (earlier versions do not support auditing)")
