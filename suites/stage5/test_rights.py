"""Prerequisites: "Manage management controllers: This security right allows you to view and manage computers by
using the out of band management console." (seed 004)

The reading is shared with the other rights (suites/stage2/test_rights.py).
"""
import pytest

from ..stage2.test_rights import holds


@pytest.mark.check("PRE-RIGHT-MANAGE-MANAGEMENT-CONTROLLERS")
def test_operator_may_manage_management_controllers(site, env, facts, evidence):
    holds(env, facts, evidence, "Manage management controllers")
