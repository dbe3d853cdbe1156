"""Stage 4: the ME stays on when the PC sleeps, hibernates or is off, so power control works.

Guide, Stage 4: "After provisioning, check the Intel ME power package is set so Intel ME is ON when the client is
powered on (S0 state), in sleep (S3 state), hibernate (S4 state) and powered off (S5 state)."
"""
import pytest

from pytest_vpro.checks import expect


@pytest.mark.check("S4-ME-POWER-PACKAGE-S0-S5")
def test_me_is_on_in_every_power_state(client, env, facts, evidence):
    policy = facts.amt.power_policy()
    evidence.attach("active power package", {"description": policy.description, "me_on": sorted(policy.me_on)})
    wanted = set(env.expected["power_policy_states"])
    expect(wanted <= policy.me_on, found=f"'{policy.description}' (ME on in {', '.join(sorted(policy.me_on))})",
           expected=f"ME on in {', '.join(sorted(wanted))}")
