"""Faults: shared services down (the root causes a run names)."""
from __future__ import annotations

from ..names import DescriptionError
from .registry import Context, Param, fault


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


#: The dropped range: 127.<net>.250.0/24, a third octet the address plan gives no client and no laptop's wireless
#: address below 12,000 clients (addresses.py: clients 1..200, wireless 201 and up).
DROPPED_RANGE = 250
AMT_PORTS = (16992, 16993, 16994, 16995)


def _range_clients(ctx: Context, clients: int) -> list:
    if not 2 <= clients < len(ctx.clients) or clients > 250:
        raise DescriptionError(f"client_subnet_dropped: clients must be at least 2, at most 250 and fewer than the "
                               f"lab's {len(ctx.clients)} clients (others must stay on a range that answers)")
    chosen = ctx.clients[-clients:]
    in_band = [c.fqdn for c in chosen if c.provisioning == "in_band"]
    if in_band:  # their Windows side is served by the lab's one file server, which cannot be cut per range
        raise DescriptionError(f"client_subnet_dropped: the dropped range's clients must be out of band; "
                               f"{', '.join(in_band)} {'is' if len(in_band) == 1 else 'are'} in band")
    return chosen


def _second_range(ctx: Context, target: None, clients: int) -> None:
    """The last ``clients`` PCs sit on a range of their own, 127.<net>.250.0/24 (a second floor's VLAN)."""
    for n, c in enumerate(_range_clients(ctx, clients), 1):
        c.address = f"127.{ctx.plan.net}.{DROPPED_RANGE}.{n}"


def _range_dropped(ctx: Context, target: None, clients: int) -> None:
    """The router in front of that range drops everything to it: no AMT device of the range is reached."""
    network = f"127.{ctx.plan.net}.{DROPPED_RANGE}."
    for device in [d for d in ctx.devices if d.address.startswith(network)]:
        ctx.devices.remove(device)
        ctx.firewall.extend((device.address, port) for port in AMT_PORTS)


fault("client_subnet_dropped", "The last N clients (parameter clients, default 2) sit on a range of their own, "
      "127.<net>.250.0/24, and a route or firewall rule between the test machine and that range drops every packet "
      "to it (their AMT ports 16992-16995 get no answer); the other clients' range still answers. The run names it "
      "once as the root cause ('network path to 127.<net>.250.0/24 (N clients) not answering'); those clients' "
      "findings point at it.", scope="site", plan=_second_range, device=_range_dropped,
      params={"clients": Param(2, int, "how many clients (the last ones of the plan) sit on the dropped range")},
      fails=("S1-PORTS-SERVICE-POINT-TO-AMT", "S1-PORTS-CONSOLE-TO-AMT"))
