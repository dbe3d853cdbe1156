import pytest

from conftest import judge


@pytest.mark.check("T2-CLIENT")
def test_client(client, env):
    judge("T2-CLIENT", client, env)
