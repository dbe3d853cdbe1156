"""Faults of one client: names, certificates, AMT settings, hellos."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import ldap3

from ..amt_spec import AclEntry
from ..names import (
    ClientPlan,
)
from ..site_spec import (
    AMT_STATUS,
    THREADS,
)
from .registry import (
    ACCOUNTDISABLE,
    Context,
    Param,
    _amt_object_dn,
    _log_failed_provisioning,
    _os_account_dn,
    _reverse,
    _self_signed,
    _set,
    fault,
)


def _underscore(ctx: Context, c: ClientPlan) -> None:
    host, _, domain = c.fqdn.partition(".")
    c.fqdn = f"{host[:2]}_{host[2:]}.{domain}"


fault("fqdn_underscore", "The client's host name has an underscore (pc0003 becomes pc_0003) everywhere: DNS, AD, "
      "certificate, AMT settings, inventory.", scope="client", plan=_underscore,
      fails=("S3-CLIENT-FQDN-VALID-CHARACTERS",))


def _missing_ptr(ctx: Context, c: ClientPlan) -> None:
    name, zone = _reverse(ctx, c)
    ctx.dc.delete_dns_record(name, "PTR", c.fqdn, zone)


fault("missing_ptr", "The client's PTR record is deleted from the reverse zone (the A record stays).",
      scope="client", directory=_missing_ptr, fails=("S3-CLIENT-NAME-RESOLUTION-FWD-REV",))


def _wrong_ptr(ctx: Context, c: ClientPlan, points_to: str | None) -> None:
    name, zone = _reverse(ctx, c)
    ctx.dc.delete_dns_record(name, "PTR", c.fqdn, zone)
    ctx.dc.add_dns_record(name, "PTR", points_to or f"old-{c.fqdn}", zone)


fault("wrong_ptr", "The client's PTR record names another host (a stale record).", scope="client",
      directory=_wrong_ptr, params={"points_to": Param(None, str, "the name the PTR returns (default old-<fqdn>)")},
      fails=("S3-CLIENT-NAME-RESOLUTION-FWD-REV",))
def _windows_name_underscore(ctx: Context, c: ClientPlan) -> None:
    """The PC's Windows name has an underscore: its DNS client registers that name (A) and the DHCP server the
    PTR of its lease to it; the administrator's static A record of the inventory name stays."""
    host, _, domain = c.fqdn.partition(".")
    registered = f"{host[:2]}_{host[2:]}.{domain}"
    name, zone = _reverse(ctx, c)
    ctx.dc.add_dns_record(registered.removesuffix("." + ctx.dc.domain), "A", c.address)
    ctx.dc.delete_dns_record(name, "PTR", c.fqdn, zone)
    ctx.dc.add_dns_record(name, "PTR", registered, zone)


fault("dns_name_underscore", "The PC was named with an underscore in Windows (PC_0005): it registered "
      "pc_0005.<domain> in DNS (A) and the DHCP server the PTR record of its address to that name; the inventory, "
      "AD and AMT know it as pc0005, whose static A record stays.", scope="client",
      directory=_windows_name_underscore,
      fails=("S3-CLIENT-FQDN-VALID-CHARACTERS", "S3-CLIENT-NAME-RESOLUTION-FWD-REV"))
fault("no_amt_object", "The client's AMT account object is deleted from the AMT container (the device keeps its "
      "keys, the KDC has no principal for its SPNs).", scope="client", needs="provisioned",
      directory=lambda ctx, c: ctx.dc.delete(_amt_object_dn(ctx, c)),
      fails=("S3-AD-MC-OBJECT-CREATED", "S3-AD-MC-SPNS-WRITTEN", "S5-KERBEROS-TICKET-FOR-AMT",
             "S5-OOB-CONSOLE-CONNECTS"))
