"""Is the admission rate exact? Several gateways tick one room; admitted_total is compared with
rate x time on the Redis server's clock.

Samples come from two places: this watcher's own ticks (one more gateway, ticking every
`every` seconds, each tick returning the server time and admitted_total from the same atomic
script), and the room's history, which the gateways' ticks write every 10 s. Both are taken at
tick instants. Between ticks, slots that have fallen due wait for the next tick of any gateway;
`lag` measures that separately, from reads that do not tick.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from queue_core.connect import connect
from queue_core.store import LineStore


@dataclass(frozen=True, slots=True)
class Sample:
    now_us: int  # Redis server time
    admitted_total: int


def admission_error(samples: Sequence[Sample], rate_per_minute: float) -> float:
    """The largest |admitted since the first sample - rate x time since it|."""
    if len(samples) < 2:
        return 0.0
    ordered = sorted(samples, key=lambda s: s.now_us)
    first = ordered[0]
    per_us = rate_per_minute / 60_000_000
    return max(
        abs((s.admitted_total - first.admitted_total) - per_us * (s.now_us - first.now_us))
        for s in ordered
    )


@dataclass
class AdmissionRun:
    rate_per_minute: float
    ticks: list[Sample] = field(default_factory=list)
    history: list[Sample] = field(default_factory=list)
    passive: list[Sample] = field(default_factory=list)
    tick_ms: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def summary(self) -> dict[str, Any]:
        if self.error is not None:
            raise RuntimeError(f"admission watcher failed: {self.error!r}") from self.error
        samples = self.ticks + self.history
        start = min(s.now_us for s in samples)
        end = max(s.now_us for s in samples)
        # The passive reads, against the slot clock started by the first tick sample.
        first = min(self.ticks, key=lambda s: s.now_us)
        per_us = self.rate_per_minute / 60_000_000
        lag = max(
            (
                per_us * (s.now_us - first.now_us) - (s.admitted_total - first.admitted_total)
                for s in self.passive
                if s.now_us >= first.now_us
            ),
            default=0.0,
        )
        ticks_ms = sorted(self.tick_ms)
        return {
            "admission_error": round(admission_error(samples, self.rate_per_minute), 3),
            "admission_error_history_only": round(
                admission_error(self.history, self.rate_per_minute), 3
            ),
            "admission_seconds": round((end - start) / 1e6, 1),
            "admission_samples": len(samples),
            "admission_history_samples": len(self.history),
            "admission_admitted": max(s.admitted_total for s in samples)
            - min(s.admitted_total for s in samples),
            "admission_lag_max": round(lag, 2),
            "tick_ms_p50": round(statistics.median(ticks_ms), 2),
            "tick_ms_p99": round(ticks_ms[int(0.99 * (len(ticks_ms) - 1))], 2),
        }


class AdmissionWatch:
    """Samples one room from a thread of its own while the rest of the bench goes on."""

    def __init__(
        self, redis_url: str, prefix: str, room: str, rate_per_minute: float, every: float
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.room = room
        self.every = every
        self.result = AdmissionRun(rate_per_minute)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="admission-watch", daemon=True)
        self.started_at: float | None = None

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread.start()

    def stop(self) -> AdmissionRun:
        self._stop.set()
        self._thread.join()
        return self.result

    def _main(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # reported by summary(), in the main thread
            self.result.error = exc

    async def _watch(self) -> None:
        redis = connect(self.redis_url)
        store = LineStore(redis, self.prefix)
        state = store.keys(self.room).state
        run = self.result
        try:
            first_us: int | None = None
            while not self._stop.is_set():
                started = time.perf_counter()
                snap = await store.tick(self.room)
                run.tick_ms.append((time.perf_counter() - started) * 1000)
                run.ticks.append(Sample(snap.now_us, snap.admitted_total))
                first_us = first_us or snap.now_us
                await asyncio.sleep(self.every / 2)
                async with redis.pipeline(transaction=True) as pipe:
                    pipe.time()
                    pipe.hget(state, "admitted_total")
                    (seconds, micros), admitted = await pipe.execute()
                run.passive.append(Sample(int(seconds) * 1_000_000 + int(micros), int(admitted)))
                await asyncio.sleep(self.every / 2)
            if first_us is not None:
                history = await store.history(self.room)
                run.history = [
                    Sample(s.now_us, s.admitted_total) for s in history if s.now_us > first_us
                ]
        finally:
            await redis.aclose()
