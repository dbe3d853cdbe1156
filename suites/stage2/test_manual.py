"""Stage 2: the guide's checks that no protocol can answer (BIOS, MEBx screens).

Each quotes the guide's own words for the check (``guide=``, as the catalog row's ``guide`` field holds them):
the test's docstring, and evidence "the guide asks" on every outcome. Each passes on a fresh attestation in the
environment file and is otherwise reported as "manual check not attested". See environments/example.yaml,
attestations.
"""
from pytest_vpro.checks import manual_check

# Guide, Stage 2 corrective actions (and Troubleshooting by Component / Client)
test_s2_me_power_package_allows_hello = manual_check(
    "S2-ME-POWER-PACKAGE-ALLOWS-HELLO",
    guide="When using SCCM out-of-band provisioning, check the currently selected Intel® Management Engine "
          "(Intel® ME) power package allows the Intel ME to be active in the desired client power states to send "
          "hello packets. If the selected Intel ME power package configures the Intel ME to be active in client "
          "power state S0 only, power on the client to send hello packets. If hello packets must be sent in other "
          "client power states select a different power package so the ME is active in other client power states "
          "(check using the Intel MEBX).")

# Guide, Stage 2 corrective actions (and Troubleshooting by Component / Client)
test_s2_bios_amt_enabled = manual_check(
    "S2-BIOS-AMT-ENABLED",
    guide="Check Intel AMT is enabled in BIOS (check using BIOS Setup).")

# Guide, Stage 2 corrective actions
test_s2_me_management_mode_amt = manual_check(
    "S2-ME-MANAGEMENT-MODE-AMT",
    guide="Check Intel ME management mode is set to 'Intel AMT' (check using MEBX).")