fault("client_not_domain_joined", "The PC's own computer account is gone from the domain (an administrator deleted "
      "it as stale, or the PC was never joined): no computer object with its dNSHostName outside the AMT "
      "container; the AMT object the site published for its management controller stays.", scope="client",
      needs="provisioned", directory=lambda ctx, c: ctx.dc.delete(_os_account_dn(ctx, c)),
      fails=("S1-CLIENT-SAME-AD-FOREST", "PRE-AMT-DISABLED-ON-UNSUPPORTED-COMPUTERS"))


def _disable(ctx: Context, c: ClientPlan) -> None:
    dn = _amt_object_dn(ctx, c)
    uac = int(ctx.dc.read(dn, ["userAccountControl"])["userAccountControl"][0])
    ctx.dc.conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [uac | ACCOUNTDISABLE])]})


fault("amt_object_disabled", "The client's AMT object has ACCOUNTDISABLE (0x2) in userAccountControl.",
      scope="client", needs="provisioned", directory=_disable, fails=("S3-AD-MC-OBJECT-NOT-FLAGGED",))


def _missing_spn(ctx: Context, c: ClientPlan, port: int) -> None:
    dn = _amt_object_dn(ctx, c)
    ctx.dc.set_spns(dn, [s for s in ctx.dc.get_spns(dn) if s.lower() != f"http/{c.fqdn}:{port}".lower()])


fault("missing_spn", "The AMT object lacks the SPN HTTP/<fqdn>:<port>. (Samba's KDC still issues a ticket for "
      "it, finding the account another way: unlike AD, Kerberos keeps working.)", scope="client", needs="provisioned",
      directory=_missing_spn, params={"port": Param(16993, int, "the port whose SPN is removed",
                                                     lambda v: None if v in (16992, 16993) else "16992 or 16993")},
      fails=("S3-AD-MC-SPNS-WRITTEN",))
fault("root_hash_missing", "The device's trusted root hash list lacks the lab root CA's hash.", scope="client",
      device=lambda ctx, d: setattr(d, "hashes", [h for h in d.hashes if h[1] != "VPROLAB Root CA"]),
      fails=("S3-PROV-CERT-ROOT-HASH-IN-AMT",))
fault("power_policy_s0_only", "The device's power policy is 'Desktop: ON in S0' (ME off in sleep states).",
      scope="client", device=_set(power_scheme="Desktop: ON in S0"),
      fails=("S4-ME-POWER-PACKAGE-S0-S5", "S4-POWER-DOWN", "S4-POWER-UP"))
fault("sol_ider_disabled", "AMT_RedirectionService.EnabledState is 32768 (SOL and IDER disabled).",
      scope="client", params={"state": Param(32768, int, "EnabledState: 32768 none, 32769 IDER, 32770 SOL")},
      device=lambda ctx, d, state: setattr(d, "redirection_state", state),
      fails=("S5-SOL-IDER-ENABLED-IN-AMT", "S5-SOL-IDER-SESSION"))
fault("ider_boot_off_in_bios", "IDE-R boot is switched off in the client's BIOS Setup: AMT_BootCapabilities.IDER "
      "is false and the BIOS boots its hard disk whatever the console asks.", scope="client",
      device=_set(bios_ider_boot=False), fails=("S5-SOL-IDER-SESSION",))
fault("clock_skew", "The device's clock is off by `seconds`.", scope="client",
      params={"seconds": Param(600, (int, float), "device clock minus real time")},
      device=lambda ctx, d, seconds: setattr(d, "clock_offset_s", float(seconds)), fails=("S5-TIME-SYNCHRONIZED",))
fault("windows_clock_skew", "The in-band client's Windows clock is off by `seconds` (its ME's is right).",
      scope="client", needs="in_band",
      params={"seconds": Param(600, (int, float), "Windows clock minus real time")},
      windows=lambda ctx, w, seconds: setattr(w, "clock_offset_s", float(seconds)), fails=("S5-TIME-SYNCHRONIZED",))


def _acl_without_console(ctx: Context, d: Any) -> None:
    d.acl = [AclEntry(kerberos_sid=f"{ctx.dc.domain_sid}-500")]  # only the domain's Administrator


