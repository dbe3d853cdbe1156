"""Issue 16, item 9: an un-provisioned device of a lab of 2009 answers no WS-MAN (docs/protocols.md "An un-provisioned
device"), against the AMT simulator on net 119.

Real firmware in setup speaks WS-MAN only to the provisioning server, over TLS with the provisioning certificate as
client certificate: the tool, without that key, gets the TLS handshake with the device's setup certificate and no
answer. pc0001 is such a device (``setup_answers_wsman`` false, ProvisioningState 0); pc0002 the modern lab's
shortcut (answers before provisioning); pc0003 a provisioned device of 2009, which answers.
"""
from __future__ import annotations

import socket
import ssl
import uuid

import pytest
from test_amt_tls import pki  # noqa: F401  (the fixture: a small CA and its device certificates)

from pytest_vpro.lab.addresses import AddressPlan
from pytest_vpro.lab.amt_sim import AmtSimulator, DeviceSpec
from pytest_vpro.probes import tls
from pytest_vpro.probes.amt import AmtDevice
from pytest_vpro.probes.errors import ProbeError
from pytest_vpro.probes.wsman import DigestAuth, WsmanClient

PLAN = AddressPlan(119)
DOMAIN = "vprolab.test"
PASSWORD = "Lab-P@ss1"


def _spec(i: int, pki, **kw) -> DeviceSpec:  # noqa: F811
    fqdn, addr = f"pc{i + 1:04d}.{DOMAIN}", PLAN.client(i)
    cert, key = pki["issue"](f"setup{i}", fqdn, addr)
    return DeviceSpec(fqdn=fqdn, address=addr, uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, fqdn)), amt_version="5.0.20",
                      digest_password=PASSWORD, tls_cert=cert, tls_key=key, send_hellos=False, **kw)


@pytest.fixture(scope="module")
def estate(pki):  # noqa: F811
    sim = AmtSimulator([_spec(0, pki, provisioning_state=0, setup_answers_wsman=False),
                        _spec(1, pki, provisioning_state=0),
                        _spec(2, pki, setup_answers_wsman=False)]).start()
    tls.forget()
    yield sim
    sim.stop()
    tls.forget()


def _device(pki, i: int, port: int = 16993) -> AmtDevice:  # noqa: F811
    scheme = "https" if port == 16993 else "http"
    return AmtDevice(WsmanClient(f"{scheme}://{PLAN.client(i)}:{port}/wsman", auth=DigestAuth("admin", PASSWORD),
                                 ca_bundle=pki["ca"], timeout=5))


def test_a_device_in_setup_completes_the_tls_handshake_and_answers_no_wsman(estate, pki):  # noqa: F811
    ctx = ssl.create_default_context(cafile=pki["ca"])
    with socket.create_connection((PLAN.client(0), 16993), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=f"pc0001.{DOMAIN}") as s:
        assert s.getpeercert()["subject"]  # its setup certificate, verified
    for port in (16993, 16992):
        with pytest.raises(ProbeError):
            _device(pki, 0, port).provisioning()
    assert not [c for c in estate.calls if c["device"] == f"pc0001.{DOMAIN}"]  # nothing was served


def test_the_modern_labs_shortcut_and_a_provisioned_device_answer(estate, pki):  # noqa: F811
    assert _device(pki, 1).provisioning().state == 0
    assert _device(pki, 2).provisioning().state == 2
