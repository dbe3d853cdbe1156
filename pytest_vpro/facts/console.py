"""The console user: its Kerberos credentials and service tickets, its account in AD, and AMT as it sees it
(``facts.console.amt``, the reads of :class:`~pytest_vpro.facts.amt.AmtReads` over Kerberos)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..probes import ldap as ldap_probe
from ..probes.errors import ProbeError
from .amt import ConsoleAmt
from .core import key

if TYPE_CHECKING:
    from . import Facts


class ConsoleFacet:
    """``facts.console``: the console user (``console.user``, else ``credentials.console``)."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts
        self.amt = ConsoleAmt(facts, facts.connect.console_amt)

    def credentials(self) -> Any:
        """The console user's Kerberos TGT in a private ticket cache, shared by the run's checks
        (:meth:`~pytest_vpro.facts.connect.Connector.console_credentials`)."""
        return self.facts.connect.console_credentials()

    def ticket(self, port: int | None = None) -> int:
        """Bytes of the console user's Kerberos AP-REQ for this client's AMT SPN (a service ticket was issued)."""
        facts = self.facts
        return facts.get(key("kerberos.ticket", port),
                         lambda: len(self.credentials().token(facts.amt.spn(port))[1]))

    def ticket_size(self, spn: str) -> int:
        """Bytes of the console user's Kerberos AP-REQ for ``spn`` (any target's: the console server's checks name a
        client's ``HTTP/<fqdn>:16993@REALM``): the service ticket the KDC issued, with its PAC (the user's groups),
        plus the authenticator. Once per run and SPN."""
        return self.facts.estate.get(key("kerberos.ticket_size", spn),
                                     lambda: len(self.credentials().token(spn)[1]))

    def user(self) -> dict[str, Any]:
        """The console user in AD: ``dn``, ``sid``, ``groups`` (tokenGroups SIDs), ``by_kind`` (TokenSz counts)
        and ``names`` (SID -> account name)."""
        facts = self.facts
        directory = facts.directory

        def read() -> dict[str, Any]:
            cred = facts.env.credentials.get("console")
            user = facts.env.console.get("user") or (cred.user if cred else None)
            if not user:
                raise ProbeError("the environment file names no console user (console.user)")
            account = user.split("@", 1)[0].rsplit("\\", 1)[-1]
            base = ",".join(f"DC={p}" for p in facts.env.site.name.split("."))
            found = directory.search(base, f"(&(objectCategory=person)(sAMAccountName={account}))", ("objectSid",))
            if not found:
                raise ProbeError(f"no user {account!r} under {base}")
            dn = found[0]["dn"]
            with directory.lock:
                conn = facts.connect.ldap()
                groups = ldap_probe.token_groups(conn, dn)
                by_kind = ldap_probe.token_groups_by_kind(conn, dn)
                names = ldap_probe.resolve_sids(conn, groups)
            sid = ldap_probe.format_sid(found[0]["raw_attributes"]["objectSid"][0])
            return {"dn": dn, "account": account, "sid": sid, "groups": groups, "by_kind": by_kind, "names": names}
        return facts.estate.get(key("ldap", "console_user"), read)
