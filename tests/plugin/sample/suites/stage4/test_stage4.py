import pytest

from conftest import judge


@pytest.mark.check("T4-DISRUPT")
def test_power_cycle(client, env):
    judge("T4-DISRUPT", client, env)


@pytest.mark.check("T4-SECRET")
def test_leaky(client, env, evidence):
    password = env.credentials["amt"].password.resolve()
    print("the password is", password)
    evidence.attach("leak", f"password={password}")
    assert password == "something else", f"password {password} did not match"
