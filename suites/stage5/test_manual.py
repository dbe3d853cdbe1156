"""Stage 5: the guide's checks that no protocol can answer (BIOS, MEBx screens, the console host's logon).

Each quotes the guide's own words for the check (``guide=``, as the catalog row's ``guide`` field holds them):
the test's docstring, and evidence "the guide asks" on every outcome. Each passes on a fresh attestation in the
environment file and is otherwise reported as "manual check not attested". See environments/example.yaml,
attestations.
"""
from pytest_vpro.checks import manual_check

# Guide, Stage 5 corrective actions (and Troubleshooting by Component / Client)
test_s5_sol_ider_enabled_in_bios = manual_check(
    "S5-SOL-IDER-ENABLED-IN-BIOS",
    guide="If SOL / IDER is not operational, check SOL / IDER is enabled in MEBX and client BIOS (check using "
          "MEBX and BIOS Setup).")

# Guide, Stage 5 corrective actions
test_s5_console_logoff_logon_retry = manual_check(
    "S5-CONSOLE-LOGOFF-LOGON-RETRY",
    guide="If the SCCM OOB console will not connect to the client, try logging off the system hosting the SCCM "
          "OOB, logging back on again and retrying the SCCM OOB console. The logoff and logon operation forces "
          "new Kerberos tickets to be generated. KerbTray or KerbList utilities from Microsoft Windows Server "
          "2003 resource kit can also be used to flush cached Kerberos tickets.")
