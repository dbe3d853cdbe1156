"""Parse Configuration Manager 2007 logs (``AMTOPMGR.LOG``, ``OOBMGMT.LOG``) and find per-client events.

Both formats of ``docs/protocols.md`` ("Configuration Manager 2007 logs"):

* SMS (site server): ``message  $$<COMPONENT><MM-DD-YYYY HH:MM:SS.mmm+bias><thread=N (0xHEX)>``; a message may
  span several lines, the trailer closes the entry;
* CCM (client): ``<![LOG[message]LOG]!><time="HH:MM:SS.mmm+bias" date="MM-DD-YYYY" component="..." ...>``.

``bias`` is minutes west of UTC (local + bias = UTC). The reader streams: it decodes UTF-8, or UTF-16 LE/BE
when the file starts with a BOM (or looks like BOM-less UTF-16 LE), keeps at most ``max_line`` characters of
a line, and never raises on bad input: a line that is binary garbage, overlong, or an entry cut off at the end
of the file is skipped and counted (``skipped``, ``overlong``, ``truncated``).

The event patterns are ONE table, :data:`EVENT_PATTERNS`: regular expressions with the named groups ``fqdn``,
``uuid``, ``ip``, ``reason``, ``mode`` (PKI/PSK) and ``retry`` (a hello's retry count); the client-log events
(``policy_*`` of OOBMGMT.LOG) name no client: a client's own log is that client's. Where a public post quotes a
real line, the default pattern follows its wording (:data:`SOURCED`, docs/protocols.md); every other default is the
lab's text (:mod:`pytest_vpro.lab.cmlog`, :mod:`pytest_vpro.lab.windows_client`), *(unconfirmed)*: its absence
proves nothing (:func:`decisive`). An environment file's ``log_patterns`` (``{event: [regex, ...]}``) is tried
before the defaults and may add events of its own.

Site-server logs roll over: when ``X.LOG`` is full it is copied to ``X.lo_`` (the previous history is
overwritten) and a new ``X.LOG`` starts (:func:`history_path`); a reader wants both, the history first.
"""
from __future__ import annotations

import codecs
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator, Mapping

MAX_LINE = 16384
MAX_ENTRY_LINES = 50
CHUNK = 65536

_SMS = re.compile(r"^(?P<msg>.*?)\s*\$\$<(?P<comp>[^<>]*)><(?P<date>\d{1,2}-\d{1,2}-\d{4}) "
                  r"(?P<time>\d{1,2}:\d{2}:\d{2}(?:\.\d{1,7})?)(?P<bias>[+-]\d{1,4})?>"
                  r"<thread=(?P<thread>\d+)(?: \(0x[0-9A-Fa-f]+\))?>\s*$", re.S)
_CCM = re.compile(r"^<!\[LOG\[(?P<msg>.*?)\]LOG\]!>(?P<attrs><[^<>]*>)\s*$", re.S)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_GARBAGE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_NOT_A_NAME = {"", "unknown", "n/a", "none", "null"}


@dataclass(frozen=True)
class LogLine:
    """One log entry. ``time`` is timezone-aware when the line carried a bias, ``None`` if unreadable."""

    time: dt.datetime | None
    component: str
    thread: int | None
    message: str
    format: str  # "sms" or "ccm"
    type: int = 1  # CCM type: 1 information, 2 warning, 3 error (SMS lines: 1)
    file: str = ""


def _timestamp(date: str, clock: str, bias: str | None) -> dt.datetime | None:
    try:
        month, day, year = (int(p) for p in date.split("-"))
        hms, _, frac = clock.partition(".")
        hour, minute, second = (int(p) for p in hms.split(":"))
        micro = int((frac + "000000")[:6]) if frac else 0
        tz = None
        if bias:
            tz = dt.timezone(dt.timedelta(minutes=-int(bias)))
        return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except (ValueError, OverflowError):
        return None


