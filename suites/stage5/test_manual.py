"""Stage 5: the guide's checks that no protocol can answer (BIOS, MEBx screens, browser settings).

Each passes on a fresh attestation in the environment file and is otherwise reported as
"manual check not attested". See environments/example.yaml, attestations.
"""
from pytest_vpro.checks import manual_check

# SOL and IDER are enabled in the client BIOS
test_s5_sol_ider_enabled_in_bios = manual_check("S5-SOL-IDER-ENABLED-IN-BIOS")

# Fresh Kerberos tickets are obtained on the console host before retrying the console
test_s5_console_logoff_logon_retry = manual_check("S5-CONSOLE-LOGOFF-LOGON-RETRY")
