"""The AMT redirection protocol (SOL and IDE-R, TCP 16994 plain / 16995 TLS): message layouts only.

No I/O here: :mod:`pytest_vpro.actions` opens sessions (a disruptive check's job) and the lab's AMT
simulator answers them. Every layout below is in docs/protocols.md ("Redirection") with its public source:
MeshCommander's consoles (``amt-redir-ws-0.1.0.js``, ``amt-redir-node-0.1.0.js``, ``amt-ider-ws-0.0.1.js``) and
amtterm's ``RedirectionConstants.h`` / ``redir.c`` / ``redir.h`` (read for facts only). Integers are little-endian
unless a row says otherwise (the SCSI command blocks inside IDE-R are big-endian, as SCSI is).

A message is one command byte and a fixed part; a few carry a variable part whose length the fixed part gives
(:data:`FIXED`, :func:`needed`). IDE-R messages share an 8-byte header: command, two reserved bytes, an
attributes byte, and a u32 sequence number that each side counts from 0 for what it sends.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# -- the session manager (amtterm RedirectionConstants.h; MeshCommander amt-redir-ws-0.1.0.js:69-128)
START_SESSION, START_SESSION_REPLY, END_SESSION = 0x10, 0x11, 0x12
AUTHENTICATE, AUTHENTICATE_REPLY = 0x13, 0x14
# -- SOL
START_SOL, START_SOL_REPLY, END_SOL, END_SOL_REPLY = 0x20, 0x21, 0x22, 0x23
SOL_PING, SOL_PONG = 0x24, 0x25
SOL_DATA_TO_HOST, SOL_CONTROLS_FROM_HOST, SOL_DATA_FROM_HOST, SOL_HEARTBEAT = 0x28, 0x29, 0x2A, 0x2B
# -- IDE-R
IDER_OPEN, IDER_OPEN_REPLY, IDER_CLOSE, IDER_CLOSE_REPLY = 0x40, 0x41, 0x42, 0x43
IDER_PING, IDER_PONG, IDER_RESET, IDER_RESET_REPLY = 0x44, 0x45, 0x46, 0x47
IDER_FEATURES, IDER_FEATURES_REPLY, IDER_ERROR, IDER_HEARTBEAT = 0x48, 0x49, 0x4A, 0x4B
IDER_COMMAND_WRITTEN, IDER_COMMAND_END, IDER_GET_DATA, IDER_DATA_FROM_HOST, IDER_DATA_TO_HOST = \
    0x50, 0x51, 0x52, 0x53, 0x54
#: command byte -> its name here (for findings)
NAMES = {v: k for k, v in dict(globals()).items() if k.isupper() and isinstance(v, int)}

SOL, IDER = b"SOL ", b"IDER"
#: AuthenticateSession types: 0 query, 1 user/password, 2 Kerberos (MeshCommander amt-redir-node-0.1.0.js:158-174),
#: 3 and 4 digest (RFC 2069 / RFC 2617: amtterm auth.c)
AUTH_QUERY, AUTH_USER_PASSWORD, AUTH_KERBEROS, AUTH_DIGEST_2069, AUTH_DIGEST_2617 = 0, 1, 2, 3, 4
#: StartRedirectionSessionReply / AuthenticateSessionReply status: 0 success; session start 2 busy, 3 unsupported,
#: 0xFF error (MeshCommander amt-redir-node-0.1.0.js:142); authentication 1 failed (amtterm auth.c)
STATUS_SUCCESS, STATUS_FAILURE, STATUS_BUSY, STATUS_UNSUPPORTED, STATUS_ERROR = 0, 1, 2, 3, 0xFF

#: StartSOLRedirection parameters as MeshCommander sends them (amt-redir-ws-0.1.0.js, after authentication):
#: MaxTxBuffer, TxTimeout, TxOverflowTimeout, RxTimeout, RxFlushTimeout, Heartbeat
SOL_SETTINGS = (10000, 100, 0, 10000, 100, 0)
#: IDE-R OpenSession parameters as MeshCommander sends them (amt-ider-ws-0.0.1.js:13-16): RxTimeout, TxTimeout,
#: Heartbeat (ms), protocol version
IDER_SETTINGS = (30000, 0, 20000, 1)
#: DisableEnableFeatures: type 3 sets the register state; value 0x01 enables, plus when the device starts using
#: the session: 0x08 on the next reboot, 0x10 graceful, 0x18 now (amtterm RedirectionConstants.h; MeshCommander)
FEATURE_SET_REGISTER_STATE, FEATURE_ENABLE = 3, 0x01
START_ON_REBOOT, START_GRACEFUL, START_NOW = 0x08, 0x10, 0x18
#: IDE-R devices (amtterm IDER_DEVICE_*): bit 0x10 of the drive-select register picks the CD-ROM
DEVICE_FLOPPY, DEVICE_CDROM = 0xA0, 0xB0
#: SCSI operation codes a BIOS sends to boot (MeshCommander amt-ider-ws-0.0.1.js handleSCSI)
SCSI_TEST_UNIT_READY, SCSI_READ_6, SCSI_READ_10 = 0x00, 0x08, 0x28
SECTOR = 512          # floppy block; a CD-ROM's is 2048
CD_SECTOR = 2048

#: Bytes after the command byte, per command; :func:`needed` adds the variable parts.
FIXED = {
    START_SESSION: 7, START_SESSION_REPLY: 12, END_SESSION: 3, AUTHENTICATE: 8, AUTHENTICATE_REPLY: 8,
    START_SOL: 23, START_SOL_REPLY: 22, END_SOL: 7, END_SOL_REPLY: 7, SOL_PING: 7, SOL_PONG: 7,
    SOL_DATA_TO_HOST: 9, SOL_CONTROLS_FROM_HOST: 9, SOL_DATA_FROM_HOST: 9, SOL_HEARTBEAT: 7,
    IDER_OPEN: 17, IDER_OPEN_REPLY: 29, IDER_CLOSE: 7, IDER_CLOSE_REPLY: 7, IDER_PING: 7, IDER_PONG: 7,
    IDER_RESET: 8, IDER_RESET_REPLY: 7, IDER_FEATURES: 12, IDER_FEATURES_REPLY: 12, IDER_ERROR: 10,
    IDER_HEARTBEAT: 7, IDER_COMMAND_WRITTEN: 27, IDER_COMMAND_END: 30, IDER_GET_DATA: 30, IDER_DATA_FROM_HOST: 13,
    IDER_DATA_TO_HOST: 33,
}
#: Messages that are only the 8-byte header (command, 0, 0, attributes, sequence number).
HEADER_ONLY = {END_SOL, END_SOL_REPLY, SOL_PING, SOL_PONG, SOL_HEARTBEAT, IDER_CLOSE, IDER_CLOSE_REPLY, IDER_PING,
               IDER_PONG, IDER_RESET_REPLY, IDER_HEARTBEAT}


class ProtocolError(ValueError):
    """A message that is not one of the layouts above."""


@dataclass(frozen=True)
class Message:
    command: int
    status: int = 0            # replies
    session: bytes = b""       # START_SESSION: SOL or IDER
    auth_type: int = 0         # AUTHENTICATE(_REPLY)
    seq: int = 0               # SOL and IDE-R header sequence number
    attributes: int = 0        # IDE-R header byte 3 (2: the command completed; +1: DMA)
    data: bytes = b""          # auth token / credentials, SOL text, IDE-R sector data, OEM bytes of a reply
    settings: tuple[int, ...] = ()  # START_SOL (SOL_SETTINGS), IDER_OPEN (IDER_SETTINGS)
    feature: int = 0           # IDER_FEATURES(_REPLY): type; COMMAND_WRITTEN: feature register (bit 0: DMA)
    value: int = 0             # IDER_FEATURES(_REPLY): value; IDER_RESET: mask; IDER_ERROR: cause
    device: int = 0            # COMMAND_WRITTEN: drive select; COMMAND_END / DATA_TO_HOST: DEVICE_*
    cdb: bytes = b""           # COMMAND_WRITTEN: the 12-byte SCSI command block
    sense: tuple[int, int, int] = (0, 0, 0)  # COMMAND_END / DATA_TO_HOST: sense key, ASC, ASCQ
    buffers: tuple[int, int] = (0, 0)        # IDER_OPEN_REPLY: the device's read and write buffer sizes
    name: str = ""             # filled by decode: the command's name, for messages

    @property
    def is_cdrom(self) -> bool:
        return bool(self.device & 0x10)


def _header(m: Message) -> bytes:
    return bytes([m.command, 0, 0, m.attributes & 0xFF]) + struct.pack("<I", m.seq & 0xFFFFFFFF)


def _completion(device: int, sense: tuple[int, int, int]) -> bytes:
    """The output registers and sense bytes of a completed command (MeshCommander SendCommandEndResponse): mask,
    error, sector count, sector number, byte count low/high, drive select, status, then sense key, ASC, ASCQ.
    Success: status 0x50 (ready, seek complete); a check condition: status 0x51 (error bit), the sense key in
    the error register's high nibble."""
    key, asc, ascq = sense
    if not key:
        return bytes([0xC5, 0, 3, 0, 0, 0, device, 0x50, 0, 0, 0])
    return bytes([0x87, (key << 4) & 0xFF, 3, 0, 0, 0, device, 0x51, key, asc, ascq])


