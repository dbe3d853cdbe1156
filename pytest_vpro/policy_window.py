"""When the automatic in-band provisioning setting reached a client's collection, and when the client's agent
last asked for machine policy: the in-band half of S2-SUFFICIENT-TIME-TO-REQUEST-PROVISIONING.

The guide: "when using SCCM in-band provisioning SCCM agents may take up to 25-hours to recognize the automatic
in-band provisioning setting". The clock starts when the setting could first reach the client: the later of the
collection's ``SMS_CollectionSettings.LastModificationTime`` (the setting changed) and its
``SMS_Collection.LastMemberChangeTime`` (its membership changed, as when the client joined it); of several such
collections, the earliest. The agent's last machine policy request is ``CCM_Scheduler_History.LastTriggerTime`` of
the schedule ``{00000000-0000-0000-0000-000000000021}`` (Machine Policy Assignments Request) in
``root\\CCM\\Scheduler``; its polling interval (``CCM_PolicyAgent_Configuration.PolicyRequestAssignmentTimeout``,
minutes) is shown, never judged. Sources: docs/protocols.md, "The in-band provisioning window".
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable

from .probes.errors import Undecided
from .probes.winrm import cim_datetime

POLICY_WINDOW_H = 25  # the guide: "SCCM agents may take up to 25-hours to recognize the ... setting"
AUTO_PROVISION_PROPERTY = "AMTAutoProvisionEnabled"   # SMS_CollectionSettings (CM2007 SDK cc146203)
SETTINGS_MODIFIED = "LastModificationTime"            # SMS_CollectionSettings
MEMBER_CHANGED, REFRESHED = "LastMemberChangeTime", "LastRefreshTime"  # SMS_Collection (CM2007 SDK cc145320)
SCHEDULER_NAMESPACE, SCHEDULER_HISTORY = "root/ccm/Scheduler", "CCM_Scheduler_History"  # CM2007 SDK cc144694
MACHINE_POLICY_REQUEST = "{00000000-0000-0000-0000-000000000021}"  # "Machine Policy Assignments Request", cc146704
POLICY_AGENT_NAMESPACE = "root/ccm/policy/machine/actualconfig"    # CM2007 SDK cc146098
POLICY_AGENT_CLASS, POLLING_PROPERTY = "CCM_PolicyAgent_Configuration", "PolicyRequestAssignmentTimeout"
SCHEDULER_QUERY = f'SELECT * FROM {SCHEDULER_HISTORY} WHERE ScheduleID = "{MACHINE_POLICY_REQUEST}"'


def wmi_time(value: Any) -> dt.datetime | None:
    """A WMI datetime (already a datetime, or CIM ``yyyymmddHHMMSS.mmmmmmsUUU`` / xs:dateTime text) as an aware
    datetime; None when absent, unparsable or without a UTC offset."""
    if isinstance(value, str) and value.strip():
        value = cim_datetime(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value
    return None


def text(when: dt.datetime | None) -> str:
    return f"{when.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC" if when else "unknown"


@dataclass
class Window:
    """The start of one collection's 25-hour window: ``start`` is the later of its two times."""

    collection: str          # "Name (CollectionID)"
    settings_modified: dt.datetime
    member_changed: dt.datetime
    refreshed: dt.datetime | None

    @property
    def start(self) -> dt.datetime:
        return max(self.settings_modified, self.member_changed)

    def hours(self, now: dt.datetime) -> float:
        return (now - self.start).total_seconds() / 3600

    def summary(self) -> dict[str, str]:
        return {"collection": self.collection, f"SMS_CollectionSettings.{SETTINGS_MODIFIED}":
                text(self.settings_modified), f"SMS_Collection.{MEMBER_CHANGED}": text(self.member_changed),
                f"SMS_Collection.{REFRESHED}": text(self.refreshed), "window start": text(self.start)}


def window(collections: Iterable[dict[str, Any]]) -> Window | None:
    """The earliest window of the client's collections with automatic provisioning enabled (``facts.site.
    collections()`` rows with ``member`` and ``auto_provision``); None if it is in none. Undecided if one of
    their times cannot be read: the window's start would be a guess."""
    found = []
    for c in collections:
        if not (c.get("member") and c.get("auto_provision")):
            continue
        name = f"{c.get('name') or c['id']} ({c['id']})"
        settings, collection = c.get("settings") or {}, c.get("collection") or {}
        modified, changed = wmi_time(settings.get(SETTINGS_MODIFIED)), wmi_time(collection.get(MEMBER_CHANGED))
        if modified is None or changed is None:
            missing = [p for p, v in ((f"SMS_CollectionSettings.{SETTINGS_MODIFIED}", modified),
                                      (f"SMS_Collection.{MEMBER_CHANGED}", changed)) if v is None]
            raise Undecided(f"collection {name}: {' and '.join(missing)} not readable (got "
                            f"{settings.get(SETTINGS_MODIFIED)!r}, {collection.get(MEMBER_CHANGED)!r}): when "
                            "automatic provisioning reached the client is unknown")
        found.append(Window(name, modified, changed, wmi_time(collection.get(REFRESHED))))
    return min(found, key=lambda w: w.start, default=None)


def last_request(history: Iterable[dict[str, Any]]) -> dt.datetime | None:
    """The latest ``LastTriggerTime`` of the machine policy request schedule in ``CCM_Scheduler_History`` rows;
    None if no row is that schedule's. Undecided if one of its times cannot be read: "never requested" would be a
    guess."""
    rows = [h for h in history if str(h.get("ScheduleID", "")).strip().upper() == MACHINE_POLICY_REQUEST]
    times = [wmi_time(h.get("LastTriggerTime")) for h in rows]
    if any(t is None for t in times):
        bad = next(h.get("LastTriggerTime") for h, t in zip(rows, times) if t is None)
        raise Undecided(f"CCM_Scheduler_History {MACHINE_POLICY_REQUEST}.LastTriggerTime {bad!r} is not a WMI "
                        "datetime with its offset: when the agent last requested machine policy is unknown")
    return max(times, default=None)


__all__ = ["POLICY_WINDOW_H", "AUTO_PROVISION_PROPERTY", "MACHINE_POLICY_REQUEST", "SCHEDULER_NAMESPACE",
           "SCHEDULER_HISTORY", "SCHEDULER_QUERY", "POLICY_AGENT_NAMESPACE", "POLICY_AGENT_CLASS", "POLLING_PROPERTY",
           "Window", "window", "last_request", "wmi_time", "text"]
