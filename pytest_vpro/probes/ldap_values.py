"""Active Directory values, decoded and judged with no connection: security descriptors and their access check,
rights masks, well-known SIDs, the Kerberos token size formula.

The cut, in the manner of smbprotocol (the structures under the connection): :mod:`pytest_vpro.probes.ldap` binds
and searches (ldap3, TLS, deadlines, the byte budget, the errors of all of these) and hands what it read to this
module, which only turns bytes and numbers into answers. These are the pure functions the checks and their unit
tests call most (``grants``, ``token_size_estimate``, ``parse_security_descriptor``); they need no server, and
ldap3 is not imported here. Every name stays importable as ``pytest_vpro.probes.ldap.X``.

Sources: MS-ADTS 5.1.3.2 (access rights for directory objects) and 5.1.3.3 (generic mapping), MS-DTYP 2.4.2
(SID), 2.4.4 (ACE), 2.4.6 (security descriptor), 2.5.3.2 (access check), MS-ADTS 2.2.12 (groupType), Microsoft
KB327825 (TokenSz formula).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from impacket.ldap import ldaptypes

from .errors import MalformedReply

# --------------------------------------------------------------------------- security descriptors

# MS-ADTS 5.1.3.2 (ACCESS_MASK for directory objects; SDDL abbreviation in the comment) and MS-DTYP 2.4.3.
RIGHTS: dict[str, int] = {
    "CREATE_CHILD": 0x1,            # CC
    "DELETE_CHILD": 0x2,            # DC
    "LIST_CHILDREN": 0x4,           # LC
    "SELF": 0x8,                    # SW  validated write
    "READ_PROPERTY": 0x10,          # RP
    "WRITE_PROPERTY": 0x20,         # WP
    "DELETE_TREE": 0x40,            # DT
    "LIST_OBJECT": 0x80,            # LO
    "CONTROL_ACCESS": 0x100,        # CR  extended right
    "DELETE": 0x10000,              # SD
    "READ_CONTROL": 0x20000,        # RC
    "WRITE_DAC": 0x40000,           # WD
    "WRITE_OWNER": 0x80000,         # WO
    "SYNCHRONIZE": 0x100000,
    "ACCESS_SYSTEM_SECURITY": 0x1000000,
    "MAXIMUM_ALLOWED": 0x2000000,
    "GENERIC_ALL": 0x10000000,      # GA
    "GENERIC_EXECUTE": 0x20000000,  # GX
    "GENERIC_WRITE": 0x40000000,    # GW
    "GENERIC_READ": 0x80000000,     # GR
}
FULL_CONTROL = 0xF01FF  # every directory right + DELETE, READ_CONTROL, WRITE_DAC, WRITE_OWNER ("GA" once stored)
# MS-ADTS 5.1.3.3: how generic rights map to directory rights.
GENERIC_MAPPING = {
    RIGHTS["GENERIC_READ"]: 0x20094,     # RC | LC | RP | LO
    RIGHTS["GENERIC_WRITE"]: 0x20028,    # RC | SW | WP
    RIGHTS["GENERIC_EXECUTE"]: 0x20004,  # RC | LC
    RIGHTS["GENERIC_ALL"]: FULL_CONTROL,
}
ACE_FLAGS = {"OBJECT_INHERIT": 0x01, "CONTAINER_INHERIT": 0x02, "NO_PROPAGATE_INHERIT": 0x04,
             "INHERIT_ONLY": 0x08, "INHERITED": 0x10, "SUCCESSFUL_ACCESS": 0x40, "FAILED_ACCESS": 0x80}
_ALLOW_TYPES = {0x00, 0x05, 0x09, 0x0B}   # ACCESS_ALLOWED[_OBJECT][_CALLBACK]_ACE_TYPE
_DENY_TYPES = {0x01, 0x06, 0x0A, 0x0C}
_AUDIT_TYPES = {0x02, 0x07, 0x0D, 0x0F}
SE_DACL_PROTECTED = 0x1000  # MS-DTYP 2.4.6 control flag PD: inheritance from the parent is blocked


def expand_generic(mask: int) -> int:
    """``mask`` with generic rights replaced by the directory rights they stand for (MS-ADTS 5.1.3.3)."""
    out = mask
    for generic, specific in GENERIC_MAPPING.items():
        if mask & generic:
            out = (out & ~generic) | specific
    return out


def rights_names(mask: int) -> tuple[str, ...]:
    """Names of the rights in ``mask``; ``FULL_CONTROL`` stands for all of 0xF01FF."""
    names: list[str] = []
    if mask & FULL_CONTROL == FULL_CONTROL:
        names.append("FULL_CONTROL")
        mask &= ~FULL_CONTROL
    names.extend(name for name, bit in RIGHTS.items() if mask & bit)
    return tuple(names)


def rights_mask(rights: int | str | Iterable[str]) -> int:
    """A mask from a mask or from right names (``"FULL_CONTROL"``, ``"CREATE_CHILD"``, ...)."""
    if isinstance(rights, int):
        return rights
    names = [rights] if isinstance(rights, str) else list(rights)
    mask = 0
    for name in names:
        key = name.upper()
        if key == "FULL_CONTROL":
            mask |= FULL_CONTROL
        elif key in RIGHTS:
            mask |= RIGHTS[key]
        else:
            raise ValueError(f"unknown right {name!r} (known: FULL_CONTROL, {', '.join(RIGHTS)})")
    return mask


@dataclass(frozen=True)
class Ace:
    """One access control entry (MS-DTYP 2.4.4). GUIDs are lower-case strings, or None."""

    kind: str                          # "allow" | "deny" | "audit" | "other"
    trustee: str                       # SID, S-1-5-21-...
    mask: int
    rights: tuple[str, ...]
    object_type: str | None            # the property, property set, extended right or child class
    inherited_object_type: str | None  # the class of child objects the ACE is inherited by
    flags: tuple[str, ...]             # names from ACE_FLAGS
    ace_type: int

    @property
    def inherited(self) -> bool:
        """Inherited from a parent (not set on this object itself)."""
        return "INHERITED" in self.flags

    @property
    def inherit_only(self) -> bool:
        return "INHERIT_ONLY" in self.flags

    @property
    def inheritable(self) -> bool:
        """Passed on to child containers (or objects)."""
        return "CONTAINER_INHERIT" in self.flags or "OBJECT_INHERIT" in self.flags

    def __str__(self) -> str:
        parts = [self.kind.upper(), self.trustee, "|".join(self.rights) or hex(self.mask)]
        if self.object_type:
            parts.append(f"object={self.object_type}")
        if self.inherited_object_type:
            parts.append(f"for={self.inherited_object_type}")
        if self.flags:
            parts.append(",".join(self.flags))
        return " ".join(parts)


@dataclass(frozen=True)
class SecurityDescriptor:
    """Owner, group and DACL of an object. ``dacl`` is None for a NULL DACL (which grants everyone everything)."""

    owner: str | None
    group: str | None
    dacl: tuple[Ace, ...] | None
    control: int
    raw: bytes

    @property
    def dacl_protected(self) -> bool:
        """Inheritance from the parent is blocked (SE_DACL_PROTECTED)."""
        return bool(self.control & SE_DACL_PROTECTED)

    def aces_for(self, sids: str | Iterable[str]) -> list[Ace]:
        wanted = {sids} if isinstance(sids, str) else set(sids)
        return [a for a in self.dacl or () if a.trustee in wanted]

    def describe(self) -> str:
        """A readable dump for a report's evidence."""
        lines = [f"owner {self.owner}", f"group {self.group}",
                 "DACL (protected)" if self.dacl_protected else "DACL"]
        lines += [f"  {a}" for a in self.dacl] if self.dacl is not None else ["  NULL DACL (everyone: everything)"]
        return "\n".join(lines)


