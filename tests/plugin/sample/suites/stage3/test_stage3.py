import pytest

from conftest import judge
from pytest_vpro.checks import manual_check

test_manual = manual_check("T3-MANUAL", guide="Check Intel AMT is enabled in BIOS (check using BIOS Setup).")


@pytest.mark.check("T3-CLIENT")
def test_client(client, env):
    judge("T3-CLIENT", client, env)
