"""Client inventories: a broken CSV file is a usage error at its own line; an ldap: source is read after the file
validated, through the estate's DNS, and a directory that does not answer is a finding of the run, not exit 4.

The directory tests use a DNS responder and an LDAP listener (that accepts and never answers) on 127.0.0.1,
port 0: nothing leaves loopback.
"""
from __future__ import annotations

import socket
import textwrap
import threading
import time
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pytest_vpro import environment as envmod
from pytest_vpro.probes import ldap as ldap_probe
from pytest_vpro.probes.ldap import AuthFailed
from pytest_vpro.run import load_environment

SITE = 'site: {name: HQ, code: ABC, domain: corp.example.com, amt_container: "OU=AMT,DC=corp,DC=example,DC=com"}\n'
OU = "OU=PCs,DC=corp,DC=example,DC=com"


def load_problems(env_file: Path, **kwargs) -> list[str]:
    with pytest.raises(envmod.EnvironmentFileError) as info:
        envmod.load(env_file, **kwargs)
    return info.value.problems


# --------------------------------------------------------------------------- CSV

def csv_problems(tmp_path: Path, content: bytes | str, *, inline: str = "") -> list[str]:
    """The problems of an environment whose clients come from fleet.csv; the CSV's path shown as C, the file's as F."""
    csv = tmp_path / "fleet.csv"
    csv.write_bytes(content.encode() if isinstance(content, str) else content)
    env = tmp_path / "env.yaml"
    env.write_text(SITE + "clients:\n" + inline + "  - {source: 'csv:fleet.csv'}\n")
    return [p.replace(str(csv), "C").replace(str(env), "F") for p in load_problems(env)]


