"""The replay's engine: every visitor's next step in one timer heap.

A visitor is not a task, a coroutine or a client. It is a small record and an entry in a
heap keyed by when its next step is due; the loop pops due steps and runs each as a short
task whose one request goes out over the shared keep-alive connections (`load.replay.wire`).
140,000 waiting visitors therefore cost 140,000 small objects and heap entries.

When the machine cannot keep up, requests go out late. Lateness (when a request was written
to a connection, less when it was due) is measured for every request, and once a second the
driver counts how many visitors are present and how many of them are *overdue*: a due step
not yet sent more than `LATE_S` after it was due. A visitor is held only while present and
on schedule, so "held" never counts visitors the driver has quietly stopped serving.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .journey import Journey, Visitor
from .record import ERROR, LATE_S, NOT_ARRIVED, UNFINISHED

BATCH = 256  # steps started between two yields to the event loop
# The loop sleeps at least this long: steps due within one slice start together, so a crowd
# whose steps are due every few hundred microseconds costs one wake-up per slice, not per
# step (a wake-up costs about as much as a request). It bounds the lateness it adds.
SLICE_S = 0.004


@dataclass(frozen=True, slots=True)
class Second:
    """The driver's state at the end of one real second."""

    at: int
    started: int  # requests handed to the transport so far
    present: int  # arrived, journey not over
    overdue: int  # of those, with a due step not sent for more than LATE_S
    in_flight: int  # requests sent and not yet answered
    queued: int  # requests waiting for a free connection
    connections: int

    @property
    def held(self) -> int:
        return self.present - self.overdue


@dataclass
class DriverStats:
    steps: int = 0
    seconds: list[Second] = field(default_factory=list)
    stopped_early: bool = False  # the time limit cut the replay short
    crashes: int = 0  # journey steps that raised (a driver bug; should stay 0)
    max_loop_gap_s: float = 0.0  # the longest the loop went without a turn
    max_rss_mb: float = 0.0  # the driver process's peak memory
    cpu_s: float = 0.0  # the driver process's CPU over the run (user + system)

    @property
    def max_present(self) -> int:
        return max((s.present for s in self.seconds), default=0)

    @property
    def max_held(self) -> int:
        return max((s.held for s in self.seconds), default=0)


@dataclass(frozen=True, slots=True)
class TimedAction:
    at: float  # real seconds after the start
    run: Callable[[], Awaitable[None]]


class Probe(Protocol):
    """What the driver asks its transport about, once a second (`WireTransport` has it)."""

    def oldest_queued(self) -> float | None: ...  # time.monotonic() of the oldest queued

    def queued(self) -> int: ...  # requests waiting for a connection

    def open_connections(self) -> int: ...


class _NoProbe:
    def oldest_queued(self) -> float | None:
        return None

    def queued(self) -> int:
        return 0

    def open_connections(self) -> int:
        return 0


