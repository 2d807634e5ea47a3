"""One analysis at a time per output folder (local folders only): a lock file with the owner's
pid and host.

A lock left by a process that no longer runs on this host is stale and is taken over; a lock held
by a live process (or by another host, which cannot be checked) stops the new run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".analyze.lock"


class OutputBusy(Exception):
    """Another analysis holds the output folder; the message says which and what to do."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    def __init__(self, output: str | Path):
        self.path = Path(output) / LOCK_NAME
        self._held = False

    def _owner(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                same_host = owner.get("host") == me["host"]
                if same_host and not _alive(int(owner.get("pid", -1))):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                since = time.strftime("%Y-%m-%d %H:%M", time.localtime(owner.get("started", 0)))
                raise OutputBusy(
                    f"another analysis (pid {owner.get('pid')} on {owner.get('host')}, started "
                    f"{since}) is writing to {self.path.parent}; wait for it, or delete "
                    f"{self.path} if that process is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._held = True
            return
        raise OutputBusy(f"cannot take the lock {self.path}")

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False
