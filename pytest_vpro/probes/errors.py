"""Errors every probe raises: a target that cannot be asked is a finding, not a crash."""
from __future__ import annotations


class ProbeError(Exception):
    """A fact could not be read. ``str()`` is a complete sentence for a report."""


class Unreachable(ProbeError):
    """No answer (timeout, refused, reset). The first one for a host is remembered for the run."""

    def __init__(self, host: str, port: int | None, timeout: float | None, how: str = "no answer") -> None:
        where = f"{host}:{port}" if port else host
        within = f" within {timeout:g} s" if timeout and how == "no answer" else ""
        super().__init__(f"{how} from {where}{within}")
        self.host, self.port, self.timeout, self.how = host, port, timeout, how


class MalformedReply(ProbeError):
    """The target answered, but not in the protocol's form."""
