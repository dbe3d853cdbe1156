"""The lab's PKI: a root CA, an issuing CA, AMT provisioning and web server certificates, CRLs.

Made with ``cryptography`` and persisted as PEM files in one directory, so a lab restarted on
the same directory keeps its roots (the AMT simulator's trusted-root hash lists stay valid).

Certificates follow RFC 5280: CA certificates carry basicConstraints (critical) and keyUsage
keyCertSign/cRLSign (§4.2.1.9, §4.2.1.3); end-entity certificates carry a subjectAltName
dNSName (§4.2.1.6), an extendedKeyUsage (§4.2.1.12), a cRLDistributionPoints (§4.2.1.13) and
an authorityInfoAccess caIssuers URL (§4.2.2.1) pointing at files this module publishes into
:attr:`LabPKI.publish_dir`, which the lab's HTTP server serves at ``crl_base_url``. CRLs are
v2 CRLs with a CRL number and authority key identifier (§5.2.1, §5.2.3), DER encoded.

The provisioning certificate follows docs/protocols.md "Provisioning certificate rules":
serverAuth plus the Intel AMT OID 2.16.840.1.113741.1.2.3 in the EKU and the OU
``Intel(R) Client Setup Certificate``, key at most 2048 bits.

Lab shortcut, documented: device web server certificates share a small pool of RSA key pairs
(``device_key_pool``, default 4) instead of one fresh key each. RSA-2048 key generation costs
about 50 ms, so 1,000 devices would spend ~50 s in keygen; with a pool, issuing 1,000
certificates takes about a second. No check can observe it: checks read certificates (each
has its own serial, subject, SAN and validity), never private keys.

Faults are data (:class:`PkiFaults`): an issuing CA with a 4096-bit key, an expired issuing CA,
CRLs published already expired, a provisioning certificate without the AMT OID and/or OU, or
without serverAuth.

A PKI of 2008 (``signature_hash="sha1"``, ``ldap_config_dn``; the lab's ``era: 2009``): every certificate and
CRL signed with SHA-1, as a Windows Server 2003/2008 CA signed them, and every CDP and AIA extension listing the
``ldap:///`` location first (AD CS's defaults, docs/protocols.md, "X.509, the enterprise PKI"), then the http://
one. ``cryptography`` does not sign with SHA-1: :func:`sign` lets it sign with SHA-256, then puts
sha1WithRSAEncryption into the TBS
and signs those bytes again with the CA's key (RFC 5280 §4.1.1.2-3, §5.1.1.2-3). The ldap:/// objects are
published into the lab's directory by :func:`pytest_vpro.lab.builder.build` (``on_publish`` for the CRLs).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

AMT_PROVISIONING_OID = x509.ObjectIdentifier("2.16.840.1.113741.1.2.3")
CLIENT_SETUP_OU = "Intel(R) Client Setup Certificate"
ISSUING_CA_NAME = "VPROLAB Issuing CA"
ROOT_CA_NAME = "VPROLAB Root CA"

UTC = dt.timezone.utc
_BACKDATE = dt.timedelta(hours=1)  # tolerate small clock skew between lab hosts


@dataclass(frozen=True)
class PkiFaults:
    """Planted faults; the default is a healthy PKI."""

    issuing_key_bits: int | None = None        # e.g. 4096: above AMT's 2048-bit limit
    expired_issuing_ca: bool = False           # issuing CA's notAfter in the past
    expired_crl: bool = False                  # CRLs published with nextUpdate in the past
    provisioning_amt_oid: bool = True          # False: EKU without 2.16.840.1.113741.1.2.3
    provisioning_ou: bool = True               # False: subject without the Client Setup OU
    provisioning_server_auth: bool = True      # False: EKU without serverAuth
    provisioning_domain: str | None = None     # the provisioning certificate's CN domain (default: the lab's)
    provisioning_key_bits: int | None = None   # e.g. 4096: the provisioning certificate's own key too long
    expired_provisioning: bool = False         # the provisioning certificate's notAfter in the past
    revocation_refused: bool = False           # revoke() is refused (the requester may not manage certificates)


#: AlgorithmIdentifier DER of sha256WithRSAEncryption and sha1WithRSAEncryption (RFC 4055 §5, RFC 3279 §2.2.1),
#: both with NULL parameters: the same length, so swapping them keeps every length field of the TBS.
SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")
SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _content(der: bytes, offset: int) -> tuple[int, int]:
    """(offset of the content, its length) of the DER element at ``offset``."""
    first = der[offset + 1]
    if first < 0x80:
        return offset + 2, first
    n = first & 0x7F
    return offset + 2 + n, int.from_bytes(der[offset + 2: offset + 2 + n], "big")


def resign_sha1(der: bytes, key: rsa.RSAPrivateKey) -> bytes:
    """A certificate or CRL (DER, signed sha256WithRSAEncryption by ``key``) signed sha1WithRSAEncryption instead."""
    outer, _ = _content(der, 0)
    start, length = _content(der, outer)
    tbs = der[outer:start + length]
    at = tbs.find(SHA256_WITH_RSA)
    if not 0 < at < 48:
        raise ValueError("not a sha256WithRSAEncryption certificate or CRL")
    tbs = tbs[:at] + SHA1_WITH_RSA + tbs[at + len(SHA1_WITH_RSA):]
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    return _tlv(0x30, tbs + SHA1_WITH_RSA + _tlv(0x03, b"\0" + signature))


def sign(builder, key, hash_name: str = "sha256"):
    """``builder.sign(key, SHA-256)``, or the same object signed with SHA-1 (``hash_name="sha1"``, RSA keys)."""
    signed = builder.sign(key, hashes.SHA256())
    if hash_name == "sha256":
        return signed
    if hash_name != "sha1" or not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"the lab signs with sha256, or sha1 with an RSA key, not {hash_name}")
    der = resign_sha1(signed.public_bytes(serialization.Encoding.DER), key)
    if isinstance(signed, x509.CertificateRevocationList):
        return x509.load_der_x509_crl(der)
    return x509.load_der_x509_certificate(der)


def _now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


def _name(cn: str, *, ou: str | None = None, o: str = "VPROLAB") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o)]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary file and rename, so a reader (HTTP server) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class PkiPublication:
    """Where the lab's CAs publish and what: the http:// files in :attr:`publish_dir` (CA certificates, CRLs),
    the ldap:/// objects of a PKI with ``ldap_config_dn``, the CDP and AIA URLs that name them, and the
    revocations the CRLs list (``state.json``). :class:`LabPKI` sets the attributes."""

    dir: Path
    crl_base_url: str
    ldap_config_dn: str | None
    ca_host: str
    faults: PkiFaults
    signature_hash: str
    on_publish: Callable[[str, bytes], None] | None
    root_key: rsa.RSAPrivateKey
    root_cert: x509.Certificate
    issuing_key: rsa.RSAPrivateKey
    issuing_cert: x509.Certificate

    # ------------------------------------------------------------------ locations
    @property
    def publish_dir(self) -> Path:
        """Public files only (CRLs, CA certificates in DER): what the HTTP server serves."""
        return self.dir / "publish"

    issuing_crl_path = property(lambda self: self.publish_dir / "issuing.crl")
    root_crl_path = property(lambda self: self.publish_dir / "root.crl")

    def url(self, name: str) -> str:
        return f"{self.crl_base_url}/{name}"

    def ldap_cdp_dn(self, ca_name: str) -> str:
        """Where AD CS publishes ``ca_name``'s CRL: ``CN=<CA>,CN=<CA host>,CN=CDP,CN=Public Key Services,...``."""
        return f"CN={ca_name},CN={self.ca_host},CN=CDP,CN=Public Key Services,CN=Services,{self.ldap_config_dn}"

    def ldap_aia_dn(self, ca_name: str) -> str:
        """Where AD CS publishes ``ca_name``'s certificate: ``CN=<CA>,CN=AIA,CN=Public Key Services,...``."""
        return f"CN={ca_name},CN=AIA,CN=Public Key Services,CN=Services,{self.ldap_config_dn}"

    def _locations(self, issuer: x509.Certificate, file: str, kind: str) -> list[str]:
        """The CDP (``kind`` "cdp") or AIA URLs of a certificate ``issuer`` signs: the http:// file, and before
        it, in a PKI with ``ldap_config_dn``, the ldap:/// object as AD CS writes it (spaces as %20)."""
        http = self.url(file)
        if not self.ldap_config_dn:
            return [http]
        ca = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        if kind == "cdp":
            ldap = (f"ldap:///{quote(self.ldap_cdp_dn(ca), safe='=,')}?certificateRevocationList?base?"
                    "objectClass=cRLDistributionPoint")
        else:
            ldap = (f"ldap:///{quote(self.ldap_aia_dn(ca), safe='=,')}"
                    "?cACertificate?base?objectClass=certificationAuthority")
        return [ldap, http]

    # ------------------------------------------------------------------ revocation
    def _state(self) -> dict:
        path = self.dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {"crl_number": 0, "revoked": []}

    def _save_state(self, state: dict) -> None:
        _write_atomic(self.dir / "state.json", json.dumps(state, indent=1).encode())

    def revoke(self, serial: int, reason: x509.ReasonFlags = x509.ReasonFlags.superseded,
               *, ca: str = "issuing") -> None:
        """Record ``serial`` as revoked by ``ca`` ("issuing" or "root"); call :meth:`publish_crl`.

        Un-provisioning revokes the client's web server certificate with reason superseded
        (docs/protocols.md).
        """
        if ca not in ("issuing", "root"):
            raise ValueError(f"ca must be 'issuing' or 'root', not {ca!r}")
        if self.faults.revocation_refused:
            raise PermissionError(f"the {ca} CA denied the revocation of serial {serial:x}: the requester does not "
                                  "have Issue and Manage Certificates")
        state = self._state()
        if not any(r["serial"] == serial and r["ca"] == ca for r in state["revoked"]):
            state["revoked"].append({"serial": serial, "reason": reason.value, "ca": ca,
                                     "date": _now().isoformat()})
            self._save_state(state)

    def publish_crl(self, next_update: dt.timedelta | dt.datetime | None = None, *,
                    this_update: dt.datetime | None = None) -> None:
        """Write ``issuing.crl`` and ``root.crl`` (DER, RFC 5280 §5) into :attr:`publish_dir`.

        ``next_update`` defaults to 7 days ahead (1 day in the past with the expired-CRL fault).
        Files are replaced atomically, so the HTTP server serves old or new, never half.
        """
        now = this_update or _now()
        if next_update is None:
            next_update = dt.timedelta(days=-1 if self.faults.expired_crl else 7)
        if isinstance(next_update, dt.timedelta):
            next_update = now + next_update
        if next_update <= now:  # an already-expired CRL: thisUpdate a week before nextUpdate
            now = next_update - dt.timedelta(days=7)
        state = self._state()
        state["crl_number"] += 1
        self._save_state(state)
        for ca, key, cert, path in (("issuing", self.issuing_key, self.issuing_cert, self.issuing_crl_path),
                                    ("root", self.root_key, self.root_cert, self.root_crl_path)):
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            builder = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
                       .last_update(now).next_update(next_update)
                       .add_extension(x509.CRLNumber(state["crl_number"]), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                                      critical=False))
            for entry in (r for r in state["revoked"] if r["ca"] == ca):
                revoked = (x509.RevokedCertificateBuilder().serial_number(entry["serial"])
                           .revocation_date(dt.datetime.fromisoformat(entry["date"]))
                           .add_extension(x509.CRLReason(x509.ReasonFlags(entry["reason"])), critical=False)
                           .build())
                builder = builder.add_revoked_certificate(revoked)
            crl = sign(builder, key, self.signature_hash)
            _write_atomic(path, crl.public_bytes(serialization.Encoding.DER))
            if self.on_publish is not None:
                self.on_publish(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                                crl.public_bytes(serialization.Encoding.DER))

    def revoked_serials(self, ca: str = "issuing") -> set[int]:
        return {r["serial"] for r in self._state()["revoked"] if r["ca"] == ca}


