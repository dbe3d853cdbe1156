"""Vantage points in the lab: the console host's entry has ``testinfra: local://`` (its network side is this
machine), so S1-PORTS-CONSOLE-TO-AMT probes through pytest-testinfra's backend for real, and a client whose AMT
ports a firewall drops, or whose device is gone, fails it with the console named as where it was probed from.
The service point has no ``testinfra:``: its check still probes from this machine and says so."""
from __future__ import annotations

from suite_runner import assert_fails, assert_healthy, run_suite

NET = 147
CONSOLE = r"from console01 \(testinfra local://\): "


def test_the_console_checks_ports_from_itself_and_a_firewalled_client_fails_naming_it(tmp_path):
    results = run_suite(tmp_path, [{"fault": "amt_ports_filtered", "client": 2}, {"fault": "unreachable", "client": 3}],
                        clients=3, net=NET, args=("--stage", "1", "-k", "reaches_amt_ports"))
    assert_fails(results, "S1-PORTS-CONSOLE-TO-AMT", "pc0002.vprolab.test",
                 CONSOLE + r"16993 on pc0002\.vprolab\.test \(127\.147\.1\.2\) not reachable \(refused or filtered: "
                 r"nc -z does not tell which\) after \d+ ms \(this machine: 127\.147\.1\.2:16993 filtered after")
    assert_fails(results, "S1-PORTS-CONSOLE-TO-AMT", "pc0003.vprolab.test",
                 CONSOLE + r"16993 on pc0003\.vprolab\.test \(127\.147\.1\.3\) not reachable .*\(this machine: "
                 r"127\.147\.1\.3:16993 refused")
    assert_fails(results, "S1-PORTS-SERVICE-POINT-TO-AMT", "pc0002.vprolab.test",
                 r"127\.147\.1\.2:16992 filtered after \d+ ms.*, probed from this machine \(127\.")
    assert results[("S1-PORTS-CONSOLE-TO-AMT", "pc0001.vprolab.test")][0] == "passed"
    assert_healthy(results, "pc0001.vprolab.test")
