"""A target's facts, fetched once per run and shared by its checks.

Checks read facts through ``facts.get(name, fetch)``: the first call runs
``fetch`` and remembers its value, or its :class:`ProbeError` (so a host that
does not answer costs one timeout, not one per check). Accessors for each
protocol (AMT over WS-MAN, DNS, LDAP, logs) are added on top of this by the
stage issues; they all funnel through :meth:`Facts.get`, which is also where a
fact snapshot records and replays them.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from .environment import Environment, Target
from .probes.errors import ProbeError


class Facts:
    def __init__(self, target: Target, env: Environment) -> None:
        self.target, self.env = target, env
        self._values: dict[str, Any] = {}
        self._errors: dict[str, ProbeError] = {}
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}

    def get(self, name: str, fetch: Callable[[], Any]) -> Any:
        with self._lock:
            if name in self._values:
                return self._values[name]
            if name in self._errors:
                raise self._errors[name]
            lock = self._fetching.setdefault(name, threading.Lock())
        with lock:  # one fetch per fact even when threads ask at once
            with self._lock:
                if name in self._values:
                    return self._values[name]
                if name in self._errors:
                    raise self._errors[name]
            try:
                value = fetch()
            except ProbeError as exc:
                with self._lock:
                    self._errors[name] = exc
                raise
            with self._lock:
                self._values[name] = value
            return value


class FactsCache:
    """One :class:`Facts` per target per process."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._by_target: dict[str, Facts] = {}
        self._lock = threading.Lock()

    def __call__(self, target: Target) -> Facts:
        with self._lock:
            facts = self._by_target.get(target.key)
            if facts is None:
                facts = self._by_target[target.key] = Facts(target, self.env)
            return facts
