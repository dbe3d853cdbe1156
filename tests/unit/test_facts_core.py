"""The facts core: one key builder for the cache and the snapshot, and the run folder handed over, not read from
the process environment."""
from __future__ import annotations

import json
from types import SimpleNamespace

from pytest_vpro.facts import FactsCache, key, run_record, run_record_path


def test_key_names_facts_as_the_snapshots_of_version_1_do():
    assert key("amt", "power_policy") == "amt.power_policy"
    assert key("ldap.search", "subtree", "DC=a,DC=b", "(cn=x)", ("cn", "dNSHostName")) == \
        "ldap.search.subtree.DC=a,DC=b.(cn=x).cn,dNSHostName"
    assert key("tcp", "pc01.test:16993") == "tcp.pc01.test:16993"
    assert key("kerberos.ticket", None) == "kerberos.ticket.None"
    assert key("webui", "/", False) == "webui./.False"


def test_the_run_folder_is_the_one_facts_cache_was_given(tmp_path):
    site = SimpleNamespace(key="site:lab", kind="site", name="lab")
    env = SimpleNamespace(site=site)
    cache = FactsCache(env, run_dir=tmp_path)
    assert run_record_path(cache.run_dir) == tmp_path / "actions.json"  # the engine's permit names it to the actions
    (tmp_path / "actions.json").write_text(json.dumps({"pc01.test": {"unprovisioned": {"return": 0}}}))
    client = SimpleNamespace(key="client:pc01.test", kind="client", name="pc01.test")
    facts = cache.estate.__class__(client, env, cache.estate)
    assert facts.run_dir == tmp_path and facts.changed() == {"unprovisioned": {"return": 0}}
    assert run_record("pc01.test", tmp_path / "other") == {}
