"""What a check in ``suites/`` writes: findings, evidence, manual checks.

A check is a plain function over facts::

    @pytest.mark.check("S3-CLIENT-FQDN-CHARACTERS")
    def test_fqdn_uses_only_valid_characters(client):
        bad = sorted(set(re.sub(r"[A-Za-z0-9.-]", "", client.fqdn)))
        expect(not bad, found=f"{client.fqdn} contains {''.join(bad)!r}",
               expected="only A-Z, a-z, 0-9, '-' and '.'")

It may take these arguments and no others, so that the plugin can evaluate it
anywhere (a gate in another test, another xdist worker, another shard):
``client`` / ``server`` / ``site`` (the target, matching the row's scope; or
``target`` whatever the scope),
``env`` (the :class:`~pytest_vpro.environment.Environment`), ``facts`` (the
target's facts, fetched once per run) and ``evidence`` (attachments for the
report).
"""
from __future__ import annotations

import datetime as dt
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from .secrets import redact

CHECK_ARGS = ("client", "server", "site", "target", "env", "facts", "evidence")
TARGET_ARGS = ("target", "client", "server", "site")


def check_argnames(func: Callable[..., Any]) -> tuple[str, ...]:
    """The arguments the engine passes to a check (what its ``def`` line names)."""
    names = getattr(func, "__vpro_argnames__", None)
    return names if names is not None else tuple(inspect.signature(func).parameters)


def show_pytest_the_target_only(func: Callable[..., Any]) -> None:
    """Make pytest see one argument of a check, its target, which pytest parametrizes.

    The engine calls the check itself, with every argument it names (``check_argnames``). Were ``env``,
    ``facts`` and ``evidence`` fixtures, pytest would set each up and tear it down for every test, and
    allure-pytest would write a result file for each of them: three per test, most of pytest-vpro's cost per
    test at fleet size (docs/scale.md). A check that names no target still gets one, as ``target``.
    """
    if hasattr(func, "__vpro_argnames__"):
        return
    func.__vpro_argnames__ = names = tuple(inspect.signature(func).parameters)
    shown = next((n for n in names if n in TARGET_ARGS), "target")
    func.__signature__ = inspect.Signature([inspect.Parameter(shown, inspect.Parameter.POSITIONAL_OR_KEYWORD)])


class Finding(AssertionError):
    """A check's negative verdict: what was found and what was expected."""

    def __init__(self, found: str, expected: str, detail: str = "") -> None:
        super().__init__(f"found {found}; expected {expected}")
        self.found, self.expected, self.detail = found, expected, detail


def expect(ok: object, *, found: object, expected: object, detail: str = "") -> None:
    """Fail the check with a :class:`Finding` unless ``ok`` is true."""
    if not ok:
        raise Finding(str(found), str(expected), detail)


def not_applicable(reason: str) -> None:
    """Skip: the row does not apply to this target (e.g. an in-band row on an out of band client)."""
    pytest.skip(f"not applicable: {reason}")


def cannot_decide(reason: str) -> None:
    """Skip, visibly: the sources this check may trust do not settle it (a log line whose wording has no public
    source is missing, and the site's and the ME's own state do not answer). Closes no gate, fails no target."""
    pytest.skip(f"cannot decide: {reason}")


@dataclass
class Evidence:
    """Attachments collected while a check runs; stored with its verdict, redacted."""

    items: list[dict[str, str]] = field(default_factory=list)

    def attach(self, name: str, body: Any, kind: str = "text") -> None:
        if not isinstance(body, str):
            body, kind = json.dumps(body, indent=2, sort_keys=True, default=str), "json"
        self.items.append({"name": name, "body": redact(body), "kind": kind})


def manual_check(check_id: str, *, guide: str) -> Callable[..., None]:
    """A test for a catalog row that no protocol can answer (BIOS, MEBx screens before provisioning).

    ``guide`` is the guide's own words for the check, quoted verbatim (``...`` marks a cut), as the row's
    ``guide`` field in the catalog holds them (tests/unit/test_manual_checks.py holds the two together). The
    quote is the test's docstring, as an automated check's module docstring quotes the guide, and evidence named
    "the guide asks" on every outcome, so the engineer who attests reads what the guide asks for, not a
    paraphrase of it.

    It passes on a fresh attestation in the environment file and is skipped,
    visibly, as "manual check not attested" otherwise.
    """
    if not isinstance(guide, str) or not guide.strip():
        raise TypeError(f"manual_check({check_id!r}): guide= must quote the guide's words for the check")
    quote = " ".join(guide.split())

    @pytest.mark.check(check_id)
    def test_manual(env, target, evidence):
        evidence.attach("the guide asks", quote)  # first: a skipped manual check shows it too
        attestation = env.attestation(check_id, target)
        if attestation is None:
            pytest.skip(f"manual check not attested: add an attestation for {check_id} "
                        f"(check, target, by, at, seen) to {env.file.name}")
        age = (dt.date.today() - attestation.at).days
        if age > env.attestation_max_age_days:
            pytest.skip(f"manual check attestation too old: {attestation.by} on {attestation.at} "
                        f"({age} days > {env.attestation_max_age_days})")
        evidence.attach("attestation", {"by": attestation.by, "at": attestation.at.isoformat(),
                                        "seen": attestation.seen, "target": attestation.target})

    test_manual.__name__ = "test_manual_" + check_id.lower().replace("-", "_")
    test_manual.__doc__ = (f'{check_id}, a manual check. The guide asks: "{quote}"\n\n'
                           "Passes on a fresh attestation in the environment file (by, at, seen); skipped, "
                           "visibly, otherwise.")
    return test_manual
