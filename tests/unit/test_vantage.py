"""Vantage points (pytest_vpro/facts/vantage.py): a server with ``testinfra:`` probes the ports itself; a winrm://
backend cannot run testinfra's Addr, so the check says it cannot decide there and takes this machine's view; a
URL's password is a reference, never shown, and one written in clear is refused."""
from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_network import Network

from pytest_vpro.checks import Evidence, Finding
from pytest_vpro.environment import DEFAULT_EXPECTED
from pytest_vpro.facts.vantage import (
    VantageFacet,
    VantagePort,
    VantageUndecided,
    _bounded_addr,
    backend_url,
    display_url,
)
from pytest_vpro.probes.errors import ProbeError
from pytest_vpro.probes.net import PortState
from pytest_vpro.secrets import MASK, redact
from suites.stage1 import test_dns_and_network as network_checks

CLIENT = "192.0.2.10"
TIMEOUTS = {"connect": 1.0, "read": 2.0}
ENV = SimpleNamespace(expected={"ports": DEFAULT_EXPECTED["ports"]})


class Estate:
    """The core's ``get`` without its cache (each fact fetched where asked); no snapshot replayed."""

    replay = None

    def has(self, name):
        return False

    def get(self, name, fetch):
        return fetch()


def vantage_facts(url: str, role: str = "oob_console") -> SimpleNamespace:
    server = SimpleNamespace(name="admin01.corp.example.com", roles=(role,), testinfra=url)
    env = SimpleNamespace(servers_with=lambda r: [server] if r == role else [], timeouts=TIMEOUTS,
                          file=Path("/nonexistent/environment.yaml"))
    facts = SimpleNamespace(env=env, estate=Estate())
    facts.vantage = VantageFacet(facts)
    return facts


def test_a_winrm_backend_cannot_decide_and_sends_nothing():
    facts = vantage_facts("winrm://admin:env:VPRO_ADMIN01_PASSWORD@admin01.corp.example.com?no_ssl=true")
    server = facts.vantage.points("oob_console")[0]
    with pytest.raises(VantageUndecided, match=r"cannot decide from admin01 \(testinfra winrm://admin:env:"
                                               r"VPRO_ADMIN01_PASSWORD@admin01.corp.example.com\?no_ssl=true\): "
                                               r"testinfra's addr module runs POSIX commands"):
        facts.vantage.ports(server, CLIENT, [16993])  # VPRO_ADMIN01_PASSWORD unset: nothing was resolved either


def test_the_console_check_falls_back_to_this_machine_saying_why():
    facts = vantage_facts("winrm://admin01.corp.example.com")
    facts.network, facts.dns = Network({16993: "filtered"}), SimpleNamespace(address=lambda: CLIENT)
    facts.amt = SimpleNamespace(redirection=lambda: SimpleNamespace(listener_enabled=True))
    with pytest.raises(Finding) as caught:
        network_checks.test_console_reaches_amt_ports(SimpleNamespace(name="pc01.corp.example.com"), ENV, facts,
                                                      Evidence())
    found = caught.value.found
    assert "192.0.2.10:16993 filtered" in found
    assert found.endswith("probed from this machine (198.51.100.7); cannot decide from admin01 (testinfra "
                          "winrm://admin01.corp.example.com): testinfra's addr module runs POSIX commands (getent, "
                          "nc), which a winrm:// backend does not run")


def test_a_winrm_console_never_fails_a_client_the_test_machine_reaches():
    facts = vantage_facts("winrm://admin01.corp.example.com")
    facts.network, facts.dns = Network({}), SimpleNamespace(address=lambda: CLIENT)
    facts.amt = SimpleNamespace(redirection=lambda: SimpleNamespace(listener_enabled=True))
    evidence = Evidence()
    network_checks.test_console_reaches_amt_ports(SimpleNamespace(name="pc01.corp.example.com"), ENV, facts,
                                                  evidence)


@pytest.fixture
def listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
        try:
            yield s.getsockname()[1], closed.getsockname()[1]
        finally:
            closed.close()


def test_a_local_backend_probes_for_real_within_its_deadline(listening):
    open_port, closed_port = listening
    facts = vantage_facts("local://")
    server = facts.vantage.points("oob_console")[0]
    seen = facts.vantage.ports(server, "127.0.0.1", [open_port, closed_port])
    assert [s.reachable for s in seen] == [True, False]
    assert all(s.elapsed < TIMEOUTS["read"] + 2 for s in seen)
    assert facts.vantage.name(server) == "admin01 (testinfra local://)"


