"""Prerequisites: the Configuration Manager security rights out of band management needs, on the collections that
hold the managed computers. This module holds the row of stage 2 and the reading shared with stages 4 and 5.

Prerequisites (seed 004): "You must have the following security rights for the collection that contains the
computer that you want to manage out of band: View management controllers ... Manage management controllers
... Additionally, you must have the security right Modify Collection Setting to configure in-band provisioning,
to remove provisioning information, and to update AMT management controllers."

The account is the environment's console user (``console.user``), directly or through its groups (every group it
is a member of, nested ones included, from the directory). A right counts on the collection class
(SMS_UserClassPermissions, ObjectKey 1) or on a collection holding the client (SMS_UserInstancePermissions and
SMS_FullCollectionMembership). Bits: READ (0) and MODIFYCOLLECTIONSETTING (21) are the Configuration Manager 2007
SDK's; the SDK pages found do not list the two out of band rights SP1 added, so their bits are unconfirmed; all
are in RIGHT_BITS (the lab's table is pytest_vpro.lab.site_server.SMS_PERMISSIONS).
"""
import pytest
from ldap3.utils.conv import escape_filter_chars

from pytest_vpro.checks import expect

RIGHT_BITS = {"Modify Collection Setting": 1 << 21,
              "View management controllers": 1 << 24,    # (unconfirmed)
              "Manage management controllers": 1 << 25}  # (unconfirmed)
COLLECTION = 1  # ObjectKey of collections
IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN: nested group membership


def accounts(env, facts) -> tuple[str, set[str]]:
    """The console user and the lower-case account names (user and groups, without domain) it acts as."""
    user = str(env.console.get("user") or "")
    expect(user, found="no console.user in the environment file", expected="the operator account (console.user)")
    sam = user.rpartition("\\")[2].partition("@")[0]
    base = ",".join(f"DC={p}" for p in env.site.name.split("."))
    me = facts.directory.search(base, f"(sAMAccountName={escape_filter_chars(sam)})", ("sAMAccountName",))
    groups = facts.directory.search(base, f"(member:{IN_CHAIN}:={escape_filter_chars(me[0]['dn'])})",
                               ("sAMAccountName",)) if me else []
    names = {sam.lower()}
    for g in groups:
        value = g["attributes"].get("sAMAccountName") or ""
        names.add(str(value[0] if isinstance(value, list) and value else value).lower())
    return user, names - {""}


def holds(env, facts, evidence, right: str) -> None:
    """Fail unless the console user holds ``right`` for every client of the environment."""
    user, names = accounts(env, facts)
    bit = RIGHT_BITS[right]

    def mine(p) -> bool:
        return str(p.get("UserName", "")).rpartition("\\")[2].lower() in names and \
            int(str(p.get("ObjectKey") or 0)) == COLLECTION

    granted = [p for p in facts.site.wmi("SMS_UserClassPermissions") if mine(p)
               and int(str(p.get("ClassPermissions") or 0)) & bit]
    on = {str(p["InstanceKey"]).upper() for p in facts.site.wmi("SMS_UserInstancePermissions") if mine(p)
          and int(str(p.get("InstancePermissions") or 0)) & bit}
    evidence.attach(f"{right} for {user}", {"as": sorted(names), "on the collection class": bool(granted),
                                            "on collections": sorted(on)})
    if granted:
        return
    ids = {str(n).lower(): r["ResourceId"] for r in facts.site.wmi("SMS_R_System", "SELECT ResourceId, "
           "ResourceNames FROM SMS_R_System") for n in r.get("ResourceNames") or []}
    member_of: dict = {}
    for m in facts.site.wmi("SMS_FullCollectionMembership"):
        member_of.setdefault(m["ResourceID"], set()).add(str(m["CollectionID"]).upper())
    lacking = [c.name for c in env.clients if not member_of.get(ids.get(c.name), set()) & on]
    some = ", ".join(lacking[:3]) + (", ..." if len(lacking) > 3 else "")
    expect(not lacking, found=f"{user} (as {', '.join(sorted(names))}) lacks {right} for {len(lacking)} of "
                              f"{len(env.clients)} clients ({some}); "
                              f"granted on {', '.join(sorted(on)) or 'no collection'}",
           expected=f"{right} on the collection class or on a collection holding each client")


@pytest.mark.check("PRE-RIGHT-MODIFY-COLLECTION-SETTING")
def test_administrator_may_modify_collection_settings(site, env, facts, evidence):
    holds(env, facts, evidence, "Modify Collection Setting")
