"""probes.httpclient: device traffic goes straight to the host; CRL/AIA downloads follow the proxy settings read once.

Real HTTP servers on loopback port 0: one plays the target, one a proxy (it answers any absolute-URI GET).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

import pytest
from loopback_http import QuietHandler, serving

from pytest_vpro.probes import httpclient, x509


class _Handler(QuietHandler):
    def do_GET(self):
        self.server.paths.append(self.path)
        self.reply(self.server.body)


@pytest.fixture
def serve():
    with contextlib.ExitStack() as stack:

        def start(body: bytes):
            server = stack.enter_context(serving(_Handler))
            server.paths, server.body = [], body
            return server

        yield start


def _url(server, path: str = "/") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_direct_session_ignores_the_environment_proxy(serve, monkeypatch):
    target, proxy = serve(b"target"), serve(b"proxy")
    monkeypatch.setenv("http_proxy", _url(proxy))
    monkeypatch.delenv("no_proxy", raising=False)
    with httpclient.direct() as session:
        assert session.get(_url(target, "/wsman"), timeout=5).content == b"target"
    assert proxy.paths == [] and target.paths == ["/wsman"]


def test_a_download_goes_through_the_proxy_read_at_import(serve, monkeypatch):
    proxy = serve(b"crl bytes")
    monkeypatch.setattr(httpclient, "PROXIES", {"http": _url(proxy)})
    assert x509.download("http://crl.example.invalid/ca.crl", timeout=5) == b"crl bytes"
    assert proxy.paths == ["http://crl.example.invalid/ca.crl"]  # an absolute URI: a proxy request


@pytest.mark.parametrize("no_proxy, bypass", [("", False), ("example.invalid", True), (".example.invalid", True),
                                              ("other.invalid", False), ("*", True)])
def test_no_proxy_exempts_hosts(no_proxy, bypass):
    proxies = {"http": "http://proxy.invalid:3128"} | ({"no": no_proxy} if no_proxy else {})
    got = httpclient.proxies_for("http://crl.example.invalid/ca.crl", proxies)
    assert got == ({} if bypass else {"http": "http://proxy.invalid:3128"})


def test_requests_in_threads_survive_pytest_changing_the_environment(serve):
    """The bug this module fixes: pytest sets and removes PYTEST_CURRENT_TEST while prefetch threads request."""
    target = serve(b"ok")
    errors: list[BaseException] = []
    stop = threading.Event()

    def requester():
        with httpclient.direct() as session:
            while not stop.is_set():
                try:
                    session.get(_url(target), timeout=5)
                except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=requester) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows within a second
    try:
        for t in threads:
            t.start()
        for i in range(20000):
            os.environ[f"VPRO_CHURN_{i % 7}"] = "x"
            del os.environ[f"VPRO_CHURN_{i % 7}"]
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        for t in threads:
            t.join(10)
    assert errors == []
