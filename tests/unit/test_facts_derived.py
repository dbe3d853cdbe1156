"""Facts.derived: an index over an estate-wide fact is built once per value, shared by every client's checks."""
from __future__ import annotations

from types import SimpleNamespace

from pytest_vpro.facts import Facts, index_resources


def _facts(estate=None, name="pc01.test"):
    return Facts(SimpleNamespace(key=f"client:{name}", kind="client", name=name), env=None, estate=estate)


def test_built_once_per_source_and_shared_through_the_estate():
    estate = _facts(name="site")
    one, two = _facts(estate), _facts(estate, "pc02.test")
    built = []
    source = [{"Name": "PC01"}]

    def build(rows):
        built.append(rows)
        return {r["Name"]: r for r in rows}

    assert one.derived("index", source, build) is two.derived("index", source, build)
    assert len(built) == 1
    fresh = [{"Name": "PC01"}, {"Name": "PC02"}]  # a fresh read of the fact: a new value, a new index
    assert set(two.derived("index", fresh, build)) == {"PC01", "PC02"} and len(built) == 2


def test_resources_are_found_by_fqdn_then_netbios_name_in_the_providers_order():
    rows = [{"Name": "PC01", "ResourceNames": ["pc01.test", "PC01.test"]}, {"Name": "PC01", "ResourceNames": []},
            {"Name": "OTHER", "ResourceNames": ["pc01.test"]}, {"Name": None}]
    by_fqdn, by_name = index_resources(rows)
    assert by_fqdn["pc01.test"] == [rows[0], rows[2]]  # each resource once, however its names are spelt
    assert by_name["PC01"] == [rows[0], rows[1]] and by_name[""] == [rows[3]]


def test_configuration_managers_keys_are_read_in_the_32_bit_view_first():
    """ConfigMgr 2007 is 32-bit: on a 64-bit site server its keys are under SOFTWARE\\Wow6432Node (read first);
    on a 32-bit one under SOFTWARE (read next). The key read is returned for the evidence."""
    facts, asked = _facts(name="sccm01.test"), []
    server = SimpleNamespace(name="sccm01.test")

    def registry(values):
        def read(host, key, value, kind="string"):
            asked.append(key)
            return values.get(key)
        return read

    wow = r"HKLM\SOFTWARE\Wow6432Node\Microsoft\SMS\Setup"
    native = r"HKLM\SOFTWARE\Microsoft\SMS\Setup"
    facts.windows.registry = registry({wow: "4.00.6487.2000", native: "stale"})
    assert facts.windows.sms_registry(server, "Setup", "Full Version") == ("4.00.6487.2000", wow)
    facts.windows.registry = registry({native: "4.00.6221.1000"})
    assert facts.windows.sms_registry(server, "Setup", "Full Version") == ("4.00.6221.1000", native)
    facts.windows.registry = registry({})
    assert facts.windows.sms_registry(server, "Setup", "Full Version") == (None, native)
    assert asked == [wow, wow, native, wow, native]
