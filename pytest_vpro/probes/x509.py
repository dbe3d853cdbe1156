"""Certificate and CRL facts for the checks (guide Stage 1 and 3, docs/protocols.md "Provisioning certificate rules").

Pure functions over ``cryptography`` objects, plus :func:`download` / :func:`fetch_crl`, the network
calls (HTTP GET, or an LDAP read of an ``ldap:///`` location, each with a timeout and a size bound).
References: RFC 5280 §4.1.2.5 (validity),
§4.2.1.9 (basicConstraints), §4.2.1.12 (extendedKeyUsage), §4.2.1.13 (cRLDistributionPoints),
§4.2.2.1 (authorityInfoAccess), §5 (CRLs), §6 (path validation); RFC 4516 (LDAP URLs).

SHA-1: the enterprise PKI of the guide's time signs with SHA-1 (Windows Server 2003/2008 CAs; AMT accepts SHA-1
roots until ME 15/16; docs/protocols.md, "X.509, the enterprise PKI"). ``cryptography`` refuses SHA-1 in
``verify_directly_issued_by`` and in its path verifier, so signatures are checked here with the issuer's public key
over the TBS bytes, and a
path with a SHA-1 signature is validated by :func:`verify_chain`'s own RFC 5280 §6 walk. A SHA-1 signature is a
fact (:func:`signature_hash`, in :func:`summary`), never by itself a failure.

AMT's provisioning certificate rules (docs/protocols.md): EKU serverAuth plus the Intel
AMT OID 2.16.840.1.113741.1.2.3, or the subject OU exactly ``Intel(R) Client Setup
Certificate`` (case-sensitive); every key in the chain at most 2048 bits; all dates valid;
the leaf's domain suffix equal to the client's DNS suffix; the chain ending at a root whose
hash is in the device's trusted-root list.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import httpclient
from .errors import ProbeError, Redirected, ReplyTooLarge, Unreachable

AMT_PROVISIONING_OID = x509.ObjectIdentifier("2.16.840.1.113741.1.2.3")
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_SETUP_OU = "Intel(R) Client Setup Certificate"
AMT_MAX_KEY_BITS = 2048
MAX_CRL_BYTES = 10 * 1024 * 1024
UTC = dt.timezone.utc


class CrlProblem(ProbeError):
    """A CRL (or an AIA certificate) could not be used; ``kind`` is one of unreachable, http-status,
    too-large, redirected, tls, unsupported, unparsable, not-found (an LDAP location without the object or the
    value), expired, not-yet-valid, bad-signature."""

    def __init__(self, kind: str, url: str, detail: str) -> None:
        super().__init__(f"{kind}: {url}: {detail}")
        self.kind, self.url, self.detail = kind, url, detail


class ChainProblem(Exception):
    """Path validation (RFC 5280 §6) failed."""


# --------------------------------------------------------------------------- loading

def load_chain(data: bytes) -> list[x509.Certificate]:
    """All certificates in PEM ``data`` (in file order), or the one DER certificate."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _ext(cert: x509.Certificate | x509.CertificateRevocationList, cls):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def signature_hash(obj: x509.Certificate | x509.CertificateRevocationList) -> str:
    """The hash of ``obj``'s signature, lower case ("sha1", "sha256"), or the algorithm's name when it has none
    that ``cryptography`` knows (Ed25519: "ed25519")."""
    try:
        algorithm = obj.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if algorithm is not None:
        return algorithm.name
    return getattr(obj.signature_algorithm_oid, "_name", None) or obj.signature_algorithm_oid.dotted_string


def is_sha1_signed(obj: x509.Certificate | x509.CertificateRevocationList) -> bool:
    return signature_hash(obj) == "sha1"


