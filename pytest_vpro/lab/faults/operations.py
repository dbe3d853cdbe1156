"""Faults of stages 4 to 7: power control, the console, un-provisioning."""
from __future__ import annotations

from typing import Any

import ldap3

from ..names import (
    CONSOLE_USER,
    DOMAIN,
    NETBIOS,
    OPERATORS_GROUP,
    ClientPlan,
)
from ..site_spec import (
    AMT_STATUS,
)
from .registry import Context, _amt_object_dn, _option, _set, _site, fault


def _not_discovered(ctx: Context, record: Any) -> None:
    record.amt_status, record.amt_full_version = AMT_STATUS["unknown"], ""


fault("mc_not_discovered", "Discover Management Controllers never ran for the client: SMS_R_System.AMTStatus is "
      "null (unknown) and AMTFullVersion is empty, so the console offers no power control.", scope="client",
      needs="provisioned", site_server=_not_discovered,
      fails=("S4-MC-DISCOVERED", "S4-DIGEST-CREDENTIALS-RANDOMIZED"))
fault("power_off_ignored", "The device answers RequestPowerStateChange(8) with ReturnValue 0 and the host stays "
      "on (power-off requests are accepted and ignored): the site's Shutdown is accepted and nothing happens.",
      scope="client", device=_set(power_off_ignored=True), fails=("S4-POWER-DOWN", "S4-POWER-UP"))


def _quarantined(ctx: Context, record: Any) -> None:
    """An administrator moved the client into a collection of its own and gave the console user's group every
    right there but "Manage management controllers" (it may look, not operate)."""
    spec = ctx.site_spec
    for col in spec.collections:
        col["members"] = [m for m in col.get("members", []) if m != record.fqdn]
    col_id = f"{spec.site_code}00020"
    spec.collections.append({"CollectionID": col_id, "Name": "vPro quarantine", "members": [record.fqdn],
                             "amt_auto_provision": True})
    spec.permissions.append({"UserName": f"{NETBIOS}\\{OPERATORS_GROUP}", "InstanceKey": col_id, "rights": [
        "Read", "Read Resource", "Modify Collection Setting", "View management controllers"]})


fault("client_in_unmanaged_collection", "The client was moved into a collection ('vPro quarantine') on which the "
      "console user's group may view management controllers but not manage them: the SMS Provider refuses the "
      "client's out of band operations (WBEM_E_ACCESS_DENIED).", scope="client", needs="provisioned",
      site_server=_quarantined,
      fails=("S4-POWER-DOWN", "S4-POWER-UP", "PRE-RIGHT-MANAGE-MANAGEMENT-CONTROLLERS"))
fault("oob_service_point_stopped", "The out of band service point's component (SMS_AMT_OPERATION_MANAGER) was "
      "stopped in Configuration Manager Service Manager: the SMS Provider accepts out of band operations "
      "(ReturnValue 0) and queues them, and nothing performs them. (Lab: hellos are still logged.)", scope="site",
      site_server=_site(lambda s: setattr(s, "oob_service_point_running", False)),
      fails=("S4-POWER-DOWN", "S4-POWER-UP"))
fault("mebx_password_kept", "Provisioning did not replace the MEBx password: the device's admin account still "
      "answers to Intel's factory MEBx password ('admin') over the network. (Lab: the account also keeps the "
      "service point's credential, so the other checks still read the device.)", scope="client",
      needs="provisioned", device=_set(digest_also_accepts="admin"), fails=("S4-DIGEST-CREDENTIALS-RANDOMIZED",))


def _child_object(ctx: Context, c: ClientPlan) -> None:
    """Another management tool published a service connection point under the client's AMT object."""
    # an object of another tool: the DC's own helper for adding any object (its public calls make only ours)
    ctx.dc._add(f"CN=Remote Management,{_amt_object_dn(ctx, c)}", "serviceConnectionPoint",  # noqa: SLF001
                {"serviceClassName": "RemoteManagement", "keywords": ["Intel AMT"]})


fault("amt_object_has_child", "The client's AMT object has a child object (a serviceConnectionPoint another tool "
      "published under it). AD deletes only leaf objects without the tree-delete control, so un-provisioning "
      "cannot delete the AMT object: AMTOPMGR.LOG shows the un-provisioning failed and the object stays.",
      scope="client", needs="provisioned", directory=_child_object,
      fails=("S7-AD-MC-OBJECT-DELETED", "S7-UNPROVISION-COMPLETES"))
fault("ca_revocation_refused", "The site server may not revoke certificates on the issuing CA (no Issue and Manage "
      "Certificates): un-provisioning stops at the revocation (AMTOPMGR.LOG shows it failed), so the serial never "
      "reaches the CRL and the AD object is not deleted either.", scope="site",
      pki=_option("pki", revocation_refused=True),
      fails=("S7-WEB-SERVER-CERT-REVOKED", "S7-UNPROVISION-COMPLETES", "S7-AD-MC-OBJECT-DELETED"))


def _stale_dc(ctx: Context, target: None) -> None:
    """dc02 is still registered: an A record to an address nobody answers on, and its DC locator SRV record."""
    ctx.dc.add_dns_record("dc02", "A", f"127.{ctx.plan.net}.0.98")
    # an SRV record in the _msdcs zone: samba-tool through the DC's own runner (add_dns_record writes the domain zone)
    ctx.dc._admin_tool("dns", "add", ctx.dc.address, f"_msdcs.{DOMAIN}", "_ldap._tcp.dc", "SRV",  # noqa: SLF001
                       f"dc02.{DOMAIN} 389 0 100")


fault("stale_dc_record", "A second domain controller, dc02, is still registered in DNS (A record and "
      "_ldap._tcp.dc._msdcs SRV record) but does not answer: a DC removed without metadata cleanup, whose copy of "
      "the management controller objects cannot be confirmed.", scope="site", directory=_stale_dc,
      fails=("S5-DC-REPLICATION",))


def _must_change_password(ctx: Context, target: None) -> None:
    ctx.dc.conn.modify(ctx.dc.account_dn(CONSOLE_USER), {"pwdLastSet": [(ldap3.MODIFY_REPLACE, ["0"])]})


fault("console_user_must_change_password", "The console user must change its password at next logon (pwdLastSet "
      "0): the KDC gives it no ticket (password expired), so no Kerberos to any device.", scope="site",
      directory=_must_change_password,
      fails=("S5-KERBEROS-TICKET-FOR-AMT", "S5-OOB-CONSOLE-CONNECTS", "S5-OOB-CONSOLE-SYSTEM-STATUS"))
