"""One replay: plan the crowd, drive it at a gateway (or straight at the site), collect.

`replay()` takes URLs, so it runs the same against a private stack (`load.replay.stack`) or
one you started yourself.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from .cpu import CpuMeter
from .driver import Driver, DriverStats, TimedAction
from .journey import Endpoints, Journey, Visitor
from .model import plan_visitors
from .record import Recorder, VisitorRecord
from .scaling import ROOM, Squeeze, room_settings, sms_schedule
from .scenario import Scenario
from .transport import Transport
from .watch import GatewayWatch, RoomSample
from .wire import WireTransport

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
    cpu_s: dict[str, float] = field(default_factory=dict)  # party -> CPU seconds in the run
    gateway_samples: list[RoomSample] = field(default_factory=list)  # its /metrics, each second


def phone_numbers(count: int, seed: int) -> list[str]:
    """Distinct Czech mobile numbers from a random block, so reruns against one site's
    database do not meet the numbers (and bookings) of an earlier run."""
    base = random.Random(seed).randrange(0, 10**8 - count)
    return [f"+4206{base + i:08d}" for i in range(count)]


async def _slots_left(client: httpx.AsyncClient, backend: str) -> int | None:
    try:
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
    connections: int = 1024,
    max_seconds: float = 600.0,
    seed: int = 1,
    site_env: dict[str, str] | None = None,
    transport: Transport | None = None,
    pids: Mapping[str, list[int]] | None = None,
    room: dict[str, float] | None = None,
    watch: bool = True,
) -> RunResult:
    """Play the scenario's crowd. `pids` (party -> process ids) are measured for CPU; `room`
    is the gateway room's settings in real time (default: `scaling.room_settings`)."""
    plan = plan_visitors(scenario, squeeze.scale, seed)
    phones = phone_numbers(len(plan), seed + int(time.time()))
    records = [
        VisitorRecord(p.index, p.bot, squeeze.real(p.arrive_minute * 60), p.patience_minutes)
        for p in plan
    ]
    visitors = [Visitor(p, r, phone) for p, r, phone in zip(plan, records, phones, strict=True)]
    # Hundreds of thousands of long-lived records: without this, every full collection of the
    # cyclic GC walks them all (measured: pauses of up to half a second, sending requests late).
    gc.collect()
    gc.freeze()
    # One client for the few side requests, made before the clock starts: creating one costs
    # tens of milliseconds (an SSL context) that would stall every visitor.
    side = httpx.AsyncClient(timeout=10)
    wire = WireTransport(connections=connections) if transport is None else None
    transport = transport or wire
    assert transport is not None
    recorder = Recorder()
    result = RunResult(
        scenario,
        GATEWAY if gateway else DIRECT,
        squeeze,
        records,
        recorder,
        DriverStats(),
        room=(room or room_settings(scenario, squeeze)) if gateway else None,
        site_env=dict(site_env or {}),
        slots_before=await _slots_left(side, backend),
        started_unix=time.time(),
    )
    endpoints = Endpoints(site=gateway or backend, backend=backend, gateway=gateway)
    epoch = time.monotonic()
    journey = Journey(transport, recorder, scenario.behaviour, squeeze, endpoints, epoch, seed)
    now = journey.now

    def sms_change(at: float, per_second: float) -> TimedAction:
        async def run() -> None:
            reply = await side.post(
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

    def progress(second: int) -> None:
        # A long run says how it is doing every 30 s (stderr), so nobody waits ten minutes
        # to learn the driver fell behind in the first one.
        if second % 30 > 0 or result.limit_s < 60:
            return
        samples = driver.stats.seconds
        last, before = samples[-1], samples[-2] if len(samples) > 1 else None
        rate = last.started - (before.started if before else 0)
        print(
            f"  {second:4d} s: {last.present:,} present, {last.held:,} held on schedule, "
            f"{rate:,} requests started in the last second, {last.in_flight:,} in flight",
            file=sys.stderr,
        )

    driver = Driver(journey, visitors, actions=actions, probe=wire, on_second=progress)
    watcher = (
        GatewayWatch(f"{gateway}/metrics", ROOM, now, transport) if gateway and watch else None
    )
    meter = CpuMeter(pids or {}, alone={"driver": [os.getpid()]})
    meter.start()
    watching = asyncio.create_task(watcher.run()) if watcher else None
    try:
        result.stats = await driver.run(result.limit_s)
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        result.cpu_s = meter.stop()
        if wire is not None:
            await wire.aclose()
        gc.unfreeze()
    result.duration_s = now()
    result.slots_after = await _slots_left(side, backend)
    await side.aclose()
    if watcher is not None:
        result.gateway_samples = watcher.samples
    return result
