"""Issue 8, items 2 and 3: the parsers fuzzed with hypothesis; bad input is a finding, never a crash.

Each property: whatever the bytes, the parser returns a value or raises its own documented error (which the
plugin reports as a finding), within bounded time. Seeds that once found a bug stay as ``@example`` cases.
Plus the log reader's streaming guarantees: binary garbage, UTF-16, and a gigabyte-long log read in bounded memory.
"""
from __future__ import annotations

import io
import os
import string
import time
import tracemalloc

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_vpro import environment as envmod
from pytest_vpro.probes import cmlog, dhcp, hello, wsman

FAST = settings(max_examples=int(os.environ.get("VPRO_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# --- WS-MAN envelopes ------------------------------------------------------------------------------------------
SOAP = wsman.NS_SOAP
_names = st.sampled_from(["Envelope", "Header", "Body", "Fault", "Code", "Value", "Subcode", "Reason", "Text",
                          "Detail", "Action", "RelatesTo", "AMT_GeneralSettings", "HostName", "x"])
_ns = st.sampled_from([SOAP, wsman.NS_WSA, wsman.NS_WSMAN, "urn:x", ""])


@st.composite
def xml_trees(draw, depth=0):
    name, ns = draw(_names), draw(_ns)
    tag = f'{name} xmlns="{ns}"' if ns else name
    if depth > 3 or draw(st.booleans()):
        text = draw(st.text(alphabet=string.printable, max_size=20)).replace("&", "&amp;").replace("<", "&lt;")
        return f"<{tag}>{text}</{name}>"
    kids = "".join(draw(st.lists(xml_trees(depth=depth + 1), max_size=4)))
    return f"<{tag}>{kids}</{name}>"


def _envelope_ok(data: bytes) -> None:
    try:
        reply = wsman.parse_envelope(data)
    except (wsman.MalformedReply, wsman.SoapFault):
        return
    try:
        wsman.body_instance(reply)
    except wsman.MalformedReply:
        pass


@FAST
@given(st.binary(max_size=2000))
@example(b"")
@example(b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
@example(b"\xef\xbb\xbf<Envelope/>")
@example(b'<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Body/></Envelope>')
def test_wsman_envelope_bytes(data):
    _envelope_ok(data)


@FAST
@given(xml_trees())
@example(f'<Envelope xmlns="{SOAP}"><Body><Fault xmlns="{SOAP}"><Code/></Fault></Body></Envelope>')
def test_wsman_envelope_trees(text):
    _envelope_ok(text.encode())


@FAST
@given(xml_trees())
def test_wsman_envelope_trees_in_a_soap_body(inner):
    _envelope_ok(f'<Envelope xmlns="{SOAP}"><Header/><Body>{inner}</Body></Envelope>'.encode())


# --- hello packets -----------------------------------------------------------------------------------------------
@FAST
@given(st.binary(max_size=600))
@example(b"\x00" * 24)
def test_hello_bytes(data):
    try:
        hello.decode_hello(data)
    except hello.MalformedHello:
        pass


@FAST
@given(st.binary(min_size=0, max_size=200), st.integers(0, 300))
def test_hello_mutations_of_a_valid_packet(noise, cut):
    import uuid
    good = hello.encode_hello(uuid.UUID(int=7), hashes=[(2, b"\x11" * 32)]) if _takes_hashes() else None
    if good is None:
        return
    for data in (good[:cut], good[:cut] + noise, noise + good):
        try:
            hello.decode_hello(data)
        except hello.MalformedHello:
            pass


def _takes_hashes() -> bool:
    import inspect
    return "hashes" in inspect.signature(hello.encode_hello).parameters


# --- both log formats ---------------------------------------------------------------------------------------------
SMS = "Hello from pc01  $$<AMTOPMGR><11-20-2026 10:00:00.123+480><thread=1234 (0x4D2)>"
CCM = '<![LOG[Policy applied]LOG]!><time="10:00:00.123+480" date="11-20-2026" component="oobmgmt" thread="1" type="1" file="x">'
_log_alphabet = st.sampled_from(list("<>![]$\"=+-:. 0123456789LOGabc\n\r\t\x00\ufffd\u00e9"))


@FAST
@given(st.lists(st.one_of(st.just(SMS), st.just(CCM), st.text(_log_alphabet, max_size=80)), max_size=30),
       st.sampled_from(["utf-8", "utf-16-le", "utf-16"]))
@example([SMS[:40], CCM[:30], "<![LOG[", "$$<", "\x00" * 50], "utf-8")
def test_log_reader_mixed_text(lines, codec):
    data = "\n".join(lines).encode(codec, "replace")
    reader = cmlog.LogReader(io.BytesIO(data))
    got = list(reader)
    for line in got:
        assert line.format in ("sms", "ccm")
    assert cmlog.events(got) is not None


@FAST
@given(st.binary(max_size=4000))
def test_log_reader_bytes(data):
    list(cmlog.LogReader(io.BytesIO(data)))


@FAST
@given(st.text(max_size=300))
@example('<![LOG[x]LOG]!><time="99:99:99.9+99999999999999999999" date="13-45-0" thread="" type="">')
@example("x $$<c><1-1-0000 0:00:00.0000000+9999><thread=1>")
def test_log_entry_text(text):
    cmlog.parse_entry(text)
    cmlog.parse_entry(SMS.replace("Hello", text))
    cmlog.parse_entry(CCM.replace("Policy applied", text))


class _Endless(io.RawIOBase):
    """A log of ``size`` bytes produced on the fly: a gigabyte without a gigabyte of disk or memory."""

    def __init__(self, size: int, line: bytes):
        self.left, self.line, self.pos = size, line, 0

    def readable(self):
        return True

    def readinto(self, buf):
        n = min(len(buf), self.left)
        if n <= 0:
            return 0
        reps = self.line * (n // len(self.line) + 2)
        start = self.pos % len(self.line)
        buf[:n] = reps[start:start + n]
        self.pos += n
        self.left -= n
        return n


def _stream_peak(stream, limit_s: float) -> tuple[int, int, float]:
    tracemalloc.start()
    t0 = time.monotonic()
    reader = cmlog.LogReader(io.BufferedReader(stream, 1 << 16))
    count = sum(1 for _ in reader)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return count, peak, time.monotonic() - t0


def test_a_gigabyte_long_line_is_streamed_in_bounded_memory():
    # one line of 1 GiB (no newline): dropped as overlong, never held in memory
    count, peak, seconds = _stream_peak(_Endless(1 << 30, b"A" * 4096), 120)
    assert count == 0 and peak < 8 << 20, (count, peak)


def test_a_long_log_is_streamed_in_bounded_memory():
    # 4 MB of real entries: memory stays flat however long the log (the gigabyte case above reads the same way)
    line = (SMS + "\r\n").encode()
    count, peak, _ = _stream_peak(_Endless(4 << 20, line), 120)
    assert count > 40_000 and peak < 8 << 20, (count, peak)


def test_binary_garbage_and_utf16_logs():
    garbage = bytes(range(256)) * 4000
    reader = cmlog.LogReader(io.BytesIO(garbage))
    assert list(reader) == [] and reader.skipped + reader.overlong > 0
    utf16 = ("\n".join([SMS, CCM]) + "\n").encode("utf-16")
    assert [e.format for e in cmlog.LogReader(io.BytesIO(utf16))] == ["sms", "ccm"]
    bomless = ("\n".join([SMS, CCM]) + "\n").encode("utf-16-le")
    assert [e.format for e in cmlog.LogReader(io.BytesIO(bomless))] == ["sms", "ccm"]


# --- DHCP replies --------------------------------------------------------------------------------------------------
def _inform() -> bytes:
    return dhcp.build_inform(ciaddr="10.0.0.5", xid=0x1234)


@FAST
@given(st.binary(max_size=700))
def test_dhcp_bytes(data):
    try:
        dhcp.parse_message(data)
    except dhcp.MalformedDhcp:
        pass


@FAST
@given(st.binary(max_size=300), st.integers(0, 400))
@example(b"\x34\x01\x03", 240)  # overload into sname and file
@example(b"\x51\x00", 240)  # an empty client FQDN option
def test_dhcp_options_after_a_valid_header(tail, cut):
    base = bytearray(_inform())
    base[0] = 2  # BOOTREPLY
    for data in (bytes(base[:cut]) + tail, bytes(base[:240]) + tail):
        try:
            reply = dhcp.parse_message(data)
        except dhcp.MalformedDhcp:
            continue
        for prop in ("message_type", "server_id", "dns_servers", "domain_name", "client_fqdn", "client_fqdn_flags"):
            try:
                getattr(reply, prop)
            except dhcp.MalformedDhcp:
                pass


# --- the environment file ------------------------------------------------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12), st.dates())
_values = st.recursive(_scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), kids, max_size=3)),
                       max_leaves=12)
_keys = st.sampled_from(["name", "site", "dns", "credentials", "servers", "clients", "pki", "console", "expected",
                         "timeouts", "attestations", "bogus"])
BASE = yaml.safe_load("""
site: {name: HQ, code: ABC, domain: corp.example.com, amt_container: "OU=AMT,DC=corp,DC=example,DC=com"}
credentials: {amt: {user: admin, password: "env:VPRO_FUZZ"}}
servers: [{fqdn: sccm01.corp.example.com, roles: [site_server]}]
clients: [{fqdn: pc1.corp.example.com}]
""")


@FAST
@given(st.dictionaries(_keys, _values, max_size=5))
@example({"timeouts": {"read": float("nan")}})
@example({"name": None, "expected": {"": None}})  # found a KeyError in environment.expected (fixed)
@example({"clients": [{"fqdn": "pc2.corp.example.com", "source": "csv:/nonexistent.csv"}]})
def test_environment_file_structures(tmp_path_factory, changes):
    doc = dict(BASE, **changes)
    path = tmp_path_factory.mktemp("env") / "env.yaml"
    path.write_text(yaml.safe_dump(doc, default_flow_style=False, allow_unicode=True))
    _load_ok(path)


@FAST
@given(st.text(max_size=400))
@example("a: &x [*x]")  # found a RecursionError in yamlpos (fixed)
@example("!!python/object/apply:os.system ['true']")
@example("a: " + "[" * 2000)  # found a RecursionError in the YAML parser (fixed)
def test_environment_file_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("env") / "env.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text else None
    if path.exists():
        _load_ok(path)


def _load_ok(path):
    try:
        envmod.load(path, ldap_search=lambda *a, **k: [])
    except envmod.EnvironmentFileError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


# --- CRLs that do not parse ----------------------------------------------------------------------------------------
@FAST
@given(st.binary(max_size=600))
@example(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
@example(b"0\x82\xff\xff")  # a DER SEQUENCE that claims 64 KB
def test_crl_bytes(data):
    from pytest_vpro.probes import x509 as x509_probe
    try:
        crl = x509_probe.parse_crl(data)
    except x509_probe.CrlProblem:
        return
    try:
        x509_probe.check_crl(crl)
    except x509_probe.CrlProblem:
        pass