HEADER = "fqdn,provisioning,canary\n"
COLUMNS = "the header names 3 columns (fqdn, provisioning, canary)"
BROKEN_CSV = [
    ("short row", HEADER + "pc1.corp.example.com,in_band,false\npc2.corp.example.com,in_band\n",
     [f"C:3: canary: missing: this row has 2 values, {COLUMNS}; an empty value still needs its comma"]),
    ("extra column", HEADER + "pc1.corp.example.com,in_band,false,4th floor\n",
     [f"C:2: column 4: extra value '4th floor': this row has 4 values, {COLUMNS}; a value that contains a comma "
      "must be in quotes"]),
    ("unquoted comma", "fqdn,notes\npc1.corp.example.com,finance, 4th floor\n",
     ["C:2: column 3: extra value '4th floor': this row has 3 values, the header names 2 columns (fqdn, notes); "
      "a value that contains a comma must be in quotes"]),
    ("trailing comma", HEADER + "pc1.corp.example.com,in_band,false,\n",
     [f"C:2: column 4: a comma too many at the end of the row: this row has 4 values, {COLUMNS}; a value that "
      "contains a comma must be in quotes"]),
    ("semicolons", "fqdn;provisioning;canary\npc1.corp.example.com;in_band;false\n",
     ["C:1: header: the columns are separated by semicolons (;); pytest-vpro reads comma-separated files: save "
      "the file as \"CSV (Comma delimited)\" or replace them with commas (fqdn,provisioning,canary)"]),
    ("tabs", "fqdn\tprovisioning\npc1.corp.example.com\tin_band\n",
     ["C:1: header: the columns are separated by tabs; pytest-vpro reads comma-separated files: save the file as "
      "\"CSV (Comma delimited)\" or replace them with commas (fqdn,provisioning,canary)"]),
    ("a row with semicolons", HEADER + "pc1.corp.example.com,in_band,false\npc2.corp.example.com;in_band;false\n",
     ["C:3: provisioning: missing: this row's values are separated by semicolons (;), not by commas like the "
      "header's"]),
    ("unbalanced quote", HEADER + 'pc1.corp.example.com,"in_band,false\npc2.corp.example.com,in_band,false\n',
     ['C:2: provisioning: a quote (") opens this value and is not closed on the same line; close it, or remove it']),
    ("stray quote", HEADER + 'pc1.corp.example.com,in_band,false"\n',
     ['C:2: canary: a quote (") in the middle of a value: remove it, or put the whole value in quotes and double '
      "the quote inside it"]),
    ("text after a quote", HEADER + '"pc1.corp.example.com"x,in_band,false\n',
     ["C:2: fqdn: text after the closing quote ('x'): put the whole value in quotes, or remove the quotes"]),
    ("quote in the header", 'fqdn,"provisioning\n',
     ['C:1: header: a quote (") opens this value and is not closed on the same line; close it, or remove it']),
    ("empty file", "",
     ["C:1: header: the file is empty; its first line must name the columns, e.g. fqdn,provisioning,canary"]),
    ("blank lines only", "\n \n\r\n",
     ["C:1: header: the file is empty; its first line must name the columns, e.g. fqdn,provisioning,canary"]),
    ("no fqdn column", "name,provisioning\npc1.corp.example.com,in_band\n",
     ["C:1: header: no 'fqdn' column (found: name, provisioning); the first line must name the columns, e.g. "
      "fqdn,provisioning,canary"]),
    ("misspelt fqdn column", "fdqn,provisioning\npc1.corp.example.com,in_band\n",
     ["C:1: header: no 'fqdn' column (found: fdqn, provisioning) ('fdqn' looks like a misspelling of 'fqdn'); the "
      "first line must name the columns, e.g. fqdn,provisioning,canary"]),
    ("no header line", "pc1.corp.example.com,in_band\npc2.corp.example.com,in_band\n",
     ["C:1: header: no 'fqdn' column (found: pc1.corp.example.com, in_band) (it looks like a client: the header "
      "line is missing); the first line must name the columns, e.g. fqdn,provisioning,canary"]),
    ("unnamed column", "fqdn,,canary\npc1.corp.example.com,x,false\n",
     ["C:1: column 2: the header names no column here; remove the extra comma or name the column"]),
    ("column twice", "fqdn,canary,canary\npc1.corp.example.com,false,true\n",
     ["C:1: canary: the header names this column twice"]),
    ("unknown column", "fqdn,provisoning\npc1.corp.example.com,in_band\n",
     ["C:1: provisoning: unknown column; did you mean 'provisioning'?"]),
    ("duplicate fqdn", HEADER + "pc1.corp.example.com,in_band,false\npc2.corp.example.com,,\n"
                                "PC1.corp.example.com,,\n",
     ["C:4: fqdn: pc1.corp.example.com is listed twice in this file (first on line 2)"]),
    ("duplicate of an inline client", HEADER + "pc2.corp.example.com,,\npc1.corp.example.com,,\n",
     ["C:3: fqdn: client pc1.corp.example.com is listed twice (first at F:3)"]),
    ("empty fqdn", HEADER + ",in_band,false\n",
     ["C:2: fqdn: empty; every row needs the client's fully qualified domain name"]),
    ("not an fqdn", HEADER + "pc1,in_band,false\n",
     ["C:2: fqdn: 'pc1' is not a fully qualified domain name (e.g. pc0001.corp.example.com)"]),
    ("bad provisioning", HEADER + "pc1.corp.example.com,inband,\n",
     ["C:2: provisioning: expected one of out_of_band, in_band, found 'inband'"]),
    ("bad boolean", "fqdn,wireless\npc1.corp.example.com,maybe\n",
     ["C:2: wireless: expected true or false, found 'maybe'"]),
    ("ipv6 address", "fqdn,address\npc1.corp.example.com,fe80::1\n",
     ["C:2: address: 'fe80::1' is an IPv6 address; out of band management (Intel AMT) is IPv4-only: give the "
      "IPv4 address"]),
    ("malformed address", "fqdn,address\npc1.corp.example.com,10.0.0\n",
     ["C:2: address: '10.0.0' is not an IPv4 address (four numbers from 0 to 255 separated by dots, e.g. "
      "10.0.0.12)"]),
    ("not UTF-8", b"fqdn,notes\npc1.corp.example.com,caf\xe9\n",
     ['C:2: the file is not UTF-8 text (byte 0xe9); save it as "CSV UTF-8 (Comma delimited)"']),
]


@pytest.mark.parametrize("content, expected", [c[1:] for c in BROKEN_CSV], ids=[c[0] for c in BROKEN_CSV])
def test_each_csv_mistake_is_a_problem_at_the_csv_files_own_line(tmp_path, content, expected):
    inline = "  - {fqdn: pc1.corp.example.com}\n" if "F:3" in str(expected) else ""  # at F:3
    assert csv_problems(tmp_path, content, inline=inline) == expected


