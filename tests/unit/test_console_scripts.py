"""The console scripts read as their docs say: plain-text help, options where docs/lab.md puts them."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

MARKUP = re.compile(r"``|:(func|class|mod|meth):|\*\*|^\.\. ", re.MULTILINE)
COMMANDS = [["pytest_vpro.lab.cli", "--help"], ["pytest_vpro.lab.cli", "up", "--help"],
            ["pytest_vpro.lab.cli", "status", "--help"], ["pytest_vpro.lab.cli", "down", "--help"],
            ["pytest_vpro.snapshot", "--help"], ["pytest_vpro.snapshot", "diff", "--help"],
            ["pytest_vpro.snapshot", "show", "--help"], ["pytest_vpro.report.merge", "--help"]]


def script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    code = ("import sys, runpy; sys.argv = sys.argv[1:]; "
            "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_is_plain_text(argv):
    out = script(*argv)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: ")
    assert not MARKUP.search(out.stdout), out.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_vpro_lab_takes_its_options_before_or_after_the_command(tmp_path, where):
    state = tmp_path / "state"
    argv = ["--state", str(state), "status"] if where == "before" else ["status", "--state", str(state)]
    out = script("pytest_vpro.lab.cli", *argv)
    assert (out.returncode, out.stdout.strip()) == (1, f"vpro-lab: no lab running in {state}")


def test_vpro_lab_outside_a_clone_uses_the_description_installed_with_the_package(tmp_path):
    out = script("pytest_vpro.lab.cli", "status", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "vpro-lab: no lab running in " in out.stdout


def test_vpro_lab_up_refuses_a_state_folder_that_holds_something_else(tmp_path):
    (tmp_path / "precious.txt").write_text("not a lab")
    out = script("pytest_vpro.lab.cli", "up", "--state", str(tmp_path))
    assert out.returncode == 1
    assert out.stderr.strip() == (f"vpro-lab: {tmp_path} is not empty and holds no lab (no lab.json): choose "
                                  "another --state folder")
    assert (tmp_path / "precious.txt").read_text() == "not a lab"
