"""Stage 3: provisioning starts and completes; the site knows the client and its ME as it should.

Guide, Stage 3: "Check AMTOPMGR.LOG file on the SCCM server and verify the provisioning process starts and both first
and second stage provisioning completes successfully (use Trace32 to view log file)"; "When using SCCM out-of-band
provisioning for clients, verify the SCCM agent is not installed on those clients ... (check using SCCM Console to
view the Client column of SCCM collections)"; "check that clients have been imported into the SCCM server
responsible for client provisioning using 'Import Out of Band Management Controller Wizard' (check SCCM collections
using SCCM Console) and the Intel ME hostname matches the client OS hostname"; "Check Intel ME Admin credentials
are known by SCCM (check Provisioning and Discovery accounts in Intel AMT Component configuration in SCCM Console).
Normally this only needs doing if MEBX credentials have changed from default admin/admin".

"Provisioning completed" is what SCCM records (``SMS_R_System.AMTStatus`` 3, set when the site provisions the client;
null until Discover Management Controllers runs, when the site's own log shows it) and the ME confirms
(ProvisioningState 2). AMTOPMGR.LOG, with its rolled-over history (``.lo_``), tells the story of the last attempt
(started, failed with a reason, first and second stage) for a client that is not provisioned; a client provisioned
before the log rolled over needs no line at all.
"""
import pytest

from pytest_vpro.checks import cannot_decide, expect, not_applicable
from pytest_vpro.facts.directory import in_amt_path
from pytest_vpro.probes import cmlog
from pytest_vpro.probes.errors import ProbeError
from pytest_vpro.sccm import PROVISIONED, amt_status_text, when

OOB_COMPONENT = "SMS_AMT_OPERATION_MANAGER"
MEBX_DEFAULT = ("admin", "admin")


def _log_story(status, client) -> str:
    """What AMTOPMGR.LOG (and its history) shows of the client's last provisioning attempt."""
    events = status.events
    starts = [i for i, e in enumerate(events) if e.kind == "provisioning_started"]
    if not starts:
        requests = status.log("hello_received", "ztc_request")
        return (f"no provisioning started for {client.fqdn} in AMTOPMGR.LOG or its history ({len(requests)} hellos "
                f"or ZTC requests{', the last ' + when(requests[-1]) if requests else ''})")
    attempt = events[starts[-1]:]
    failed = [e for e in attempt if e.kind == "provisioning_failed"]
    if failed:
        return f"provisioning failed ({when(failed[-1])}): {failed[-1].reason}"
    undone = [e for e in attempt if e.kind == "unprovision_completed"]
    if undone:
        return f"provisioned, then un-provisioned ({when(undone[-1])})"
    stages = {e.kind for e in attempt}
    missing = [k.replace("_", " ") for k in ("first_stage_completed", "second_stage_completed") if k not in stages]
    return (f"provisioning started ({when(events[starts[-1]])}), then no {' and no '.join(missing)}" if missing
            else f"first and second stage provisioning completed ({when(attempt[-1])})")


@pytest.mark.check("S3-AMTOPMGR-PROVISIONING-COMPLETED")
def test_site_server_logged_provisioning_completed(client, facts, evidence):
    status = facts.site.provisioning_status()
    status.attach(evidence)
    site, logged = status.amt_status, cmlog.provisioned(status.events)
    # SCCM's record first; before Discover Management Controllers sets it (null), the site's own log
    expect(status.resource is not None and (site == PROVISIONED or (site is None and logged)),
           found=f"{_log_story(status, client)}; {amt_status_text(site) if status.resource else 'no SMS_R_System'}",
           expected=f"{amt_status_text(PROVISIONED)}, after first and second stage provisioning completed")
    me = status.me()  # WS-MAN confirms, when the ME answers (a TLS or network problem is another check's finding)
    if isinstance(me, ProbeError):
        evidence.attach("AMT", f"not confirmed over WS-MAN: {me}")
        return
    expect(me.state == 2, found=f"{amt_status_text(site) if site is not None else _log_story(status, client)}, but "
                                f"the ME is {me.state_name} (ProvisioningState {me.state})",
           expected="post-provisioning (2)")


@pytest.mark.check("S3-OOB-CLIENT-NO-SCCM-AGENT")
def test_out_of_band_client_has_no_agent(client, facts, evidence):
    if client.provisioning != "out_of_band":
        not_applicable("in-band clients have the agent by design")
    resource = facts.site.resource()
    evidence.attach("SMS_R_System", resource or "no resource")
    if resource is None:
        return  # the site has not detected any agent on it (S3-OOB-CLIENT-IMPORTED judges the import)
    expect(resource.get("Client") != 1,
           found=f"SMS_R_System.Client = 1: agent {resource.get('ClientVersion') or '(version unknown)'} detected",
           expected="no Configuration Manager agent on an out of band client (Client 0 or empty)")


