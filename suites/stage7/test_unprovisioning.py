"""Stage 7: client un-provisioning is successful.

Guide, Stage 7: "Select a provisioned client in the SCCM collection, right-click and use Delete provisioning data
from the management controller option to delete all data from Intel AMT memory. Check the AMTOPMGR.LOG file on the
SCCM server and confirm the un-provisioning process completed successfully."; "SCCM permissions to Enterprise
issuing CA are sufficient to revoke certificates. Check the Enterprise issuing CA and confirm the Intel AMT web
server certificate issued to the client Management Controller was successfully revoked."; "SCCM permissions to
Active Directory OU or CN are sufficient to allow Management Controller objects to be deleted. Check the Active
Directory OU or CN and confirm the Management Controller object was deleted."

Un-provisioning is disruptive (canary clients, ``--allow-disruptive``). It goes through Configuration Manager as the
console's "Delete provisioning data" does (``SMS_Collection.AMTOperateForMachines`` FullUnprovision, as the console
user), and is judged by where it lands: AMT back in pre-provisioning (or, firmware of the guide's time back in its
initial setup, answering no WS-MAN: then AMTOPMGR.LOG's completion line), and the site's AMTStatus after it
discovers the management controller again; AMTOPMGR.LOG is evidence (a failure line it shows fails the check; a missing
completion line does not, its wording has no public source). The revocation and the AD object are
judged for the clients un-provisioned in this run (the run's record, ``facts.changed()``), and do not apply to
the others.
"""
import time

import pytest

from pytest_vpro import actions
from pytest_vpro.checks import expect, not_applicable
from pytest_vpro.probes import cmlog
from pytest_vpro.probes import x509 as certs
from pytest_vpro.probes.errors import Undecided
from pytest_vpro.sccm import amt_status_text


def _unprovisioned(client, env, facts) -> dict:
    """What S7-UNPROVISION-COMPLETES recorded for this client in this run (waiting while it is under way in
    another process of the run), or not applicable."""
    start, record = time.monotonic(), facts.changed()
    while client.canary and record.get("disruptive") and "finished" not in record.get("unprovisioned", {}):
        waited = time.monotonic() - start  # under way: up to 3 read timeouts; not begun yet: a moment
        if waited > (3 * env.timeouts["read"] if "unprovisioned" in record else 2.0):
            break
        time.sleep(0.2)
        record = facts.changed()
    done = record.get("unprovisioned")
    if not done or "serial" not in done:
        not_applicable(f"{client.name} was not un-provisioned in this run (S7-UNPROVISION-COMPLETES un-provisions "
                       "canary clients with --allow-disruptive)")
    return done


@pytest.mark.check("S7-UNPROVISION-COMPLETES")
def test_unprovisioning_completes(client, env, facts, evidence):
    done = actions.unprovision(client, env, facts)
    events = [e for e in cmlog.client_events(facts.logs.site_events(fresh=True), fqdn=client.name)
              if e.kind in ("unprovision_completed", "unprovision_failed")
              and e.time is not None and e.time.timestamp() >= done["started"] - 2]
    evidence.attach("un-provisioning", {**done, "log": [e.line.message if e.line else e.kind for e in events]})
    expect(done["return"] == 0, found=done["answer"],
           expected="SMS_Collection.AMTOperateForMachines FullUnprovision (64) accepted (ReturnValue 0)")
    failed = [e for e in events if e.kind == "unprovision_failed"]
    expect(not failed, found="AMTOPMGR.LOG: unprovision failed" + (f": {failed[-1].reason}" if failed[-1].reason
                                                                   else "") if failed else "",
           expected="no un-provisioning failure for the client in AMTOPMGR.LOG")
    status = done.get("amt_status")
    expect(status is not None and status != 3,
           found=f"{amt_status_text(status)} after {done.get('discovery') or 'no discovery'}",
           expected=f"{amt_status_text(2)}: the site sees the management controller un-provisioned")
    after = done["state_after"]
    if isinstance(after, int):
        expect(after == 0, found=f"ProvisioningState {after} after {done['answer']}",
               expected="0 (pre-provisioning): the service point cleared AMT")
        return
    # No WS-MAN answer: factory defaults of firmware that serves only its provisioning server before it is
    # provisioned (the lab's era 2009), or a device gone. The site and the log decide; without a completion line,
    # nothing does.
    completed = [e for e in events if e.kind == "unprovision_completed"]
    if not completed:
        raise Undecided(f"AMT answered no WS-MAN after {done['answer']} ({after}) and AMTOPMGR.LOG has no "
                        "completion line for the client: whether AMT is back in pre-provisioning cannot be read "
                        "(check the client's MEBx, or AMTOPMGR.LOG by hand)")


@pytest.mark.check("S7-WEB-SERVER-CERT-REVOKED")
def test_web_server_certificate_is_revoked(client, env, facts, evidence):
    done = _unprovisioned(client, env, facts)
    serial = int(done["serial"], 16)
    expect(done.get("cdp"), found=f"certificate {done['serial']} names no CRL distribution point",
           expected="a CDP URL to fetch the CRL from")
    found = []
    for url in done["cdp"]:
        crl = certs.fetch_crl(url, env.timeouts["read"]) if url.lower().startswith("http") else None
        if crl is None:
            continue
        reason = certs.revocation_reason(crl, serial) if certs.is_revoked(crl, serial) else None
        found.append({"url": url, "this_update": crl.last_update_utc.isoformat(), "entries": len(crl),
                      "revoked": certs.is_revoked(crl, serial), "reason": reason and reason.name})
    evidence.attach("CRL", {"serial": done["serial"], "issuer": done.get("issuer"), "crls": found})
    expect(any(c["revoked"] for c in found),
           found=f"serial {done['serial']} not in " + "; ".join(f"{c['url']} ({c['entries']} entries, thisUpdate "
                                                                 f"{c['this_update']})" for c in found),
           expected="the un-provisioned client's certificate serial in the CRL (reason superseded)")


@pytest.mark.check("S7-AD-MC-OBJECT-DELETED")
def test_management_controller_object_is_deleted(client, env, facts, evidence):
    _unprovisioned(client, env, facts)
    ports = env.expected["ports"]
    spns = [f"HTTP/{client.name}:{ports['amt_http']}", f"HTTP/{client.name}:{ports['amt_https']}"]
    forest = ",".join(f"DC={p}" for p in env.site.forest.split("."))
    left = facts.directory.search(forest, f"(|(dNSHostName={client.name})" + "".join(
        f"(servicePrincipalName={s})" for s in spns) + ")", ("servicePrincipalName", "dNSHostName"), fresh=True)
    in_container = [e["dn"] for e in left if e["dn"].lower().endswith(env.site.amt_container.lower())]
    evidence.attach("left in the directory", [{"dn": e["dn"], "spns": e["attributes"].get("servicePrincipalName")}
                                              for e in left])
    holders = [e["dn"] for e in left if set(map(str.lower, map(str, e["attributes"].get("servicePrincipalName")
                                                               or []))) & {s.lower() for s in spns}]
    expect(not in_container and not holders,
           found=f"{', '.join(in_container or holders)} still there" + (f" with {', '.join(spns)}" if holders else ""),
           expected=f"no management controller object for {client.name} in {env.site.amt_container}, "
                    "and no object with its SPNs in the forest")