def parse_entry(text: str) -> LogLine | None:
    """Parse one complete entry (possibly several physical lines); ``None`` if it is in neither format."""
    m = _CCM.match(text)
    if m:
        attrs = dict(_ATTR.findall(m["attrs"]))
        clock, _, bias = attrs.get("time", "").partition("+")
        if not bias and "-" in clock:
            clock, _, neg = clock.partition("-")
            bias = "-" + neg
        elif bias:
            bias = "+" + bias
        thread = attrs.get("thread", "")
        kind = attrs.get("type", "1")
        return LogLine(_timestamp(attrs.get("date", ""), clock, bias or None), attrs.get("component", ""),
                       int(thread) if thread.isdigit() else None, m["msg"], "ccm",
                       int(kind) if kind.isdigit() else 1, attrs.get("file", ""))
    m = _SMS.match(text)
    if m:
        return LogLine(_timestamp(m["date"], m["time"], m["bias"]), m["comp"], int(m["thread"]),
                       m["msg"].rstrip(), "sms")
    return None


def _sniff(head: bytes) -> tuple[str, int]:
    """(codec, BOM length) from the first bytes of a file."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    sample = head[:512]
    if len(sample) >= 8 and sample[1::2].count(0) > len(sample) // 4 and sample[0::2].count(0) < len(sample) // 16:
        return "utf-16-le", 0
    return "utf-8", 0


class LogReader:
    """Iterate over the :class:`LogLine` entries of a binary or text file-like object, streaming."""

    def __init__(self, stream: IO[bytes] | IO[str], *, max_line: int = MAX_LINE,
                 max_entry_lines: int = MAX_ENTRY_LINES):
        self.stream, self.max_line, self.max_entry_lines = stream, max_line, max_entry_lines
        self.skipped = 0    # garbage lines, and text lines that never became part of an entry
        self.overlong = 0   # lines longer than max_line (dropped whole)
        self.truncated = 0  # an entry cut off (e.g. the last line of a log still being written)
        self.lines = 0

    def __repr__(self) -> str:
        return (f"LogReader(lines={self.lines}, skipped={self.skipped}, overlong={self.overlong}, "
                f"truncated={self.truncated})")

    # -- physical lines --
    def _chunks(self) -> Iterator[str]:
        first = self.stream.read(CHUNK)
        if isinstance(first, str):
            text: str | bytes = first
            while text:
                yield str(text)
                text = self.stream.read(CHUNK)
            return
        codec, bom = _sniff(first)
        decoder = codecs.getincrementaldecoder(codec)(errors="replace")
        data: bytes = first[bom:]
        while data:
            yield decoder.decode(data)
            data = self.stream.read(CHUNK)  # type: ignore[assignment]
        yield decoder.decode(b"", final=True)

    def physical_lines(self) -> Iterator[str]:
        """Decoded lines without line endings; an overlong line is dropped (counted) up to its newline."""
        buf, dropping = "", False
        for chunk in self._chunks():
            buf += chunk
            while True:
                nl = buf.find("\n")
                if nl < 0:
                    if len(buf) > self.max_line:
                        if not dropping:
                            self.overlong += 1
                        dropping, buf = True, ""
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if dropping:
                    dropping = False
                    continue
                if len(line) > self.max_line + 1:
                    self.overlong += 1
                    continue
                self.lines += 1
                yield line.rstrip("\r")
        if buf and not dropping:
            self.lines += 1
            yield buf.rstrip("\r")

    # -- entries --
    def __iter__(self) -> Iterator[LogLine]:
        pending: list[str] = []
        for line in self.physical_lines():
            if _GARBAGE.search(line):
                self.skipped += 1
                continue
            if line.startswith("<![LOG[") and pending:
                self.truncated += 1  # a CCM entry that never closed
                pending = []
            if not pending:
                entry = parse_entry(line)
                if entry is not None:
                    yield entry
                    continue
                if not line.strip():
                    continue
                pending = [line]
                continue
            pending.append(line)
            entry = parse_entry("\n".join(pending))
            if entry is not None:
                pending = []
                yield entry
            elif len(pending) > self.max_entry_lines:
                self.skipped += 1
                pending.pop(0)
        if pending:
            self.truncated += 1


def read_log(stream: IO[bytes] | IO[str], **kwargs) -> Iterator[LogLine]:
    """Shorthand for ``iter(LogReader(stream, **kwargs))``."""
    return iter(LogReader(stream, **kwargs))


def parse_text(text: str | bytes) -> list[LogLine]:
    """Parse a whole log held in memory."""
    stream: IO = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
    return list(LogReader(stream))


# --- events ---------------------------------------------------------------------------
_FQDN = r"(?P<fqdn>[A-Za-z0-9][A-Za-z0-9._-]*)"
_UUID = r"(?P<uuid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})"
_IP = r"(?P<ip>\d{1,3}(?:\.\d{1,3}){3})"

#: event -> regexes, tried in this order (first match wins per line). Those of :data:`SOURCED` follow real lines;
#: the others match the lab's texts (``lab/cmlog.py`` AMTOPMGR_MESSAGES), guesses *(unconfirmed)*: no public post
#: quotes SCCM's lines for hellos, ZTC requests, the provisioning stages or un-provisioning (docs/protocols.md).
#: No looser "generic" patterns on purpose: they caught lines such as "invalid hello packet from ..." as hellos;
#: a site adds its real wording (log_patterns).
EVENT_PATTERNS: dict[str, list[str]] = {
    "hello_received": [
        rf"Received hello packet \(out of band\) from {_IP}: AMT device UUID {_UUID} \({_FQDN}\)"
        rf"(?:, (?P<mode>PKI|PSK) mode, retry (?P<retry>\d+))?",
    ],
    "ztc_request": [
        rf"Received ZTC provisioning request \(in-band\) from {_FQDN} \({_IP}\), AMT device UUID {_UUID}",
    ],
    "provisioning_started": [
        rf"Start provisioning AMT device {_FQDN} \({_IP}\), UUID {_UUID}",
    ],
    "first_stage_completed": [
        rf"First stage provisioning completed for AMT device {_FQDN}, UUID {_UUID}",
    ],
    "second_stage_completed": [
        rf"Second stage provisioning completed successfully for AMT device {_FQDN}, UUID {_UUID}",
    ],
    "provisioning_failed": [
        rf"Provisioning failed for AMT device {_FQDN}, UUID {_UUID}\. Reason: (?P<reason>.*)",
    ],
    "unprovision_started": [
        rf"Start clearing provisioning data from AMT device {_FQDN} \({_IP}\), UUID {_UUID}",
    ],
    "unprovision_completed": [
        rf"Clearing provisioning data completed successfully for AMT device {_FQDN}, UUID {_UUID}",
    ],
    "unprovision_failed": [
        rf"Clearing provisioning data failed for AMT device {_FQDN}, UUID {_UUID}\. Reason: (?P<reason>.*)",
    ],
    # the out of band component's provisioning certificate (fqdn: its subject CN)
    "provisioning_certificate_accepted": [
        rf"Provisioning certificate CN={_FQDN} \(thumbprint [^)]*\) accepted",
    ],
    "provisioning_certificate_rejected": [
        rf"Provisioning certificate CN={_FQDN} \(thumbprint [^)]*\) rejected: (?P<reason>.*)",
    ],
    # quoted from real AMTOPMGR.LOG files (SOURCED): the provisioning certificate nearing its end, and unloaded
    "provisioning_certificate_expiring": [
        (r"Error: The provisioning certificate with the thumbprint (?P<reason>[0-9A-Fa-f]{40} will expire in \d+ "
         r"day\(s\))"),
    ],
    "provisioning_certificate_unloaded": [
        r"Remove unused provision certificate with hash (?P<reason>[0-9A-Fa-f]{40}) from memory",
    ],
    # OOBMGMT.LOG, the in-band client's agent (windows_client.OOBMGMT_MESSAGES)
    "policy_downloaded": [r"AMT auto provisioning policy downloaded from site"],
    "policy_enabled": [r"AMT auto provisioning is enabled in policy"],
    "policy_disabled": [r"AMT auto provisioning is disabled in policy"],
    "policy_missing": [r"No AMT auto provisioning policy received"],
    "provisioning_request_sent": [
        rf"Sent AMT provisioning request \(in-band\) for {_FQDN}, AMT device UUID {_UUID}",
    ],
}


GROUPS = frozenset({"fqdn", "uuid", "ip", "reason", "mode", "retry"})

#: Events whose default pattern follows a real line quoted in public, with where (docs/protocols.md has them all).
SOURCED: dict[str, str] = {
    "provisioning_certificate_expiring": "Intel vPro Expert Center blog, 'Expired GoDaddy vPro provisioning "
                                         "certificate in a SCCM environment' (2009-12-15)",
    "provisioning_certificate_unloaded": "the same post",
}


def decisive(event: str, extra: Mapping[str, Any] | None = None) -> bool:
    """Whether a log without an ``event`` line shows that the event did not happen: its default pattern follows a
    public quote (:data:`SOURCED`), or the environment file's ``log_patterns`` give the site's own wording for it.
    Otherwise the wording is a guess, and a site that words it differently would have no matching line."""
    return event in SOURCED or bool((extra or {}).get(event))


def history_path(path: str) -> str:
    """The rolled-over history of a Configuration Manager log: ``Logs/AMTOPMGR.LOG`` -> ``Logs/AMTOPMGR.lo_``."""
    stem, dot, _ext = path.rpartition(".")
    return f"{stem if dot else path}.lo_"


@dataclass(frozen=True)
class Event:
    """One recognised event for one client."""

    kind: str
    time: dt.datetime | None
    fqdn: str | None = None
    uuid: str | None = None
    ip: str | None = None
    reason: str | None = None
    line: LogLine | None = field(default=None, compare=False, repr=False)
    mode: str | None = None   # a hello's PKI/PSK
    retry: int | None = None  # a hello's retry count

    @property
    def key(self) -> str:
        """The client key: lower-case FQDN, else lower-case UUID, else IP address."""
        return self.fqdn or self.uuid or self.ip or ""


def compile_patterns(extra: Mapping[str, str | Iterable[str]] | None = None) -> dict[str, list[re.Pattern[str]]]:
    """The default table plus ``extra`` (``{event: regex | [regex, ...]}``, tried first).

    Raises ``ValueError`` naming the event for a pattern that does not compile or uses a group other than
    :data:`GROUPS`.
    """
    table: dict[str, list[str]] = {}
    for event, pats in (extra or {}).items():
        table.setdefault(str(event), []).extend([pats] if isinstance(pats, str) else list(pats))
    for event, pats in EVENT_PATTERNS.items():
        table.setdefault(event, []).extend(pats)
    compiled: dict[str, list[re.Pattern[str]]] = {}
    for event, pats in table.items():
        for p in pats:
            try:
                rx = re.compile(p)
            except re.error as exc:
                raise ValueError(f"log pattern for {event!r} does not compile: {exc}") from None
            unknown = set(rx.groupindex) - GROUPS
            if unknown:
                raise ValueError(f"log pattern for {event!r} uses unknown group(s) {sorted(unknown)}")
            compiled.setdefault(event, []).append(rx)
    return compiled


def match_event(line: LogLine, patterns: Mapping[str, list[re.Pattern[str]]]) -> Event | None:
    """The first event whose pattern matches ``line.message``."""
    for kind, rxs in patterns.items():
        for rx in rxs:
            m = rx.search(line.message)
            if m is None:
                continue
            g = m.groupdict()
            fqdn = (g.get("fqdn") or "").strip().rstrip(".").lower()
            uuid = (g.get("uuid") or "").strip().lower()
            retry = (g.get("retry") or "").strip()
            return Event(kind, line.time, fqdn if fqdn not in _NOT_A_NAME else None, uuid or None,
                         (g.get("ip") or "").strip() or None, (g.get("reason") or "").strip() or None, line,
                         (g.get("mode") or "").strip().upper() or None, int(retry) if retry.isdigit() else None)
    return None


def events(lines: Iterable[LogLine], patterns: Mapping[str, str | Iterable[str]] | None = None,
           ) -> dict[str, list[Event]]:
    """Group the recognised events of ``lines`` by client key (see :attr:`Event.key`), in log order.

    ``patterns`` is the environment file's ``log_patterns`` (extra regexes per event); it may also be an
    already compiled table from :func:`compile_patterns`.
    """
    table = patterns if _is_compiled(patterns) else compile_patterns(patterns)
    out: dict[str, list[Event]] = {}
    for line in lines:
        ev = match_event(line, table)  # type: ignore[arg-type]
        if ev is not None:
            out.setdefault(ev.key, []).append(ev)
    return out


def _is_compiled(patterns) -> bool:
    return bool(patterns) and all(isinstance(v, list) and all(isinstance(p, re.Pattern) for p in v)
                                  for v in patterns.values())


def client_events(by_client: Mapping[str, list[Event]], *, fqdn: str | None = None, uuid: str | None = None,
                  ip: str | None = None, index: Mapping[str, list[tuple[int, Event]]] | None = None) -> list[Event]:
    """Every event naming the client by any of its FQDN, UUID or IP address, in time order.

    ``index``: :func:`index_by_name` of ``by_client``, for many clients of one log (a lookup each, not a scan).
    """
    want = {x for x in ((fqdn or "").lower().rstrip("."), (uuid or "").lower(), ip or "") if x}
    index = index if index is not None else index_by_name(by_client)
    found = [e for _, e in sorted({n: e for x in want for n, e in index.get(x, ())}.items())]  # in log order
    return sorted(found, key=lambda e: (e.time is None, e.time.timestamp() if e.time else 0))


def index_by_name(by_client: Mapping[str, list[Event]]) -> dict[str, list[tuple[int, Event]]]:
    """Every event of ``by_client`` under each name it gives its client (FQDN, UUID, IP), numbered in log order."""
    out: dict[str, list[tuple[int, Event]]] = {}
    n = 0
    for evs in by_client.values():
        for e in evs:
            for name in {e.fqdn, e.uuid, e.ip} - {None, ""}:
                out.setdefault(str(name), []).append((n, e))
            n += 1
    return out


def provisioned(events: Iterable[Event]) -> Event | None:
    """The ``second_stage_completed`` event of a client's events (time order) that no later
    ``unprovision_completed`` undid: the site provisioned it then; None if it has not (or not since)."""
    done = None
    for e in events:
        if e.kind == "second_stage_completed":
            done = e
        elif e.kind == "unprovision_completed":
            done = None
    return done


def trace(events: Iterable[Event], limit: int = 200) -> str:
    """Events as Trace32 shows their lines (time, thread, message), for a report; the last ``limit``."""
    rows = []
    for e in events:
        when = f"{e.time:%m-%d-%Y %H:%M:%S}" if e.time else "--"
        thread = e.line.thread if e.line is not None and e.line.thread is not None else ""
        rows.append(f"{when}  {thread:>5}  {e.line.message if e.line is not None else e.kind}")
    return "\n".join(rows[-limit:]) or "(no line names this client)"


__all__ = ["LogLine", "LogReader", "read_log", "parse_entry", "parse_text", "Event", "EVENT_PATTERNS", "GROUPS",
           "SOURCED", "decisive", "history_path", "compile_patterns", "match_event", "events",
           "client_events", "provisioned", "trace", "MAX_LINE"]
