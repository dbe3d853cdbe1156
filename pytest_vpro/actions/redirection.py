"""SOL and IDE-R as the out of band console opens them (S5-SOL-IDER-SESSION): the boot configuration set
before the reset and put back after, the redirection sessions and the IDE-R image served."""
from __future__ import annotations

import select
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..probes import deadline, tls
from ..probes import redirection as redir
from ..probes.amt import BOOT_READ_ONLY, ROLE_NEXT_SINGLE_USE
from ..probes.errors import MalformedReply, ProbeError, Unreachable
from ..probes.wsman import SoapFault
from .common import (
    _console_device,
    _permit,
    _record,
)
from .power import PowerStep, _request

# --------------------------------------------------------------------------------------------------------------
# SOL and IDE-R (S5-SOL-IDER-SESSION)
# --------------------------------------------------------------------------------------------------------------
#: The boot settings of an IDE-R boot, as MeshCommander's "Reset to IDE-R Floppy" writes them (index.html,
#: powerActionResponse1, action 200): IDE-R from the floppy device (IDERBootDevice 0), SOL on (the console is
#: watching the terminal), every other one-time option off. Only the properties the device returned are written.
IDER_BOOT_SETTINGS = {"UseIDER": True, "IDERBootDevice": 0, "UseSOL": True, "BIOSPause": False, "BIOSSetup": False,
                      "BootMediaIndex": 0, "FirmwareVerbosity": 0, "ForcedProgressEvents": False,
                      "LockKeyboard": False, "LockPowerButton": False, "LockResetButton": False,
                      "LockSleepButton": False, "ReflashBIOS": False, "UseSafeMode": False,
                      "UserPasswordBypass": False, "ConfigurationDataReset": False, "EnforceSecureBoot": False,
                      "SecureErase": False}


@dataclass
class RedirectionResult:
    sol: str = ""                          # "started", or why not
    ider: str = ""
    boot_config: str = ""                  # "set", or why not (the steps before the reset)
    boot_steps: list[str] = field(default_factory=list)  # each WS-MAN call of the boot configuration, and its answer
    reboot: str = ""                       # the power request that restarted the host
    sol_text: str = ""                     # what SOL showed while it booted
    ider_reads: list[int] = field(default_factory=list)  # blocks the client read from the image
    restored: str = ""                     # "yes: ...", or what is left set on the client
    tls: str = ""                          # what the redirection TLS session used (probes/tls.py)

    @property
    def bios_seen(self) -> bool:
        return "Active Management Technology" in self.sol_text or "BIOS" in self.sol_text

    @property
    def booted_from_image(self) -> bool:
        return "Booting from IDE-R" in self.sol_text and 0 in self.ider_reads

    def evidence(self) -> dict[str, Any]:
        return asdict(self)


def sol_ider_session(client, env, facts, image: bytes | None = None) -> RedirectionResult:
    """What a console does to boot a client from an image over IDE-R, watching it over SOL.

    1. A SOL and an IDE-R session on TLS 16995 as the console user (Kerberos); the IDE-R device is enabled for
       the next reboot (DisableEnableFeatures, start "on reboot").
    2. The boot configuration, as MeshCommander and Intel's PowerShell module set it: ``AMT_BootCapabilities``
       must offer IDER; ``CIM_BootConfigSetting.ChangeBootOrder`` with no source; ``AMT_BootSettingData`` Put
       with ``UseIDER`` (floppy device) and ``UseSOL``; ``CIM_BootService.SetBootConfigRole`` role 1 (the next
       boot only); ChangeBootOrder again with no source (MeshCommander's order).
    3. ``RequestPowerStateChange``: 10 (master bus reset) if the client is on, 2 (power on) if not.
    4. SOL must show the BIOS; the client must read ``image`` (default :func:`redirection.boot_image`) over IDE-R
       and boot it.
    5. Restore: ``AMT_BootSettingData`` as it was read before (the firmware clears the one-time options after
       the boot; this puts them back if it did not), read back to confirm. The client is left running: it
       restarted, that cannot be undone.
    """
    permit = _permit(client, "an SOL/IDE-R session with a reset")
    image = image or redir.boot_image()
    port = env.expected["ports"]["redirection_tls"]
    timeout = env.timeouts["read"]
    result = RedirectionResult()
    sessions: dict[str, _Redirection] = {}
    device, before = None, None
    try:
        for kind, name in ((redir.SOL, "sol"), (redir.IDER, "ider")):
            conn = _Redirection(client.name, port, env.pki.get("trusted_roots"), timeout,
                                tls.ciphers_of(env))
            sessions[name] = conn
            result.tls = str(conn.negotiated)
            token = facts.console.credentials().token(facts.amt.spn())[1]  # one AP-REQ per session (no replays)
            setattr(result, name, conn.open(kind, token))
        if result.sol != "started" or result.ider != "started":
            return result
        device = _console_device(facts, env)
        before = _set_boot_configuration(device, result)
        if result.boot_config != "set":
            return result
        state = device.power_state().state
        wanted = 10 if state == 2 else 2
        step = PowerStep(wanted)
        _request(device, step)
        result.reboot = f"RequestPowerStateChange({wanted}) from PowerState {state}: {step.answer}"
        _record(permit, redirection={"reboot": result.reboot})
        if step.answer != "ReturnValue 0":
            return result
        with deadline.Deadline(2 * timeout + 1, f"SOL and IDE-R {client.name}") as limit:  # a record a byte at a time
            limit.watch(sessions["sol"].sock)
            limit.watch(sessions["ider"].sock)
            try:
                _watch(sessions["sol"], sessions["ider"], image, result, until=time.monotonic() + 2 * timeout)
            except ProbeError:
                if limit.expired:
                    raise limit.too_late(client.name, port) from None
                raise
        return result
    finally:
        for conn in sessions.values():
            conn.close()
        if device is not None and before is not None:
            _restore_boot_configuration(device, before, result)
            _record(permit, redirection={"boot_config": result.boot_config, "restored": result.restored})


