"""The WinRM probe's choice of authentication (probes/winrm.py select_auth) and the environment key that allows
Basic for a host (credentials.winrm.basic_hosts). Windows has Kerberos on and Basic off by default."""
from __future__ import annotations

import pytest

from pytest_vpro.environment import Credential
from pytest_vpro.probes.winrm import AuthRefused, BasicAuth, WinRM, select_auth
from pytest_vpro.probes.wsman import AuthFailed, ConfigurationError, KerberosAuth
from pytest_vpro.secrets import SecretRef

HOST = "sccm01.lab.test"
URL = f"https://{HOST}:5986/wsman"


@pytest.fixture
def password(monkeypatch):
    monkeypatch.setenv("VPRO_TEST_WINRM", "S3cret-pw")
    return SecretRef("env:VPRO_TEST_WINRM")


def schemes(auths):
    return [a.scheme for a in auths]


def test_kerberos_only_unless_the_environment_allows_basic_for_the_host(password):
    cred = Credential("Administrator", password, basic_hosts=("ca01.lab.test",))
    auths = select_auth(HOST, URL, cred, realm="LAB.TEST", kerberos_credentials=lambda: None)
    assert schemes(auths) == ["kerberos"] and auths[0].spn == f"HTTP/{HOST}@LAB.TEST" and auths[0].mutual
    ca = select_auth("ca01.lab.test", "https://ca01.lab.test:5986/wsman", cred, realm="LAB.TEST")
    assert schemes(ca) == ["kerberos", "basic"] and ca[1].password == "S3cret-pw"


def test_a_kerberos_reference_uses_the_callers_ticket_cache_with_mutual_authentication():
    (auth,) = select_auth(HOST, URL, Credential(None, None), realm="LAB.TEST")
    assert isinstance(auth, KerberosAuth) and auth.mutual and auth.spn_host == HOST  # SPN HTTP/<fqdn>, no port


@pytest.mark.parametrize("url, why", [
    ("http://sccm01.lab.test:5985/wsman", "SPNEGO message encryption"),
    ("https://other.lab.test:5986/wsman", "names another host"),
])
def test_no_credential_goes_to_plain_http_or_to_a_host_the_environment_does_not_name(password, url, why):
    cred = Credential("Administrator", password, basic_hosts=(HOST,))
    with pytest.raises(ConfigurationError, match=why):
        select_auth(HOST, url, cred, realm="LAB.TEST")


def test_the_hosts_address_names_it_too(password):
    auths = select_auth(HOST, "https://192.0.2.7:5986/wsman", Credential("a", password), realm="R",
                        address="192.0.2.7")
    assert schemes(auths) == ["kerberos"]


class _Client:
    """Stands in for WsmanClient: refuses the schemes in ``refuse`` (a unit test of one function's logic)."""

    refuse: set = set()
    made: list = []

    def __init__(self, url, *, auth, **_kw):
        self.auth = auth
        _Client.made.append(auth.scheme)

    def enumerate(self, uri, **_kw):
        if self.auth.scheme in self.refuse:
            raise AuthFailed(self.auth.scheme, "https://x/wsman", offered="Negotiate")
        return [{"Caption": "Windows"}]

    def close(self):
        pass


def test_basic_comes_only_after_kerberos_was_refused_and_a_refusal_names_host_finding_and_action(
        password, monkeypatch):
    import pytest_vpro.probes.winrm as winrm

    monkeypatch.setattr(winrm, "WsmanClient", _Client)
    _Client.made, _Client.refuse = [], {"kerberos"}
    w = WinRM(URL, auth=[KerberosAuth(spn_host=HOST), BasicAuth("a", "pw")], ca_bundle="ca.pem", timeout=1)
    assert w.enumerate("Win32_OperatingSystem") == [{"Caption": "Windows"}] and _Client.made == ["kerberos", "basic"]
    assert w.auth_scheme == "basic"

    _Client.made, _Client.refuse = [], {"kerberos"}
    w = WinRM(URL, auth=[KerberosAuth(spn_host=HOST)], ca_bundle="ca.pem", timeout=1)
    with pytest.raises(AuthRefused) as refused:
        w.enumerate("Win32_OperatingSystem")
    text = str(refused.value)
    assert f"WinRM on {HOST} refused Kerberos (it offers Negotiate)" in text
    assert "expected: Kerberos (Negotiate) accepted" in text and 'Kerberos="true"' in text


@pytest.mark.parametrize("value, problem", [
    ("sccm01.lab.test", "expected a list of host FQDNs"),
    (["*.lab.test"], "no wildcard"),
    (["https://sccm01.lab.test:5986/wsman"], "no wildcard, no URL"),
    ([5], "fully qualified domain name"),
])
def test_basic_hosts_in_the_environment_file_are_checked(tmp_path, value, problem):
    import yaml

    from pytest_vpro.environment import EnvironmentFileError, load

    (tmp_path / "pw").write_text("x-secret\n")
    env = {"name": "t", "site": {"name": "lab.test", "code": "LAB", "domain": "lab.test",
                    "amt_container": "OU=AMT,DC=lab,DC=test"},
           "credentials": {"winrm": {"user": "Administrator", "password": "file:pw", "basic_hosts": value}},
           "servers": [{"fqdn": "sccm01.lab.test", "roles": ["site_server"]}], "clients": []}
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(env))
    with pytest.raises(EnvironmentFileError, match="basic_hosts") as err:
        load(path)
    assert problem in str(err.value)


def test_basic_hosts_is_read_and_only_under_winrm(tmp_path):
    import yaml

    from pytest_vpro.environment import EnvironmentFileError, load

    (tmp_path / "pw").write_text("x-secret\n")
    env = {"name": "t", "site": {"name": "lab.test", "code": "LAB", "domain": "lab.test",
                    "amt_container": "OU=AMT,DC=lab,DC=test"},
           "credentials": {"winrm": {"user": "Administrator", "password": "file:pw",
                                     "basic_hosts": ["CA01.lab.test"]}},
           "servers": [{"fqdn": "sccm01.lab.test", "roles": ["site_server"]}], "clients": []}
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(env))
    assert load(path).credentials["winrm"].basic_hosts == ("ca01.lab.test",)
    env["credentials"]["ldap"] = {"user": "a", "password": "file:pw", "basic_hosts": ["ca01.lab.test"]}
    path.write_text(yaml.safe_dump(env))
    with pytest.raises(EnvironmentFileError, match="basic_hosts"):
        load(path)


def test_a_kdc_that_does_not_answer_is_not_reported_as_the_hosts_refusal(monkeypatch):
    import pytest_vpro.probes.winrm as winrm
    from pytest_vpro.probes.kerberos import KdcTimeout, KerberosError

    class Silent(_Client):
        def enumerate(self, uri, **_kw):
            raise self.error

    monkeypatch.setattr(winrm, "WsmanClient", Silent)
    for error, raised in [(KdcTimeout("no service ticket for HTTP/x as a: no answer from the Kerberos KDC"),
                           KdcTimeout),
                          (KerberosError("no Kerberos ticket for a@R: Preauthentication failed"), KerberosError),
                          (KerberosError("no service ticket for HTTP/x@R as a: Server not found in Kerberos "
                                         "database"), AuthRefused)]:
        Silent.error = error
        w = WinRM(URL, auth=[KerberosAuth(spn_host=HOST)], ca_bundle="ca.pem", timeout=1)
        with pytest.raises(raised) as got:
            w.enumerate("Win32_OperatingSystem")
        if raised is AuthRefused:
            assert "refused Kerberos (Server not found in Kerberos database)" in str(got.value)
        else:
            assert type(got.value) is raised
