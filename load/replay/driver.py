"""The replay's engine: a heap of timed steps and a bounded number of requests in flight.

A visitor is not a task. It is an entry in a heap keyed by when its next step is due; the
loop pops due steps and runs each as a short task, never more than `concurrency` at once,
so 100,000 waiting visitors cost 100,000 small objects and heap entries, not 100,000
coroutines with their timers. When the machine cannot keep up, steps start late: the lag
(due time to start) is measured and reported, because a replay that fell behind measures
the driver, not the system.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .journey import Journey, Visitor
from .record import ERROR, NOT_ARRIVED, UNFINISHED, percentile

LAG_SAMPLE_CAP = 100_000


@dataclass
class DriverStats:
    steps: int = 0
    max_active: int = 0  # visitors arrived and not yet finished, at the busiest moment
    active_per_second: dict[int, int] = field(default_factory=dict)
    lag_samples: list[float] = field(default_factory=list)
    lag_max_s: float = 0.0
    stopped_early: bool = False  # the time limit cut the replay short
    crashes: int = 0  # journey steps that raised (a driver bug; should stay 0)

    def lag(self, pct: float) -> float | None:
        return percentile(self.lag_samples, pct)


@dataclass(frozen=True, slots=True)
class TimedAction:
    at: float  # real seconds after the start
    run: Callable[[], Awaitable[None]]


class Driver:
    def __init__(
        self,
        journey: Journey,
        visitors: Sequence[Visitor],
        *,
        concurrency: int = 64,
        actions: Sequence[TimedAction] = (),
    ) -> None:
        self.journey = journey
        self.visitors = visitors
        self.concurrency = concurrency
        self.actions = actions
        self.stats = DriverStats()
        self._heap: list[tuple[float, int, Visitor]] = []
        self._seq = itertools.count()
        self._active = 0

    def _push(self, at: float, visitor: Visitor) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), visitor))

    async def run(self, limit_s: float) -> DriverStats:
        """Play every visitor's journey; stop after `limit_s` real seconds at the latest."""
        for visitor in self.visitors:
            self._push(visitor.record.planned_at, visitor)
        now = self.journey.now
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()
        side = [asyncio.create_task(self._timed(a)) for a in self.actions]
        try:
            while self._heap or running:
                t = now()
                self.stats.active_per_second[int(t)] = self._active
                if t >= limit_s:
                    self.stats.stopped_early = True
                    break
                if not self._heap or self._heap[0][0] > t:
                    wake = min(self._heap[0][0] if self._heap else t + 0.05, t + 0.05, limit_s)
                    await asyncio.sleep(max(0.0, wake - t))
                    continue
                due, _, visitor = heapq.heappop(self._heap)
                await slots.acquire()
                self._note_lag(now() - due)
                task = asyncio.create_task(self._step(visitor, slots))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in [*running, *side]:
                task.cancel()
            await asyncio.gather(*running, *side, return_exceptions=True)
        for visitor in self.visitors:
            if visitor.record.outcome == UNFINISHED:
                visitor.record.detail = visitor.record.detail or visitor.state
            elif visitor.record.outcome == NOT_ARRIVED and visitor.record.arrived_at:
                visitor.record.outcome = UNFINISHED
        return self.stats

    async def _step(self, visitor: Visitor, slots: asyncio.Semaphore) -> None:
        arriving = visitor.state == "arrive"
        try:
            delay = await self.journey.step(visitor)
        except Exception as exc:  # a bug in a journey must show, not silently drop a visitor
            self.stats.crashes += 1
            visitor.record.outcome = ERROR
            visitor.record.detail = f"driver:{type(exc).__name__}:{exc}"[:200]
            delay = None
        finally:
            slots.release()
        self.stats.steps += 1
        if arriving:
            self._active += 1
            self.stats.max_active = max(self.stats.max_active, self._active)
        if delay is None:
            self._active -= 1
        else:
            self._push(self.journey.now() + delay, visitor)

    def _note_lag(self, lag: float) -> None:
        self.stats.lag_max_s = max(self.stats.lag_max_s, lag)
        if len(self.stats.lag_samples) < LAG_SAMPLE_CAP:
            self.stats.lag_samples.append(lag)

    async def _timed(self, action: TimedAction) -> None:
        await asyncio.sleep(max(0.0, action.at - self.journey.now()))
        await action.run()


def monotonic_clock() -> Callable[[], float]:
    """Real seconds since the call."""
    start = time.monotonic()
    return lambda: time.monotonic() - start
