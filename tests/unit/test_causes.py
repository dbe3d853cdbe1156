"""Root causes (causes.py) and the probes' one vocabulary (probes/errors.py), function by function."""
from __future__ import annotations

import socket
import time

import pytest
import requests
import urllib3

from pytest_vpro import causes as causes_mod
from pytest_vpro import snapshot
from pytest_vpro.causes import Cause, Causes
from pytest_vpro.environment import Client
from pytest_vpro.lab.firewall import DroppingFirewall
from pytest_vpro.probes import errors, wsman
from pytest_vpro.probes.errors import Unreachable, what_happened

DNS = Cause("dns", "DNS server 10.0.0.53 not answering", "10.0.0.53:53", "Bring DNS back.", ("10.0.0.53",))
SITE = Cause("site_server", "site server sccm01.corp.example not answering", "sccm01.corp.example:5986",
             "Start the site server.", ("sccm01.corp.example", "10.0.0.11"))


def test_a_name_that_did_not_resolve_while_dns_is_down_is_the_dns_cause():
    causes = Causes([DNS, SITE])
    assert causes.of(Unreachable("pc01.corp.example", 16993, 3, "did not resolve")) is DNS
    assert causes.of(Unreachable("10.0.0.53", 53, 3)) is DNS


def test_an_unanswered_exchange_with_a_dead_service_is_its_cause_and_others_are_not():
    causes = Causes([SITE])
    assert causes.of(Unreachable("sccm01.corp.example", 5986, 3)) is SITE
    assert causes.of(Unreachable("SCCM01.corp.example:5986, dc01:636", None, 3, "no LDAP server answered (x)")) is SITE
    assert causes.of(Unreachable("pc01.corp.example", 16993, 3)) is None
    assert causes.of(Unreachable("pc01.corp.example", 16993, 3, "did not resolve")) is None  # DNS answers
    assert causes.of(errors.MalformedReply("sccm01.corp.example answered garbage")) is None  # it answered


def test_the_record_reads_back_from_the_run_folder_as_written(tmp_path):
    Causes([DNS, SITE]).write(tmp_path)
    back = Causes.read(tmp_path)
    assert list(back) == [DNS, SITE] and back.of(Unreachable("10.0.0.11", 5986, 3)) == SITE
    assert list(Causes.read(tmp_path / "missing")) == []


@pytest.mark.parametrize("how, text", [
    ("no answer", "no answer from h:1 within 3 s"),
    ("timed out", "no answer from h:1 within 3 s"),
    ("refused the connection", "connection refused from h:1"),
    ("the name does not resolve", "h did not resolve (no address for the name)"),
    ("invalid server address", "h did not resolve (no address for the name)"),
    ("the connection was reset", "h:1 closed the connection"),
    ("connection lost (socket receive error)", "h:1 closed the connection"),
    ("unreachable (HTTPSConnectionPool(host='h', port=1): Max retries exceeded)", "could not connect from h:1"),
])
def test_every_probe_says_what_the_target_did_in_one_vocabulary(how, text):
    assert str(Unreachable("h", 1, 3, how)) == text
    assert str(wsman.Unreachable("h", 1, 3, how)) == text  # WS-MAN's own class reads the same


def test_the_classifier_reads_the_exception_chain_not_the_repr():
    conn = urllib3.connection.HTTPSConnection("h", 5986)
    resolve = requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(
        None, "/wsman", urllib3.exceptions.NameResolutionError("h", conn, socket.gaierror(-2, "Name unknown"))))
    assert what_happened(resolve) == "did not resolve"
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise requests.exceptions.ConnectionError("HTTPSConnectionPool(...)") from inner
    except requests.exceptions.ConnectionError as exc:
        assert what_happened(exc) == "connection refused"
    assert what_happened(ConnectionResetError(104, "reset by peer")) == "closed the connection"
    assert what_happened(socket.timeout("timed out")) == "no answer"


def test_a_finding_that_a_dead_services_host_was_silent_follows_from_it():
    causes = Causes([SITE])
    assert causes.of_finding("sccm01.corp.example: 10.0.0.11:9971 filtered after 3000 ms") is SITE
    assert causes.of_finding("10.0.0.111:9971 filtered after 3000 ms") is None  # another host
    assert causes.of_finding("sccm01.corp.example lacks Enroll on IntelAMTWebServer") is None  # it answered


def test_while_dns_is_down_an_exchange_with_a_name_follows_from_it_however_it_ended():
    causes = Causes([DNS])
    cut = errors.too_late("dc01.corp.example", 636, 13)
    assert causes.of(cut) is DNS  # the resolution outlasted the exchange's deadline
    assert causes.of(Unreachable("10.0.0.20", 16993, 3)) is None  # an address needs no DNS


# ------------------------------------------------------------------ client ranges (issue 18: one subnet dropped)
def _client(n: int, address: str | None) -> Client:
    return Client(kind="client", name=f"pc{n:02d}.corp.example", address=address)


