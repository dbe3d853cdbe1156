"""The lab's names and shared types: what the estate (``estate.py`` its description, ``builder.py`` its build) and
its faults (``faults/``) all use.

One way only: ``estate`` and ``builder`` import ``faults``, all import this module, and this module imports none.
"""
from __future__ import annotations

from dataclasses import dataclass

DOMAIN, REALM, NETBIOS, SITE_CODE = "vprolab.test", "VPROLAB.TEST", "VPROLAB", "LAB"
HOSTS = {"dc": "dc01", "site_server": "sccm01", "ca": "ca01", "dhcp": "dhcp01", "console": "console01"}
CONSOLE_USER = "amtadmin"
OPERATORS_GROUP = "AMT Administrators"  # the console user's group, holding the out of band rights
AMT_USER = "admin"
SITE_SERVER_ACCOUNT = "SCCM01$"
SYSTEM_CERTIFICATES = r"SOFTWARE\Microsoft\SystemCertificates"  # HKLM\...\<store>\Certificates\<SHA-1>\Blob
CONFIGURATION_DN = "CN=Configuration," + ",".join(f"DC={p}" for p in DOMAIN.split("."))
#: ``era``: "modern" (the default), or "2009", the estate of the guide's time (docs/lab.md "A lab of 2009").
ERAS = ("modern", "2009")
#: The firmware of a 2009 estate, client by client in turn (AMT 3.2.1 the first Configuration Manager 2007 could
#: manage natively, then 4.x and 5.x desktops and laptops).
ERA_2009_AMT_VERSIONS = ("3.2.1", "4.1.3", "5.0.20")


class DescriptionError(ValueError):
    pass


@dataclass
class ClientPlan:
    index: int
    fqdn: str
    address: str
    uuid: str
    provisioning: str
    canary: bool
    provisioned: bool
    wireless_address: str = ""  # a laptop's wireless address (the environment marks it wireless: true)
    ieee8021x: bool = False     # on an 802.1X authenticated wired network (the environment marks it)
