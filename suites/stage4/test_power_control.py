"""Stage 4: collection-initiated power control is operational.

Guide, Stage 4: "If power control operations are not available in the menu, perform a Discover Management
Controllers operation for clients and update SCCM collection membership"; "From the SCCM Console, select provisioned
clients in the SCCM collection, right-click and perform power control operations. Verify that clients can be
powered down correctly."; "Verify that previously powered down clients can be powered-up correctly after the power
down operation."; "Randomized digest credentials for Intel AMT access are functional."

Power down and up are disruptive (canary clients, ``--allow-disruptive``): one power cycle per client, initiated
through Configuration Manager as the console does (``SMS_Collection.AMTOperateForMachines`` Shutdown, then WakeUp,
as the console user: ``pytest_vpro/actions/``), the PowerState read from AMT, power put back on
afterwards. Stage 5's console talks to AMT directly; this stage's power control goes through the site.
"""
import pytest

from pytest_vpro import actions
from pytest_vpro.checks import expect
from pytest_vpro.probes.amt import POWER_STATES
from pytest_vpro.sccm import PROVISIONED, amt_status_text, as_int

#: Intel's factory MEBx password: what "the known pre-provisioning MEBx password" is unless the environment
#: names the site's own (credentials.mebx).
FACTORY_MEBX_PASSWORD = "admin"


def _system(facts, client):
    """The client's SMS_R_System record (by FQDN in ResourceNames, else by NetBIOS name), or None."""
    host = client.name.split(".")[0].upper()[:15]
    rows = facts.site.wmi("SMS_R_System")
    return next((r for r in rows if client.name in [str(n).lower() for n in r.get("ResourceNames") or []]), None) \
        or next((r for r in rows if str(r.get("NetbiosName", "")).upper() == host), None)


@pytest.mark.check("S4-MC-DISCOVERED")
def test_client_is_discovered_as_a_management_controller(client, facts, evidence):
    system = _system(facts, client)
    expect(system, found=f"no SMS_R_System record for {client.name}", expected="the client in the site's inventory")
    collections = sorted(facts.site.member_of(system["ResourceId"]))
    evidence.attach("SMS_R_System", {"Name": system.get("Name"), "ResourceId": system["ResourceId"],
                                     "AMTStatus": system.get("AMTStatus"),
                                     "AMTFullVersion": system.get("AMTFullVersion"), "collections": collections})
    status = as_int(system.get("AMTStatus"))
    problems = [amt_status_text(status)] if status != PROVISIONED else []
    problems += ["AMTFullVersion empty"] if not system.get("AMTFullVersion") else []
    problems += ["member of no collection"] if not collections else []
    expect(not problems, found=", ".join(problems),
           expected=f"{amt_status_text(PROVISIONED)}, AMTFullVersion set, in a collection")


@pytest.mark.check("S4-POWER-DOWN")
def test_client_powers_down_out_of_band(client, env, facts, evidence):
    cycle = actions.power_cycle(client, env, facts)
    evidence.attach("power cycle", cycle.evidence())
    down = cycle.down
    expect(down.ok, found=f"PowerState {down.reached} ({POWER_STATES.get(down.reached, '?')}) "
                          f"{down.seconds:.0f} s after {down.answer}",
           expected="SMS_Collection.AMTOperateForMachines Shutdown (3) accepted (ReturnValue 0) and AMT reporting "
                    "the client off (PowerState 6 off-hard or 8 off-soft)")


@pytest.mark.check("S4-POWER-UP")
def test_powered_down_client_powers_up_again(client, env, facts, evidence):
    cycle = actions.power_cycle(client, env, facts)
    evidence.attach("power cycle", cycle.evidence())
    up = cycle.up
    expect(up is not None, found=f"power-up not tried: {cycle.note} (S4-POWER-DOWN)",
           expected="the client powered down, then PowerState 2 (on)")
    expect(up.ok, found=f"PowerState {up.reached} ({POWER_STATES.get(up.reached, 'no answer')}) {up.seconds:.0f} s "
                        f"after {up.answer}" + (f"; {up.error}" if up.error else "") + "; the client is left off",
           expected="SMS_Collection.AMTOperateForMachines WakeUp (1) accepted and AMT reporting PowerState 2 (on)")


@pytest.mark.check("S4-DIGEST-CREDENTIALS-RANDOMIZED")
def test_mebx_password_no_longer_opens_amt(client, env, facts, evidence):
    mebx = env.credentials.get("mebx")
    password = mebx.password.resolve() if mebx and not mebx.kerberos else FACTORY_MEBX_PASSWORD
    user = (mebx.user if mebx and mebx.user else None) or "admin"
    system = _system(facts, client)
    accepted = facts.amt.login(user, password)
    evidence.attach("digest attempt", {"user": user, "password": "the MEBx password" if mebx else
                                       "Intel's factory MEBx password", "accepted": accepted,
                                       "AMTStatus": system and system.get("AMTStatus")})
    expect(not accepted, found=f"the {'site MEBx' if mebx else 'factory MEBx'} password still opens {user} on "
                               f"{client.name}:16993", expected="refused (401): provisioning replaced it")
    status = as_int(system.get("AMTStatus")) if system else None
    expect(status == PROVISIONED, found=amt_status_text(status) if system else f"no SMS_R_System for {client.name}",
           expected=f"{amt_status_text(PROVISIONED)}: provisioned by the site, which holds the randomized credential")
