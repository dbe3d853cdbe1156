"""A simulated AMT device's redirection port (SOL and IDE-R, TLS 16995) and its WebUI pages on 16993.
"""
from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from pytest_vpro.lab.wsman_server import (
    NegotiateAcceptor,
)
from pytest_vpro.probes import redirection as redir

from .amt_device import RV_ERROR, RV_OK, Device


class RedirectionSession:
    """One console connection to the redirection port (layouts: :mod:`pytest_vpro.probes.redirection`).

    StartRedirectionSession (SOL or IDER: refused when AMT_RedirectionService.EnabledState disables it),
    AuthenticateSession (query; user/password = the digest account; Kerberos = an AP-REQ for the 16993 SPN),
    then StartSOLRedirection, or IDE-R OpenSession and DisableEnableFeatures (the device enabled for the next
    reboot, or now); the starts are recorded as state-changing calls like WS-MAN methods.
    """

    def __init__(self, device: Device, writer: asyncio.StreamWriter, negotiate: NegotiateAcceptor | None):
        self.device, self.writer, self.negotiate = device, writer, negotiate
        self.kind = b""
        self.principal = ""
        self.started = False
        self.ider_enabled = False     # DisableEnableFeatures enabled the IDE-R device
        self.seq = 0                  # the next sequence number the device sends
        self._answer: asyncio.Future | None = None  # the console's answer to the command in flight
        self._data = b""

    def send(self, m: redir.Message) -> None:
        if not self.writer.is_closing():
            self.writer.write(redir.encode(m))

    def send_seq(self, command: int, **fields: Any) -> None:
        self.send(redir.Message(command, seq=self.seq, **fields))
        self.seq += 1

    def send_text(self, text: str) -> None:
        self.send_seq(redir.SOL_DATA_FROM_HOST, data=text.encode("ascii", "replace"))

    async def read_block(self, lba: int, cdrom: bool, timeout: float = 5.0) -> bytes:
        """What the BIOS does to read a block of the IDE-R device: an IDE-R command carrying READ(10); the
        console answers with data (the last message marked completed) or a check condition (empty)."""
        self._answer, self._data = asyncio.get_running_loop().create_future(), b""
        self.send_seq(redir.IDER_COMMAND_WRITTEN, device=redir.DEVICE_CDROM if cdrom else redir.DEVICE_FLOPPY,
                      cdb=redir.read10(lba, 1))
        try:
            return await asyncio.wait_for(self._answer, timeout)
        except asyncio.TimeoutError:
            return b""
        finally:
            self._answer = None

    async def run(self, reader: asyncio.StreamReader) -> None:
        frames = redir.Reader()
        self.device.sessions.add(self)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), 300 if self.started else 10)
                if not data or not self.device.me_reachable():
                    return
                for m in frames.feed(data):
                    if not self.handle(m):
                        return
                await self.writer.drain()
        except (OSError, asyncio.TimeoutError, redir.ProtocolError):
            return
        finally:
            self.device.sessions.discard(self)
            self.writer.close()

    def _log_start(self, op: str) -> None:
        s = self.device.spec
        # the device's own call record, shared with its WS-MAN side
        self.device._record({"ts": time.time(), "device": s.fqdn, "address": s.address, "op": op,  # noqa: SLF001
                             "class": "AMT_RedirectionService", "params": {},
                             "return": RV_OK if self.started else RV_ERROR, "principal": self.principal})

    def handle(self, m: redir.Message) -> bool:
        s, r = self.device.spec, redir
        if m.command == r.START_SESSION:
            sol, ider = REDIRECTION_STATES_SIM.get(s.redirection_state, (False, False))
            ok = (m.session == r.SOL and sol) or (m.session == r.IDER and ider)
            self.kind = m.session if ok else b""
            self.send(r.Message(r.START_SESSION_REPLY, status=r.STATUS_SUCCESS if ok else r.STATUS_UNSUPPORTED))
        elif m.command == r.AUTHENTICATE and self.kind:
            if m.auth_type == r.AUTH_QUERY:
                offered = bytes([r.AUTH_USER_PASSWORD] + ([r.AUTH_KERBEROS] if self.negotiate else []))
                self.send(r.Message(r.AUTHENTICATE_REPLY, status=r.STATUS_SUCCESS, data=offered))
                return True
            self.principal = self._authenticate(m.auth_type, m.data)
            self.send(r.Message(r.AUTHENTICATE_REPLY, auth_type=m.auth_type,
                                status=r.STATUS_SUCCESS if self.principal else r.STATUS_FAILURE))
        elif m.command == r.START_SOL:
            self.started = bool(self.principal) and self.kind == r.SOL
            self.send(r.Message(r.START_SOL_REPLY, status=r.STATUS_SUCCESS if self.started else r.STATUS_FAILURE))
            self._log_start("StartSOLRedirection")
        elif m.command == r.IDER_OPEN:
            self.started = bool(self.principal) and self.kind == r.IDER
            self._log_start("StartIDERRedirection")
            if not self.started:
                return False  # no public source shows a refusal message: the device drops the connection
            self.send_seq(r.IDER_OPEN_REPLY, buffers=(8192, 8192))
        elif m.command == r.IDER_FEATURES and self.started:
            if m.feature == r.FEATURE_SET_REGISTER_STATE:
                self.ider_enabled = bool(m.value & r.FEATURE_ENABLE)
            self.send_seq(r.IDER_FEATURES_REPLY, feature=m.feature, value=1)
        elif m.command == r.IDER_DATA_TO_HOST:
            self._data += m.data
            if m.attributes & 2 and self._answer is not None and not self._answer.done():
                self._answer.set_result(self._data)
        elif m.command == r.IDER_COMMAND_END:
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(self._data if m.sense[0] == 0 else b"")
        elif m.command == r.SOL_PING:
            self.send_seq(r.SOL_PONG)
        elif m.command == r.IDER_PING:
            self.send_seq(r.IDER_PONG)
        elif m.command == r.END_SOL:
            self.send_seq(r.END_SOL_REPLY)
            self.started = False
        elif m.command == r.IDER_CLOSE:
            self.send_seq(r.IDER_CLOSE_REPLY)
            self.started = self.ider_enabled = False
        elif m.command == r.END_SESSION:
            return False
        return True  # SOL keyboard input (data to host), heartbeats, pongs: accepted and dropped

    def _authenticate(self, kind: int, data: bytes) -> str:
        s = self.device.spec
        if kind == redir.AUTH_USER_PASSWORD and len(data) >= 2:
            n = data[0]
            user = data[1:1 + n].decode("utf-8", "replace")
            password = data[2 + n:2 + n + data[1 + n]].decode("utf-8", "replace") if len(data) > 1 + n else ""
            return user if user == s.digest_user and password == s.digest_password else ""
        if kind == redir.AUTH_KERBEROS and self.negotiate is not None:
            try:
                return self.negotiate.accept("Negotiate " + base64.b64encode(data).decode())[0]
            except Exception:  # noqa: BLE001 - a refused ticket is a failed authentication
                return ""
        return ""


