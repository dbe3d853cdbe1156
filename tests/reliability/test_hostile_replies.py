"""Issue 8, item 2: malformed and hostile WS-MAN replies are findings, in bounded time and memory, never a crash.

Each case points the real WS-MAN client (``probes/wsman.py``, what ``facts.amt`` uses) at a hostile listener on
127.112.x.x (``hostile.py``) and asks for one instance. Log files (binary, UTF-16, a gigabyte streamed), DHCP and
hello garbage are in ``test_fuzz.py``; LDAP, DNS and CRL faults run against the lab in ``tests/lab`` and
``tests/unit/test_dns_probe.py`` / ``test_ldap_probe.py`` / ``test_x509.py``.
"""
from __future__ import annotations

import threading
import time
import tracemalloc

import pytest
from hostile import Hostile

from pytest_vpro.probes import errors, wsman

TIMEOUT = 0.5


def client(url: str, **kw) -> wsman.WsmanClient:
    return wsman.WsmanClient(url, auth=wsman.DigestAuth("admin", "Hostile-Pass-1"), ca_bundle=None,
                             timeout=TIMEOUT, **kw)


def attempt(url: str, budget: float, **kw):
    """``get`` in a thread so that a hang fails this test instead of hanging the suite; (error, seconds, peak)."""
    out: dict = {}

    def go():
        tracemalloc.start()
        t0 = time.monotonic()
        try:
            client(url, **kw).get(wsman.resource_uri("AMT_GeneralSettings"))
            out["error"] = None
        except BaseException as exc:  # noqa: BLE001 - what the check code would see
            out["error"] = exc
        out["seconds"] = time.monotonic() - t0
        out["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(budget)
    assert not t.is_alive(), f"the client still waits after {budget} s: no bound on a hostile reply"
    return out["error"], out["seconds"], out["peak"]


CASES = [
    # mode, expected error class, words in the message, time budget (s)
    ("silent", wsman.Unreachable, "no answer from", 3 * TIMEOUT),
    ("slow", wsman.Unreachable, "no complete answer", 4 * TIMEOUT),
    ("slow_headers", wsman.Unreachable, "no complete answer", 4 * TIMEOUT),
    ("reset", wsman.Unreachable, "closed the connection", 2.0),
    ("truncated", wsman.Unreachable, "", 3 * TIMEOUT),
    ("not_xml", wsman.MalformedReply, "not XML", 2.0),
    ("entity_bomb", wsman.MalformedReply, "safe XML parser", 2.0),
    ("external", wsman.MalformedReply, "safe XML parser", 2.0),
    ("wrong_type", wsman.MalformedReply, "text/html", 2.0),
    ("http500", wsman.HttpStatusError, "HTTP 500", 2.0),
    ("soap_fault", wsman.SoapFault, "AccessDenied", 2.0),
    ("digest_loop", wsman.AuthFailed, "refused", 2.0),
]


@pytest.mark.parametrize("mode, error, words, budget", CASES, ids=[c[0] for c in CASES])
def test_hostile_reply_is_a_finding(mode, error, words, budget):
    with Hostile(mode, drip=TIMEOUT * 0.6) as server:
        exc, seconds, _ = attempt(server.url, budget + 1)
    assert isinstance(exc, error), f"{mode}: {type(exc).__name__}: {exc}"
    assert isinstance(exc, errors.ProbeError)  # the plugin reports a ProbeError as a finding on the target
    assert words in str(exc)
    assert seconds <= budget, f"{mode}: {seconds:.2f} s > {budget} s"
    assert "Hostile-Pass-1" not in str(exc)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_fifty_megabytes_are_refused_with_bounded_memory(chunked):
    with Hostile("huge", chunked=chunked) as server:
        exc, seconds, peak = attempt(server.url, 10)
    assert isinstance(exc, wsman.MalformedReply) and "byte limit" in str(exc), exc
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while refusing a 50 MB reply"
    assert seconds < 5


def test_digest_loop_is_not_followed_forever():
    with Hostile("digest_loop") as server:
        exc, _, _ = attempt(server.url, 3)
        assert isinstance(exc, wsman.AuthFailed)
        assert len(server.requests) <= 3, f"{len(server.requests)} requests to a server that loops on 401"
        assert not any(b"Hostile-Pass-1" in r for r in server.requests)  # Digest never sends the password


def test_the_sample_reply_parses():  # the control: the same listener with a good reply gives an instance
    with Hostile("ok") as server:
        got = client(server.url).get(wsman.resource_uri("AMT_GeneralSettings"))
    assert got["HostName"] == "pc"
