"""Secret references and redaction.

An environment file never holds a secret, only a reference to one:

* ``env:NAME``   the value of environment variable NAME;
* ``file:PATH``  the contents of PATH (UTF-8, relative to the environment file), stripped of a trailing newline;
* ``kerberos``   no secret at all: the caller's Kerberos ticket cache is used.

The loader asks every reference once, before anything is sent (:meth:`SecretRef.problem`: an unset or empty
variable, a missing, unreadable or empty file is a usage error with the file, line and key); the value itself
is read again each time it is used (:meth:`SecretRef.resolve`), and kept only by the redactor below.

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
from typing import TypeGuard

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


def is_reference(value: object) -> TypeGuard[str]:
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
        value, problem = self._read()
        if value is None:
            raise SecretUnavailable(f"{problem} (referenced as {self.ref!r})")
        REDACTOR.add(value)
        return value

    def problem(self) -> str | None:
        """Why this reference would not resolve now (None if it would), without keeping the value.

        The environment loader asks every reference before the first packet is sent, so that an unset
        variable or a missing file is a usage error and not a finding in the middle of the run. The value is
        read only to be sure it can be, and dropped: it is not registered, returned, logged or stored.
        """
        if self.is_kerberos:
            return None
        value, problem = self._read()
        del value
        return problem or None

    def _read(self) -> tuple[str | None, str]:
        kind, _, what = self.ref.partition(":")
        if kind == "env":
            value = os.environ.get(what)
            if value is None:
                return None, f"environment variable {what} is not set"
            if not value:
                return None, f"environment variable {what} is set but empty"
            return value, ""
        path = self.path
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            return None, f"cannot read secret file {path}: {exc.strerror or exc}"
        except UnicodeDecodeError:
            return None, f"secret file {path} is not UTF-8 text"
        if not value:
            return None, f"secret file {path} is empty"
        return value, ""

    @property
    def path(self) -> Path:
        """The file of a ``file:`` reference, relative to the environment file's folder."""
        path = Path(self.ref.partition(":")[2]).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def __str__(self) -> str:
        return self.ref

    __repr__ = __str__
