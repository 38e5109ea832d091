"""The audit log: every change to a room, who made it and why, in a Redis stream."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from queue_core.connect import RedisClient

MAX_ENTRIES = 100_000  # about, trimmed by Redis in whole blocks (MAXLEN ~)


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

    async def recent(self, count: int = 100, room: str | None = None) -> list[Entry]:
        raw: Any = await self.redis.xrevrange(self.key, count=count if room is None else count * 10)
        entries = []
        for entry_id, fields in raw or []:
            f = {_s(k): _s(v) for k, v in (fields or {}).items()}
            if room is not None and f.get("room") != room:
                continue
            entries.append(
                Entry(
                    _s(entry_id),
                    f.get("at", ""),
                    f.get("who", ""),
                    f.get("room", ""),
                    f.get("setting", ""),
                    f.get("old", ""),
                    f.get("new", ""),
                    f.get("why", ""),
                )
            )
        return entries[:count]


def as_csv(entries: Sequence[Entry]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(Entry.__slots__))
    writer.writeheader()
    for e in entries:
        # A leading =, +, - or @ would run as a formula in a spreadsheet: quote it away.
        writer.writerow({k: ("'" + v if v[:1] in "=+-@" else v) for k, v in asdict(e).items()})
    return buf.getvalue()


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