def test_every_csv_mistake_is_reported_at_once(tmp_path):
    got = csv_problems(tmp_path, HEADER + "pc1.corp.example.com,in_band\npc2.corp.example.com,x,maybe\n"
                                          "pc3.corp.example.com,in_band,false,x\n")
    assert [p.split(": ")[0:2] for p in got] == [["C:2", "canary"], ["C:3", "canary"], ["C:3", "provisioning"],
                                                 ["C:4", "column 4"]]


def test_a_good_csv_file_with_quotes_bom_crlf_and_blank_lines(tmp_path):
    (tmp_path / "fleet.csv").write_bytes(
        "\ufeffFQDN, Provisioning ,canary,notes,address,wireless\r\n"
        'pc1.corp.example.com,in_band,yes,"finance, 4th floor ""east""",10.0.0.21,true\r\n'
        "\r\n"
        "pc2.corp.example.com,,,,,\r\n".encode())
    (tmp_path / "env.yaml").write_text(SITE + "clients:\n  - {source: 'csv:fleet.csv', canary: true}\n")
    env = load_environment(tmp_path / "env.yaml")
    one, two = env.clients
    assert (one.name, one.provisioning, one.canary, one.address) == ("pc1.corp.example.com", "in_band", True,
                                                                      "10.0.0.21")
    assert one.extra == {"notes": 'finance, 4th floor "east"', "wireless": True}
    assert (two.name, two.provisioning, two.canary, two.address, two.extra) == ("pc2.corp.example.com",
                                                                                 "out_of_band", True, None, {})


def test_a_header_only_file_is_an_empty_inventory(tmp_path):
    (tmp_path / "fleet.csv").write_text(HEADER)
    (tmp_path / "env.yaml").write_text(SITE + "clients:\n  - {source: 'csv:fleet.csv'}\n")
    assert load_environment(tmp_path / "env.yaml").clients == []


# --------------------------------------------------------------------------- ldap: sources

def ldap_env(tmp_path: Path, *, dns_port: int | None = None, extra: str = "", dc_address: str = "") -> Path:
    (tmp_path / "reader.secret").write_text("not-a-real-password\n")
    dns_line = f"dns: {{servers: [127.0.0.1], port: {dns_port}}}\n" if dns_port else ""
    address = f", address: {dc_address}" if dc_address else ""
    (tmp_path / "env.yaml").write_text(textwrap.dedent(f"""\
        {SITE.strip()}
        credentials:
          ldap: {{user: reader@corp.example.com, password: "file:reader.secret"}}
        {dns_line.strip()}
        timeouts: {{connect: 0.5, read: 1}}
        servers:
          - {{fqdn: dc01.corp.example.com, roles: [domain_controller]{address}}}
        clients:
          - {{fqdn: pc1.corp.example.com}}
          - {{source: "ldap:{OU}", canary: true}}
        """) + extra)
    return tmp_path / "env.yaml"


def test_the_directory_is_read_only_after_the_file_validated(tmp_path):
    asked = []
    env_file = ldap_env(tmp_path, extra="attestation_max_age_days: 0\n")
    got = load_problems(env_file, ldap_search=lambda *a, **k: asked.append(a) or [])
    assert got == [f"{env_file}:11: attestation_max_age_days: must be at least 1, found 0"]
    assert asked == []  # not one packet for a file with a mistake
    (tmp_path / "reader.secret").unlink()
    env_file.write_text(env_file.read_text().replace("attestation_max_age_days: 0\n", ""))
    got = load_problems(env_file, ldap_search=lambda *a, **k: asked.append(a) or [])
    assert got == [f"{env_file}:3: credentials.ldap.password: cannot read secret file {tmp_path}/reader.secret: "
                   "No such file or directory"]
    assert asked == []  # nor for a secret that is not there


def test_ldap_inventory_uses_the_domain_controllers(tmp_path):
    seen = {}

    def fake_search(dcs, credential, base, ldap_filter, *, ca_file, timeout):  # the loader only; the probe has its own
        seen.update(dcs=[d.name for d in dcs], base=base, user=credential.user, timeout=timeout, filter=ldap_filter)
        return [{"fqdn": "pc7.corp.example.com"}]

    env = envmod.load(ldap_env(tmp_path), ldap_search=fake_search)
    assert seen == {"dcs": ["dc01.corp.example.com"], "base": OU, "user": "reader@corp.example.com", "timeout": 0.5,
                    "filter": None}
    assert {c.name: c.canary for c in env.clients} == {"pc1.corp.example.com": False, "pc7.corp.example.com": True}
    assert env.inventory_problems == []


