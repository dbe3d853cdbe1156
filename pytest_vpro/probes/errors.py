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


def too_late(host: str, port: int | None, seconds: float, interrupted: bool = False) -> Unreachable:
    """The :class:`Unreachable` of an exchange cut at its deadline (or abandoned when the run was interrupted)."""
    where = f"{host}:{port}" if port else host
    how = "interrupted" if interrupted else f"no complete answer within {seconds:g} s"
    exc = Unreachable(host, port, seconds, how)
    exc.args = (f"the exchange with {where} was abandoned: the run was interrupted" if interrupted
                else f"{where} gave no complete answer within {seconds:g} s (connect and whole reply)",)
    return exc


class MalformedReply(ProbeError):
    """The target answered, but not in the protocol's form."""


class ReplyTooLarge(MalformedReply):
    """The target's reply is larger than the probe accepts; it was refused before it filled memory."""


class Redirected(ProbeError):
    """The target answered with an HTTP redirect. Redirects are never followed: credentials go only to the host
    the environment names, and a device that sends its client elsewhere is a finding in itself."""

    def __init__(self, url: str, status: int, location: str) -> None:
        where = location or "(no Location header)"
        super().__init__(f"{url} answered HTTP {status}, redirecting to {where}; redirects are not followed")
        self.url, self.status, self.location = url, status, location


class Undecided(ProbeError):
    """The fact depends on a wire detail no public source gives (docs/protocols.md lists them; each is a setting),
    and that detail did not fit this target: the check cannot decide. The engine reports it visibly, as skipped
    with "cannot decide", and it does not close the stage gate."""
