"""Infrastructure checks on conditions the lab cannot build, and the probe helpers they rest on.

The lab's Samba DC holds one domain, so the multi-domain AMT container row (PRE-AD-CONTAINER-SAME-PATH-ALL-DOMAINS)
is judged here against a directory made of data; the rest of the rows are proven against the lab
(tests/lab/test_faults_infrastructure.py).
"""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pytest_vpro.checks import Evidence, Finding
from pytest_vpro.environment import Server
from pytest_vpro.probes import x509 as certs
from pytest_vpro.probes.dns import parse_zone_allow_update
from pytest_vpro.probes.ldap import Ace, NoSuchObject, SecurityDescriptor
from suites.stage1.test_directory import test_amt_container_has_the_same_path_in_every_client_domain as same_path

SITE_SERVER_SID = "S-1-5-21-1-2-3-1103"


def full_control(sid: str, inherit: bool = True) -> SecurityDescriptor:
    ace = Ace(kind="allow", trustee=sid, mask=0x10000000, rights=("GENERIC_ALL",), object_type=None,
              inherited_object_type=None, flags=("CONTAINER_INHERIT",) if inherit else (), ace_type=0)
    return SecurityDescriptor(owner=None, group=None, dacl=(ace,), control=0, raw=b"")


class Directory:
    """The facts the check reads: containers (DN -> security descriptor) and the site server's SIDs."""

    def __init__(self, containers: dict[str, SecurityDescriptor]):
        self.containers = containers

    def security_descriptor(self, dn: str, *, gc: bool = False) -> SecurityDescriptor:
        assert gc, "other domains' containers are read from a global catalog"
        if dn not in self.containers:
            raise NoSuchObject(f"no such object: {dn}")
        return self.containers[dn]

    def account_sids(self, server) -> dict:
        return {"sid": SITE_SERVER_SID, "sids": [SITE_SERVER_SID]}


def run(domains: tuple[str, ...], containers: dict[str, SecurityDescriptor]) -> None:
    site = SimpleNamespace(client_domains=domains, amt_container="OU=AMT,DC=corp,DC=example,DC=com")
    server = Server(kind="server", name="sccm01.corp.example.com", roles=("site_server",))
    env = SimpleNamespace(servers_with=lambda role: [server] if role == "site_server" else [])
    same_path(site, env, SimpleNamespace(directory=Directory(containers)), Evidence())


def test_one_client_domain_makes_the_same_path_row_not_applicable():
    with pytest.raises(pytest.skip.Exception, match="one domain"):
        run(("corp.example.com",), {})


def test_the_container_must_exist_in_every_client_domain_with_full_control():
    ok = full_control(SITE_SERVER_SID)
    run(("corp.example.com", "na.corp.example.com"),
        {"OU=AMT,DC=corp,DC=example,DC=com": ok, "OU=AMT,DC=na,DC=corp,DC=example,DC=com": ok})
    with pytest.raises(Finding, match="no OU=AMT,DC=na,DC=corp,DC=example,DC=com"):
        run(("corp.example.com", "na.corp.example.com"), {"OU=AMT,DC=corp,DC=example,DC=com": ok})
    with pytest.raises(Finding, match="not inherited by the objects in it"):
        run(("corp.example.com", "na.corp.example.com"),
            {"OU=AMT,DC=corp,DC=example,DC=com": ok,
             "OU=AMT,DC=na,DC=corp,DC=example,DC=com": full_control(SITE_SERVER_SID, inherit=False)})


def _ca(name: str, key, issuer_name=None, issuer_key=None, aia: str | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    if aia:
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(aia))]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def test_a_registry_store_blob_round_trips_and_the_aia_chain_is_followed():
    root_key, ca_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    root = _ca("Root", root_key)
    issuing = _ca("Issuing", ca_key, root.subject, root_key, aia="http://pki/root.crt")
    assert certs.parse_store_blob(certs.make_store_blob(issuing)) == issuing
    with pytest.raises(ValueError):
        certs.parse_store_blob(b"\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00")
    der = {"http://pki/root.crt": root.public_bytes(certs.serialization.Encoding.DER)}
    assert certs.chain_via_aia(issuing, der.__getitem__) == ([issuing, root], [])

    def unreachable(url):
        raise certs.CrlProblem("unreachable", url, "ConnectionError")
    chain, problems = certs.chain_via_aia(issuing, unreachable)
    assert chain == [issuing] and problems == ["unreachable: http://pki/root.crt: ConnectionError"]


def test_zone_allow_update_is_read_from_dns_property():
    prop = lambda pid, value: (1).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes(8) + \
        pid.to_bytes(4, "little") + bytes([value]) + b"\x00"  # noqa: E731 (MS-DNSP 2.3.2.1)
    assert parse_zone_allow_update([prop(0x01, 0), prop(0x02, 2)]) == 2
    assert parse_zone_allow_update([prop(0x01, 0)]) is None
