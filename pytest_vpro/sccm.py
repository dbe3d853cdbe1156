"""What Configuration Manager 2007 and the ME hold about a client's provisioning, weighed before its log lines.

Authoritative first (docs/protocols.md, "Configuration Manager 2007"):

* ``SMS_R_System.AMTStatus``, the site's own record, set when the site provisions a client or discovers its
  management controller: null unknown, 0 not supported, 1 detected, 2 not provisioned, 3 provisioned;
* ``SMS_G_System_AMT_AGENT.ProvisionState``, the hardware inventory of in-band clients (the site's copy of the
  agent's ``SMS_AMTObject``): 0 factory setup mode (not provisioned), 1 setup mode (being provisioned),
  2 operational mode (provisioned);
* ``AMT_SetupAndConfigurationService.ProvisioningState``, the ME itself: 0 pre, 1 in, 2 post-provisioning.

AMTOPMGR.LOG and its rotated history (``.lo_``) are evidence, and the source only for what the log alone shows
(a hello's retry count, a failure's reason). A line whose wording has no public source proves nothing by its
absence (:func:`pytest_vpro.probes.cmlog.decisive`): the checks then judge from the state above, or say that they
cannot decide.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .probes import cmlog
from .probes.errors import ProbeError, Undecided

#: SMS_R_System.AMTStatus (ConfigMgr 2007 SP1+, "About the AMT Status and Out of Band Management"); null: unknown.
AMT_STATUS = {0: "not supported", 1: "detected", 2: "not provisioned", 3: "provisioned"}
NOT_SUPPORTED, DETECTED, NOT_PROVISIONED, PROVISIONED = 0, 1, 2, 3
#: The hardware inventory class of SMS_AMTObject on the site server, and its ProvisionState values.
INVENTORY_CLASS = "SMS_G_System_AMT_AGENT"
PROVISION_STATE = {0: "factory setup mode, not provisioned", 1: "setup mode, being provisioned",
                   2: "operational mode, provisioned"}
ME_POST_PROVISIONING = 2  # AMT_SetupAndConfigurationService.ProvisioningState


def as_int(value: Any) -> int | None:
    """A WMI integer property as an int; None for null, empty or not a number."""
    try:
        return None if value is None or value == "" else int(str(value).strip())
    except ValueError:
        return None


def amt_status_text(value: int | None) -> str:
    """``SMS_R_System.AMTStatus 3 (provisioned)``; null is the documented "unknown"."""
    if value is None:
        return "SMS_R_System.AMTStatus null (unknown)"
    return f"SMS_R_System.AMTStatus {value} ({AMT_STATUS.get(value, 'not a documented value')})"


def when(event: cmlog.Event) -> str:
    return f"{event.time:%Y-%m-%d %H:%M:%S}" if event.time else "(no time)"


@dataclass
class ProvisioningStatus:
    """One client's provisioning as the site (SMS_R_System, the inventory), the ME and AMTOPMGR.LOG show it."""

    resource: dict[str, Any] | None        # SMS_R_System, None: the site has no resource for the client
    inventory: dict[str, Any] | None       # SMS_G_System_AMT_AGENT (in-band clients), None: none read
    events: list[cmlog.Event]              # AMTOPMGR.LOG events naming the client, current file and history
    decisive: Callable[[str], bool]        # does a missing line of this event mean it did not happen?
    read_me: Callable[[], Any]             # the ME's AMT_SetupAndConfigurationService (probes.amt.Provisioning)
    _me: Any = field(default=None, repr=False)

    @property
    def amt_status(self) -> int | None:
        return as_int((self.resource or {}).get("AMTStatus"))

    @property
    def inventory_state(self) -> int | None:
        return as_int((self.inventory or {}).get("ProvisionState"))

    def me(self) -> Any:
        """The ME's provisioning state (``.state``, ``.state_name``), or the ProbeError that kept it from answering."""
        if self._me is None:
            try:
                self._me = self.read_me()
            except ProbeError as exc:
                self._me = exc
        if isinstance(self._me, Undecided):  # a detail with no public source did not fit: the check cannot decide
            raise self._me
        return self._me

    def me_state(self) -> int | None:
        me = self.me()
        return None if isinstance(me, ProbeError) else me.state

    def log(self, *kinds: str) -> list[cmlog.Event]:
        return [e for e in self.events if e.kind in kinds]

    # -- verdicts shared by the checks --
    def by_site(self) -> str | None:
        """Why the site counts as having provisioned the client (AMTStatus 3, else its log's completed second
        stage not undone since), or None."""
        if self.amt_status == PROVISIONED:
            return amt_status_text(PROVISIONED)
        done = cmlog.provisioned(self.events)
        return f"AMTOPMGR.LOG: second stage provisioning completed {when(done)}" if done else None

    def me_provisioned(self) -> str | None:
        """Why the ME counts as provisioned, by anyone (its own ProvisioningState, else the inventory's), or None."""
        if self.me_state() == ME_POST_PROVISIONING:
            return "the ME is post-provisioning (ProvisioningState 2)"
        if self.inventory_state == 2:
            return f"{INVENTORY_CLASS}.ProvisionState 2 ({PROVISION_STATE[2]})"
        return None

    def elsewhere(self) -> str | None:
        """Why the ME counts as provisioned by someone other than this site, or None: SCCM's AMTStatus 1
        ("detected": provisioned outside Configuration Manager, credentials unknown), or a provisioned ME the
        site does not count as its own."""
        if self.by_site():
            return None
        if self.amt_status == DETECTED:
            return f"{amt_status_text(DETECTED)}: provisioned outside the site, with credentials it does not know"
        me = self.me_provisioned()
        return f"{me}, while the site reports {amt_status_text(self.amt_status)}" if me else None

    def state_text(self) -> str:
        """What SCCM and the ME say, for a finding: ``SMS_R_System.AMTStatus 2 (not provisioned), the ME ...``."""
        parts = [amt_status_text(self.amt_status) if self.resource is not None else "no SMS_R_System resource"]
        if self.inventory_state is not None:
            parts.append(f"{INVENTORY_CLASS}.ProvisionState {self.inventory_state}")
        me = self._me
        if me is not None and not isinstance(me, ProbeError):
            parts.append(f"the ME {me.state_name} (ProvisioningState {me.state})")
        return ", ".join(parts)

    def attach(self, evidence: Any) -> None:
        """The site's record, the ME's state (if read) and the client's log lines, as a check's evidence."""
        me = self._me
        evidence.attach("provisioning state", {
            "SMS_R_System.AMTStatus": self.amt_status if self.resource is not None else "no resource",
            f"{INVENTORY_CLASS}.ProvisionState": self.inventory_state,
            "AMT ProvisioningState": (f"not read: {me}" if isinstance(me, ProbeError) else
                                      None if me is None else me.state)})
        evidence.attach("AMTOPMGR.LOG and its history (.lo_)", cmlog.trace(self.events))


__all__ = ["AMT_STATUS", "PROVISIONED", "DETECTED", "NOT_PROVISIONED", "NOT_SUPPORTED", "INVENTORY_CLASS",
           "PROVISION_STATE", "ProvisioningStatus", "amt_status_text", "as_int", "when"]
