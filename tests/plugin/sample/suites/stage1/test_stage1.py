import pytest

from conftest import judge


@pytest.mark.check("T1-SITE")
def test_site(site, env):
    judge("T1-SITE", site, env)


@pytest.mark.check("T1-SERVER")
def test_server(server, env):
    judge("T1-SERVER", server, env)


@pytest.mark.check("T1-CLIENT")
def test_client(client, env, evidence):
    evidence.attach("what we saw", {"client": client.name})
    judge("T1-CLIENT", client, env)
