"""The lab DC's directory objects: OUs, users, groups, computers and their SPNs, security descriptors
(:class:`SambaDirectory`), and what an enterprise CA publishes under Public Key Services: certificate templates,
enrollment services, CA certificates and CRLs (:class:`PublicKeyServices`).

Sources: MS-ADTS 6.1.1.2 (computer objects), MS-DTYP 2.5.1 (SDDL), MS-CRTD 2.26 (template flags);
docs/protocols.md, "Active Directory objects for AMT" and "Provisioning certificate rules".
"""
from __future__ import annotations

import secrets
import struct
import subprocess
from collections.abc import Iterable

import ldap3
from cryptography import x509
from ldap3.protocol.microsoft import security_descriptor_control

from .samba_client import SYSTEM_PYTHON, SambaClient, SambaError, require

# Well-known GUIDs and flags (MS-ADTS 5.1.3.2.1 control access rights; MS-CRTD 2.26 name flags).
CERTIFICATE_ENROLLMENT = "0e10c968-78fb-11d2-90d4-00c04f79dc55"
CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT = 0x1
WORKSTATION_TRUST_ACCOUNT = 0x1000
NORMAL_ACCOUNT = 0x200
GROUP_GLOBAL_SECURITY = -2147483646  # groupType: ACCOUNT_GROUP | SECURITY_ENABLED (MS-ADTS 2.2.12)
ENCTYPES_RC4_AES = 0x1C  # msDS-SupportedEncryptionTypes: RC4-HMAC | AES128 | AES256 (MS-KILE 2.2.7)

# Security descriptor (binary, hex on stdin) -> SDDL, with Samba's own NDR parser (MS-DTYP 2.4.6).
_SD_TO_SDDL = r"""
import sys
from samba.dcerpc import security
from samba.ndr import ndr_unpack
sd = ndr_unpack(security.descriptor, bytes.fromhex(sys.stdin.read().strip()))
print(sd.as_sddl(security.dom_sid(sys.argv[1]) if len(sys.argv) > 1 else None))
"""