def signed_by(obj: x509.Certificate | x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key made ``obj``'s signature (a certificate or a CRL), SHA-1 included: the
    signature checked over the TBS bytes with the issuer's public key (RFC 5280 §4.1.1.3, §5.1.1.3)."""
    tbs = obj.tbs_certificate_bytes if isinstance(obj, x509.Certificate) else obj.tbs_certlist_bytes
    try:
        key = issuer.public_key()
        # Parameters that do not fit the key (None, another padding) raise TypeError or ValueError, caught below.
        algorithm, params = obj.signature_hash_algorithm, obj.signature_algorithm_parameters
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(obj.signature, tbs, params, algorithm)  # type: ignore[arg-type]
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(obj.signature, tbs, params)  # type: ignore[arg-type]
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(obj.signature, tbs)
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(obj.signature, tbs, algorithm)  # type: ignore[arg-type]
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    return cert.issuer == issuer.subject and signed_by(cert, issuer)


def is_self_signed(cert: x509.Certificate) -> bool:
    return _issued_by(cert, cert)


def build_chain(leaf: x509.Certificate, pool: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """``[leaf, issuer, ..., top]`` following issuer names and signatures through ``pool``.

    Stops at a self-signed certificate or when no issuer is found (the caller then sees an
    incomplete chain: the last element is not self-signed). Does not judge dates or keys.
    """
    pool = list(pool)
    chain = [leaf]
    while not is_self_signed(chain[-1]) and len(chain) <= len(pool) + 1:
        issuer = next((c for c in pool if c not in chain and _issued_by(chain[-1], c)), None)
        if issuer is None:
            break
        chain.append(issuer)
    return chain


# --------------------------------------------------------------------------- facts

def key_bits(cert: x509.Certificate) -> int | None:
    """Public key size in bits (RSA modulus, EC curve size); None for key types without one."""
    return getattr(cert.public_key(), "key_size", None)


def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints cA (RFC 5280 §4.2.1.9)."""
    bc = _ext(cert, x509.BasicConstraints)
    return bool(bc and bc.ca)


def validity_problems(cert: x509.Certificate, now: dt.datetime | None = None) -> list[str]:
    """Empty when ``now`` lies inside notBefore..notAfter (RFC 5280 §4.1.2.5)."""
    now = now or dt.datetime.now(UTC)
    problems = []
    if now < cert.not_valid_before_utc:
        problems.append(f"not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        problems.append(f"expired on {cert.not_valid_after_utc.isoformat()}")
    return problems


def ekus(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    value = _ext(cert, x509.ExtendedKeyUsage)
    return list(value) if value else []


def has_eku(cert: x509.Certificate, oid: x509.ObjectIdentifier | str) -> bool:
    oid = x509.ObjectIdentifier(oid) if isinstance(oid, str) else oid
    return oid in ekus(cert)


def subject_ous(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]


def has_amt_provisioning_marker(cert: x509.Certificate) -> bool:
    """serverAuth + AMT OID in the EKU, or an OU exactly "Intel(R) Client Setup Certificate"."""
    if has_eku(cert, SERVER_AUTH) and has_eku(cert, AMT_PROVISIONING_OID):
        return True
    return CLIENT_SETUP_OU in subject_ous(cert)


def dns_names(cert: x509.Certificate) -> list[str]:
    san = _ext(cert, x509.SubjectAlternativeName)
    return san.get_values_for_type(x509.DNSName) if san else []


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def domain_suffix(cert: x509.Certificate) -> str | None:
    """The DNS suffix of the certificate's host name (CN, else first SAN dNSName), lowercase.

    ``sccm01.vprolab.test`` -> ``vprolab.test``; None when the name has no dot.
    """
    name = common_name(cert) or next(iter(dns_names(cert)), None)
    if not name or "." not in name:
        return None
    return name.rstrip(".").split(".", 1)[1].lower()


def matches_domain(cert: x509.Certificate, domain: str) -> bool:
    """True when the certificate's host name lies in ``domain`` (AMT's suffix rule)."""
    domain = domain.rstrip(".").lower()
    names = [n for n in [common_name(cert), *dns_names(cert)] if n]
    return any(n.rstrip(".").lower().endswith("." + domain) for n in names)


def fingerprint(cert: x509.Certificate, algorithm: str = "sha256") -> str:
    """Hash of the DER certificate, lowercase hex ("sha1" or "sha256")."""
    if algorithm not in ("sha1", "sha256"):
        raise ValueError(f"unsupported fingerprint algorithm {algorithm!r}")
    return hashlib.new(algorithm, cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def cdp_urls(cert: x509.Certificate) -> list[str]:
    """URIs of the cRLDistributionPoints extension (RFC 5280 §4.2.1.13)."""
    cdp = _ext(cert, x509.CRLDistributionPoints)
    return [n.value for dp in (cdp or []) for n in (dp.full_name or [])
            if isinstance(n, x509.UniformResourceIdentifier)]


def aia_urls(cert: x509.Certificate, method=x509.AuthorityInformationAccessOID.CA_ISSUERS) -> list[str]:
    """caIssuers (default) or OCSP URIs of authorityInfoAccess (RFC 5280 §4.2.2.1)."""
    aia = _ext(cert, x509.AuthorityInformationAccess)
    return [d.access_location.value for d in (aia or [])
            if d.access_method == method and isinstance(d.access_location, x509.UniformResourceIdentifier)]


def summary(cert: x509.Certificate) -> dict:
    """Evidence for a report: names, serial, dates, key size, EKUs, CDP/AIA URLs, fingerprints."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key_bits": key_bits(cert),
        "is_ca": is_ca(cert),
        "ekus": [oid.dotted_string for oid in ekus(cert)],
        "dns_names": dns_names(cert),
        "signature": signature_hash(cert),
        "cdp": cdp_urls(cert),
        "aia": aia_urls(cert),
        "sha1": fingerprint(cert, "sha1"),
        "sha256": fingerprint(cert, "sha256"),
    }