fault("console_user_not_in_acl", "The device's user ACL has no entry for the console user (only Administrator).",
      scope="client", device=_acl_without_console, fails=("S5-CONSOLE-USER-IN-AMT-ACL", "S5-AMT-REALMS-ENABLED"))
def _acl_without_remote_control(ctx: Context, d: Any) -> None:
    for entry in d.acl:
        if entry.kerberos_sid:
            entry.realms = [r for r in entry.realms if r != 5]


fault("console_acl_no_remote_control", "An administrator took the remote control realm (5) from the Kerberos "
      "entries of the device's user ACL (the console user's group keeps every other realm): AMT refuses the console "
      "user's RequestPowerStateChange (wsman:AccessDenied), while the site's power control (its own digest "
      "account) still works.", scope="client", needs="provisioned", device=_acl_without_remote_control,
      fails=("S5-CONSOLE-POWER-CONTROL", "S5-AMT-REALMS-ENABLED", "S5-SOL-IDER-SESSION"))
fault("kerberos_disabled", "Kerberos is off on the device: KrbEnabled false and no Negotiate accepted "
      "(Digest still works).", scope="client", device=_set(kerberos_enabled=False, kerberos_keytab=""),
      fails=("S5-OOB-CONSOLE-CONNECTS", "S5-OOB-CONSOLE-SYSTEM-STATUS", "S6-WEBUI-LOGIN"))


def _not_imported(ctx: Context, record: Any) -> None:
    record.imported_oob = False
    for col in ctx.site_spec.collections:
        if record.fqdn in col.get("members", []):
            col["members"].remove(record.fqdn)


fault("not_imported", "The site server has not imported the out of band client: no OOB import agent and in no "
      "collection (its hellos are discarded).", scope="client", needs="out_of_band", site_server=_not_imported,
      fails=("S3-OOB-CLIENT-IMPORTED",))
fault("import_wrong_guid", "The out of band client was imported with a wrong SMBIOS GUID (SMS_R_System.SMBIOSGUID "
      "is not its UUID), so the site cannot match its hellos to the import.", scope="client", needs="out_of_band",
      site_server=lambda ctx, r: setattr(r, "uuid", str(uuid.uuid5(uuid.NAMESPACE_DNS, f"mistyped.{r.fqdn}"))),
      fails=("S3-OOB-CLIENT-IMPORTED",))
fault("agent_on_oob_client", "An out of band client has the Configuration Manager agent installed "
      "(SMS_R_System.Client = 1).", scope="client", needs="out_of_band",
      site_server=_set(client=1, client_version="4.00.6221.1000"), fails=("S3-OOB-CLIENT-NO-SCCM-AGENT",))
fault("old_agent", "The in-band client's Configuration Manager agent predates SP1 (its SMS_Client.ClientVersion and "
      "the site's SMS_R_System.ClientVersion).", scope="client", needs="in_band",
      params={"version": Param("4.00.5931.0001", str, "the agent's version (RTM is 4.00.5931)")},
      site_server=lambda ctx, r, version: setattr(r, "client_version", version),
      windows=lambda ctx, w, version: setattr(w, "agent_version", version), fails=("S1-CLIENT-AGENT-SP1",))
fault("no_hellos", "The client is not provisioned and never sends hello packets.", scope="client",
      plan=_set(provisioned=False), device=_set(send_hellos=False),
      fails=("S2-CLIENT-SENDING-HELLO", "S2-AMTOPMGR-HELLO-RECEIVED", "S2-ME-ENTERPRISE-PKI-OR-PSK",
             "S2-ME-UNPROVISIONED", "S3-AMTOPMGR-PROVISIONING-COMPLETED"))
