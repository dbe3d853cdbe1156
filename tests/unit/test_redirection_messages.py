"""The redirection messages byte for byte, as the public consoles write and read them (docs/protocols.md
"Redirection": each vector below is written out from the source it names, not from our encoder).

MC: Ylianst/MeshCommander @ 2585141ff9692aef07c0ea2d79bb46ddb7136933 (Apache-2.0); AMTTERM: kraxel/amtterm
@ 7e941b687d716b5514dad05b9c4a1366ba358794 (GPL-2.0, read for facts only). No public byte capture of a
redirection session was found; these vectors are the sources' own constants and layouts.
"""
from __future__ import annotations

import struct

import pytest

from pytest_vpro.probes import redirection as r


def _one(data: bytes) -> r.Message:
    got = r.Reader().feed(data)
    assert len(got) == 1, got
    return got[0]


def test_start_redirection_session_is_the_consoles_8_bytes():
    # MC amt-redir-ws-0.1.0.js:69,71: [0x10, 0, 0, 0, 'S','O','L',' '] / [..., 'I','D','E','R']
    assert r.encode(r.Message(r.START_SESSION, session=r.SOL)) == bytes([0x10, 0, 0, 0, 0x53, 0x4F, 0x4C, 0x20])
    assert r.encode(r.Message(r.START_SESSION, session=r.IDER)) == bytes([0x10, 0, 0, 0, 0x49, 0x44, 0x45, 0x52])


@pytest.mark.parametrize("oem", [b"", b"\x01\x02\x03"])
def test_the_session_reply_is_13_bytes_then_its_oem_bytes(oem):
    # MC amt-redir-ws-0.1.0.js:97-114: status at 1, OEM length at 12, the message is 13 + that length long;
    # AMTTERM START_REDIRECTION_SESSION_REPLY_LENGTH 13
    wire = bytes([0x11, 0]) + bytes(10) + bytes([len(oem)]) + oem
    m = _one(wire + bytes([0x14]))  # a following message's first byte stays in the buffer
    assert (m.command, m.status, m.data) == (0x11, 0, oem)
    assert r.encode(r.Message(r.START_SESSION_REPLY, data=oem)) == wire
    assert _one(bytes([0x11, 3]) + bytes(11)).status == r.STATUS_UNSUPPORTED


def test_authenticate_kerberos_and_its_reply():
    # MC amt-redir-node-0.1.0.js:158-174: 0x13 0 0 0, type 2 (Kerberos), u32 length, the ticket
    ticket = b"AP-REQ bytes"
    wire = bytes([0x13, 0, 0, 0, 2]) + struct.pack("<I", len(ticket)) + ticket
    assert r.encode(r.Message(r.AUTHENTICATE, auth_type=r.AUTH_KERBEROS, data=ticket)) == wire
    # the query (MC: [0x13, 0,0,0, 0, 0,0,0,0]) and a reply offering types 1, 2 and 4 (status 1, type 4, data)
    assert r.encode(r.Message(r.AUTHENTICATE)) == bytes([0x13, 0, 0, 0, 0, 0, 0, 0, 0])
    reply = _one(bytes([0x14, 0, 0, 0, 0]) + struct.pack("<I", 3) + bytes([1, 2, 4]))
    assert (reply.status, reply.auth_type, reply.data) == (0, 0, bytes([1, 2, 4]))
    assert r.AUTH_KERBEROS == 2 and (r.AUTH_DIGEST_2069, r.AUTH_DIGEST_2617) == (3, 4)  # AMTTERM auth.c


def test_start_sol_is_24_bytes_and_its_reply_23():
    # MC amt-redir-ws-0.1.0.js (status 0 after authentication): 0x20 0 0 0, seq u32, then MaxTxBuffer 10000,
    # TxTimeout 100, TxOverflowTimeout 0, RxTimeout 10000, RxFlushTimeout 100, Heartbeat 0, then u32 0;
    # AMTTERM START_SOL_REDIRECTION_LENGTH 24, START_SOL_REDIRECTION_REPLY_LENGTH 23
    wire = bytes([0x20, 0, 0, 0, 7, 0, 0, 0]) + struct.pack("<6H", 10000, 100, 0, 10000, 100, 0) + bytes(4)
    assert len(wire) == 24 and r.encode(r.Message(r.START_SOL, seq=7)) == wire
    assert _one(wire).settings == r.SOL_SETTINGS
    reply = bytes([0x21, 0]) + bytes(21)
    assert r.needed(0x21, reply[1:]) == 22 and _one(reply).status == 0
    assert r.needed(0x21, reply[1:10]) == -1  # MeshCommander waits for all 23


