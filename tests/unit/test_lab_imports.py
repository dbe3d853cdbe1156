"""Without the [lab] extra, `vpro-lab` and a run still load the lab's description side (names, faults, the estate's
description, the simulators' specs, manager, cli), so they can say "pip install 'pytest-vpro[lab]'" instead of a traceback; the simulators
(aiohttp) load only when a lab is built, through lab/builder.py, which imports them at its top.
tests/lab/test_installed_wheel.py proves the message from a wheel."""
from __future__ import annotations

import subprocess
import sys

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("aiohttp", "multidict"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
import pytest_vpro.lab.cli, pytest_vpro.lab.manager, pytest_vpro.lab.estate, pytest_vpro.lab.faults
import pytest_vpro.lab.amt_spec, pytest_vpro.lab.site_spec, pytest_vpro.lab.windows_spec, pytest_vpro.lab.winrm_host
assert "pytest_vpro.lab.builder" not in sys.modules, "the description side imported the builder"
try:
    import pytest_vpro.lab.builder
except ModuleNotFoundError as exc:
    assert "aiohttp" in str(exc), exc
else:
    raise AssertionError("the builder loaded without aiohttp: its simulators are not imported at its top")
"""


def test_the_lab_description_side_loads_without_the_simulators_libraries():
    out = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
