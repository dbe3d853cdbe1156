"""PRE-NO-IPSEC judges the assigned IPsec policy by its filters (suites/stage1/test_site_server.py): it follows the
domain policy through the directory and the local one through the service point's registry
(pytest_vpro.facts.ipsec), with fakes of facts.windows.registry and facts.directory.search. The lab proves the
domain case against Samba (tests/lab/test_faults_windows.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_ipsec_filters import blob, spec

from pytest_vpro.checks import Evidence, Finding
from pytest_vpro.environment import DEFAULT_EXPECTED
from pytest_vpro.facts import ipsec as policy_facts
from pytest_vpro.probes.errors import Undecided
from suites.stage1.test_site_server import test_no_ipsec_policy_on_service_point as no_ipsec

BASE = "CN=IP Security,CN=System,DC=corp,DC=example"
POLICY, NFA, FILTER, ACTION = (f"CN={n},{BASE}" for n in ("ipsecPolicy{1}", "ipsecNFA{2}", "ipsecFilter{3}",
                                                          "ipsecNegotiationPolicy{4}"))
REQUIRE = "{3F91A81A-7647-11D1-864D-D46A00000000}"
SERVER = SimpleNamespace(name="sccm01.corp.example", address="10.0.0.11")
ENV = SimpleNamespace(expected={"ports": DEFAULT_EXPECTED["ports"]},
                      clients=[SimpleNamespace(name="pc0001.corp.example", address="10.0.1.5")])
ALL_IP = blob(spec(src_mask="255.255.255.255"), length=74, tail=b"\0")
SMB_TO_ONE_HOST = blob(spec(src_mask="255.255.255.255", dst="10.0.0.20", dst_mask="255.255.255.255", proto=6,
                            dport=445))


def directory(filter_data: bytes, action: str = REQUIRE) -> dict[str, dict[str, list[bytes]]]:
    return {POLICY: {"ipsecName": [b"Secure Server (Require Security)"], "ipsecNFAReference": [NFA.encode()]},
            NFA: {"ipsecName": [b"Require Security"], "ipsecFilterReference": [FILTER.encode()],
                  "ipsecNegotiationPolicyReference": [ACTION.encode()]},
            FILTER: {"ipsecName": [b"All IP Traffic"], "ipsecData": [filter_data]},
            ACTION: {"ipsecName": [b"Require Security"], "iPSECNegotiationPolicyAction": [action.encode()]}}


def facts_with(registry: dict, objects: dict | None = None) -> SimpleNamespace:
    def search(base, ldap_filter, attributes, scope="subtree"):
        assert scope == "base"
        return [{"dn": base, "raw_attributes": objects[base]}] if base in (objects or {}) else []

    facts = SimpleNamespace(directory=SimpleNamespace(search=search),
                            dns=SimpleNamespace(forward=lambda name: [], address=lambda: SERVER.address))
    facts.windows = SimpleNamespace(registry=lambda host, key, value, kind="string": registry.get((key, value, kind)),
                                    ipsec_policies=lambda host: policy_facts.assigned_policies(facts, host))
    return facts


def domain(objects: dict) -> SimpleNamespace:
    return facts_with({(policy_facts.GPO_KEY, "DSIPSECPolicyPath", "string"): f"LDAP://{POLICY}",
                       (policy_facts.GPO_KEY, "DSIPSECPolicyName", "string"): "Secure Server (Require Security)"},
                      objects)


def judge(facts) -> Evidence:
    evidence = Evidence()
    no_ipsec(SERVER, ENV, facts, evidence)
    return evidence


def test_no_assigned_policy_passes():
    assert "none" in judge(facts_with({})).items[0]["body"]


def test_a_domain_policy_whose_filter_covers_all_ip_traffic_fails_naming_policy_list_and_filter():
    with pytest.raises(Finding) as caught:
        judge(domain(directory(ALL_IP)))
    assert caught.value.found.startswith("domain policy (GPTIPSECPolicy) 'Secure Server (Require Security)', rule "
                                         "'Require Security' (action 'Require Security'), filter list 'All IP "
                                         "Traffic', filter my IP address -> any IP address, any protocol, mirrored")
    assert caught.value.found.endswith(", matches AMT traffic between sccm01.corp.example (10.0.0.11) and any client")


def test_a_policy_whose_only_filter_is_other_traffic_passes_and_lists_its_filters():
    evidence = judge(domain(directory(SMB_TO_ONE_HOST)))
    assert "my IP address -> 10.0.0.20, TCP port any -> port 445" in evidence.items[0]["body"]


def test_a_filter_to_the_client_subnet_is_matched_against_the_clients_addresses():
    subnet = blob(spec(src_mask="255.255.255.255", dst="10.0.1.0", dst_mask="255.255.255.0", proto=6))
    with pytest.raises(Finding, match=r"\(10\.0\.0\.11\) and pc0001\.corp\.example"):
        judge(domain(directory(subnet)))


def test_a_permit_rule_exempts_amt_traffic():
    judge(domain(directory(blob(spec(proto=6, dport=16993)), action=policy_facts.PERMIT_ACTION)))


def test_an_unreadable_filter_or_a_missing_object_is_cannot_decide_never_a_failure():
    with pytest.raises(Undecided, match="does not start with the filter data GUID"):
        judge(domain(directory(b"\0" * 40)))
    with pytest.raises(Undecided, match="no object CN=ipsecPolicy"):
        judge(domain({}))
    with pytest.raises(Undecided, match="its action was not read"):
        judge(domain(directory(ALL_IP, action="")))


def test_the_local_policy_is_followed_through_the_registry():
    local = r"SOFTWARE\Policies\Microsoft\Windows\IPSEC\Policy\Local"
    policy, nfa, flt = (rf"{local}\{n}" for n in ("ipsecPolicy{1}", "ipsecNFA{2}", "ipsecFilter{3}"))
    action = rf"{local}\ipsecNegotiationPolicy{{4}}"
    hk = {k: "HKLM\\" + k for k in (policy, nfa, flt, action)}
    registry = {(policy_facts.LOCAL_KEY, "ActivePolicy", "string"): policy,
                (hk[policy], "ipsecName", "string"): "Block SMB", (hk[policy], "ipsecNFAReference", "multi"): [nfa],
                (hk[nfa], "ipsecName", "string"): "SMB", (hk[nfa], "ipsecFilterReference", "multi"): [flt],
                (hk[nfa], "ipsecNegotiationPolicyReference", "multi"): [action],
                (hk[action], "ipsecName", "string"): "Block",
                (hk[action], "iPSECNegotiationPolicyAction", "string"): "{3F91A819-7647-11D1-864D-D46A00000000}",
                (hk[flt], "ipsecName", "string"): "SMB traffic", (hk[flt], "ipsecData", "binary"): SMB_TO_ONE_HOST}
    evidence = judge(facts_with(registry))
    assert '"policy": "Block SMB"' in evidence.items[0]["body"]
    registry[(hk[flt], "ipsecData", "binary")] = ALL_IP
    with pytest.raises(Finding, match=r"local policy \(Policy\\Local ActivePolicy\) 'Block SMB', rule 'SMB' "
                                      r"\(action 'Block'\), filter list 'SMB traffic'"):
        judge(facts_with(registry))


def test_an_ldap_path_with_a_server_names_the_dn():
    assert policy_facts.ldap_dn(f"LDAP://dc01.corp.example/{POLICY}") == POLICY
    assert policy_facts.ldap_dn(f"LDAP://{POLICY}") == POLICY
