"""Stage 2, in-band provisioning: the client's agent, driver, site and policy let it request provisioning.

Guide, Stage 2: "If using SCCM in-band provisioning, enable automatic in-band provisioning for an SCCM collection
containing the client, update SCCM collection membership to re-generate client policy"; "When using SCCM in-band
provisioning, check the Intel MEI (formerly Intel HECI) driver is installed and started on the client (check using
Windows driver manager)"; "... check the SCCM agent is installed and assigned to an SCCM site code with the Out of
Band Service Point installed (check using Configuration Manager on the client)"; "... check the SCCM automatic
provisioning policy has been downloaded by the SCCM agent and is enabled (check using OOBMGMT.LOG file on client)".

Read-only: WMI over WinRM on the client and on the SMS Provider, OOBMGMT.LOG (with its rolled-over history,
``OOBMGMT.lo_``) over SMB. No public post quotes the agent's policy lines: the agent's lines are judged as they
read, and their absence alone decides nothing (the site's own record, or the check says it cannot decide). Out of
band clients: not applicable.
"""
import re

import pytest

from pytest_vpro.checks import cannot_decide, expect, not_applicable
from pytest_vpro.probes import cmlog
from pytest_vpro.probes.errors import ProbeError

MEI = re.compile(r"Management Engine Interface|HECI", re.I)
OOB_SERVICE_POINT_ROLE = "sms out of band service point"


def _in_band_only(client) -> None:
    if client.provisioning != "in_band":
        not_applicable("an out of band client has no Configuration Manager agent")


@pytest.mark.check("S2-INBAND-AUTO-PROVISIONING-COLLECTION")
def test_client_is_in_a_collection_with_automatic_provisioning(client, facts, evidence):
    _in_band_only(client)
    resource = facts.site.resource()
    expect(resource, found=f"no SMS_R_System resource for {client.fqdn} at the site",
           expected="the client's resource, a member of a collection with automatic AMT provisioning")
    collections = facts.site.collections()  # SMS_Collection, SMS_FullCollectionMembership, SMS_CollectionSettings
    names = {c["id"]: c["name"] for c in collections}
    member_of = {c["id"] for c in collections if c["member"]}
    automatic = {c["id"] for c in collections if c["auto_provision"]}
    evidence.attach("collections", {"resource": resource.get("ResourceId"),
                                    "member of": sorted(names.get(c, c) for c in member_of),
                                    "automatic provisioning enabled": sorted(names.get(c, c) for c in automatic)})
    expect(member_of & automatic,
           found=f"member of {', '.join(sorted(names.get(c, c) for c in member_of)) or 'no collection'}; automatic "
                 f"provisioning enabled on {', '.join(sorted(names.get(c, c) for c in automatic)) or 'no collection'}",
           expected="a collection containing the client with automatic AMT provisioning enabled")


@pytest.mark.check("S2-INBAND-MEI-DRIVER")
def test_mei_driver_is_installed_and_started(client, facts, evidence):
    _in_band_only(client)
    signed = [d for d in facts.windows.wmi(client, "Win32_PnPSignedDriver")
              if MEI.search(str(d.get("DeviceName") or ""))]
    drivers = [d for d in facts.windows.wmi(client, "Win32_SystemDriver")
               if MEI.search(f"{d.get('Name') or ''} {d.get('DisplayName') or ''}")]
    evidence.attach("MEI driver", {"Win32_PnPSignedDriver": [{k: d.get(k) for k in ("DeviceName", "DriverVersion",
                                                                                    "IsSigned")} for d in signed],
                                   "Win32_SystemDriver": [{k: d.get(k) for k in ("Name", "State", "StartMode")}
                                                          for d in drivers]})
    expect(signed, found="no Intel(R) Management Engine Interface (HECI) driver in Win32_PnPSignedDriver",
           expected="the Intel MEI (HECI) driver installed")
    expect(any(d.get("State") == "Running" for d in drivers),
           found="; ".join(f"{d.get('Name')} {d.get('State')}" for d in drivers) or "no MEI (HECI) system driver",
           expected="the MEI (HECI) driver started (Win32_SystemDriver State Running)")


@pytest.mark.check("S2-INBAND-AGENT-ASSIGNED-OOB-SITE")
def test_agent_is_assigned_to_a_site_with_the_service_point(client, facts, evidence):
    _in_band_only(client)
    try:
        authorities = facts.windows.wmi(client, "SMS_Authority", "root/ccm")
    except ProbeError as exc:
        expect(False, found=f"no Configuration Manager agent answers on {client.fqdn} (root\\ccm: {exc})",
               expected="the agent installed and assigned to a site")
    assigned = sorted({str(a.get("Name", "")).split(":", 1)[1].upper() for a in authorities
                       if str(a.get("Name", "")).upper().startswith("SMS:")})
    service_points = sorted({str(r.get("SiteCode", "")).upper() for r in facts.site.wmi("SMS_SCI_SysResUse")
                             if str(r.get("RoleName", "")).lower() == OOB_SERVICE_POINT_ROLE})
    evidence.attach("site assignment", {"SMS_Authority": [a.get("Name") for a in authorities],
                                        "sites with an out of band service point": service_points})
    expect(set(assigned) & set(service_points),
           found=f"the agent is assigned to {', '.join(assigned) or 'no site'}",
           expected=f"a site with the out of band service point ({', '.join(service_points) or 'none found'})")


@pytest.mark.check("S2-INBAND-POLICY-DOWNLOADED")
def test_agent_downloaded_the_enabled_provisioning_policy(client, env, facts, evidence):
    _in_band_only(client)
    lines = facts.logs.client_lines()  # OOBMGMT.LOG after its rolled-over history (OOBMGMT.lo_)
    policy = [e for es in cmlog.events(lines, env.log_patterns).values() for e in es if e.kind.startswith("policy_")]
    evidence.attach("OOBMGMT.LOG and its history (.lo_)",
                    "\n".join(f"{ln.time}  {ln.message}" for ln in lines[-50:]) or "(empty)")
    last = policy[-1] if policy else None
    if last is not None:  # the agent's own lines, judged as they read
        expect(any(e.kind == "policy_downloaded" for e in policy) and last.kind == "policy_enabled",
               found=f"{last.line.message!r} ({last.time})", expected="the automatic provisioning policy downloaded "
                                                                      "and enabled")
        return
    found = f"no automatic provisioning policy line in OOBMGMT.LOG or its history ({len(lines)} lines)"
    status = facts.site.provisioning_status()
    status.attach(evidence)
    if done := status.by_site() or status.me_provisioned():  # in-band provisioning starts from the policy
        cannot_decide(f"{found}, but the client is provisioned ({done}): its policy may have rolled out of the log")
    if not cmlog.decisive("policy_downloaded", env.log_patterns):
        cannot_decide(f"{found}; {status.state_text()}; the agent's policy lines have no public wording: give the "
                      "site's in the environment file (log_patterns.policy_downloaded, policy_enabled)")
    expect(False, found=found, expected="the automatic provisioning policy downloaded and enabled")
