"""WinRM as Windows speaks it (docs/protocols.md, "WinRM authentication"): the lab's site server accepts Kerberos
through ``Negotiate`` with its ``HTTP/sccm01.vprolab.test`` keytab and has Basic off, as Windows by default; the
checks that read its Windows facts over WinRM pass with Kerberos. With ``winrm_kerberos_off`` (Kerberos turned off
in its WinRM service, as ``winrm set winrm/config/service/auth @{Kerberos="false"}`` does) they fail, naming the
host, what it did, what Windows accepts by default and what to do.
"""
from __future__ import annotations

from suite_runner import assert_fails, run_suite

NET = 121
SERVER = "sccm01.vprolab.test"
WINDOWS_FACTS = ("PRE-WINRM-SERVICE-POINT", "PRE-SERVICE-POINT-WINDOWS-2003-SP2")


def test_the_site_servers_windows_facts_are_read_with_kerberos(tmp_path):
    results = run_suite(tmp_path, [], clients=1, net=NET, args=("--stage", "1"))
    for check in WINDOWS_FACTS:
        assert results[(check, SERVER)][0] == "passed", results[(check, SERVER)]


def test_kerberos_off_in_the_site_servers_winrm_fails_its_checks_with_the_action(tmp_path):
    results = run_suite(tmp_path, [{"fault": "winrm_kerberos_off"}], clients=1, net=NET, args=("--stage", "1"))
    for check in WINDOWS_FACTS:
        assert_fails(results, check, SERVER, r"WinRM on sccm01\.vprolab\.test refused Kerberos")
        message = results[(check, SERVER)][1]
        assert "expected: Kerberos (Negotiate) accepted" in message, message
        assert 'winrm set winrm/config/service/auth @{Kerberos="true"}' in message, message
        assert "Basic" not in message.split("refused", 1)[1].split(";", 1)[0], message  # Basic was never tried
