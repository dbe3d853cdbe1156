"""The DHCP probe against the lab's real DHCP server (dnsmasq on loopback, net 93)."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.dhcp import DhcpServerError, LabDHCP
from pytest_vpro.probes import dhcp

PLAN = AddressPlan(93)
CLIENT = PLAN.client(0)
FQDN = "pc0001.vprolab.test"

@pytest.fixture(autouse=True, scope="module")
def _dnsmasq_installed():
    if shutil.which("dnsmasq") is None:  # scripts/setup installs it: a missing server is a failure, not a skip
        pytest.fail("dnsmasq is not installed (Debian package 'dnsmasq'; run scripts/setup)")


def _server(tmp_path, **faults) -> LabDHCP:
    return LabDHCP(tmp_path / "dhcp", address=PLAN.dhcp, network=PLAN.network,
                   dns_servers=[PLAN.dc], domain="vprolab.test", port=0, **faults)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    with _server(tmp_path_factory.mktemp("healthy")) as server:
        yield server


def _inform(server: LabDHCP, client: str = CLIENT, **kw) -> dhcp.DhcpReply:
    return dhcp.inform(server.address, port=server.port, client_address=client, timeout=2.0, **kw)


def test_healthy_server_hands_out_options_6_15_81(healthy):
    reply = _inform(healthy, fqdn=FQDN)
    assert reply.message_type == dhcp.DHCPACK
    assert reply.ciaddr == CLIENT and reply.yiaddr == "0.0.0.0"  # DHCPINFORM: no lease (RFC 2131 §3.4)
    assert reply.dns_servers == [PLAN.dc]
    assert reply.domain_name == "vprolab.test"
    fqdn = reply.client_fqdn
    assert fqdn is not None and fqdn.name == FQDN
    assert fqdn.server_updates_a and not fqdn.no_updates  # S=1, N=0: the server registers the name
    assert (fqdn.rcode1, fqdn.rcode2) == (255, 255)        # RFC 4702 §2.2: servers send 255


def test_clients_without_fqdn_get_no_option_81(healthy):
    reply = _inform(healthy, client=PLAN.client(1))
    assert reply.client_fqdn is None and reply.domain_name == "vprolab.test"


def test_client_asking_to_update_itself_is_overridden(healthy):
    """A client with S=0 is told the server does the update anyway (S and O set)."""
    reply = _inform(healthy, fqdn=FQDN, fqdn_flags=dhcp.FQDN_E)
    assert reply.client_fqdn.server_updates_a and reply.client_fqdn.overridden


def test_many_clients_in_a_row_are_fast(healthy):
    started = time.monotonic()
    for i in range(50):
        assert _inform(healthy, client=PLAN.client(i), fqdn=f"pc{i + 1:04d}.vprolab.test").dns_servers
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("faults, seen", [
    (dict(option6=False), lambda r: r.dns_servers == [] and r.domain_name == "vprolab.test"),
    (dict(option15=False), lambda r: r.domain_name is None and r.dns_servers == [PLAN.dc]),
    (dict(option81="no-updates"),
     lambda r: r.client_fqdn.no_updates and not r.client_fqdn.server_updates_a and r.domain_name),
])
def test_fault_knobs_are_seen_by_the_probe(tmp_path, faults, seen):
    with _server(tmp_path, **faults) as server:
        assert seen(_inform(server, fqdn=FQDN))


def test_no_server_means_no_answer_within_timeout(tmp_path):
    from pytest_vpro.lab.dhcp import free_udp_port
    started = time.monotonic()
    with pytest.raises(dhcp.DhcpNoAnswer):
        dhcp.inform(PLAN.dhcp, port=free_udp_port(), client_address=CLIENT, timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_stop_leaves_no_process_and_config_is_kept(tmp_path):
    server = _server(tmp_path).start()
    pid = server.pid
    assert server.running and os.path.exists(f"/proc/{pid}")
    server.stop()
    assert not server.running and not os.path.exists(f"/proc/{pid}")
    assert "dhcp-option=option:dns-server," + PLAN.dc in server.conf_path.read_text()
    server.stop()  # idempotent


def test_bad_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        _server(tmp_path, option81="sometimes")
    with pytest.raises(DhcpServerError):
        LabDHCP(tmp_path, address=PLAN.dhcp, network=PLAN.network, dns_servers=[PLAN.dc],
                binary="no-such-dnsmasq").start()
