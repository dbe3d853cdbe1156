"""What a check receives as ``facts``: the :class:`~pytest_vpro.facts.core.Core` of its target with one facet
per source of facts, and the process's :class:`FactsCache` of them."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..environment import Environment, Target
from .amt import AmtFacet
from .connect import Connector
from .console import ConsoleFacet
from .core import Core, key
from .dhcp import DhcpFacet
from .directory import DirectoryFacet
from .dns import DnsFacet, route_connections
from .hellos import HellosFacet
from .logs import LogsFacet
from .network import NetworkFacet
from .pki import PkiFacet
from .site import SiteFacet
from .vantage import VantageFacet
from .windows import WindowsFacet


class Facts(Core):
    """A target's facts, fetched once per run: ``facts.amt.power_policy()``, ``facts.directory.search(...)``.

    Each facet holds this core, so a fact that needs another source asks it (``facts.site.provisioning_status``
    reads the log through ``facts.logs`` and the ME through ``facts.amt``).
    """

    amt_negotiated = ""  # what the WS-MAN TLS session to this client used (facts.amt.tls)

    def __init__(self, target: Target, env: Environment, estate: "Facts | None" = None,
                 run_dir: Path | None = None) -> None:
        super().__init__(target, env, estate, run_dir)
        self.connect = Connector(self)
        self.amt = AmtFacet(self)
        self.console = ConsoleFacet(self)
        self.dns = DnsFacet(self)
        self.dhcp = DhcpFacet(self)
        self.directory = DirectoryFacet(self)
        self.windows = WindowsFacet(self)
        self.site = SiteFacet(self)
        self.logs = LogsFacet(self)
        self.network = NetworkFacet(self)
        self.pki = PkiFacet(self)
        self.hellos = HellosFacet(self)
        self.vantage = VantageFacet(self)

    def release_connections(self) -> None:
        """Close this client's own sessions (WS-MAN to its AMT, as the tool and as the console user; WinRM to its
        OS) and forget them: a later read opens them again. Facts already read stay. The engine calls it for a
        client no check is using, so that a fleet is not held open: AMT firmware serves few connections."""
        if self.target.kind != "client":
            return  # the site's and the servers' sessions are shared by every check
        for owner, name in ((self, key("amt", "session")), (self, key("console_amt", "session")),
                            (self.estate, key("winrm.session", self.target.name))):
            session = owner.forget(name)
            if session is not None and hasattr(session, "close"):
                session.close()


class FactsCache:
    """One :class:`Facts` per target per process. ``run_dir``: the run's folder (the plugin's; a worker's comes
    from the controller), where the run's disruptive actions are recorded."""

    recorder: Any = None  # snapshot.Recorder with --facts-out
    replay: Any = None    # snapshot.Replay with --facts-in

    def __init__(self, env: Environment, hellos: Any = None, run_dir: Path | None = None) -> None:
        self.env = env
        self._by_target: dict[str, Facts] = {}
        self._lock = threading.Lock()
        self._routed = False
        self.run_dir = run_dir
        self.estate = Facts(env.site, env, run_dir=run_dir)
        self.estate.hello_capture = hellos  # a HelloCapture (--hello-listen), or None

    def close(self) -> None:
        """Stop what this process started for the run (the hello listener)."""
        capture, self.estate.hello_capture = self.estate.hello_capture, None
        if capture is not None:
            capture.stop()

    def __call__(self, target: Target) -> Facts:
        with self._lock:
            if not self._routed:  # once per process, when the first check asks for facts
                route_connections(self.env)
                self.estate.connect.use_krb5_config()  # before any thread makes a Kerberos context
                self.estate.recorder, self.estate.replay = self.recorder, self.replay  # set by the plugin by now
                self._routed = True
            facts = self._by_target.get(target.key)
            if facts is None:
                facts = self.estate if target.key == self.env.site.key else Facts(target, self.env, self.estate)
                facts.recorder, facts.replay = self.recorder, self.replay
                self._by_target[target.key] = facts
            return facts
