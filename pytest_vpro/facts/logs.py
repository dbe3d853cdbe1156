"""Configuration Manager's logs over SMB: the out of band service point's AMTOPMGR.LOG (and its rolled-over
history), as events per client, and an in-band client's own OOBMGMT.LOG."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Iterator

from ..probes import cmlog
from ..probes.smb import FileMissing
from .core import key

if TYPE_CHECKING:
    from . import Facts

_FRESH_LOG_LOCK = threading.Lock()


class LogsFacet:
    """``facts.logs``: log files read with ``credentials.smb``."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def site_events(self, fresh: bool = False) -> dict[str, list]:
        """The out of band service point's ``AMTOPMGR.LOG`` and its rolled-over history (``AMTOPMGR.lo_``, read
        first, if there is one) read once over SMB, as events per client key.

        The server with the ``oob_service_point`` role names ``log_share`` (default ``SMS_<code>``),
        ``log_path`` (default ``Logs/AMTOPMGR.LOG``) and optionally ``smb_host`` (where the share is served,
        default the server itself). :meth:`client_events` picks a client's.
        ``fresh``: read it again now (after an action of this run wrote to it), not the run's first read.
        """
        facts = self.facts
        server = facts.server("oob_service_point")
        share = server.extra.get("log_share") or f"SMS_{facts.env.site.code}"
        path = server.extra.get("log_path") or "Logs/AMTOPMGR.LOG"
        host = server.extra.get("smb_host") or server.name

        def read() -> dict[str, list]:
            return cmlog.events(self._read_with_history(host, share, path), facts.env.log_patterns)
        if fresh:
            facts.estate.note(key("log", "amtopmgr"))
            with _FRESH_LOG_LOCK:  # one SMB read at a time: smbclient's pooled session runs out of credits
                return read()
        return facts.estate.per_host(host, key("log", "amtopmgr"), read)

    def client_events(self) -> list:
        """This client's AMTOPMGR.LOG events (:func:`pytest_vpro.probes.cmlog.client_events` by FQDN, UUID and
        address), in time order."""
        facts = self.facts
        t = facts.target
        events = self.site_events()
        return cmlog.client_events(events, fqdn=t.name, uuid=getattr(t, "uuid", None),
                                   ip=getattr(t, "address", None),
                                   index=facts.derived("log.amtopmgr.by_name", events, cmlog.index_by_name))

    def client_lines(self, path: str = "Windows/System32/CCM/Logs/OOBMGMT.LOG", share: str = "C$") -> list:
        """This in-band client's own Configuration Manager log (default ``OOBMGMT.LOG``) after its rolled-over
        history (``OOBMGMT.lo_``, if any), as parsed lines."""
        host = self.facts.target.name
        return self.facts.per_host(host, key("log", share, path),
                                   lambda: list(self._read_with_history(host, share, path)))

    def _read_with_history(self, host: str, share: str, path: str) -> Iterator[Any]:
        """The lines of ``path``'s history file (``.lo_``), if it has one, then of ``path`` itself."""
        try:
            yield from self._read(host, share, cmlog.history_path(path))
        except FileMissing:
            pass  # the log has not rolled over yet
        yield from self._read(host, share, path)

    def _read(self, host: str, share: str, path: str) -> Iterator[Any]:
        with self.facts.connect.smb_open(host, share, path) as f:
            yield from cmlog.LogReader(f)
