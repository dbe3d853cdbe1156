"""Stage 1 and the prerequisites page: the DHCP server hands clients their DNS servers and domain, and updates DNS.

Guide, Stage 1: "DHCP servers allocating IP addresses to clients also provide DNS domain information to those
clients (using DHCP option 15)"; "DHCP servers support DHCP option 81 to perform dynamic DNS updates".
Prerequisites: "ensure that the DHCP scope options include DNS servers (006) and Domain name (015)".

The DHCPINFORM is sent from the server's ``probe_from`` address (one in a client scope) or, without it, from this
machine's own address: the server answers with the options of the scope of that source address (ciaddr; giaddr is
0), so without ``probe_from`` the clients' scopes are not asked, and the finding and the evidence say so.
"""
import pytest

from pytest_vpro.checks import expect


@pytest.mark.check("PRE-DHCP-OPTION-6")
def test_dhcp_hands_out_dns_servers(server, facts, evidence):
    reply, scope = facts.dhcp.inform(), facts.dhcp.asked_from()
    evidence.attach("DHCPACK options", {str(k): v.hex() for k, v in sorted(reply.options.items())})
    evidence.attach("scope asked", scope)
    expect(reply.dns_servers, found=f"no option 6 (DNS servers) in the DHCPACK for {scope}",
           expected="option 6 with the DNS servers")


@pytest.mark.check("S1-DHCP-OPTION-15")
def test_dhcp_hands_out_the_domain_name(server, env, facts, evidence):
    domain, scope = facts.dhcp.inform().domain_name, facts.dhcp.asked_from()
    evidence.attach("scope asked", scope)
    evidence.attach("option 15", domain)
    expect(domain and domain.rstrip(".").lower() in env.site.client_domains,
           found=(f"option 15 = {domain!r}" if domain else "no option 15 (domain name) in the DHCPACK")
           + f" for {scope}",
           expected=f"option 15 = one of {', '.join(env.site.client_domains)}")


@pytest.mark.check("S1-DHCP-OPTION-81")
def test_dhcp_performs_dynamic_dns_updates(server, facts):
    fqdn = facts.dhcp.inform().client_fqdn
    expect(fqdn is not None, found="no option 81 (client FQDN) in the DHCPACK", expected="option 81 echoed")
    expect(fqdn.server_updates_a and not fqdn.no_updates,
           found=f"option 81 flags 0x{fqdn.flags:02x} (S={int(fqdn.server_updates_a)}, N={int(fqdn.no_updates)})",
           expected="S=1: the server updates the A record, N=0")
