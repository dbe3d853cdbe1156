"""A snapshot written by the previous version of the facts (``pytest_vpro/facts.py`` before it became a package)
replays with this one: every fact a check asks for is found under the same key, so every test gets the verdict it
got in the live run that wrote the snapshot.

``data/snapshot-v1/`` holds what that run left: ``facts.jsonl`` (``--facts-out`` of a 6-client lab with the
faults missing_ptr, sol_ider_disabled and power_policy_s0_only), the lab's environment file (the pki paths made
relative, the lab's state file dropped: a replay starts no lab) with its two public certificate files, and
``verdicts.json``, each test's outcome and message in that live run. A test added since (a new catalog row) has no
verdict there: it must replay without an error. A check that reads a fact that run never fetched (it reads more
since, :data:`READS_MORE_SINCE`) replays its passes as "cannot decide ... not observed in the snapshot": its other
verdicts (gated, failed) must still be the live run's.
"""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

DATA = Path(__file__).parent / "data" / "snapshot-v1"
ROOT = Path(__file__).resolve().parents[2]


#: Checks that read more facts than the run that wrote the snapshot: S5-TIME-SYNCHRONIZED compares every clock with
#: the DC's (root DSE currentTime), which that run never read; S1-CLIENT-SAME-AD-FOREST and
#: PRE-CLIENT-NO-DISJOINT-NAMESPACE tell the computer's own account from the site's AMT object by its SPNs too.
_GC_SPNS = "ldap.gc.computers.dNSHostName,servicePrincipalName of vprolab.test was not observed in the snapshot"
READS_MORE_SINCE = {"test_amt_clock_agrees_with_ours": "ldap.currentTime of vprolab.test was not observed in the snapshot",
                    "test_client_is_in_the_site_servers_forest": _GC_SPNS,
                    "test_client_dns_suffix_is_its_ad_domain": _GC_SPNS}


def verdicts(junit: Path) -> dict[str, list[str]]:
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, child.get("message", "")
        found[f"{case.get('classname')}::{case.get('name')}"] = [outcome, message]
    return found


def test_a_snapshot_of_the_previous_version_replays_to_the_same_verdicts(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pytest", f"--env={DATA / 'environment.yaml'}",
                          f"--facts-in={DATA / 'facts.jsonl'}", "--no-html", f"--reports-dir={tmp_path}",
                          "-p", "no:cacheprovider", "-p", "no:randomly", "-q"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-3000:]
    got = verdicts(tmp_path / "latest" / "junit.xml")
    want = json.loads((DATA / "verdicts.json").read_text())
    def reads_more(k: str) -> str | None:
        return next((why for name, why in READS_MORE_SINCE.items() if f"::{name}[" in k), None)
    unread = {k for k in want if reads_more(k) and want[k][0] == "passed"}
    for k in unread:  # a pass the live run gave from facts it had: now "cannot decide", naming the missing fact
        assert got[k][0] == "skipped" and "cannot decide" in got[k][1] and reads_more(k) in got[k][1], (k, got[k])
    differ = {k: (want.get(k), got.get(k)) for k in want if k not in unread and want.get(k) != got.get(k)}
    assert not differ, json.dumps(dict(sorted(differ.items())[:8]), indent=1)
    # a check added since that run has no verdict to match: it must still replay (no error)
    broken = {k: v for k, v in got.items() if k not in want and v[0] == "error"}
    assert not broken, json.dumps(dict(sorted(broken.items())[:8]), indent=1)