#: AMT_RedirectionService.EnabledState -> (SOL, IDER)
REDIRECTION_STATES_SIM = {32768: (False, False), 32769: (False, True), 32770: (True, False), 32771: (True, True)}


class WebUI:
    """The device's WebUI pages on 16993 (see :class:`~pytest_vpro.lab.wsman_server.WsmanEndpoint` ``web``)."""

    PAGES = ("/", "/index.htm", "/logon.htm")

    def __init__(self, device: Device):
        self.device = device

    def public(self, path: str) -> bool:
        return path == "/"

    def render(self, path: str, principal: str | None) -> str | None:
        s = self.device.spec
        if not s.webui_enabled or path not in self.PAGES:
            return None
        title = "Intel&reg; Active Management Technology"
        if path == "/":
            body = '<p><a href="logon.htm">Log On...</a></p>'
        else:
            body = (f"<h1>System Status</h1><table><tr><td>Computer name</td><td>{s.host_name}.{s.domain_name}"
                    f"</td></tr><tr><td>Power</td><td>{'On' if s.power_state == 2 else 'Off'}</td></tr>"
                    f"<tr><td>Intel AMT version</td><td>{s.amt_version}</td></tr></table>"
                    f"<p>Logged on as {principal}</p>")
        return f"<html><head><title>{title}</title></head><body>{body}</body></html>"