def _guid(raw: Any) -> str | None:
    return str(uuid.UUID(bytes_le=bytes(raw))) if raw else None


def parse_security_descriptor(blob: bytes) -> SecurityDescriptor:
    """Parse a self-relative SECURITY_DESCRIPTOR (MS-DTYP 2.4.6) with impacket's ``ldaptypes``."""
    try:
        sd = ldaptypes.SR_SECURITY_DESCRIPTOR(data=blob)
        owner = sd["OwnerSid"].formatCanonical() if sd["OffsetOwner"] else None
        group = sd["GroupSid"].formatCanonical() if sd["OffsetGroup"] else None
        dacl = tuple(_ace(a) for a in sd["Dacl"].aces) if sd["OffsetDacl"] else None
        control = int(sd["Control"])
    except Exception as exc:  # noqa: BLE001 (impacket raises plain Exceptions, KeyError, struct.error)
        raise MalformedReply(f"unparseable security descriptor ({len(blob)} bytes): {exc}") from None
    return SecurityDescriptor(owner, group, dacl, control, bytes(blob))


def _ace(ace: Any) -> Ace:
    body, ace_type = ace["Ace"], ace["AceType"]
    kind = ("allow" if ace_type in _ALLOW_TYPES else "deny" if ace_type in _DENY_TYPES
            else "audit" if ace_type in _AUDIT_TYPES else "other")
    mask = body["Mask"]["Mask"] if "Mask" in body.fields else 0
    sid = body["Sid"].formatCanonical() if "Sid" in body.fields else ""
    is_object = "ObjectType" in body.fields
    flags = tuple(name for name, bit in ACE_FLAGS.items() if ace["AceFlags"] & bit)
    return Ace(kind=kind, trustee=sid, mask=mask, rights=rights_names(mask),
               object_type=_guid(body["ObjectType"]) if is_object else None,
               inherited_object_type=_guid(body["InheritedObjectType"]) if is_object else None,
               flags=flags, ace_type=ace_type)