def test_clients_are_grouped_by_the_24_of_their_address_and_sampled_across_it():
    clients = [_client(i, f"10.1.{1 + i // 10}.{i % 10 + 1}") for i in range(25)] + [_client(99, None)]
    ranges = causes_mod.client_ranges(clients)
    assert {k: len(v) for k, v in ranges.items()} == {"10.1.1.0/24": 10, "10.1.2.0/24": 10, "10.1.3.0/24": 5}
    picked = causes_mod.sample(ranges["10.1.1.0/24"])
    assert [c.address for c in picked] == ["10.1.1.1", "10.1.1.5", "10.1.1.10"]  # first, middle, last
    assert causes_mod.sample(ranges["10.1.1.0/24"][:2]) == ranges["10.1.1.0/24"][:2]


def test_a_range_whose_sampled_clients_do_not_answer_is_a_cause_and_a_refusal_is_an_answer():
    # Real sockets on loopback: 127.96.250.x drops every SYN (the lab's dropping firewall), 127.96.1.1 listens,
    # 127.96.2.x refuses (nothing listens: the path works), 127.96.3.1 is alone on its range.
    with socket.socket() as server:
        server.bind(("127.96.1.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        wall = DroppingFirewall([(f"127.96.250.{i}", port) for i in (1, 2, 3)]).start()
        try:
            clients = ([_client(i, f"127.96.250.{i}") for i in (1, 2, 3)] + [_client(4, "127.96.1.1"),
                       _client(5, "127.96.1.2")] + [_client(6, "127.96.2.1"), _client(7, "127.96.2.2")]
                       + [_client(8, "127.96.3.1")])
            ranges = causes_mod.client_ranges(clients)
            started = time.monotonic()
            dead = causes_mod.survey_ranges(ranges, port, 0.5)
            wall_s = time.monotonic() - started
        finally:
            wall.stop()
    assert list(dead) == ["127.96.250.0/24"], dead  # 127.96.1.0/24: one answered; .2: refused; .3: one client
    assert all("no answer from 127.96.250." in what for what in dead["127.96.250.0/24"])
    assert wall_s < 1.5, wall_s  # concurrently: one connect timeout, not one per client
    cause = causes_mod._range_cause("127.96.250.0/24", ranges["127.96.250.0/24"], port, dead["127.96.250.0/24"])
    assert cause.what == "network path to 127.96.250.0/24 (3 clients) not answering"
    assert "router, VLAN or firewall between this machine and 127.96.250.0/24" in cause.action


def test_the_range_survey_ends_at_its_one_deadline_whatever_the_fleet(monkeypatch):
    asked = []

    def silent(address, port, timeout):
        asked.append(address)
        time.sleep(timeout)
        return "no answer"
    monkeypatch.setattr(causes_mod, "_answered", silent)
    clients = [_client(i, f"10.{i // 250 // 250}.{i // 250 % 250}.{i % 250 + 1}") for i in range(50_000)]
    ranges = causes_mod.client_ranges(clients)
    started = time.monotonic()
    dead = causes_mod.survey_ranges(ranges, 16993, 0.2)
    took = time.monotonic() - started
    assert len(ranges) == 200 and len(asked) <= 600
    assert took < causes_mod.BUDGET_TIMEOUTS * 0.2 + 0.3, took  # one deadline for the whole range survey
    assert len(dead) < len(ranges)  # the ranges not fully asked in time are not causes: not known


def test_an_unanswered_exchange_with_a_client_of_a_dead_range_follows_from_it():
    rng = Cause("client_subnet", "network path to 10.1.9.0/24 (2 clients) not answering", "10.1.9.0/24",
                "Check the router.", ("pc01.corp.example", "10.1.9.1", "pc02.corp.example", "10.1.9.2"),
                network="10.1.9.0/24")
    causes = Causes([rng])
    assert causes.of(Unreachable("pc01.corp.example", 16993, 3)) is rng
    assert causes.of(Unreachable("10.1.9.77", 16992, 3)) is rng  # an address of the range the survey did not list
    assert causes.of(Unreachable("pc03.corp.example", 16993, 3)) is None  # another range's client
    assert causes.of_finding("pc02.corp.example:16993 filtered after 3000 ms") is rng
    assert Causes.from_json(Causes([rng]).to_json()).causes == (rng,)
    assert Causes.from_json([{**rng.to_json(), "later": 1}]).causes == (rng,)  # a newer record's extra field


def test_a_snapshot_carries_the_survey_and_one_without_it_still_reads(tmp_path):
    (tmp_path / "facts-part-1.jsonl").write_text('{"name": "x", "target": "site:s", "value": 1}\n')
    snapshot.merge(tmp_path, tmp_path / "with.jsonl", environment="lab", causes=Causes([DNS]).to_json())
    snapshot.merge(tmp_path, tmp_path / "without.jsonl", environment="lab")
    assert Causes.from_json(snapshot.Replay(tmp_path / "with.jsonl").header.get("causes")).causes == (DNS,)
    header = snapshot.Replay(tmp_path / "without.jsonl").header
    assert header["version"] == 1 and "causes" not in header and not Causes.from_json(header.get("causes"))
