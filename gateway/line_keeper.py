"""Keeps this worker's view of every room fresh, and carries its visitors' heartbeats.

Each worker ticks every room a few times a second. A tick admits whoever is due, flushes the
heartbeats collected since the last one, and brings back a snapshot from which status checks
are answered locally. There is no leader: every worker's tick is as good as any other's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping

from redis.exceptions import RedisError

from queue_core.line_view import LineView
from queue_core.rooms import RoomConfig
from queue_core.store import LineStore

from .metrics import GatewayMetrics
from .proxy_stats import ProxyStats

log = logging.getLogger("waitroom.keeper")
# Heartbeats kept for a room while Redis is unreachable; beyond it the oldest are dropped
# (those visitors check again soon anyway).
MAX_PENDING_SEEN = 200_000
ENSURE_EVERY = 10.0


class LineKeeper:
    def __init__(
        self,
        store: LineStore,
        rooms: Mapping[str, RoomConfig],
        tick_seconds: float = 0.25,
        proxy_stats: ProxyStats | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or GatewayMetrics(rooms)
        self.proxy_stats = proxy_stats or ProxyStats()
        self._flushed_at = time.monotonic()
        self.rooms = rooms
        self.tick_seconds = tick_seconds
        # One view per lane of each room; `views` holds each room's main lane.
        self.lane_views = {
            name: {lane: LineView(name, lane) for lane in cfg.lane_shares()}
            for name, cfg in rooms.items()
        }
        self.views = {name: lanes[""] for name, lanes in self.lane_views.items()}
        self._seen: dict[str, dict[str, set[int]]] = {
            name: {lane: set() for lane in lanes} for name, lanes in self.lane_views.items()
        }
        self._refreshed_at: dict[str, float] = {}
        self._locks = {name: asyncio.Lock() for name in rooms}
        # When each room's settings were last seeded: again every ENSURE_EVERY seconds, so a
        # Redis that lost its data gets its rooms back within seconds.
        self._ensured_at: dict[str, float] = {}

    def view(self, room: str, lane: str = "") -> LineView:
        return self.lane_views[room].get(lane) or self.views[room]

    def note_seen(self, room: str, place: int, lane: str = "") -> None:
        seen = self._seen[room].get(lane)
        if seen is not None and len(seen) < MAX_PENDING_SEEN:
            seen.add(place)

    def age(self, room: str) -> float:
        """Seconds since this worker last heard from Redis about the room (inf if never)."""
        at = self._refreshed_at.get(room)
        return float("inf") if at is None else time.monotonic() - at

    def is_fresh(self, room: str) -> bool:
        return self.age(room) <= max(2.0, 8 * self.tick_seconds)

    async def refresh(self, room: str) -> LineView:
        """Tick the room now. Raises RedisError (heartbeats are kept for the next try)."""
        views = self.lane_views[room]
        async with self._locks[room]:
            if time.monotonic() - self._ensured_at.get(room, -ENSURE_EVERY) >= ENSURE_EVERY:
                await self.metrics.redis("ensure_room", self.store.ensure_room(self.rooms[room]))
                self._ensured_at[room] = time.monotonic()
            seen = self._seen[room]
            self._seen[room] = {lane: set() for lane in seen}
            holes_from = {lane: v.holes_next for lane, v in views.items()}
            try:
                snap = await self.metrics.redis(
                    "tick",
                    self.store.tick(
                        room, holes_from=holes_from, seen=seen, known=views[""].snapshot
                    ),
                )
            except BaseException:
                for lane, places in seen.items():
                    self._seen[room][lane] |= places
                raise
            for view in views.values():
                view.apply(snap)
            self._refreshed_at[room] = time.monotonic()
            self.metrics.snapshot(snap)
        return views[""]

    async def flush_proxy_stats(self) -> None:
        """Send this worker's proxied-request counts to Redis: one batch a second, not one
        write per request."""
        self._flushed_at = time.monotonic()
        pending = self.proxy_stats.drain()
        try:
            for (room, window), counts in pending.items():
                await self.store.record_proxy(room, window, counts)
        except RedisError as exc:
            self.proxy_stats.restore(pending)
            log.warning("proxy stats not flushed: %s", exc)

    async def start(self) -> None:
        """First tick of every room. A Redis that is down does not stop the gateway starting:
        visitors get a clear 'try again' page until it is back."""
        for room in self.rooms:
            try:
                await self.refresh(room)
            except RedisError as exc:
                log.warning("room %s: first tick failed: %s", room, exc)

    async def run(self) -> None:
        while True:
            for room in self.rooms:
                try:
                    await self.refresh(room)
                except RedisError as exc:
                    log.warning("room %s: tick failed: %s", room, exc)
                except Exception:
                    # Nothing may stop this loop: a worker that stops ticking serves a frozen
                    # line until restarted. (redis-py's cluster client has raised plain
                    # AttributeErrors while re-learning the slot map under load.)
                    log.exception("room %s: tick failed", room)
            if time.monotonic() - self._flushed_at >= 1.0:
                await self.flush_proxy_stats()
            # redis-py (8.1, Python 3.11) can lose a cancellation that lands while a command is
            # being sent: the call returns and this loop would go on for ever, still marked
            # as cancelled, and the worker would never finish shutting down.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            # Jitter keeps many workers from ticking in lockstep.
            await asyncio.sleep(self.tick_seconds * random.uniform(0.8, 1.2))
