"""S1-CLIENT-SAME-AD-FOREST and its neighbours count the client's own computer account, never the AMT object the
site publishes for its management controller: told apart by where it is (the AMT container's path, in any domain)
and by the SPNs only the AMT object holds (HTTP/<fqdn>:16992/16993), not by name. Pure functions, no lab."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_vpro.checks import Finding
from pytest_vpro.environment_model import DEFAULT_EXPECTED
from pytest_vpro.facts.directory import DirectoryFacet, in_amt_path
from pytest_vpro.probes.errors import NotObserved, ProbeError
from suites.stage1.test_directory import (
    test_client_dns_suffix_is_its_ad_domain as dns_suffix_check,
)
from suites.stage1.test_directory import (
    test_client_is_in_the_site_servers_forest as forest_check,
)

FQDN = "pc0001.vprolab.test"
OS = {"dn": "CN=PC0001,CN=Computers,DC=vprolab,DC=test", "spns": []}
AMT = {"dn": "CN=PC0001,OU=AMT,DC=vprolab,DC=test", "spns": [f"HTTP/{FQDN}:16992", f"HTTP/{FQDN}:16993"]}


@pytest.mark.parametrize("dn, container, inside", [
    ("CN=PC1,OU=AMT,DC=vprolab,DC=test", "OU=AMT,DC=vprolab,DC=test", True),
    ("CN=PC1,OU=AMT,DC=branch,DC=vprolab,DC=test", "OU=AMT,DC=vprolab,DC=test", True),  # another client domain
    ("CN=PC1, ou = amt ,DC=vprolab,DC=test", "OU=AMT,DC=vprolab,DC=test", True),
    ("CN=PC1,OU=AMT,OU=Mgmt,DC=c,DC=test", "OU=AMT,OU=Mgmt,DC=c,DC=test", True),
    ("CN=PC1,CN=Computers,DC=vprolab,DC=test", "OU=AMT,DC=vprolab,DC=test", False),
    ("CN=PC1,OU=AMT,OU=Other,DC=c,DC=test", "OU=AMT,OU=Mgmt,DC=c,DC=test", False),
    ("CN=AMT,DC=c,DC=test", "CN=AMT,DC=c,DC=test", False),  # the container itself is no object in it
    ("CN=PC1,OU=AMT,DC=c,DC=test", "", False),
])
def test_the_amt_container_path_is_matched_in_every_domain(dn, container, inside):
    assert in_amt_path(dn, container) is inside


class _Facts:
    def __init__(self, objects, container="OU=AMT,DC=vprolab,DC=test"):
        site = SimpleNamespace(amt_container=container)
        self.env = SimpleNamespace(expected=DEFAULT_EXPECTED, site=site)
        self.directory = DirectoryFacet(self)  # type: ignore[arg-type]
        self.directory.forest_computer_objects = lambda: {FQDN: objects}  # type: ignore[method-assign]
        self.directory.root_dse = lambda: {"rootDomainNamingContext": "DC=vprolab,DC=test"}  # type: ignore


class _Evidence:
    def __init__(self):
        self.attached = {}

    def attach(self, name, value):
        self.attached[name] = value


CLIENT = SimpleNamespace(fqdn=FQDN)


def test_the_os_account_and_the_amt_object_are_told_apart_by_place_and_spn():
    moved = {"dn": "CN=PC0001-X,OU=Elsewhere,DC=vprolab,DC=test", "spns": [f"HTTP/{FQDN}:16993"]}
    split = _Facts([OS, AMT, moved]).directory.computer_objects_of(FQDN.upper())
    assert split == {"os": [OS], "amt": [AMT, moved]}  # the SPN marks an AMT object outside the container too


def test_the_client_is_a_member_by_its_own_account_and_the_evidence_shows_both():
    evidence = _Evidence()
    forest_check(client=CLIENT, facts=_Facts([AMT, OS]), evidence=evidence)
    shown = evidence.attached["global catalog"]
    assert shown["computer accounts with this dNSHostName"] == [OS["dn"]]
    assert shown["the site's AMT objects with this dNSHostName (not counted)"] == [AMT["dn"]]


def test_the_amt_object_alone_is_no_domain_membership():
    with pytest.raises(Finding) as failed:
        forest_check(client=CLIENT, facts=_Facts([AMT]), evidence=_Evidence())
    assert failed.value.found == (
        f"no computer account with dNSHostName {FQDN} in the forest vprolab.test (global catalog); only the AMT "
        f"object the site published for its management controller ({AMT['dn']}): a workgroup computer, one of "
        "another forest, or one whose computer account was deleted")
    assert "own computer account" in failed.value.expected


def test_the_disjoint_namespace_check_judges_the_os_accounts_domain():
    other = {"dn": "CN=PC0001,CN=Computers,DC=corp,DC=example", "spns": []}
    amt_here = {"dn": "CN=PC0001,OU=AMT,DC=vprolab,DC=test", "spns": AMT["spns"]}
    with pytest.raises(Finding) as failed:
        dns_suffix_check(client=CLIENT, facts=_Facts([amt_here, other]), evidence=_Evidence())
    assert "its computer account CN=PC0001,CN=Computers,DC=corp,DC=example is in the AD domain corp.example" \
        in failed.value.found


def test_a_snapshot_without_the_spns_cannot_decide_but_a_dead_catalog_is_a_finding():
    def missing():
        raise NotObserved("ldap.gc.computers.dNSHostName,servicePrincipalName of vprolab.test was not observed")

    facts = _Facts([])
    facts.directory.forest_computer_objects = missing  # type: ignore[method-assign]
    with pytest.raises(pytest.skip.Exception, match="cannot decide: the computer objects' SPNs were not read"):
        forest_check(client=CLIENT, facts=facts, evidence=_Evidence())

    def dead():
        raise ProbeError("dc01.vprolab.test:3269 did not answer")

    facts.directory.forest_computer_objects = dead  # type: ignore[method-assign]
    with pytest.raises(ProbeError, match="3269 did not answer"):  # the engine reports it with its cause
        forest_check(client=CLIENT, facts=facts, evidence=_Evidence())
