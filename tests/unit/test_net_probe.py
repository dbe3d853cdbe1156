"""probes/net.py against real sockets.

- open / refused: a listening socket and a closed port on 127.94.2.1;
- filtered: a network namespace of our own (``ip netns add``) where 10.94.0.0/24 is routed to ``lo``; a SYN to
  10.94.0.2 is then dropped silently (not a local address, forwarding off), exactly what a firewall DROP rule
  does to the sender. No nft/iptables is needed and nothing outside the namespace changes;
- unreachable: in the same namespace 192.0.2.1 has no route (ENETUNREACH); a name the estate's DNS does not know;
- the estate DNS is a dnsmasq on 127.94.0.54.

The probe runs inside the namespace from a thread that joined it with setns(2): network namespaces are per
thread, and threads it starts (the probe_many pool) inherit it.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from pytest_vpro.probes.dns import NxDomain, Resolver, route_connections
from pytest_vpro.probes.errors import Unreachable
from pytest_vpro.probes.net import PortState, is_ipv4_only, probe_many, probe_tcp

HOST = "127.94.2.1"
DNSMASQ_ADDRESS = "127.94.0.54"
DROPPED = "10.94.0.2"
CLONE_NEWNET = 0x40000000


@pytest.fixture(scope="module")
def listener():
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(128)
        yield sock.getsockname()[1]


def _closed_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]  # closed on exit: nothing listens there now


def test_open(listener):
    state = probe_tcp(HOST, listener, 0.5)
    assert state.verdict == "open" and state.open and state.peer == HOST and 0 <= state.elapsed < 0.5
    assert state.require_open() is state
    assert str(state).startswith(f"{HOST}:{listener} open after ")


def test_refused():
    port = _closed_port(HOST)
    state = probe_tcp(HOST, port, 0.5)
    assert state.verdict == "refused" and state.detail == "Connection refused"
    with pytest.raises(Unreachable, match=f"connection refused from {HOST}:{port}"):
        state.require_open(0.5)


# --------------------------------------------------------------------------- a namespace that drops SYNs

@pytest.fixture(scope="module")
def netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"vprotest94-{os.getpid()}"
    try:
        for argv in (["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"],
                     ["ip", "-n", name, "route", "add", "10.94.0.0/24", "dev", "lo"]):
            subprocess.run(argv, check=True, capture_output=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def in_netns(name: str, fn, *args):
    """Run ``fn(*args)`` in a new thread that has joined network namespace ``name``; return its result."""
    result: dict = {}

    def run():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller)
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_filtered(netns):
    state: PortState = in_netns(netns, probe_tcp, DROPPED, 16993, 0.5)
    assert state.verdict == "filtered" and state.peer == DROPPED
    assert 0.45 <= state.elapsed < 1.5
    with pytest.raises(Unreachable, match=f"no answer from {DROPPED}:16993 within 0.5 s"):
        state.require_open(0.5)


def test_no_route_is_unreachable(netns):
    state = in_netns(netns, probe_tcp, "192.0.2.1", 16992, 0.5)
    assert state.verdict == "unreachable" and state.detail == "Network is unreachable"
    assert state.elapsed < 0.2


def test_probe_many_runs_concurrently_with_a_per_host_limit(netns, listener):
    timeout = 0.3
    # 8 different silent hosts: all at once, about one timeout in total
    started = time.monotonic()
    states = in_netns(netns, probe_many, [(f"10.94.0.{i}", 16992) for i in range(2, 10)], timeout, 64, 2)
    assert [s.verdict for s in states] == ["filtered"] * 8
    assert time.monotonic() - started < 2 * timeout
    # 8 ports of one silent host with per_host=2: four rounds
    started = time.monotonic()
    states = in_netns(netns, probe_many, [(DROPPED, port) for port in range(16990, 16998)], timeout, 64, 2)
    assert [s.port for s in states] == list(range(16990, 16998))
    assert 4 * timeout <= time.monotonic() - started < 6 * timeout


def test_probe_many_keeps_order_and_mixes_verdicts(listener):
    closed = _closed_port(HOST)
    targets = [(HOST, listener if i % 2 else closed) for i in range(200)]
    states = probe_many(targets, 0.5)
    assert [(s.host, s.port) for s in states] == targets
    assert [s.verdict for s in states] == ["refused", "open"] * 100
    assert probe_many([], 0.5) == []


# --------------------------------------------------------------------------- estate DNS (dnsmasq)

@pytest.fixture(scope="module")
def estate_dns():
    binary = shutil.which("dnsmasq") or pytest.skip("dnsmasq is not installed (Debian package dnsmasq)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((DNSMASQ_ADDRESS, 0))
        port = probe.getsockname()[1]
    argv = [binary, "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
            f"--listen-address={DNSMASQ_ADDRESS}", f"--port={port}", "--local=/estate.test/", "--pid-file",
            f"--host-record=v4.estate.test,{HOST}", f"--host-record=dual.estate.test,{HOST},fd00::94"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    resolver = Resolver([DNSMASQ_ADDRESS], port=port, timeout=0.5)
    try:
        for _ in range(50):
            try:
                resolver.forward("v4.estate.test")
                break
            except Exception:  # noqa: BLE001 (not up yet)
                if proc.poll() is not None:
                    pytest.fail(f"dnsmasq exited: {proc.stdout.read().decode()}")
                time.sleep(0.1)
        yield resolver
    finally:
        proc.terminate()
        proc.wait(5)


def test_is_ipv4_only(estate_dns):
    assert is_ipv4_only("v4.estate.test", estate_dns) is True
    assert is_ipv4_only("dual.estate.test", estate_dns) is False
    with pytest.raises(NxDomain):
        is_ipv4_only("nothere.estate.test", estate_dns)


def test_estate_names_through_routing(estate_dns, listener):
    with route_connections(estate_dns, ["estate.test"]):
        state = probe_tcp("v4.estate.test", listener, 0.5)
        assert state.verdict == "open" and state.peer == HOST and state.host == "v4.estate.test"
        missing = probe_tcp("nothere.estate.test", listener, 0.5)
    assert missing.verdict == "unreachable" and missing.peer is None
    assert missing.detail.startswith("name not resolved: ")
