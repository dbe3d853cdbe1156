"""Writers for the two Configuration Manager 2007 log formats, and the texts the lab's site server logs.

Formats (``docs/protocols.md``, "Configuration Manager 2007 logs"):

* site-server SMS format, e.g. ``AMTOPMGR.LOG``::

    message  $$<SMS_AMT_OPERATION_MANAGER><MM-DD-YYYY HH:MM:SS.mmm+bias><thread=N (0xHEX)>

* client CCM format, e.g. ``OOBMGMT.LOG``::

    <![LOG[message]LOG]!><time="14:24:33.329+420" date="06-26-2015" component="..." context=""
    type="1" thread="1256" file="...">   (one line)

``bias`` is the Windows time-zone bias in minutes *west* of UTC (``TIME_ZONE_INFORMATION.Bias``: local time
plus bias = UTC), so UTC-7 is written ``+420`` and UTC+1 ``-60``. Lines end with CRLF as Windows writes them.

No public post quotes SCCM's AMTOPMGR.LOG lines for hellos, ZTC requests, the provisioning stages or
un-provisioning (docs/protocols.md): every text in :data:`AMTOPMGR_MESSAGES` is a plausible guess,
*(unconfirmed)*, kept as data in this one table; the parser in :mod:`pytest_vpro.probes.cmlog` matches them by
default, and its checks never take their absence as proof. The lines real logs show for the provisioning
certificate (near its end, unloaded once expired) are quoted in :mod:`pytest_vpro.lab.site_server`.
"""
from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Any

SMS_COMPONENT = "SMS_AMT_OPERATION_MANAGER"

#: event -> message template (str.format fields: fqdn, uuid, ip, mode, retry, reason, thumbprint). ALL
#: *(unconfirmed)*: the lab's own wording.
AMTOPMGR_MESSAGES: dict[str, str] = {
    "hello_received": "AMT Provision Worker: Received hello packet (out of band) from {ip}: AMT device UUID {uuid}"
                      " ({fqdn}), {mode} mode, retry {retry}",
    "hello_not_imported": "AMT Provision Worker: AMT device UUID {uuid} from {ip} has not been imported for out of"
                          " band management; hello packet discarded",
    "hello_malformed": "AMT Provision Worker: Invalid hello packet from {ip} discarded: {reason}",
    "ztc_request": "AMT Provision Worker: Received ZTC provisioning request (in-band) from {fqdn} ({ip}),"
                   " AMT device UUID {uuid}",
    "provisioning_started": "AMT Provision Worker: Start provisioning AMT device {fqdn} ({ip}), UUID {uuid}",
    "first_stage_completed": "AMT Provision Worker: First stage provisioning completed for AMT device {fqdn},"
                             " UUID {uuid}",
    "second_stage_completed": "AMT Provision Worker: Second stage provisioning completed successfully for AMT device"
                              " {fqdn}, UUID {uuid}",
    "provisioning_failed": "AMT Provision Worker: Provisioning failed for AMT device {fqdn}, UUID {uuid}."
                           " Reason: {reason}",
    "unprovision_started": "AMT Clear Worker: Start clearing provisioning data from AMT device {fqdn} ({ip}),"
                           " UUID {uuid}",
    "unprovision_completed": "AMT Clear Worker: Clearing provisioning data completed successfully for AMT device"
                             " {fqdn}, UUID {uuid}",
    "unprovision_failed": "AMT Clear Worker: Clearing provisioning data failed for AMT device {fqdn}, UUID {uuid}."
                          " Reason: {reason}",
    # the out of band component's certificate, when it is configured (fqdn: the certificate's subject CN)
    "provisioning_certificate_accepted": "Provisioning certificate CN={fqdn} (thumbprint {thumbprint}) accepted for"
                                         " out of band management",
    "provisioning_certificate_rejected": "Provisioning certificate CN={fqdn} (thumbprint {thumbprint}) rejected:"
                                         " {reason}",
}


def amtopmgr_message(event: str, **fields: Any) -> str:
    """The text for ``event`` with ``fields`` filled in; missing fields become ``unknown``."""
    template = AMTOPMGR_MESSAGES[event]

    class _Default(dict):
        def __missing__(self, key: str) -> str:
            return "unknown"

    return template.format_map(_Default({k: v for k, v in fields.items() if v not in (None, "")}))


def _local(when: dt.datetime | None) -> dt.datetime:
    when = when or dt.datetime.now().astimezone()
    return when if when.tzinfo is not None else when.astimezone()