def sd_to_sddl(blob: bytes, domain_sid: str | None = None) -> str:
    """A binary security descriptor as SDDL, parsed by Samba's ``samba.dcerpc.security`` (system python3)."""
    argv = [require(SYSTEM_PYTHON), "-c", _SD_TO_SDDL] + ([domain_sid] if domain_sid else [])
    done = subprocess.run(argv, input=blob.hex(), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise SambaError(f"could not parse security descriptor: {done.stderr[-500:]}")
    return done.stdout.strip()


class SambaDirectory(SambaClient):
    """Accounts and containers of the domain, their SPNs and their ACLs."""

    def add_ou(self, dn: str) -> str:
        if not self.exists(dn):
            self._add(dn, "organizationalUnit", {})
        return dn

    def add_user(self, name: str, password: str, groups: Iterable[str] = (), *, ou_dn: str | None = None) -> str:
        dn = f"CN={name},{ou_dn or 'CN=Users,' + self.base_dn}"
        if not self.exists(dn):
            self._add(dn, "user", {"sAMAccountName": name, "userPrincipalName": f"{name}@{self.domain}",
                                   "unicodePwd": f'"{password}"'.encode("utf-16-le"),
                                   "userAccountControl": NORMAL_ACCOUNT})
        for group in groups:
            self.add_group_member(group, dn)
        return dn

    def add_group(self, name: str, *, ou_dn: str | None = None, group_type: int = GROUP_GLOBAL_SECURITY) -> str:
        dn = f"CN={name},{ou_dn or 'CN=Users,' + self.base_dn}"
        if not self.exists(dn):
            self._add(dn, "group", {"sAMAccountName": name, "groupType": group_type})
        return dn

    def add_group_member(self, group: str, member_dn: str) -> None:
        group_dn = group if "=" in group else self.account_dn(group)
        try:
            self.conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})
        except ldap3.core.exceptions.LDAPEntryAlreadyExistsResult:
            pass

    def add_computer(self, name: str, *, ou_dn: str | None = None, spns: Iterable[str] = (),
                     dns_host_name: str | None = None, with_keys: bool = True,
                     enctypes: int = ENCTYPES_RC4_AES, account: str | None = None) -> str:
        """A computer account (``NAME$``). ``with_keys`` sets a random password so the KDC can issue tickets
        for its SPNs and ``export_keytab`` can export them; nobody needs to know the password. The password
        costs about 15 ms per account (Samba derives the RC4 and AES keys); without it an add takes ~2 ms.
        ``account``: the sAMAccountName (default ``NAME$``, first 15 characters, as a domain join names it)."""
        dn = f"CN={name},{ou_dn or 'CN=Computers,' + self.base_dn}"
        attrs = {"sAMAccountName": account or f"{name[:15]}$", "userAccountControl": WORKSTATION_TRUST_ACCOUNT}
        if dns_host_name:
            attrs["dNSHostName"] = dns_host_name
        if spns := list(spns):
            attrs["servicePrincipalName"] = spns
        if with_keys:
            attrs["unicodePwd"] = f'"{secrets.token_urlsafe(24)}"'.encode("utf-16-le")
            attrs["msDS-SupportedEncryptionTypes"] = enctypes
        return self._add(dn, "computer", attrs)

    def amt_ou(self) -> str:
        return f"OU=AMT,{self.base_dn}"

    @staticmethod
    def amt_spns(fqdn: str, ports: Iterable[int] = (16992, 16993)) -> list[str]:
        """``HTTP/<fqdn>:<port>`` per port (docs/protocols.md, "Active Directory objects for AMT")."""
        return [f"HTTP/{fqdn}:{port}" for port in ports]

    @staticmethod
    def amt_account_name(fqdn: str) -> str:
        """The lab's sAMAccountName of the AMT object of ``fqdn``: ``<HOST (11)>-AMT$``. SCCM's naming has no
        public source; the lab's only has to differ from the OS's own account (``<HOST>$``), which the same
        domain holds: a domain's sAMAccountNames are unique."""
        return f"{fqdn.split('.')[0].upper()[:11]}-AMT$"

    def add_amt_account(self, fqdn: str, *, ou_dn: str | None = None, name: str | None = None,
                        ports: Iterable[int] = (16992, 16993)) -> str:
        """The account object the site server publishes for a provisioned AMT device: a computer named after
        the host (cn; its sAMAccountName :meth:`amt_account_name`: SCCM's exact naming is unconfirmed) in the
        AMT OU with the port SPNs, beside the OS's own computer account (:meth:`add_os_account`)."""
        return self.add_computer(name or fqdn.split(".")[0].upper(), ou_dn=ou_dn or self.amt_ou(),
                                 spns=self.amt_spns(fqdn, ports), dns_host_name=fqdn,
                                 account=self.amt_account_name(fqdn))

    def amt_account_dn(self, fqdn: str) -> str:
        return self.account_dn(self.amt_account_name(fqdn))

    @staticmethod
    def os_account_name(fqdn: str) -> str:
        """The cn of a Windows PC's own computer account: its host name, upper case, 15 characters (the
        sAMAccountName adds ``$``)."""
        return fqdn.split(".")[0].upper()[:15]

    def os_account_dn(self, fqdn: str) -> str:
        return self.account_dn(self.os_account_name(fqdn) + "$")

    def add_os_account(self, fqdn: str) -> str:
        """A Windows PC's own computer account, as joining the domain makes it: ``CN=<HOST>,CN=Computers``,
        ``<HOST>$`` (:meth:`os_account_name`), dNSHostName its FQDN. No keys (~2 ms an add): nothing in the lab
        authenticates to it."""
        return self.add_computer(self.os_account_name(fqdn), dns_host_name=fqdn, with_keys=False)

    def add_winrm_host(self, name: str, fqdn: str) -> str:
        """A Windows host's computer account (``NAME$``) with the SPN WinRM authenticates to, ``HTTP/<fqdn>``
        (no port), and ``HOST/<fqdn>``, as a domain member has it. Over LDAP: made while the directory answers."""
        return self.add_computer(name, spns=[f"HOST/{fqdn}", f"HTTP/{fqdn}"], dns_host_name=fqdn)

    def set_spns(self, dn: str, spns: Iterable[str]) -> None:
        self.conn.modify(dn, {"servicePrincipalName": [(ldap3.MODIFY_REPLACE, list(spns))]})

    def get_spns(self, dn: str) -> list[str]:
        return [v.decode() for v in self.read(dn, ["servicePrincipalName"]).get("servicePrincipalName", [])]

    # ---------------------------------------------------------------------------------------------------------
    # Security descriptors
    # ---------------------------------------------------------------------------------------------------------
    def grant(self, dn: str, sddl_aces: str) -> None:
        """Add ACEs (SDDL, e.g. ``(A;CI;GA;;;S-1-5-21-...)``) to ``dn``'s DACL with ``samba-tool dsacl set``.
        Inheritable ACEs are propagated to existing children by Samba."""
        self.samba_tool("dsacl", "set", f"--objectdn={dn}", f"--sddl={sddl_aces}", "-H", str(self.sam_ldb))

    def grant_full_control(self, dn: str, account: str, *, inherit: bool = True) -> None:
        """Full control for ``account`` on ``dn`` (and, with ``inherit``, on every object under it)."""
        self.grant(dn, f"(A;{'CI' if inherit else ''};GA;;;{self.sid_of(account)})")

    def security_descriptor(self, dn: str) -> bytes:
        """The owner, group and DACL of ``dn`` (SD flags control 0x7, MS-ADTS 3.1.1.3.4.1.11)."""
        values = self.read(dn, ["nTSecurityDescriptor"], controls=security_descriptor_control(sdflags=0x07))
        return values["nTSecurityDescriptor"][0]

    def sddl(self, dn: str) -> str:
        """``dn``'s security descriptor as SDDL, parsed by Samba's own NDR code (``samba.dcerpc.security``)."""
        return sd_to_sddl(self.security_descriptor(dn), self.domain_sid)


