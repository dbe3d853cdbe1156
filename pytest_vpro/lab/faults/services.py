"""Faults: shared services down (the root causes a run names)."""
from __future__ import annotations

from .registry import Context, fault


def _dns_server_down(ctx: Context, target: None) -> None:
    """The estate's DNS server dns01 (127.<net>.0.53) is switched off: the environment names it, nothing answers."""
    ctx.dns_servers = [f"127.{ctx.plan.net}.0.53"]


fault("dns_server_down", "The estate's DNS server (127.<net>.0.53, the one the environment file and the console host "
      "use) is switched off: nothing answers on port 53, so no estate name resolves for the checks. The run names "
      "it once as the root cause; every finding that follows says 'caused by: DNS server ... not answering'.",
      scope="site", dhcp=_dns_server_down, fails=("PRE-DNS-REQUIRED-NO-WINS",))


def _directory_down(ctx: Context, target: None) -> None:
    """The DC's directory service stops (Samba restarted without its LDAP server) and the host drops LDAP, LDAPS
    and the global catalog's SYNs, as a DC whose NTDS hangs; DNS, Kerberos and SMB on the host still answer."""
    ctx.dc.stop()
    ctx.dc.ldap_off = True
    ctx.dc.start()
    ctx.firewall.extend((ctx.plan.dc, port) for port in (389, 636, 3268, 3269))


fault("directory_down", "The domain controller's directory does not answer: LDAP 389/636 and the global catalog "
      "3268/3269 get no answer (its directory service hangs); DNS, Kerberos and SMB on the same host still do. "
      "The run names the directory once as the root cause; the AD checks' findings point at it.",
      scope="site", running=_directory_down, fails=("S1-AD-AMT-CONTAINER-ACL",))


def _site_server_down(ctx: Context, target: None) -> None:
    """The site server is switched off: nothing of it answers (WinRM 5985/5986 and the service point's 9971 drop)."""
    spec = ctx.site_spec
    spec.http_port = spec.https_port = spec.hello_port = 0  # its simulator listens nowhere anyone asks
    ctx.firewall.extend((ctx.plan.site_server, port) for port in (5985, 5986, 9971))


fault("site_server_down", "The site server (sccm01) is switched off: WinRM 5985/5986 and the out of band service "
      "point's 9971 get no answer. The run names it once as the root cause; the checks whose facts come from it "
      "(hot fixes, the SMS Provider, the site's settings) say 'caused by: site server ... not answering' instead of "
      "their own advice.", scope="site", site_server=_site_server_down, fails=("S1-PORT-9971-AMT-TO-SERVICE-POINT",))