def _set_boot_configuration(device, result: RedirectionResult):
    """Step 2 of :func:`sol_ider_session`; returns the settings read before (to restore), or None if nothing was
    changed. ``result.boot_config`` says "set" or why not."""


    try:
        capabilities: dict | None = device.boot_capabilities()
    except SoapFault as exc:  # a firmware without the class: no advance check (the boot itself still shows it)
        capabilities = None
        result.boot_steps.append(f"AMT_BootCapabilities not read ({exc}): IDE-R boot not checked in advance")
    except ProbeError as exc:
        result.boot_config = f"could not read AMT_BootCapabilities: {exc}"
        return None
    try:
        before = device.boot_settings()
    except ProbeError as exc:
        result.boot_config = f"could not read AMT_BootSettingData: {exc}"
        return None
    if capabilities is not None:
        result.boot_steps.append(f"AMT_BootCapabilities IDER={capabilities.get('IDER')}, "
                                 f"SOL={capabilities.get('SOL')}")
    if capabilities is not None and not capabilities.get("IDER"):
        result.boot_config = ("the BIOS does not offer IDE-R boot (AMT_BootCapabilities.IDER is not true): "
                              "not changed, not restarted")
        return None
    missing = [k for k in ("UseIDER", "IDERBootDevice") if k not in before]
    if missing:
        result.boot_config = f"AMT_BootSettingData has no {', '.join(missing)}: not changed, not restarted"
        return None
    writable = {k: v for k, v in before.items() if k not in BOOT_READ_ONLY}
    wanted = {**writable, **{k: v for k, v in IDER_BOOT_SETTINGS.items() if k in before}}
    steps = (("ChangeBootOrder (no source)", device.clear_boot_order),
             ("Put AMT_BootSettingData UseIDER=true IDERBootDevice=0 UseSOL=true",
              lambda: device.put_boot_settings(wanted)),
             (f"SetBootConfigRole({ROLE_NEXT_SINGLE_USE})", lambda: device.set_boot_config_role(ROLE_NEXT_SINGLE_USE)),
             ("ChangeBootOrder (no source)", device.clear_boot_order))
    for label, call in steps:
        try:
            call()
        except ProbeError as exc:
            result.boot_steps.append(f"{label}: {exc}")
            result.boot_config = f"{label} refused: {exc}"
            return before
        result.boot_steps.append(f"{label}: ok")
    result.boot_config = "set"
    return before


def _restore_boot_configuration(device, before, result: RedirectionResult) -> None:
    """Step 5: AMT_BootSettingData back as it was (writable properties), then read back."""
    writable = {k: v for k, v in before.items() if k not in BOOT_READ_ONLY}
    try:
        device.put_boot_settings(writable)
        after = device.boot_settings()
    except ProbeError as exc:
        result.restored = f"no: AMT_BootSettingData could not be put back ({exc}); UseIDER may still be set"
        return
    left = {k: after.get(k) for k in ("UseIDER", "UseSOL", "IDERBootDevice")
            if str(after.get(k)).lower() != str(before.get(k)).lower()}
    result.restored = (f"yes: UseIDER={after.get('UseIDER')}, UseSOL={after.get('UseSOL')} as before" if not left
                       else f"no: {', '.join(f'{k}={v}' for k, v in left.items())} after the restore")


