"""Stage 2: the guide's checks that no protocol can answer (BIOS, MEBx screens, browser settings).

Each passes on a fresh attestation in the environment file and is otherwise reported as
"manual check not attested". See environments/example.yaml, attestations.
"""
from pytest_vpro.checks import manual_check

# ME power package keeps the ME active in the power states in which hello packets are sent
test_s2_me_power_package_allows_hello = manual_check("S2-ME-POWER-PACKAGE-ALLOWS-HELLO")

# Intel AMT is enabled in the client BIOS
test_s2_bios_amt_enabled = manual_check("S2-BIOS-AMT-ENABLED")

# Intel ME management mode is set to Intel AMT
test_s2_me_management_mode_amt = manual_check("S2-ME-MANAGEMENT-MODE-AMT")
