"""WinRM as Windows speaks it (docs/protocols.md, "WinRM authentication"): the lab's site server accepts Kerberos
through ``Negotiate`` with its ``HTTP/sccm01.vprolab.test`` keytab and has Basic off, as Windows by default (so do
the CA host and the console host); the checks that read their Windows facts over WinRM pass with Kerberos. With
``winrm_kerberos_off`` (Kerberos turned off in its WinRM service, as ``winrm set winrm/config/service/auth
@{Kerberos="false"}`` does) they fail, naming the host, what it did, what Windows accepts by default and what to do.
"""
from __future__ import annotations

from suite_runner import assert_fails, assert_healthy, run_suite

NET = 121
SERVER, CA, CONSOLE, IN_BAND = ("sccm01.vprolab.test", "ca01.vprolab.test", "console01.vprolab.test",
                                 "pc0002.vprolab.test")
WINDOWS_FACTS = ("PRE-WINRM-SERVICE-POINT", "PRE-SERVICE-POINT-WINDOWS-2003-SP2")


def test_windows_facts_are_read_with_kerberos_and_basic_only_where_the_environment_allows_it(tmp_path):
    """The site server, the CA host and the console host answer Kerberos only; the in-band PC (pc0002), which the
    lab's environment lists in credentials.winrm.basic_hosts, is read after Kerberos with Basic over https."""
    results = run_suite(tmp_path, [], clients=2, in_band_every=2, net=NET, args=("--stage", "5"))
    for check, host in [*((c, SERVER) for c in WINDOWS_FACTS), ("PRE-CA-AUTO-APPROVE", CA),
                        ("PRE-WINRM-CONSOLE", CONSOLE), ("S1-CLIENT-AGENT-SP1", IN_BAND)]:
        assert results[(check, host)][0] == "passed", (check, host, results[(check, host)])
    assert_healthy(results, IN_BAND)


def test_kerberos_off_in_the_site_servers_winrm_fails_its_checks_with_the_action(tmp_path):
    results = run_suite(tmp_path, [{"fault": "winrm_kerberos_off"}], clients=1, net=NET, args=("--stage", "1"))
    for check in WINDOWS_FACTS:
        assert_fails(results, check, SERVER, r"WinRM on sccm01\.vprolab\.test refused Kerberos")
        message = results[(check, SERVER)][1]
        assert "expected: Kerberos (Negotiate) accepted" in message, message
        assert 'winrm set winrm/config/service/auth @{Kerberos="true"}' in message, message
        assert "Basic" not in message.split("refused", 1)[1].split(";", 1)[0], message  # Basic was never tried
