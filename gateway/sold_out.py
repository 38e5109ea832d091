"""The booking site's sold-out signal, read off the replies the gateway proxies.

The site sends ``X-Booking-Sold-Out: 1`` or ``0`` on every reply (booking_backend/headers.py).
Reading it costs a dict lookup per request; Redis hears of it only when the value a worker
heard for a room flips, and the store's script makes the change (and the audit entry, by
"backend") happen once however many workers heard it. The site can only take a room out of
sold-out mode that it put the room into: ops setting it by hand win.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
from redis.exceptions import RedisError
from starlette.requests import Request

from queue_core.rooms import RoomConfig
from queue_core.store import LineStore

from .ops.audit import AuditLog

log = logging.getLogger("waitroom.sold_out")
SOLD_OUT_HEADER = "x-booking-sold-out"
WHO = "backend"
WHY = {
    True: "the booking site says every date is booked",
    False: "the booking site has dates again",
}


class SoldOutSignal:
    def __init__(
        self,
        store: LineStore,
        audit: AuditLog,
        room_for_path: Callable[[str], RoomConfig | None],
        period: float = 0.25,
    ) -> None:
        self.store = store
        self.audit = audit
        self.room_for_path = room_for_path
        self.period = period
        self._heard: dict[str, bool] = {}  # room -> what the site said last
        self._passed_on: dict[str, bool] = {}  # room -> what this worker last told Redis

    def reply(self, request: Request, headers: httpx.Headers) -> None:
        """A proxy watcher: told of every reply the booking site sent."""
        value = headers.get(SOLD_OUT_HEADER)
        if value is None:
            return
        room = self.room_for_path(request.url.path)
        if room is not None:
            self.heard(room.name, value.strip() == "1")

    def heard(self, room: str, sold_out: bool) -> None:
        self._heard[room] = sold_out

    async def flush(self) -> None:
        """Pass on what changed since the last flush (nothing, almost always)."""
        for room, sold_out in list(self._heard.items()):
            if self._passed_on.get(room) == sold_out:
                continue
            changed = await self.store.follow_sold_out_signal(room, sold_out)
            self._passed_on[room] = sold_out
            if changed is not None:
                old, new = ("0", "1") if changed else ("1", "0")
                await self.audit.record(WHO, room, {"sold_out": (old, new)}, why=WHY[changed])
                log.info("room %s: sold out %s -> %s (%s)", room, old, new, WHY[changed])

    async def run(self) -> None:
        task = asyncio.current_task()
        while True:
            try:
                await self.flush()
            except RedisError as exc:
                log.warning("sold-out signal not passed on yet: %s", exc)
            # redis-py can swallow a cancellation that lands mid-command (see LineKeeper.run).
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(self.period)