def encode(m: Message) -> bytes:
    c = m.command
    if c == START_SESSION:
        return bytes([c, 0, 0, 0]) + m.session[:4].ljust(4)
    if c == START_SESSION_REPLY:  # bytes 2-11 are parsed by no public console; the OEM bytes follow byte 12
        return bytes([c, m.status]) + b"\0" * 10 + bytes([len(m.data)]) + m.data
    if c == END_SESSION:
        return bytes([c, 0, 0, 0])
    if c in (AUTHENTICATE, AUTHENTICATE_REPLY):
        return bytes([c, m.status if c == AUTHENTICATE_REPLY else 0, 0, 0, m.auth_type]) + \
            struct.pack("<I", len(m.data)) + m.data
    if c == START_SOL:
        return _header(m) + struct.pack("<6H", *(m.settings or SOL_SETTINGS)) + b"\0" * 4
    if c == START_SOL_REPLY:  # status at 1; the rest (the device's SOL parameters) is parsed by no public console
        return bytes([c, m.status]) + b"\0" * 21
    if c in HEADER_ONLY:
        return _header(m)
    if c in (SOL_DATA_TO_HOST, SOL_DATA_FROM_HOST):
        return _header(m) + struct.pack("<H", len(m.data)) + m.data
    if c == SOL_CONTROLS_FROM_HOST:
        return _header(m) + bytes([m.feature & 0xFF, m.value & 0xFF])
    if c == IDER_OPEN:
        return _header(m) + struct.pack("<HHHI", *(m.settings or IDER_SETTINGS))
    if c == IDER_OPEN_REPLY:  # [8..11] versions, [16..19] read/write buffer, [21] protocol, [25..28] IANA, [29] OEM
        body = bytearray(21)                      # bytes 8..28; protocol (21) 0, IANA left 0
        body[0:4] = bytes([1, 0, 1, 0])           # protocol 1.0, firmware 1.0
        body[8:12] = struct.pack("<HH", *m.buffers)
        return _header(m) + bytes(body) + bytes([len(m.data)]) + m.data
    if c == IDER_RESET:
        return _header(m) + bytes([m.value & 0xFF])
    if c in (IDER_FEATURES, IDER_FEATURES_REPLY):
        return _header(m) + bytes([m.feature]) + struct.pack("<I", m.value)
    if c == IDER_ERROR:
        return _header(m) + bytes([m.value & 0xFF, 0, 0])
    if c == IDER_COMMAND_WRITTEN:  # [8] cable select, [9] feature, [14] drive select, [15] ATA command, [16..27] CDB
        return _header(m) + bytes([0, m.feature, 0, 0, 0, 0, m.device, 0xA0]) + m.cdb[:12].ljust(12, b"\0")
    if c == IDER_COMMAND_END:  # [8..19] cable select, transfer bytes, packet number, input registers: unused
        return _header(m) + b"\0" * 12 + _completion(m.device, m.sense)
    if c == IDER_DATA_TO_HOST:  # [9..10] transfer bytes, input registers, output registers (completion), sense
        n = len(m.data)
        done = m.attributes & 2
        head = bytes([0]) + struct.pack("<H", n) + bytes([0]) + bytes([0xB5, 0, 2, 0]) + struct.pack("<H", n) + \
            bytes([m.device, 0x58])
        tail = bytes([0x85, 0, 3, 0, 0, 0, m.device, 0x50, 0, 0, 0]) if done else b"\0" * 11  # completion
        return _header(m) + head + tail + b"\0" * 3 + m.data
    if c == IDER_DATA_FROM_HOST:
        return _header(m) + bytes([0]) + struct.pack("<H", len(m.data)) + b"\0" * 3 + m.data
    if c == IDER_GET_DATA:
        return _header(m) + b"\0" * 23
    raise ProtocolError(f"unknown command 0x{c:02x}")


