"""Stage 5: what the out of band console needs from each client: SOL/IDER enabled, clocks in step.

Guide, Stage 5: "If SOL / IDER is not operational, check SOL / IDER is enabled in MEBX"; "Check client/server
times and time zones are synchronized."
"""
import pytest

from pytest_vpro.checks import expect


@pytest.mark.check("S5-SOL-IDER-ENABLED-IN-AMT")
def test_sol_and_ider_are_enabled(client, facts):
    redirection = facts.amt.redirection()
    off = [name for name, on in (("SOL", redirection.sol), ("IDER", redirection.ider)) if not on]
    expect(not off, found=f"{' and '.join(off)} disabled (AMT_RedirectionService.EnabledState "
                          f"{redirection.enabled_state})", expected="SOL and IDER enabled (EnabledState 32771)")


@pytest.mark.check("S5-TIME-SYNCHRONIZED")
def test_amt_clock_agrees_with_ours(client, env, facts):
    offset = facts.amt.clock().offset_s
    limit = env.expected["max_clock_skew_seconds"]
    expect(abs(offset) <= limit, found=f"AMT clock {offset:+.0f} s from this machine's",
           expected=f"within {limit} s (Kerberos tolerance)")
