"""Environment files: every mistake is reported with file, line and key; inventory sources; secret references.

CSV inventories and ldap: sources in detail: tests/unit/test_inventory.py.
"""
from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from pytest_vpro import environment as envmod
from pytest_vpro.secrets import REDACTOR, SecretUnavailable

GOOD = """\
site: {name: HQ, code: ABC, domain: corp.example.com, amt_container: "OU=AMT,DC=corp,DC=example,DC=com"}
credentials:
  amt: {user: admin, password: "env:VPRO_TEST_AMT"}
  ldap: kerberos
servers:
  - {fqdn: sccm01.corp.example.com, roles: [site_server, oob_service_point]}
clients:
  - {fqdn: PC0002.corp.example.com, provisioning: in_band}
  - {fqdn: pc0001.corp.example.com, canary: true}
"""


@pytest.fixture(autouse=True)
def _amt_secret(monkeypatch):
    """GOOD's env: reference resolves (the loader asks every reference before anything is sent)."""
    monkeypatch.setenv("VPRO_TEST_AMT", "not-a-real-secret")


def write(tmp_path: Path, text: str, name: str = "env.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(envmod.EnvironmentFileError) as info:
        envmod.load(path)
    return [p.replace(str(path), "F") for p in info.value.problems]


def test_a_good_file_loads_sorted_with_defaults(tmp_path):
    env = envmod.load(write(tmp_path, GOOD))
    assert [c.name for c in env.clients] == ["pc0001.corp.example.com", "pc0002.corp.example.com"]
    assert env.clients[1].provisioning == "in_band" and env.clients[0].canary
    assert env.site.realm == "CORP.EXAMPLE.COM"
    assert env.expected["ports"] == {"provisioning": 9971, "amt_http": 16992, "amt_https": 16993,
                                     "redirection": 16994, "redirection_tls": 16995}
    assert env.credentials["ldap"].kerberos and not env.credentials["amt"].kerberos
    assert [t.name for t in env.targets("server:site_server")] == ["sccm01.corp.example.com"]


BROKEN = [
    ("not yaml", "site: [unclosed\n", ["F:2: not valid YAML: expected ',' or ']', but got '<stream end>'"]),
    ("no site", "clients: []\n", ["F:1: (top level): missing required key 'site'"]),
    ("unknown top-level key", GOOD + "clientz: []\n", ["F:10: clientz: unknown key; did you mean 'clients'?"]),
    ("site code", GOOD.replace("code: ABC", "code: ABCD"),
     ["F:1: site.code: 'ABCD' is not a three-character site code (e.g. ABC)"]),
    ("container", GOOD.replace('"OU=AMT,DC=corp,DC=example,DC=com"', "AMT"),
     ["F:1: site.amt_container: 'AMT' is not a distinguished name such as OU=AMT,DC=corp,DC=example,DC=com"]),
    ("plaintext password", GOOD.replace('"env:VPRO_TEST_AMT"', "hunter22"),
     ['F:3: credentials.amt.password: a plaintext secret is not allowed in an environment file (the value is not '
      'shown); reference it instead: password: "env:VPRO_CREDENTIALS_AMT_PASSWORD" and export '
      'VPRO_CREDENTIALS_AMT_PASSWORD, or password: "file:/path/to/secret", or use kerberos']),
    ("unknown role", GOOD.replace("oob_service_point]", "oob_servicepoint]"),
     ["F:6: servers[0].roles[1]: unknown role 'oob_servicepoint'; did you mean 'oob_service_point'?"]),
    ("server without roles", GOOD.replace(", roles: [site_server, oob_service_point]", ""),
     ["F:6: servers[0]: missing required key 'roles'"]),
    ("bad provisioning", GOOD.replace("in_band", "inband"),
     ["F:8: clients[0].provisioning: expected one of out_of_band, in_band, found 'inband'"]),
    ("canary not boolean", GOOD.replace("canary: true", "canary: maybe"),
     ["F:9: clients[1].canary: expected true or false, found 'maybe'"]),
    ("duplicate client", GOOD + "  - {fqdn: pc0001.corp.example.com}\n",
     ["F:10: clients[2].fqdn: client pc0001.corp.example.com is listed twice (first at F:9)"]),
    ("server and client", GOOD + "  - {fqdn: sccm01.corp.example.com}\n",
     ["F:10: clients[2].fqdn: sccm01.corp.example.com is listed both as a server (at F:6) and as a client"]),
    ("duplicate key", GOOD.replace("  ldap: kerberos\n", "  ldap: kerberos\n  ldap: kerberos\n"),
     ["F:5: credentials.ldap: key given twice"]),
    ("bad timeout", GOOD + "timeouts: {connect: -1, reed: 3}\n",
     ["F:10: timeouts.reed: unknown key; did you mean 'read'?", "F:10: timeouts.connect: must be at least 0.05, found -1"]),
    ("bad source", GOOD + "  - {source: 'http://inventory'}\n",
     ["F:10: clients[2].source: expected 'csv:PATH' or 'ldap:<OU distinguished name>', found 'http://inventory'"]),
    ("missing csv", GOOD + "  - {source: 'csv:nope.csv'}\n",
     ["F:10: clients[2].source: cannot read */nope.csv: No such file or directory"]),
    ("ldap without dc", GOOD + "  - {source: 'ldap:OU=PCs,DC=corp,DC=example,DC=com'}\n",
     ["F:10: clients[2].source: an ldap: client source needs a server with role domain_controller"]),
    ("ldap not a dn", GOOD + "  - {source: 'ldap:Desktops'}\n",
     ["F:10: clients[2].source: 'Desktops' is not a distinguished name such as OU=Desktops,DC=corp,DC=example,DC=com"]),
    # addresses: IPv4 only (out of band management is IPv4-only), wherever an address is given
    ("ipv6 server address", GOOD.replace("oob_service_point]}", "oob_service_point], address: 'fe80::1'}"),
     ["F:6: servers[0].address: 'fe80::1' is an IPv6 address; out of band management (Intel AMT) is IPv4-only: "
      "give the IPv4 address"]),
    ("malformed client address", GOOD.replace("canary: true}", "canary: true, address: 10.0.0.256}"),
     ["F:9: clients[1].address: '10.0.0.256' is not an IPv4 address (four numbers from 0 to 255 separated by dots, "
      "e.g. 10.0.0.12)"]),
    ("short client address", GOOD.replace("canary: true}", "canary: true, address: 10.0.1}"),
     ["F:9: clients[1].address: '10.0.1' is not an IPv4 address (four numbers from 0 to 255 separated by dots, "
      "e.g. 10.0.0.12)"]),
    ("numeric address", GOOD.replace("canary: true}", "canary: true, address: 10}"),
     ["F:9: clients[1].address: expected an IPv4 address such as 10.0.0.12, found 10 (int)"]),
    ("unspecified address", GOOD.replace("canary: true}", "canary: true, address: 0.0.0.0}"),
     ["F:9: clients[1].address: '0.0.0.0' is not the address of a host (e.g. 10.0.0.12)"]),
    ("ipv6 dns server", GOOD + "dns: {servers: [10.0.0.10, '2001:db8::53']}\n",
     ["F:10: dns.servers[1]: '2001:db8::53' is an IPv6 address; out of band management (Intel AMT) is IPv4-only: "
      "give the IPv4 address"]),
    ("probe_from", GOOD.replace("oob_service_point]}", "oob_service_point], probe_from: 10.1.20.x}"),
     ["F:6: servers[0].probe_from: '10.1.20.x' is not an IPv4 address (four numbers from 0 to 255 separated by "
      "dots, e.g. 10.0.0.12)"]),
    ("attestation date", GOOD + "attestations:\n  - {check: S2-BIOS-AMT-ENABLED, by: me, at: yesterday, seen: ok}\n",
     ["F:11: attestations[0].at: expected a date such as 2026-11-20, found 'yesterday'"]),
    ("wrong type", GOOD.replace("clients:\n  - {fqdn: PC0002.corp.example.com, provisioning: in_band}\n"
                                "  - {fqdn: pc0001.corp.example.com, canary: true}\n", "clients: pc0001\n"),
     ["F:7: clients: expected a list of clients, found 'pc0001'"]),
]


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in BROKEN], ids=[n for n, _, _ in BROKEN])
def test_each_mistake_is_reported_with_file_line_and_key(tmp_path, text, expected):
    got = problems(tmp_path, text)
    assert len(got) == len(expected), got
    for line, pattern in zip(got, expected):  # '*' is the only wildcard: keys have brackets
        assert re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), line), f"{line!r} !~ {pattern!r}"