def test_sol_data_and_the_end_and_keep_alive_messages():
    # AMTTERM redir_sol_send / redir_sol_recv, MC 0x2A: 10-byte header, length u16 at 8
    wire = bytes([0x2A, 0, 0, 0, 5, 0, 0, 0, 3, 0]) + b"abc"
    m = _one(wire)
    assert (m.command, m.seq, m.data) == (0x2A, 5, b"abc")
    assert r.encode(r.Message(r.SOL_DATA_TO_HOST, seq=5, data=b"abc"))[:1] == b"\x28"
    # AMTTERM RedirectionConstants.h: END_SOL 0x22 / reply 0x23 (8 bytes), keep-alive 0x24 / 0x25, heartbeat 0x2B
    # (HEARTBEAT_LENGTH 8), controls from host 0x29 (10 bytes: redir.h controls_from_host_message)
    assert (r.END_SOL, r.END_SOL_REPLY, r.SOL_PING, r.SOL_PONG, r.SOL_HEARTBEAT) == (0x22, 0x23, 0x24, 0x25, 0x2B)
    assert r.encode(r.Message(r.END_SOL)) == bytes([0x22, 0, 0, 0, 0, 0, 0, 0])
    for command in (0x23, 0x24, 0x25, 0x2B):
        assert _one(bytes([command]) + bytes(7)).command == command
    controls = _one(bytes([0x29, 0, 0, 0, 0, 0, 0, 0, 2, 4]))
    assert (controls.feature, controls.value) == (2, 4)  # DTR; system power state


def test_ide_r_open_session_is_18_bytes_and_its_reply_30_plus_oem():
    # MC amt-ider-ws-0.0.1.js Start: SendCommand(0x40, rx_timeout u16, tx_timeout u16, heartbeat u16, version u32)
    # behind the header 0x40 0 0 attributes, seq u32 (SendCommand); defaults 30000, 0, 20000, 1
    wire = bytes([0x40, 0, 0, 0, 0, 0, 0, 0]) + struct.pack("<HHHI", 30000, 0, 20000, 1)
    assert len(wire) == 18 and r.encode(r.Message(r.IDER_OPEN)) == wire  # AMTTERM START_IDER_REDIRECTION_LENGTH
    # MC ProcessDataEx 0x41: at least 30 bytes, OEM length at 29; read buffer u16 at 16, write buffer at 18,
    # protocol at 21 (0 expected), IANA u32 at 25
    reply = bytearray(30)
    reply[0], reply[8:12] = 0x41, bytes([1, 0, 2, 1])
    reply[16:20] = struct.pack("<HH", 4096, 2048)
    reply[25:29] = struct.pack("<I", 0x157)
    reply[29] = 2
    m = _one(bytes(reply) + b"OE")
    assert (m.command, m.buffers, m.value, m.data) == (0x41, (4096, 2048), 0, b"OE")
    assert r.needed(0x41, bytes(reply[1:])) == 29 + 2


def test_ide_r_enable_on_reboot_and_its_reply():
    # MC ProcessDataEx 0x41 (iderStart 0, "OnReboot"): SendDisableEnableFeatures(3, IntToStrX(0x01 + 0x08));
    # AMTTERM redir_ider_config: IDER_FEATURE_SET_REGISTER_STATE 3, IDER_FEATURE_ENABLE | options; 13 bytes
    wire = bytes([0x48, 0, 0, 0, 1, 0, 0, 0, 3, 0x09, 0, 0, 0])
    sent = r.Message(r.IDER_FEATURES, seq=1, feature=r.FEATURE_SET_REGISTER_STATE,
                     value=r.FEATURE_ENABLE | r.START_ON_REBOOT)
    assert r.encode(sent) == wire
    reply = _one(bytes([0x49, 0, 0, 0, 1, 0, 0, 0, 3, 1, 0, 0, 0]))  # MC: type 3, value 1 = toggled
    assert (reply.feature, reply.value) == (3, 1)


