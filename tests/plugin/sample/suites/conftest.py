"""Sample checks' helper: a check fails when faults.json names it and its target; every evaluation is logged."""
import json
import os
from pathlib import Path

from pytest_vpro.checks import expect


def judge(check_id, target, env):
    with open(Path(env.file).parent / "calls.log", "a") as log:
        log.write(f"{os.getpid()} {check_id} {target.name}\n")
    faults_file = Path(env.file).parent / "faults.json"
    faults = json.loads(faults_file.read_text()) if faults_file.exists() else {}
    expect(target.name not in faults.get(check_id, []), found=f"{check_id} planted on {target.name}",
           expected="no planted fault")
