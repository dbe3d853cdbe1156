"""The AMT "hello" packet a device sends to its provisioning server on TCP 9971.

Byte layout from ``docs/protocols.md`` ("The hello packet"), integers little-endian:

====== ==== =====================================================================
offset size field
====== ==== =====================================================================
0      u16  admin credentials set (0/1)
2      u16  hello version: 2 = PSK, 3 = PKI
4      u32  retry count (0-14)
8      16   device UUID, first three groups byte-swapped (SMBIOS style = ``uuid.bytes_le``)
24     8    PSK form: PID
24     u8   PKI form: number of hashes, then per hash ``u8 type, u8 length, bytes``
====== ==== =====================================================================

Hash types: 1 SHA-1 (20 bytes), 2 SHA-256 (32), 3 SHA-384 (48).
"""
from __future__ import annotations

import struct
import time
import uuid
from dataclasses import dataclass, field

VERSION_PSK = 2
VERSION_PKI = 3
HASH_TYPES = {1: ("SHA-1", 20), 2: ("SHA-256", 32), 3: ("SHA-384", 48)}
MAX_HELLO_BYTES = 24 + 1 + 255 * (2 + 48)
_HEAD = struct.Struct("<HHI16s")


class MalformedHello(ValueError):
    """The bytes are not a hello packet of the documented layout."""


@dataclass(frozen=True)
class Hello:
    uuid: uuid.UUID
    version: int = VERSION_PKI
    admin_credentials_set: bool = False
    retry_count: int = 0
    pid: bytes | None = None  # PSK form only: 8 bytes
    hashes: tuple[tuple[int, bytes], ...] = field(default=())  # PKI form: (type, digest)

    @property
    def mode(self) -> str:
        return "PSK" if self.version == VERSION_PSK else "PKI"


def encode_hello(
    device_uuid: uuid.UUID | str,
    *,
    version: int = VERSION_PKI,
    admin_credentials_set: bool = False,
    retry_count: int = 0,
    pid: bytes | None = None,
    hashes: list[tuple[int, bytes]] | tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """Build a hello packet (PSK form needs ``pid``; PKI form takes ``hashes``)."""
    u = device_uuid if isinstance(device_uuid, uuid.UUID) else uuid.UUID(str(device_uuid))
    if not 0 <= retry_count <= 0xFFFFFFFF:
        raise ValueError("retry_count out of range")
    head = _HEAD.pack(1 if admin_credentials_set else 0, version, retry_count, u.bytes_le)
    if version == VERSION_PSK:
        if pid is None or len(pid) != 8:
            raise ValueError("PSK hello needs an 8-byte PID")
        return head + pid
    if version != VERSION_PKI:
        raise ValueError(f"unknown hello version {version}")
    if len(hashes) > 255:
        raise ValueError("at most 255 hashes")
    out = bytearray(head)
    out.append(len(hashes))
    for htype, digest in hashes:
        if not (0 <= htype <= 255 and len(digest) <= 255):
            raise ValueError("hash type and length must fit a byte")
        out += bytes((htype, len(digest))) + digest
    return bytes(out)


def receive_hello(sock, timeout: float) -> bytes:
    """The bytes a sender wrote on an accepted TCP connection until it closed it (hellos are one packet per
    connection), at most one byte more than any valid hello, all within ``timeout`` seconds: a sender that
    trickles its bytes is cut there (what arrived is then judged, and is not a hello unless it is one)."""
    end = time.monotonic() + timeout
    data = b""
    try:
        while len(data) <= MAX_HELLO_BYTES:
            left = end - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(min(4096, MAX_HELLO_BYTES + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def hello_or_error(data: bytes) -> "Hello | MalformedHello":
    """:func:`decode_hello`, returning the :class:`MalformedHello` instead of raising it (listeners record both)."""
    try:
        return decode_hello(data)
    except MalformedHello as exc:
        return exc


def decode_hello(data: bytes) -> Hello:
    """Parse a hello packet; raise :class:`MalformedHello` on truncated or garbage input."""
    if len(data) < _HEAD.size:
        raise MalformedHello(f"hello of {len(data)} bytes is shorter than the {_HEAD.size}-byte header")
    if len(data) > MAX_HELLO_BYTES:
        raise MalformedHello(f"hello of {len(data)} bytes is longer than any valid hello")
    admin, version, retry, raw_uuid = _HEAD.unpack_from(data)
    if admin not in (0, 1):
        raise MalformedHello(f"admin-credentials field is {admin}, not 0 or 1")
    u = uuid.UUID(bytes_le=raw_uuid)
    rest = data[_HEAD.size:]
    if version == VERSION_PSK:
        if len(rest) != 8:
            raise MalformedHello(f"PSK hello needs an 8-byte PID, got {len(rest)} bytes")
        return Hello(u, version, bool(admin), retry, pid=bytes(rest))
    if version != VERSION_PKI:
        raise MalformedHello(f"unknown hello version {version} (2 = PSK, 3 = PKI)")
    if not rest:
        raise MalformedHello("PKI hello is missing the hash count")
    count, pos, hashes = rest[0], 1, []
    for i in range(count):
        if pos + 2 > len(rest):
            raise MalformedHello(f"PKI hello truncated in hash {i + 1} of {count}")
        htype, length = rest[pos], rest[pos + 1]
        if htype in HASH_TYPES and HASH_TYPES[htype][1] != length:
            raise MalformedHello(f"hash {i + 1}: {HASH_TYPES[htype][0]} with length {length}")
        digest = rest[pos + 2: pos + 2 + length]
        if len(digest) != length:
            raise MalformedHello(f"PKI hello truncated in hash {i + 1} of {count}")
        hashes.append((htype, bytes(digest)))
        pos += 2 + length
    if pos != len(rest):
        raise MalformedHello(f"{len(rest) - pos} trailing bytes after the last hash")
    return Hello(u, version, bool(admin), retry, hashes=tuple(hashes))