def test_ide_r_command_written_carries_a_scsi_command_block():
    # MC ProcessDataEx 0x50: 28 bytes, drive select at 14 (0x10: CD-ROM), feature register at 9, CDB at 16..27;
    # AMTTERM redir.h ider_command_written_message (ATA command 0xA0 at 15); READ(10): LBA big-endian at 2,
    # length at 7 (MC handleSCSI ReadInt/ReadShort)
    cdb = bytes([0x28, 0, 0, 0, 0, 17, 0, 0, 1, 0, 0, 0])
    wire = bytes([0x50, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xB0, 0xA0]) + cdb
    m = _one(wire)
    assert (m.seq, m.is_cdrom, m.cdb) == (4, True, cdb)
    assert r.read_request(m.cdb) == (17, 1)
    assert r.read10(17, 1) == cdb and r.read_request(bytes([0x08, 0, 0, 5, 0]) + bytes(7)) == (5, 256)  # READ(6)
    assert r.encode(r.Message(r.IDER_COMMAND_WRITTEN, seq=4, device=0xB0, cdb=cdb)) == wire


def test_ide_r_data_to_host_and_command_end_are_the_consoles_bytes():
    # MC SendDataToHost (completed, PIO): header 0x54 0 0 attributes 2, seq; then 0, len u16, 0, 0xB5, 0, 2, 0,
    # len u16, device, 0x58, 0x85, 0, 3, 0, 0, 0, device, 0x50, 0 x6, the data (AMTTERM ider_data_to_host_message)
    data = b"\x55" * 512
    wire = bytes([0x54, 0, 0, 2, 9, 0, 0, 0, 0, 0x00, 0x02, 0, 0xB5, 0, 2, 0, 0x00, 0x02, 0xA0, 0x58,
                  0x85, 0, 3, 0, 0, 0, 0xA0, 0x50, 0, 0, 0, 0, 0, 0]) + data
    assert r.encode(r.Message(r.IDER_DATA_TO_HOST, seq=9, attributes=2, device=0xA0, data=data)) == wire
    assert _one(wire).data == data
    # MC SendCommandEndResponse: 0x51 0 0 2, seq, 12 zero bytes, then the registers and sense; 31 bytes
    # (AMTTERM IDER_COMMAND_END_RESPONSE_LENGTH); success 0xC5 0 3 0 0 0 dev 0x50 0 0 0, a check condition
    # 0x87 (key<<4) 3 0 0 0 dev 0x51 key asc ascq
    ok = bytes([0x51, 0, 0, 2, 3, 0, 0, 0]) + bytes(12) + bytes([0xC5, 0, 3, 0, 0, 0, 0xA0, 0x50, 0, 0, 0])
    assert r.encode(r.Message(r.IDER_COMMAND_END, seq=3, attributes=2, device=0xA0)) == ok
    bad = bytes([0x51, 0, 0, 2, 3, 0, 0, 0]) + bytes(12) + bytes([0x87, 0x50, 3, 0, 0, 0, 0xA0, 0x51, 5, 0x20, 0])
    assert r.encode(r.Message(r.IDER_COMMAND_END, seq=3, attributes=2, device=0xA0, sense=(5, 0x20, 0))) == bad
    assert _one(bad).sense == (5, 0x20, 0) and len(ok) == 31


@pytest.mark.parametrize("command, length", [(0x42, 8), (0x43, 8), (0x44, 8), (0x45, 8), (0x46, 9), (0x47, 8),
                                             (0x4A, 11), (0x4B, 8), (0x52, 31)])
def test_ide_r_fixed_lengths(command, length):
    # AMTTERM RedirectionConstants.h *_LENGTH; MC ProcessDataEx (0x43, 0x44, 0x45, 0x4B: 8; 0x46: 9; 0x4A: 11)
    assert r.needed(command, bytes(length - 1)) == length - 1
    assert r.needed(command, bytes(length - 2)) == -1


def test_an_unknown_command_is_a_protocol_error():
    with pytest.raises(r.ProtocolError):
        r.Reader().feed(bytes([0x99, 0, 0, 0]))
