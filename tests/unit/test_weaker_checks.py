"""Issue 17 item 5: stage 1 checks that say what they could judge (from where a port was probed, which DHCP scope
was asked) and decide nothing they cannot see (the ME's DHCP setting with AMT and hellos both silent).

Each check function is called with small fakes of the facets it reads; the lab proves the same rows against real
servers (tests/lab/test_faults_infrastructure.py, tests/lab/test_check_faults.py).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from fake_network import Network

from pytest_vpro.checks import Evidence, Finding
from pytest_vpro.environment import DEFAULT_EXPECTED
from pytest_vpro.facts import dhcp as dhcp_facet
from pytest_vpro.facts.network import NetworkFacet
from pytest_vpro.probes.errors import ProbeError, Undecided
from suites.stage1 import test_dhcp as dhcp_checks
from suites.stage1 import test_dns_and_network as network_checks

PORTS = DEFAULT_EXPECTED["ports"]
CLIENT = "192.0.2.10"


def client_facts(verdicts: dict[int, str], listener: bool = True) -> SimpleNamespace:
    redirection = SimpleNamespace(listener_enabled=listener)
    return SimpleNamespace(network=Network(verdicts), dns=SimpleNamespace(address=lambda: CLIENT),
                           amt=SimpleNamespace(redirection=lambda: redirection),
                           vantage=SimpleNamespace(points=lambda role: []))  # no server has testinfra:


ENV = SimpleNamespace(expected={"ports": PORTS})


def console(verdicts: dict[int, str], listener: bool = True) -> Evidence:
    evidence = Evidence()
    network_checks.test_console_reaches_amt_ports(None, ENV, client_facts(verdicts, listener), evidence)
    return evidence


def test_the_console_port_finding_says_from_where_it_probed():
    with pytest.raises(Finding) as caught:
        console({16993: "filtered"})
    assert "192.0.2.10:16993 filtered" in caught.value.found
    assert caught.value.found.endswith("probed from this machine (198.51.100.7)")
    assert "from this machine (198.51.100.7)" in console({}).items[0]["body"]


def test_16994_may_be_refused_but_not_filtered():
    console({16994: "refused"})  # a TLS ME need not listen on the plain redirection port
    console({16994: "refused", 16995: "refused"}, listener=False)
    with pytest.raises(Finding, match="16994 filtered"):
        console({16994: "filtered"})
    with pytest.raises(Finding, match="16995 refused"):
        console({16995: "refused"}, listener=True)


def test_the_service_point_port_finding_says_from_where_it_probed():
    with pytest.raises(Finding, match=r"16992 refused .*probed from this machine \(198\.51\.100\.7\)"):
        network_checks.test_service_point_reaches_amt_ports(None, ENV, client_facts({16992: "refused"}), Evidence())


def test_the_9971_finding_says_from_where_it_probed():
    server = SimpleNamespace(name="sccm01.example.test", address="192.0.2.1")
    env = SimpleNamespace(expected={"ports": PORTS}, clients=[SimpleNamespace(provisioning="out_of_band")])
    facts = SimpleNamespace(network=Network({9971: "filtered"}))
    with pytest.raises(Finding, match=r"192\.0\.2\.1:9971 filtered .*, probed from this machine \(198\."):
        network_checks.test_service_point_takes_hellos_on_9971(server, env, facts, Evidence())


def test_vantage_names_the_address_this_machine_uses_towards_the_host():
    assert NetworkFacet(None).vantage("127.0.0.1") == "from this machine (127.0.0.1)"
    assert NetworkFacet(None).vantage("no-such-name.invalid") == "from this machine"


def me_facts(*, hellos=(), dhcp_answers=True) -> SimpleNamespace:
    def ethernet_settings():
        raise ProbeError("pc01.example.test:16993: connection refused")

    def site_inform():
        if not dhcp_answers:
            raise ProbeError("no DHCPACK from dhcp01 within 3 s")
        return SimpleNamespace(options={1: b"", 6: b""})

    return SimpleNamespace(amt=SimpleNamespace(ethernet_settings=ethernet_settings),
                           logs=SimpleNamespace(client_events=lambda: list(hellos)),
                           dhcp=SimpleNamespace(site_inform=site_inform),
                           dns=SimpleNamespace(forward=lambda name: [CLIENT]))


ME_CLIENT = SimpleNamespace(address=CLIENT, fqdn="pc01.example.test")


def test_me_dhcp_cannot_decide_on_a_dhcp_answer_alone():
    evidence = Evidence()
    with pytest.raises(Undecided, match="DHCP setting and address cannot be read"):
        network_checks.test_me_gets_its_address_from_dhcp(ME_CLIENT, me_facts(), evidence)
    assert evidence.items and evidence.items[-1]["name"] == "DHCP"  # what was seen is still shown


def test_me_dhcp_still_fails_without_any_dhcp_answer_and_judges_a_hello():
    with pytest.raises(Finding, match="no DHCP answer"):
        network_checks.test_me_gets_its_address_from_dhcp(ME_CLIENT, me_facts(dhcp_answers=False), Evidence())
    hello = SimpleNamespace(kind="hello_received", ip=CLIENT, time="2009-01-01 10:00:00")
    network_checks.test_me_gets_its_address_from_dhcp(ME_CLIENT, me_facts(hellos=[hello]), Evidence())


class Dhcp:
    def __init__(self, reply, scope):
        self.reply, self.scope = reply, scope

    def inform(self):
        return self.reply

    def asked_from(self):
        return self.scope


def test_dhcp_findings_name_the_scope_asked():
    scope = dhcp_facet.asked_from(SimpleNamespace(extra={}), "127.0.0.1")
    assert scope.startswith("the scope of this machine's address 127.0.0.1, not the clients' scopes")
    facts = SimpleNamespace(dhcp=Dhcp(SimpleNamespace(dns_servers=[], domain_name=None, options={}), scope))
    env = SimpleNamespace(site=SimpleNamespace(client_domains=("example.test",)))
    with pytest.raises(Finding, match="no option 6 .* for the scope of this machine's address 127.0.0.1, not the"):
        dhcp_checks.test_dhcp_hands_out_dns_servers(None, facts, Evidence())
    evidence = Evidence()
    with pytest.raises(Finding, match="no option 15 .* not the clients' scopes"):
        dhcp_checks.test_dhcp_hands_out_the_domain_name(None, env, facts, evidence)
    assert any(i["name"] == "scope asked" and "127.0.0.1" in i["body"] for i in evidence.items)


def test_probe_from_names_the_client_scope():
    server = SimpleNamespace(extra={"probe_from": "10.1.2.3"})
    assert dhcp_facet.asked_from(server, "127.0.0.1") == "the scope of 10.1.2.3 (probe_from)"


def test_a_snapshot_without_16994_judges_the_other_ports_and_says_16994_was_not_probed():
    class OldSnapshot(Network):
        def ports(self, host, ports):
            if 16994 in ports:
                raise ProbeError(f"tcp.{host}:16994 was not observed in the snapshot")
            return super().ports(host, ports)

    facts = client_facts({})
    facts.network = OldSnapshot({})
    evidence = Evidence()
    network_checks.test_console_reaches_amt_ports(None, ENV, facts, evidence)
    assert "16994 not probed" in evidence.items[0]["body"]
    facts.network = OldSnapshot({16993: "filtered"})
    with pytest.raises(Finding, match="16993 filtered"):
        network_checks.test_console_reaches_amt_ports(None, ENV, facts, Evidence())
