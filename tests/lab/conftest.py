"""A session-scoped Samba AD DC for the lab's own tests, on net 91 (127.91.0.0/16)."""
from __future__ import annotations

import os
import secrets
import socket

import pytest

from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.samba import SambaDC, SambaError

NET = 91


def _free(address: str) -> bool:
    for port in (389, 88, 53, 445):
        try:
            socket.create_connection((address, port), timeout=0.3).close()
            return False
        except OSError:
            pass
    return True


def _dc_address() -> str:
    """plan.dc if free, else the first free 127.91.250.x: pytest-xdist workers and concurrent sessions
    (other suites in tests/lab use this fixture too) each get their own DC address."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    candidates = [AddressPlan(NET).dc] if worker == 0 else []
    candidates += [f"127.{NET}.250.{n}" for n in range(1 + worker * 10, 251)]
    return next(a for a in candidates if _free(a))


@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory) -> SambaDC:
    """A provisioned, started DC; stopped (every process of its session) at the end of the session.
    If another session grabs the chosen address between the check and the start, try the next one."""
    for _attempt in range(5):
        # Complexity rules of AD: upper, lower, digit, symbol.
        dc = SambaDC(tmp_path_factory.mktemp("samba-dc"), _dc_address(),
                     admin_password=f"Adm-{secrets.token_urlsafe(12)}-9a")
        dc.provision()
        try:
            dc.start()
            break
        except SambaError as exc:
            if "already serves ports" not in str(exc):
                raise
    else:
        pytest.fail("no free lab address for the Samba DC on 127.91.250.0/24")
    yield dc
    dc.stop()