fault("provisioning_failed", "The client is not provisioned; AMTOPMGR.LOG shows its provisioning failed, with a "
      "reason.", scope="client", plan=_set(provisioned=False),
      params={"reason": Param("TLS handshake with the AMT device failed: the device does not trust the "
                              "provisioning certificate's root", str, "the failure reason the log gives")},
      running=lambda ctx, r, reason: _log_failed_provisioning(ctx, r, reason=reason),
      fails=("S3-AMTOPMGR-PROVISIONING-COMPLETED", "S3-AD-MC-OBJECT-CREATED", "S4-MC-DISCOVERED"))
fault("hostname_mismatch", "The ME's host name (AMT_GeneralSettings.HostName) differs from the OS host name.",
      scope="client", params={"host_name": Param(None, str, "the ME host name (default <host>-me)")},
      device=lambda ctx, d, host_name: setattr(d, "host_name", host_name or f"{d.fqdn.split('.')[0]}-me"),
      fails=("S3-ME-HOSTNAME-MATCHES-OS",))

fault("me_hostname_underscore", "A technician typed the ME's host name in MEBx with an underscore (pc0007 becomes "
      "pc_0007, AMT_GeneralSettings.HostName) before provisioning; the OS and DNS keep pc0007.", scope="client",
      needs="provisioned",
      device=lambda ctx, d: setattr(d, "host_name", (lambda h: f"{h[:2]}_{h[2:]}")(d.fqdn.split(".")[0])),
      fails=("S3-CLIENT-FQDN-VALID-CHARACTERS", "S3-ME-HOSTNAME-MATCHES-OS"))

# -- provisioning requests (stage 2) and their outcome (stage 3) ------------------------------------------------
def _log_hello_sequence(ctx: Context, record: Any, *, hours: float) -> None:
    """The hello lines of a device that sent its whole sequence, retry 0 to 14, less and less often over the 6
    hours after it was turned on ``hours`` ago (a lab assumption: about 6 hours, less and less often)."""
    start = dt.datetime.now().astimezone() - dt.timedelta(hours=hours)
    for retry in range(15):
        when = start + dt.timedelta(hours=6) * ((2 ** retry - 1) / (2 ** 14 - 1))
        ctx.site.log.event("hello_received", when=when, thread=THREADS["hello"], fqdn=record.fqdn,
                           uuid=record.uuid, ip=record.address, mode=record.provisioning_mode, retry=retry)
    record.hello_heard = True  # the site knows its AMT from those hellos: AMTStatus 2, not provisioned


def _computer_account_only(ctx: Context, c: ClientPlan) -> None:
    """No AMT object: the client keeps only its own computer account (in CN=Computers, as an un-provisioned
    client's)."""
    ctx.dc.delete(_amt_object_dn(ctx, c))


def _not_provisioned_by_site(ctx: Context, record: Any) -> None:
    """The site has no record of provisioning the client: no history lines; its discovery found the ME provisioned
    with credentials the site does not know: AMTStatus 1, "detected" (the documented status of a computer provisioned
    outside Configuration Manager)."""
    record.provisioned, record.amt_status, record.ztc_requested = False, AMT_STATUS["detected"], False


fault("hellos_exhausted", "The client is not provisioned and has sent its whole hello sequence (retry 0 to 14, in "
      "AMTOPMGR.LOG over the 6 hours after it was turned on `hours` ago); its ME sends no more.", scope="client",
      params={"hours": Param(7, (int, float), "when the sequence began, hours ago (it lasts 6)",
                             lambda v: None if v >= 6 else "at least 6 (the sequence lasts 6 hours)")},
      plan=_set(provisioned=False), device=_set(send_hellos=False),
      running=lambda ctx, r, hours: _log_hello_sequence(ctx, r, hours=hours),
      fails=("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", "S2-CLIENT-SENDING-HELLO"))
fault("me_provisioned_elsewhere", "The ME holds a provisioning record the site did not make (another provisioning "
      "server, or one from before the site was rebuilt): post-provisioning, so it sends no hellos, while the site "
      "never provisioned it (no AMTOPMGR.LOG lines, no AMT object; SMS_R_System.AMTStatus 1, detected).",
      scope="client", needs="provisioned", directory=_computer_account_only,
      site_server=_not_provisioned_by_site,
      fails=("S2-ME-UNPROVISIONED", "S2-AMTOPMGR-HELLO-RECEIVED", "S2-CLIENT-SENDING-HELLO"))