def test_a_directory_client_listed_inline_too_is_a_problem(tmp_path):
    env_file = ldap_env(tmp_path)
    got = load_problems(env_file, ldap_search=lambda *a, **k: [{"fqdn": "pc1.corp.example.com"}])
    assert got == [f"{env_file}:10: clients[1].source: client pc1.corp.example.com is listed twice "
                   f"(first at {env_file}:9)"]


def test_a_directory_that_refuses_is_a_problem_at_the_sources_line(tmp_path):
    def refusing(*_, **__):
        raise AuthFailed("dc01.corp.example.com:636", AuthFailed.BAD_PASSWORD, "data 52e")

    env_file = ldap_env(tmp_path)
    assert load_problems(env_file, ldap_search=refusing) == [
        f"{env_file}:10: clients[1].source: LDAP query of '{OU}' failed: LDAP bind to dc01.corp.example.com:636 "
        "failed: bad user name or password (data 52e)"]


def test_a_directory_that_does_not_answer_is_a_finding_and_the_run_goes_on(tmp_path):
    def failing(*_, **__):
        raise OSError(113, "No route to host")

    env = envmod.load(ldap_env(tmp_path), ldap_search=failing)
    assert [c.name for c in env.clients] == ["pc1.corp.example.com"]
    assert env.inventory_problems == [
        f"directory dc01.corp.example.com did not answer for ldap:{OU}: No route to host; the run goes on without "
        "the clients of this source"]


