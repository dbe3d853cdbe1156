"""Active Directory over LDAPS, read-only: searches, security descriptors, the root DSE, the forest's computers
(from a global catalog), computer accounts' SIDs and the enterprise CAs. Estate-wide: shared by every target's
checks in the process."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..environment import Server
from ..probes import ldap as ldap_probe
from ..probes.errors import ProbeError
from ..probes.ldap import NoSuchObject
from .core import key

if TYPE_CHECKING:
    from . import Facts


class DirectoryFacet:
    """``facts.directory``: the estate's domain controllers, through one shared connection (``credentials.ldap``)."""

    #: searches through the shared connection hold it: the connection is shared by the checks of a process
    lock = threading.RLock()

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def search(self, base: str, ldap_filter: str, attributes: tuple[str, ...] | list[str],
               scope: str = "subtree", *, fresh: bool = False) -> list[dict[str, Any]]:
        """Entries (``{"dn", "attributes", "raw_attributes"}``), paged; shared by every check in this process.
        ``fresh``: search again now (after an action of this run changed the directory)."""
        connect = self.facts.connect

        def run() -> list[dict[str, Any]]:
            with self.lock:
                return list(ldap_probe.search_paged(connect.ldap(), base, ldap_filter, list(attributes), scope=scope))
        name = key("ldap.search", scope, base, ldap_filter, tuple(attributes))
        if fresh:
            self.facts.estate.note(name)
            return run()
        return self.facts.estate.get(name, run)

    def search_on(self, dc: str, base: str, ldap_filter: str, attributes: tuple[str, ...]) -> list[dict]:
        """A search on one domain controller (its own connection): what that DC holds, replicated or not."""
        connect = self.facts.connect

        def run() -> list[dict]:
            conn = connect.ldap_to([dc])
            try:
                return list(ldap_probe.search_paged(conn, base, ldap_filter, list(attributes)))
            finally:
                conn.unbind()
        return self.facts.estate.per_host(dc, key("ldap.on", dc, base, ldap_filter, tuple(attributes)), run)

    def security_descriptor(self, dn: str, *, gc: bool = False) -> Any:
        """The parsed ``nTSecurityDescriptor`` (DACL) of ``dn``; with ``gc``, read from a global catalog (any
        domain of the forest)."""
        connect = self.facts.connect

        def read() -> Any:
            with self.lock:
                return ldap_probe.read_security_descriptor(connect.gc() if gc else connect.ldap(), dn)
        return self.facts.estate.get(key("ldap.sd", "gc", dn) if gc else key("ldap.sd", dn), read)

    def root_dse(self) -> dict[str, Any]:
        """The directory's root DSE: naming contexts (``defaultNamingContext``, ``configurationNamingContext``,
        ``rootDomainNamingContext``), each a plain string."""
        connect = self.facts.connect

        def read() -> dict[str, Any]:
            with self.lock:
                dse = ldap_probe.root_dse(connect.ldap())
            return {k: (v[0] if isinstance(v, list) and v else v) for k, v in dse.items()}
        return self.facts.estate.get(key("ldap", "rootdse"), read)

    def clock(self) -> dict[str, Any]:
        """A domain controller's clock, the Kerberos reference: its root DSE ``currentTime`` against this machine's,
        ``{"host", "offset_s", "uncertainty_s"}`` (DC minus this machine, at the middle of the search's round trip;
        half the round trip plus 1 s, as currentTime is whole seconds). Read once per run."""
        connect = self.facts.connect

        def read() -> dict[str, Any]:
            with self.lock:
                when, sent, received, host = ldap_probe.current_time(connect.ldap())
            return {"host": host, "offset_s": when - (sent + received) / 2,
                    "uncertainty_s": (received - sent) / 2 + 1.0}
        return self.facts.estate.get(key("ldap", "currentTime"), read)

    def forest_computers(self) -> dict[str, list[str]]:
        """``{dNSHostName (lower case): [DN, ...]}`` of every computer object in the forest, from a global catalog
        (LDAPS 3269 on the estate's domain controllers): one paged search per run, whatever the fleet's size."""
        connect = self.facts.connect

        def run() -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            with self.lock:
                for entry in ldap_probe.search_paged(connect.gc(), "", "(&(objectClass=computer)(dNSHostName=*))",
                                                     ["dNSHostName"]):
                    name = entry["attributes"].get("dNSHostName")
                    name = name[0] if isinstance(name, list) and name else name
                    if name:
                        found.setdefault(str(name).lower().rstrip("."), []).append(entry["dn"])
            return found
        return self.facts.estate.get(key("ldap.gc", "computers"), run)

    def forest_computer_objects(self) -> dict[str, list[dict[str, Any]]]:
        """``{dNSHostName (lower case): [{"dn", "spns"}, ...]}`` of every computer object in the forest with its
        servicePrincipalName values, from a global catalog (both attributes are in its partial attribute set):
        one paged search per run."""
        connect = self.facts.connect
        attributes = ("dNSHostName", "servicePrincipalName")

        def run() -> dict[str, list[dict[str, Any]]]:
            found: dict[str, list[dict[str, Any]]] = {}
            with self.lock:
                for entry in ldap_probe.search_paged(connect.gc(), "", "(&(objectClass=computer)(dNSHostName=*))",
                                                     list(attributes)):
                    name = entry["attributes"].get("dNSHostName")
                    name = name[0] if isinstance(name, list) and name else name
                    spns = entry["attributes"].get("servicePrincipalName") or []
                    if name:
                        found.setdefault(str(name).lower().rstrip("."), []).append(
                            {"dn": entry["dn"], "spns": [str(s) for s in ([spns] if isinstance(spns, str) else spns)]})
            return found
        return self.facts.estate.get(key("ldap.gc", "computers", attributes), run)

    def computer_objects_of(self, fqdn: str) -> dict[str, list[dict[str, Any]]]:
        """The forest's computer objects whose dNSHostName is ``fqdn``, told apart by where they are and what they
        hold, never by name (Configuration Manager's naming of AMT objects has no public source): ``"amt"``, the
        site's AMT objects, in the AMT container's path (``site.amt_container`` less its ``DC=`` parts: the same
        in each domain) or holding the device's SPN ``HTTP/<fqdn>:<AMT port>``; ``"os"``, the rest: the
        computer's own account, which joining the domain made."""
        ports = self.facts.env.expected["ports"]
        amt_spns = {f"http/{fqdn}:{ports[p]}".lower() for p in ("amt_http", "amt_https")}
        out: dict[str, list[dict[str, Any]]] = {"os": [], "amt": []}
        for entry in self.forest_computer_objects().get(fqdn.lower().rstrip("."), []):
            amt = in_amt_path(entry["dn"], self.facts.env.site.amt_container) or bool(
                amt_spns & {s.lower() for s in entry["spns"]})
            out["amt" if amt else "os"].append(entry)
        return out

    def account_sids(self, host: Server) -> dict[str, Any]:
        """The computer account of ``host`` (by dNSHostName, in the directory's default domain): ``dn``, ``sid``
        and ``sids``, its own SID, every group it is in (tokenGroups) and the well-known SIDs of a network logon:
        what an access check on its behalf matches ACEs with."""
        connect = self.facts.connect

        def read() -> dict[str, Any]:
            base = self.root_dse().get("defaultNamingContext") or ""
            found = self.search(base, f"(&(objectClass=computer)(dNSHostName={host.name}))", ("objectSid",))
            if not found:
                raise ProbeError(f"no computer account with dNSHostName {host.name} under {base}")
            dn = found[0]["dn"]
            sid = ldap_probe.format_sid(found[0]["raw_attributes"]["objectSid"][0])
            with self.lock:
                groups = ldap_probe.token_groups(connect.ldap(), dn)
            # Every network logon's token also carries Everyone and Authenticated Users (MS-DTYP 2.4.2.4).
            return {"dn": dn, "sid": sid, "sids": [sid, *groups, "S-1-1-0", "S-1-5-11"]}
        return self.facts.estate.get(key("ldap.account", host.name), read)

    def enrollment_services(self) -> list[dict[str, Any]]:
        """The forest's enterprise CAs: ``pKIEnrollmentService`` objects under CN=Enrollment Services (``dn``,
        ``name``, ``host`` (dNSHostName), ``certificate`` (cACertificate, DER bytes), ``templates``)."""
        config = self.root_dse().get("configurationNamingContext") or ""
        try:
            entries = self.search(f"CN=Enrollment Services,CN=Public Key Services,CN=Services,{config}",
                                  "(objectClass=pKIEnrollmentService)",
                                  ("cn", "dNSHostName", "cACertificate", "certificateTemplates"), scope="one")
        except NoSuchObject:  # no enterprise CA was ever installed in this forest
            entries = []

        def first(entry: dict[str, Any], name: str) -> Any:
            value = entry["raw_attributes"].get(name) or [b""]
            return value[0]
        return [{"dn": e["dn"], "name": first(e, "cn").decode(), "host": first(e, "dNSHostName").decode().lower(),
                 "certificate": first(e, "cACertificate"),
                 "templates": [t.decode() for t in e["raw_attributes"].get("certificateTemplates", [])]}
                for e in entries]


def _relative(dn: str) -> list[str]:
    """A DN's RDNs without its ``DC=`` parts, lower case, without the spaces around ``=``."""
    rdns = [(t.strip().lower(), v.strip().lower()) for t, _, v in (r.partition("=") for r in dn.split(","))]
    return [f"{t}={v}" for t, v in rdns if t and t != "dc"]


def in_amt_path(dn: str, amt_container: str) -> bool:
    """Whether ``dn`` is below the AMT container's path (``OU=AMT`` of ``OU=AMT,DC=corp,DC=example``) in any
    domain: ``CN=PC1,OU=AMT,DC=branch,DC=corp,DC=example`` is, ``CN=PC1,CN=Computers,DC=corp,DC=example`` is not."""
    path = _relative(amt_container or "")
    parents = _relative(dn)[1:]
    return bool(path) and parents[-len(path):] == path