fault("small_business_mode", "The ME was set up in Small Business mode in MEBx (post-provisioning, "
      "AMT_SetupAndConfigurationService.ProvisioningMode 2): it sends no hellos, and the site never provisioned it "
      "(no AMTOPMGR.LOG lines, no AMT object; SMS_R_System.AMTStatus 1, detected).", scope="client",
      needs="provisioned",
      directory=_computer_account_only, device=_set(provisioning_mode=2),
      site_server=_not_provisioned_by_site,
      fails=("S2-ME-ENTERPRISE-PKI-OR-PSK", "S2-ME-UNPROVISIONED", "S2-AMTOPMGR-HELLO-RECEIVED",
             "S2-CLIENT-SENDING-HELLO"))


def _mei_stopped(ctx: Context, w: Any, installed: bool) -> None:
    w.mei_installed, w.mei_started = installed, False


fault("mei_driver_stopped", "The in-band client's Intel MEI (HECI) driver is installed but not started (with "
      "`installed: false`, not installed); its agent logs that it cannot reach the ME and, if the client is not "
      "provisioned yet, sends no ZTC request.", scope="client", needs="in_band",
      params={"installed": Param(True, bool, "the driver is installed (false: absent)")},
      windows=_mei_stopped, site_server=_set(ztc_requested=False), fails=("S2-INBAND-MEI-DRIVER",))


def _unassigned(ctx: Context, w: Any, site_code: str) -> None:
    w.site_code, w.policy_downloaded = site_code.upper(), False


fault("unassigned_agent", "The in-band client's Configuration Manager agent is assigned to no site (or, with "
      "`site_code`, to a site without the out of band service point): it gets no provisioning policy and sends no "
      "ZTC request.", scope="client", needs="in_band",
      params={"site_code": Param("", str, "the assigned site code ('' = none)",
                                 lambda v: None if v == "" or (len(v) == 3 and v.isalnum()) else "3 characters")},
      windows=_unassigned, site_server=_set(ztc_requested=False),
      fails=("S2-INBAND-AGENT-ASSIGNED-OOB-SITE", "S2-INBAND-POLICY-DOWNLOADED"))


def _no_policy(ctx: Context, w: Any, hours: float) -> None:
    w.policy_downloaded, w.history_age_s = False, hours * 3600.0


fault("policy_not_downloaded", "The in-band client is not provisioned and its agent, running for `hours`, has not "
      "received the automatic provisioning policy (OOBMGMT.LOG has no policy line), so it sent no ZTC request.",
      scope="client", needs="in_band",
      params={"hours": Param(30, (int, float), "how long the agent has run without the policy (the guide: up to "
                             "25 hours is normal)", lambda v: None if v > 0 else "a positive number")},
      plan=_set(provisioned=False), windows=_no_policy, site_server=_set(ztc_requested=False),
      fails=("S2-INBAND-POLICY-DOWNLOADED", "S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING",
             "S2-AMTOPMGR-ZTC-REQUEST-RECEIVED"))


def _pilot_collection(ctx: Context, record: Any, hours: float) -> None:
    """An administrator moved the client into a new collection and enabled automatic provisioning on it ``hours``
    ago (the collection's LastModificationTime and LastMemberChangeTime); its agent sent no ZTC request since."""
    spec, when = ctx.site_spec, dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours)
    for col in spec.collections:
        col["members"] = [m for m in col.get("members", []) if m != record.fqdn]
    n = sum(1 for c in spec.collections if str(c.get("Name", "")).startswith("vPro in-band pilot"))
    spec.collections.append({"CollectionID": f"{spec.site_code}{30 + n:05d}", "Name": "vPro in-band pilot"
                             + (f" {n + 1}" if n else ""), "members": [record.fqdn], "amt_auto_provision": True,
                             "settings_modified": when.isoformat(), "member_changed": when.isoformat()})
    record.ztc_requested = False


