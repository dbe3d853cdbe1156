"""The walk of an environment file: where a key is, how a mistake is said, and the checks every section shares.

:class:`Walk` holds the positioned document (:mod:`pytest_vpro.yamlpos`) and the list of problems; every mistake
is said once, as ``FILE:LINE: key.path: message``, and the walk goes on, so that one run of ``pytest --env``
lists every mistake of the file. Its primitive checks (a mapping's keys, a string, a number, a boolean, an IPv4
address, a list of strings) are the vocabulary of the readers built on it: the inventory
(:mod:`pytest_vpro.environment_inventory`) and the file's sections (:mod:`pytest_vpro.environment_schema`). It is
a module of its own because both of those need it and neither should import the other's details.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any

from . import yamlpos

FQDN_RE = re.compile(r"^(?=.{1,253}$)[^\s.]+(\.[^\s.]+)+$")  # loose: the checks judge the characters


class Walk:
    """Walks the document once, collecting every problem with its line."""

    def __init__(self, doc: yamlpos.Positioned) -> None:
        self.doc = doc
        self.problems: list[str] = []
        self._where: dict[int, str] = {}  # id(server or client) -> "FILE:LINE: key" where it was listed

    # -- reporting
    def at(self, path: tuple[Any, ...]) -> str:
        return f"{self.doc.file}:{self.doc.line(path)}: {yamlpos.dotted(path)}"

    def problem(self, path: tuple[Any, ...], message: str) -> None:
        self.problems.append(f"{self.at(path)}: {message}")

    # -- primitive checks
    def mapping(self, value: Any, path: tuple[Any, ...], allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping of keys ({', '.join(allowed)}), found {kind_of(value)}")
            return {}
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(allowed)}"
                self.problem(path + (key,), f"unknown key{hint}")
        for key in required:
            if key not in value:
                self.problem(path, f"missing required key '{key}'")
        return value

    def string(self, m: dict[str, Any], key: str, path: tuple[Any, ...], default: str | None = None,
               pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        value = m.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(path + (key,), f"expected a non-empty string, found {kind_of(value)}")
            return default
        if pattern and not pattern.match(value):
            self.problem(path + (key,), f"{value!r} is not {what}")
        return value

    def address(self, m: dict[str, Any], key: str, path: tuple[Any, ...]) -> str | None:
        """An IPv4 address (``key`` absent or null: None)."""
        value = m.get(key)
        if value is None:
            return None
        problem = ipv4_problem(value)
        if problem:
            self.problem(path + (key,), problem)
            return None
        return value

    def boolean(self, m: dict[str, Any], key: str, path: tuple[Any, ...], default: bool = False) -> bool:
        value = m.get(key, default)
        if not isinstance(value, bool):
            self.problem(path + (key,), f"expected true or false, found {kind_of(value)}")
            return default
        return value

    def number(self, value: Any, path: tuple[Any, ...], *, minimum: float = 0) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(path, f"expected a number, found {kind_of(value)}")
            return None
        if value < minimum:
            self.problem(path, f"must be at least {minimum}, found {value}")
            return None
        return value

    def str_list(self, m: dict[str, Any], key: str, path: tuple[Any, ...]) -> list[str]:
        value = m.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(path + (key,), f"expected a list of strings, found {kind_of(value)}")
            return []
        return value


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    if isinstance(value, str):
        return f"{value!r}"
    return f"{value!r} ({type(value).__name__})"



def ipv4_problem(value: Any) -> str | None:
    """Why ``value`` is not an IPv4 host address (None if it is one). Out of band management is IPv4-only."""
    if not isinstance(value, str) or not value.strip():
        return f"expected an IPv4 address such as 10.0.0.12, found {kind_of(value)}"
    text = value.strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return f"{text!r} is not an IPv4 address (four numbers from 0 to 255 separated by dots, e.g. 10.0.0.12)"
    if address.version == 6:
        return (f"{text!r} is an IPv6 address; out of band management (Intel AMT) is IPv4-only: "
                "give the IPv4 address")
    if address.is_unspecified or address.is_multicast or text == "255.255.255.255":
        return f"{text!r} is not the address of a host (e.g. 10.0.0.12)"
    return None