def test_every_mistake_is_reported_at_once(tmp_path):
    text = GOOD.replace("code: ABC", "code: A").replace("in_band", "x") + "bogus: 1\n"
    assert len(problems(tmp_path, text)) == 3


def test_a_missing_file_lists_what_is_there(tmp_path):
    (tmp_path / "lab.yaml").write_text(GOOD)
    with pytest.raises(envmod.EnvironmentFileError, match=r"environment file not found \(available: lab\)"):
        envmod.load(tmp_path / "prod.yaml")


def test_csv_inventory_with_defaults_and_line_numbers(tmp_path):
    (tmp_path / "fleet.csv").write_text("fqdn,provisioning,canary\npc9.corp.example.com,,yes\n"
                                        "pc8.corp.example.com,in_band,\n")
    env = envmod.load(write(tmp_path, GOOD + "  - {source: 'csv:fleet.csv', provisioning: out_of_band}\n"))
    by_name = {c.name: c for c in env.clients}
    assert by_name["pc9.corp.example.com"].canary and by_name["pc9.corp.example.com"].provisioning == "out_of_band"
    assert by_name["pc8.corp.example.com"].provisioning == "in_band"
    (tmp_path / "fleet.csv").write_text("fqdn,canary\npc9.corp.example.com,perhaps\n")
    with pytest.raises(envmod.EnvironmentFileError) as info:
        envmod.load(tmp_path / "env.yaml")
    assert info.value.problems == [f"{tmp_path / 'fleet.csv'}:2: canary: expected true or false, found 'perhaps'"]


