"""Stage 3: the client's name: valid characters, forward and reverse lookups agree.

Guide, Stage 3: "Check client FQDN does not include any special characters. FQDN should be composed of characters
A-Z, a-z, 0-9, minus - and period . Underscore characters are not supported"; "Check forward and reverse client
name resolution is working consistently, and resolves to the correct client".
"""
import re

import pytest

from pytest_vpro.checks import expect


@pytest.mark.check("S3-CLIENT-FQDN-VALID-CHARACTERS")
def test_client_fqdn_uses_only_valid_characters(client):
    bad = sorted(set(re.sub(r"[A-Za-z0-9.-]", "", client.fqdn)))
    expect(not bad, found=f"{client.fqdn} contains {''.join(bad)!r}", expected="only A-Z, a-z, 0-9, '-' and '.'")


@pytest.mark.check("S3-CLIENT-NAME-RESOLUTION-FWD-REV")
def test_forward_and_reverse_lookups_agree(client, facts, evidence):
    addresses = facts.forward(client.fqdn)
    names = {address: facts.reverse(address) for address in addresses}
    evidence.attach("DNS", {"A": addresses, "PTR": names})
    expect(addresses, found=f"no A record for {client.fqdn}", expected="an A record")
    if client.address:
        expect(client.address in addresses, found=f"{client.fqdn} -> {', '.join(addresses)}",
               expected=f"{client.address}, the client's address")
    wrong = {a: n for a, n in names.items() if client.fqdn not in n}
    expect(not wrong, found="; ".join(f"PTR {a} -> {', '.join(n) or 'nothing'}" for a, n in wrong.items()),
           expected=f"every address's PTR record names {client.fqdn}")
