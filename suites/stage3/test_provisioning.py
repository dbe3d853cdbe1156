"""Stage 3: provisioning starts and completes; the site knows the client and its ME as it should.

Guide, Stage 3: "Check AMTOPMGR.LOG file on the SCCM server and verify the provisioning process starts and both first
and second stage provisioning completes successfully (use Trace32 to view log file)"; "When using SCCM out-of-band
provisioning for clients, verify the SCCM agent is not installed on those clients ... (check using SCCM Console to
view the Client column of SCCM collections)"; "check that clients have been imported into the SCCM server
responsible for client provisioning using 'Import Out of Band Management Controller Wizard' (check SCCM collections
using SCCM Console) and the Intel ME hostname matches the client OS hostname"; "Check Intel ME Admin credentials
are known by SCCM (check Provisioning and Discovery accounts in Intel AMT Component configuration in SCCM Console).
Normally this only needs doing if MEBX credentials have changed from default admin/admin".
"""
import pytest

from pytest_vpro.checks import expect, not_applicable
from pytest_vpro.probes import cmlog
from pytest_vpro.probes.errors import ProbeError

OOB_COMPONENT = "SMS_AMT_OPERATION_MANAGER"
MEBX_DEFAULT = ("admin", "admin")


def _when(e) -> str:
    return f"{e.time:%Y-%m-%d %H:%M:%S}" if e.time else "(no time)"


def _log(facts, evidence) -> list:
    events = facts.client_events()
    evidence.attach("AMTOPMGR.LOG", cmlog.trace(events))
    return events


@pytest.mark.check("S3-AMTOPMGR-PROVISIONING-COMPLETED")
def test_site_server_logged_provisioning_completed(client, facts, evidence):
    events = _log(facts, evidence)
    starts = [i for i, e in enumerate(events) if e.kind == "provisioning_started"]
    requests = [e for e in events if e.kind in ("hello_received", "ztc_request")]
    expect(starts, found=f"no provisioning started for {client.fqdn} in AMTOPMGR.LOG ({len(requests)} hellos or "
                         f"ZTC requests{', the last ' + _when(requests[-1]) if requests else ''})",
           expected="'provisioning started', then first and second stage completed")
    attempt = events[starts[-1]:]
    failed = [e for e in attempt if e.kind == "provisioning_failed"]
    expect(not failed, found=f"provisioning failed ({_when(failed[-1])}): {failed[-1].reason}" if failed else "",
           expected="first and second stage provisioning completed")
    stages = {e.kind: e for e in attempt}
    missing = [k.replace("_", " ") for k in ("first_stage_completed", "second_stage_completed") if k not in stages]
    expect(not missing, found=f"provisioning started ({_when(events[starts[-1]])}), then no {' and no '.join(missing)}",
           expected="first and second stage provisioning completed")
    undone = [e for e in attempt if e.kind == "unprovision_completed"]
    expect(not undone, found=f"provisioned, then un-provisioned ({_when(undone[-1])})" if undone else "",
           expected="provisioned")
    try:  # WS-MAN confirms, when the ME answers (a TLS or network problem is another check's finding)
        state = facts.amt("provisioning")
    except ProbeError as exc:
        evidence.attach("AMT", f"not confirmed over WS-MAN: {exc}")
        return
    evidence.attach("AMT", {"ProvisioningState": state.state, "state": state.state_name})
    expect(state.state == 2, found=f"AMTOPMGR.LOG says completed but the ME is {state.state_name} "
                                   f"(ProvisioningState {state.state})", expected="post-provisioning (2)")


@pytest.mark.check("S3-OOB-CLIENT-NO-SCCM-AGENT")
def test_out_of_band_client_has_no_agent(client, facts, evidence):
    if client.provisioning != "out_of_band":
        not_applicable("in-band clients have the agent by design")
    resource = facts.sms_resource()
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
    resource = facts.sms_resource()
    expect(resource, found=f"no SMS_R_System resource named {client.fqdn}",
           expected="the client imported with the Import Out of Band Management Controller wizard")
    member_of = sorted({m["CollectionID"] for m in facts.site_wmi("SMS_FullCollectionMembership")
                        if m.get("ResourceID") == resource.get("ResourceId")})
    evidence.attach("SMS_R_System", {**resource, "collections": member_of})
    guid = str(resource.get("SMBIOSGUID") or "").lower()
    hello_uuid = next((e.uuid for e in reversed(facts.client_events()) if e.kind == "hello_received" and e.uuid),
                      None)
    device = (client.uuid or hello_uuid or "").lower()
    if device:
        expect(guid == device, found=f"SMBIOS GUID {guid or '(none)'}",
               expected=f"the client's UUID {device} ({'inventory' if client.uuid else 'its hellos'})")
    agents = ", ".join(resource.get("AgentName") or []) or "none"
    expect(member_of, found=f"resource {resource.get('ResourceId')} is in no collection (discovered by: {agents})",
           expected="a member of a collection (imported, collection membership updated)")


@pytest.mark.check("S3-ME-HOSTNAME-MATCHES-OS")
def test_me_host_name_matches_the_os(client, facts, evidence):
    try:
        settings = facts.amt("general_settings")
    except ProbeError:
        if not cmlog.provisioned(facts.client_events()):
            not_applicable("not provisioned by the site yet: AMT answers WS-MAN once provisioned")
        raise
    me = settings.fqdn.lower()
    if client.provisioning == "in_band":
        system = facts.wmi(client, "Win32_ComputerSystem")[0]
        os_name, source = f"{system.get('DNSHostName')}.{system.get('Domain')}".lower(), "Win32_ComputerSystem"
    else:
        os_name, source = client.fqdn.lower(), "the inventory"
    evidence.attach("names", {"AMT_GeneralSettings": {"HostName": settings.host_name,
                                                      "DomainName": settings.domain_name}, source: os_name})
    expect(me == os_name, found=f"ME {settings.host_name}.{settings.domain_name}, OS {os_name} ({source})",
           expected="the ME's host name and domain equal to the OS's")


def _mebx_default(env) -> bool:
    cred = env.credentials.get("amt")
    if cred is None or cred.kerberos:
        return False  # cannot tell: an account is needed unless the passwords are known to be the default
    return (str(cred.user).lower(), cred.password.resolve()) == MEBX_DEFAULT


@pytest.mark.check("S3-ME-ADMIN-CREDENTIALS-KNOWN")
def test_site_knows_the_mebx_admin_credentials(site, env, facts, evidence):
    components = [c for c in facts.site_wmi("SMS_SCI_Component") if c.get("ComponentName") == OOB_COMPONENT]
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
