"""Domain IPsec policies in the lab's Samba directory, as the IP Security Policies snap-in stores them
([MS-GPIPSEC] 2.2.1): an ``ipsecPolicy`` naming its rules (``ipsecNFA``), each naming a filter list (``ipsecFilter``,
the filters in its binary ``ipsecData``, 2.2.1.5.1) and an action (``ipsecNegotiationPolicy``), under
``CN=IP Security,CN=System``. Samba provisions Windows' three default policies there ("Secure Server (Require
Security)" among them, its "All IP Traffic" filter list); a new policy reuses a default's action and the policy and
rule ``ipsecData`` of the default, and writes its own filter list.

The filter list is written as Windows Server 2003 writes it (the lab's site server runs it, in both eras):
Data-Length1 one byte short of what follows, and a pad byte ([MS-GPIPSEC] footnote <21>, as in the default
filter lists Samba provisions). docs/protocols.md, "Stage 1 network checks" (the IPsec rows).
"""
from __future__ import annotations

import ipaddress
import struct
import uuid
from dataclasses import dataclass

FILTER_DATA_ID = uuid.UUID("80DC20B5-2EC8-11D1-A89E-00A0248D3021")  # Filter-Policy-ID1
#: Windows' default objects, as Samba's provision.ldif writes them.
SECURE_SERVER = "{7238523C-70FA-11D1-864C-14A300000000}"  # ipsecPolicy "Secure Server (Require Security)"
SECURE_SERVER_NFA = "{7238523E-70FA-11D1-864C-14A300000000}"  # its rule "Require Security" (All IP Traffic)
REQUIRE_SECURITY = "{7238523F-70FA-11D1-864C-14A300000000}"  # ipsecNegotiationPolicy "Require Security"
SECURE_SERVER_NAME = "Secure Server (Require Security)"
ADDRESS_ME, MASK_NONE = "0.0.0.0", "255.255.255.255"  # "My IP Address" (winipsec.h IP_ADDRESS_ME, _MASK_NONE)


@dataclass(frozen=True)
class Filter:
    source: str = ADDRESS_ME
    source_mask: str = MASK_NONE
    destination: str = "0.0.0.0"
    destination_mask: str = "0.0.0.0"
    protocol: int = 0  # 0 any, 6 TCP, 17 UDP
    source_port: int = 0
    destination_port: int = 0
    mirrored: bool = True
    description: str = ""


def _text(value: str) -> bytes:
    raw = (value + "\0").encode("utf-16-le")
    return struct.pack("<I", len(raw)) + raw


def filter_data(filters: list[Filter]) -> bytes:
    """The ipsecData of a filter list ([MS-GPIPSEC] 2.2.1.5.1), as Windows Server 2003 writes it."""
    body = b""
    for f in filters:
        addresses = b"".join(ipaddress.IPv4Address(a).packed for a in
                             (f.source, f.source_mask, f.destination, f.destination_mask, "0.0.0.0"))
        body += (_text("") + _text("") + _text(f.description) + uuid.uuid4().bytes_le
                 + struct.pack("<I", int(f.mirrored)) + addresses
                 + struct.pack("<IHHBBH", f.protocol, f.source_port, f.destination_port, 0, 0, 0))
    body += b"\0"  # the pad byte; Data-Length1 counts the filter count and the filters, less one
    return FILTER_DATA_ID.bytes_le + struct.pack("<II", len(body) + 4 - 1, len(filters)) + body


def container(dc) -> str:
    return f"CN=IP Security,CN=System,{dc.base_dn}"


def dn_of(dc, kind: str, guid: str) -> str:
    return f"CN={kind}{guid},{container(dc)}"


def default_policy(dc) -> str:
    """The DN of the provisioned "Secure Server (Require Security)" policy (an error if Samba did not write it)."""
    dn = dn_of(dc, "ipsecPolicy", SECURE_SERVER)
    if not dc.exists(dn):
        raise RuntimeError(f"Samba's directory has no {dn}: this Samba does not provision the default IPsec policies")
    return dn


def _add(dc, dn: str, kind: str, guid: str, name: str, attributes: dict) -> str:
    if not dc.conn.add(dn, ["top", "ipsecBase", kind], {"ipsecName": name, "ipsecID": guid, **attributes}):
        raise RuntimeError(f"adding {dn}: {dc.conn.result}")
    return dn


def _guids(name: str) -> list[str]:  # the policy's, its rule's and its filter list's: fixed by its name
    return [f"{{{str(uuid.uuid5(uuid.NAMESPACE_URL, f'ipsec:{kind}:{name}')).upper()}}}"
            for kind in ("policy", "rule", "filter list")]


def policy_dn(dc, name: str) -> str:
    """The DN :func:`add_policy` gives the policy ``name``."""
    return dn_of(dc, "ipsecPolicy", _guids(name)[0])


def add_policy(dc, name: str, filter_list: str, filters: list[Filter]) -> str:
    """A new policy with one rule: the filters ``filters`` (list ``filter_list``), action Require Security."""
    defaults = default_policy(dc)
    policy_data = dc.read(defaults, ["ipsecData"])["ipsecData"][0]
    nfa_data = dc.read(dn_of(dc, "ipsecNFA", SECURE_SERVER_NFA), ["ipsecData"])["ipsecData"][0]
    guids = _guids(name)
    policy, nfa, flt = (dn_of(dc, kind, g) for kind, g in zip(("ipsecPolicy", "ipsecNFA", "ipsecFilter"), guids))
    _add(dc, flt, "ipsecFilter", guids[2], filter_list, {"ipsecDataType": 256, "ipsecData": filter_data(filters)})
    _add(dc, nfa, "ipsecNFA", guids[1], f"{filter_list} rule",
         {"ipsecDataType": 256, "ipsecData": nfa_data, "ipsecFilterReference": [flt],
          "ipsecNegotiationPolicyReference": dn_of(dc, "ipsecNegotiationPolicy", REQUIRE_SECURITY)})
    return _add(dc, policy, "ipsecPolicy", guids[0], name,
                {"ipsecDataType": 256, "ipsecData": policy_data, "ipsecNFAReference": [nfa]})
