"""Whether a process still runs (for stale gating claims and lab supervisors)."""
from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int | None) -> bool:
    """True if ``pid`` runs; a zombie (killed, not yet reaped) counts as gone."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class ChildProcess:
    """For a lab server that runs one child process in ``self._proc`` (a ``subprocess.Popen``, or None)."""

    _proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None
