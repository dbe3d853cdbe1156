"""Root causes: the estate's shared services, asked once before any check, and the findings that follow from them.

When a service every target needs does not answer (the estate's DNS servers, the directory, the site server, the
CA's host, the DHCP server), hundreds of checks fail with the same symptom and each gives its own advice ("install
hot fix KB...") for a fact it never read. So the run asks those services first (:func:`survey`): one exchange
each, what the checks themselves would do first (a DNS query, a TCP connection to the port the facts use, a
DHCPINFORM). A service that does not answer is a :class:`Cause`, with its own corrective action. Meanwhile a few
clients of each client range (the /24 of their addresses) are asked on their AMT port (:func:`survey_ranges`): a
range none of whose sampled clients answered is a cause too, the network path to it.

A check's :class:`~pytest_vpro.probes.errors.ProbeError` is then attributed (:meth:`Causes.of`): a name that did
not resolve while every DNS server is down is the DNS cause; an unanswered exchange with a dead service's host is
that service's cause. The engine writes the cause into the finding ("caused by: ...") and its corrective action
instead of the check's own, and a result gated by such a finding names the cause too (gating.py).

The survey runs once per run on the controller (before xdist starts its workers) and is written to the run's
folder (``causes.json``); every worker reads that file. So every process attributes with the same record, and a
finding reads the same under ``-n 0``, ``-n 2`` and every shard of one night; ``--facts-out`` keeps the record in
the snapshot's header, and ``--facts-in`` attributes with it. This module knows nothing of pytest.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import re
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from .environment import Client, Environment, Server
from .probes import net
from .probes.dns import NoAnswer, NxDomain, Resolver
from .probes.errors import DID_NOT_RESOLVE, ProbeError, Unreachable

FILE = "causes.json"
SILENT = ("filtered", "no answer", "refused", "did not resolve", "not answering", "unreachable")
CAUSED_RE = re.compile(r"caused by: (?P<what>[^\n;]+)")


@dataclass(frozen=True)
class Cause:
    key: str                 # "dns", "directory", "site_server", "issuing_ca", "dhcp", "client_subnet"
    what: str                # "DNS server 127.0.0.53 not answering"
    where: str               # the endpoints asked
    action: str              # what to do about it
    hosts: tuple[str, ...]   # names and addresses whose unanswered exchanges follow from it
    found: str = ""          # what the survey saw, in the probes' vocabulary
    network: str = ""        # a client range's network ("10.1.2.0/24"): every address in it follows from it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


ACTIONS = {
    "dns": "Bring the estate's DNS service back (or correct dns.servers in the environment file): every name the "
           "checks use resolves through it. Then run the checks again.",
    "directory": "Bring the domain controller's directory service back (LDAP {ports}) or open the path to it from "
                 "this host; the AD checks and everything gated by them wait for it. Then run the checks again.",
    "site_server": "Start the site server (or its WinRM service, {ports}) or open the path to it from this host: "
                   "the Configuration Manager facts come from it. Then run the checks again.",
    "issuing_ca": "Start the CA's host (or its WinRM service, {ports}) or open the path to it from this host. "
                  "Then run the checks again.",
    "dhcp": "Start the DHCP service on {where} (or correct the environment file's DHCP server). Then run the "
            "checks again.",
    "client_subnet": "None of the PCs sampled in {network} answered on their AMT port from this machine: check the "
                     "router, VLAN or firewall between this machine and {network} (a route removed, an access list "
                     "that drops the range, the VLAN's uplink down); ping and tracert a PC of the range from here. "
                     "If the PCs of that range are switched off at the wall, switch them on. Then run the checks "
                     "again.",
}
NAMES = {"directory": "directory (domain controller {names})", "site_server": "site server {names}",
         "issuing_ca": "CA host {names}", "dhcp": "DHCP server {names}"}


class Causes:
    """The run's record of dead shared services; attributes a check's ProbeError to one of them."""

    def __init__(self, causes: list[Cause] | tuple[Cause, ...] = ()) -> None:
        self.causes = tuple(causes)
        self._dns = next((c for c in self.causes if c.key == "dns"), None)
        self._by_host = {h.lower(): c for c in self.causes for h in c.hosts}
        self._networks = [(ipaddress.ip_network(c.network), c) for c in self.causes if c.network]

    def __iter__(self):
        return iter(self.causes)

    def __len__(self) -> int:
        return len(self.causes)

    def by_what(self, what: str) -> Cause | None:
        return next((c for c in self.causes if c.what == what.strip()), None)

    def of(self, exc: BaseException) -> Cause | None:
        """The cause an unanswered exchange follows from, or None (the target's own failure)."""
        if not isinstance(exc, Unreachable):
            return None
        if self._dns is not None and getattr(exc, "how", None) == DID_NOT_RESOLVE:
            return self._dns
        named = str(getattr(exc, "host", "") or "")
        hosts = [part.strip().lower() for part in named.split(",")]  # ldap: "dc01:636, dc02:636"
        hosts = [h.rsplit(":", 1)[0] if h.count(":") == 1 else h for h in hosts]
        for host in hosts:
            if host in self._by_host:
                return self._by_host[host]
            if self._networks and _is_address(host):  # an address of a dead client range (a wireless one too)
                address = ipaddress.ip_address(host)
                for network, cause in self._networks:
                    if address in network:
                        return cause
        if self._dns is not None and hosts and not any(_is_address(h) for h in hosts):
            return self._dns  # a name no DNS server could give an address for: however the exchange ended
        return None

    def of_finding(self, found: str) -> Cause | None:
        """The cause of a check's finding that a dead service's host did not answer (a port check of the site
        server that found 9971 filtered while the whole server is off), or None: a finding about a service that
        answered is that check's own."""
        text = found.lower()
        if not any(word in text for word in SILENT):
            return None
        for host, cause in self._by_host.items():
            if re.search(r"(?<![\w.-])" + re.escape(host) + r"(?![\w-]|\.\w)", text):
                return cause
        return None

    # ---------------------------------------------------------------- the run folder
    def write(self, run_dir: Path) -> None:
        (run_dir / FILE).write_text(json.dumps(self.to_json(), indent=1))

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.causes]

    @classmethod
    def from_json(cls, rows: Any) -> "Causes":
        """The record as :meth:`to_json` wrote it (``causes.json``, a snapshot's header); fields this version does
        not know are left out, so a newer record still reads."""
        known = {f.name for f in fields(Cause)}
        return cls([Cause(**{**{k: v for k, v in row.items() if k in known}, "hosts": tuple(row.get("hosts", ()))})
                    for row in rows or () if isinstance(row, dict)])

    @classmethod
    def read(cls, run_dir: Path) -> "Causes":
        try:
            rows = json.loads((run_dir / FILE).read_text())
        except (OSError, ValueError):
            return cls()
        return cls.from_json(rows)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


