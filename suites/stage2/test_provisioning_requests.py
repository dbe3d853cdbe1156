"""Stage 2: provisioning requests reach the site server: hellos (out of band) and ZTC requests (in band).

Guide, Stage 2: "Check AMTOPMGR.LOG file on the SCCM server and verify receipt of hello packets for clients using
SCCM out-of-band provisioning or receipt of Zero Touch Configuration (ZTC) requests for clients using SCCM in-band
provisioning"; "Check Intel ME is un-provisioned"; "Check Intel ME is configured for Enterprise mode and either PKI
provisioning is enabled or a PSK has been loaded"; "verify the Intel AMT client is sending 'hello' messages (use a
network packet capture tool to monitor the network ...)"; "Check clients have had sufficient time to request
provisioning; ... clients send hello packets at a decreasing frequency the longer they are turned on and
eventually stop sending hello packets; ... SCCM agents may take up to 25-hours to recognize the automatic in-band
provisioning setting".

AMTOPMGR.LOG is read once per run over SMB (``facts.site_log_events``); each check attaches the client's lines, as
Trace32 would show them. The hello packets themselves are heard only with the opt-in passive listener
(``--hello-listen ADDR:PORT``, ``facts.hellos()``); without it the hello checks judge from the log. A client the
log shows provisioned (second stage completed, not un-provisioned since) no longer sends requests: the rows about
requests are not applicable to it.
"""
import datetime as dt

import pytest

from pytest_vpro.checks import expect, not_applicable
from pytest_vpro.probes import cmlog
from pytest_vpro.probes.errors import ProbeError, Undecided

LAST_RETRY = 14         # a hello's retry count runs 0-14 (docs/protocols.md, "The hello packet"): 14 is the last hello
POLICY_WINDOW_H = 25    # the guide: agents may take up to 25 hours to see the in-band provisioning setting


def _who(client) -> str:
    ids = ", ".join(x for x in (client.uuid and f"UUID {client.uuid}", client.address) if x)
    return f"{client.fqdn} ({ids})" if ids else client.fqdn


def _log(facts, evidence) -> list:
    events = facts.client_events()
    evidence.attach("AMTOPMGR.LOG", cmlog.trace(events))
    return events


def _heard(facts, evidence) -> list | None:
    """Hellos the passive listener heard from this client (None: no listener in this run)."""
    heard = facts.hellos()
    if heard is not None:
        evidence.attach(f"hellos heard on {facts.hello_listener().where}", [s.summary() for s in heard] or "none")
        noise = facts.hello_noise()  # what else the client's address sent: evidence, not a hello
        if noise:
            evidence.attach("packets from its address that are not hellos", [s.summary() for s in noise])
    return heard


def _when(e) -> str:
    return f"{e.time:%Y-%m-%d %H:%M:%S}" if e.time else "(no time)"


@pytest.mark.check("S2-AMTOPMGR-HELLO-RECEIVED")
def test_site_server_logged_hellos_from_the_client(client, facts, evidence):
    if client.provisioning != "out_of_band":
        not_applicable("an in-band client sends ZTC requests (S2-AMTOPMGR-ZTC-REQUEST-RECEIVED)")
    events = _log(facts, evidence)
    hellos = [e for e in events if e.kind == "hello_received"]
    if not hellos and (done := cmlog.provisioned(events)):
        not_applicable(f"provisioned ({_when(done)}): its hellos are no longer in AMTOPMGR.LOG")
    expect(hellos, found=f"no hello packet from {_who(client)} in AMTOPMGR.LOG ({len(events)} lines name it)",
           expected="a 'hello packet received' line for the client's UUID or address")


@pytest.mark.check("S2-AMTOPMGR-ZTC-REQUEST-RECEIVED")
def test_site_server_logged_a_ztc_request_from_the_client(client, facts, evidence):
    if client.provisioning != "in_band":
        not_applicable("an out of band client sends hellos (S2-AMTOPMGR-HELLO-RECEIVED)")
    events = _log(facts, evidence)
    requests = [e for e in events if e.kind == "ztc_request"]
    if not requests and (done := cmlog.provisioned(events)):
        not_applicable(f"provisioned ({_when(done)}): its ZTC request is no longer in AMTOPMGR.LOG")
    expect(requests, found=f"no ZTC provisioning request from {_who(client)} in AMTOPMGR.LOG "
                           f"({len(events)} lines name it)",
           expected="a 'ZTC provisioning request received' line for the client")


