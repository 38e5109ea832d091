"""The SQLite file behind the site: schema, durability settings, and running work off the loop.

One connection and one lock: every piece of work runs in a worker thread holding the lock, so
the event loop never blocks on disk and no two transactions of this process interleave.
Writes also take SQLite's own write lock (``BEGIN IMMEDIATE``), which keeps a second process
on the same file safe too. WAL with ``synchronous=FULL`` makes a commit durable before we
answer: a booking we confirmed survives ``kill -9`` and a power cut.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS centres (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    position INTEGER NOT NULL
);
-- One row per appointment; reference is NULL while the slot is free.
CREATE TABLE IF NOT EXISTS slots (
    centre TEXT NOT NULL REFERENCES centres (id),
    day TEXT NOT NULL,
    number INTEGER NOT NULL,
    time TEXT NOT NULL,
    reference TEXT,
    PRIMARY KEY (centre, day, number)
);
-- Partial, so the planner never walks every free (NULL) slot through it: one booking can
-- never hold two slots.
CREATE UNIQUE INDEX IF NOT EXISTS slot_holders ON slots (reference) WHERE reference IS NOT NULL;
CREATE INDEX IF NOT EXISTS free_slots ON slots (centre, day, number) WHERE reference IS NULL;
-- Free and total slots per centre and day, kept in step with slots in the same transactions,
-- so listing availability and the sold-out check never scan every slot.
CREATE TABLE IF NOT EXISTS day_stock (
    centre TEXT NOT NULL REFERENCES centres (id),
    day TEXT NOT NULL,
    free INTEGER NOT NULL CHECK (free >= 0),
    total INTEGER NOT NULL,
    PRIMARY KEY (centre, day)
);
-- One row per phone number: a booking with a slot, or a registration without a date. The
-- UNIQUE constraints are the last line of defence against double booking.
CREATE TABLE IF NOT EXISTS bookings (
    reference TEXT PRIMARY KEY,
    phone TEXT NOT NULL UNIQUE,
    centre TEXT,
    day TEXT,
    number INTEGER,
    created_at REAL NOT NULL,
    booked_at REAL,
    UNIQUE (centre, day, number)
);
-- The current PIN of each phone number; a new PIN replaces the old one.
CREATE TABLE IF NOT EXISTS pins (
    phone TEXT PRIMARY KEY,
    challenge_id TEXT NOT NULL,
    pin_hash TEXT NOT NULL,
    requested_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    used INTEGER NOT NULL DEFAULT 0
);
"""


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (see ``write_transaction``), so Python's
        # sqlite3 module never opens one behind our back.
        connection = sqlite3.connect(
            self.path, timeout=10, isolation_level=None, check_same_thread=False
        )
        connection.row_factory = sqlite3.Row
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.executescript(SCHEMA)
        self._connection = connection

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def run_sync(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` now, on this thread; for startup and tests."""
        with self._lock:
            if self._connection is None:
                raise RuntimeError("database is not open")
            return work(self._connection)

    async def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in a worker thread. A cancelled caller still waits for it to finish,
        so a visitor who hangs up can never leave half a transaction behind."""
        return await anyio.to_thread.run_sync(self.run_sync, work)


@contextlib.contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if the block raises (including a Refusal)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