class Driver:
    def __init__(
        self,
        journey: Journey,
        visitors: Sequence[Visitor],
        *,
        actions: Sequence[TimedAction] = (),
        probe: Probe | None = None,
        on_second: Callable[[int], None] | None = None,
    ) -> None:
        self.journey = journey
        self.visitors = visitors
        self.actions = actions
        self.probe: Probe = probe or _NoProbe()
        self.on_second = on_second
        self.stats = DriverStats()
        self._heap: list[tuple[float, int, Visitor]] = []
        self._seq = itertools.count()
        self._present = 0
        self._in_flight = 0
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = 0.0

    async def run(self, limit_s: float) -> DriverStats:
        """Play every visitor's journey; stop after `limit_s` real seconds at the latest."""
        self._heap = [(v.record.planned_at, next(self._seq), v) for v in self.visitors]
        heapq.heapify(self._heap)
        heap = self._heap
        now = self.journey.now
        running: set[asyncio.Task[None]] = set()
        side = [asyncio.create_task(self._timed(a)) for a in self.actions]
        cpu_start = time.process_time()
        second = 0
        resume = now()  # when the loop meant to run next
        try:
            while heap or running:
                t = now()
                # How much later than it meant to the loop ran: the driver's own stalls (CPU
                # it did not get, or work done in one go), apart from the server's slowness.
                self.stats.max_loop_gap_s = max(self.stats.max_loop_gap_s, t - resume)
                resume = t
                if t >= second + 1:
                    # One sample stands for any seconds a stall skipped.
                    skipped = range(second + 1, int(t) + 1)
                    second = int(t)
                    self._sample(skipped, t)
                if t >= limit_s:
                    self.stats.stopped_early = bool(heap or running)
                    break
                if not heap or heap[0][0] > t:
                    wake = max(heap[0][0] if heap else t + 1, t + SLICE_S)
                    resume = min(wake, second + 1, limit_s)
                    await self._sleep_until(resume)
                    resume = min(resume, now())  # woken early by a sooner step: not a stall
                    continue
                for _ in range(BATCH):
                    if not heap or heap[0][0] > t:
                        break
                    due, _, visitor = heapq.heappop(heap)
                    visitor.due = due
                    task = asyncio.create_task(self._step(visitor))
                    running.add(task)
                    task.add_done_callback(running.discard)
                await asyncio.sleep(0)
        finally:
            for task in [*running, *side]:
                task.cancel()
            await asyncio.gather(*running, *side, return_exceptions=True)
            self.stats.cpu_s = time.process_time() - cpu_start
            self.stats.max_rss_mb = _max_rss_mb()
        for visitor in self.visitors:
            if visitor.record.outcome == UNFINISHED:
                visitor.record.detail = visitor.record.detail or visitor.state
            elif visitor.record.outcome == NOT_ARRIVED and visitor.record.arrived_at:
                visitor.record.outcome = UNFINISHED
        return self.stats

    async def _sleep_until(self, at: float) -> None:
        """Sleep until `at`, or until a step schedules something sooner (`_push`)."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._wake_at = at
        timer = loop.call_later(max(0.0, at - self.journey.now()), _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _push(self, due: float, visitor: Visitor) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), visitor))
        if self._waiter is not None and due + SLICE_S < self._wake_at:
            _wake(self._waiter)
            self._waiter = None

    def _sample(self, seconds: range, t: float) -> None:
        cutoff = t - LATE_S
        heap = self._heap
        overdue = 0
        if heap and heap[0][0] < cutoff:
            overdue = _overdue(heap, cutoff)
        oldest = self.probe.oldest_queued()
        if oldest is not None and oldest - self.journey.epoch < cutoff:
            overdue += self.probe.queued()  # an upper bound: the queue is short when it is not
        for second in seconds:
            self.stats.seconds.append(
                Second(
                    at=second,
                    started=self.journey.started,
                    present=self._present,
                    overdue=min(overdue, self._present),
                    in_flight=self._in_flight,
                    queued=self.probe.queued(),
                    connections=self.probe.open_connections(),
                )
            )
            if self.on_second is not None:
                self.on_second(second)

    async def _step(self, visitor: Visitor) -> None:
        arriving = visitor.state == "arrive"
        if arriving:
            self._present += 1
        self._in_flight += 1
        try:
            delay = await self.journey.step(visitor)
        except Exception as exc:  # a bug in a journey must show, not silently drop a visitor
            self.stats.crashes += 1
            visitor.record.outcome = ERROR
            visitor.record.detail = f"driver:{type(exc).__name__}:{exc}"[:200]
            delay = None
        finally:
            self._in_flight -= 1
        self.stats.steps += 1
        if delay is None:
            self._present -= 1
        else:
            self._push(self.journey.now() + delay, visitor)

    async def _timed(self, action: TimedAction) -> None:
        await asyncio.sleep(max(0.0, action.at - self.journey.now()))
        await action.run()


def _overdue(heap: list[tuple[float, int, Visitor]], cutoff: float) -> int:
    """Arrived visitors whose step was due before `cutoff`. In a binary heap every entry due
    before the cutoff has its parent due before it too, so a walk from the root that stops
    at the first entry due later visits the overdue entries and their children only: the
    count costs as much as the backlog, not as the crowd (300,000 entries a second)."""
    count = 0
    stack = [0]
    size = len(heap)
    while stack:
        i = stack.pop()
        if i < size and heap[i][0] < cutoff:
            if heap[i][2].state != "arrive":  # not yet arrived: not present, not held
                count += 1
            stack.append(2 * i + 1)
            stack.append(2 * i + 2)
    return count


def _max_rss_mb() -> float:
    try:
        import resource
    except ImportError:  # not on this platform
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def monotonic_clock(start: float | None = None) -> Callable[[], float]:
    """Real seconds since `start` (a time.monotonic() reading; default: now)."""
    epoch = time.monotonic() if start is None else start
    return lambda: time.monotonic() - epoch
