"""Stage 1 and the prerequisites page: DNS and the network between the site, the console and the AMT clients.

Guide, Stage 1: "DNS servers support dynamic updates from DHCP servers."; "Clients use dynamic IP allocation. Check
Intel ME is configured for DHCP and is receiving a dynamic IP address"; "Firewalls located between SCCM servers or
SCCM consoles and clients allow access for ports 9971 and 16992-16995"; "Check network firewalls and firewalls on
SCCM servers allow ports 9971, 16992-16995 and any other SCCM required ports".
Prerequisites (seed 004): "From the AMT management controllers to the out of band service point site system server
for out of band provisioning: TCP 9971."; "From the out of band service point to AMT management controllers for
discovery: TCP 16992; for power control, provisioning, and discovery: TCP 16993."; "From computers running the out
of band management console to AMT management controllers for all management tasks: TCP 16993; for serial over LAN
and IDE redirection: TCP 16995."; "WINS cannot be used for resolving computer names, and DNS is required for all
connections that are used by the out of band management feature."; "For Configuration Manager 2007 SP2 and
wireless support, ensure that DNS contains records with the wireless IP address for the AMT-based computer's fully
qualified domain name."; "IPv6 is not supported. Out of band management uses IPv4 only."

Each port gets a verdict within the connect timeout: open, refused (the host answered with a reset: nothing
listens), filtered (no answer: a firewall drops it) or unreachable (no route, no name).

Vantage points: the ports the guide wants open "from the out of band service point" and "from computers running
the out of band management console" are probed from the first server of that role whose entry has ``testinfra:``
(``facts.vantage``: reachable or not, testinfra's Addr does not tell refused from filtered); a port it cannot
reach is shown with this machine's verdict beside it. Where no server of the role can decide (none has
``testinfra:``, or its backend is ``winrm://``), the ports are probed from this machine, and the finding and the
evidence say so and why.
"""
import ipaddress

import pytest

from pytest_vpro.checks import expect, not_applicable
from pytest_vpro.probes.dns import parse_zone_allow_update
from pytest_vpro.probes.errors import ProbeError, Undecided
from pytest_vpro.probes.ldap import NoSuchObject, format_sid

ZONE_UPDATE = {0: "none", 1: "nonsecure and secure", 2: "secure only"}  # MS-DNSP fAllowUpdate
INVENTORY = "SELECT Name, ResourceNames, AMTFullVersion, ClientVersion FROM SMS_R_System"


def domain_dn(domain: str) -> str:
    return ",".join(f"DC={label}" for label in domain.split("."))


def as_list(value) -> list:
    return value if isinstance(value, list) else [] if value in (None, "") else [value]


def from_vantage_point(facts, role: str, host: str, ports: list[int]):
    """``(name, states, undecided)``: the ports as the first vantage point of ``role`` that can decide sees them
    (``name`` None and ``states`` empty where none can), and a sentence for each one that could not."""
    undecided = []
    for server in facts.vantage.points(role):
        try:
            return facts.vantage.name(server), facts.vantage.ports(server, host, ports), undecided
        except ProbeError as exc:  # VantageUndecided, or its password reference unset: this machine's view
            text = str(exc)
            undecided.append(text if text.startswith("cannot decide") else
                             f"cannot decide from {facts.vantage.name(server)}: {text}")
    return None, [], undecided


def judge_from(point: str, name: str, states, here, *, may_be_refused=()) -> list[str]:
    """The ports ``point`` cannot reach, as texts naming it, this machine's verdict (``here``, by port) beside
    each; one in ``may_be_refused`` that this machine sees refused passes (nc -z says only "not reachable")."""
    return [f"from {point}: {s.port} on {name} ({s.host}) {s.how} (this machine: {here[s.port]})"
            for s in states if not s.reachable and not (s.port in may_be_refused and here[s.port].verdict == "refused")]


def judge(states, *, may_be_refused=()) -> list[str]:
    """The ports that are not open (except refused ones in ``may_be_refused``), as 'host:port verdict' texts."""
    return [str(s) for s in states if not s.open and not (s.verdict == "refused" and s.port in may_be_refused)]


