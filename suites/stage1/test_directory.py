"""Stage 1 and the prerequisites page: Active Directory: the AMT container and the clients' forest and namespace.

Guide, Stage 1: "Check SCCM servers have full permission to the Active Directory OU or CN used to hold objects
representing client Management Controllers and full control over objects in the OU or CN."; "Clients and SCCM
servers responsible for provisioning and managing those clients reside in the same Active Directory forest";
"Clients and SCCM servers responsible for provisioning those clients share DNS namespace."
Prerequisites (seed 004): "If the site manages AMT-based computers from multiple domains, the same container name
and path must be used for all domains."; "Computers that will be managed out of band must belong to the same
Active Directory forest as the out of band service point's forest and must share the same namespace. Disjointed
namespaces are not supported."; "The following scenarios identify computers that are not supported for out of band
management. AMT should be disabled on these computers" ... "for example, an AMT-based computer that has a DNS name of
computer1.corp.fabrikam.com and resides in an Active Directory domain named na.corp.fabrikam.com."
"""
import pytest

from pytest_vpro.checks import cannot_decide, expect, not_applicable
from pytest_vpro.probes.errors import NotObserved
from pytest_vpro.probes.ldap import NoSuchObject, grants

FULL_CONTROL_EXPECTED = ("Full Control for every site server's computer account, on the container and inherited "
                         "by the objects in it (This object and all descendant objects)")


def domain_of(dn: str) -> str:
    """``CN=PC1,OU=AMT,DC=corp,DC=example,DC=com`` -> ``corp.example.com``."""
    return ".".join(part.split("=", 1)[1] for part in dn.split(",") if part.strip().upper().startswith("DC="))


def domain_dn(domain: str) -> str:
    return ",".join(f"DC={label}" for label in domain.split("."))


def in_tree(name: str, root: str) -> bool:
    return name == root or name.endswith("." + root)


def full_control_missing(env, facts, dn: str, *, gc: bool = False) -> list[str]:
    """What each site server lacks of Full Control on ``dn`` and the objects below it."""
    sd = facts.directory.security_descriptor(dn, gc=gc)
    missing = []
    for server in env.servers_with("site_server"):
        sids = facts.directory.account_sids(server)["sids"]
        if not grants(sd, sids, "FULL_CONTROL"):
            missing.append(f"{server.name} has no Full Control on {dn}")
        elif not grants(sd, sids, "FULL_CONTROL", to_children=True):
            missing.append(f"{server.name}'s Full Control on {dn} is not inherited by the objects in it")
    return missing


@pytest.mark.check("S1-AD-AMT-CONTAINER-ACL")
def test_site_servers_have_full_control_of_the_amt_container(site, env, facts, evidence):
    try:
        sd = facts.directory.security_descriptor(site.amt_container)
    except NoSuchObject:
        expect(False, found=f"no object {site.amt_container}", expected="the AMT container (OU or CN) exists")
    evidence.attach(f"{site.amt_container} DACL", sd.describe())
    evidence.attach("site server accounts",
                    {s.name: facts.directory.account_sids(s) for s in env.servers_with("site_server")})
    missing = full_control_missing(env, facts, site.amt_container)
    expect(not missing, found="; ".join(missing), expected=FULL_CONTROL_EXPECTED)


@pytest.mark.check("PRE-AD-CONTAINER-SAME-PATH-ALL-DOMAINS")
def test_amt_container_has_the_same_path_in_every_client_domain(site, env, facts, evidence):
    if len(site.client_domains) < 2:
        not_applicable(f"the site's AMT clients are in one domain ({', '.join(site.client_domains)})")
    relative = ",".join(p for p in site.amt_container.split(",") if not p.strip().upper().startswith("DC="))
    problems, seen = [], {}
    for domain in site.client_domains:  # through a global catalog: every domain of the forest is there
        dn = f"{relative},{domain_dn(domain)}"
        try:
            seen[dn] = facts.directory.security_descriptor(dn, gc=True).describe()
        except NoSuchObject:
            problems.append(f"no {dn}")
            continue
        problems += full_control_missing(env, facts, dn, gc=True)
    evidence.attach("AMT containers", seen)
    expect(not problems, found="; ".join(problems),
           expected=f"{relative} in every client domain ({', '.join(site.client_domains)}), each with "
                    + FULL_CONTROL_EXPECTED[0].lower() + FULL_CONTROL_EXPECTED[1:])


def computer_accounts(client, facts, evidence) -> tuple[str, list[str]]:
    """(the forest root, the DNs of the client's own computer accounts in the forest): the global catalog's
    computer objects with its dNSHostName, less the site's AMT objects (in the AMT container's path of any domain,
    or holding its HTTP/<fqdn>:<AMT port> SPNs), which provisioning writes, not a domain join."""
    forest = domain_of(facts.directory.root_dse().get("rootDomainNamingContext") or "")
    try:
        objects = facts.directory.computer_objects_of(client.fqdn)
    except NotObserved as exc:  # a snapshot of a version that read no SPNs: it cannot tell the AMT object apart
        cannot_decide(f"the computer objects' SPNs were not read: {exc}")
    own, amt = ([o["dn"] for o in objects[kind]] for kind in ("os", "amt"))
    evidence.attach("global catalog", {"forest": forest, "computer accounts with this dNSHostName": own,
                                       "the site's AMT objects with this dNSHostName (not counted)": amt})
    return forest, own