def decode(command: int, rest: bytes) -> Message:
    """``rest``: the bytes after the command byte, exactly as :func:`needed` said."""
    c, name = command, NAMES.get(command, "")
    if c == START_SESSION:
        return Message(c, session=rest[3:7], name=name)
    if c == START_SESSION_REPLY:
        return Message(c, status=rest[0], data=rest[12:12 + rest[11]], name=name)
    if c == END_SESSION:
        return Message(c, name=name)
    if c in (AUTHENTICATE, AUTHENTICATE_REPLY):
        return Message(c, status=rest[0], auth_type=rest[3], data=rest[8:], name=name)
    if c == START_SOL_REPLY:
        return Message(c, status=rest[0], name=name)
    attributes, seq = rest[2], struct.unpack_from("<I", rest, 3)[0]
    base = dict(seq=seq, attributes=attributes, name=name)
    if c == START_SOL:
        return Message(c, settings=struct.unpack_from("<6H", rest, 7), **base)
    if c in HEADER_ONLY:
        return Message(c, **base)
    if c in (SOL_DATA_TO_HOST, SOL_DATA_FROM_HOST):
        return Message(c, data=rest[9:], **base)
    if c == SOL_CONTROLS_FROM_HOST:
        return Message(c, feature=rest[7], value=rest[8], **base)
    if c == IDER_OPEN:
        return Message(c, settings=struct.unpack_from("<HHHI", rest, 7), **base)
    if c == IDER_OPEN_REPLY:
        return Message(c, buffers=struct.unpack_from("<HH", rest, 15), value=rest[20], data=rest[29:], **base)
    if c == IDER_RESET:
        return Message(c, value=rest[7], **base)
    if c in (IDER_FEATURES, IDER_FEATURES_REPLY):
        return Message(c, feature=rest[7], value=struct.unpack_from("<I", rest, 8)[0], **base)
    if c == IDER_ERROR:
        return Message(c, value=rest[7], **base)
    if c == IDER_COMMAND_WRITTEN:
        return Message(c, feature=rest[8], device=rest[13], cdb=rest[15:27], **base)
    if c == IDER_COMMAND_END:
        return Message(c, device=rest[25], sense=(rest[27], rest[28], rest[29]), **base)
    if c == IDER_DATA_TO_HOST:
        return Message(c, device=rest[17], data=rest[33:], **base)
    if c == IDER_DATA_FROM_HOST:
        return Message(c, data=rest[13:], **base)
    if c == IDER_GET_DATA:
        return Message(c, **base)
    raise ProtocolError(f"unknown command 0x{c:02x}")


