"""Stage 5: what the out of band console needs from each client: SOL/IDER enabled, clocks in step.

Guide, Stage 5: "If SOL / IDER is not operational, check SOL / IDER is enabled in MEBX"; "Check client/server
times and time zones are synchronized."
"""
import pytest

from pytest_vpro.checks import cannot_decide, expect
from pytest_vpro.probes.errors import ProbeError


@pytest.mark.check("S5-SOL-IDER-ENABLED-IN-AMT")
def test_sol_and_ider_are_enabled(client, facts):
    redirection = facts.amt.redirection()
    off = [name for name, on in (("SOL", redirection.sol), ("IDER", redirection.ider)) if not on]
    expect(not off, found=f"{' and '.join(off)} disabled (AMT_RedirectionService.EnabledState "
                          f"{redirection.enabled_state})", expected="SOL and IDER enabled (EnabledState 32771)")


#: Kerberos's default maximum clock skew when AMT does not give its own (MaximumClockTolerance, minutes): 5 min
#: (MS-GPSB 2.2.2 Kerberos Policy, MaxClockSkew, default 5 minutes; docs/protocols.md "Clocks and time zones").
DEFAULT_TOLERANCE_S = 300


def _skew(offset: float, reference: float, uncertainty: float) -> tuple[float, float]:
    """(measured skew against the reference, the smallest skew it can be given the round trips)."""
    skew = offset - reference
    return skew, max(0.0, abs(skew) - uncertainty)


@pytest.mark.check("S5-TIME-SYNCHRONIZED")
def test_amt_clock_agrees_with_ours(client, env, facts, evidence):  # name kept: snapshots key verdicts by it
    """Every clock the console's Kerberos logon to this client goes through, against the DC's (the KDC's clock,
    the reference): the client's ME, its Windows (in-band), the site server, the console hosts. Each is read with
    the round trip of its call; a skew counts only beyond half the round trips (and the 1 s resolution), so a
    slow host cannot fake one. Time zones: Kerberos and AMT work in UTC, so a Windows host in another zone whose
    UTC clock is right is no fault (a console in another site); a zone set wrong while the wall clock was set to
    local time shows as a UTC skew, which is what fails. Zones are shown, and one that disagrees with the UTC
    offset its own local clock shows (Win32_LocalTime minus Win32_UTCTime vs Bias) is a finding. A clock that cannot
    be read is named: the check cannot decide (visible, closes no gate) unless another clock is already skewed."""
    kerberos = None
    try:
        kerberos = facts.amt.kerberos_settings().max_clock_tolerance_min
    except ProbeError:
        pass
    tolerance = kerberos * 60 if kerberos else DEFAULT_TOLERANCE_S
    source = ("AMT_KerberosSettingData.MaximumClockTolerance" if kerberos
              else "Kerberos's default maximum clock skew (AMT gave none)")
    try:
        dc = facts.directory.clock()
    except ProbeError as exc:  # no reference: nothing can be judged, and the DC's own checks say why
        cannot_decide(f"clock not read on the domain controller (root DSE currentTime), the reference: {exc}")
        return
    reference, ref_unc = dc["offset_s"], dc["uncertainty_s"]
    measured: list[dict] = []
    not_read: list[str] = []

    def judge(name: str, offset: float, uncertainty: float, **more) -> None:
        skew, least = _skew(offset, reference, uncertainty + ref_unc)
        measured.append({"host": name, "skew_s": round(skew, 1), "uncertainty_s": round(uncertainty + ref_unc, 1),
                         "at_least_s": round(least, 1), **more})

    try:
        me = facts.amt.clock()
        judge(f"{client.fqdn} (Intel AMT)", me.offset_s, me.uncertainty_s)
    except ProbeError as exc:
        not_read.append(f"{client.fqdn} (Intel AMT): {exc}")
    hosts = [(client, f"{client.fqdn} (Windows)")] if client.provisioning == "in_band" else []
    hosts += [(server, server.name) for role in ("site_server", "oob_console") for server in env.servers_with(role)]
    seen = set()
    zones: list[str] = []
    for host, name in hosts:
        if name in seen:
            continue
        seen.add(name)
        try:
            clock = facts.windows.clock(host)
        except ProbeError as exc:
            not_read.append(f"{name}: {exc}")
            continue
        judge(name, clock["offset_s"], clock["uncertainty_s"], bias_min=clock["bias"], zone=clock["zone"])
        local = clock["local_minus_utc_min"]
        # Win32_TimeZone: "UTC = local time - bias"; daylight saving time moves the local time by an hour
        if clock["bias"] is not None and local is not None and abs(local - clock["bias"]) > 1 \
                and abs(abs(local - clock["bias"]) - 60) > 1:
            zones.append(f"{name}: local time {local:+d} min from UTC, its time zone {clock['zone']} says "
                         f"{clock['bias']:+d} min")
    evidence.attach("clocks against the domain controller's", {
        "reference": dc["host"], "tolerance_s": tolerance, "tolerance_from": source, "clocks": measured,
        "not read": not_read, "time zones": sorted({f"{m['host']}: {m.get('zone')} ({m.get('bias_min')} min)"
                                                     for m in measured if "zone" in m})})
    skewed = [m for m in measured if m["at_least_s"] > tolerance]
    expect(not skewed, found="; ".join(f"{m['host']} clock {m['skew_s']:+.0f} s (±{m['uncertainty_s']:.0f} s) from "
                                       f"the domain controller {dc['host']}" for m in skewed),
           expected=f"every clock within {tolerance} s of the domain controller's ({source})")
    expect(not zones, found="; ".join(zones), expected="each Windows host's local time at its time zone's offset")
    if not_read:  # named, never passed silently; a host that does not answer fails its own checks
        cannot_decide("clock not read on " + "; ".join(not_read) + f" (the others are within {tolerance} s)")