def grants(sd: SecurityDescriptor, sid: str | Iterable[str], rights: int | str | Iterable[str],
           object_type: str | None = None, inherited: bool | None = None, *, to_children: bool = False,
           child_class: str | None = None) -> bool:
    """Does the DACL give ``sid`` (or any of a set of SIDs: a user plus its tokenGroups) all of ``rights``?

    The MS-DTYP 2.5.3.2 walk, simplified: ACEs in order; a deny ACE that names a still-wanted right ends it
    with False; allow ACEs remove the rights they give; True once nothing is left. Generic rights are expanded
    (MS-ADTS 5.1.3.3). An object ACE only counts when ``object_type`` names its GUID; a plain ACE counts for any.

    ``inherited``: None any ACE, True only ACEs inherited from a parent, False only explicit ones.
    ``to_children``: judge what the ACEs give objects *created under* this one (inheritable ACEs, optionally
    only those for ``child_class``, a schemaIDGUID) instead of the object itself (non inherit-only ACEs).
    """
    if sd.dacl is None:
        return True
    trustees = {sid} if isinstance(sid, str) else set(sid)
    wanted = expand_generic(rights_mask(rights))
    object_type = object_type.lower() if object_type else None
    child_class = child_class.lower() if child_class else None
    for ace in sd.dacl:
        if ace.trustee not in trustees or ace.kind not in ("allow", "deny"):
            continue
        if inherited is not None and ace.inherited != inherited:
            continue
        if to_children:
            if not ace.inheritable or (ace.inherited_object_type and ace.inherited_object_type != child_class):
                continue
        elif ace.inherit_only:
            continue
        if ace.object_type and ace.object_type != object_type:
            continue
        mask = expand_generic(ace.mask)
        if ace.kind == "deny" and mask & wanted:
            return False
        if ace.kind == "allow":
            wanted &= ~mask
            if not wanted:
                return True
    return False


# --------------------------------------------------------------------------- groups and token size

# MS-ADTS 2.2.12 groupType bits.
GROUP_BUILTIN_LOCAL, GROUP_GLOBAL, GROUP_DOMAIN_LOCAL, GROUP_UNIVERSAL = 0x1, 0x2, 0x4, 0x8
# TokenSz (KB327825): 1200 + 40 * d + 8 * s.
TOKEN_KINDS_D = ("domain_local", "universal_other_domain", "sid_history", "unresolved")
TOKEN_KINDS_S = ("global", "universal_same_domain")


def token_size_estimate(groups_by_kind: Mapping[str, int]) -> int:
    """Kerberos token size estimate in bytes, Microsoft's TokenSz formula: ``1200 + 40 * d + 8 * s``.

    ``d``: domain-local groups, universal groups of other domains and SID history entries (keys
    ``domain_local``, ``universal_other_domain``, ``sid_history``; ``unresolved`` groups are counted here too,
    the conservative side). ``s``: global groups and universal groups of the user's own domain (``global``,
    ``universal_same_domain``). docs/protocols.md: AMT accepts tickets up to about 4 KB.
    """
    d = s = 0
    for kind, count in groups_by_kind.items():
        if count < 0:
            raise ValueError(f"negative count for {kind!r}")
        if kind in TOKEN_KINDS_D:
            d += count
        elif kind in TOKEN_KINDS_S:
            s += count
        else:
            raise ValueError(f"unknown group kind {kind!r} (known: {', '.join(TOKEN_KINDS_D + TOKEN_KINDS_S)})")
    return 1200 + 40 * d + 8 * s


# MS-DTYP 2.4.2.4: well-known SIDs that have no object in the domain partition.
WELL_KNOWN_SIDS = {
    "S-1-1-0": "Everyone", "S-1-3-0": "CREATOR OWNER", "S-1-3-1": "CREATOR GROUP",
    "S-1-5-7": "ANONYMOUS LOGON", "S-1-5-9": "ENTERPRISE DOMAIN CONTROLLERS", "S-1-5-10": "SELF",
    "S-1-5-11": "Authenticated Users", "S-1-5-18": "SYSTEM", "S-1-5-19": "LOCAL SERVICE",
    "S-1-5-20": "NETWORK SERVICE",
}
