"""Wait estimates and polling intervals: pure arithmetic, time passed in."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

# The estimate's range: the measured outflow wobbles, so promise a band, not a second.
RANGE_LOW = 0.85
RANGE_HIGH = 1.25
MAX_RANGE_HIGH = 3.0
MIN_POLL_SECONDS = 2.0
MAX_POLL_SECONDS = 45.0
WINDOW_US = 60_000_000
MIN_WINDOW_US = 5_000_000


@dataclass(frozen=True, slots=True)
class Estimate:
    seconds: float
    low: float
    high: float


class Outflow:
    """Measured people-per-second leaving the line, over the last minute of backlog.

    Only time with people waiting counts: an empty line's outflow says nothing about the rate.
    Nor does time under another admission rate: when ops change it (or pause, or resume), the
    measurement starts again, and until it covers a full window again the estimate leans on
    the configured rate (`settled`).
    """

    def __init__(self) -> None:
        self._samples: deque[tuple[int, int]] = deque()
        # band() walks the whole window, and every status check asks for it: it only changes
        # when a sample arrives, so it is worked out once per tick, not once per check.
        self._band: dict[int, tuple[float, float] | None] = {}
        self._rate: float | None = None  # the admission rate the samples were taken under
        self._started_us: int | None = None  # when the measurement last (re)started

    def observe(
        self, now_us: int, processed: int, waiting: int, rate_per_minute: float | None = None
    ) -> None:
        """One tick's figures; `rate_per_minute` is the rate admitting people then (0 while
        paused), so that a change of rate restarts the measurement."""
        if rate_per_minute is not None and rate_per_minute != self._rate:
            self._rate = rate_per_minute
            self._restart()
        if waiting == 0:
            self._restart()
            return
        if self._samples and now_us <= self._samples[-1][0]:
            return
        self._band.clear()
        if self._started_us is None:
            self._started_us = now_us
        self._samples.append((now_us, processed))
        while now_us - self._samples[0][0] > WINDOW_US:
            self._samples.popleft()

    def _restart(self) -> None:
        self._samples.clear()
        self._band.clear()
        self._started_us = None

    def band(self, stretch_us: int = 10_000_000) -> tuple[float, float] | None:
        """The slowest and fastest outflow over stretches of the window: how uneven it is."""
        try:
            return self._band[stretch_us]
        except KeyError:
            band = self._band[stretch_us] = self._measure_band(stretch_us)
            return band

    def _measure_band(self, stretch_us: int) -> tuple[float, float] | None:
        rates = []
        start = self._samples[0] if self._samples else None
        for t, p in self._samples:
            assert start is not None
            if t - start[0] >= stretch_us:
                rates.append((p - start[1]) * 1_000_000 / (t - start[0]))
                start = (t, p)
        if len(rates) < 2:
            return None
        return min(rates), max(rates)

    def settled(self) -> float:
        """How much of a full window the measurement covers, from 0 (just restarted) to 1."""
        if self._started_us is None:
            return 0.0
        return min(1.0, (self._samples[-1][0] - self._started_us) / WINDOW_US)

    def per_second(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, p0), (t1, p1) = self._samples[0], self._samples[-1]
        if t1 - t0 < MIN_WINDOW_US or p1 <= p0:
            return None
        return (p1 - p0) * 1_000_000 / (t1 - t0)


def estimate_wait(
    ahead: int,
    measured_per_s: float | None,
    rate_per_minute: float,
    band: tuple[float, float] | None = None,
    settled: float = 1.0,
) -> Estimate | None:
    """Seconds until a visitor with `ahead` people in front is admitted, or None if unknown.

    Recomputed at every check from the last minute's measured outflow, so an estimate that
    proved wrong (people gave up ahead, the site is full) corrects itself within a minute.
    The range widens with how uneven that outflow was (`band`: slowest and fastest stretch).
    A measurement that covers only part of a window (`settled` below 1: ops changed the rate,
    paused or resumed a moment ago) says little yet, and the old rate's minute would say
    something untrue; so it is weighed against the configured rate, more as it grows, and the
    range covers the configured rate's answer as well until the window is full.
    """
    configured = rate_per_minute / 60.0
    weight = 0.0
    if measured_per_s:
        # Squared: a few slots' worth of measurement is mostly rounding (one slot more or
        # less in 20 s at 6 a minute is a third), so it counts for little until it is long.
        weight = max(0.0, min(1.0, settled)) ** 2
    per_s = weight * (measured_per_s or 0.0) + (1 - weight) * configured
    if per_s <= 0:
        return None
    # Being next still means waiting for the next slot.
    seconds = (ahead + 1) / per_s
    low, high = RANGE_LOW, RANGE_HIGH
    if band is not None and measured_per_s:
        slow, fast = band
        if fast > 0:
            low = min(low, per_s / fast)
        high = MAX_RANGE_HIGH if slow <= 0 else min(MAX_RANGE_HIGH, max(high, per_s / slow))
    low, high = seconds * low, seconds * high
    if weight < 1 and configured > 0:
        by_rate = (ahead + 1) / configured
        low, high = min(low, by_rate * RANGE_LOW), max(high, by_rate * RANGE_HIGH)
    return Estimate(seconds, low, high)


def poll_after(
    wait_seconds: float | None, grace_seconds: float, rng: random.Random | None = None
) -> float:
    """How long a waiting visitor should wait before checking again.

    Far back, rarely (the answer barely changes); near the front, often (so nobody misses
    their turn). Jitter spreads a crowd that arrived together. Always well inside the grace
    period, so checking as told never counts as leaving.
    """
    ceiling = min(MAX_POLL_SECONDS, grace_seconds / 4)
    base = ceiling if wait_seconds is None else wait_seconds / 10
    base = max(MIN_POLL_SECONDS, min(ceiling, base))
    jitter = (rng or random).uniform(0.85, 1.15)
    return round(max(MIN_POLL_SECONDS, min(ceiling, base * jitter)), 1)


def poll_before_opening(seconds_to_open: float, rng: random.Random | None = None) -> float:
    """Before a scheduled opening: rarely while it is far off, then once just after it, spread
    over a few seconds so a crowd that waited together does not hit the gateway in one instant."""
    r = rng or random
    if seconds_to_open > MAX_POLL_SECONDS:
        return round(min(MAX_POLL_SECONDS, seconds_to_open / 2) * r.uniform(0.85, 1.0), 1)
    return round(max(MIN_POLL_SECONDS, seconds_to_open + r.uniform(1.0, 10.0)), 1)