# -------------------------------------------------------------------- the survey
def _winrm_port(server: Server) -> int:
    url = getattr(server, "winrm", None) or ""
    parts = urlsplit(url) if url else None
    if parts and parts.port:
        return parts.port
    return 5985 if parts and parts.scheme == "http" else 5986


def _tcp(host: str, port: int, timeout: float) -> str:
    """"" if ``host:port`` accepts a connection, else what happened, in the vocabulary."""
    state = net.probe_tcp(host, port, timeout)
    return "" if state.open else _in_words(state, timeout)


def _in_words(state: net.PortState, timeout: float) -> str:
    """What a port that did not open did, in the vocabulary (``require_open``'s words)."""
    try:
        state.require_open(timeout)
    except Unreachable as exc:
        return str(exc)
    return str(state)


def survey(env: Environment, facts: Any = None) -> Causes:
    """Ask each shared service of ``env`` once, concurrently; the ones that do not answer are the causes.

    ``facts``: the estate's :class:`~pytest_vpro.facts.Facts` (for the DHCPINFORM, which needs its knobs); None
    leaves DHCP out. Bounded by the connect timeout (and one DNS query's) per service; the client ranges are asked
    meanwhile, within their own deadline (:func:`survey_ranges`).
    """
    timeout = env.timeouts["connect"]
    jobs: dict[str, Callable[[], str]] = {}
    dns_servers = list(env.dns.get("servers") or [])

    def ask_dns(server: str) -> str:
        try:
            Resolver([server], port=env.dns["port"], timeout=timeout).lookup(env.site.name, "SOA")
        except (NxDomain, NoAnswer):
            return ""  # an answer
        except ProbeError as exc:
            return str(exc)
        return ""

    for server in dns_servers:
        jobs[f"dns|{server}"] = functools.partial(ask_dns, server)
    ports = {"directory": (636,), "site_server": None, "issuing_ca": None}
    groups: dict[str, list[Server]] = {
        "directory": env.servers_with("domain_controller"),
        "site_server": env.servers_with("site_server"),
        "issuing_ca": env.servers_with("issuing_ca"),
    }
    for key, servers in groups.items():
        for server in servers:
            for port in ports[key] or (_winrm_port(server),):
                jobs[f"{key}|{server.name}|{port}"] = functools.partial(_tcp, server.name, port, timeout)
    dhcp = env.servers_with("dhcp")
    if facts is not None and dhcp:
        def ask_dhcp() -> str:
            try:
                facts.dhcp.site_inform()
            except Unreachable as exc:
                return str(exc)
            except ProbeError:
                return ""  # it answered, wrongly perhaps: that is its own check's finding
            return ""
        jobs[f"dhcp|{dhcp[0].name}|67"] = ask_dhcp
    ranges = client_ranges(list(env.clients))
    port = int(env.expected["ports"]["amt_https"])
    with ThreadPoolExecutor(max(1, min(8, len(jobs)))) as pool:
        services = [pool.submit(job) for job in jobs.values()]
        dead_ranges = survey_ranges(ranges, port, timeout)  # meanwhile, bounded by its own deadline
        found = dict(zip(jobs, (f.result() for f in services)))
    return Causes(_causes(env, found, groups, dhcp) + [_range_cause(network, ranges[network], port, seen)
                                                       for network, seen in dead_ranges.items()])


