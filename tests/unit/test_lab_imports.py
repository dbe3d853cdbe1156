"""Without the [lab] extra, `vpro-lab` and a run still load the lab's description side (names, faults, estate,
manager, cli), so they can say "pip install 'pytest-vpro[lab]'" instead of a traceback; the simulators (aiohttp)
load only when a lab is built. tests/lab/test_installed_wheel.py proves the message from a wheel."""
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
"""


def test_the_lab_description_side_loads_without_the_simulators_libraries():
    out = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
