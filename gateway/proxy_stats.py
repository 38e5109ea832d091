"""Latency and errors of proxied requests, counted in each worker and flushed to Redis in
batches, so the ops dashboard shows every request (not a sample) without a Redis call per
request. Windows are 5 s long; counts go in fixed latency buckets."""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Mapping

WINDOW_SECONDS = 5
BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
TOP_MS = BOUNDS_MS[-1]  # slower requests share one open-ended bucket


def window_of(unix_seconds: float) -> int:
    return int(unix_seconds // WINDOW_SECONDS)


class ProxyStats:
    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def record(self, room: str, seconds: float, status: int, now: float | None = None) -> None:
        counts = self._pending[(room, window_of(time.time() if now is None else now))]
        counts["n"] += 1
        if status >= 500:
            counts["e"] += 1
        counts[f"b{bisect.bisect_left(BOUNDS_MS, seconds * 1000)}"] += 1

    def drain(self) -> dict[tuple[str, int], dict[str, int]]:
        pending, self._pending = self._pending, defaultdict(lambda: defaultdict(int))
        return {k: dict(v) for k, v in pending.items()}

    def restore(self, pending: Mapping[tuple[str, int], Mapping[str, int]]) -> None:
        """Put back counts a failed flush could not write (Redis down): nothing is lost."""
        for key, counts in pending.items():
            for field, n in counts.items():
                self._pending[key][field] += n


def merge(windows: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for w in windows:
        for k, v in w.items():
            total[k] += v
    return dict(total)


def percentile_ms(counts: Mapping[str, int], q: float) -> float | None:
    """The bucket bound below which a share `q` of requests finished (None if none).

    Requests slower than the top bound count as the top bound: the figure then means "at
    least TOP_MS" (`beyond_top` says when), and stays a finite number that JSON can carry."""
    n = counts.get("n", 0)
    if n == 0:
        return None
    seen = 0
    for i, bound in enumerate(BOUNDS_MS):
        seen += counts.get(f"b{i}", 0)
        if seen >= q * n:
            return float(bound)
    return float(TOP_MS)


def beyond_top(counts: Mapping[str, int], q: float) -> bool:
    """True when the request at share `q` took longer than the top bound (TOP_MS)."""
    n = counts.get("n", 0)
    slow = counts.get(f"b{len(BOUNDS_MS)}", 0)
    return n > 0 and n - slow < q * n
