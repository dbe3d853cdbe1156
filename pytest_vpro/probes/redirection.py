"""The AMT redirection protocol (SOL and IDER, TCP 16994 plain / 16995 TLS): message layouts only.

No I/O here: :mod:`pytest_vpro.probes.actions` opens sessions (a disruptive check's job) and the lab's AMT
simulator answers them. Layouts follow the open-source console ``amtterm`` (``redir.h``): a one-byte command,
three bytes of flags/reserved, then fixed fields, little-endian. Public sources describe the session start, the
authentication and SOL; what is marked *(unconfirmed)* below is a best guess kept in this one place: the
Kerberos authentication type number and the IDER messages (real IDER carries ATAPI packets; the lab models only
"the device reads a sector of the image", which is what proves a boot from it).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

START_SESSION, START_SESSION_REPLY, END_SESSION = 0x10, 0x11, 0x12
AUTHENTICATE, AUTHENTICATE_REPLY = 0x13, 0x14
START_SOL, START_SOL_REPLY, END_SOL = 0x20, 0x21, 0x24
SOL_DATA_TO_HOST, SOL_DATA_FROM_HOST = 0x28, 0x2A
START_IDER, START_IDER_REPLY = 0x40, 0x41          # (unconfirmed)
IDER_READ, IDER_DATA = 0x51, 0x54                  # (unconfirmed): lab model of an IDER sector read
SOL, IDER = b"SOL ", b"IDER"
AUTH_QUERY, AUTH_USER_PASSWORD, AUTH_KERBEROS = 0, 1, 2  # 2: (unconfirmed)
STATUS_SUCCESS, STATUS_FAILURE, STATUS_UNSUPPORTED = 0, 1, 2
SECTOR = 512

#: Bytes that follow the command byte, per command (variable parts add their own length field).
FIXED = {START_SESSION: 7, START_SESSION_REPLY: 12, END_SESSION: 3, AUTHENTICATE: 8, AUTHENTICATE_REPLY: 8,
         START_SOL: 23, START_SOL_REPLY: 7, END_SOL: 7, SOL_DATA_TO_HOST: 9, SOL_DATA_FROM_HOST: 9,
         START_IDER: 7, START_IDER_REPLY: 7, IDER_READ: 13, IDER_DATA: 9}


class ProtocolError(ValueError):
    """A message that is not one of the layouts above."""


@dataclass(frozen=True)
class Message:
    command: int
    status: int = 0            # replies
    session: bytes = b""       # START_SESSION: SOL or IDER
    auth_type: int = 0         # AUTHENTICATE(_REPLY)
    seq: int = 0               # SOL data, IDER
    lba: int = 0               # IDER_READ
    count: int = 0             # IDER_READ: sectors
    data: bytes = b""          # AUTHENTICATE token/credentials, SOL text, IDER sector data


def encode(m: Message) -> bytes:
    c = m.command
    if c == START_SESSION:
        return bytes([c, 0, 0, 0]) + m.session[:4].ljust(4)
    if c == START_SESSION_REPLY:
        return bytes([c, m.status, 0, 0, 1, 0]) + b"\0" * 7  # protocol 1.0, then reserved/OEM bytes
    if c in (END_SESSION,):
        return bytes([c, 0, 0, 0])
    if c in (AUTHENTICATE, AUTHENTICATE_REPLY):
        head = bytes([c, m.status if c == AUTHENTICATE_REPLY else 0, 0, 0, m.auth_type])
        return head + struct.pack("<I", len(m.data)) + m.data
    if c == START_SOL:  # sequence number, then amtterm's default buffer and timeout parameters
        return bytes([c, 0, 0, 0]) + struct.pack("<IHHHHHHHH", m.seq, 0, 1000, 100, 0, 10000, 100, 0, 0)[:20]
    if c in (START_SOL_REPLY, END_SOL, START_IDER, START_IDER_REPLY):
        return bytes([c, m.status, 0, 0]) + struct.pack("<I", m.seq)
    if c in (SOL_DATA_TO_HOST, SOL_DATA_FROM_HOST, IDER_DATA):
        return bytes([c, 0, 0, 0]) + struct.pack("<IH", m.seq, len(m.data)) + m.data
    if c == IDER_READ:
        return bytes([c, 0, 0, 0]) + struct.pack("<IIH", m.seq, m.lba, m.count)
    raise ProtocolError(f"unknown command 0x{c:02x}")


def decode(command: int, rest: bytes) -> Message:
    """``rest``: the bytes after the command byte, exactly as :func:`needed` said."""
    c = command
    if c == START_SESSION:
        return Message(c, session=rest[3:7])
    if c == START_SESSION_REPLY:
        return Message(c, status=rest[0])
    if c == END_SESSION:
        return Message(c)
    if c in (AUTHENTICATE, AUTHENTICATE_REPLY):
        return Message(c, status=rest[0], auth_type=rest[3], data=rest[8:])
    if c == START_SOL:
        return Message(c, seq=struct.unpack_from("<I", rest, 3)[0])
    if c in (START_SOL_REPLY, END_SOL, START_IDER, START_IDER_REPLY):
        return Message(c, status=rest[0], seq=struct.unpack_from("<I", rest, 3)[0])
    if c in (SOL_DATA_TO_HOST, SOL_DATA_FROM_HOST, IDER_DATA):
        seq, _n = struct.unpack_from("<IH", rest, 3)
        return Message(c, seq=seq, data=rest[9:])
    if c == IDER_READ:
        seq, lba = struct.unpack_from("<II", rest, 3)
        return Message(c, seq=seq, lba=lba, count=struct.unpack_from("<H", rest, 11)[0])
    raise ProtocolError(f"unknown command 0x{c:02x}")


def needed(command: int, rest: bytes) -> int:
    """How many bytes after the command byte this message has, given what has arrived (``rest``); -1 if the
    fixed part is not complete yet. A :class:`ProtocolError` for an unknown command."""
    if command not in FIXED:
        raise ProtocolError(f"unknown command 0x{command:02x}")
    fixed = FIXED[command]
    if len(rest) < fixed:
        return -1
    if command in (AUTHENTICATE, AUTHENTICATE_REPLY):
        return fixed + struct.unpack_from("<I", rest, 4)[0]
    if command in (SOL_DATA_TO_HOST, SOL_DATA_FROM_HOST, IDER_DATA):
        return fixed + struct.unpack_from("<H", rest, 7)[0]
    return fixed


class Reader:
    """Splits a byte stream into messages: feed bytes, take whole messages."""

    MAX = 1 << 20

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[Message]:
        self.buf += data
        out = []
        while self.buf:
            n = needed(self.buf[0], self.buf[1:])
            if n < 0 or len(self.buf) < 1 + n:
                if len(self.buf) > self.MAX:
                    raise ProtocolError("message too large")
                break
            out.append(decode(self.buf[0], self.buf[1:1 + n]))
            self.buf = self.buf[1 + n:]
        return out


def boot_image(label: str = "pytest-vpro IDER boot test") -> bytes:
    """A one-sector boot image: the label, then the 0x55AA boot signature at 510 (what BIOSes look for)."""
    sector = label.encode("ascii")[:500].ljust(510, b"\0") + b"\x55\xaa"
    return sector


__all__ = ["Message", "Reader", "encode", "decode", "needed", "boot_image", "ProtocolError", "SOL", "IDER"]
