"""The audit log: every change to a room, who made it and why, in a Redis stream."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from queue_core.connect import RedisClient

MAX_ENTRIES = 100_000  # about, trimmed by Redis in whole blocks (MAXLEN ~)
PAGE_SIZE = 1000  # entries per XREVRANGE when reading the stream through


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    at: str  # ISO 8601, UTC
    who: str
    room: str
    setting: str
    old: str
    new: str
    why: str


class AuditLog:
    def __init__(self, redis: RedisClient, key: str) -> None:
        self.redis = redis
        self.key = key

    async def record(
        self, who: str, room: str, changes: Mapping[str, tuple[str, str]], why: str = ""
    ) -> None:
        """One entry per setting changed: `changes` maps setting -> (old, new)."""
        at = datetime.now(UTC).isoformat(timespec="seconds")
        async with self.redis.pipeline(transaction=True) as pipe:
            for setting, (old, new) in changes.items():
                fields: dict[Any, Any] = {
                    "at": at,
                    "who": who,
                    "room": room,
                    "setting": setting,
                    "old": old,
                    "new": new,
                    "why": why,
                }
                pipe.xadd(self.key, fields, maxlen=MAX_ENTRIES, approximate=True)
            await pipe.execute()

    async def pages(
        self, room: str | None = None, size: int = PAGE_SIZE
    ) -> AsyncIterator[list[Entry]]:
        """Every entry, newest first, a page at a time: the whole stream (up to MAX_ENTRIES)
        without asking Redis for it in one reply."""
        newest = "+"
        while True:
            raw: Any = await self.redis.xrevrange(self.key, max=newest, min="-", count=size)
            if not raw:
                return
            page = [_entry(entry_id, fields) for entry_id, fields in raw]
            yield [e for e in page if room is None or e.room == room]
            if len(raw) < size:
                return
            newest = "(" + page[-1].id  # exclusive: go on just below the last one read

    async def recent(self, count: int = 100, room: str | None = None) -> list[Entry]:
        entries: list[Entry] = []
        async for page in self.pages(room, size=min(PAGE_SIZE, max(count, 10))):
            entries += page
            if len(entries) >= count:
                break
        return entries[:count]


def _entry(entry_id: bytes | str, fields: Mapping[Any, Any] | None) -> Entry:
    f = {_s(k): _s(v) for k, v in (fields or {}).items()}
    return Entry(
        _s(entry_id),
        f.get("at", ""),
        f.get("who", ""),
        f.get("room", ""),
        f.get("setting", ""),
        f.get("old", ""),
        f.get("new", ""),
        f.get("why", ""),
    )


def as_csv(entries: Iterable[Entry], *, header: bool = True) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(Entry.__slots__))
    if header:
        writer.writeheader()
    for e in entries:
        writer.writerow({k: _cell(v) for k, v in asdict(e).items()})
    return buf.getvalue()


def _cell(value: str) -> str:
    # A leading =, +, - or @ would run as a formula in a spreadsheet: quote it away. An empty
    # value stays empty (the empty string is "in" every string, so test for it first).
    return "'" + value if value and value[0] in "=+-@" else value


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