@pytest.mark.check("S1-DNS-DYNAMIC-UPDATES")
def test_client_zones_accept_dynamic_updates(server, env, facts, evidence):
    forest = domain_dn(env.site.forest)
    problems, seen = [], {}
    for zone in env.site.client_domains:
        bases = (f"DC=DomainDnsZones,{domain_dn(zone)}", f"DC=ForestDnsZones,{forest}", f"CN=System,{domain_dn(zone)}")
        entries = [e for base in bases for e in _zones(facts, base, zone)]
        if not entries:
            problems.append(f"no AD-integrated zone {zone}")
            continue
        value = parse_zone_allow_update(entries[0]["raw_attributes"].get("dNSProperty", []))
        soa = facts.dns.records(zone, "SOA")
        seen[zone] = {"dn": entries[0]["dn"], "allow update": ZONE_UPDATE.get(value, value), "SOA": soa}
        if not soa:
            problems.append(f"{zone}: no SOA answer")
        if value not in (1, 2):
            problems.append(f"{zone}: dynamic updates {ZONE_UPDATE.get(value, value)}")
        elif value == 2:  # secure only: the DHCP servers update on the clients' behalf as DnsUpdateProxy members
            for dhcp in env.servers_with("dhcp"):
                proxy = facts.directory.search(domain_dn(env.site.name), "(sAMAccountName=DnsUpdateProxy)",
                                               ("objectSid",))
                try:
                    member = proxy and _sid(proxy[0]) in facts.directory.account_sids(dhcp)["sids"]
                except ProbeError as exc:
                    member, why = False, str(exc)
                else:
                    why = f"{dhcp.name} is not in DnsUpdateProxy"
                if not member:
                    problems.append(f"{zone} takes secure updates only and {why}")
    evidence.attach("zones", seen)
    expect(not problems, found="; ".join(problems),
           expected="each client zone allows dynamic updates (nonsecure and secure, or secure only with the DHCP "
                    "servers in DnsUpdateProxy) and answers for its SOA")


def _zones(facts, base: str, zone: str) -> list[dict]:
    try:
        return facts.directory.search(base, f"(&(objectClass=dnsZone)(name={zone}))", ("name", "dNSProperty"))
    except NoSuchObject:
        return []


def _sid(entry: dict) -> str:
    return format_sid(entry["raw_attributes"]["objectSid"][0])


@pytest.mark.check("S1-CLIENT-ME-DHCP")
def test_me_gets_its_address_from_dhcp(client, facts, evidence):
    known = {client.address} if client.address else set(facts.dns.forward(client.fqdn))
    try:
        ports = facts.amt.ethernet_settings()
    except ProbeError as exc:  # not provisioned yet (or unreachable): the hello it sent shows its address
        hellos = [e for e in facts.logs.client_events() if e.kind == "hello_received" and e.ip]
        evidence.attach("hello packets", [{"time": str(e.time), "from": e.ip} for e in hellos])
        if hellos:
            expect(hellos[-1].ip in known, found=f"the last hello came from {hellos[-1].ip}",
                   expected=f"the client's address ({', '.join(sorted(known))})")
            return
        try:  # nothing from the ME itself: the scope it would lease from must be active (the ME: MEBx)
            reply = facts.dhcp.site_inform()
        except ProbeError as dhcp:
            expect(False, found=f"no WS-MAN answer ({exc}), no hello in AMTOPMGR.LOG, and no DHCP answer ({dhcp})",
                   expected="AMT_EthernetPortSettings, a hello from the ME's dynamic address, or an active scope")
        evidence.attach("DHCP", {"WS-MAN": str(exc), "DHCPINFORM answered, options": sorted(reply.options),
                                 "note": "the ME's own DHCP setting is a MEBx check until it is provisioned"})
        # An answering scope says nothing of the ME: its DHCP setting and its address are unknown here.
        raise Undecided(f"no WS-MAN answer ({exc}) and no hello in AMTOPMGR.LOG: the ME's DHCP setting and "
                        "address cannot be read (the DHCP server answers; check DHCP in MEBx)")
    wired = [p for p in ports if not p.wireless] or ports
    evidence.attach("AMT_EthernetPortSettings", [vars(p) for p in ports])
    static = [p.instance_id for p in wired if not p.dhcp_enabled]
    expect(not static, found=f"DHCPEnabled false ({', '.join(static)}: a static address)",
           expected="the ME configured for DHCP")
    expect(any(p.ip_address in known for p in wired), found=f"the ME has {', '.join(p.ip_address for p in wired)}",
           expected=f"the client's leased address ({', '.join(sorted(known))})")


