"""Latency percentiles over a recent window, as the health endpoint reports them.

A histogram (Prometheus) answers "how slow over the last hour"; operators watching a launch
need "how slow right now", so this keeps the raw samples of the last minute and sorts them
when asked. Time is an argument, so tests use plain numbers.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

PERCENTILES = (50, 95, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q% of values at or below it."""
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    if not sorted_values:
        return None
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


class LatencyWindow:
    def __init__(self, window_s: float = 60.0, max_samples: int = 50_000) -> None:
        self.window_s = window_s
        # Bounded, so a flood of requests cannot turn the health check into a memory sink.
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def record(self, now: float, seconds: float) -> None:
        self._samples.append((now, seconds))

    def percentiles(self, now: float) -> dict[str, float | None]:
        """{"p50": ms, "p95": ms, "p99": ms} over the window; None when nothing was served."""
        horizon = now - self.window_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
        values = sorted(seconds * 1000 for _, seconds in self._samples)
        return {f"p{q}": percentile(values, q) for q in PERCENTILES}

    def count(self, now: float) -> int:
        horizon = now - self.window_s
        return sum(1 for at, _ in self._samples if at >= horizon)
