"""``facts.network`` for unit tests of the port checks: a fixed verdict per port (default open), seen from this
machine (198.51.100.7). The lab proves the same checks against real listeners (tests/lab/test_vantage.py)."""
from __future__ import annotations

from pytest_vpro.probes.net import PortState


class Network:
    def __init__(self, verdicts: dict[int, str]):
        self.verdicts = verdicts

    def ports(self, host, ports):
        return [PortState(host, p, self.verdicts.get(p, "open"), 0.005, host) for p in ports]

    def vantage(self, host):
        return "from this machine (198.51.100.7)"