class LabPKI(PkiPublication):
    """Root CA, issuing CA, provisioning and device certificates, CRLs, in ``dir``."""

    def __init__(self, dir: Path, *, domain: str = "vprolab.test",  # noqa: A002 - the keyword callers pass
                 crl_base_url: str = "http://ca01.vprolab.test/pki", key_bits: int = 2048,
                 site_server: str = "sccm01", device_key_pool: int = 4,
                 faults: PkiFaults = PkiFaults(), signature_hash: str = "sha256",
                 ldap_config_dn: str | None = None, ca_host: str = "ca01",
                 on_publish: Callable[[str, bytes], None] | None = None, infrastructure_ca: bool = False) -> None:
        """``signature_hash``: "sha256", or "sha1" (a PKI of 2008). ``ldap_config_dn``: the forest's configuration
        naming context; given, CDP and AIA list the ldap:/// location (on ``ca_host``) before the http:// one.
        ``on_publish(ca_name, crl_der)``: called for every CRL written (to publish it into the directory).
        ``infrastructure_ca``: the lab's WinRM servers get their TLS certificates from a separate SHA-256 CA
        (:meth:`issue_infrastructure_cert`; a lab simplification of a 2008 PKI, see docs/lab.md)."""
        self.infrastructure_ca = infrastructure_ca
        self.signature_hash = signature_hash
        self.ldap_config_dn = ldap_config_dn
        self.ca_host = ca_host
        self.on_publish = on_publish
        self.dir = Path(dir)
        self.domain = domain
        self.crl_base_url = crl_base_url.rstrip("/")
        self.key_bits = key_bits
        self.site_server_fqdn = f"{site_server}.{domain}"
        self.device_key_pool = max(1, device_key_pool)
        self.faults = faults
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        (self.dir / "devices").mkdir(exist_ok=True)
        self.publish_dir.mkdir(exist_ok=True)
        self._device_keys: list[rsa.RSAPrivateKey] = []
        self.root_key, self.root_cert = self._load_or_make("root", self._make_root)
        self.issuing_key, self.issuing_cert = self._load_or_make("issuing", self._make_issuing)
        self.provisioning_key, self.provisioning_cert = self._load_or_make(
            "provisioning", self._make_provisioning)
        _write_atomic(self.provisioning_chain_path, b"".join(
            _cert_pem(c) for c in (self.provisioning_cert, self.issuing_cert, self.root_cert)))
        _write_atomic(self.publish_dir / "root.crt", self.root_cert.public_bytes(serialization.Encoding.DER))
        _write_atomic(self.publish_dir / "issuing.crt", self.issuing_cert.public_bytes(serialization.Encoding.DER))
        if not self.issuing_crl_path.exists() or not self.root_crl_path.exists():
            self.publish_crl()

    # ------------------------------------------------------------------ paths
    root_path = property(lambda self: self.dir / "root.pem")
    issuing_path = property(lambda self: self.dir / "issuing.pem")
    provisioning_path = property(lambda self: self.dir / "provisioning.pem")
    provisioning_key_path = property(lambda self: self.dir / "provisioning.key.pem")
    provisioning_chain_path = property(lambda self: self.dir / "provisioning-chain.pem")

    # ------------------------------------------------------------------ persistence
    def _load_or_make(self, stem: str, make):
        cert_path, key_path = self.dir / f"{stem}.pem", self.dir / f"{stem}.key.pem"
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
        key, cert = make()
        _write_atomic(key_path, _key_pem(key), 0o600)
        _write_atomic(cert_path, _cert_pem(cert))
        return key, cert

    # ------------------------------------------------------------------ CAs
    def _new_key(self, bits: int | None = None) -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=bits or self.key_bits)

    @staticmethod
    def _ca_usage() -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                             crl_sign=True, encipher_only=False, decipher_only=False)

    def _make_root(self):
        key, now = self._new_key(), _now()
        name = _name(ROOT_CA_NAME)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - _BACKDATE).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(self._ca_usage(), critical=True)
                .add_extension(ski, critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False))
        return key, sign(cert, key, self.signature_hash)

    def _make_issuing(self):
        key, now = self._new_key(self.faults.issuing_key_bits), _now()
        if self.faults.expired_issuing_ca:
            start, end = now - dt.timedelta(days=730), now - dt.timedelta(days=1)
        else:
            start, end = now - _BACKDATE, now + dt.timedelta(days=1825)
        cert = (self._builder(_name(ISSUING_CA_NAME), key, self.root_cert, start, end,
                              crl="root.crl", aia="root.crt")
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(self._ca_usage(), critical=True))
        return key, sign(cert, self.root_key, self.signature_hash)

    def issuing_variant(self, *, new_key: bool = False, expired: bool = False) -> x509.Certificate:
        """Another certificate of the issuing CA, signed by the root, not used by anything the lab issues: renewed
        with a new key (``new_key``), or an older certificate of the same key that expired (``expired``)."""
        now = _now()
        key = self._new_key() if new_key else self.issuing_key
        start, end = (now - dt.timedelta(days=1830), now - dt.timedelta(days=5)) if expired \
            else (now - _BACKDATE, now + dt.timedelta(days=1825))
        return sign(self._builder(_name(ISSUING_CA_NAME), key, self.root_cert, start, end, crl="root.crl",
                                  aia="root.crt")
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(self._ca_usage(), critical=True), self.root_key, self.signature_hash)

    def _builder(self, subject: x509.Name, key, issuer: x509.Certificate, start, end,
                 *, crl: str, aia: str) -> x509.CertificateBuilder:
        """Common part of every non-root certificate: names, dates, key ids, CDP and AIA."""
        issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
                               critical=False)
                .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(u) for u in self._locations(issuer, crl, "cdp")],
                    relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
                .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u))
                    for u in self._locations(issuer, aia, "aia")]), critical=False))

    def _leaf(self, fqdn: str, key, ekus: list[x509.ObjectIdentifier], *, ou: str | None,
              days: int = 365, expired: bool = False) -> x509.Certificate:
        now = _now()
        start, end = (now - dt.timedelta(days=days), now - dt.timedelta(days=1)) if expired \
            else (now - _BACKDATE, now + dt.timedelta(days=days))
        builder = (self._builder(_name(fqdn, ou=ou), key, self.issuing_cert, start, end,
                                 crl="issuing.crl", aia="issuing.crt")
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=True, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False))
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        return sign(builder, self.issuing_key, self.signature_hash)

    def _make_provisioning(self):
        f = self.faults
        ekus = ([ExtendedKeyUsageOID.SERVER_AUTH] if f.provisioning_server_auth else []) + \
               ([AMT_PROVISIONING_OID] if f.provisioning_amt_oid else [])
        key = self._new_key(f.provisioning_key_bits)
        cn = f"{self.site_server_fqdn.split('.')[0]}.{f.provisioning_domain}" if f.provisioning_domain \
            else self.site_server_fqdn
        return key, self._leaf(cn, key, ekus, ou=CLIENT_SETUP_OU if f.provisioning_ou else None,
                               days=730, expired=f.expired_provisioning)

    def provisioning_variant(self) -> x509.Certificate:
        """The provisioning certificate this one renewed: the same subject, key usage and markers, issued by the
        issuing CA two years before, expired five days ago (an administrator renewing it leaves it in the store)."""
        now = _now()
        key = self._new_key()
        cert = self.provisioning_cert
        builder = self._builder(cert.subject, key, self.issuing_cert, now - dt.timedelta(days=735),
                                now - dt.timedelta(days=5), crl="issuing.crl", aia="issuing.crt")
        for ext in cert.extensions:
            if not isinstance(ext.value, (x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier,
                                          x509.CRLDistributionPoints, x509.AuthorityInformationAccess)):
                builder = builder.add_extension(ext.value, critical=ext.critical)
        return sign(builder, self.issuing_key, self.signature_hash)

    # ------------------------------------------------------------------ devices
    def _device_key(self, fqdn: str) -> tuple[rsa.RSAPrivateKey, Path]:
        """A key from the shared pool (see the module docstring), created on first use."""
        index = int.from_bytes(hashlib.sha256(fqdn.encode()).digest()[:4], "big") % self.device_key_pool
        path = self.dir / "devices" / f"device-key-{index}.pem"
        if not self._device_keys:
            self._device_keys = [None] * self.device_key_pool  # type: ignore[list-item]
        if self._device_keys[index] is None:
            if path.exists():
                self._device_keys[index] = serialization.load_pem_private_key(path.read_bytes(), None)
            else:
                self._device_keys[index] = self._new_key()
                _write_atomic(path, _key_pem(self._device_keys[index]), 0o600)
        return self._device_keys[index], path

    def issue_web_server_cert(self, fqdn: str, *, days: int = 365) -> tuple[Path, Path]:
        """Issue the TLS certificate of AMT device ``fqdn`` (serverAuth, SAN dNSName = fqdn).

        Returns ``(cert_path, key_path)``; the certificate file holds the leaf then the issuing
        CA (the chain a TLS server sends). The key path is a pool key shared with other devices.
        """
        key, key_path = self._device_key(fqdn)
        cert = self._leaf(fqdn, key, [ExtendedKeyUsageOID.SERVER_AUTH], ou=None, days=days)
        cert_path = self.dir / "devices" / f"{fqdn}.pem"
        _write_atomic(cert_path, _cert_pem(cert) + _cert_pem(self.issuing_cert))
        return cert_path, key_path

    # ------------------------------------------------------------------ the lab's own servers
    infrastructure_root_path = property(lambda self: self.dir / "infrastructure-root.pem")

    def issue_infrastructure_cert(self, fqdn: str, *, days: int = 365) -> tuple[Path, Path]:
        """The TLS certificate of a lab server that is not AMT (WinRM of the site server, the CA host, the
        console host, in-band PCs): :meth:`issue_web_server_cert`, or with ``infrastructure_ca`` one from the
        SHA-256 ``VPROLAB Infrastructure TLS CA``, so that what the 2009 PKI changes stays where it is modelled."""
        if not self.infrastructure_ca:
            return self.issue_web_server_cert(fqdn, days=days)
        key, ca = self._load_or_make("infrastructure-root", self._make_infrastructure_root)
        leaf_key, key_path = self._device_key(fqdn)
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(_name(fqdn)).issuer_name(ca.subject)
                .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - _BACKDATE).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(key, hashes.SHA256()))
        cert_path = self.dir / "devices" / f"{fqdn}.infrastructure.pem"
        _write_atomic(cert_path, _cert_pem(cert) + _cert_pem(ca))
        return cert_path, key_path

    def _make_infrastructure_root(self):
        key, now = self._new_key(), _now()
        name = _name("VPROLAB Infrastructure TLS CA")
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - _BACKDATE).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(self._ca_usage(), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert
    # ------------------------------------------------------------------ hashes
    def root_sha256(self) -> str:
        """SHA-256 of the root certificate (DER), lowercase hex: an AMT trusted-root hash."""
        return hashlib.sha256(self.root_cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def root_sha1(self) -> str:
        """SHA-1 of the root certificate (DER), lowercase hex (older AMT firmware lists)."""
        return hashlib.sha1(self.root_cert.public_bytes(serialization.Encoding.DER)).hexdigest()
