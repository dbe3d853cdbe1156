"""Stage 3: the client's name: valid characters, forward and reverse lookups agree.

Guide, Stage 3: "Check client FQDN does not include any special characters. FQDN should be composed of characters
A-Z, a-z, 0-9, minus - and period . Underscore characters are not supported"; "Check forward and reverse client
name resolution is working consistently, and resolves to the correct client".

The names judged are the ones the estate holds, not the inventory's string: the estate's DNS (the client's A
record, the PTR records of its addresses) and, once the site provisioned it, AMT's own (``AMT_GeneralSettings``
``HostName``.``DomainName``, which the ME uses for its certificate and Kerberos). A source that does not answer
leaves the check undecided, never failed.
"""
import re

import pytest

from pytest_vpro.checks import cannot_decide, expect
from pytest_vpro.probes.errors import ProbeError

VALID = "A-Z, a-z, 0-9, '-' and '.'"


def invalid_characters(name: str) -> str:
    """The characters of ``name`` outside A-Z, a-z, 0-9, '-' and '.' (the guide's), sorted, once each."""
    return "".join(sorted(set(re.sub(r"[A-Za-z0-9.-]", "", name))))


def amt_settings(client, facts):
    """``(AMT_GeneralSettings, None)`` of a client the site provisioned, else ``(None, why not)``: AMT answers
    WS-MAN only once provisioned, and is not asked before."""
    try:
        if not facts.site.provisioning_status().by_site():
            return None, "not provisioned by the site yet (AMT answers WS-MAN once provisioned)"
        return facts.amt.general_settings(), None
    except ProbeError as exc:
        return None, f"AMT_GeneralSettings unreadable: {exc}"


def names_in_dns(client, facts) -> tuple[dict[str, list[str]], str | None]:
    """``({name: [where DNS holds it]}, None)``: the client's name if the estate's DNS has an A record for it,
    and the names the PTR records of its addresses give; ``({}, why)`` when DNS does not answer."""
    names: dict[str, list[str]] = {}
    try:
        addresses = facts.dns.forward(client.fqdn)
        if addresses:
            names.setdefault(client.fqdn.lower(), []).append("DNS A")
        for address in addresses or ([client.address] if client.address else []):
            for name in facts.dns.reverse(address):
                names.setdefault(name.lower(), []).append(f"DNS PTR {address}")
    except ProbeError as exc:
        return {}, f"the estate's DNS did not answer: {exc}"
    return names, None if names else f"the estate's DNS holds no record of {client.fqdn} or its address"


@pytest.mark.check("S3-CLIENT-FQDN-VALID-CHARACTERS")
def test_client_fqdn_uses_only_valid_characters(client, facts, evidence):
    names, dns_gap = names_in_dns(client, facts)
    settings, amt_gap = amt_settings(client, facts)
    if settings is not None:
        names.setdefault(settings.fqdn.lower(), []).append("AMT_GeneralSettings HostName.DomainName")
    evidence.attach("names as the estate holds them", {**names, "the inventory": client.fqdn,
                                                       "not read": [g for g in (dns_gap, amt_gap) if g]})
    bad = {name: invalid_characters(name) for name in names if invalid_characters(name)}
    expect(not bad, found="; ".join(f"{name} ({', '.join(names[name])}) contains {chars!r}"
                                    for name, chars in bad.items()),
           expected=f"only {VALID} in the client's names in DNS and in AMT")
    if not names:
        cannot_decide(f"no name of {client.fqdn} to judge: {dns_gap}; {amt_gap}")
    if amt_gap and not amt_gap.startswith("not provisioned"):
        cannot_decide(f"the names DNS holds are valid ({', '.join(names)}); AMT's is not known: {amt_gap}")


@pytest.mark.check("S3-CLIENT-NAME-RESOLUTION-FWD-REV")
def test_forward_and_reverse_lookups_agree(client, facts, evidence):
    addresses = facts.dns.forward(client.fqdn)
    names = {address: facts.dns.reverse(address) for address in addresses}
    evidence.attach("DNS", {"A": addresses, "PTR": names})
    expect(addresses, found=f"no A record for {client.fqdn}", expected="an A record")
    if client.address:
        expect(client.address in addresses, found=f"{client.fqdn} -> {', '.join(addresses)}",
               expected=f"{client.address}, the client's address")
    wrong = {a: n for a, n in names.items() if client.fqdn not in n}
    expect(not wrong, found="; ".join(f"PTR {a} -> {', '.join(n) or 'nothing'}" for a, n in wrong.items()),
           expected=f"every address's PTR record names {client.fqdn}")
