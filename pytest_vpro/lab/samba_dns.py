"""The lab DC's DNS zones, written over LDAP as the directory stores them (``dnsZone``/``dnsNode`` objects).

DNS records as LDAP dnsNode objects (MS-DNSP 2.3.2.2). Packed here because our interpreter cannot import Debian's
python3-samba; tests/lab/test_samba.py checks the bytes against Samba's own NDR (dnsp.DnssrvRpcRecord).

Sources: MS-DNSP 2.3.2.1 (dnsProperty), 2.3.2.2 (dnsRecord), 2.2.2.2.2 (DNS_COUNT_NAME), 2.2.2.2.4 (record data).
"""
from __future__ import annotations

import ipaddress
import struct

import ldap3

from .samba_client import SambaClient, SambaError

DSPROPERTY_ZONE_ALLOW_UPDATE = 0x02  # MS-DNSP 2.3.2.1.1
ZONE_UPDATE = {0: "none", 1: "nonsecure and secure", 2: "secure only"}  # MS-DNSP 2.2.6.1.1 fAllowUpdate

DNS_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "AAAA": 28}
DNS_RANK_ZONE = 0xF0
DEFAULT_TTL = 900  # samba-tool dns add's default


def pack_dns_count_name(name: str) -> bytes:
    """DNS_COUNT_NAME (MS-DNSP 2.2.2.2.2): length, label count, length-prefixed labels, a zero terminator."""
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".")]
    raw = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    return bytes([len(raw), len(labels)]) + raw


def pack_dns_record(rtype: str, value: str, *, ttl: int = DEFAULT_TTL, serial: int = 1) -> bytes:
    """One ``dnsRecord`` attribute value (MS-DNSP 2.3.2.2) for a static record (TimeStamp 0)."""
    rtype = rtype.upper()
    if rtype == "A":
        data = ipaddress.IPv4Address(value).packed
    elif rtype == "AAAA":
        data = ipaddress.IPv6Address(value).packed
    elif rtype in ("CNAME", "PTR", "NS"):
        data = pack_dns_count_name(value)
    else:
        raise ValueError(f"record type {rtype} not supported (A, AAAA, CNAME, PTR, NS)")
    # DataLength, Type, Version=5, Rank, Flags (little endian); TtlSeconds is big endian; Reserved; TimeStamp.
    head = struct.pack("<HHBBHI", len(data), DNS_TYPES[rtype], 5, DNS_RANK_ZONE, 0, serial)
    return head + struct.pack(">I", ttl) + struct.pack("<II", 0, 0) + data


def parse_dns_property(blob: bytes) -> tuple[int, bytes]:
    """dnsProperty (MS-DNSP 2.3.2.1): returns (Id, Data)."""
    data_length, _name_length, _flag, _version, prop_id = struct.unpack_from("<IIIII", blob)
    return prop_id, blob[20:20 + data_length]


def pack_dns_property(prop_id: int, data: bytes) -> bytes:
    return struct.pack("<IIIII", len(data), 1, 0, 1, prop_id) + data + b"\x00"


def reverse_name(address: str, zone: str) -> str:
    """The owner name of ``address``'s PTR record relative to the in-addr.arpa ``zone``."""
    full = ipaddress.IPv4Address(address).reverse_pointer
    suffix = "." + zone.rstrip(".").lower()
    if not full.endswith(suffix):
        raise ValueError(f"{address} is not in reverse zone {zone}")
    return full[: -len(suffix)]



class SambaDNS(SambaClient):
    """The domain's forward zone and the lab's reverse zone: zones, their allow-update setting, records."""

    def zone_dn(self, zone: str | None = None) -> str:
        """Where a domain zone lives: ``DC=<zone>,CN=MicrosoftDNS,DC=DomainDnsZones,<base DN>``."""
        return f"DC={(zone or self.domain).lower()},CN=MicrosoftDNS,DC=DomainDnsZones,{self.base_dn}"

    def reverse_zone(self) -> str:
        """The lab's reverse zone: one /16 zone (``<net>.127.in-addr.arpa``) covering every lab address."""
        first, second = self.address.split(".")[:2]
        return f"{second}.{first}.in-addr.arpa"

    def create_zone(self, zone: str) -> None:
        """``samba-tool dns zonecreate`` (RPC to the running DC as Administrator); no-op if it exists."""
        if not self.exists(self.zone_dn(zone)):
            self._admin_tool("dns", "zonecreate", self.address, zone)

    def zone_allow_update(self, zone: str | None = None) -> int:
        """The zone's allow-update setting from its ``dNSProperty`` (MS-DNSP 2.3.2.1; 0 none, 1 nonsecure and
        secure, 2 secure only), read over LDAP at ``zone_dn(zone)``."""
        for blob in self.read(self.zone_dn(zone), ["dNSProperty"]).get("dNSProperty", []):
            prop_id, data = parse_dns_property(blob)
            if prop_id == DSPROPERTY_ZONE_ALLOW_UPDATE:
                return data[0]
        raise SambaError(f"zone {zone or self.domain} has no allow-update property")

    def set_zone_allow_update(self, value: int, zone: str | None = None) -> None:
        """Rewrite the zone's allow-update dNSProperty over LDAP (what the DNS console's setting writes)."""
        props = self.read(self.zone_dn(zone), ["dNSProperty"]).get("dNSProperty", [])
        kept = [blob for blob in props if parse_dns_property(blob)[0] != DSPROPERTY_ZONE_ALLOW_UPDATE]
        new = kept + [pack_dns_property(DSPROPERTY_ZONE_ALLOW_UPDATE, bytes([value]))]
        self.conn.modify(self.zone_dn(zone), {"dNSProperty": [(ldap3.MODIFY_REPLACE, new)]})

    def _node_dn(self, name: str, zone: str) -> str:
        return f"DC={name.lower()},{self.zone_dn(zone)}"

    def add_dns_record(self, name: str, rtype: str, value: str, zone: str | None = None, *,
                       ttl: int = DEFAULT_TTL) -> str:
        """Add a static record as a ``dnsNode``'s ``dnsRecord`` value over LDAP (one round trip; the DNS server
        reads the directory on each query). ``name`` is relative to ``zone`` (default: the domain)."""
        zone = zone or self.domain
        dn = self._node_dn(name, zone)
        blob = pack_dns_record(rtype, value, ttl=ttl)
        try:
            self._add(dn, "dnsNode", {"dnsRecord": [blob], "dNSTombstoned": "FALSE"})
        except ldap3.core.exceptions.LDAPEntryAlreadyExistsResult:
            self.conn.modify(dn, {"dnsRecord": [(ldap3.MODIFY_ADD, [blob])], "dNSTombstoned":
                                  [(ldap3.MODIFY_REPLACE, ["FALSE"])]})
        return dn

    def delete_dns_record(self, name: str, rtype: str | None = None, value: str | None = None,
                          zone: str | None = None) -> None:
        """Delete one record (``rtype`` + ``value``) or, with neither, the whole node."""
        dn = self._node_dn(name, zone or self.domain)
        if rtype is None:
            self.conn.delete(dn)
            return
        self.conn.modify(dn, {"dnsRecord": [(ldap3.MODIFY_DELETE, [pack_dns_record(rtype, value)])]})

    def add_host(self, fqdn: str, address: str) -> None:
        """A and PTR records for a host of the domain (PTR in ``reverse_zone()``)."""
        name = fqdn.lower().removesuffix("." + self.domain)
        self.add_dns_record(name, "A", address)
        zone = self.reverse_zone()
        self.add_dns_record(reverse_name(address, zone), "PTR", fqdn, zone)
