"""Issue 14, item 3: no credential leaves for another host. Device, server and directory HTTP never follows a
redirect; a redirect is a finding naming where it pointed.

The case that found it: a device behind a verified certificate answered 307 to a plain-HTTP address on another
host, which challenged with Digest; the WS-MAN client followed and answered with the AMT admin account (a
response an attacker can crack offline) and took that host's reply as the device's. Here the other host is a real
listener that records every request: it must receive none, and no Authorization header may appear anywhere but
on the device's own connection.
"""
from __future__ import annotations

import time

import pytest
import requests
from servers import Server, http_head, read_http_request, tls

from pytest_vpro.probes import errors, webui, winrm, wsman, x509

PASSWORD = "Amt-Admin-Pw-9"
BODY = (b'<?xml version="1.0"?><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope"><a:Body>'
        b'<g:AMT_GeneralSettings xmlns:g="http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings">'
        b'<g:HostName>attacker</g:HostName></g:AMT_GeneralSettings></a:Body></a:Envelope>')


def _attacker(conn, server):
    """Another host: challenges with Digest, and answers an authenticated request with its own 'device'."""
    while True:
        head = read_http_request(conn, server)
        if b"authorization:" in head.lower():
            conn.sendall(http_head("200 OK", {"Content-Type": "application/soap+xml"}, length=len(BODY)) + BODY)
        else:
            conn.sendall(http_head("401 Unauthorized", {
                "WWW-Authenticate": 'Digest realm="Digest:0123456789ABCDEF0123456789ABCDEF", nonce="abc", qop="auth"'},
                length=0))


def _redirecting_device(location: str, status: str = "307 Temporary Redirect"):
    def device(conn, server):
        while True:
            read_http_request(conn, server)
            conn.sendall(http_head(status, {"Location": location}, length=0))
    return device


@pytest.mark.parametrize("status", ["307 Temporary Redirect", "302 Found", "308 Permanent Redirect"])
def test_a_device_redirecting_to_another_host_gets_no_credential(tmp_path, status):
    device_host = "127.112.60.1"
    ctx, ca = tls(tmp_path, device_host)
    with Server(_attacker, host="127.112.60.2") as attacker:
        elsewhere = f"http://{attacker.host}:{attacker.port}/wsman"
        with Server(_redirecting_device(elsewhere, status), host=device_host, tls=ctx) as device:
            client = wsman.WsmanClient(f"https://{device_host}:{device.port}/wsman",
                                       auth=wsman.DigestAuth("admin", PASSWORD), ca_bundle=ca, timeout=2)
            t0 = time.monotonic()
            with pytest.raises(wsman.Redirected) as caught:
                client.get(wsman.resource_uri("AMT_GeneralSettings"))
            seconds = time.monotonic() - t0
            client.close()
    assert isinstance(caught.value, errors.ProbeError)
    assert elsewhere in str(caught.value) and "not followed" in str(caught.value)
    assert attacker.connections == 0 and attacker.received == []  # nothing at all went to the other host
    assert all(b"authorization" not in r.lower() for r in device.received)  # not even to the device, unasked
    assert PASSWORD not in str(caught.value) and seconds < 3


def test_the_device_still_answers_its_own_digest_challenge(tmp_path):
    """The control: Digest to the device itself (401, then the answer) works as before."""
    host = "127.112.60.3"
    ctx, ca = tls(tmp_path, host)
    with Server(_attacker, host=host, tls=ctx) as device:  # the same challenge, on the device's own address
        client = wsman.WsmanClient(f"https://{host}:{device.port}/wsman", auth=wsman.DigestAuth("admin", PASSWORD),
                                   ca_bundle=ca, timeout=2)
        got = client.get(wsman.resource_uri("AMT_GeneralSettings"))
        client.close()
    assert got["HostName"] == "attacker"  # the device's own reply (the handler plays the device here)
    assert sum(b"authorization: digest" in r.lower() for r in device.received) == 1
    assert all(PASSWORD.encode() not in r for r in device.received)  # Digest never sends the password itself


class _Token(requests.auth.AuthBase):
    """Stands for the console user's Negotiate header (a Kerberos ticket an attacker could replay)."""

    def __call__(self, r):
        r.headers["Authorization"] = "Negotiate c2VjcmV0LXRpY2tldA=="
        return r


def test_a_webui_redirect_is_a_finding_and_the_ticket_stays_with_the_device(tmp_path):
    host = "127.112.60.4"
    ctx, ca = tls(tmp_path, host)
    with Server(_attacker, host="127.112.60.5") as attacker:
        elsewhere = f"http://{attacker.host}:{attacker.port}/logon.htm"
        with Server(_redirecting_device(elsewhere, "303 See Other"), host=host, tls=ctx) as device:
            with pytest.raises(errors.Redirected) as caught:
                webui.get(f"https://{host}:{device.port}/logon.htm", ca_bundle=ca, timeout=2, auth=_Token())
    assert elsewhere in str(caught.value) and caught.value.status == 303
    assert attacker.connections == 0
    assert sum(b"negotiate" in r.lower() for r in device.received) == 1  # once, to the device's own name


@pytest.mark.parametrize("location, words", [
    ("file:///etc/passwd", "file:///etc/passwd"),            # requests: InvalidSchema, a traceback in reports
    ("SELF", "redirects are not followed"),                   # a loop: TooManyRedirects after 30 requests
    ("http://127.112.60.7:9/ca.crl", "127.112.60.7:9"),       # another host
    ("", "no Location"),
], ids=["file", "loop", "other-host", "no-location"])
def test_a_crl_location_that_redirects_is_a_finding_naming_where(location, words):
    def cdp(conn, server):
        while True:
            read_http_request(conn, server)
            where = f"http://{server.host}:{server.port}/ca.crl" if location == "SELF" else location
            conn.sendall(http_head("302 Found", {"Location": where} if where else {}, length=0))

    with Server(cdp) as server:
        url = f"http://{server.host}:{server.port}/ca.crl"
        t0 = time.monotonic()
        with pytest.raises(x509.CrlProblem) as caught:
            x509.download(url, timeout=2)
        seconds = time.monotonic() - t0
    assert caught.value.kind == "redirected" and words in str(caught.value), str(caught.value)
    assert len(server.received) == 1 and seconds < 3  # one request: nothing followed, no loop


def test_basic_over_plain_http_is_a_finding_not_a_valueerror():
    with pytest.raises(errors.ProbeError, match="in clear") as caught:
        winrm.WinRM("http://127.112.60.8:5985/wsman", auth=winrm.BasicAuth("svc", PASSWORD), ca_bundle=None, timeout=1)
    assert PASSWORD not in str(caught.value)
