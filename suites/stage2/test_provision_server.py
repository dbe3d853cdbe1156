"""Stage 2: out of band clients find the site server: ProvisionServer resolves to the out of band service point.

Guide, Stage 2: "check DNS for a 'ProvisionServer' record with the correct SCCM server IP address".
"""
import pytest

from pytest_vpro.checks import expect, not_applicable


@pytest.mark.check("S2-PROVISIONSERVER-RESOLVES-TO-SERVICE-POINT")
def test_provision_server_resolves_to_the_service_point(client, env, facts, evidence):
    if client.provisioning != "out_of_band":
        not_applicable("in-band clients are told their site server by the agent")
    suffix = client.fqdn.split(".", 1)[1]
    name = f"ProvisionServer.{suffix}"
    found = facts.dns.forward(name)
    service_points = {a for s in env.servers_with("oob_service_point") for a in facts.dns.forward(s.fqdn)}
    evidence.attach("DNS", {name: found, "out of band service points": sorted(service_points)})
    expect(found and set(found) <= service_points, found=f"{name} -> {', '.join(found) or 'no A record'}",
           expected=f"an address of the out of band service point ({', '.join(sorted(service_points))})")
