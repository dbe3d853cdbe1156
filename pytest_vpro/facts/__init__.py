"""A target's facts, fetched once per run and shared by its checks, one facet per source (in the style of
pytest-testinfra's one module per resource):

* :mod:`.core`: the cache, per-host error memory, derived indexes, snapshot recording and replay, :func:`key`;
* :mod:`.connect`: credentials into sessions, once;
* facets: :mod:`.amt` (``facts.amt``), :mod:`.console` (``facts.console``, with ``facts.console.amt``),
  :mod:`.dns`, :mod:`.dhcp`, :mod:`.directory`, :mod:`.windows`, :mod:`.site`, :mod:`.logs`, :mod:`.network`,
  :mod:`.pki`, :mod:`.hellos`, :mod:`.vantage` (the network seen from a server with ``testinfra:``);
* :mod:`.cache`: :class:`Facts` (a core with its facets) and :class:`FactsCache` (one per target per process).

docs/writing-checks.md lists every facet method a check may call.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core import Core, key, run_record, run_record_path

if TYPE_CHECKING:
    from .cache import Facts, FactsCache
    from .dns import local_address_towards, route_connections
    from .site import index_resources
    from .windows import WOW64_SOFTWARE

#: Names loaded on first use (PEP 562): the facets import the protocol libraries (ldap3, dnspython, requests,
#: gssapi, smbprotocol), which a pytest run without --env, in any project where pytest-vpro is installed, never
#: needs. The core above is light.
_LAZY = {"Facts": ".cache", "FactsCache": ".cache", "local_address_towards": ".dns", "route_connections": ".dns",
         "index_resources": ".site", "WOW64_SOFTWARE": ".windows"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)


#: the facets of :class:`Facts`, by attribute name, as checks reach them (docs/writing-checks.md lists them)
FACETS = ("amt", "console", "console.amt", "dns", "dhcp", "directory", "windows", "site", "logs", "network", "pki",
          "hellos", "vantage")

__all__ = ["FACETS", "WOW64_SOFTWARE", "Core", "Facts", "FactsCache", "index_resources", "key",
           "local_address_towards", "route_connections", "run_record", "run_record_path"]
