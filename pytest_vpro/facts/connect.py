"""Credentials into sessions, once: the connector every facet asks for a WS-MAN, WinRM, LDAP, SMB or Kerberos
session.

Each credential of the environment file (``credentials.<name>``) is looked up in one place, with one message
when it is missing; each session a facet keeps is one fact of the core (``amt.session``, ``winrm.session.<host>``,
``ldap.connection``, ...), so it is opened once per run and never recorded (a session is not a fact a snapshot
can hold). Every session has the environment's deadlines and verifies TLS against ``pki.trusted_roots``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..environment import Client, Server
from ..probes import kerberos, smb, tls
from ..probes import ldap as ldap_probe
from ..probes.amt import AmtDevice
from ..probes.errors import ProbeError
from ..probes.winrm import WinRM, select_auth
from ..probes.wsman import DigestAuth, KerberosAuth, WsmanClient
from .core import key

if TYPE_CHECKING:
    from . import Facts

#: how each credential is named in a message
_LABELS = {"amt": "AMT", "winrm": "WinRM", "ldap": "LDAP", "smb": "SMB", "console": "console"}


class Connector:
    """Sessions of one target's facts (its AMT) and of the estate (WinRM, LDAP, Kerberos), each opened once."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    # ------------------------------------------------------------------ credentials
    def credential(self, name: str) -> Any:
        """``credentials.<name>`` of the environment file, or a :class:`ProbeError` that says it is missing."""
        cred = self.facts.env.credentials.get(name)
        if cred is None:
            raise ProbeError(f"no {_LABELS.get(name, name)} credential in the environment file (credentials.{name})")
        return cred

    @property
    def legacy_ciphers(self) -> str:
        """The OpenSSL cipher list toward AMT firmware that refuses the modern ones (:func:`tls.ciphers_of`)."""
        return tls.ciphers_of(self.facts.env)

    # ------------------------------------------------------------------ AMT over WS-MAN
    def wsman(self, auth: Any) -> WsmanClient:
        """A WS-MAN client to this client's AMT over TLS (``expected.ports.amt_https``) with ``auth``."""
        env = self.facts.env
        return WsmanClient(f"https://{self.facts.target.name}:{env.expected['ports']['amt_https']}/wsman", auth=auth,
                           ca_bundle=env.pki.get("trusted_roots"), timeout=env.timeouts["read"],
                           connect_timeout=env.timeouts["connect"], legacy_ciphers=self.legacy_ciphers)

    def amt(self) -> AmtDevice:
        """This client's AMT as the tool (``credentials.amt``: Digest, or Kerberos): one kept-alive session."""
        def connect() -> AmtDevice:
            cred = self.credential("amt")
            return AmtDevice(self.wsman(KerberosAuth() if cred.kerberos
                                        else DigestAuth(cred.user, cred.password.resolve())))
        return self.facts.get(key("amt", "session"), connect)

    def console_amt(self) -> AmtDevice:
        """This client's AMT as the console user (Kerberos, :meth:`console_credentials`), as the OOB console."""
        return self.facts.get(key("console_amt", "session"), lambda: AmtDevice(self.wsman(
            kerberos.NegotiateAuth(self.console_credentials(), self.facts.env.site.realm))))

    def digest_amt(self, user: str, password: str) -> AmtDevice:
        """A new session (not kept: the caller closes ``.client``) to this client's AMT as ``user`` (Digest)."""
        return AmtDevice(self.wsman(DigestAuth(user, password)))

    # ------------------------------------------------------------------ WinRM
    def winrm(self, host: Server | Client) -> WinRM:
        """Read-only WinRM to ``host`` (its ``winrm`` URL, else ``https://<fqdn>:5986/wsman``), estate-wide, as
        Windows authenticates: Kerberos first, Basic only for the hosts ``credentials.winrm.basic_hosts`` names
        (:func:`~pytest_vpro.probes.winrm.select_auth`)."""
        env = self.facts.env

        def tgt() -> Any:  # credentials.winrm's user's ticket, one for the whole run
            def acquire() -> Any:
                self.use_krb5_config()
                cred = self.credential("winrm")
                return kerberos.ConsoleCredentials.with_password(
                    self.principal(cred.user), cred.password.resolve(),
                    timeout=env.timeouts["connect"] + env.timeouts["read"])
            return self.facts.estate.get(key("kerberos.winrm"), acquire)

        def connect() -> WinRM:
            cred = env.credentials.get("winrm")
            url = getattr(host, "winrm", None) or f"https://{host.name}:5986/wsman"
            if cred is not None and cred.kerberos:
                self.use_krb5_config()
            auth = select_auth(host.name, url, cred, realm=env.site.realm, address=getattr(host, "address", None),
                               kerberos_credentials=tgt)
            return WinRM(url, auth=auth, ca_bundle=env.pki.get("trusted_roots"), timeout=env.timeouts["read"],
                         connect_timeout=env.timeouts["connect"])
        return self.facts.estate.get(key("winrm.session", host.name), connect)

    # ------------------------------------------------------------------ LDAP
    def ldap_to(self, hosts: list[str]) -> Any:
        """A new bound LDAPS connection (``credentials.ldap``) to the first of ``hosts`` that answers."""
        env = self.facts.env
        return ldap_probe.connect(hosts, credential=self.credential("ldap"), ca_file=env.pki.get("trusted_roots"),
                                  timeout=env.timeouts["read"], connect_timeout=env.timeouts["connect"])

    def ldap(self) -> Any:
        """One bound connection to the estate's domain controllers, shared by the process (hold the directory's
        lock while searching through it)."""
        return self.facts.estate.get(key("ldap", "connection"), lambda: self.ldap_to(
            [s.name for s in self.facts.env.servers_with("domain_controller")]))

    def gc(self) -> Any:
        """One bound connection to a global catalog (LDAPS 3269) of the estate's domain controllers."""
        return self.facts.estate.get(key("ldap.gc", "connection"), lambda: self.ldap_to(
            [f"{s.name}:3269" for s in self.facts.env.servers_with("domain_controller")]))

    # ------------------------------------------------------------------ SMB
    def smb_open(self, host: str, share: str, path: str) -> Any:
        """``\\\\host\\share\\path`` opened read-only with ``credentials.smb`` (a context manager)."""
        cred = self.credential("smb")
        password = None if cred.kerberos else cred.password.resolve()
        env = self.facts.env
        return smb.open_file(host, share, path, user=cred.user, password=password, timeout=env.timeouts["read"],
                             connect_timeout=env.timeouts["connect"])

    # ------------------------------------------------------------------ Kerberos
    def use_krb5_config(self) -> None:
        """Point Kerberos at the estate's krb5.conf when the environment comes from the lab (its state file
        names it); a real estate uses the machine's."""
        kerberos.use_config(self.facts.lab_info().get("dc", {}).get("krb5_conf"))

    def console_credentials(self) -> Any:
        """The console user's Kerberos TGT (``credentials.console``) in a private ticket cache; estate-wide.

        A password reference goes to the KDC through GSSAPI (never a command line); ``kerberos`` uses the
        caller's own cache. krb5.conf: the system's, or the lab's (its state file names it).
        """
        def acquire() -> Any:
            self.use_krb5_config()
            cred = self.credential("console")
            env = self.facts.env
            kdc = env.timeouts["connect"] + env.timeouts["read"]  # one KDC exchange, as any other
            if cred.kerberos:
                return kerberos.ConsoleCredentials.from_default_cache(timeout=kdc)
            return kerberos.ConsoleCredentials.with_password(self.principal(cred.user), cred.password.resolve(),
                                                             timeout=kdc)
        return self.facts.estate.get(key("kerberos", "console"), acquire)

    def principal(self, user: str) -> str:
        """``DOMAIN\\user`` or ``user`` -> ``user@REALM``; a UPN stays as it is."""
        if "@" in user:
            return user
        return f"{user.rsplit(chr(92), 1)[-1]}@{self.facts.env.site.realm}"  # chr(92): a backslash
