"""The only state-changing calls pytest-vpro makes: power control, SOL/IDER sessions, un-provisioning.

Stage 4's power control and stage 7's un-provisioning go through Configuration Manager, as the console does: the
SMS Provider's ``SMS_Collection.AMTOperateForMachines(ResourceIDs[], Opcode)`` (CM2007 SDK; docs/protocols.md,
"Out of band operations"), called over WinRM as the console user, and their results are observed where they
land: the power state and provisioning state from AMT, ``AMTStatus`` from SCCM. Stage 5's power control and SOL/IDER
session talk to AMT directly, as the out of band management console does.

Guide: Stage 4 "perform power control operations. Verify that clients can be powered down correctly ... powered-up
correctly after the power down operation"; Stage 5 "Verify power control can be used to power down and power up
the client."; "Verify SOL / IDER can be used to display the client BIOS
console output and boot the client from an IDE image"; Stage 7 "use Delete provisioning data from the management
controller option to delete all data from Intel AMT memory".

Who may call them: the engine (``pytest_vpro/gating.py``) runs a catalog row marked ``disruptive: true`` only with
``--allow-disruptive`` and only on canaries, and holds a permit for that check and target while it runs
(``pytest_vpro/permits.py``); every function here asks for the permit first and raises :class:`NotPermitted`
before a byte is sent without one. Read-only code never imports this module: ``facts`` reads through
``AMT_READS``, the WinRM probe refuses every method but registry reads, and ``tests/lab/test_read_only.py`` proves
that a run without ``--allow-disruptive`` records no state-changing call anywhere in the lab.

What they did is recorded per target in the run's record (the permit names its file; facts read it back), which
every process of the run reads: the un-provisioned client's certificate serial (read before un-provisioning), the
outcome. A change that can be undone is undone (power back on, the IDE-R boot settings put back) and what could
not be is said.
"""
from __future__ import annotations

from ..permits import NotPermitted
from .common import (
    AMT_STATUS_PROVISIONED,
    DISCOVERY_BMC,
    FULL_UNPROVISION,
    OFF_STATES,
    OPCODE_NAMES,
    OPERATE_FOR_MACHINES,
    SHUTDOWN,
    SMS_COLLECTION,
    WAKE_UP,
)
from .power import PowerCycle, PowerStep, console_power_cycle, power_cycle
from .redirection import IDER_BOOT_SETTINGS, RedirectionResult, sol_ider_session
from .unprovision import unprovision

__all__ = ["AMT_STATUS_PROVISIONED", "DISCOVERY_BMC", "FULL_UNPROVISION", "IDER_BOOT_SETTINGS", "OFF_STATES",
           "OPCODE_NAMES", "OPERATE_FOR_MACHINES", "SHUTDOWN", "SMS_COLLECTION", "WAKE_UP", "NotPermitted",
           "PowerCycle", "PowerStep", "RedirectionResult", "console_power_cycle", "power_cycle", "sol_ider_session",
           "unprovision"]
