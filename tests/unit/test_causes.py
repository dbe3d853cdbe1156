"""Root causes (causes.py) and the probes' one vocabulary (probes/errors.py), function by function."""
from __future__ import annotations

import socket

import pytest
import requests
import urllib3

from pytest_vpro.causes import Cause, Causes
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
