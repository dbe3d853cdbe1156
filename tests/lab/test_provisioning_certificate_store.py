"""The provisioning certificate checks judge the certificate the site selected, as the service point's store holds
it, not the file the user exported (docs/protocols.md, "The provisioning certificate the site selected").

The fault is planted as an administrator makes it: the certificate was renewed and imported (and exported to the
environment's file), but the out of band component still selects the old one, which expired and is still in the
service point's Personal store. The exported file is healthy, so a check that judged it would pass.
"""
from __future__ import annotations

from suite_runner import assert_fails, run_suite

NET = 153
SP = "sccm01.vprolab.test"


def test_the_site_selected_an_expired_certificate_the_exported_file_is_not(tmp_path):
    results = run_suite(tmp_path, [{"fault": "site_selects_expired_provisioning_cert"}], clients=1, net=NET,
                        args=("--stage", "3"))
    assert_fails(results, "S3-PROV-CERT-CHAIN-DATES-VALID", SP,
                 r"the provisioning certificate in sccm01\.vprolab\.test's Personal store \(selected by the site "
                 r"control property 'AMT Provisioning Certificate Thumbprint' of SMS_AMT_OPERATION_MANAGER\) "
                 r"\([0-9A-F]{40}\): sccm01\.vprolab\.test: expired")
    # the old certificate is installed with its chain, and has the markers: only its dates are wrong
    for check in ("S1-PROV-CERT-CHAIN-INSTALLED", "S3-PROV-CERT-SERVER-AUTH", "S3-PROV-CERT-AMT-OID-OR-OU",
                  "S3-PROV-CERT-KEY-LENGTH-2048"):
        assert results[(check, SP)][0] == "passed", (check, results[(check, SP)])