@pytest.mark.check("S3-OOB-CLIENT-IMPORTED")
def test_out_of_band_client_is_imported(client, facts, evidence):
    if client.provisioning != "out_of_band":
        not_applicable("in-band clients are discovered through their agent")
    resource = facts.site.resource()
    expect(resource, found=f"no SMS_R_System resource named {client.fqdn}",
           expected="the client imported with the Import Out of Band Management Controller wizard")
    member_of = sorted(facts.site.member_of(resource.get("ResourceId")))
    evidence.attach("SMS_R_System", {**resource, "collections": member_of})
    guid = str(resource.get("SMBIOSGUID") or "").lower()
    hello_uuid = next((e.uuid for e in reversed(facts.logs.client_events()) if e.kind == "hello_received" and e.uuid),
                      None)
    device = (client.uuid or hello_uuid or "").lower()
    if device:
        expect(guid == device, found=f"SMBIOS GUID {guid or '(none)'}",
               expected=f"the client's UUID {device} ({'inventory' if client.uuid else 'its hellos'})")
    agents = ", ".join(resource.get("AgentName") or []) or "none"
    expect(member_of, found=f"resource {resource.get('ResourceId')} is in no collection (discovered by: {agents})",
           expected="a member of a collection (imported, collection membership updated)")


def os_name_of(client, env, facts) -> tuple[str | None, str]:
    """The OS's FQDN of an out of band client as the estate records it, and where from: the computer account
    the OS keeps in the directory (``dNSHostName``, from the global catalog; not the site's AMT object in the
    AMT container), else the site's record (``SMS_R_System.ResourceNames``); ``(None, why)`` if neither has it."""
    host = client.fqdn.split(".", 1)[0].upper()[:15]
    gaps = []
    try:
        computers = facts.derived("gc.computers.by_host", facts.directory.forest_computers(), _by_host)
        own = sorted(name for name, dn in computers.get(host, []) if not in_amt_path(dn, env.site.amt_container))
        if own:
            return own[0], f"the computer account {host}$ (dNSHostName)"
        gaps.append(f"no computer account {host} outside {env.site.amt_container or 'the AMT container'}")
    except ProbeError as exc:
        gaps.append(f"the global catalog did not answer: {exc}")
    try:
        resource = facts.site.resource()
    except ProbeError as exc:
        return None, "; ".join(gaps + [f"the SMS Provider did not answer: {exc}"])
    if resource is None:
        return None, "; ".join(gaps + [f"no SMS_R_System resource for {client.fqdn}"])
    names = [str(n).lower() for n in resource.get("ResourceNames") or []]
    if not names:
        return None, "; ".join(gaps + [f"SMS_R_System {resource.get('ResourceId')} has no ResourceNames"])
    name = client.fqdn.lower() if client.fqdn.lower() in names else names[0]
    return name, f"SMS_R_System {resource.get('ResourceId')} ResourceNames"


def _by_host(computers: dict[str, list[str]]) -> dict[str, list[tuple[str, str]]]:
    """``{HOST (upper case, 15 characters): [(dNSHostName, DN), ...]}`` of the forest's computer objects."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, dns in computers.items():
        for dn in dns:
            out.setdefault(name.split(".", 1)[0].upper()[:15], []).append((name, dn))
    return out


@pytest.mark.check("S3-ME-HOSTNAME-MATCHES-OS")
def test_me_host_name_matches_the_os(client, env, facts, evidence):
    if not facts.amt.provisioned():
        not_applicable("not provisioned yet: AMT answers WS-MAN once provisioned")
    settings = facts.amt.general_settings()
    me = settings.fqdn.lower()
    if client.provisioning == "in_band":
        system = facts.windows.wmi(client, "Win32_ComputerSystem")[0]
        os_name, source = f"{system.get('DNSHostName')}.{system.get('Domain')}".lower(), "Win32_ComputerSystem"
    else:
        os_name, source = os_name_of(client, env, facts)
    evidence.attach("names", {"AMT_GeneralSettings": {"HostName": settings.host_name,
                                                      "DomainName": settings.domain_name},
                              "OS": {"name": os_name, "from": source}, "the inventory": client.fqdn})
    if os_name is None:
        cannot_decide(f"the OS's name of {client.fqdn} is recorded nowhere the check can read: {source}")
    expect(me == os_name, found=f"ME {settings.host_name}.{settings.domain_name}, OS {os_name} ({source})",
           expected="the ME's host name and domain equal to the OS's")


def _mebx_default(env) -> bool:
    cred = env.credentials.get("amt")
    if cred is None or cred.kerberos:
        return False  # cannot tell: an account is needed unless the passwords are known to be the default
    return (str(cred.user).lower(), cred.password.resolve()) == MEBX_DEFAULT


@pytest.mark.check("S3-ME-ADMIN-CREDENTIALS-KNOWN")
def test_site_knows_the_mebx_admin_credentials(site, env, facts, evidence):
    components = [c for c in facts.site.wmi("SMS_SCI_Component") if c.get("ComponentName") == OOB_COMPONENT]
    expect(components, found=f"no {OOB_COMPONENT} component at the site", expected="the out of band component")
    props = components[0].get("Props") or []
    lists = components[0].get("PropLists") or []
    accounts = sorted({str(p.get("Value1")) for p in props if "account" in str(p.get("PropertyName", "")).lower()
                       and p.get("Value1")} | {str(v) for p in lists
                                               if "account" in str(p.get("PropertyListName", "")).lower()
                                               for v in p.get("Values") or [] if v})
    default = _mebx_default(env)
    evidence.attach("AMT provisioning and discovery accounts", {"accounts": accounts,  # names only
                                                                "MEBx password is the default": default})
    if default:
        return  # the guide: only needed when the MEBx credentials are no longer admin/admin
    expect(accounts, found=f"no AMT Provisioning and Discovery account in {OOB_COMPONENT}",
           expected="an account holding the current MEBx admin password (the environment's AMT credential is not "
                    "the default admin/admin)")