class _Redirection:
    """One TLS connection to the redirection port, verified against the estate's roots.

    The connection (every address of the name, the TLS handshake) and each exchange (:meth:`open`, :meth:`expect`)
    have a deadline of twice the timeout: the ssl module's timeout bounds each read, and a device that trickles a
    TLS record keeps one read going; the deadline shuts the socket instead. A message that is not in the
    protocol's layout, or larger than :attr:`redirection.Reader.MAX`, is a :class:`MalformedReply`."""
    def __init__(self, host: str, port: int, ca_bundle: str | None, timeout: float,
                 legacy_ciphers: str = tls.DEFAULT_LEGACY_CIPHERS) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        attempts = 2 if tls.may_fall_back(port) else 1  # a refused modern handshake is tried once more, legacy
        limit = deadline.Deadline(2 * timeout * attempts, f"redirection {host}:{port}")
        with limit:
            try:  # verified; a device that refuses the modern handshake is asked once with the legacy settings
                self.sock, self.negotiated = tls.connect(host, port, cafile=ca_bundle, timeout=timeout,
                                                         ciphers=legacy_ciphers, limit=limit)
            except (TimeoutError, socket.timeout):
                raise Unreachable(host, port, timeout) from None
            except (ssl.SSLError, OSError) as exc:
                if limit.expired:
                    raise limit.too_late(host, port) from None
                if isinstance(exc, ssl.SSLError):
                    raise ProbeError(f"TLS to {host}:{port} failed: {tls.reason(exc)}") from None
                raise Unreachable(host, port, timeout, "connection refused" if isinstance(exc, ConnectionRefusedError)
                                  else exc.strerror or str(exc)) from None
        self.frames = redir.Reader()
        self.pending: list[redir.Message] = []
        self.kind = b""
        self.seq = 0                    # the next sequence number this console sends (SOL data, IDE-R)
        self.read_buffer = 8192         # the device's IDE-R read buffer (OpenSession reply)

    def send(self, m: redir.Message) -> None:
        self.sock.sendall(redir.encode(m))

    def send_seq(self, command: int, **fields: Any) -> None:
        """Send a message that carries this side's sequence number, and count it."""
        self.send(redir.Message(command, seq=self.seq, **fields))
        self.seq += 1

    def receive(self, timeout: float) -> redir.Message | None:
        deadline_at = time.monotonic() + timeout
        while not self.pending:
            left = deadline_at - time.monotonic()
            if left <= 0:
                return None
            if not self.sock.pending():
                ready, _, _ = select.select([self.sock], [], [], left)
                if not ready:
                    return None
            try:
                data = self.sock.recv(65536)
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                raise ProbeError(f"{self.host}:{self.port} closed the redirection session")
            try:
                self.pending += self.frames.feed(data)
            except redir.ProtocolError as exc:
                raise MalformedReply(f"{self.host}:{self.port} sent a redirection message that is not in the "
                                     f"protocol's layout ({exc})") from None
        return self.pending.pop(0)

    def exchange(self) -> deadline.Deadline:
        """A deadline for one exchange on this session (twice the timeout), watching its socket."""
        limit = deadline.Deadline(2 * self.timeout, f"redirection {self.host}:{self.port}")
        limit.watch(self.sock)
        return limit

    def expect(self, command: int) -> redir.Message:
        """The next message but heartbeats and keep-alives, which must be ``command``."""
        with self.exchange() as limit:
            try:
                while True:
                    m = self.receive(self.timeout)
                    if m is None or m.command not in (redir.SOL_HEARTBEAT, redir.IDER_HEARTBEAT,
                                                      redir.SOL_CONTROLS_FROM_HOST):
                        break
            except ProbeError:
                if limit.expired:
                    raise limit.too_late(self.host, self.port) from None
                raise
        if m is None or m.command != command:
            raise ProbeError(f"{self.host}:{self.port}: no {redir.NAMES.get(command, hex(command))} within "
                             f"{self.timeout:g} s" + (f" (got {m.name or hex(m.command)})" if m else ""))
        return m

    def open(self, kind: bytes, token: bytes, auth_type: int = redir.AUTH_KERBEROS) -> str:
        """StartRedirectionSession, authentication (Kerberos: ``token`` is the AP-REQ), then StartSOLRedirection,
        or for IDE-R OpenSession and the device enabled for the next reboot: 'started' or why not."""
        name = "IDE-R" if kind == redir.IDER else "SOL"
        self.kind = kind
        self.send(redir.Message(redir.START_SESSION, session=kind))
        reply = self.expect(redir.START_SESSION_REPLY)
        if reply.status != redir.STATUS_SUCCESS:
            why = {redir.STATUS_BUSY: "busy", redir.STATUS_UNSUPPORTED: "unsupported"}.get(reply.status, "refused")
            return f"{name} session refused by the device (status {reply.status}: {why}; redirection disabled?)"
        self.send(redir.Message(redir.AUTHENTICATE, auth_type=auth_type, data=token))
        if self.expect(redir.AUTHENTICATE_REPLY).status != redir.STATUS_SUCCESS:
            return f"{name} {'Kerberos ' if auth_type == redir.AUTH_KERBEROS else ''}authentication refused"
        if kind == redir.SOL:
            self.send_seq(redir.START_SOL, settings=redir.SOL_SETTINGS)
            if self.expect(redir.START_SOL_REPLY).status != redir.STATUS_SUCCESS:
                return "StartSOLRedirection refused"
            return "started"
        self.send_seq(redir.IDER_OPEN, settings=redir.IDER_SETTINGS)
        opened = self.expect(redir.IDER_OPEN_REPLY)
        if opened.value != 0:
            return f"IDE-R OpenSession answered protocol {opened.value} (0 expected)"
        self.read_buffer = min(opened.buffers[0] or 8192, 8192)
        self.send_seq(redir.IDER_FEATURES, feature=redir.FEATURE_SET_REGISTER_STATE,
                      value=redir.FEATURE_ENABLE | redir.START_ON_REBOOT)
        enabled = self.expect(redir.IDER_FEATURES_REPLY)
        if enabled.value != 1:
            return f"the device did not enable the IDE-R device for the next reboot (answer {enabled.value})"
        return "started"

    def close(self) -> None:
        try:
            if self.kind == redir.SOL:
                self.send_seq(redir.END_SOL)
            elif self.kind == redir.IDER:
                self.send_seq(redir.IDER_CLOSE)
            self.send(redir.Message(redir.END_SESSION))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _serve_ider(conn: _Redirection, m: redir.Message, image: bytes, result: RedirectionResult) -> None:
    """Answer one IDE-R command from the client's BIOS with the image as a read-only floppy (MeshCommander
    handleSCSI): TEST UNIT READY ok, READ(10)/READ(6) the blocks, anything else "invalid command"."""
    device = redir.DEVICE_CDROM if m.is_cdrom else redir.DEVICE_FLOPPY
    block = redir.CD_SECTOR if m.is_cdrom else redir.SECTOR
    read = redir.read_request(m.cdb)
    if m.cdb[:1] == bytes([redir.SCSI_TEST_UNIT_READY]):
        conn.send_seq(redir.IDER_COMMAND_END, attributes=2, device=device)
        return
    if read is None:
        conn.send_seq(redir.IDER_COMMAND_END, attributes=2, device=device, sense=(0x05, 0x20, 0x00))
        return
    lba, blocks = read
    result.ider_reads.append(lba)
    data = image[lba * block:(lba + blocks) * block]
    if not blocks or len(data) < blocks * block:
        conn.send_seq(redir.IDER_COMMAND_END, attributes=2, device=device, sense=(0x05, 0x21, 0x00))  # out of range
        return
    step = max(conn.read_buffer, block)
    for start in range(0, len(data), step):
        last = start + step >= len(data)
        conn.send_seq(redir.IDER_DATA_TO_HOST, attributes=2 if last else 0, device=device,
                      data=data[start:start + step])


def _watch(sol: _Redirection, ider: _Redirection, image: bytes, result: RedirectionResult, until: float) -> None:
    """Serve the image over IDE-R and collect SOL text until the boot line or ``until``."""
    while time.monotonic() < until and "Booting from" not in result.sol_text \
            and "no bootable image" not in result.sol_text:
        for conn in (ider, sol):
            m = conn.receive(0.1)
            if m is None:
                continue
            if m.command == redir.SOL_DATA_FROM_HOST:
                result.sol_text += m.data.decode("ascii", "replace")
            elif m.command == redir.IDER_COMMAND_WRITTEN:
                _serve_ider(conn, m, image, result)
            elif m.command in (redir.SOL_PING, redir.IDER_PING):
                conn.send_seq(redir.SOL_PONG if m.command == redir.SOL_PING else redir.IDER_PONG)
            elif m.command == redir.IDER_RESET:
                conn.send_seq(redir.IDER_RESET_REPLY)


