"""The lab estate as data: its description, and the plan of its clients.

A description (``environments/lab.yaml``, section ``lab:``) says how many
clients, which of them are in-band, canary or still un-provisioned, the
latency of the simulated firmware and the faults to plant (checked here,
against the client plan). :func:`pytest_vpro.lab.builder.build` turns it into
running servers. A healthy estate and a broken one differ only in the
description.

This side imports no simulator (no aiohttp): ``vpro-lab`` and a run load it
without the [lab] extra, so they can say what to install instead of a traceback.
"""
from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import faults
from .addresses import AddressPlan
from .names import DOMAIN, ERA_2009_AMT_VERSIONS, ERAS, ClientPlan, DescriptionError


@dataclass
class Description:
    clients: int = 24
    in_band_every: int = 4
    canaries: int = 2
    unprovisioned: int = 0
    latency_ms: float = 0.0
    net: int = 77
    amt_version: str = "6.2.10"
    state_dir: str = ".lab"
    dhcp_port: int = 67  # 0: any free UDP port, so several labs (tests) can run beside each other
    era: str = "modern"  # or "2009": SHA-1 PKI with ldap:/// locations first, AMT 3.2.1/4.x/5.x speaking TLS 1.0
    #: False: the service point's simulator leaves TCP 9971 on its address free for the run's own listener
    #: (``--hello-listen <service point>:9971``, as a run on that host would listen), which then hears the hellos
    #: the devices send there; the site logs none of them (AMTOPMGR.LOG keeps what it was planted with)
    site_hears_hellos: bool = True
    faults: list[dict[str, Any]] = field(default_factory=list)

    def client_name(self, index: int) -> str:
        return f"pc{index + 1:04d}"

    @property
    def of_2009(self) -> bool:
        return self.era == "2009"

    def amt_version_of(self, index: int) -> str:
        """Client ``index``'s firmware: ``amt_version``, or in a 2009 estate 3.2.1, 4.x and 5.x in turn."""
        return ERA_2009_AMT_VERSIONS[index % len(ERA_2009_AMT_VERSIONS)] if self.of_2009 else self.amt_version

    @property
    def signature_hash(self) -> str:
        return "sha1" if self.of_2009 else "sha256"


def load_description(path: Path) -> tuple[Description, Path]:
    """Read the ``lab:`` section of a lab environment file; returns it and the state folder (absolute)."""
    data = yaml.safe_load(path.read_text()) or {}
    lab = data.get("lab")
    if not isinstance(lab, dict):
        raise DescriptionError(f"{path}: a lab description needs a 'lab:' mapping")
    known = set(Description.__dataclass_fields__)
    unknown = sorted(set(lab) - known)
    if unknown:
        raise DescriptionError(f"{path}: lab: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    desc = Description(**lab)
    desc.era = str(desc.era)  # YAML reads era: 2009 as a number
    if desc.era not in ERAS:
        raise DescriptionError(f"{path}: lab.era must be one of {', '.join(ERAS)}, found {desc.era!r}")
    if not 1 <= desc.clients <= 50_000:
        raise DescriptionError(f"{path}: lab.clients must be between 1 and 50000, found {desc.clients}")
    try:
        plant_faults(desc, plan_clients(desc, AddressPlan(desc.net)))
    except DescriptionError as exc:
        raise DescriptionError(f"{path}: {exc}") from None
    state = Path(desc.state_dir).expanduser()
    if state.is_absolute():
        return desc, state.resolve()
    if INSTALLED_PACKAGE_DIRS & set(path.resolve().parts):  # the lab.yaml that ships in an installed package:
        return desc, (Path.cwd() / ".lab").resolve()          # its state is the user's, in ./.lab, not in the install
    return desc, (path.parent / state).resolve()


INSTALLED_PACKAGE_DIRS = {"site-packages", "dist-packages"}


def is_lab_description(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "lab" in data and "site" not in data


def plan_clients(desc: Description, plan: AddressPlan) -> list[ClientPlan]:
    out = []
    for i in range(desc.clients):
        name = desc.client_name(i)
        out.append(ClientPlan(
            index=i, fqdn=f"{name}.{DOMAIN}", address=plan.client(i),
            uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{name}.{DOMAIN}")),
            provisioning="in_band" if desc.in_band_every and (i + 1) % desc.in_band_every == 0 else "out_of_band",
            canary=i < desc.canaries, provisioned=i < desc.clients - desc.unprovisioned))
    return out


def plant_faults(desc: Description, clients: list[ClientPlan]):
    """The description's faults, checked against the client plan (:mod:`pytest_vpro.lab.faults`)."""
    return faults.parse(desc.faults, clients)


__all__ = ["Description", "DescriptionError", "INSTALLED_PACKAGE_DIRS", "is_lab_description", "load_description",
           "plan_clients", "plant_faults"]
