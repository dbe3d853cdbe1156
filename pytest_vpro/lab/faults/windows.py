"""Faults: the Windows side of the site: the site server's OS and roles, the SMS Provider's settings and rights,
in-band clients' operating systems."""
from __future__ import annotations

import datetime as dt
from typing import Any

from .. import ipsec_policy
from ..site_spec import (
    IPSEC_GPO_KEY,
    OOB_SP2_PROPS,
    THREADS,
)
from ..windows_spec import TABLET_PC_KEY
from .registry import Context, Param, _set, _site, fault


def _windows_2003_sp1(spec: Any) -> None:
    spec.csd_version, spec.service_pack_major = "Service Pack 1", 1  # KB899900 and KB908209 came with SP2


fault("windows_2003_sp1", "The site server (the out of band service point) runs Windows Server 2003 SP1, without "
      "KB899900 and KB908209 (both part of SP2).", scope="site", site_server=_site(_windows_2003_sp1),
      fails=("PRE-SERVICE-POINT-WINDOWS-2003-SP2", "HF-KB899900"))
fault("no_reporting_point", "The site has no reporting point role.", scope="site",
      site_server=_site(lambda s: setattr(s, "roles", [r for r in s.roles if "Reporting Point" not in r])),
      fails=("PRE-REPORTING-POINT",))


def _assign_ipsec_policy(spec: Any, name: str, dn: str, description: str) -> None:
    spec.registry["HKLM\\" + IPSEC_GPO_KEY] = {"DSIPSECPolicyName": name, "DSIPSECPolicyDescription": description,
                                               "DSIPSECPolicyPath": f"LDAP://{dn}"}


def _other_traffic_policy(ctx: Context, t: None, name: str) -> None:
    smb = ipsec_policy.Filter(destination=ctx.plan.dc, destination_mask=ipsec_policy.MASK_NONE, protocol=6,
                              destination_port=445, description="SMB to the domain controller")
    ipsec_policy.add_policy(ctx.dc, name, "SMB to the DC", [smb])


fault("ipsec_policy", "Windows' default domain IPsec policy 'Secure Server (Require Security)' (Samba provisions "
      "it: its rule Require Security over the filter list All IP Traffic, my IP address to any, mirrored, any "
      "protocol) is assigned to the site server (Group Policy: GPTIPSECPolicy in its registry).", scope="site",
      directory=lambda ctx, t: ipsec_policy.default_policy(ctx.dc),
      site_server=lambda ctx, t: _assign_ipsec_policy(ctx.site_spec, ipsec_policy.SECURE_SERVER_NAME,
                                                      ipsec_policy.default_policy(ctx.dc),
                                                      "For all IP traffic, always require security using Kerberos "
                                                      "trust. Do NOT allow unsecured communication with untrusted "
                                                      "clients."),
      fails=("PRE-NO-IPSEC",))
fault("ipsec_policy_other_traffic", "A healthy variant: a new domain IPsec policy `name` whose one rule requires "
      "security for TCP 445 from the site server to the domain controller only (mirrored) is assigned to the site "
      "server; AMT traffic is not covered, so PRE-NO-IPSEC passes.", scope="site",
      params={"name": Param("Secure SMB to the DC", str, "the policy's name")},
      directory=_other_traffic_policy,
      site_server=lambda ctx, t, name: _assign_ipsec_policy(ctx.site_spec, name,
                                                            ipsec_policy.policy_dn(ctx.dc, name),
                                                            "Require security for SMB to the domain controller"),
      fails=(), passes=("PRE-NO-IPSEC",))
fault("network_discovery_no_account", "Network discovery is enabled and the out of band component has no AMT "
      "Provisioning and Discovery Account.", scope="site",
      site_server=_site(lambda s: (setattr(s, "network_discovery", True), s.oob.update(provisioning_account=""))),
      fails=("PRE-NETWORK-DISCOVERY-PREREQS",))

RIGHTS = ("View management controllers", "Manage management controllers", "Modify Collection Setting")


def _without_rights(spec: Any, rights: list[str]) -> None:
    admin = f"{spec.fqdn.split('.')[1].upper()}\\administrator"
    for entry in spec.permissions:
        if entry["UserName"].lower() != admin:  # the operators lose them; the Administrator keeps everything
            entry["rights"] = [r for r in entry["rights"] if r not in rights]