@pytest.mark.check("S1-PORT-9971-AMT-TO-SERVICE-POINT")
def test_service_point_takes_hellos_on_9971(server, env, facts, evidence):
    if not any(c.provisioning == "out_of_band" for c in env.clients):
        not_applicable("no out of band clients: no hello packets are sent")
    port = env.expected["ports"]["provisioning"]
    host = server.address or server.name
    state, where = facts.network.ports(host, [port])[0], facts.network.vantage(host)
    evidence.attach("TCP", {"probed": where, "result": str(state)})
    expect(state.open, found=f"{server.name}: {state}, probed {where}",
           expected=f"TCP {port} open on the out of band service point (from the clients' side)")


@pytest.mark.check("S1-PORTS-SERVICE-POINT-TO-AMT")
def test_service_point_reaches_amt_ports(client, env, facts, evidence):
    ports, host = env.expected["ports"], facts.dns.address()
    wanted = [ports["amt_http"], ports["amt_https"]]
    point, seen, undecided = from_vantage_point(facts, "oob_service_point", host, wanted)
    if point is not None:
        here = {s.port: s for s in facts.network.ports(host, [s.port for s in seen if not s.reachable])}
        evidence.attach("TCP", {"probed": f"from {point}", "results": [str(s) for s in seen]}
                        | ({"this machine": [str(s) for s in here.values()]} if here else {}))
        closed = judge_from(point, client.name, seen, here)
        expect(not closed, found="; ".join(closed),
               expected=f"TCP {ports['amt_http']} and {ports['amt_https']} reachable from the service point")
    else:
        states, where = facts.network.ports(host, wanted), facts.network.vantage(host)
        where += "".join(f"; {u}" for u in undecided)
        evidence.attach("TCP", {"probed": where, "results": [str(s) for s in states]})
        closed = judge(states)
        expect(not closed, found=f"{'; '.join(closed)}, probed {where}",
               expected=f"TCP {ports['amt_http']} and {ports['amt_https']} open (the service point's ports)")
    try:
        peer = facts.network.peer_tls(facts.dns.address(), ports["amt_https"])
    except Undecided:  # a detail with no public source did not fit: cannot decide
        raise
    except ProbeError as exc:
        expect(False, found=f"no TLS handshake on {ports['amt_https']}: {exc}", expected="a TLS handshake")
    evidence.attach(f"TLS on {ports['amt_https']}", {"subject": peer.certificate.subject.rfc4514_string(),
                                                      "issuer": peer.certificate.issuer.rfc4514_string(),
                                                      "negotiated": peer.negotiated})


@pytest.mark.check("S1-PORTS-CONSOLE-TO-AMT")
def test_console_reaches_amt_ports(client, env, facts, evidence):
    ports, host = env.expected["ports"], facts.dns.address()
    plain = ports["redirection"]  # 16994, redirection without TLS
    wanted, unprobed = [ports["amt_https"], plain, ports["redirection_tls"]], ""
    try:  # the redirection port listens only on a provisioned ME whose redirection listener is on
        listening = facts.amt.redirection().listener_enabled
    except ProbeError:
        listening = False
    # 16994 (redirection without TLS): the guide's stage 1 asks firewalls to allow 16992-16995, but a TLS ME (as
    # SCCM provisions it) need not listen there: refused (the host answered) passes, filtered fails.
    may_be_refused = (plain,) if listening else (plain, ports["redirection_tls"])
    expected = (f"TCP {ports['amt_https']} and {ports['redirection_tls']} (SOL/IDER) open from the console, "
                f"{plain} not filtered")
    point, seen, undecided = from_vantage_point(facts, "oob_console", host, wanted)
    if point is not None:
        here = {s.port: s for s in facts.network.ports(host, [s.port for s in seen if not s.reachable])}
        evidence.attach("TCP", {"probed": f"from {point}", "results": [str(s) for s in seen]}
                        | ({"this machine": [str(s) for s in here.values()]} if here else {}))
        closed = judge_from(point, client.name, seen, here, may_be_refused=may_be_refused)
        expect(not closed, found="; ".join(closed), expected=expected)
        return
    where = facts.network.vantage(host) + "".join(f"; {u}" for u in undecided)
    try:
        states = facts.network.ports(host, wanted)
    except ProbeError as exc:  # a live probe always has a verdict; a snapshot taken before 16994 was probed has none
        states, unprobed = facts.network.ports(host, [ports["amt_https"], ports["redirection_tls"]]), str(exc)
    evidence.attach("TCP", {"probed": where, "results": [str(s) for s in states]}
                    | ({f"{plain} not probed": unprobed} if unprobed else {}))
    closed = judge(states, may_be_refused=may_be_refused)
    expect(not closed, found=f"{'; '.join(closed)}, probed {where}", expected=expected)


