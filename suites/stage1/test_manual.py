"""Stage 1: the guide's checks that no protocol can answer (BIOS, MEBx screens, browser settings).

Each passes on a fresh attestation in the environment file and is otherwise reported as
"manual check not attested". See environments/example.yaml, attestations.
"""
from pytest_vpro.checks import manual_check

# Troubleshooting tools and infrastructure access are available to the engineer
test_gen_troubleshooting_tools_available = manual_check("GEN-TROUBLESHOOTING-TOOLS-AVAILABLE")

# Stages are verified in sequence and corrective actions are worked simplest first
test_gen_corrective_actions_simple_first = manual_check("GEN-CORRECTIVE-ACTIONS-SIMPLE-FIRST")

# PSK clients and the WS-MAN Translator use the same pre-shared key
test_s1_wsman_translator_psk_match = manual_check("S1-WSMAN-TRANSLATOR-PSK-MATCH")

# 802.1X clients in an SP1 site are configured with the Intel Genscript tool
test_pre_8021x_sp1_genscript = manual_check("PRE-8021X-SP1-GENSCRIPT")

# An 802.1X compliant RADIUS infrastructure supports the wired and wireless networks
test_pre_8021x_radius_infra = manual_check("PRE-8021X-RADIUS-INFRA")

# RADIUS accepts domain\computer_account identities for certificate-based EAP
test_pre_8021x_radius_account_format = manual_check("PRE-8021X-RADIUS-ACCOUNT-FORMAT")
