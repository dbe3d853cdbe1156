"""The passive hello listener (probes/hello_listener.py) on golden packets: what it reports per client (UUID,
PKI/PSK, retry count, hashes), truncated and garbage packets, packets in pieces, the spool file xdist workers
follow, and the deadline a silent client is waited for.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest

from pytest_vpro.probes import hello_listener
from pytest_vpro.probes.errors import ProbeError
from pytest_vpro.probes.hello_listener import HelloCapture, SeenHello, parse_address

DEVICE = uuid.UUID("12345678-9abc-def0-1122-334455667788")
OTHER = uuid.UUID("87654321-0000-4000-8000-000000000001")
UUID_BYTES = bytes.fromhex("78563412" "bc9a" "f0de" "1122" "334455667788")
SHA256 = bytes(range(32))
SHA1 = bytes(range(100, 120))
# admin credentials set, version 3 (PKI), retry 5, the UUID, two hashes: SHA-256 and SHA-1
GOLDEN_PKI = (b"\x01\x00" b"\x03\x00" b"\x05\x00\x00\x00" + UUID_BYTES + b"\x02"
              + b"\x02\x20" + SHA256 + b"\x01\x14" + SHA1)
GOLDEN_PSK = b"\x00\x00" b"\x02\x00" b"\x0e\x00\x00\x00" + UUID_BYTES + b"PID-0042"


def test_golden_pki_summary():
    seen = SeenHello.decode("10.1.2.3", 1_700_000_000.0, GOLDEN_PKI)
    assert seen.summary() == {
        "from": "10.1.2.3", "received": "2023-11-14T22:13:20+00:00", "uuid": str(DEVICE), "mode": "PKI",
        "version": 3, "retry_count": 5, "admin_credentials_set": True,
        "hashes": [{"type": "SHA-256", "hash": SHA256.hex()}, {"type": "SHA-1", "hash": SHA1.hex()}]}


def test_golden_psk_summary():
    summary = SeenHello.decode("10.1.2.3", 0.0, GOLDEN_PSK).summary()
    assert (summary["mode"], summary["version"], summary["retry_count"], summary["pid"]) == \
        ("PSK", 2, 14, b"PID-0042".hex())
    assert "hashes" not in summary


@pytest.mark.parametrize("data, words", [
    (GOLDEN_PKI[:23], "shorter than the 24-byte header"),
    (GOLDEN_PKI[:-1], "truncated in hash 2 of 2"),
    (GOLDEN_PSK[:-3], "8-byte PID"),
    (b"GET / HTTP/1.1\r\nHost: pc0001\r\n\r\n", "admin-credentials"),
    (b"", "shorter"),
])
def test_truncated_and_garbage_packets_are_reported_not_raised(data, words):
    seen = SeenHello.decode("10.1.2.3", 0.0, data)
    assert seen.hello is None and words in seen.problem
    assert seen.summary()["malformed"] == seen.problem


@pytest.mark.parametrize("text, expected", [("127.77.0.14:9971", ("127.77.0.14", 9971)),
                                            ("console01.vprolab.test:19971", ("console01.vprolab.test", 19971))])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.77.0.14", ":9971", "127.77.0.14:0", "127.77.0.14:99999", "a:b", ""])
def test_parse_address_refuses_what_is_not_addr_port(text):
    with pytest.raises(ValueError, match="ADDR:PORT"):
        parse_address(text)


def _send(port: int, data: bytes, *, pieces: int = 1, source: str = "127.0.0.1") -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=3, source_address=(source, 0)) as s:
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            s.sendall(data[i:i + step])
            time.sleep(0.01)


@pytest.fixture
def capture(tmp_path):
    cap = HelloCapture("127.0.0.1", 0, wait_s=5, spool=tmp_path / "hellos.jsonl").start()
    yield cap
    cap.stop()


def test_listener_hears_a_hello_in_pieces_and_keeps_garbage_apart(capture):
    _send(capture.port, GOLDEN_PKI, pieces=7)
    _send(capture.port, b"\xff" * 10, source="127.0.0.2")
    found = capture.seen(str(DEVICE))
    assert len(found) == 1 and found[0].hello.retry_count == 5 and found[0].peer == "127.0.0.1"
    # the garbage sender is not a hello, whatever its address; it is kept as evidence, with what was wrong
    for _ in range(100):  # the listener reads it on a thread of its own: up to 2 s
        if capture.malformed("127.0.0.2"):
            break
        time.sleep(0.02)
    assert capture.seen(address="127.0.0.2", wait=False) == []
    (bad,) = capture.malformed("127.0.0.2")
    assert "shorter" in bad.problem
    assert [s.problem is not None for s in capture.all()].count(True) == 1


def test_a_silent_client_is_waited_for_until_the_deadline_only(capture):
    capture.started, capture.wait_s = time.time(), 0.5
    t0 = time.monotonic()
    assert capture.seen(str(OTHER), "127.9.9.9") == []
    assert 0.3 < time.monotonic() - t0 < 3
    t0 = time.monotonic()
    assert capture.seen(str(OTHER)) == [] and time.monotonic() - t0 < 0.2  # past the deadline: no more waiting


def test_a_hello_arriving_while_a_check_waits_ends_the_wait(capture):
    capture.started, capture.wait_s = time.time(), 10
    threading.Timer(0.3, _send, args=(capture.port, GOLDEN_PSK)).start()
    t0 = time.monotonic()
    (seen,) = capture.seen(str(DEVICE))
    assert seen.hello.mode == "PSK" and time.monotonic() - t0 < 5


def test_a_worker_follows_the_controllers_spool_file(capture, tmp_path):
    _send(capture.port, GOLDEN_PKI)
    assert capture.seen(str(DEVICE))
    worker = HelloCapture("127.0.0.1", capture.port, wait_s=1, spool=tmp_path / "hellos.jsonl", listen=False)
    (seen,) = worker.seen(str(DEVICE))
    assert seen.summary() == capture.seen(str(DEVICE))[0].summary()
    assert (worker.started, worker.wait_s) == (capture.started, capture.wait_s)  # from the header
    header = json.loads((tmp_path / "hellos.jsonl").read_text().splitlines()[0])
    assert header["listening"] == f"127.0.0.1:{capture.port}"
    _send(capture.port, GOLDEN_PSK, source="127.0.0.3")   # appended later: the worker reads on
    assert worker.seen(address="127.0.0.3")[0].hello.mode == "PSK"


def test_a_worker_without_the_controllers_file_says_so(tmp_path):
    worker = hello_listener.for_run("127.0.0.1:9", 1, listen=False)
    worker.set_spool(tmp_path / "none.jsonl")
    with pytest.raises(ProbeError, match="not running"):
        worker.seen(str(DEVICE))


def test_for_run_is_off_without_the_option_and_names_an_address_it_cannot_bind():
    assert hello_listener.for_run(None, 60, listen=True) is None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen for hellos on 127.0.0.1:{port}"):
            hello_listener.for_run(f"127.0.0.1:{port}", 60, listen=True)
