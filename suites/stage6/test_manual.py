"""Stage 6: the guide's checks that no protocol can answer (BIOS, MEBx screens, browser settings).

Each passes on a fresh attestation in the environment file and is otherwise reported as
"manual check not attested". See environments/example.yaml, attestations.
"""
from pytest_vpro.checks import manual_check

# WebUI URLs use the client FQDN, not an IP address or alias
test_s6_webui_url_uses_fqdn = manual_check("S6-WEBUI-URL-USES-FQDN")

# Internet Explorer has Integrated Windows Authentication enabled on console hosts
test_s6_ie_integrated_windows_auth = manual_check("S6-IE-INTEGRATED-WINDOWS-AUTH")