fault("operator_lacks_rights", "The console user's group loses `rights` on the clients' collection "
      "(SMS_UserInstancePermissions).", scope="site",
      params={"rights": Param(list(RIGHTS), list, "the rights taken away",
                              lambda v: None if set(v) <= set(RIGHTS) else f"rights are {', '.join(RIGHTS)}")},
      site_server=lambda ctx, t, rights: _without_rights(ctx.site_spec, rights),
      fails=("PRE-RIGHT-VIEW-MANAGEMENT-CONTROLLERS", "PRE-RIGHT-MANAGE-MANAGEMENT-CONTROLLERS",
             "PRE-RIGHT-MODIFY-COLLECTION-SETTING"))


def _sp2_feature_ok(feature: str) -> str | None:
    return None if feature in OOB_SP2_PROPS else f"features are {', '.join(OOB_SP2_PROPS)}"


fault("sp2_feature_on_sp1", "The out of band component turns on the SP2-only `feature` while the site runs SP1.",
      scope="site", params={"feature": Param("auditing", str, "an SP2-only out of band setting", _sp2_feature_ok)},
      site_server=lambda ctx, t, feature: ctx.site_spec.oob.update({feature: 1}),
      fails=("PRE-SP2-FOR-SP2-FEATURES",))


def _old_amt(ctx: Context, target: Any, version: str) -> None:
    target.amt_version = version


fault("auditing_old_amt", "The device runs AMT `version` (below 4.0) and the site audits AMT operations (the SP2 "
      "auditing setting is on; the site runs SP1, so that fails too).", scope="client",
      params={"version": Param("3.2.2", str, "the AMT version (3.2.2 speaks WS-MAN and has no self-signed "
                                             "certificate issue)")},
      device=_old_amt, site_server=lambda ctx, r, version: (setattr(r, "amt_full_version", version),
                                                           ctx.site_spec.oob.update(auditing=1)),
      fails=("PRE-AUDITING-AMT-4", "PRE-SP2-FOR-SP2-FEATURES"))


def _psk_hello_logged(ctx: Context, record: Any) -> None:
    """The PSK hello the site server logged an hour ago (the device keeps sending them, as it does PKI ones)."""
    ctx.site.log.event("hello_received", when=dt.datetime.now().astimezone() - dt.timedelta(hours=1),
                       thread=THREADS["hello"], fqdn=record.fqdn, uuid=record.uuid, ip=record.address, mode="PSK",
                       retry=0)


fault("psk_client", "The client is not provisioned and sends PSK hellos (version 2; AMTOPMGR.LOG has one from an "
      "hour ago), and the site server has no WS-MAN translator.", scope="client", needs="out_of_band",
      plan=_set(provisioned=False), device=_set(hello_mode="PSK"), site_server=_set(provisioning_mode="PSK"),
      running=_psk_hello_logged, fails=("S1-WSMAN-TRANSLATOR-PSK",))
fault("workgroup_client", "The in-band client is not joined to the domain: it is in workgroup WORKGROUP "
      "(Win32_ComputerSystem.PartOfDomain false).", scope="client", needs="in_band",
      windows=_set(workgroup="WORKGROUP"), fails=("S1-INBAND-CLIENT-DOMAIN-MEMBER",))

#: Operating systems in-band provisioning does not support (seed 004), as Win32_OperatingSystem shows them.
UNSUPPORTED_CLIENT_OS = {
    "windows_2000": {"os_caption": "Microsoft Windows 2000 Professional", "os_version": "5.0.2195",
                     "csd_version": "Service Pack 4", "service_pack_major": 4},
    "xp_sp1": {"os_caption": "Microsoft Windows XP Professional", "os_version": "5.1.2600",
               "csd_version": "Service Pack 1", "service_pack_major": 1},
    "xp_tablet": {"os_caption": "Microsoft Windows XP Tablet PC Edition", "os_version": "5.1.2600",
                  "csd_version": "Service Pack 3", "service_pack_major": 3, "tablet_pc": True},
}


def _client_os(ctx: Context, w: Any, os: str) -> None:
    for key, value in UNSUPPORTED_CLIENT_OS[os].items():
        setattr(w, key, value)
    if w.tablet_pc:
        w.registry.setdefault("HKLM\\" + TABLET_PC_KEY, {})["Installed"] = 1


fault("unsupported_client_os", "The in-band client runs an operating system in-band provisioning does not support: "
      "`os` windows_2000, xp_sp1 (XP before SP2) or xp_tablet (XP Tablet PC Edition).", scope="client",
      needs="in_band", params={"os": Param("windows_2000", str, "windows_2000, xp_sp1 or xp_tablet",
                                           lambda v: None if v in UNSUPPORTED_CLIENT_OS
                                           else f"one of {', '.join(UNSUPPORTED_CLIENT_OS)}")},
      windows=_client_os, fails=("PRE-INBAND-CLIENT-OS",))
