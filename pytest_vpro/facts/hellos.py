"""Provisioning requests (stages 2 and 3): what the run's passive hello listener (``--hello-listen``) heard."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..probes.errors import ProbeError
from .core import key

if TYPE_CHECKING:
    from . import Facts


class HellosFacet:
    """``facts.hellos``: this client's hellos, by UUID, else source address."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def listener(self) -> Any:
        """The run's :class:`~pytest_vpro.probes.hello_listener.HelloCapture` (where it listens, until when), or
        None without ``--hello-listen``."""
        return self.facts.estate.hello_capture

    def heard(self) -> list | None:
        """Hellos the run's passive listener received from this client, oldest first, waiting for one until the
        listener's deadline (:mod:`pytest_vpro.probes.hello_listener`); None when the run listens for no hellos
        (``--hello-listen`` not given): the checks then read AMTOPMGR.LOG."""
        capture = self.listener()
        if capture is None:
            return None
        t = self.facts.target

        def heard() -> list:
            return capture.seen(getattr(t, "uuid", None), self._address())
        return self.facts.get(key("hellos"), heard)

    def noise(self) -> list:
        """What this client's address sent the hello listener that is not a hello (evidence, never a hello); []
        without a listener or an address."""
        capture = self.listener()
        if capture is None:
            return []
        address = self._address()
        return capture.malformed(address) if address else []

    def _address(self) -> str | None:
        try:
            return self.facts.dns.address()
        except ProbeError:
            return None
