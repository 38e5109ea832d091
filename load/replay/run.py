"""One replay: plan the crowd, drive it at a gateway (or straight at the site), collect.

`replay()` takes URLs, so it runs the same against a private stack (`load.replay.stack`) or
one you started yourself.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from .driver import Driver, DriverStats, TimedAction, monotonic_clock
from .journey import Endpoints, Journey, Visitor
from .model import plan_visitors
from .record import Recorder, VisitorRecord
from .scaling import Squeeze, room_settings, sms_schedule
from .scenario import Scenario
from .transport import HttpxTransport, Transport

GATEWAY = "gateway"
DIRECT = "direct"


@dataclass
class RunResult:
    scenario: Scenario
    mode: str  # GATEWAY or DIRECT
    squeeze: Squeeze
    visitors: list[VisitorRecord]
    recorder: Recorder
    stats: DriverStats
    duration_s: float = 0.0
    limit_s: float = 0.0
    room: dict[str, float] | None = None  # the gateway room's squeezed settings
    site_env: dict[str, str] = field(default_factory=dict)
    slots_before: int | None = None
    slots_after: int | None = None
    sms_changes: list[dict[str, Any]] = field(default_factory=list)
    started_unix: float = 0.0


def phone_numbers(count: int, seed: int) -> list[str]:
    """Distinct Czech mobile numbers from a random block, so reruns against one site's
    database do not meet the numbers (and bookings) of an earlier run."""
    base = random.Random(seed).randrange(0, 10**8 - count)
    return [f"+4206{base + i:08d}" for i in range(count)]


async def _slots_left(backend: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(f"{backend}/_backend/sold-out")
        value = reply.json().get("slots_left")
        return int(value) if isinstance(value, int) else None
    except (httpx.HTTPError, ValueError):
        return None


async def replay(
    scenario: Scenario,
    squeeze: Squeeze,
    *,
    backend: str,
    gateway: str | None,
    admin_token: str = "",
    concurrency: int = 64,
    max_seconds: float = 600.0,
    seed: int = 1,
    site_env: dict[str, str] | None = None,
    transport: Transport | None = None,
) -> RunResult:
    plan = plan_visitors(scenario, squeeze.scale, seed)
    phones = phone_numbers(len(plan), seed + int(time.time()))
    records = [
        VisitorRecord(p.index, p.bot, squeeze.real(p.arrive_minute * 60), p.patience_minutes)
        for p in plan
    ]
    visitors = [Visitor(p, r, phone) for p, r, phone in zip(plan, records, phones, strict=True)]
    recorder = Recorder()
    now = monotonic_clock()
    endpoints = Endpoints(site=gateway or backend, backend=backend, gateway=gateway)
    own_transport = transport is None
    transport = transport or HttpxTransport(connections=concurrency)
    journey = Journey(transport, recorder, scenario.behaviour, squeeze, endpoints, now, seed)
    result = RunResult(
        scenario,
        GATEWAY if gateway else DIRECT,
        squeeze,
        records,
        recorder,
        DriverStats(),
        room=room_settings(scenario.gateway, squeeze) if gateway else None,
        site_env=dict(site_env or {}),
        started_unix=time.time(),
    )
    result.slots_before = await _slots_left(backend)

    def sms_change(at: float, per_second: float) -> TimedAction:
        async def run() -> None:
            async with httpx.AsyncClient(timeout=10) as client:
                reply = await client.post(
                    f"{backend}/_backend/admin/sms-rate",
                    json={"per_second": per_second},
                    headers={"Authorization": f"Bearer {admin_token}"},
                )
            result.sms_changes.append(
                {"at_s": round(now(), 3), "per_second": per_second, "status": reply.status_code}
            )

        return TimedAction(at, run)

    actions = [sms_change(at, rate) for at, rate in sms_schedule(scenario.site, squeeze)]
    result.limit_s = min(max_seconds, squeeze.real(scenario.duration_minutes * 60))
    driver = Driver(journey, visitors, concurrency=concurrency, actions=actions)
    try:
        result.stats = await driver.run(result.limit_s)
    finally:
        if own_transport:
            await transport.aclose()
    result.duration_s = now()
    result.slots_after = await _slots_left(backend)
    return result
