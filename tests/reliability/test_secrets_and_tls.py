"""Issue 8, items 5 and 6: no secret leaks from a run, even through tracebacks and logs; TLS is always verified.

Already proven elsewhere, and not repeated here: a plain run leaks nothing into reports/ or the terminal
(``tests/plugin/test_run_outputs.py::test_no_secret_anywhere_after_a_run_that_tries_to_leak_it``); a plaintext
password in an environment file is refused with the ``env:``/``file:`` hint (``tests/unit/test_environment.py``,
"plaintext password"); Digest wrong password, Kerberos token too large against the AMT simulator
(``tests/lab/test_amt_sim.py``); clock skew and Kerberos-disabled devices (``tests/lab/test_read_only.py``,
``test_check_faults.py``).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hostile import Hostile

from pytest_vpro import environment as envmod
from pytest_vpro.probes import errors, wsman
from pytest_vpro.secrets import SecretUnavailable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))
from helpers import latest, make_project, outcomes

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Sup3r-Secret-Value"
LEAKS = '''

import logging as _logging
_judge2 = judge


def judge(check_id, target, env):  # tests/reliability: every way a check could spill the password
    password = env.credentials["amt"].password.resolve()
    if check_id == "T1-SITE":
        _logging.getLogger("vpro.leak").warning("logging the password %s", password)
        raise RuntimeError(f"crashed holding {password}")  # an unexpected error: its traceback is reported
    if check_id == "T2-CLIENT" and target.name == "pc02.sample.test":
        import sys as _sys
        _sys.stderr.write(f"stderr {password}\\n")
        raise ValueError({"password": password})
    return _judge2(check_id, target, env)
'''


# --- item 5: secrets ------------------------------------------------------------------------------------------
def test_no_secret_through_tracebacks_logs_snapshots_or_xdist(pytester):
    root = make_project(pytester)
    with open(root / "suites" / "conftest.py", "a") as f:
        f.write(LEAKS)
    snap = root / "facts.jsonl"
    env = dict(os.environ, SAMPLE_AMT_PASSWORD=SECRET)
    out = subprocess.run([sys.executable, "-m", "pytest", "--env", "sample", "-p", "no:randomly", "-p",
                          "no:cacheprovider", "--no-html", "-n", "2", "-rA", "--tb=long", "--showlocals",
                          "-o", "log_cli=true", "--log-level=DEBUG", f"--facts-out={snap}"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]
    assert SECRET not in text
    leaked = [p for p in [*(root / "reports").rglob("*"), snap] if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []
    got = outcomes(latest(pytester))
    crashed = got["suites.stage1.test_stage1::test_site[sample.test]"]
    assert crashed[0] == "failed" and "unexpected error" in crashed[1] and "«redacted»" in crashed[1]


def test_a_secret_that_cannot_be_read_is_a_finding_not_a_traceback():
    # found by test_unreachable: a WinRM session whose password file was missing raised SecretUnavailable,
    # which the engine reported as "the check raised an unexpected error" with a traceback
    assert issubclass(SecretUnavailable, errors.ProbeError)


def test_plaintext_password_is_refused_with_how_to_reference_it(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("site: {name: HQ, code: ABC, domain: c.test, amt_container: 'OU=AMT,DC=c,DC=test'}\n"
                    "credentials: {amt: {user: admin, password: hunter22-plain}}\n"
                    "servers: [{fqdn: s.c.test, roles: [site_server]}]\nclients: [{fqdn: pc.c.test}]\n")
    with pytest.raises(envmod.EnvironmentFileError) as info:
        envmod.load(path)
    text = "\n".join(info.value.problems)
    assert "plaintext secret is not allowed" in text and "env:" in text and "file:" in text
    assert "hunter22-plain" not in text


def test_lab_credentials_are_generated_per_lab_into_0600_files():
    source = (ROOT / "pytest_vpro" / "lab" / "builder.py").read_text()
    assert "pysecrets.token_urlsafe" in source and "os.chmod(path, 0o600)" in source
    # the files of a real lab (mode 0600, not in its environment file): test_unreachable.py's lab run


# --- item 6: TLS -------------------------------------------------------------------------------------------------
def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject_key, issuer_key, cn: str, *, issuer: str | None = None, ip: str | None = None, ca=False,
          days=(-1, 30)):
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or cn)]))
               .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=days[0])).not_valid_after(now + dt.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca_key = _key()
    ca = _cert(ca_key, ca_key, "Reliability Test CA", ca=True, days=(-10, 3650))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return d, ca_key


def _server_ctx(d: Path, name: str, cert, key) -> ssl.SSLContext:
    (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / f"{name}.crt", d / f"{name}.key")
    return ctx


CASES = {
    "good": (dict(), None),
    "self_signed": (dict(self_signed=True), "self-signed certificate"),
    "expired": (dict(days=(-30, -1)), "certificate has expired"),
    "wrong_host": (dict(ip="127.0.0.9"), "IP address mismatch"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_device_certificates_are_findings(pki, case):
    d, ca_key = pki
    opts, words = CASES[case]
    with Hostile("ok", tls=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)) as probe_addr:
        host = probe_addr.host
    key = _key()
    ip = opts.get("ip", host)
    if opts.get("self_signed"):
        cert = _cert(key, key, host, ip=ip)
    else:
        cert = _cert(key, ca_key, host, issuer="Reliability Test CA", ip=ip, days=opts.get("days", (-1, 30)))
    with Hostile("ok", host=host, tls=_server_ctx(d, case, cert, key)) as server:
        client = wsman.WsmanClient(server.url, auth=wsman.DigestAuth("admin", "x"), ca_bundle=str(d / "ca.pem"),
                                   timeout=2)
        try:
            got = client.get(wsman.resource_uri("AMT_GeneralSettings"))
        except wsman.WsmanError as exc:
            got = exc
    if words is None:
        assert got["HostName"] == "pc"
    else:
        assert isinstance(got, wsman.TlsError) and words in str(got), got
        assert not server.requests  # nothing (no credential, no request) went over the unverified connection


def test_https_without_a_ca_bundle_is_refused():
    with pytest.raises(ValueError, match="TLS is always verified"):
        wsman.WsmanClient("https://127.112.9.9:16993/wsman", auth=wsman.DigestAuth("a", "b"), ca_bundle=None,
                          timeout=1)


#: reads a certificate, sends nothing (net.peer_tls through tls.inspection_context)
ALLOWED_UNVERIFIED = {("pytest_vpro/probes/tls.py", "inspection_context")}


def test_no_code_path_disables_verification_silently():
    pattern = re.compile(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|_create_unverified_context|"
                         r"disable_warnings|ssl_verify\s*=\s*False|server_cert_validation\s*=\s*['\"]ignore")
    found = []
    for path in sorted((ROOT / "pytest_vpro").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("pytest_vpro/lab/"):
            continue  # the simulators are the devices, not the tool
        func = ""
        for line in path.read_text().splitlines():
            m = re.match(r"\s*def (\w+)", line)
            if m:
                func = m.group(1)
            if pattern.search(line) and (rel, func) not in ALLOWED_UNVERIFIED:
                found.append(f"{rel}:{func}: {line.strip()}")
    assert found == []


def test_digest_and_kerberos_failures_are_told_apart():
    with Hostile("digest_loop") as server:
        c = wsman.WsmanClient(server.url, auth=wsman.DigestAuth("admin", "wrong"), ca_bundle=None, timeout=1)
        with pytest.raises(wsman.AuthFailed) as digest:
            c.get(wsman.resource_uri("AMT_GeneralSettings"))
    assert digest.value.scheme == "digest" and not isinstance(digest.value, wsman.KerberosTokenTooLarge)
    assert issubclass(wsman.KerberosTokenTooLarge, wsman.AuthFailed)
    from pytest_vpro.probes import kerberos
    assert issubclass(kerberos.KerberosError, errors.ProbeError)
    # the reasons GSSAPI gives (no ticket, no SPN, clock skew) reach the finding in its own words
    for words in ("No Kerberos credentials available", "Server not found in Kerberos database",
                  "Clock skew too great"):
        text = f"Major (851968): Unspecified GSS failure, Minor (2529639053): {words}"
        assert kerberos._gss_reason(Exception(text)) == words
