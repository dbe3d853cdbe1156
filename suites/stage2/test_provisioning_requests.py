"""Stage 2: provisioning requests reach the site server: hellos (out of band) and ZTC requests (in band).

Guide, Stage 2: "Check AMTOPMGR.LOG file on the SCCM server and verify receipt of hello packets for clients using
SCCM out-of-band provisioning or receipt of Zero Touch Configuration (ZTC) requests for clients using SCCM in-band
provisioning"; "Check Intel ME is un-provisioned"; "Check Intel ME is configured for Enterprise mode and either PKI
provisioning is enabled or a PSK has been loaded"; "verify the Intel AMT client is sending 'hello' messages (use a
network packet capture tool to monitor the network ...)"; "Check clients have had sufficient time to request
provisioning; ... clients send hello packets at a decreasing frequency the longer they are turned on and
eventually stop sending hello packets; ... SCCM agents may take up to 25-hours to recognize the automatic in-band
provisioning setting".

What the site and the ME hold comes first (``facts.site.provisioning_status()``, :mod:`pytest_vpro.sccm`): a client SCCM
reports provisioned (SMS_R_System.AMTStatus 3) sends no more requests, so the rows about requests do not apply to
it; an ME provisioned outside the site (AMTStatus 1 "detected", or post-provisioning while the site does not count
it as its own) sends none either. AMTOPMGR.LOG, read with its rolled-over history (``.lo_``), is the evidence of
the requests, attached as Trace32 would show the client's lines. No public post quotes SCCM's hello or ZTC lines,
so a missing line decides nothing unless the environment file gives the site's wording (``log_patterns``): the
check then says it cannot decide. The hello packets themselves are heard only with the opt-in passive listener
(``--hello-listen ADDR:PORT``, ``facts.hellos.heard()``).

The in-band client's 25 hours run from when the setting reached its collection, as the site records it
(``SMS_CollectionSettings.LastModificationTime``, ``SMS_Collection.LastMemberChangeTime``), and the finding says when
its agent last requested machine policy (``root\\CCM\\Scheduler`` ``CCM_Scheduler_History``):
:mod:`pytest_vpro.policy_window`.
"""
import datetime as dt

import pytest

from pytest_vpro import policy_window as pw
from pytest_vpro.checks import cannot_decide, expect, not_applicable
from pytest_vpro.policy_window import POLICY_WINDOW_H
from pytest_vpro.probes import cmlog
from pytest_vpro.probes.errors import ProbeError, Undecided
from pytest_vpro.sccm import DETECTED, NOT_PROVISIONED, NOT_SUPPORTED, amt_status_text, when

LAST_RETRY = 14         # a hello's retry count runs 0-14 (docs/protocols.md, "The hello packet"): 14 is the last hello


def _who(client) -> str:
    ids = ", ".join(x for x in (client.uuid and f"UUID {client.uuid}", client.address) if x)
    return f"{client.fqdn} ({ids})" if ids else client.fqdn


def _status(facts, evidence):
    status = facts.site.provisioning_status()
    status.attach(evidence)
    return status


def _heard(facts, evidence) -> list | None:
    """Hellos the passive listener heard from this client (None: no listener in this run)."""
    heard = facts.hellos.heard()
    if heard is not None:
        evidence.attach(f"hellos heard on {facts.hellos.listener().where}", [s.summary() for s in heard] or "none")
        noise = facts.hellos.noise()  # what else the client's address sent: evidence, not a hello
        if noise:
            evidence.attach("packets from its address that are not hellos", [s.summary() for s in noise])
    return heard


def _no_hello(status, found: str) -> None:
    """No hello line for the client: fail on what the site or the ME show, else say the log cannot decide."""
    elsewhere = status.elsewhere()
    expect(not elsewhere, found=f"{found}; {elsewhere}: a provisioned ME sends no hellos",
           expected="an un-provisioned ME sending hellos to the service point, or the site's own provisioning")
    expect(status.resource is not None, found=f"{found}; the site has no SMS_R_System resource for it",
           expected="the client imported (the service point discards hellos of unknown UUIDs)")
    site = status.amt_status
    expect(site is not None, found=f"{found}; {amt_status_text(None)}: it never contacted the out of band service "
                                   "point", expected="hellos received (AMTStatus 2 once the service point knows it)")
    expect(site != NOT_SUPPORTED, found=f"{found}; {amt_status_text(site)}: its AMT network interface is closed "
                                        "(the out of band provisioning time limit expired)",
           expected="an ME still open for provisioning, sending hellos")
    if not status.decisive("hello_received"):
        cannot_decide(f"{found}; {amt_status_text(site)}; SCCM's hello line has no public wording: give the "
                      "site's in the environment file (log_patterns.hello_received), or listen (--hello-listen)")
    expect(False, found=found, expected="a hello line for the client's UUID or address (log_patterns.hello_received)")


