"""Stage 6: the Intel AMT WebUI is available and login succeeds (optional stage).

Guide, Stage 6: "Intel AMT WebUI operational. Open Microsoft Internet Explorer, enter the URL for the provisioned
client in this format: https://ClientFQDN:16993. Verify the browser connects to the Intel AMT WebUI."; "Click the
logon button and enter credentials in the format DOMAIN\\Username with password. DOMAIN\\Username should represent
a Windows domain account with access to Intel AMT."; "Check the Intel AMT WebUI option is enabled in the AMT
Component configuration in SCCM Console."
"""
import pytest

from pytest_vpro.checks import expect

#: SMS_SCI_Component SMS_AMT_OPERATION_MANAGER property of the WebUI option *(unconfirmed name)*.
WEBUI_PROPERTY = "Enable Web UI"


@pytest.mark.check("S6-WEBUI-CONNECTS")
def test_webui_answers(client, facts, evidence):
    page = facts.amt.webui("/")
    evidence.attach("GET /", page.summary())
    expect(page.is_amt and page.status in (200, 401),
           found=f"HTTP {page.status} from {page.url} (Server: {page.server or '-'}, title {page.title!r})",
           expected="the AMT WebUI page (200) or its logon challenge (401), Server: Intel(R) Active Management "
                    "Technology")


@pytest.mark.check("S6-WEBUI-LOGIN")
def test_console_user_logs_on_to_the_webui(client, facts, evidence):
    page = facts.amt.webui("/logon.htm", login=True)
    evidence.attach("GET /logon.htm as the console user", page.summary())
    expect(page.status == 200 and page.is_amt,
           found=f"HTTP {page.status} from {page.url}" + (f" (offers {', '.join(page.offers)})" if page.offers else ""),
           expected="200 with the general information page, Kerberos (Negotiate, mutual) as the console user")


@pytest.mark.check("S6-WEBUI-ENABLED-IN-SCCM")
def test_webui_is_enabled_in_the_out_of_band_component(site, facts, evidence):
    component = next((c for c in facts.site.wmi("SMS_SCI_Component")
                      if c.get("ComponentName") == "SMS_AMT_OPERATION_MANAGER"), None)
    expect(component, found="no SMS_AMT_OPERATION_MANAGER component", expected="the out of band component")
    prop = next((p for p in component.get("Props") or [] if p.get("PropertyName") == WEBUI_PROPERTY), None)
    evidence.attach(WEBUI_PROPERTY, prop)
    expect(prop is not None and prop.get("Value") == 1,
           found=f"'{WEBUI_PROPERTY}' = {prop.get('Value') if prop else 'absent'}",
           expected=f"'{WEBUI_PROPERTY}' = 1")
