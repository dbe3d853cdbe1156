"""Issue 14, item 5: every reply is a finding, never a traceback.

Library exceptions used to reach JUnit, Allure, the terminal and report.html as "the check raised an unexpected
error" with a stack trace: ``KeyError`` from a Digest challenge without nonce or realm and from garbage LDAP
replies, ``InvalidSchema`` from a redirect to ``file://``, ``TooManyRedirects``, ``ValueError`` for Basic over
``http://``, ``MemoryError``. First each hostile reply against its probe (the exception class and sentence),
then a whole run whose checks meet them all: every one a finding in plain words, no traceback anywhere.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import Server, ber_message_id, http_head, read_http_request, tls

from pytest_vpro.environment import Credential
from pytest_vpro.probes import errors, ldap, smb, wsman
from pytest_vpro.secrets import SecretRef

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))
from helpers import make_project

PASSWORD = "Hostile-Estate-Pw-3"
LIBRARY_WORDS = ("KeyError", "InvalidSchema", "TooManyRedirects", "Traceback", "MemoryError", "struct.error",
                 "PyAsn1", "IndexError")


def _challenge(value: str):
    def device(conn, server):
        while True:
            read_http_request(conn, server)
            conn.sendall(http_head("401 Unauthorized", {"WWW-Authenticate": value}, length=0))
    return device


DIGEST = {
    "no-nonce": ('Digest realm="Digest:0123"', "has no nonce"),
    "no-realm": ('Digest nonce="abc", qop="auth"', "has no realm"),
    "neither": ("Digest", "has no realm and no nonce"),
    "algorithm": ('Digest realm="r", nonce="n", algorithm="SHA3-512"', "unknown algorithm"),
    "auth-int": ('Digest realm="r", nonce="n", qop="auth-int"', "not 'auth'"),
}


@pytest.mark.parametrize("case", list(DIGEST))
def test_a_malformed_digest_challenge_is_auth_failed_in_words(case):
    header, words = DIGEST[case]
    with Server(_challenge(header)) as server:
        client = wsman.WsmanClient(f"http://{server.host}:{server.port}/wsman", auth=wsman.DigestAuth("admin", PASSWORD),
                                   ca_bundle=None, timeout=2)
        with pytest.raises(wsman.AuthFailed) as caught:
            client.get(wsman.resource_uri("AMT_GeneralSettings"))
        client.close()
    assert words in str(caught.value), str(caught.value)
    assert len(server.received) == 1  # not answered: the challenge could not be answered safely
    assert not any(w in str(caught.value) for w in LIBRARY_WORDS)


LDAP_GARBAGE = {
    "not-ber": b"HTTP/1.1 400 Bad Request\r\n\r\n",
    "ber-not-ldap": b"\x30\x03\x02\x01\x07",                       # a message with an id and nothing else
    "wrong-op": b"\x30\x07\x02\x01\x01\x6f\x02\x04\x00",            # an application tag LDAP does not have
    "truncated-result": b"\x30\x08\x02\x01\x01\x61\x03\x0a\x01",    # a bindResponse cut short
    "indefinite-length": b"\x30\x80\x02\x01\x01\x61\x00\x00\x00",
}


@pytest.mark.parametrize("case", list(LDAP_GARBAGE))
def test_a_garbage_ldap_reply_is_a_malformed_reply(case, tmp_path, monkeypatch):
    monkeypatch.setenv("VPRO_HOSTILE_PW", PASSWORD)
    credential = Credential(user="reader@hostile.test", password=SecretRef("env:VPRO_HOSTILE_PW"))
    host = "127.112.80.1"
    ctx, ca = tls(tmp_path, host)

    def dc(conn, server):
        server.read(conn)
        conn.sendall(LDAP_GARBAGE[case])
        server.stop.wait(5)

    with Server(dc, host=host, tls=ctx) as server:
        t0 = time.monotonic()
        with pytest.raises(errors.ProbeError) as caught:
            ldap.connect([f"{host}:{server.port}"], credential=credential, ca_file=ca, timeout=1, connect_timeout=1)
        seconds = time.monotonic() - t0
    assert isinstance(caught.value, (errors.MalformedReply, errors.Unreachable)), repr(caught.value)
    assert not any(w in str(caught.value) for w in LIBRARY_WORDS) and PASSWORD not in str(caught.value)
    assert seconds <= 2 + 1.0


def test_a_garbage_smb_answer_is_a_finding():
    def server_side(conn, server):
        size = struct.unpack(">L", conn.recv(4))[0]
        server.received.append(conn.recv(size))
        body = b"\xfeSMB" + os.urandom(120)
        conn.sendall(struct.pack(">L", len(body)) + body)
        server.stop.wait(5)

    with Server(server_side) as server:
        with pytest.raises(errors.ProbeError) as caught:
            with smb.open_file(server.host, "C$", "x.log", user="u", password=PASSWORD, timeout=1, connect_timeout=1,
                               port=server.port) as f:
                f.read()
    assert not any(w in str(caught.value) for w in LIBRARY_WORDS), str(caught.value)


def test_a_redirection_command_that_does_not_exist_is_a_malformed_reply(tmp_path):
    from pytest_vpro.actions.redirection import _Redirection
    from pytest_vpro.probes import redirection as redir

    host = "127.112.80.2"
    ctx, ca = tls(tmp_path, host)

    def device(conn, server):
        server.read(conn)
        conn.sendall(b"\x99" + b"\x00" * 40)
        server.stop.wait(5)

    with Server(device, host=host, tls=ctx) as server:
        session = _Redirection(host, server.port, ca, 1)
        try:
            with pytest.raises(errors.MalformedReply, match="not in the protocol's layout"):
                session.open(redir.SOL, b"token")
        finally:
            session.close()


def test_a_body_in_a_foreign_namespace_is_not_amts_answer():  # item 7
    foreign = (b'<?xml version="1.0"?><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope"><a:Body>'
               b'<g:AMT_GeneralSettings xmlns:g="http://attacker.example/wbem/AMT_GeneralSettings">'
               b'<g:HostName>evil</g:HostName></g:AMT_GeneralSettings></a:Body></a:Envelope>')

    def device(conn, server):
        read_http_request(conn, server)
        conn.sendall(http_head("200 OK", {"Content-Type": "application/soap+xml"}, length=len(foreign)) + foreign)

    with Server(device) as server:
        client = wsman.WsmanClient(f"http://{server.host}:{server.port}/wsman", auth=wsman.DigestAuth("a", PASSWORD),
                                   ca_bundle=None, timeout=2)
        with pytest.raises(wsman.MalformedReply, match="foreign namespace") as caught:
            client.get(wsman.resource_uri("AMT_GeneralSettings"))
        client.close()
    assert "http://attacker.example/wbem/AMT_GeneralSettings" in str(caught.value)


# --------------------------------------------------------------------------- a whole run
PLANTED = '''

_judge3 = judge


def judge(check_id, target, env):  # tests/reliability: checks that meet hostile servers (hostile.json)
    import json as _json
    from pytest_vpro.probes import ldap as _ldap, smb as _smb, winrm as _winrm, wsman as _wsman, x509 as _x509
    from pytest_vpro.environment import Credential as _Credential
    from pytest_vpro.secrets import SecretRef as _SecretRef

    plan = _json.loads((Path(env.file).parent / "hostile.json").read_text())
    what = plan.get(f"{check_id} {target.name}")
    if what is None:
        return _judge3(check_id, target, env)
    kind, where = what
    password = env.credentials["amt"].password.resolve()
    if kind == "digest":
        _wsman.WsmanClient(where, auth=_wsman.DigestAuth("admin", password), ca_bundle=None,
                           timeout=2).get(_wsman.resource_uri("AMT_GeneralSettings"))
    elif kind == "crl":
        _x509.download(where, timeout=2)
    elif kind == "basic":
        _winrm.WinRM(where, auth=_winrm.BasicAuth("svc", password), ca_bundle=None, timeout=2)
    elif kind == "ldap":
        _ldap.connect([where], credential=_Credential("u@h.test", env.credentials["amt"].password), ca_file=None,
                      timeout=2, use_ssl=False)
    elif kind == "smb":
        host, port = where.rsplit(":", 1)
        with _smb.open_file(host, "C$", "x.log", user="u", password=password, timeout=2, port=int(port)) as f:
            f.read()
'''


def test_a_run_against_hostile_replies_reports_findings_and_no_traceback(pytester):
    root = make_project(pytester)
    with open(root / "suites" / "conftest.py", "a") as f:
        f.write(PLANTED)

    def ldap_garbage(conn, server):
        request = server.read(conn)
        conn.sendall(b"\x30\x05\x02\x01" + bytes([ber_message_id(request)]) + b"\x6f\x00")

    def smb_huge(conn, server):
        size = struct.unpack(">L", conn.recv(4))[0]
        conn.recv(size)
        conn.sendall(b"\xff\xff\xff\xff")
        server.stop.wait(5)

    def file_redirect(conn, server):
        read_http_request(conn, server)
        conn.sendall(http_head("302 Found", {"Location": "file:///etc/passwd"}, length=0))

    def loop(conn, server):
        while True:
            read_http_request(conn, server)
            conn.sendall(http_head("302 Found", {"Location": "/again"}, length=0))

    servers = [Server(_challenge(DIGEST["no-nonce"][0])), Server(_challenge(DIGEST["no-realm"][0])),
               Server(ldap_garbage), Server(smb_huge), Server(file_redirect), Server(loop)]
    try:
        url = [f"http://{s.host}:{s.port}" for s in servers]
        plan = {
            "T1-CLIENT pc01.sample.test": ["digest", url[0] + "/wsman"],
            "T1-CLIENT pc02.sample.test": ["digest", url[1] + "/wsman"],
            "T1-CLIENT pc03.sample.test": ["ldap", f"{servers[2].host}:{servers[2].port}"],
            "T1-CLIENT pc04.sample.test": ["smb", f"{servers[3].host}:{servers[3].port}"],
            "T1-CLIENT pc05.sample.test": ["crl", url[4] + "/ca.crl"],
            "T1-SERVER sccm01.sample.test": ["crl", url[5] + "/ca.crl"],
            "T1-SITE sample.test": ["basic", "http://127.112.80.9:5985/wsman"],
        }
        (root / "environments" / "hostile.json").write_text(json.dumps(plan))
        env = dict(os.environ, SAMPLE_AMT_PASSWORD=PASSWORD)
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "pytest", "--env", "sample", "-p", "no:randomly", "-p",
                              "no:cacheprovider", "-k", "stage1", "-rA"], cwd=root, env=env, capture_output=True,
                             text=True, timeout=300)
        wall = time.monotonic() - t0
    finally:
        for s in servers:
            s.close()
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]
    junit = (root / "reports" / "latest" / "junit.xml").read_text()
    ticket = (root / "reports" / "latest" / "report.html").read_text()
    for where, body in (("terminal", text), ("junit.xml", junit), ("report.html", ticket)):
        assert "unexpected error" not in body, where
        assert not [w for w in LIBRARY_WORDS if w in body], (where, [w for w in LIBRARY_WORDS if w in body])
        assert PASSWORD not in body, where
    for words in ("has no nonce", "has no realm", "not a valid LDAP reply", "4,294,967,295 bytes",
                  "file:///etc/passwd", "redirects are not followed", "in clear"):
        assert words in junit, words
    assert wall < 120, wall