def not_a_member(client, facts, forest: str) -> str:
    """Why the forest holds no computer account of the client, in plain words."""
    amt = [o["dn"] for o in facts.directory.computer_objects_of(client.fqdn)["amt"]]
    only = (f"; only the AMT object the site published for its management controller ({', '.join(amt)})"
            if amt else "")
    return (f"no computer account with dNSHostName {client.fqdn} in the forest {forest} (global catalog){only}: "
            "a workgroup computer, one of another forest, or one whose computer account was deleted")


@pytest.mark.check("S1-CLIENT-SAME-AD-FOREST")
def test_client_is_in_the_site_servers_forest(client, facts, evidence):
    forest, own = computer_accounts(client, facts, evidence)
    expect(own, found=not_a_member(client, facts, forest),
           expected=f"the client's own computer account (made when it joined the domain) in a domain of the "
                    f"forest {forest}, outside the AMT container")


def namespace_apart(client, env, facts, evidence) -> tuple[str, str, dict[str, str]]:
    """(the forest root, the client's DNS suffix, the service points whose namespace it does not share)."""
    forest = domain_of(facts.directory.root_dse().get("rootDomainNamingContext") or "")
    suffix = client.fqdn.lower().split(".", 1)[1]
    points = {s.name: s.name.lower().split(".", 1)[1] for s in env.servers_with("oob_service_point")}
    evidence.attach("namespaces", {"client": suffix, "out of band service points": points, "forest root": forest})
    apart = {name: theirs for name, theirs in points.items()
             if not (in_tree(suffix, theirs) or in_tree(theirs, suffix)
                     or (in_tree(suffix, forest) and in_tree(theirs, forest)))}
    return forest, suffix, apart


@pytest.mark.check("S1-CLIENT-SHARED-DNS-NAMESPACE")
def test_client_shares_the_site_servers_namespace(client, env, facts, evidence):
    forest, suffix, apart = namespace_apart(client, env, facts, evidence)
    expect(not apart, found=f"{client.fqdn} is in {suffix}, apart from "
                            + ", ".join(f"{n} ({d})" for n, d in apart.items()),
           expected=f"the client's DNS suffix in the service point's namespace (the tree of {forest})")


@pytest.mark.check("PRE-CLIENT-NO-DISJOINT-NAMESPACE")
def test_client_dns_suffix_is_its_ad_domain(client, facts, evidence):
    _, objects = computer_accounts(client, facts, evidence)
    if not objects:
        not_applicable(f"{client.fqdn} has no computer account in the forest (S1-CLIENT-SAME-AD-FOREST)")
    suffix = client.fqdn.lower().split(".", 1)[1]
    domains = {dn: domain_of(dn).lower() for dn in objects}
    evidence.attach("DNS suffix and AD domain", {"DNS suffix": suffix, "computer accounts": domains})
    expect(suffix in domains.values(),
           found=f"DNS suffix {suffix}; its computer account {objects[0]} is in the AD domain {domains[objects[0]]}",
           expected="the DNS suffix equal to the DNS name of the AD domain that holds the computer")


def unsupported(client, env, facts, evidence) -> list[str]:
    """Why out of band management does not support this client (the prerequisites' scenarios), or []."""
    forest, suffix, apart = namespace_apart(client, env, facts, evidence)
    _, objects = computer_accounts(client, facts, evidence)
    why = []
    if not objects:
        why.append(not_a_member(client, facts, forest))
    if apart:
        why.append(f"its DNS suffix {suffix} is apart from the namespace of "
                   + ", ".join(f"{n} ({d})" for n, d in apart.items()) + " (noncontiguous namespace)")
    domains = sorted({domain_of(dn).lower() for dn in objects})
    if objects and suffix not in domains:
        why.append(f"its DNS suffix {suffix} is not its AD domain {', '.join(domains)} (disjointed namespace)")
    return why


def amt_enabled(facts, evidence) -> str | None:
    """Why the site or AMT shows this client's AMT enabled (provisioned, detected, sending hellos), or None."""
    status = facts.site.provisioning_status()
    why = status.by_site() or status.elsewhere() or status.me_provisioned()
    status.attach(evidence)
    if why:
        return f"provisioned: {why}"
    if status.log("hello_received", "ztc_request"):
        return "sending hello packets (AMTOPMGR.LOG and its history): AMT is enabled, waiting to be provisioned"
    heard = facts.hellos.heard()
    if heard:
        evidence.attach(f"hellos heard on {facts.hellos.listener().where}", [h.summary() for h in heard])
        return (f"sending hello packets ({len(heard)} heard on {facts.hellos.listener().where}): AMT is enabled, "
                "waiting to be provisioned")
    return None


# Prerequisites (seed 004), "Dependencies External to Configuration Manager 2007": "The following scenarios
# identify computers that are not supported for out of band management. AMT should be disabled on these
# computers"
@pytest.mark.check("PRE-AMT-DISABLED-ON-UNSUPPORTED-COMPUTERS")
def test_amt_is_disabled_where_out_of_band_management_is_unsupported(client, env, facts, evidence):
    why = unsupported(client, env, facts, evidence)
    if not why:
        not_applicable(f"{client.fqdn} is supported for out of band management (a computer account in the site "
                       "server's forest, a DNS suffix in its namespace and equal to its AD domain)")
    enabled = amt_enabled(facts, evidence)
    expect(enabled is None, found=f"{client.fqdn} is not supported ({'; '.join(why)}) and its AMT is {enabled}",
           expected="AMT disabled on a computer out of band management does not support: not provisioned, "
                    "no hello packets")
