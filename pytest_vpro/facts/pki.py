"""The provisioning certificate as the out of band service point holds it (the thumbprint the site selected, the
certificate and its chain from the service point's certificate stores), and the certificate files the environment
names (``pki.provisioning_chain``, ``pki.trusted_roots``), the exported file being only a fallback."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from ..probes import x509 as x509_probe
from ..probes.errors import ProbeError, Undecided
from .core import key

if TYPE_CHECKING:
    from . import Facts

#: The site control file's component of the out of band service point (docs/protocols.md, "The provisioning
#: certificate the site selected").
OOB_COMPONENT = "SMS_AMT_OPERATION_MANAGER"
#: AMTOPMGR.LOG events whose real wording quotes the thumbprint of the provisioning certificate in use
#: (probes/cmlog.py SOURCED): the expiry warning ("<thumbprint> will expire in N day(s)") and its unloading.
THUMBPRINT_EVENTS = ("provisioning_certificate_expiring", "provisioning_certificate_unloaded")
#: The stores Windows builds the chain from: the certificate itself in Personal, its issuers in Intermediate and
#: Trusted Root Certification Authorities (each the union of its physical stores: facts.windows.certificate_store).
STORES = ("MY", "CA", "ROOT")


class SelectionUnknown(Undecided):
    """Neither the site's selection (its record has no public source) nor an exported file says which provisioning
    certificate to judge: a check cannot decide, and must not fail the target on it."""


@dataclass(frozen=True)
class ProvisioningCertificate:
    """The provisioning certificate a check judges, and where it comes from.

    ``chain``: leaf first, then its issuers as found. ``held``: True when read from the service point's own
    stores (the estate), False when it is the exported file ``pki.provisioning_chain`` (the fallback).
    ``thumbprint``: the SHA-1 thumbprint the site selected, '' when the site's selection could not be read;
    ``selected_by``: where that thumbprint was read. ``note``: why the fallback was taken (empty when held)."""

    chain: list[x509.Certificate]
    held: bool
    server: str
    thumbprint: str = ""
    selected_by: str = ""
    note: str = ""
    origins: dict[str, list[str]] = field(default_factory=dict)  # thumbprint -> physical stores holding it

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def where(self) -> str:
        """One phrase for a finding: whose certificate this is, and if it is the fallback, why."""
        if self.held:
            how = f" (selected by {self.selected_by})" if self.selected_by else ""
            return f"the provisioning certificate in {self.server}'s Personal store{how}"
        return f"the exported file pki.provisioning_chain (fallback: {self.note})"

    def evidence(self) -> dict[str, Any]:
        return {"read from": self.where, "selected thumbprint": self.thumbprint or "unknown",
                "chain": [{**x509_probe.summary(c), "found in": self.origins.get(
                    x509_probe.fingerprint(c, "sha1").upper(), ["the exported file"] if not self.held else [])}
                          for c in self.chain]}


class PkiFacet:
    """``facts.pki``: the provisioning certificate the site holds, and the certificates the environment file
    points at."""

    def __init__(self, facts: "Facts") -> None:
        self.facts = facts

    def provisioning_certificate(self) -> ProvisioningCertificate:
        """The provisioning certificate as the out of band service point holds it and as the site selected it.

        The thumbprint: the site control file's out of band component (``SMS_SCI_Component``
        ``SMS_AMT_OPERATION_MANAGER``, property ``expected.provisioning_certificate_property``: the name has no
        public source), else the last AMTOPMGR.LOG line that quotes it (the sourced expiry warning), else the
        exported file's own thumbprint. The certificate: that thumbprint in the service point's Personal store
        (``HKLM\\...\\SystemCertificates\\MY\\Certificates\\<thumbprint>\\Blob`` and the other physical stores,
        over WinRM); its chain built from the service point's Personal, Intermediate and Trusted Root stores.
        When the stores cannot be read or do not hold it, the exported file ``pki.provisioning_chain`` stands in,
        and :attr:`ProvisioningCertificate.where` says so. A :class:`ProbeError` when neither is available.

        Not a fact of its own: worked out from the facts it reads (each read once per run and recorded), so a
        snapshot replays it from those."""
        return self._held()

    def selected_thumbprint(self) -> tuple[str, str]:
        """(the provisioning certificate's thumbprint the site selected, where it was read), or ('', why not)."""
        facts = self.facts
        name = facts.env.expected["provisioning_certificate_property"]
        why = []
        try:
            props = {p.get("PropertyName"): p for c in facts.site.wmi("SMS_SCI_Component")
                     if c.get("ComponentName") == OOB_COMPONENT for p in c.get("Props") or []}
            value = normalise((props.get(name) or {}).get("Value1"))
            if value:
                return value, f"the site control property {name!r} of {OOB_COMPONENT}"
            why.append(f"no property {name!r} in {OOB_COMPONENT} (a name with no public source: "
                       "expected.provisioning_certificate_property)")
        except ProbeError as exc:
            why.append(f"the site control file could not be read ({exc})")
        try:
            logged = [e for es in facts.logs.site_events().values() for e in es if e.kind in THUMBPRINT_EVENTS]
            logged.sort(key=lambda e: (e.time is None, e.time.timestamp() if e.time else 0))
            for e in reversed(logged):
                value = normalise((e.reason or "")[:40])
                if len(value) == 40:
                    when = f" of {e.time:%Y-%m-%d %H:%M}" if e.time else ""
                    return value, f"the AMTOPMGR.LOG line{when} that quotes it"
            why.append("no AMTOPMGR.LOG line quotes it")
        except ProbeError as exc:
            why.append(f"AMTOPMGR.LOG could not be read ({exc})")
        return "", "; ".join(why)

    def _held(self) -> ProvisioningCertificate:
        facts = self.facts
        server = facts.server("oob_service_point")
        thumbprint, selected_by = self.selected_thumbprint()
        try:
            stores = {name: facts.windows.certificate_store(server, name) for name in STORES}
            origins: dict[str, list[str]] = {}
            for name in STORES:
                for t, where in facts.windows.certificate_store_origins(server, name).items():
                    origins.setdefault(t, []).extend(where)
        except ProbeError as exc:
            return self._fallback(server.name, thumbprint, selected_by,
                                  f"{server.name}'s certificate stores could not be read ({exc})")
        if not thumbprint:  # the site's selection is unknown: the exported certificate, if the service point has it
            exported = self._exported_thumbprint()
            if exported and isinstance(stores["MY"].get(exported), x509.Certificate):
                thumbprint, selected_by = exported, f"the exported file's thumbprint, as {selected_by}"
            else:
                return self._fallback(server.name, "", "", f"the site's selection could not be read: {selected_by}")
        leaf = stores["MY"].get(thumbprint)
        if not isinstance(leaf, x509.Certificate):
            held = "a Blob that does not parse" if isinstance(leaf, ValueError) else "nothing"
            return self._fallback(server.name, thumbprint, selected_by,
                                  f"{server.name}'s Personal store holds {held} under the selected thumbprint "
                                  f"{thumbprint} ({selected_by})")
        pool = [c for name in STORES for t, c in stores[name].items()
                if isinstance(c, x509.Certificate) and t != thumbprint]
        return ProvisioningCertificate(chain=x509_probe.build_chain(leaf, pool), held=True, server=server.name,
                                       thumbprint=thumbprint, selected_by=selected_by, origins=origins)

    def _fallback(self, server: str, thumbprint: str, selected_by: str, why: str) -> ProvisioningCertificate:
        """The exported file in place of the certificate the service point holds; a ProbeError naming ``why``
        when there is no such file, or when the site selected a different certificate (judging the file would
        judge a certificate the site does not use)."""
        try:
            chain = self.provisioning_chain()
        except (ProbeError, OSError, ValueError) as exc:
            error = ProbeError if thumbprint else SelectionUnknown
            raise error(f"{why}, and the exported file pki.provisioning_chain cannot stand in ({exc})") from exc
        exported = x509_probe.fingerprint(chain[0], "sha1").upper()
        if thumbprint and thumbprint != exported:
            raise ProbeError(f"{why}; the exported file pki.provisioning_chain is another certificate ({exported}), "
                             "so it cannot stand in")
        return ProvisioningCertificate(chain=chain, held=False, server=server, thumbprint=thumbprint,
                                       selected_by=selected_by, note=why)

    def _exported_thumbprint(self) -> str:
        try:
            return x509_probe.fingerprint(self.provisioning_chain()[0], "sha1").upper()
        except (ProbeError, OSError, ValueError):
            return ""

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


def normalise(thumbprint: object) -> str:
    """A thumbprint as the stores name it: upper-case hex, without the spaces the MMC shows."""
    return "".join(str(thumbprint or "").split()).upper()