@pytest.mark.check("S2-AMTOPMGR-HELLO-RECEIVED")
def test_site_server_logged_hellos_from_the_client(client, facts, evidence):
    if client.provisioning != "out_of_band":
        not_applicable("an in-band client sends ZTC requests (S2-AMTOPMGR-ZTC-REQUEST-RECEIVED)")
    status = _status(facts, evidence)
    if status.log("hello_received"):
        return
    if done := status.by_site():
        not_applicable(f"provisioned ({done}): it sends no more hellos")
    _no_hello(status, f"no hello packet from {_who(client)} in AMTOPMGR.LOG or its history "
                      f"({len(status.events)} lines name it)")


def _agent_policy(facts, env, evidence) -> list | None:
    """The automatic provisioning policy lines of the client's OOBMGMT.LOG (and its history); None if unreadable
    (not the same as a log without them)."""
    try:
        lines = facts.logs.client_lines()
    except ProbeError as exc:
        evidence.attach("OOBMGMT.LOG", f"not read: {exc}")
        return None
    evidence.attach("OOBMGMT.LOG and its history (.lo_)",
                    "\n".join(f"{ln.time}  {ln.message}" for ln in lines[-50:]) or "(empty)")
    return [e for es in cmlog.events(lines, env.log_patterns).values() for e in es if e.kind.startswith("policy_")]


@pytest.mark.check("S2-AMTOPMGR-ZTC-REQUEST-RECEIVED")
def test_site_server_logged_a_ztc_request_from_the_client(client, env, facts, evidence):
    if client.provisioning != "in_band":
        not_applicable("an out of band client sends hellos (S2-AMTOPMGR-HELLO-RECEIVED)")
    status = _status(facts, evidence)
    if status.log("ztc_request"):
        return
    if done := status.by_site():
        not_applicable(f"provisioned ({done}): its agent requests no more provisioning")
    found = f"no ZTC provisioning request from {_who(client)} in AMTOPMGR.LOG or its history"
    policy = _agent_policy(facts, env, evidence)
    last = policy[-1] if policy else None
    expect(not last or last.kind not in ("policy_missing", "policy_disabled"),
           found=f"{found}; its agent logged {last.line.message!r} ({when(last)})" if last else "",
           expected="the agent's request, sent once it has the enabled automatic provisioning policy")
    elsewhere = status.elsewhere()
    expect(not elsewhere, found=f"{found}; {elsewhere}: the agent requests provisioning only for an un-provisioned "
                                "ME", expected="an un-provisioned ME whose agent requests provisioning")
    if not status.decisive("ztc_request"):
        cannot_decide(f"{found}; {status.state_text()}; SCCM's ZTC request line has no public wording: give the "
                      "site's in the environment file (log_patterns.ztc_request)")
    expect(False, found=found, expected="a ZTC provisioning request line for the client (log_patterns.ztc_request)")


@pytest.mark.check("S2-ME-UNPROVISIONED")
def test_me_is_unprovisioned(client, facts, evidence):
    status = _status(facts, evidence)
    if done := status.by_site():
        not_applicable(f"already provisioned by the site ({done})")
    # only an un-provisioned ME sends hellos, and the in-band agent requests provisioning only for one
    if status.log("hello_received", "ztc_request") or any(s.hello is not None for s in _heard(facts, evidence) or []):
        return
    me = status.me()  # the ME's own word first
    if not isinstance(me, ProbeError):
        expect(me.state in (0, 1), found=f"the ME is {me.state_name} (ProvisioningState {me.state}) but the site "
                                         f"never provisioned it ({amt_status_text(status.amt_status)})",
               expected="pre-provisioning or in provisioning (ProvisioningState 0 or 1)")
        return
    evidence.attach("AMT", f"no answer over WS-MAN: {me}")
    expect(status.amt_status != DETECTED, found=f"{amt_status_text(DETECTED)}: the ME was provisioned outside the "
                                                "site, with credentials it does not know",
           expected="an un-provisioned ME")
    expect(status.inventory_state != 2, found="the hardware inventory reports the ME provisioned "
                                              "(SMS_G_System_AMT_AGENT.ProvisionState 2), but the site never "
                                              f"provisioned it ({amt_status_text(status.amt_status)})",
           expected="ProvisionState 0 or 1 (factory setup or setup mode)")
    # SCCM's "not provisioned" is the site's own word that the ME can be provisioned
    expect(status.amt_status == NOT_PROVISIONED or status.inventory_state in (0, 1),
           found=f"no hello or ZTC request from {_who(client)}, AMT does not answer ({me}), and "
                 f"{amt_status_text(status.amt_status)}",
           expected="a hello or ZTC request (only an un-provisioned ME sends one), ProvisioningState 0 or 1, or "
                    "AMTStatus 2 (not provisioned)")


