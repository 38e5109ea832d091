"""Latency percentiles of proxied requests from the fixed buckets: pure, a table of cases."""

from __future__ import annotations

import json
import math

import pytest

from gateway.proxy_stats import TOP_MS, ProxyStats, beyond_top, merge, percentile_ms


def counts_of(*seconds: float) -> dict[str, int]:
    stats = ProxyStats()
    for s in seconds:
        stats.record("r", s, 200, now=0.0)
    return merge(list(stats.drain().values()))


@pytest.mark.parametrize(
    ("seconds", "q", "ms", "over"),
    [
        ((), 0.95, None, False),
        ((0.004,) * 10, 0.5, 5.0, False),
        ((0.004,) * 9 + (0.2,), 0.95, 250.0, False),
        ((0.004,) * 9 + (0.2,), 0.5, 5.0, False),
        ((29.0,) * 10, 0.95, 30000.0, False),  # inside the top bucket: a real bound
        ((0.004,) * 18 + (31.0,) * 2, 0.95, TOP_MS, True),  # slower than any bound
        ((0.004,) * 18 + (31.0,) * 2, 0.5, 5.0, False),
        ((120.0,) * 3, 0.5, TOP_MS, True),
    ],
)
def test_percentiles_stay_finite_and_flag_the_open_top_bucket(
    seconds: tuple[float, ...], q: float, ms: float | None, over: bool
) -> None:
    counts = counts_of(*seconds)
    assert percentile_ms(counts, q) == ms
    assert beyond_top(counts, q) is over
    if ms is not None:
        assert math.isfinite(ms)
        json.dumps({"p": ms}, allow_nan=False)  # what the ops API does with it