# --------------------------------------------------------------------------- CRLs

def parse_crl(data: bytes, url: str = "<bytes>") -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CrlProblem("unparsable", url, str(exc)) from None


def check_crl(crl: x509.CertificateRevocationList, *, url: str = "<crl>",
              issuer: x509.Certificate | None = None, now: dt.datetime | None = None) -> None:
    """Raise :class:`CrlProblem` if ``crl`` is outside thisUpdate..nextUpdate (RFC 5280 §5.1.2.4-5)
    or, given ``issuer``, not signed by it."""
    now = now or dt.datetime.now(UTC)
    if crl.last_update_utc > now:
        raise CrlProblem("not-yet-valid", url, f"thisUpdate {crl.last_update_utc.isoformat()}")
    if crl.next_update_utc is not None and crl.next_update_utc < now:
        raise CrlProblem("expired", url, f"nextUpdate {crl.next_update_utc.isoformat()}")
    if issuer is not None and (crl.issuer != issuer.subject or not signed_by(crl, issuer)):
        raise CrlProblem("bad-signature", url, f"not signed by {issuer.subject.rfc4514_string()}")


@dataclass(frozen=True)
class LdapLocation:
    """An LDAP URL of a CDP or AIA (RFC 4516): ``ldap://[host[:port]]/dn?attribute?scope?filter``. AD CS writes
    ``ldap:///CN=<CA>,CN=<host>,CN=CDP,CN=Public%20Key%20Services,...?certificateRevocationList?base?
    objectClass=cRLDistributionPoint``; no host means "the directory of the estate"."""

    host: str
    dn: str
    attribute: str
    scope: str
    filter: str


def parse_ldap_url(url: str) -> LdapLocation:
    parts = urlsplit(url)
    if parts.scheme.lower() != "ldap":
        raise CrlProblem("unsupported", url, "not an ldap:// URL")
    fields = (parts.query.split("?") + ["", "", ""])[:3] if parts.query else ["", "", ""]
    attribute = unquote(fields[0]).split(",")[0].split(";")[0].strip()
    dn = unquote(parts.path.lstrip("/"))
    if not dn or not attribute:
        raise CrlProblem("unsupported", url, "an ldap:// location needs a DN and an attribute (RFC 4516)")
    scope = (fields[1] or "base").lower()
    if scope not in ("base", "one", "sub"):
        raise CrlProblem("unsupported", url, f"unknown LDAP scope {scope!r}")
    ldap_filter = unquote(fields[2]) or "(objectClass=*)"
    if not ldap_filter.startswith("("):
        ldap_filter = f"({ldap_filter})"
    return LdapLocation(unquote(parts.netloc), dn, attribute, {"sub": "subtree"}.get(scope, scope), ldap_filter)


#: ``read(location) -> list[bytes]``: the values of ``location.attribute`` (the caller's directory connection,
#: e.g. :meth:`pytest_vpro.facts.facts.network.download`); raises ProbeError.
LdapReader = Callable[[LdapLocation], list]