class EstateDns:
    """A DNS server on 127.0.0.1 (port 0) that knows dc01.corp.example.com (127.0.0.1) and records each question."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            self.asked.append(f"{question.name.to_text().rstrip('.')} {dns.rdatatype.to_text(question.rdtype)}")
            reply = dns.message.make_response(query)
            if question.name.to_text() != "dc01.corp.example.com.":
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.1"))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()


class SilentDirectory:
    """An 'LDAPS server' on 127.0.0.1 (port 0) that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def estate(monkeypatch):
    names = EstateDns()
    directory = SilentDirectory()
    monkeypatch.setattr(ldap_probe, "LDAPS_PORT", directory.port)  # dc01's "636"
    machine: list[str] = []
    real = socket.getaddrinfo

    def machine_resolver(host, *args, **kwargs):  # what this machine's resolver is asked (below the routing)
        machine.append(host.decode() if isinstance(host, bytes) else str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", machine_resolver)
    yield names, directory, machine
    names.close()
    directory.close()


def test_a_silent_directory_is_asked_through_the_estates_dns_and_gives_a_finding(tmp_path, estate):
    names, directory, machine = estate
    t0 = time.monotonic()
    env = load_environment(ldap_env(tmp_path, dns_port=names.port))  # the real search: ldap3, TLS, the routing
    assert time.monotonic() - t0 < 5
    assert names.asked == ["dc01.corp.example.com A"]  # the estate's DNS server, IPv4 only
    assert "dc01.corp.example.com" not in machine and "127.0.0.1" in machine  # the machine's resolver: not asked
    assert socket.getaddrinfo.__name__ == "machine_resolver"  # the routing is removed after the read
    assert len(directory.held) == 1  # it did connect, and heard nothing
    assert [c.name for c in env.clients] == ["pc1.corp.example.com"]  # the run goes on with the clients it has
    assert env.inventory_problems == [
        f"directory dc01.corp.example.com did not answer for ldap:{OU}: no answer from "
        f"dc01.corp.example.com:{directory.port} within 0.5 s; the run goes on without the clients of this source"]


def test_a_dc_name_the_estates_dns_does_not_know_gives_a_finding(tmp_path, estate):
    names, directory, machine = estate
    env_file = ldap_env(tmp_path, dns_port=names.port)
    env_file.write_text(env_file.read_text().replace("dc01.corp", "dc02.corp"))
    env = load_environment(env_file)
    assert names.asked == ["dc02.corp.example.com A"] and "dc02.corp.example.com" not in machine
    assert directory.held == []
    assert env.inventory_problems == [
        f"directory dc02.corp.example.com did not answer for ldap:{OU}: the estate's DNS (127.0.0.1) did not "
        "resolve dc02.corp.example.com: dc02.corp.example.com does not exist (NXDOMAIN from 127.0.0.1); the run "
        "goes on without the clients of this source"]


def test_a_dc_with_an_address_is_tried_there_when_its_name_does_not_resolve(tmp_path, estate):
    names, directory, machine = estate
    env_file = ldap_env(tmp_path, dns_port=names.port, dc_address="127.0.0.1")
    env_file.write_text(env_file.read_text().replace("dc01.corp", "dc02.corp"))
    env = load_environment(env_file)
    assert len(directory.held) == 1  # by address
    assert names.asked == ["dc02.corp.example.com A"] and "dc02.corp.example.com" not in machine  # asked once
    port = directory.port
    assert env.inventory_problems == [  # the probe's sentence, then what the estate's DNS said
        f"directory dc02.corp.example.com did not answer for ldap:{OU}: no LDAP server answered (dc02.corp.example.com "
        f"did not resolve (no address for the name); no answer from 127.0.0.1:{port} within 0.5 s) from "
        f"dc02.corp.example.com:{port}, 127.0.0.1:{port} (the estate's DNS (127.0.0.1) did not resolve "
        "dc02.corp.example.com: dc02.corp.example.com does not exist (NXDOMAIN from 127.0.0.1)); the run goes on "
        "without the clients of this source"]


# --------------------------------------------------------------------------- as a user sees it

def test_a_run_with_a_broken_inventory_or_an_unset_secret_stops_with_a_usage_error(pytester, monkeypatch):
    """`pytest --env NAME`: exit 4, every problem at its line, no INTERNALERROR or traceback, no report."""
    from tests.plugin.helpers import make_project

    make_project(pytester)
    monkeypatch.delenv("SAMPLE_AMT_PASSWORD", raising=False)
    env_dir = pytester.path / "environments"
    (env_dir / "clients.csv").write_text('fqdn,provisioning,canary\npc03.sample.test,"in_band,false\n'
                                         "pc04.sample.test;in_band;false\n")
    result = pytester.runpytest_subprocess("--env", "sample", "--no-html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "Traceback" not in err and "INTERNALERROR" not in err
    assert [line for line in err.splitlines() if line.startswith(str(env_dir))] == [
        f"{env_dir}/clients.csv:2: provisioning: a quote (\") opens this value and is not closed on the same line; "
        "close it, or remove it",
        f"{env_dir}/clients.csv:3: provisioning: missing: this row's values are separated by semicolons (;), not "
        "by commas like the header's",
        f"{env_dir}/sample.yaml:4: credentials.amt.password: environment variable SAMPLE_AMT_PASSWORD is not set; "
        "export SAMPLE_AMT_PASSWORD before the run"]
    assert not (pytester.path / "reports").exists() or not any((pytester.path / "reports").iterdir())


def test_a_loader_given_no_directory_reader_refuses_ldap_sources_at_their_line(tmp_path):
    env_file = ldap_env(tmp_path)
    assert load_problems(env_file) == [
        f"{env_file}:10: clients[1].source: this loader was given no directory reader for ldap: sources "
        "(a pytest-vpro run passes one: load(..., ldap_search=...))"]


def test_the_environment_module_imports_no_protocol():
    """The layers run plugin -> facts -> probes -> environment: the loader is handed the directory reader."""
    import ast
    tree = ast.parse(Path(envmod.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.startswith("probes") and m != "probes.errors"}, imported


def test_the_environment_modules_import_no_protocol_and_import_one_way():
    """The loader is five modules (environment.py's docstring): none imports a protocol, and each imports only
    those before it in that list (environment.py, the entry, all of them), so there is no cycle."""
    import ast
    order = ["environment_model", "environment_walk", "environment_inventory", "environment_schema", "environment"]
    folder = Path(envmod.__file__).parent
    assert sorted(p.stem for p in folder.glob("environment*.py")) == sorted(order)
    for i, name in enumerate(order):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level}
        assert not {m for m in imported if m.startswith("probes") and m != "probes.errors"}, (name, imported)
        assert not imported & set(order[i:]), (name, imported & set(order[i:]))