def test_the_console_check_names_the_vantage_point_and_this_machines_view(monkeypatch):
    facts = vantage_facts("local://")
    facts.network, facts.dns = Network({16993: "filtered"}), SimpleNamespace(address=lambda: CLIENT)
    facts.amt = SimpleNamespace(redirection=lambda: SimpleNamespace(listener_enabled=True))
    monkeypatch.setattr(VantageFacet, "ports", lambda self, server, host, ports: [
        VantagePort(host, p, p != 16993, 0.002) for p in ports])
    with pytest.raises(Finding) as caught:
        network_checks.test_console_reaches_amt_ports(SimpleNamespace(name="pc01.corp.example.com"), ENV, facts,
                                                      Evidence())
    assert caught.value.found == (
        "from admin01 (testinfra local://): 16993 on pc01.corp.example.com (192.0.2.10) not reachable (refused or "
        f"filtered: nc -z does not tell which) after 2 ms (this machine: {PortState(CLIENT, 16993, 'filtered', 0.005, CLIENT)})")


def test_a_port_that_may_be_refused_passes_when_this_machine_sees_it_refused(monkeypatch):
    facts = vantage_facts("local://")
    facts.network, facts.dns = Network({16994: "refused"}), SimpleNamespace(address=lambda: CLIENT)
    facts.amt = SimpleNamespace(redirection=lambda: SimpleNamespace(listener_enabled=True))
    monkeypatch.setattr(VantageFacet, "ports", lambda self, server, host, ports: [
        VantagePort(host, p, p != 16994, 0.002) for p in ports])
    network_checks.test_console_reaches_amt_ports(SimpleNamespace(name="pc01.corp.example.com"), ENV, facts,
                                                  Evidence())


def test_a_password_reference_is_shown_as_written_and_resolved_only_for_the_backend(monkeypatch):
    monkeypatch.setenv("VPRO_TEST_VANTAGE_PW", "s3cr3t/p@ss:word")
    url = "paramiko://admin:env:VPRO_TEST_VANTAGE_PW@admin01.corp.example.com:2222?timeout=5"
    assert display_url(url) == url
    real = backend_url(url)
    assert real == "paramiko://admin:s3cr3t%2Fp%40ss%3Aword@admin01.corp.example.com:2222?timeout=5"
    assert "s3cr3t" not in redact(f"backend failed for {real.replace('%2F', '/').replace('%40', '@').replace('%3A', ':')}")


def test_a_password_in_clear_is_masked_and_refused():
    url = "winrm://admin:Pl41nText!@admin01.corp.example.com?no_ssl=true&password=Other.Secret"
    shown = display_url(url)
    assert "Pl41nText" not in shown and "Other.Secret" not in shown
    assert shown == f"winrm://admin:{MASK}@admin01.corp.example.com?no_ssl=true&password={MASK}"
    with pytest.raises(VantageUndecided) as caught:
        backend_url(url)
    assert "Pl41nText" not in str(caught.value) and "holds its password in clear" in str(caught.value)
    assert redact("login Pl41nText! / Other.Secret") == f"login {MASK} / {MASK}"  # registered: no log shows it either


def test_a_file_reference_resolves_relative_to_the_environment_file(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "admin01.secret").write_text("from-a-file\n")
    url = "ssh://admin:file:secrets%2Fadmin01.secret@admin01.corp.example.com"
    assert backend_url(url, tmp_path) == "ssh://admin:from-a-file@admin01.corp.example.com"
    assert display_url(url) == url


def test_an_unset_reference_is_a_probe_error_naming_the_reference_not_a_value():
    facts = vantage_facts("ssh://admin:env:VPRO_TEST_VANTAGE_UNSET@127.0.0.1")
    server = facts.vantage.points("oob_console")[0]
    with pytest.raises(Exception, match="VPRO_TEST_VANTAGE_UNSET is not set") as caught:
        facts.vantage.ports(server, CLIENT, [16993])
    assert isinstance(caught.value, ProbeError)


def test_every_command_testinfras_addr_runs_has_a_deadline():
    ran = []

    class Host:
        """A testinfra host that has nc and records what it is asked to run."""

        def exists(self, command):
            return True

        def run(self, command, *args):
            ran.append(command % args if args else command)
            return SimpleNamespace(rc=0, stdout="127.0.0.1 STREAM localhost\n")

        run_expect = lambda self, expected, command, *args: self.run(command, *args)  # noqa: E731

    addr = _bounded_addr(Host(), 3)
    assert addr("192.0.2.10").port(16993).is_reachable
    assert addr("pc01.corp.example.com").is_resolvable
    assert ran == ["timeout 3 nc -w 1 -z 192.0.2.10 16993", "timeout 3 getent ahosts pc01.corp.example.com"]
