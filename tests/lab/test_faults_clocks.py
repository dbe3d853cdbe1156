"""S5-TIME-SYNCHRONIZED against the clocks an administrator gets wrong: the console host's, the site server's (a
wrong time zone with the wall clock set back to local time), an in-band client's Windows; each against the domain
controller's (the Kerberos reference), named with the skew found, the tolerance and the corrective action."""
from __future__ import annotations

import re

from suite_runner import assert_fails, run_suite

NET = 131
PC = "pc{:04d}.vprolab.test".format
ACTION = "Synchronize server clocks with the domain hierarchy"


def test_skewed_clocks_and_a_wrong_time_zone_fail_time_synchronized(tmp_path):
    results = run_suite(tmp_path, ["console_clock_skewed", "site_server_wrong_time_zone",
                                   {"fault": "windows_clock_skew", "client": 2, "seconds": -900}],
                        clients=2, in_band_every=2, net=NET, args=("--stage", "5"))
    for client in (PC(1), PC(2)):
        message = results[("S5-TIME-SYNCHRONIZED", client)][1]
        assert_fails(results, "S5-TIME-SYNCHRONIZED", client,
                     r"console01\.vprolab\.test clock \+(599|600|601) s \(±\d+ s\) from the domain controller")
        assert re.search(r"sccm01\.vprolab\.test clock \+28[78]\d\d s", message), message
        assert "within 300 s of the domain controller's (AMT_KerberosSettingData.MaximumClockTolerance)" in message
        assert ACTION in message, message
        assert "Intel AMT) clock" not in message, message  # the ME's clock is right
    in_band = results[("S5-TIME-SYNCHRONIZED", PC(2))][1]
    assert re.search(r"pc0002\.vprolab\.test \(Windows\) clock -(899|900|901) s", in_band), in_band
    assert "(Windows)" not in results[("S5-TIME-SYNCHRONIZED", PC(1))][1]