def test_secret_references_resolve_at_use_and_are_redacted(tmp_path, monkeypatch):
    env = envmod.load(write(tmp_path, GOOD))
    ref = env.credentials["amt"].password
    assert "VPRO_TEST_AMT" in repr(ref)
    monkeypatch.delenv("VPRO_TEST_AMT")  # gone after the load: still a finding where it is used, not a traceback
    with pytest.raises(SecretUnavailable, match=r"^environment variable VPRO_TEST_AMT is not set "
                                                r"\(referenced as 'env:VPRO_TEST_AMT'\)$"):
        ref.resolve()
    monkeypatch.setenv("VPRO_TEST_AMT", "Corr3ct-Horse")
    assert ref.resolve() == "Corr3ct-Horse"
    assert REDACTOR("login with Corr3ct-Horse failed") == "login with «redacted» failed"


SECRETS = [  # every reference is asked at load time: a usage error naming the file, line and key
    ("unset variable", lambda tmp, mp: mp.delenv("VPRO_TEST_AMT"), '"env:VPRO_TEST_AMT"',
     "F:3: credentials.amt.password: environment variable VPRO_TEST_AMT is not set; export VPRO_TEST_AMT before "
     "the run"),
    ("empty variable", lambda tmp, mp: mp.setenv("VPRO_TEST_AMT", ""), '"env:VPRO_TEST_AMT"',
     "F:3: credentials.amt.password: environment variable VPRO_TEST_AMT is set but empty"),
    ("missing file", lambda tmp, mp: None, '"file:secrets/amt.secret"',
     "F:3: credentials.amt.password: cannot read secret file T/secrets/amt.secret: No such file or directory"),
    ("a folder", lambda tmp, mp: (tmp / "amt.secret").mkdir(), '"file:amt.secret"',
     "F:3: credentials.amt.password: cannot read secret file T/amt.secret: Is a directory"),
    ("empty file", lambda tmp, mp: (tmp / "amt.secret").write_text("\n"), '"file:amt.secret"',
     "F:3: credentials.amt.password: secret file T/amt.secret is empty"),
    ("not text", lambda tmp, mp: (tmp / "amt.secret").write_bytes(b"\xff\xfe\x00"), '"file:amt.secret"',
     "F:3: credentials.amt.password: secret file T/amt.secret is not UTF-8 text"),
]