def download(url: str, timeout: float = 5.0, *, max_bytes: int = MAX_CRL_BYTES,
             session: requests.Session | None = None, connect_timeout: float | None = None,
             verify: bool | str = True, ldap_read: LdapReader | None = None) -> bytes:
    """GET a CDP or AIA URL within one deadline (connect + whole reply) and a size bound, never following a
    redirect; raises :class:`CrlProblem` (unreachable, http-status, too-large, redirected, tls, unparsable,
    not-found, or unsupported for a scheme other than http/https/ldap). ``verify``: the CA bundle an https
    location is verified against (the estate's ``pki.trusted_roots``), or True for the system's.

    ``ldap://`` locations are read through ``ldap_read`` (the estate's directory, its credentials and timeouts);
    without one they are unsupported."""
    if url.lower().startswith("ldap://"):
        if ldap_read is None:
            raise CrlProblem("unsupported", url, "ldap locations are read only with the directory's credentials")
        return _read_ldap(url, ldap_read, max_bytes)
    if not url.lower().startswith(("http://", "https://")):
        raise CrlProblem("unsupported", url, "only http, https and ldap locations are fetched")
    try:
        reply = httpclient.get(url, timeout=timeout, connect_timeout=connect_timeout, max_bytes=max_bytes,
                               verify=verify, proxies=httpclient.proxies_for(url), session=session)
    except Redirected as exc:
        raise CrlProblem("redirected", url, f"HTTP {exc.status} to {exc.location or '(no Location)'}; "
                                            "redirects are not followed") from None
    except ReplyTooLarge:
        raise CrlProblem("too-large", url, f"more than {max_bytes} bytes") from None
    except httpclient.TlsFailed as exc:
        raise CrlProblem("tls", url, exc.reason) from None
    except Unreachable as exc:
        raise CrlProblem("unreachable", url, str(exc)) from None
    except ProbeError as exc:
        raise CrlProblem("unparsable", url, str(exc)) from None
    if reply.status != 200:
        raise CrlProblem("http-status", url, f"HTTP {reply.status}")
    return reply.body


def _read_ldap(url: str, read: LdapReader, max_bytes: int) -> bytes:
    location = parse_ldap_url(url)
    try:
        values = read(location)
    except CrlProblem:
        raise
    except ProbeError as exc:
        kind = "not-found" if type(exc).__name__ == "NoSuchObject" else "unreachable"
        raise CrlProblem(kind, url, str(exc)) from None
    values = [bytes(v) for v in values or [] if v]
    if not values:
        raise CrlProblem("not-found", url, f"{location.dn} has no {location.attribute}")
    if len(values[0]) > max_bytes:
        raise CrlProblem("too-large", url, f"more than {max_bytes} bytes")
    return values[0]


def fetch_crl(url: str, timeout: float = 5.0, *, issuer: x509.Certificate | None = None,
              now: dt.datetime | None = None, max_bytes: int = MAX_CRL_BYTES,
              session: requests.Session | None = None,
              ldap_read: LdapReader | None = None) -> x509.CertificateRevocationList:
    """GET a CRL (DER or PEM), bounded in time and size, and check dates (and signature).

    HTTPS URLs are verified (requests' default); lab and AD CS CRLs are plain HTTP per
    RFC 5280 §4.2.1.13.
    """
    crl = parse_crl(download(url, timeout, max_bytes=max_bytes, session=session, ldap_read=ldap_read), url)
    check_crl(crl, url=url, issuer=issuer, now=now)
    return crl


def parse_certificate(data: bytes, url: str = "<bytes>") -> x509.Certificate:
    """One certificate, DER or PEM (an AIA caIssuers file, RFC 5280 §4.2.2.1); CrlProblem if unparsable.

    A caIssuers location may also serve a PKCS#7 "certs-only" bundle; the first certificate is taken."""
    try:
        if data.lstrip().startswith(b"-----BEGIN CERTIFICATE"):
            return x509.load_pem_x509_certificate(data)
        try:
            return x509.load_der_x509_certificate(data)
        except ValueError:
            return pkcs7.load_der_pkcs7_certificates(data)[0]
    except (ValueError, IndexError) as exc:
        raise CrlProblem("unparsable", url, str(exc) or "not a certificate") from None


def fetch_certificate(url: str, timeout: float = 5.0, **kwargs) -> x509.Certificate:
    """GET an AIA caIssuers URL and parse the certificate it serves."""
    return parse_certificate(download(url, timeout, **kwargs), url)


def chain_via_aia(cert: x509.Certificate, fetch, max_depth: int = 6) -> tuple[list[x509.Certificate], list[str]]:
    """``[cert, issuer, ...]`` fetched through each certificate's AIA caIssuers URLs (``fetch(url) -> bytes``,
    raising :class:`CrlProblem`) up to a self-signed root, and what went wrong on the way (an unreachable URL, a
    certificate that did not issue the one below it, no AIA at all)."""
    chain, problems = [cert], []
    while not is_self_signed(chain[-1]) and len(chain) <= max_depth:
        child, parent = chain[-1], None
        urls = aia_urls(child)
        if not urls:
            problems.append(f"{common_name(child)} names no AIA caIssuers URL")
            break
        for url in urls:
            try:
                candidate = parse_certificate(fetch(url), url)
            except CrlProblem as exc:
                problems.append(str(exc))
                continue
            if _issued_by(child, candidate):
                parent = candidate
                break
            problems.append(f"{url} serves {common_name(candidate)}, which did not issue {common_name(child)}")
        if parent is None:
            break
        chain.append(parent)
    return chain, problems


