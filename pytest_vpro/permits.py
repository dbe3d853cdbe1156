"""Permission for the only state-changing calls pytest-vpro makes (``pytest_vpro/actions/``).

The engine (``gating.py``) decides who may change an estate: a catalog row marked ``disruptive: true``, in a run
with ``--allow-disruptive``, on a target marked ``canary: true``. While it runs such a check it holds a
:class:`Permit` for that check and target (:func:`granted`); every action asks for it first (:func:`require`) and
raises :class:`NotPermitted` before a byte is sent if there is none, or if it is for another target. The permit
lives in a context variable of the thread that runs the check, so a helper function between the check and the
action changes nothing, and no code outside a disruptive check can hold one.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class NotPermitted(PermissionError):
    """A state-changing call outside a disruptive check on a canary target."""


@dataclass(frozen=True)
class Permit:
    check_id: str
    target: Any  # the environment's Target the check runs for
    record_file: Path  # the run's record of what disruptive checks did (facts read it back)


_CURRENT: contextvars.ContextVar[Permit | None] = contextvars.ContextVar("pytest_vpro_permit", default=None)


@contextlib.contextmanager
def granted(permit: Permit) -> Iterator[Permit]:
    """Within the block (the engine's call of one disruptive check), actions on ``permit.target`` may run."""
    token = _CURRENT.set(permit)
    try:
        yield permit
    finally:
        _CURRENT.reset(token)


def require(target: Any, action: str) -> Permit:
    """The permit for ``target``, or :class:`NotPermitted` saying why there is none."""
    permit = _CURRENT.get()
    name = getattr(target, "name", target)
    if permit is None:
        raise NotPermitted(f"{action} on {name} refused: only a disruptive catalog row, run by pytest-vpro with "
                           "--allow-disruptive on a canary client, may change a client")
    if getattr(permit.target, "key", permit.target) != getattr(target, "key", target):
        raise NotPermitted(f"{action} on {name} refused: {permit.check_id} runs for {permit.target.name}, "
                           "and may change that target only")
    if not getattr(target, "canary", False):  # the engine grants none for such a target; said here as well
        raise NotPermitted(f"{action} on {name} refused: it is not a canary (canary: true)")
    return permit