class PublicKeyServices(SambaClient):
    """``CN=Public Key Services,CN=Services,<configuration>``: what AD CS and ``certutil -dspublish`` write."""

    @property
    def templates_dn(self) -> str:
        return f"CN=Certificate Templates,CN=Public Key Services,CN=Services,{self.config_dn}"

    def add_cert_template(self, name: str = "IntelAMTWebServer", *, eku: Iterable[str] = ("1.3.6.1.5.5.7.3.1",),
                          enrollee_supplies_subject: bool = True, enroll_for: Iterable[str] = ("SCCM01$",),
                          display_name: str | None = None, enrollment_flag: int = 0, ra_signature: int = 0) -> str:
        """A ``pKICertificateTemplate`` modelled on the Web Server template CM2007 SP1 used, with Read and the
        Certificate-Enrollment extended right for each account in ``enroll_for``. ``enrollment_flag`` is
        msPKI-Enrollment-Flag (MS-CRTD 2.26: CT_FLAG_PEND_ALL_REQUESTS 0x2 is "CA certificate manager
        approval"), ``ra_signature`` msPKI-RA-Signature (authorized signatures required)."""
        for container in (f"CN=Public Key Services,CN=Services,{self.config_dn}", self.templates_dn):
            if not self.exists(container):
                self._add(container, "container", {})
        dn = f"CN={name},{self.templates_dn}"
        eku = list(eku)
        self._add(dn, "pKICertificateTemplate", {
            "displayName": display_name or name, "flags": 0x20240, "revision": 100,
            "pKIDefaultKeySpec": 1, "pKIMaxIssuingDepth": 0, "pKIKeyUsage": b"\xa0\x00",
            "pKIExtendedKeyUsage": eku, "msPKI-Certificate-Application-Policy": eku,
            "pKIExpirationPeriod": struct.pack("<q", -2 * 365 * 86400 * 10**7),
            "pKIOverlapPeriod": struct.pack("<q", -6 * 7 * 86400 * 10**7),
            "pKICriticalExtensions": "2.5.29.15", "pKIDefaultCSPs": "1,Microsoft RSA SChannel Cryptographic Provider",
            "msPKI-Certificate-Name-Flag": CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT if enrollee_supplies_subject else 0,
            "msPKI-Enrollment-Flag": enrollment_flag, "msPKI-Private-Key-Flag": 0, "msPKI-Minimal-Key-Size": 2048,
            "msPKI-RA-Signature": ra_signature, "msPKI-Template-Schema-Version": 1, "msPKI-Template-Minor-Revision": 1,
        })
        aces = "".join(f"(A;;RPLCLORC;;;{sid})(OA;;CR;{CERTIFICATE_ENROLLMENT};;{sid})"
                       for sid in (self.sid_of(account) for account in enroll_for))
        if aces:
            self.grant(dn, aces)
        return dn

    @property
    def enrollment_services_dn(self) -> str:
        return f"CN=Enrollment Services,CN=Public Key Services,CN=Services,{self.config_dn}"

    def add_enrollment_service(self, name: str, dns_host_name: str, ca_certificate: bytes,
                               templates: Iterable[str]) -> str:
        """The ``pKIEnrollmentService`` an enterprise CA publishes (MS-CRTD 2.1, MS-ADTS): its host, its CA
        certificate (DER) and the certificate templates it issues (``certificateTemplates``)."""
        for container in (f"CN=Public Key Services,CN=Services,{self.config_dn}", self.enrollment_services_dn):
            if not self.exists(container):
                self._add(container, "container", {})
        subject = x509.load_der_x509_certificate(ca_certificate).subject.rfc4514_string()
        dn = f"CN={name},{self.enrollment_services_dn}"
        attrs: dict = {"displayName": name, "dNSHostName": dns_host_name, "cACertificate": [ca_certificate],
                       "cACertificateDN": subject}
        if templates := list(templates):
            attrs["certificateTemplates"] = templates
        return self._add(dn, "pKIEnrollmentService", attrs)

    def add_certification_authority(self, container: str, name: str, ca_certificate: bytes) -> str:
        """A ``certificationAuthority`` under ``CN=<container>,CN=Public Key Services,CN=Services,<config>`` as
        ``certutil -dspublish`` writes it: ``container`` "Certification Authorities" (roots the forest trusts)
        or "AIA" (every CA certificate, intermediates included). The mandatory revocation lists are empty
        (one zero byte, as AD CS writes them)."""
        parent = f"CN={container},CN=Public Key Services,CN=Services,{self.config_dn}"
        for dn in (f"CN=Public Key Services,CN=Services,{self.config_dn}", parent):
            if not self.exists(dn):
                self._add(dn, "container", {})
        dn = f"CN={name},{parent}"
        if self.exists(dn):  # certutil adds the certificate to the object's cACertificate values
            self.conn.modify(dn, {"cACertificate": [(ldap3.MODIFY_ADD, [ca_certificate])]})
            return dn
        return self._add(dn, "certificationAuthority", {"cACertificate": [ca_certificate],
                                                         "authorityRevocationList": [b"\x00"],
                                                         "certificateRevocationList": [b"\x00"]})

    def publish_crl(self, dn: str, crl: bytes) -> str:
        """A CRL at ``dn`` (``CN=<CA>,CN=<CA host>,CN=CDP,CN=Public Key Services,CN=Services,<config>``) as AD CS
        publishes it: a ``cRLDistributionPoint`` whose ``certificateRevocationList`` is the DER CRL; published
        again, the value is replaced."""
        parents = dn.split(",", 1)[1]
        chain = []
        while parents.lower() != self.config_dn.lower() and parents.upper().startswith("CN="):
            chain.append(parents)
            parents = parents.split(",", 1)[1]
        for parent in reversed(chain):
            if not self.exists(parent):
                self._add(parent, "container", {})
        if self.exists(dn):
            self.conn.modify(dn, {"certificateRevocationList": [(ldap3.MODIFY_REPLACE, [crl])]})
            return dn
        return self._add(dn, "cRLDistributionPoint", {"certificateRevocationList": [crl]})
