"""WS-MAN client and server core: envelopes, faults, malformed and hostile replies (DSP0226, RFC 2617)."""
from __future__ import annotations

import socket
import time

import pytest
from loopback_http import QuietHandler, serving

from pytest_vpro.lab import wsman_server as srv
from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.probes import wsman
from pytest_vpro.probes.wsman import (
    ENDPOINT,
    NS_WSA,
    NS_WSMAN,
    DigestAuth,
    EndpointReference,
    HttpStatusError,
    MalformedReply,
    SoapFault,
    Unreachable,
    WsmanClient,
    build_envelope,
    parse_envelope,
    resource_uri,
)

PLAN = AddressPlan(92)
HOST = "127.92.0.250"  # unit tests' throwaway HTTP servers


# --- envelopes -----------------------------------------------------------------------
def test_resource_uri_prefixes_follow_the_notes():
    assert resource_uri("AMT_GeneralSettings") == "http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings"
    assert resource_uri("CIM_SoftwareIdentity") == "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_SoftwareIdentity"
    assert resource_uri("IPS_KVMRedirectionSettingData").startswith("http://intel.com/wbem/wscim/1/ips-schema/1/")
    assert resource_uri("http://x/y") == "http://x/y"
    with pytest.raises(ValueError):
        resource_uri("Win32_OperatingSystem")


def test_built_envelope_is_read_back_by_the_lenient_server_parser():
    env = build_envelope(ENDPOINT.GET, resource_uri("AMT_GeneralSettings"), message_id="uuid:1",
                         selectors={"Name": "a<b&c"})
    req = srv.parse_request(env)
    assert req.action == ENDPOINT.GET
    assert req.resource_uri.endswith("/AMT_GeneralSettings")
    assert req.message_id == "uuid:1"
    assert req.selectors == {"Name": "a<b&c"}
    assert req.body is None


def test_server_parser_accepts_the_s_wsa_style_of_pypi_amt():
    import amt.wsman

    env = amt.wsman.power_state_request("http://h:16992/wsman", "off").encode()
    req = srv.parse_request(env)
    assert req.action.endswith("CIM_PowerManagementService/RequestPowerStateChange")
    assert req.selectors == {"Name": "Intel(r) AMT Power Management Service"}
    props = req.body_properties()
    assert props["PowerState"] == "8"
    assert props["ManagedElement"]["Selectors"] == {"Name": "ManagedSystem"}


def test_server_parser_accepts_the_notes_sample_get():
    sample = (
        '<?xml version="1.0" encoding="utf-8"?><Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns="http://www.w3.org/2003/05/soap-envelope">'
        "<Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</a:Action><a:To>/wsman</a:To>"
        "<w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings</w:ResourceURI>"
        "<a:MessageID>1</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/"
        "anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout></Header><Body></Body></Envelope>"
    ).encode()
    req = srv.parse_request(sample)
    assert (req.action, req.message_id) == (ENDPOINT.GET, "1")


def test_response_envelope_relates_to_the_request_and_parses_to_a_dict():
    inst = srv.ServerInstance("AMT_Thing", resource_uri("AMT_Thing"), {
        "Name": "x & y", "List": ["1", "2"], "Nil": None, "Ref": EndpointReference(resource_uri("CIM_ComputerSystem"),
                                                                                   {"Name": "ManagedSystem"})})
    data = srv.response_envelope(ENDPOINT.GET_RESPONSE, "uuid:42", srv.instance_xml(inst))
    reply = parse_envelope(data)
    assert reply.relates_to == "uuid:42" and reply.action == ENDPOINT.GET_RESPONSE
    got = wsman.body_instance(reply)
    assert got.class_name == "AMT_Thing"
    assert got["Name"] == "x & y" and got["List"] == ["1", "2"] and got["Nil"] is None
    assert got["Ref"] == {"ResourceURI": resource_uri("CIM_ComputerSystem"), "Selectors": {"Name": "ManagedSystem"}}


def test_fault_envelope_becomes_a_typed_soap_fault():
    data = srv.fault_envelope(srv.destination_unreachable(resource_uri("AMT_Nope")), "uuid:7")
    with pytest.raises(SoapFault) as exc:
        parse_envelope(data)
    assert exc.value.code == "s:Sender"
    assert exc.value.subcode == "wsa:DestinationUnreachable"
    assert "InvalidResourceURI" in exc.value.detail
    assert srv.destination_unreachable("x").http_status == 400
    assert srv.invalid_enumeration_context().http_status == 500