def _policy_never_requested(ctx: Context, w: Any, hours: float) -> None:
    """The agent, running for a day before, last requested machine policy 12 hours before the setting changed."""
    w.policy_downloaded, w.history_age_s, w.policy_requested_age_s = False, (hours + 24) * 3600, (hours + 12) * 3600


fault("inband_policy_never_requested", "An administrator moved the in-band client into a new collection ('vPro "
      "in-band pilot') and enabled automatic provisioning on it `hours` ago; the client's agent has not requested "
      "machine policy since (CCM_Scheduler_History: its last Machine Policy Assignments Request is 12 hours older "
      "than the setting), so OOBMGMT.LOG has no provisioning policy and it sent no ZTC request.",
      scope="client", needs="in_band",
      params={"hours": Param(30, (int, float), "how long ago the setting was enabled on the collection (the guide: "
                             "up to 25 hours is normal)", lambda v: None if v > 0 else "a positive number")},
      plan=_set(provisioned=False), site_server=_pilot_collection, windows=_policy_never_requested,
      fails=("S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING", "S2-INBAND-POLICY-DOWNLOADED",
             "S2-AMTOPMGR-ZTC-REQUEST-RECEIVED"))


def _child_provision_server(ctx: Context, c: ClientPlan, child: str) -> None:
    """The child domain's ProvisionServer record (the ME looks it up in its own domain): the service point."""
    try:
        ctx.dc.add_dns_record(f"ProvisionServer.{child}", "A", ctx.plan.site_server)
    except Exception:  # noqa: BLE001 - a second client in the same child domain: the record is there
        pass


fault("third_level_domain", "The client's subnet hands out DHCP option 15 <child>.<domain>: its ME takes the "
      "third-level domain branch.vprolab.test (AMT_GeneralSettings.DomainName; DNS has a ProvisionServer record "
      "there), while the provisioning certificate is for <domain> and the OS keeps its primary suffix <domain>.",
      scope="client", params={"child": Param("branch", str, "the child domain's label",
                                             lambda v: None if v.isalnum() else "letters and digits only")},
      directory=_child_provision_server,
      device=lambda ctx, d, child: setattr(d, "domain_name", f"{child}.{d.fqdn.split('.', 1)[1]}"),
      fails=("S3-THIRD-LEVEL-DOMAIN-TRUSTED", "S3-ME-HOSTNAME-MATCHES-OS"))


def _amt_321(ctx: Context, d: Any) -> None:
    d.amt_version = "3.2.1"
    _self_signed(ctx, d)


fault("legacy_amt", "The device runs AMT 3.0 (no WS-MAN: /wsman answers 404) and the site server has no WS-MAN "
      "translator.", scope="client", device=_set(amt_version="3.0.0"), site_server=_set(amt_full_version="3.0.0"),
      fails=("S1-WSMAN-TRANSLATOR-LEGACY", "S5-OOB-CONSOLE-CONNECTS", "PRE-CLIENT-VPRO-SUPPORTED-AMT"))
fault("amt_321", "The device runs AMT 3.2.1 and serves a self-signed TLS certificate on 16993.", scope="client",
      device=_amt_321, site_server=_set(amt_full_version="3.2.1"),
      fails=("S3-AMT-321-SELF-SIGNED-CERT", "S3-CLIENT-AMT-WEB-SERVER-CERT"))
fault("unreachable", "The device does not answer: nothing listens on its address (16992/16993 refused).",
      scope="client", device=lambda ctx, d: ctx.devices.remove(d),
      fails=("S1-PORTS-SERVICE-POINT-TO-AMT", "S1-PORTS-CONSOLE-TO-AMT", "S5-OOB-CONSOLE-CONNECTS",
             "S6-WEBUI-CONNECTS"))