# -------------------------------------------------------------------- client ranges
#: A client's range is the /24 of its address: the environment file carries no DHCP scope or subnet per client,
#: and a /24 is the usual size of a client VLAN. A larger range that is dropped shows as each of its /24s.
RANGE_PREFIX = 24
SAMPLE = 3             # clients asked per range (spread over the range's addresses)
CONCURRENCY = 64       # connection attempts at once, whatever the fleet's size
BUDGET_TIMEOUTS = 3    # the whole range survey ends within this many connect timeouts


def client_ranges(clients: list[Client]) -> dict[str, list[Client]]:
    """The clients with an address in the environment, by range (``"10.1.2.0/24"``), each sorted by address.

    A client without an address is left out: its range is not known without asking DNS, which may be the cause."""
    out: dict[str, list[Client]] = {}
    for client in clients:
        if client.address and _is_address(client.address):
            network = ipaddress.ip_network(f"{client.address}/{RANGE_PREFIX}", strict=False)
            out.setdefault(str(network), []).append(client)
    return {k: sorted(v, key=lambda c: ipaddress.ip_address(c.address or "0.0.0.0")) for k, v in out.items()}


def sample(clients: list[Client], k: int = SAMPLE) -> list[Client]:
    """Up to ``k`` clients spread over the range: the first, the last and evenly between (the same every run)."""
    if len(clients) <= k:
        return list(clients)
    picks = dict.fromkeys(round(i * (len(clients) - 1) / (k - 1)) for i in range(k))
    return [clients[i] for i in picks]


def _answered(address: str, port: int, timeout: float) -> str:
    """"" if ``address:port`` answered (accepted, or refused: a reset came back, so the path works), else what
    happened, in the vocabulary (no answer, no route)."""
    state = net.probe_tcp(address, port, timeout)
    return "" if state.verdict in (net.OPEN, net.REFUSED) else _in_words(state, timeout)


