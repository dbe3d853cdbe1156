"""The protocol modules, one per protocol. Checks reach them through ``pytest_vpro.facts``."""
from __future__ import annotations

import importlib
import pkgutil

#: Libraries the probes import on first use (so that a run loads only what its checks need).
LAZY_LIBRARIES = ("smbclient", "smbprotocol.exceptions", "gssapi", "ssl", "cryptography.x509")


def load_all() -> None:
    """Import every probe module, and the libraries they load on first use, in the calling thread.

    Called before the prefetch threads start. Python's import system hands a half-initialised module to a thread
    that imports it while another thread is still running that module's import and a deadlock looks possible;
    with 32 threads reading their first facts at once, a check once saw an ``smbclient`` without
    ``register_session``. Nothing is half imported if everything is imported before the threads exist.
    """
    for info in pkgutil.iter_modules(__path__):
        if info.name != "actions":  # the state-changing module: only the disruptive checks import it
            importlib.import_module(f"{__name__}.{info.name}")
    for name in LAZY_LIBRARIES:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional library: the probe that needs it says so when it is used
            pass
