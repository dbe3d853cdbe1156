"""gating.OpenClients: a fleet is not held open, and a client with a check running is never released."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from pytest_vpro.gating import OpenClients


def _client(i: int):
    return SimpleNamespace(key=f"client:pc{i:02d}", kind="client", name=f"pc{i:02d}")


def test_least_recently_used_idle_clients_are_released_past_the_limit():
    released = []
    open_ = OpenClients(lambda t: released.append(t.name), limit=3)
    for i in range(5):
        with open_.using(_client(i)):
            pass
    assert released == ["pc00", "pc01"] and len(open_) == 3


def test_a_busy_client_is_not_released():
    released = []
    open_ = OpenClients(lambda t: released.append(t.name), limit=1)
    busy, entered, leave = _client(0), threading.Event(), threading.Event()

    def hold():
        with open_.using(busy):
            entered.set()
            leave.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    entered.wait(5)
    with open_.using(_client(1)):
        pass
    open_.done_with(busy)
    assert "pc00" not in released  # over the limit and asked for, but a check is running on it
    leave.set()
    t.join(5)
    open_.done_with(busy)
    assert "pc00" in released


def test_done_with_releases_at_once_and_servers_are_never_tracked():
    released = []
    open_ = OpenClients(lambda t: released.append(t.name))
    with open_.using(_client(0)):
        pass
    with open_.using(SimpleNamespace(key="server:sccm01", kind="server", name="sccm01")):
        pass
    open_.done_with(_client(0))
    assert released == ["pc00"] and len(open_) == 0