def needed(command: int, rest: bytes) -> int:
    """How many bytes after the command byte this message has, given what has arrived (``rest``); -1 if the
    fixed part is not complete yet. A :class:`ProtocolError` for an unknown command."""
    if command not in FIXED:
        raise ProtocolError(f"unknown command 0x{command:02x}")
    fixed = FIXED[command]
    if len(rest) < fixed:
        return -1
    if command == START_SESSION_REPLY:
        return fixed + rest[11]
    if command == IDER_OPEN_REPLY:
        return fixed + rest[28]
    if command in (AUTHENTICATE, AUTHENTICATE_REPLY):
        return fixed + struct.unpack_from("<I", rest, 4)[0]
    if command in (SOL_DATA_TO_HOST, SOL_DATA_FROM_HOST):
        return fixed + struct.unpack_from("<H", rest, 7)[0]
    if command in (IDER_DATA_TO_HOST, IDER_DATA_FROM_HOST):
        return fixed + struct.unpack_from("<H", rest, 8)[0]
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


# -- the SCSI command blocks inside IDE-R (big-endian, as SCSI is)
def read10(lba: int, blocks: int) -> bytes:
    """A READ(10) command block: opcode 0x28, LBA (u32) at 2, transfer length (u16) at 7; 12 bytes as IDE-R
    carries it (ATAPI packet)."""
    return bytes([SCSI_READ_10, 0]) + struct.pack(">I", lba) + b"\0" + struct.pack(">H", blocks) + b"\0" * 3


def read_request(cdb: bytes) -> tuple[int, int] | None:
    """(LBA, blocks) of a READ(10) or READ(6) command block, else None (MeshCommander handleSCSI)."""
    if cdb[:1] == bytes([SCSI_READ_10]) and len(cdb) >= 9:
        return struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
    if cdb[:1] == bytes([SCSI_READ_6]) and len(cdb) >= 5:
        return ((cdb[1] & 0x1F) << 16) | (cdb[2] << 8) | cdb[3], cdb[4] or 256
    return None


def boot_image(label: str = "pytest-vpro IDER boot test") -> bytes:
    """A one-sector floppy boot image: the label, then the 0x55AA boot signature at 510 (what BIOSes look for)."""
    return label.encode("ascii")[:500].ljust(510, b"\0") + b"\x55\xaa"


__all__ = ["Message", "Reader", "encode", "decode", "needed", "boot_image", "read10", "read_request",
           "ProtocolError", "SOL", "IDER"]
