"""Planted faults: the lab description's ``faults:`` list, turned into changes of the estate's data.

A description names faults as data::

    faults:
      - {fault: missing_ptr, client: 3}                    # client by number (pc0003) ...
      - {fault: clock_skew, client: pc0005, seconds: 900}  # ... or by name / FQDN, with parameters
      - {fault: dhcp_no_option15}                          # site-wide faults take no client

:func:`parse` checks every entry against :data:`FAULTS` (unknown names, bad clients and bad parameters raise
:class:`~pytest_vpro.lab.names.DescriptionError` naming the fault and listing the known ones). :func:`apply` is
called by :func:`pytest_vpro.lab.builder.build` at each point where the estate's data is decided, the *stages*:

=============== =========================================================== ==================================
stage           when                                                        a client fault's ``target``
=============== =========================================================== ==================================
plan            after the client plan (names, provisioned or not)           the :class:`ClientPlan`
pki             before the CAs are made: ``ctx.pki`` (PkiFaults fields)     -
directory_setup before the directory is populated: ``ctx.directory``        -
directory       after population, as an administrator would (LDAP, DNS)     the :class:`ClientPlan`
dhcp            before dnsmasq starts: ``ctx.dhcp`` (LabDHCP knobs)          -
device          before the AMT simulator starts: ``ctx.devices``            the client's ``DeviceSpec``
site_server     before the site server starts: ``ctx.site_spec``            the client's ``ClientRecord``
running         once the site server runs: ``ctx.site`` (its log)            the client's ``ClientRecord``
windows         before the Windows hosts start: ``ctx.windows`` (in-band    the client's ``WindowsClientSpec``
                clients' OS), ``ctx.console`` (the console host's)          (in-band clients only)
=============== =========================================================== ==================================

The fault table (name, parameters, what it changes, which catalog checks it makes fail) is :data:`FAULTS`;
``docs/lab.md`` prints it. The registry (parsing, applying, shared helpers) is :mod:`.registry`; the faults are
in one module per area: :mod:`.clients`, :mod:`.site`, :mod:`.windows`, :mod:`.infrastructure`,
:mod:`.operations` (stages 4 to 7), :mod:`.services` (shared services down). This module knows nothing of pytest.
"""
from __future__ import annotations

# The area modules register their faults in FAULTS when imported, in this order (docs/lab.md prints the table).
# isort: off
from . import clients, site, windows, infrastructure, operations, services  # noqa: F401
# isort: on
from .registry import FAULTS, STAGES, Context, DirectorySetup, Fault, Param, Planted, apply, fault, parse, table

__all__ = ["FAULTS", "STAGES", "Context", "DirectorySetup", "Fault", "Param", "Planted", "apply", "fault", "parse",
           "table"]