@pytest.mark.check("S2-ME-UNPROVISIONED")
def test_me_is_unprovisioned(client, facts, evidence):
    events = _log(facts, evidence)
    if done := cmlog.provisioned(events):
        not_applicable(f"already provisioned by the site (second stage completed {_when(done)})")
    # only an un-provisioned ME sends hellos, and the in-band agent requests provisioning only for one
    if any(e.kind in ("hello_received", "ztc_request") for e in events):
        return
    if any(s.hello is not None for s in _heard(facts, evidence) or []):
        return
    try:
        state = facts.amt("provisioning")
    except Undecided:  # a detail with no public source did not fit: cannot decide
        raise
    except ProbeError as exc:
        expect(False, found=f"no hello or ZTC request from {_who(client)}, and AMT does not answer ({exc})",
               expected="a hello or ZTC request (only an un-provisioned ME sends one), or ProvisioningState 0 or 1")
    evidence.attach("AMT_SetupAndConfigurationService", {"ProvisioningState": state.state,
                                                         "ProvisioningMode": state.mode})
    expect(state.state in (0, 1), found=f"the ME is {state.state_name} (ProvisioningState {state.state}) but the site "
                                        "never provisioned it (no completed provisioning in AMTOPMGR.LOG)",
           expected="pre-provisioning or in provisioning (ProvisioningState 0 or 1)")


@pytest.mark.check("S2-ME-ENTERPRISE-PKI-OR-PSK")
def test_me_is_in_enterprise_mode_with_pki_or_psk(client, facts, evidence):
    if client.provisioning != "out_of_band":
        not_applicable("in-band clients: MEBx screen (manual attestation)")
    events = _log(facts, evidence)
    done = cmlog.provisioned(events)
    if not done:  # a hello is sent only in Enterprise mode; its version says PKI (3) or PSK (2)
        logged = [e for e in events if e.kind == "hello_received"]
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
        prov, version = facts.amt("provisioning"), facts.amt("version")
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
    events = _log(facts, evidence)
    done = cmlog.provisioned(events)
    if done:
        not_applicable(f"provisioned ({_when(done)}): a provisioned ME sends no hellos")
    heard = _heard(facts, evidence)
    if heard is not None:
        capture = facts.hello_listener()
        expect(heard, found=f"no hello from {_who(client)} on {capture.where} within {capture.wait_s:g} s of "
                            "listening", expected="hello packets (version 2/3, the client's UUID)")
        return
    hellos = [e for e in events if e.kind == "hello_received"]
    expect(hellos, found=f"no hello from {_who(client)} in AMTOPMGR.LOG (the run has no hello listener)",
           expected="hello packets received by the site server")
    last = hellos[-1]
    expect(last.retry is None or last.retry < LAST_RETRY,
           found=f"its last hello ({_when(last)}) had retry count {last.retry}, the last of the sequence; none since",
           expected="hellos still being sent (retry count below 14)")


@pytest.mark.check("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING")
def test_client_is_within_its_provisioning_request_window(client, env, facts, evidence):
    events = _log(facts, evidence)
    if done := cmlog.provisioned(events):
        not_applicable(f"provisioned ({_when(done)})")
    if client.provisioning == "out_of_band":
        heard = [s.hello for s in _heard(facts, evidence) or [] if s.hello is not None]
        logged = [e for e in events if e.kind == "hello_received"]
        if heard:
            retry, seen = heard[-1].retry_count, "heard now"
        elif logged:
            retry, seen = logged[-1].retry, f"logged {_when(logged[-1])}"
        else:
            not_applicable("no hello from the client to judge (S2-CLIENT-SENDING-HELLO)")
        if retry is None:
            not_applicable("the site's hello lines carry no retry count (log_patterns: add a 'retry' group)")
        expect(retry < LAST_RETRY, found=f"the last hello ({seen}) had retry count {retry}: the hello sequence "
                                         "is exhausted",
               expected=f"a retry count below {LAST_RETRY} (hellos still due)")
        return
    if any(e.kind == "ztc_request" for e in events):
        return  # the agent has requested provisioning
    lines = facts.client_log_lines()
    agent = [e for es in cmlog.events(lines, env.log_patterns).values() for e in es]
    evidence.attach("OOBMGMT.LOG", "\n".join(f"{ln.time}  {ln.message}" for ln in lines[-50:]) or "(empty)")
    if any(e.kind in ("policy_downloaded", "policy_enabled") for e in agent):
        return  # the policy arrived: the request is due
    started = min((ln.time for ln in lines if ln.time is not None), default=None)
    expect(started is not None, found="OOBMGMT.LOG has no dated line", expected="the agent's log")
    now = dt.datetime.now(dt.timezone.utc) if started.tzinfo else dt.datetime.now()
    hours = (now - started).total_seconds() / 3600
    expect(hours < POLICY_WINDOW_H, found=f"no provisioning policy {hours:.0f} h after the agent's first OOBMGMT.LOG "
                                          f"line ({started:%Y-%m-%d %H:%M})",
           expected=f"the policy within {POLICY_WINDOW_H} hours (collection update plus policy polling)")
