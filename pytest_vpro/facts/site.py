"""The Configuration Manager site as its SMS Provider holds it: WMI classes of ``root/sms/site_<code>``, this
client's ``SMS_R_System`` resource, and its provisioning status put together from the site, the log and the ME."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import sccm
from ..policy_window import AUTO_PROVISION_PROPERTY
from ..probes import cmlog
from ..probes.errors import ProbeError
from ..probes.winrm import sms_namespace

if TYPE_CHECKING:
    from . import Facts


class SiteFacet:
    """``facts.site``: the site server's SMS Provider (role ``site_server``), over WinRM."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def wmi(self, class_name: str, wql: str | None = None) -> list[dict[str, Any]]:
        """``class_name`` (or the query ``wql``) from the SMS Provider (``root/sms/site_<code>``) on the site
        server."""
        facts = self.facts
        return facts.windows.wmi(facts.server("site_server"), class_name, sms_namespace(facts.env.site.code), wql)

    def resource(self) -> dict[str, Any] | None:
        """This client's ``SMS_R_System`` resource at the site (by FQDN in ResourceNames, else by NetBIOS name),
        from one read of the whole class shared by every client's checks; None if the site has none."""
        t = self.facts.target
        by_fqdn, by_name = self.facts.derived("sms_r_system.index", self.wmi("SMS_R_System"), index_resources)
        found = by_fqdn.get(t.name.lower()) or by_name.get(t.name.split(".", 1)[0].upper()[:15])
        return found[0] if found else None

    def collections(self) -> list[dict[str, Any]]:
        """The site's collections (``SMS_Collection``), each ``{"id", "name", "member", "auto_provision",
        "collection", "settings"}``: ``member`` if this client's resource is in it (``SMS_FullCollectionMembership``),
        ``auto_provision`` if its ``SMS_CollectionSettings.AMTAutoProvisionEnabled`` is true (no settings instance:
        false), with the two instances as read (``settings`` None without one)."""
        resource = self.resource()
        member_of = self.member_of(resource.get("ResourceId")) if resource else set()
        settings = {s.get("CollectionID"): s for s in self.wmi("SMS_CollectionSettings")}
        listed = {c.get("CollectionID"): c for c in self.wmi("SMS_Collection")}
        out = []
        for cid in sorted(set(listed) | set(settings) | member_of, key=str):
            collection, setting = listed.get(cid) or {}, settings.get(cid)
            out.append({"id": cid, "name": collection.get("Name") or cid, "member": cid in member_of,
                        "auto_provision": (setting or {}).get(AUTO_PROVISION_PROPERTY) is True,
                        "collection": collection, "settings": setting})
        return out

    def member_of(self, resource_id: Any) -> set[Any]:
        """The CollectionIDs of the collections the resource ``resource_id`` is in (``SMS_FullCollectionMembership``),
        from an index of the whole class built once per read, not a scan of it per client."""
        index = self.facts.derived("sms_full_collection_membership.by_resource",
                                   self.wmi("SMS_FullCollectionMembership"), index_memberships)
        return set(index.get(str(resource_id), ()))

    def provisioning_status(self) -> sccm.ProvisioningStatus:
        """This client's provisioning as the site holds it (``SMS_R_System.AMTStatus``; for an in-band client the
        hardware inventory's ``SMS_G_System_AMT_AGENT``), with its AMTOPMGR.LOG events, current and rotated, and
        its ME's own state read on demand: a :class:`pytest_vpro.sccm.ProvisioningStatus`."""
        facts = self.facts
        resource = self.resource()
        inventory = None
        if resource is not None and getattr(facts.target, "provisioning", "") == "in_band":
            try:  # an inventory class the site does not collect is no finding here: the other sources remain
                rows = self.wmi(sccm.INVENTORY_CLASS)
            except ProbeError:
                rows = []
            rid = str(resource.get("ResourceId"))
            inventory = next((r for r in rows if str(r.get("ResourceID")) == rid), None)
        return sccm.ProvisioningStatus(
            resource=resource, inventory=inventory, events=facts.logs.client_events(),
            decisive=lambda event: cmlog.decisive(event, facts.env.log_patterns),
            read_me=facts.amt.provisioning)


def index_resources(resources: list[dict[str, Any]]) -> tuple[dict[str, list], dict[str, list]]:
    """``SMS_R_System`` resources by each lower-case FQDN of their ResourceNames, and by upper-case Name; in
    the provider's order."""
    by_fqdn: dict[str, list] = {}
    by_name: dict[str, list] = {}
    for r in resources:
        for fqdn in {str(n).lower() for n in r.get("ResourceNames") or []}:
            by_fqdn.setdefault(fqdn, []).append(r)
        by_name.setdefault(str(r.get("Name") or "").upper(), []).append(r)
    return by_fqdn, by_name


def index_memberships(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """``SMS_FullCollectionMembership`` rows as ``{str(ResourceID): [CollectionID, ...]}``."""
    out: dict[str, list[Any]] = {}
    for m in rows:
        out.setdefault(str(m.get("ResourceID")), []).append(m.get("CollectionID"))
    return out