@pytest.mark.check("PRE-DNS-REQUIRED-NO-WINS")
def test_site_servers_resolve_every_client_through_dns(site, env, facts, evidence):
    problems, seen = [], {}
    for server in {s.name: s for r in ("site_server", "oob_service_point") for s in env.servers_with(r)}.values():
        adapters = [a for a in facts.windows.wmi(server, "Win32_NetworkAdapterConfiguration")
                    if str(a.get("IPEnabled")).lower() == "true"]
        dns = [d for a in adapters for d in as_list(a.get("DNSServerSearchOrder"))]
        seen[server.name] = {"DNS servers": dns, "WINS": [a.get("WINSPrimaryServer") for a in adapters]}
        if not dns:
            problems.append(f"{server.name} has no DNS server")
            continue
        unresolved = []
        for c in env.clients:  # a client the estate's DNS does not know either is judged by its own checks
            try:
                if not facts.dns.records(c.fqdn, "A", servers=dns) and facts.dns.forward(c.fqdn):
                    unresolved.append(c.fqdn)
            except ProbeError as exc:
                problems.append(f"{server.name}'s DNS servers {', '.join(dns)}: {exc}")
                break
        if unresolved:
            problems.append(f"{len(unresolved)} clients not in {server.name}'s DNS ({', '.join(dns)}): "
                            + ", ".join(unresolved[:5]) + (" ..." if len(unresolved) > 5 else ""))
    names = [n for r in facts.site.wmi("SMS_R_System", INVENTORY) for n in as_list(r.get("ResourceNames"))]
    bare = [n for n in names if "." not in str(n)]
    if bare:
        problems.append(f"resources known by NetBIOS name only: {', '.join(map(str, bare[:5]))}")
    evidence.attach("name resolution", seen)
    expect(not problems, found="; ".join(problems),
           expected="every client FQDN in DNS resolves through the DNS servers of the site servers too; "
                    "resources known by FQDN")


@pytest.mark.check("PRE-DNS-WIRELESS-RECORDS")
def test_wireless_address_is_in_dns(client, facts, evidence):
    if not client.extra.get("wireless"):
        not_applicable("not a wireless client (wireless: true in the environment file)")
    wireless = [p for p in facts.amt.ethernet_settings() if p.wireless and p.ip_address]
    addresses = facts.dns.forward(client.fqdn)
    evidence.attach("wireless", {"AMT wireless ports": [vars(p) for p in wireless], "A records": addresses})
    expect(wireless, found="no wireless port with an address in AMT_EthernetPortSettings",
           expected="AMT's wireless port and its address")
    missing = [p.ip_address for p in wireless if p.ip_address not in addresses]
    expect(not missing, found=f"{client.fqdn} -> {', '.join(addresses) or 'no A record'}; the wireless address "
                              f"{', '.join(missing)} is not among them",
           expected="an A record with the wireless address for the client's FQDN")


@pytest.mark.check("PRE-IPV4-ONLY")
def test_client_and_service_point_are_ipv4(client, env, facts, evidence):
    found = {name: {"A": facts.dns.records(name, "A"), "AAAA": facts.dns.records(name, "AAAA")}
             for name in [client.fqdn, *(s.name for s in env.servers_with("oob_service_point"))]}
    evidence.attach("DNS", found)
    missing = [f"{name} has no A record" + (f" (AAAA {', '.join(r['AAAA'])} only)" if r["AAAA"] else "")
               for name, r in found.items() if not r["A"]]
    expect(not missing, found="; ".join(missing), expected="IPv4 (A) records for the client and the service point")
    try:  # the ME's own addresses, where WS-MAN answers (not yet provisioned: DNS is all there is)
        me = [p.ip_address for p in facts.amt.ethernet_settings() if p.ip_address]
    except ProbeError:
        me = []
    evidence.attach("AMT_EthernetPortSettings IPAddress", me)
    v6 = [a for a in [client.address or "", *me] if a and ipaddress.ip_address(a).version != 4]
    expect(not v6, found=f"IPv6 addresses {', '.join(v6)}", expected="IPv4 addresses for the client and its ME")