# --------------------------------------------------------------------------- Windows certificate stores

CERT_CERT_PROP_ID = 32  # the encoded certificate itself

#: Where a computer's physical certificate stores are in its registry (docs/protocols.md, "Windows certificate
#: stores"): the computer's own (CERT_SYSTEM_STORE_LOCAL_MACHINE), the ones Group Policy writes
#: (CERT_SYSTEM_STORE_LOCAL_MACHINE_GROUP_POLICY, wincrypt.h CERT_GROUP_POLICY_SYSTEM_STORE_REGPATH) and the ones
#: autoenrollment downloads from the directory (CERT_SYSTEM_STORE_LOCAL_MACHINE_ENTERPRISE).
STORE_LOCATIONS = {
    "registry": r"HKLM\SOFTWARE\Microsoft\SystemCertificates",
    "group policy": r"HKLM\SOFTWARE\Policies\Microsoft\SystemCertificates",
    "enterprise": r"HKLM\SOFTWARE\Microsoft\EnterpriseCertificates",
}
#: The physical stores Windows opens for a computer's logical (system) store, as (location, store name):
#: "System Store Locations", CERT_SYSTEM_STORE_LOCAL_MACHINE (MY .Default; Root .Default .AuthRoot .GroupPolicy
#: .Enterprise [.SmartCard, not in the registry]; Trust and CA .Default .GroupPolicy .Enterprise); NTAuth is the
#: Enterprise store autoenrollment fills from the forest's NTAuthCertificates object.
LOGICAL_STORES = {
    "MY": (("registry", "MY"),),
    "ROOT": (("registry", "ROOT"), ("registry", "AuthRoot"), ("group policy", "Root"), ("enterprise", "Root")),
    "CA": (("registry", "CA"), ("group policy", "CA"), ("enterprise", "CA")),
    "TRUST": (("registry", "Trust"), ("group policy", "Trust"), ("enterprise", "Trust")),
    "NTAUTH": (("enterprise", "NTAuth"),),
}
#: The names the Certificates snap-in shows, and its names of the locations.
STORE_TITLES = {"MY": "Personal", "ROOT": "Trusted Root Certification Authorities",
                "AUTHROOT": "Third-Party Root Certification Authorities",
                "CA": "Intermediate Certification Authorities", "TRUST": "Enterprise Trust", "NTAUTH": "NTAuth"}
LOCATION_TITLES = {"registry": "Local Computer", "group policy": "Group Policy", "enterprise": "Enterprise"}


class PhysicalStore(NamedTuple):
    location: str  # a key of STORE_LOCATIONS
    name: str      # the store's key name there (ROOT, Root, CA, ...)
    key: str       # the registry key holding its certificates, one subkey (the SHA-1 thumbprint) each

    @property
    def title(self) -> str:
        """As the Certificates snap-in's physical view names it: ``Trusted Root Certification Authorities
        (Group Policy)``."""
        return f"{STORE_TITLES.get(self.name.upper(), self.name)} ({LOCATION_TITLES[self.location]})"


def physical_stores(store: str) -> list[PhysicalStore]:
    """The physical stores behind the computer's logical store ``store`` (MY, ROOT, CA, TRUST, NTAUTH; any other
    name: the computer's registry store of that name alone), in the order Windows lists them."""
    parts = LOGICAL_STORES.get(store.upper(), (("registry", store),))
    return [PhysicalStore(where, name, rf"{STORE_LOCATIONS[where]}\{name}\Certificates") for where, name in parts]


def parse_store_blob(blob: bytes) -> x509.Certificate:
    """The certificate in a Windows registry certificate store ``Blob`` value
    (``<store location>\\<store>\\Certificates\\<SHA-1>``, :func:`physical_stores`): the serialized store
    element (``CertSerializeCertificateStoreElement``), a sequence of properties, each ``u32 id, u32 reserved
    (1), u32 length, value`` little-endian, one of which, id 32, is the DER certificate (docs/protocols.md,
    "Windows certificate stores": Wine's crypt32 ``serialize.c`` and ``regstore.c``)."""
    offset = 0
    while offset + 12 <= len(blob):
        prop_id, _reserved, length = struct.unpack_from("<III", blob, offset)
        value = blob[offset + 12: offset + 12 + length]
        if len(value) != length:
            break
        if prop_id == CERT_CERT_PROP_ID:
            return x509.load_der_x509_certificate(value)
        offset += 12 + length
    raise ValueError(f"no certificate (property {CERT_CERT_PROP_ID}) in a {len(blob)}-byte store blob")


