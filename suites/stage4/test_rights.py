"""Prerequisites: "View management controllers: This security right allows you to discover computers with
management controllers and initiate power control actions from the Configuration Manager console." (seed 004)

The reading is shared with the other rights (suites/stage2/test_rights.py).
"""
import pytest

from ..stage2.test_rights import holds


@pytest.mark.check("PRE-RIGHT-VIEW-MANAGEMENT-CONTROLLERS")
def test_operator_may_view_management_controllers(site, env, facts, evidence):
    holds(env, facts, evidence, "View management controllers")
