"""Stage 1 and the prerequisites page: the DHCP server hands clients their DNS servers and domain, and updates DNS.

Guide, Stage 1: "DHCP servers allocating IP addresses to clients also provide DNS domain information to those
clients (using DHCP option 15)"; "DHCP servers support DHCP option 81 to perform dynamic DNS updates".
Prerequisites: "ensure that the DHCP scope options include DNS servers (006) and Domain name (015)".
"""
import pytest

from pytest_vpro.checks import expect


@pytest.mark.check("PRE-DHCP-OPTION-6")
def test_dhcp_hands_out_dns_servers(server, facts, evidence):
    reply = facts.dhcp.inform()
    evidence.attach("DHCPACK options", {str(k): v.hex() for k, v in sorted(reply.options.items())})
    expect(reply.dns_servers, found="no option 6 (DNS servers) in the DHCPACK",
           expected="option 6 with the DNS servers")


@pytest.mark.check("S1-DHCP-OPTION-15")
def test_dhcp_hands_out_the_domain_name(server, env, facts):
    domain = facts.dhcp.inform().domain_name
    expect(domain and domain.rstrip(".").lower() in env.site.client_domains,
           found=f"option 15 = {domain!r}" if domain else "no option 15 (domain name) in the DHCPACK",
           expected=f"option 15 = one of {', '.join(env.site.client_domains)}")


@pytest.mark.check("S1-DHCP-OPTION-81")
def test_dhcp_performs_dynamic_dns_updates(server, facts):
    fqdn = facts.dhcp.inform().client_fqdn
    expect(fqdn is not None, found="no option 81 (client FQDN) in the DHCPACK", expected="option 81 echoed")
    expect(fqdn.server_updates_a and not fqdn.no_updates,
           found=f"option 81 flags 0x{fqdn.flags:02x} (S={int(fqdn.server_updates_a)}, N={int(fqdn.no_updates)})",
           expected="S=1: the server updates the A record, N=0")
