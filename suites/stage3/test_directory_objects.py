"""Stage 3: the management controller objects the site server publishes in Active Directory.

Guide, Stage 3: "Check computer objects are created for each provisioned client in the Active Directory OU or CN used
to hold objects representing client Management Controllers (use MMC with ADUC snap-in)"; "Check computer objects
representing client Management Controllers are not marked with a cross or exclamation mark and check that Service
Principal Names have been correctly written into those objects (use MMC with ADUC and ADSIEdit snap-in)".

One LDAP search reads the whole AMT container (one level, ``site.amt_container``) for every client's checks; a
client's object is the one whose dNSHostName is its FQDN (else whose cn / sAMAccountName is its host name: SCCM's
exact naming is unconfirmed). The SPNs are looked up once more across the forest root's naming context, to find
each on exactly one object.
"""
import pytest

from pytest_vpro.checks import expect, not_applicable

ATTRIBUTES = ("cn", "dNSHostName", "sAMAccountName", "objectClass", "userAccountControl", "servicePrincipalName",
              "whenCreated")
ACCOUNTDISABLE = 0x2  # userAccountControl (MS-ADTS 2.2.16): ADUC's cross
MANDATORY = ("sAMAccountName", "dNSHostName")  # without them ADUC cannot show the object as a computer


def _one(attributes: dict, name: str):
    value = attributes.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _object(client, env, facts):
    """This client's management controller object in the AMT container, or None."""
    entries = facts.directory.search(env.site.amt_container, "(objectClass=*)", ATTRIBUTES, scope="one")
    # one scan of the container per run, not one per client (quadratic in the fleet)
    by_dns, by_cn, by_sam = facts.derived("amt_container.index", entries, _index_objects)
    host = client.fqdn.split(".", 1)[0].lower()
    found = by_dns.get(client.fqdn.lower()) or sorted(set(by_cn.get(host, []) + by_sam.get(host[:15] + "$", [])))
    return entries[found[0]] if found else None


def _index_objects(entries: list) -> tuple[dict[str, list[int]], ...]:
    """Positions of the container's objects by lower-case dNSHostName, cn and sAMAccountName."""
    indexes: tuple[dict[str, list[int]], ...] = ({}, {}, {})
    for i, e in enumerate(entries):
        for index, attribute in zip(indexes, ("dNSHostName", "cn", "sAMAccountName")):
            index.setdefault(str(_one(e["attributes"], attribute) or "").lower(), []).append(i)
    return indexes


def _holders_by_spn(holders: list) -> dict[str, list[str]]:
    """The DNs holding each lower-case SPN, in the directory's order."""
    out: dict[str, list[str]] = {}
    for h in holders:
        for spn in dict.fromkeys(str(v).lower() for v in h["attributes"].get("servicePrincipalName") or []):
            out.setdefault(spn, []).append(h["dn"])
    return out


def _summary(entry) -> dict:
    return {"dn": entry["dn"], **{k: v for k, v in entry["attributes"].items() if k in ATTRIBUTES}}


def _spns(client, env) -> list[str]:
    ports = env.expected["ports"]
    return [f"HTTP/{client.fqdn}:{ports['amt_http']}", f"HTTP/{client.fqdn}:{ports['amt_https']}"]


@pytest.mark.check("S3-AD-MC-OBJECT-CREATED")
def test_management_controller_object_exists(client, env, facts, evidence):
    entry = _object(client, env, facts)
    evidence.attach("AD object", _summary(entry) if entry else f"none in {env.site.amt_container}")
    expect(entry, found=f"no object for {client.fqdn} in {env.site.amt_container}",
           expected="the client's management controller object (dNSHostName or cn naming the client)")


@pytest.mark.check("S3-AD-MC-OBJECT-NOT-FLAGGED")
def test_management_controller_object_is_not_flagged(client, env, facts, evidence):
    entry = _object(client, env, facts)
    if entry is None:
        not_applicable("no object for the client in the AMT container (S3-AD-MC-OBJECT-CREATED)")
    evidence.attach("AD object", _summary(entry))
    attrs = entry["attributes"]
    uac = int(_one(attrs, "userAccountControl") or 0)
    problems = [f"disabled (userAccountControl 0x{uac:X} has ACCOUNTDISABLE)"] if uac & ACCOUNTDISABLE else []
    if "CNF:" in entry["dn"]:
        problems.append(f"a replication conflict object ({entry['dn']})")
    missing = [a for a in MANDATORY if not _one(attrs, a)]
    if missing:
        problems.append(f"no {' and no '.join(missing)}")
    expect(not problems, found="; ".join(problems), expected="an enabled object, not a conflict, with "
                                                           f"{' and '.join(MANDATORY)}")


@pytest.mark.check("S3-AD-MC-SPNS-WRITTEN")
def test_management_controller_object_has_the_amt_spns(client, env, facts, evidence):
    wanted = _spns(client, env)
    entry = _object(client, env, facts)
    have = [str(s) for s in (entry["attributes"].get("servicePrincipalName") or [])] if entry else []
    evidence.attach("servicePrincipalName", {"object": entry["dn"] if entry else None, "SPNs": have})
    missing = [s for s in wanted if s.lower() not in {h.lower() for h in have}]
    expect(not missing, found=f"{entry['dn'] if entry else 'no object'}: no {', '.join(missing)}",
           expected=f"{' and '.join(wanted)} on the client's object")
    forest = ",".join(f"DC={p}" for p in (env.site.forest or env.site.name).split("."))
    holders = facts.directory.search(forest, "(servicePrincipalName=HTTP/*)", ("servicePrincipalName",))
    by_spn = facts.derived("http_spn.holders", holders, _holders_by_spn)
    dupes = {s: by_spn.get(s.lower(), []) for s in wanted}
    dupes = {s: dns for s, dns in dupes.items() if len(dns) > 1}
    expect(not dupes, found="; ".join(f"{s} on {len(dns)} objects: {', '.join(dns)}" for s, dns in dupes.items()),
           expected="each SPN on exactly one object in the forest")