def make_store_blob(cert: x509.Certificate) -> bytes:
    """The ``Blob`` Windows writes for ``cert``: its SHA-1 hash property (id 3) and the certificate (id 32)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    sha1 = hashlib.sha1(der).digest()
    return (struct.pack("<III", 3, 1, len(sha1)) + sha1
            + struct.pack("<III", CERT_CERT_PROP_ID, 1, len(der)) + der)


def is_revoked(crl: x509.CertificateRevocationList, serial: int) -> bool:
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


def revocation_reason(crl: x509.CertificateRevocationList, serial: int) -> x509.ReasonFlags | None:
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    if entry is None:
        return None
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return x509.ReasonFlags.unspecified


# --------------------------------------------------------------------------- path validation

def verify_chain(leaf: x509.Certificate, chain: Sequence[x509.Certificate],
                 roots: Sequence[x509.Certificate], now: dt.datetime | None = None) -> list[x509.Certificate]:
    """Validate ``leaf`` up to one of ``roots`` (RFC 5280 §6) with cryptography's verifier.

    Signatures, dates, basicConstraints/keyUsage of the CAs and name chaining are checked by
    ``cryptography.x509.verification`` with its Web PKI CA profile; the end-entity profile is
    ``permit_all`` because what the leaf must carry (serverAuth, AMT OID, OU) is judged by
    the checks themselves, and a provisioning certificate may legally lack serverAuth. Key
    sizes above 2048 bits pass here: AMT's limit is the separate :func:`key_bits` check.
    A path with a SHA-1 signature, which that verifier refuses, is validated by :func:`_walk_path` instead.
    Revocation is not checked here (see :func:`fetch_crl`). Returns the validated chain,
    leaf first; raises :class:`ChainProblem`.
    """
    now = now or dt.datetime.now(UTC)
    path = build_chain(leaf, [c for c in chain if c != leaf] + list(roots))
    if any(is_sha1_signed(c) for c in path if not is_self_signed(c)):
        return _walk_path(path, roots, now)
    builder = (verification.PolicyBuilder().store(verification.Store(list(roots)))
               .time(now)
               .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                   ee_policy=verification.ExtensionPolicy.permit_all()))
    try:
        verified = builder.build_client_verifier().verify(leaf, [c for c in chain if c != leaf])
    except verification.VerificationError as exc:
        raise ChainProblem(str(exc)) from None
    return list(verified.chain)


def _walk_path(path: list[x509.Certificate], roots: Sequence[x509.Certificate],
               now: dt.datetime) -> list[x509.Certificate]:
    """RFC 5280 §6.1 over a path :func:`build_chain` found (signatures checked there, SHA-1 included): the top is
    one of ``roots``; every certificate within its dates; every issuer a CA (basicConstraints cA, keyCertSign
    when keyUsage is present) within its pathLenConstraint."""
    top = path[-1]
    der = serialization.Encoding.DER
    anchors = {r.public_bytes(der) for r in roots}
    if top.public_bytes(der) not in anchors:
        raise ChainProblem(f"{common_name(top) or top.subject.rfc4514_string()} was issued by "
                           f"{top.issuer.rfc4514_string()}, which is not among the trusted roots")
    for cert in path:
        for problem in validity_problems(cert, now):
            raise ChainProblem(f"{common_name(cert) or cert.subject.rfc4514_string()}: {problem}")
    for below, issuer in enumerate(path[1:]):
        name = common_name(issuer) or issuer.subject.rfc4514_string()
        bc = _ext(issuer, x509.BasicConstraints)
        if not (bc and bc.ca):
            raise ChainProblem(f"{name} issued a certificate but is not a CA (basicConstraints)")
        usage = _ext(issuer, x509.KeyUsage)
        if usage is not None and not usage.key_cert_sign:
            raise ChainProblem(f"{name} may not sign certificates (keyUsage without keyCertSign)")
        if bc.path_length is not None and below > bc.path_length:
            raise ChainProblem(f"{name} allows {bc.path_length} CA(s) below it (pathLenConstraint), the path has "
                               f"{below}")
    return path