@pytest.mark.check("S2-ME-ENTERPRISE-PKI-OR-PSK")
def test_me_is_in_enterprise_mode_with_pki_or_psk(client, facts, evidence):
    if client.provisioning != "out_of_band":
        not_applicable("in-band clients: MEBx screen (manual attestation)")
    status = _status(facts, evidence)
    done = status.by_site()
    if not done:  # a hello is sent only in Enterprise mode; its version says PKI (3) or PSK (2)
        logged = status.log("hello_received")
        mode = next((e.mode for e in reversed(logged) if e.mode), None)
        if mode is None:
            heard = [s.hello for s in _heard(facts, evidence) or [] if s.hello is not None]
            mode = heard[-1].mode if heard else None
        if mode or logged:
            wanted = str(client.extra.get("provisioning_mode") or "").upper()  # the inventory's method, if any
            expect(not wanted or not mode or mode == wanted, found=f"the ME sends {mode} hellos",
                   expected=f"{wanted} hellos (the inventory's provisioning_mode)")
            return
    try:  # provisioned, or silent: the ME's own provisioning mode
        prov, version = facts.amt.provisioning(), facts.amt.version()
    except ProbeError as exc:
        if done:  # the site provisions in Enterprise mode only; WS-MAN trouble is another check's finding
            evidence.attach("AMT", f"not confirmed over WS-MAN: {exc}")
            return
        expect(False, found=f"no hello from {_who(client)} and AMT does not answer ({exc})",
               expected="a hello (sent only in Enterprise mode, version 3 PKI or 2 PSK), or an ME in Enterprise mode")
    name = prov.mode_name(version.parts)
    evidence.attach("AMT", {"ProvisioningState": prov.state, "ProvisioningMode": prov.mode, "mode": name,
                            "version": version.text})
    expect(prov.mode == 1, found=f"the ME is in {name} mode (ProvisioningMode {prov.mode}, AMT {version.text})",
           expected="Enterprise mode (ProvisioningMode 1)")


@pytest.mark.check("S2-CLIENT-SENDING-HELLO")
def test_client_is_sending_hellos(client, facts, evidence):
    if client.provisioning != "out_of_band":
        not_applicable("an in-band client's agent requests provisioning (S2-AMTOPMGR-ZTC-REQUEST-RECEIVED)")
    status = _status(facts, evidence)
    if done := status.by_site():
        not_applicable(f"provisioned ({done}): a provisioned ME sends no hellos")
    heard = _heard(facts, evidence)
    if heard is not None:
        capture = facts.hellos.listener()
        expect(heard, found=f"no hello from {_who(client)} on {capture.where} within {capture.wait_s:g} s of "
                            "listening", expected="hello packets (version 2/3, the client's UUID)")
        return
    hellos = status.log("hello_received")
    if not hellos:
        _no_hello(status, f"no hello from {_who(client)} in AMTOPMGR.LOG or its history (the run has no hello "
                          "listener)")
    last = hellos[-1]
    expect(last.retry is None or last.retry < LAST_RETRY,
           found=f"its last hello ({when(last)}) had retry count {last.retry}, the last of the sequence; none since",
           expected="hellos still being sent (retry count below 14)")


@pytest.mark.check("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING")
def test_client_is_within_its_provisioning_request_window(client, env, facts, evidence):
    status = _status(facts, evidence)
    if done := status.by_site():
        not_applicable(f"provisioned ({done})")
    if client.provisioning == "out_of_band":
        heard = [s.hello for s in _heard(facts, evidence) or [] if s.hello is not None]
        logged = status.log("hello_received")
        if heard:
            retry, seen = heard[-1].retry_count, "heard now"
        elif logged:
            retry, seen = logged[-1].retry, f"logged {when(logged[-1])}"
        else:
            not_applicable("no hello from the client to judge (S2-CLIENT-SENDING-HELLO)")
        if retry is None:
            not_applicable("the site's hello lines carry no retry count (log_patterns: add a 'retry' group)")
        expect(retry < LAST_RETRY, found=f"the last hello ({seen}) had retry count {retry}: the hello sequence "
                                         "is exhausted",
               expected=f"a retry count below {LAST_RETRY} (hellos still due)")
        return
    if status.log("ztc_request"):
        return  # the agent has requested provisioning
    policy = _agent_policy(facts, env, evidence)
    if any(e.kind in ("policy_downloaded", "policy_enabled") for e in policy or []):
        return  # the policy arrived: the request is due
    _within_policy_window(client, env, facts, evidence, status, policy)