def windows_bias(when: dt.datetime) -> int:
    """Minutes west of UTC (UTC = local + bias), as Windows logs print it."""
    offset = when.utcoffset() or dt.timedelta(0)
    return -int(offset.total_seconds() // 60)


def _bias_text(bias: int) -> str:
    return "+000" if bias == 0 else f"{bias:+d}"


def format_sms(message: str, *, component: str = SMS_COMPONENT, when: dt.datetime | None = None,
               thread: int = 0) -> str:
    """One SMS-format line (no line ending)."""
    t = _local(when)
    stamp = f"{t:%m-%d-%Y %H:%M:%S}.{t.microsecond // 1000:03d}{_bias_text(windows_bias(t))}"
    return f"{message}  $$<{component}><{stamp}><thread={thread} (0x{thread:X})>"


def format_ccm(message: str, *, component: str, when: dt.datetime | None = None, thread: int = 0,
               type_: int = 1, file: str = "", context: str = "") -> str:
    """One CCM-format line (no line ending). ``type_``: 1 information, 2 warning, 3 error."""
    t = _local(when)
    clock = f"{t:%H:%M:%S}.{t.microsecond // 1000:03d}{_bias_text(windows_bias(t))}"
    return (f'<![LOG[{message}]LOG]!><time="{clock}" date="{t:%m-%d-%Y}" component="{component}" '
            f'context="{context}" type="{type_}" thread="{thread}" file="{file}">')


# One lock per file, so several writers of one file in one process never interleave a line.
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    key = os.path.realpath(path)
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


class CmLogWriter:
    """Append-only writer of one Configuration Manager log file (``fmt`` ``"sms"`` or ``"ccm"``).

    Each line is written with one ``write`` and flushed at once (line-buffered), under a per-file lock shared
    by every writer of the same path in this process. UTF-8, CRLF line endings.

    It rolls over as Configuration Manager's logs do (docs/protocols.md): :meth:`rotate` copies the log to its
    history, the same name with the extension ``.lo_`` (replacing the previous history), and starts it empty;
    with ``max_bytes``, a line that would take the log past that size first rotates it.
    """

    def __init__(self, path: str | Path, *, fmt: str = "sms", component: str = SMS_COMPONENT, file: str = "",
                 max_bytes: int = 0):
        if fmt not in ("sms", "ccm"):
            raise ValueError(f"log format must be 'sms' or 'ccm', not {fmt!r}")
        self.path, self.fmt, self.component, self.file = Path(path), fmt, component, file
        self.max_bytes = max_bytes
        self._lock = _lock_for(self.path)

    @property
    def history(self) -> Path:
        """``AMTOPMGR.LOG`` -> ``AMTOPMGR.lo_``."""
        return self.path.with_suffix(".lo_")

    def rotate(self) -> None:
        with self._lock:
            self._rotate()

    def _rotate(self) -> None:
        if self.path.exists():
            os.replace(self.path, self.history)

    def __repr__(self) -> str:
        return f"CmLogWriter({str(self.path)!r}, fmt={self.fmt!r}, component={self.component!r})"

    def line(self, message: str, *, when: dt.datetime | None = None, thread: int = 0, type_: int = 1) -> str:
        if self.fmt == "sms":
            return format_sms(message, component=self.component, when=when, thread=thread)
        return format_ccm(message, component=self.component, when=when, thread=thread, type_=type_, file=self.file)

    def write(self, message: str, *, when: dt.datetime | None = None, thread: int = 0, type_: int = 1) -> str:
        """Append one entry (a message with newlines becomes a multi-line entry, as SMS logs show them)."""
        text = self.line(message.replace("\r\n", "\n").replace("\n", "\r\n"), when=when, thread=thread,
                         type_=type_)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.max_bytes and self.path.exists() and \
                    self.path.stat().st_size + len(text.encode()) + 2 > self.max_bytes:
                self._rotate()
            with self.path.open("a", encoding="utf-8", newline="", buffering=1) as fh:
                fh.write(text + "\r\n")
        return text

    def event(self, event: str, *, when: dt.datetime | None = None, thread: int = 0, type_: int | None = None,
              **fields: Any) -> str:
        """Append the :data:`AMTOPMGR_MESSAGES` text of ``event``; failures are logged as errors (type 3)."""
        kind = type_ if type_ is not None else (3 if event.endswith("_failed") else 1)
        return self.write(amtopmgr_message(event, **fields), when=when, thread=thread, type_=kind)


__all__ = ["SMS_COMPONENT", "AMTOPMGR_MESSAGES", "amtopmgr_message", "format_sms", "format_ccm", "windows_bias",
           "CmLogWriter"]
