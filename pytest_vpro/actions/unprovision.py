"""Un-provisioning through the site server (S7-UNPROVISION-COMPLETES)."""
from __future__ import annotations

import time
from typing import Any

from ..permits import Permit
from ..probes import x509 as certs
from ..probes.amt import AmtDevice
from ..probes.errors import ProbeError
from ..probes.wsman import DigestAuth
from .common import (
    AMT_STATUS_PROVISIONED,
    DISCOVERY_BMC,
    FULL_UNPROVISION,
    _console_device,
    _permit,
    _poll,
    _record,
    _SmsProvider,
    _succeeded,
    _wait,
)


# --------------------------------------------------------------------------------------------------------------
# un-provisioning through the site server (S7-UNPROVISION-COMPLETES)
# --------------------------------------------------------------------------------------------------------------
def unprovision(client, env, facts) -> dict[str, Any]:
    """Delete the client's provisioning data through Configuration Manager, as the console's "Delete provisioning
    data from the management controller" does: ``AMTOperateForMachines([ResourceID], 64)`` (FullUnprovision).
    Before, the serial of the certificate the client serves on 16993 is recorded (after un-provisioning nothing
    serves it), for S7-WEB-SERVER-CERT-REVOKED. Then it waits for AMT to report pre-provisioning, and asks the
    site to discover the management controller again (``AMTOperateForMachines(..., 8)``, DiscoveryBMC: AMTStatus
    changes only when the site provisions or discovers a client) and waits for its AMTStatus to leave 3.
    Returns the record: ``serial`` (hex), ``answer`` (the call and its ReturnValue, or the error), ``return`` (0
    when the call succeeded), ``state_after`` (ProvisioningState read afterwards over WS-MAN, or the error:
    firmware back in its initial setup may answer none), ``amt_status`` (SMS_R_System.AMTStatus after the
    discovery), ``discovery`` (that call's answer).

    Un-provisioning is not undone: the guide's Stage 7 ends there, and a client in a collection with automatic
    provisioning is provisioned again by the site (CM2007 library, "How to Remove Provisioning Information for
    AMT-Based Computers")."""
    permit = _permit(client, "un-provisioning")
    _record(permit, unprovisioned={"started": time.time()})
    try:
        return _unprovision(client, env, facts, permit)
    except BaseException as exc:
        _record(permit, unprovisioned={"finished": time.time(), "return": f"not done: {exc}"})
        raise


def _unprovision(client, env, facts, permit: Permit) -> dict[str, Any]:

    cert = facts.network.peer_certificate(client.name, env.expected["ports"]["amt_https"])
    _record(permit, unprovisioned={"serial": format(cert.serial_number, "x"), "cdp": certs.cdp_urls(cert),
                                   "issuer": cert.issuer.rfc4514_string()})
    provider = _SmsProvider(facts, env)
    result: dict[str, Any] = {}
    try:
        system = provider.system(client.name)
        if system is None:
            raise ProbeError(f"{client.name} has no SMS_R_System record in site {env.site.code}")
        rid = int(str(system.get("ResourceId", system.get("ResourceID"))))
        result["answer"] = provider.operate(rid, FULL_UNPROVISION)
        result["return"] = 0 if _succeeded(result["answer"]) else result["answer"]
        def provisioning_state() -> Any:
            try:
                return _digest_device(facts, env).provisioning().state
            except ProbeError as exc:
                return str(exc)

        after: Any = None
        if result["return"] == 0:
            # 0, or no WS-MAN answer at all: factory defaults of firmware that, in pre-provisioning, serves only
            # its provisioning server (the check judges that from the log and the site)
            after, _ = _poll(provisioning_state, lambda got: got == 0 or isinstance(got, str), _wait(env))
        result["state_after"] = after
        result["discovery"] = provider.operate(rid, DISCOVERY_BMC) if result["return"] == 0 else ""
        status = system.get("AMTStatus")
        if _succeeded(result["discovery"]):
            status, _ = _poll(lambda: (provider.system(client.name) or {}).get("AMTStatus"),
                              lambda got: str(got) != str(AMT_STATUS_PROVISIONED), _wait(env))
        result["amt_status"] = None if status is None else int(str(status))
    finally:
        provider.close()
    return _record(permit, unprovisioned={**result, "finished": time.time()})["unprovisioned"]


def _digest_device(facts, env):
    """A fresh WS-MAN session with the service point's AMT credential (the run's cached reads are from before)."""
    cred = env.credentials.get("amt")
    if cred is None or cred.kerberos:
        return _console_device(facts, env)
    return AmtDevice(facts.connect.wsman(DigestAuth(cred.user, cred.password.resolve())))