@pytest.mark.parametrize("prepare, ref, expected", [c[1:] for c in SECRETS], ids=[c[0] for c in SECRETS])
def test_every_secret_reference_resolves_before_anything_is_sent(tmp_path, monkeypatch, prepare, ref, expected):
    prepare(tmp_path, monkeypatch)
    got = problems(tmp_path, GOOD.replace('"env:VPRO_TEST_AMT"', ref))
    assert [p.replace(str(tmp_path), "T") for p in got] == [expected]


def test_unreadable_secret_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    (tmp_path / "amt.secret").write_text("x-secret")
    (tmp_path / "amt.secret").chmod(0)
    got = problems(tmp_path, GOOD.replace('"env:VPRO_TEST_AMT"', '"file:amt.secret"'))
    assert got == [f"F:3: credentials.amt.password: cannot read secret file {tmp_path}/amt.secret: Permission denied"]


def test_the_secret_check_keeps_no_value_and_leaves_kerberos_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("VPRO_TEST_AMT", "Unseen-Value-42")
    REDACTOR.clear()
    env = envmod.load(write(tmp_path, GOOD))
    assert REDACTOR("Unseen-Value-42") == "Unseen-Value-42"  # asked, not registered: nothing new holds it
    assert "Unseen-Value-42" not in repr(env.credentials) + repr(env.raw)
    assert env.credentials["ldap"].kerberos  # `kerberos` is no reference to ask
    monkeypatch.delenv("VPRO_TEST_AMT")
    envmod.load(tmp_path / "env.yaml", check_secrets=False)  # --facts-in: nothing is sent, nothing asked


def test_a_worker_reading_the_inventory_does_not_ask_again(tmp_path, monkeypatch):
    env = envmod.load(write(tmp_path, GOOD))
    envmod.write_inventory_cache(env, tmp_path / "inventory.json")
    monkeypatch.delenv("VPRO_TEST_AMT")
    again = envmod.load(tmp_path / "env.yaml", inventory_cache=tmp_path / "inventory.json")
    assert [c.name for c in again.clients] == [c.name for c in env.clients]


def test_file_references_are_relative_to_the_environment_file(tmp_path):
    (tmp_path / "amt.secret").write_text("from-a-file\n")
    env = envmod.load(write(tmp_path, GOOD.replace('"env:VPRO_TEST_AMT"', '"file:amt.secret"')))
    assert env.credentials["amt"].password.resolve() == "from-a-file"


def test_the_example_file_documents_a_valid_schema(monkeypatch):
    """example.yaml is a template: only the certificate files it names are missing (no LDAP query is sent)."""
    monkeypatch.setenv("VPRO_AMT_PASSWORD", "x-amt")
    monkeypatch.setenv("VPRO_MEBX_PASSWORD", "x-mebx")
    path = Path(__file__).resolve().parents[2] / "environments" / "example.yaml"
    with pytest.raises(envmod.EnvironmentFileError) as info:
        envmod.load(path, ldap_search=lambda *a, **kw: [{"fqdn": "pc0201.corp.example.com"}])
    assert [p.split(": ", 2)[1] for p in info.value.problems] == ["pki.provisioning_chain", "pki.trusted_roots"]
    assert all("file not found" in p for p in info.value.problems)
