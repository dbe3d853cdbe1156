"""Certificate files the environment names (``pki.provisioning_chain``, ``pki.trusted_roots``)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..probes import x509 as x509_probe
from ..probes.errors import ProbeError
from .core import key

if TYPE_CHECKING:
    from . import Facts


class PkiFacet:
    """``facts.pki``: the certificates the environment file points at."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def provisioning_chain(self) -> list:
        """The provisioning certificate and its chain, as exported to ``pki.provisioning_chain``."""
        return self.facts.get(key("pki", "provisioning_chain"), lambda: self._load("provisioning_chain"))

    def trusted_roots(self) -> list:
        """The certificates of the environment's ``pki.trusted_roots`` file (the estate's trust anchors)."""
        return self.facts.estate.get(key("pki", "trusted_roots"), lambda: self._load("trusted_roots"))

    def _load(self, name: str) -> list[Any]:
        path = self.facts.env.pki.get(name)
        if not path:
            raise ProbeError(f"the environment file names no pki.{name}")
        return x509_probe.load_chain(Path(path).read_bytes())
