"""The gateway's own figures during a replay, read from its /metrics once a second.

What visitors notice (the moment a poll says "admitted") lags the admission by up to a poll
interval; the gateway's counters are exact: `waitroom_room_admitted` and the rest are the
room's running totals in Redis as of the worker's last tick. The report draws the set rate
against these, not against what visitors happened to notice. /metrics answers loopback
only by default (WAITROOM_METRICS_ALLOW), which is where the replay runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from .transport import Transport

# Gauge name -> the RoomSample field it fills.
GAUGES = {
    "waitroom_room_admitted": "admitted",
    "waitroom_room_abandoned": "abandoned",
    "waitroom_room_no_shows": "no_shows",
    "waitroom_line_waiting": "waiting",
    "waitroom_admitted_active": "active",
    "waitroom_admission_rate_per_minute": "rate_per_minute",
}


@dataclass(frozen=True, slots=True)
class RoomSample:
    at: float  # real seconds since the replay started
    admitted: float = 0.0  # running totals since the room began
    abandoned: float = 0.0
    no_shows: float = 0.0
    waiting: float = 0.0
    active: float = 0.0
    rate_per_minute: float = 0.0


def parse_metrics(text: str, room: str) -> dict[str, float]:
    """The room's gauges from Prometheus text, e.g. `waitroom_room_admitted{room="x"} 12.0`."""
    label = f'{{room="{room}"}}'
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, brace, rest = line.partition("{")
        target = GAUGES.get(name)
        if target is None or not brace or not rest.startswith(label[1:]):
            continue
        try:
            found[target] = float(rest[len(label) - 1 :].split()[0])
        except (IndexError, ValueError):
            continue
    return found


@dataclass
class GatewayWatch:
    url: str  # the gateway's /metrics
    room: str
    now: Callable[[], float]
    transport: Transport
    every_s: float = 1.0
    samples: list[RoomSample] = field(default_factory=list)
    failures: int = 0

    async def sample(self) -> None:
        reply = await self.transport.request("GET", self.url)
        if reply.status != 200:
            self.failures += 1
            return
        values = parse_metrics(reply.body.decode("utf-8", "replace"), self.room)
        if "admitted" not in values:
            self.failures += 1
            return
        self.samples.append(RoomSample(at=round(self.now(), 3), **values))

    async def run(self) -> None:
        """Sample until cancelled (the replay cancels it when the crowd is done)."""
        while True:
            await self.sample()
            await asyncio.sleep(self.every_s)