@pytest.mark.parametrize("data, words", [
    (b"not xml at all", "not XML"),
    (b"<a/>", "not a SOAP 1.2 Envelope"),
    (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/></s:Envelope>', "no SOAP Body"),
])
def test_malformed_replies(data, words):
    with pytest.raises(MalformedReply, match=words):
        parse_envelope(data)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&lol3;</s:Body></s:Envelope>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&e;</s:Body></s:Envelope>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_entity_expansion_is_rejected_by_client_and_server(data):
    with pytest.raises(MalformedReply, match="safe XML parser"):
        parse_envelope(data)
    with pytest.raises(srv.Fault) as exc:
        srv.parse_request(data)
    assert exc.value.subcode == "wsman:SchemaValidationError"


def test_digest_response_matches_rfc2617_example():
    # RFC 2617 section 3.5: Mufasa / "Circle Of Life"
    assert srv.digest_response("Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
                               "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b") \
        == "6629fae49393a05397450978507c4ef1"


def test_amt_style_digest_realm():
    realm = srv.amt_digest_realm("some-uuid")
    assert realm.startswith("Digest:") and len(realm) == 7 + 32
    int(realm[7:], 16)


def test_digest_authenticator_refuses_forged_nonce_and_keeps_password_out_of_repr():
    auth = srv.DigestAuthenticator("Digest:" + "A" * 32, {"admin": "s3cret!"})
    assert "s3cret" not in repr(auth)
    assert "s3cret" not in repr(DigestAuth("admin", "s3cret!"))
    value = (f'username="admin", realm="{auth.realm}", nonce="00", uri="/wsman", response="x", '
             'qop=auth, nc=00000001, cnonce="ab"')
    with pytest.raises(srv.Denied):
        auth.authenticate("POST", "/wsman", value)


# --- the client against tiny real HTTP servers --------------------------------------
class _Handler(QuietHandler):
    routes: dict[str, tuple[int, str, bytes]] = {}

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, ctype, body = self.routes[self.path]
        self.reply(body, status, ctype)


@pytest.fixture(scope="module")
def http_server():
    with serving(_Handler, HOST) as server:
        yield f"http://{HOST}:{server.server_address[1]}"


def _client(url, **kw):
    return WsmanClient(url, auth=DigestAuth("admin", "pw"), ca_bundle=None, timeout=2, **kw)


SOAP = "application/soap+xml; charset=utf-8"


def test_oversized_reply_is_bounded(http_server):
    _Handler.routes["/big"] = (200, SOAP, b"<x>" + b"a" * 300_000 + b"</x>")
    with pytest.raises(MalformedReply, match="limit"):
        _client(http_server + "/big", max_bytes=100_000).get(resource_uri("AMT_GeneralSettings"))


def test_wrong_content_type_is_malformed(http_server):
    _Handler.routes["/html"] = (200, "text/html", b"<html>hello</html>")
    with pytest.raises(MalformedReply, match="content type is text/html"):
        _client(http_server + "/html").get(resource_uri("AMT_GeneralSettings"))


def test_not_found_is_an_http_status_error(http_server):
    _Handler.routes["/gone"] = (404, "text/html", b"nope")
    with pytest.raises(HttpStatusError) as exc:
        _client(http_server + "/gone").get(resource_uri("AMT_GeneralSettings"))
    assert exc.value.status == 404


def test_fault_with_http_400_is_a_soap_fault(http_server):
    _Handler.routes["/fault"] = (400, SOAP, srv.fault_envelope(srv.action_not_supported("X"), "uuid:1"))
    with pytest.raises(SoapFault, match="ActionNotSupported"):
        _client(http_server + "/fault").get(resource_uri("AMT_GeneralSettings"))


def test_transcript_drops_authorization(http_server):
    body = srv.response_envelope(ENDPOINT.GET_RESPONSE, "x", srv.instance_xml(
        srv.ServerInstance("AMT_A", resource_uri("AMT_A"), {"P": "1"})))
    _Handler.routes["/ok"] = (200, SOAP, body)
    t = wsman.Transcript()
    c = _client(http_server + "/ok", transcript=t)
    c.session.headers["Authorization"] = "Digest secret-stuff"
    assert c.get(resource_uri("AMT_A")) == {"P": "1"}
    assert "secret-stuff" not in t.text() and "<h:P>1</h:P>" in t.text()


def test_refused_connection_is_unreachable():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(Unreachable, match="refused"):
        _client(f"http://{HOST}:{port}/wsman").get(resource_uri("AMT_GeneralSettings"))


def test_silent_server_costs_one_timeout():
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(1)  # accepts in the kernel, never answers
    try:
        t0 = time.monotonic()
        with pytest.raises(Unreachable, match=r"no answer from 127\.92\.0\.250:\d+ within 0.5 s"):
            WsmanClient(f"http://{HOST}:{s.getsockname()[1]}/wsman", auth=DigestAuth("a", "b"), ca_bundle=None,
                        timeout=0.5).get(resource_uri("AMT_GeneralSettings"))
        assert time.monotonic() - t0 < 2
    finally:
        s.close()


def test_https_requires_a_ca_bundle():
    with pytest.raises(ValueError, match="CA bundle"):
        WsmanClient("https://h:16993/wsman", auth=DigestAuth("a", "b"), ca_bundle=None, timeout=1)


def test_namespaces_are_the_notes_ones():
    assert NS_WSA == "http://schemas.xmlsoap.org/ws/2004/08/addressing"
    assert NS_WSMAN == "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