def _last_policy_request(client, facts) -> tuple[dt.datetime | None, str, bool]:
    """When the client's agent last requested machine policy (CCM_Scheduler_History), that in words, and whether
    it was read."""
    try:
        last = pw.last_request(facts.windows.wmi(client, pw.SCHEDULER_HISTORY, pw.SCHEDULER_NAMESPACE,
                                                 pw.SCHEDULER_QUERY))
    except (ProbeError, Undecided) as exc:
        return None, f"its last machine policy request was not read ({pw.SCHEDULER_HISTORY}: {exc})", False
    if last is None:
        return None, f"its agent has no machine policy request in {pw.SCHEDULER_HISTORY}", True
    return last, f"it last requested machine policy {pw.text(last)} ({pw.SCHEDULER_HISTORY}.LastTriggerTime)", True


def _polling_minutes(client, facts) -> object:
    """The agent's policy polling interval in minutes, as evidence only (its meaning is community evidence)."""
    try:
        rows = facts.windows.wmi(client, pw.POLICY_AGENT_CLASS, pw.POLICY_AGENT_NAMESPACE)
    except ProbeError as exc:
        return f"not read: {exc}"
    return next((r.get(pw.POLLING_PROPERTY) for r in rows), None)


def _within_policy_window(client, env, facts, evidence, status, policy: list | None) -> None:
    """The in-band half: the agent has 25 hours from the setting reaching its collection to see it. Past them, what
    proves the policy has not arrived: no machine policy request since the start (CCM_Scheduler_History), the
    agent's own "no policy" or "disabled" line, or a missing line whose wording the environment gives."""
    try:
        window = pw.window(facts.site.collections())
    except Undecided as exc:
        cannot_decide(str(exc))
    if window is None:
        not_applicable("no collection of the client has automatic provisioning enabled "
                       "(S2-INBAND-AUTO-PROVISIONING-COLLECTION)")
    hours = window.hours(dt.datetime.now(dt.timezone.utc))
    last, said, read = _last_policy_request(client, facts)
    evidence.attach("automatic provisioning window", {
        **window.summary(), "hours since": round(hours, 1), "window (the guide)": f"{POLICY_WINDOW_H} h",
        "last machine policy request": pw.text(last),
        f"{pw.POLICY_AGENT_CLASS}.{pw.POLLING_PROPERTY} (minutes, evidence only)": _polling_minutes(client, facts)})
    if hours < POLICY_WINDOW_H:
        return
    not_since = read and (last is None or last < window.start)
    if not_since and last is not None:
        said += ": it has not requested machine policy since the setting was enabled"
    elif last is not None:
        said += ", after the setting took effect"
    last_line = policy[-1] if policy else None  # a refusal counts only if written since the window began
    refused = last_line if last_line and last_line.kind in ("policy_missing", "policy_disabled") and \
        last_line.time is not None and last_line.time.tzinfo is not None and last_line.time >= window.start \
        else None  # a line without its bias cannot be placed against the window: it does not decide
    agent = (f"its agent logged {refused.line.message!r} ({when(refused)})" if refused else
             "OOBMGMT.LOG not read" if policy is None else "no provisioning policy in OOBMGMT.LOG")
    # a log not read says nothing about the policy: then only the scheduler's answer may decide
    env_patterns_decide = policy is not None and cmlog.decisive("policy_downloaded", env.log_patterns)
    found = (f"automatic provisioning reached collection {window.collection} {pw.text(window.start)}, {hours:.0f} h "
             f"ago (setting changed {pw.text(window.settings_modified)}, membership changed "
             f"{pw.text(window.member_changed)}); {agent} and no ZTC request; {said}")
    if not (not_since or refused or env_patterns_decide or status.decisive("ztc_request")):
        cannot_decide(f"{found}; the agent's policy lines and SCCM's ZTC request line have no public wording: give "
                      "the site's in the environment file (log_patterns.policy_downloaded, ztc_request)")
    expect(False, found=found,
           expected=f"the provisioning policy within {POLICY_WINDOW_H} hours of the setting reaching the client's "
                    "collection (update collection membership, download machine policy to the client)")
