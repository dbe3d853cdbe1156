"""Secret references and redaction.

An environment file never holds a secret, only a reference to one:

* ``env:NAME``   the value of environment variable NAME, read when it is used;
* ``file:PATH``  the contents of PATH (relative to the environment file), stripped of a trailing newline;
* ``kerberos``   no secret at all: the caller's Kerberos ticket cache is used.

Every value resolved here is registered with :data:`REDACTOR`, and everything
pytest-vpro writes (failure messages, evidence, reports, fact snapshots) goes
through :func:`redact`, so a secret that leaks into an error message from a
library still never reaches a report.
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from .probes.errors import ProbeError

REF_RE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|kerberos)$")
MASK = "«redacted»"


class SecretUnavailable(ProbeError):
    """A referenced secret could not be read (unset variable, unreadable file).

    A ProbeError: the checks that need it report a finding, not a traceback (tests/reliability found one).
    """


class Redactor:
    """Remembers every secret value seen in this process and masks it in text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str | None) -> None:
        if not value or len(value) < 3:  # masking "a" everywhere would make reports unreadable
            return
        with self._lock:
            if value not in self._values:
                self._values.add(value)
                self._pattern = re.compile(
                    "|".join(re.escape(v) for v in sorted(self._values, key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR(text)


def is_reference(value: object) -> bool:
    return isinstance(value, str) and bool(REF_RE.match(value))


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret; ``str()`` and ``repr()`` never show the value."""

    ref: str
    base_dir: Path = Path(".")

    @property
    def is_kerberos(self) -> bool:
        return self.ref == "kerberos"

    def resolve(self) -> str | None:
        """Return the secret (None for ``kerberos``) and register it for redaction."""
        if self.is_kerberos:
            return None
        kind, _, what = self.ref.partition(":")
        if kind == "env":
            value = os.environ.get(what)
            if value is None:
                raise SecretUnavailable(f"environment variable {what} is not set (referenced as {self.ref!r})")
        else:
            path = Path(what).expanduser()
            if not path.is_absolute():
                path = self.base_dir / path
            try:
                value = path.read_text().rstrip("\r\n")
            except OSError as exc:
                raise SecretUnavailable(f"cannot read secret file {path}: {exc.strerror}") from None
        REDACTOR.add(value)
        return value

    def __str__(self) -> str:
        return self.ref

    __repr__ = __str__
