"""A log-bucketed histogram: percentiles over a whole run in constant memory. Pure.

A replay of 140,000 visitors makes millions of requests; keeping every lateness or latency
to sort at the end would cost hundreds of megabytes, and keeping the first N would describe
only the start of the run (the audit found exactly that). Buckets grow by 2% from 0.1 ms,
so any percentile is exact to within 2% of its value, over the whole run, in ~1,000 ints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

FLOOR_S = 0.0001  # everything below is one bucket: a tenth of a millisecond is "on time"
GROWTH = 1.02
_LOG_GROWTH = math.log(GROWTH)


class LogHistogram:
    __slots__ = ("buckets", "count", "max", "total")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self.buckets: list[int] = []
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        for value in values:
            self.add(value)

    @staticmethod
    def index(value: float) -> int:
        if value <= FLOOR_S:
            return 0
        return 1 + int(math.log(value / FLOOR_S) / _LOG_GROWTH)

    @staticmethod
    def upper(index: int) -> float:
        """The largest value bucket `index` holds."""
        return FLOOR_S * GROWTH**index

    def add(self, value: float) -> None:
        value = max(0.0, value)
        i = self.index(value)
        buckets = self.buckets
        if i >= len(buckets):
            buckets.extend([0] * (i + 1 - len(buckets)))
        buckets[i] += 1
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value

    def merge(self, other: LogHistogram) -> None:
        if len(other.buckets) > len(self.buckets):
            self.buckets.extend([0] * (len(other.buckets) - len(self.buckets)))
        for i, n in enumerate(other.buckets):
            self.buckets[i] += n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, pct: float) -> float | None:
        """Nearest rank, reported as its bucket's upper edge (never above the maximum)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(pct / 100 * self.count))
        seen = 0
        for i, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return min(self.max, self.upper(i)) if i else min(self.max, FLOOR_S)
        return self.max

    def share_above(self, threshold: float) -> float:
        """The share of values above `threshold` (to the bucket holding it)."""
        if not self.count:
            return 0.0
        first = self.index(threshold) + 1
        return sum(self.buckets[first:]) / self.count

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None