def survey_ranges(ranges: dict[str, list[Client]], port: int, timeout: float,
                  k: int = SAMPLE) -> dict[str, list[str]]:
    """The ranges of at least two clients whose every sampled client did not answer: ``{network: [what each
    did]}``.

    One TCP connection to each sampled client's AMT ``port``, by address (so a DNS outage is not taken for a
    dropped range), at most :data:`CONCURRENCY` at once; the first sample of every range is asked before the
    second of any, a range stops being asked once one client answered, and the survey ends after
    :data:`BUDGET_TIMEOUTS` connect timeouts: a range not fully asked by then is not a cause (it is not known).
    A fleet of thousands costs at most ``ranges * k`` connections and that one deadline.
    """
    picked = {network: sample(clients, k) for network, clients in ranges.items() if len(clients) >= 2}
    order = [(network, c) for i in range(k) for network, clients in picked.items() if i < len(clients)
             for c in clients[i:i + 1]]
    if not order:
        return {}
    answered: set[str] = set()
    seen: dict[str, list[str]] = {network: [] for network in picked}

    def ask(network: str, client: Client) -> None:
        if network in answered:
            return
        what = _answered(client.address or "", port, timeout)
        if what:
            seen[network].append(what)
        else:
            answered.add(network)

    def decided() -> bool:  # every range answered, or every sample of it was asked
        return all(network in answered or len(seen[network]) == len(picked[network]) for network in picked)

    pool = ThreadPoolExecutor(min(CONCURRENCY, len(order)))
    pending = {pool.submit(ask, network, client) for network, client in order}
    end = time.monotonic() + BUDGET_TIMEOUTS * timeout
    while pending and not decided() and time.monotonic() < end:
        _, pending = wait(pending, timeout=max(0.0, end - time.monotonic()), return_when=FIRST_COMPLETED)
    # Not waited for: a connection under way to a range already decided ends within its own connect timeout.
    pool.shutdown(wait=False, cancel_futures=True)
    return {network: list(what) for network, what in seen.items()
            if network not in answered and len(what) == len(picked[network])}


def _range_cause(network: str, clients: list[Client], port: int, seen: list[str]) -> Cause:
    hosts = tuple(h for c in clients for h in (c.name, c.address or "") if h)
    count = f"{len(clients)} client{'s' if len(clients) != 1 else ''}"
    return Cause("client_subnet", f"network path to {network} ({count}) not answering",
                 f"{network}: AMT TCP {port} of {len(seen)} sampled client{'s' if len(seen) != 1 else ''}",
                 ACTIONS["client_subnet"].format(network=network), hosts, "; ".join(seen), network)


def _causes(env: Environment, found: dict[str, str], groups: dict[str, list[Server]],
            dhcp: list[Server]) -> list[Cause]:
    out: list[Cause] = []
    dns = {k.split("|")[1]: v for k, v in found.items() if k.startswith("dns|")}
    dns_dead = bool(dns) and all(dns.values())
    if dns_dead:
        names = ", ".join(dns)
        out.append(Cause("dns", f"DNS server{'s' if len(dns) > 1 else ''} {names} not answering",
                         ", ".join(f"{s}:{env.dns['port']}" for s in dns), ACTIONS["dns"], tuple(dns),
                         "; ".join(dns.values())))
    for key, servers in (*groups.items(), ("dhcp", dhcp)):
        seen = {k: v for k, v in found.items() if k.startswith(key + "|")}
        if not seen or not all(seen.values()):
            continue  # every server of the role answered, or at least one did: no estate-wide cause
        if dns_dead and all(DID_NOT_RESOLVE in v for v in seen.values()):
            continue  # its name did not resolve: that is the DNS cause, not this one
        names = ", ".join(dict.fromkeys(k.split("|")[1] for k in seen))
        where = ", ".join(f"{k.split('|')[1]}:{k.split('|')[2]}" for k in seen)
        port_list = "/".join(dict.fromkeys(k.split("|")[2] for k in seen))
        hosts = tuple(h for s in servers for h in (s.name, getattr(s, "address", None) or "") if h)
        unresolved = all(DID_NOT_RESOLVE in v for v in seen.values())
        out.append(Cause(key, NAMES[key].format(names=names) + (" did not resolve" if unresolved else
                                                                 " not answering"), where,
                         ACTIONS[key].format(ports=f"TCP {port_list}", where=where), hosts,
                         "; ".join(seen.values())))
    return out
