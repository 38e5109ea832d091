"""One process per booking database, enforced.

The SMS gateway (its queue, its rate and the simulation inbox) and the cached count behind
the sold-out header live in the process's memory. Two processes on one site would each send
20 messages a second, so the operator's limit, the very bottleneck being simulated, would
double, and ops raising the rate would reach only one of them. Rather than documenting that
and hoping, the process holding the site takes an exclusive lock next to its database file;
a second one (``uvicorn --workers 2``, or a second copy started by hand) fails at start-up
with a message that says why, and uvicorn then stops the whole server.

The lock is ``flock`` on ``<BACKEND_DB>.lock``: the kernel drops it when the process dies,
even by ``kill -9``, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class AlreadyServed(RuntimeError):
    """Another live process already runs the site on this database file."""


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


class SiteLock:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyServed(
                f"another booking backend process (pid {holder}) already serves "
                f"{self.db_path}. The SMS gateway, its 20/s limit and the "
                "sold-out count live in each process's memory, so the site runs as exactly one "
                "process: start it without --workers, or give each copy its own BACKEND_DB."
            ) from None
        # The pid is only for that message; the lock itself is what counts.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        # The file stays: unlinking it could let a third process lock a new file while a
        # second still waits on the old one.
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
