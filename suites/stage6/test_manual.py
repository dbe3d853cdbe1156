"""Stage 6: the guide's checks that no protocol can answer (browser settings).

Each quotes the guide's own words for the check (``guide=``, as the catalog row's ``guide`` field holds them):
the test's docstring, and evidence "the guide asks" on every outcome. Each passes on a fresh attestation in the
environment file and is otherwise reported as "manual check not attested". See environments/example.yaml,
attestations.
"""
from pytest_vpro.checks import manual_check

# Guide, Stage 6 corrective actions (and Troubleshooting by Component / Other)
test_s6_webui_url_uses_fqdn = manual_check(
    "S6-WEBUI-URL-USES-FQDN",
    guide="Check the Intel AMT WebUI URL is specified using the client FQDN and not an IP address or other "
          "address alias otherwise Kerberos authentication will fail.")

# Guide, Stage 6 corrective actions (and Troubleshooting by Component / Other)
test_s6_ie_integrated_windows_auth = manual_check(
    "S6-IE-INTEGRATED-WINDOWS-AUTH",
    guide="When using Microsoft Internet Explorer to connect to the Intel AMT WebUI, enable Integrate Windows "
          "Authentication in the browser s Advanced Internet Options and restart the browser.")
