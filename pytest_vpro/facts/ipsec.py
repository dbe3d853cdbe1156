"""The IPsec policy assigned to a Windows host, followed to its filters: the domain policy (Group Policy's
``GPTIPSECPolicy`` registry values name its ``ipsecPolicy`` object in the directory) and the local one
(``Policy\\Local`` ``ActivePolicy`` names its key in the host's registry). Both hold the same objects
([MS-GPIPSEC] 2.2.1): ``ipsecPolicy`` -> ``ipsecNFAReference`` -> ``ipsecNFA`` (a rule) -> ``ipsecFilterReference``
-> ``ipsecFilter`` (its ``ipsecData``: :func:`pytest_vpro.probes.ipsec.parse_filter_data`) and
``ipsecNegotiationPolicyReference`` -> ``ipsecNegotiationPolicy`` (the rule's action). docs/protocols.md,
"Stage 1 network checks" (the IPsec rows)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..environment import Client, Server
from ..probes.errors import ProbeError
from ..probes.ipsec import IpsecFilter, parse_filter_data

if TYPE_CHECKING:
    from . import Facts

GPO_KEY = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\IPSec\GPTIPSECPolicy"
LOCAL_KEY = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\IPSec\Policy\Local"
#: iPSECNegotiationPolicyAction of the "Permit" filter action (unsecured packets pass): Windows' default object,
#: as Samba provisions it (source4/setup/provision.ldif, ipsecNegotiationPolicy{7238523B-...}).
PERMIT_ACTION = "{8A171DD2-77E3-11D1-8659-A04F00000000}"
ATTRIBUTES = ("ipsecName", "ipsecNFAReference", "ipsecFilterReference", "ipsecNegotiationPolicyReference",
              "ipsecData", "iPSECNegotiationPolicyAction")


@dataclass
class Rule:
    """One ipsecNFA of the policy with a filter list: its filters and its action."""

    name: str
    filter_list: str
    where: str  # the ipsecFilter's DN or registry path
    filters: list[IpsecFilter]
    action: str  # the negotiation policy's name ("" unread)
    permit: bool | None  # True: the Permit action; None: the action was not read


@dataclass
class AssignedPolicy:
    """An IPsec policy assigned to the host, as far as its objects could be read."""

    kind: str  # "domain policy (GPTIPSECPolicy)" or "local policy (Policy\\Local ActivePolicy)"
    name: str
    where: str  # the ipsecPolicy's DN or registry path
    rules: list[Rule] = field(default_factory=list)
    default_response_rules: int = 0  # ipsecNFA objects without a filter list
    unreadable: list[str] = field(default_factory=list)  # "<object>: why"

    def summary(self) -> dict[str, Any]:
        return {"policy": self.name, "assigned as": self.kind, "object": self.where,
                "rules": [{"rule": r.name, "filter list": r.filter_list, "action": r.action or "(not read)",
                           "filters": [str(f) for f in r.filters]} for r in self.rules],
                "rules without a filter list (default response)": self.default_response_rules,
                "could not be read": self.unreadable}


class _Store:
    """Reads the policy objects from one place: ``text``, ``refs`` and ``data`` of an object."""

    def text(self, where: str, name: str) -> str:
        raise NotImplementedError

    def refs(self, where: str, name: str) -> list[str]:
        raise NotImplementedError

    def data(self, where: str) -> bytes | None:
        raise NotImplementedError


class _Directory(_Store):
    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def _values(self, dn: str, name: str) -> list[bytes]:
        found = self.facts.directory.search(dn, "(objectClass=*)", ATTRIBUTES, scope="base")
        if not found:
            raise ProbeError(f"no object {dn} in the directory")
        raw = {k.lower(): v for k, v in found[0]["raw_attributes"].items()}
        return [bytes(v) for v in raw.get(name.lower()) or []]

    def text(self, where: str, name: str) -> str:
        return b"".join(self._values(where, name)[:1]).decode("utf-8", "replace")

    def refs(self, where: str, name: str) -> list[str]:
        return [v.decode("utf-8", "replace") for v in self._values(where, name)]

    def data(self, where: str) -> bytes | None:
        values = self._values(where, "ipsecData")
        return values[0] if values else None


class _Registry(_Store):
    def __init__(self, facts: "Facts", host: Server | Client) -> None:
        self.facts, self.host = facts, host

    @staticmethod
    def path(where: str) -> str:  # the references and ActivePolicy are paths under HKLM
        return where if where.upper().startswith("HKLM\\") else "HKLM\\" + where.strip("\\")

    def text(self, where: str, name: str) -> str:
        return str(self.facts.windows.registry(self.host, self.path(where), name) or "")

    def refs(self, where: str, name: str) -> list[str]:
        multi = self.facts.windows.registry(self.host, self.path(where), name, "multi")
        if isinstance(multi, list):
            return [str(m) for m in multi if m]
        single = self.facts.windows.registry(self.host, self.path(where), name)
        return [str(single)] if single else []

    def data(self, where: str) -> bytes | None:
        blob = self.facts.windows.registry(self.host, self.path(where), "ipsecData", "binary")
        return blob if isinstance(blob, bytes) else None


def _rules(policy: AssignedPolicy, store: _Store, nfa: str) -> None:
    lists = store.refs(nfa, "ipsecFilterReference")
    if not lists:
        policy.default_response_rules += 1
        return
    rule, action, permit = store.text(nfa, "ipsecName") or nfa, "", None
    actions = store.refs(nfa, "ipsecNegotiationPolicyReference")
    if actions:
        action = store.text(actions[0], "ipsecName") or actions[0]
        guid = store.text(actions[0], "iPSECNegotiationPolicyAction")
        permit = guid.upper() == PERMIT_ACTION if guid else None
    for where in lists:
        blob = store.data(where)
        if blob is None:
            policy.unreadable.append(f"{where}: no ipsecData")
            continue
        policy.rules.append(Rule(rule, store.text(where, "ipsecName") or where, where, parse_filter_data(blob),
                                 action, permit))


def _walk(kind: str, name: str, where: str, store: _Store) -> AssignedPolicy:
    policy = AssignedPolicy(kind, name, where)
    try:
        policy.name = name or store.text(where, "ipsecName") or where
        nfas = store.refs(where, "ipsecNFAReference")
    except ProbeError as exc:
        policy.unreadable.append(f"{where}: {exc}")
        return policy
    if not nfas:
        policy.unreadable.append(f"{where}: no ipsecNFAReference")
    for nfa in nfas:
        try:
            _rules(policy, store, nfa)
        except ProbeError as exc:  # MalformedReply of an ipsecData too
            policy.unreadable.append(f"{nfa}: {exc}")
    return policy


def ldap_dn(path: str) -> str:
    """The DN of ``LDAP://CN=...`` or ``LDAP://server/CN=...``."""
    rest = path.split("://", 1)[1] if "://" in path else path
    head, sep, tail = rest.partition("/")
    return tail if sep and "=" not in head else rest


def assigned_policies(facts: "Facts", host: Server | Client) -> list[AssignedPolicy]:
    """The domain and the local IPsec policy assigned to ``host``, each followed to its filters."""
    out = []
    path = facts.windows.registry(host, GPO_KEY, "DSIPSECPolicyPath")
    name = facts.windows.registry(host, GPO_KEY, "DSIPSECPolicyName")
    kind = "domain policy (GPTIPSECPolicy)"
    if path:
        out.append(_walk(kind, str(name or ""), ldap_dn(str(path)), _Directory(facts)))
    elif name:
        out.append(AssignedPolicy(kind, str(name), GPO_KEY, unreadable=[f"{GPO_KEY}: no DSIPSECPolicyPath"]))
    active = facts.windows.registry(host, LOCAL_KEY, "ActivePolicy")
    if active:
        registry = _Registry(facts, host)
        out.append(_walk("local policy (Policy\\Local ActivePolicy)", "", registry.path(str(active)), registry))
    return out
