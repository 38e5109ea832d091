"""Time series for the report, worked out from one replay's records. Pure, no I/O.

The x axis is scenario minutes after the opening; values are per real second unless named
otherwise. A run is cut into about 120 bins of whole real seconds.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence

from .record import SITE, percentile
from .run import RunResult
from .summary import order_inversions
from .watch import RoomSample

Points = list[tuple[float, float]]


def bin_width(result: RunResult) -> float:
    """Width of a time bin in real seconds: about 120 bins over the run, at least 1 s."""
    return float(max(1, -(-int(max(result.duration_s, 1.0)) // 120)))


def minutes(result: RunResult, real_s: float) -> float:
    return round(real_s * result.squeeze.speed / 60, 3)


def _bin_starts(result: RunResult) -> list[float]:
    width = bin_width(result)
    return [i * width for i in range(int(result.duration_s // width) + 1)]


def counts_per_bin(times: Iterable[float], width: float, end: float) -> list[int]:
    bins = [0] * (int(end // width) + 1)
    for t in times:
        if 0 <= t <= end:
            bins[int(t // width)] += 1
    return bins


def rate(result: RunResult, times: Iterable[float]) -> Points:
    """Events per real second, bin by bin."""
    width = bin_width(result)
    bins = counts_per_bin(times, width, result.duration_s)
    return [(minutes(result, i * width), n / width) for i, n in enumerate(bins)]


def cumulative(result: RunResult, times: Iterable[float]) -> Points:
    """How many events had happened by each bin's end."""
    ordered = sorted(times)
    width = bin_width(result)
    return [
        (minutes(result, t + width), float(bisect.bisect_right(ordered, t + width)))
        for t in _bin_starts(result)
    ]


def waiting_over_time(result: RunResult) -> Points:
    """People in line as the visitors saw it (joined, not yet admitted or gone)."""
    changes: list[tuple[float, int]] = []
    for v in result.visitors:
        if v.join_done is None:
            continue
        changes.append((v.join_done, 1))
        left = v.admitted_at if v.admitted_at is not None else v.done_at
        if left is not None:
            changes.append((left, -1))
    changes.sort()
    points, level, i = [], 0, 0
    for t in _bin_starts(result):
        while i < len(changes) and changes[i][0] <= t:
            level += changes[i][1]
            i += 1
        points.append((minutes(result, t), float(level)))
    return points


def _interpolate(
    samples: Sequence[RoomSample], value: Callable[[RoomSample], float]
) -> Callable[[float], float]:
    times = [s.at for s in samples]

    def at(t: float) -> float:
        k = bisect.bisect_left(times, t)
        if k == 0:
            return value(samples[0])
        if k == len(samples):
            return value(samples[-1])
        a, b = samples[k - 1], samples[k]
        share = (t - a.at) / (b.at - a.at) if b.at > a.at else 1.0
        return value(a) + (value(b) - value(a)) * share

    return at


def gateway_waiting(result: RunResult) -> Points:
    """People in line as the gateway counts them (its `waitroom_line_waiting`)."""
    return [(minutes(result, s.at), s.waiting) for s in result.gateway_samples]


def gateway_rate(result: RunResult, value: Callable[[RoomSample], float]) -> Points:
    """Per real second, bin by bin, of one of the gateway's running totals."""
    samples = result.gateway_samples
    if len(samples) < 2:
        return []
    total = _interpolate(samples, value)
    width = bin_width(result)
    first, last = samples[0].at, samples[-1].at
    return [
        (minutes(result, t), (total(t + width) - total(t)) / width)
        for t in _bin_starts(result)
        if first <= t and t + width <= last
    ]


def set_rate(result: RunResult) -> Points:
    """The admission rate the room was set to, per real second."""
    if result.gateway_samples:
        return [(minutes(result, s.at), s.rate_per_minute / 60) for s in result.gateway_samples]
    per_s = (result.room or {}).get("rate_per_minute", 0.0) / 60
    return [(minutes(result, t), per_s) for t in _bin_starts(result)]


def inversions_over_time(result: RunResult) -> Points:
    """Order inversions so far: dated when the later visitor was admitted."""
    by_index = {v.index: v for v in result.visitors}
    times = [by_index[later].admitted_at or 0.0 for _, later in order_inversions(result.visitors)]
    return cumulative(result, times)


def lost_over_time(result: RunResult) -> Points:
    """Visitors who lost their place so far: dated at the answer that told them."""
    return cumulative(result, [v.lapsed_at for v in result.visitors if v.lapsed_at is not None])


def driver_series(result: RunResult) -> tuple[Points, Points]:
    """(visitors present, visitors held on schedule): the busiest second of each bin."""
    width = bin_width(result)
    present: dict[int, int] = {}
    held: dict[int, int] = {}
    for s in result.stats.seconds:
        key = int(s.at // width)
        present[key] = max(present.get(key, 0), s.present)
        held[key] = max(held.get(key, 0), s.held)
    keys = sorted(present)
    return (
        [(minutes(result, k * width), float(present[k])) for k in keys],
        [(minutes(result, k * width), float(held[k])) for k in keys],
    )


def request_series(result: RunResult) -> tuple[Points, Points]:
    """(requests sent, requests sent late) per real second, over every kind."""
    width = bin_width(result)
    sent: dict[int, int] = {}
    late: dict[int, int] = {}
    for buckets in result.recorder.buckets.values():
        for second, b in buckets.items():
            key = int(second // width)
            sent[key] = sent.get(key, 0) + b.count
            late[key] = late.get(key, 0) + b.late
    keys = sorted(sent)
    return (
        [(minutes(result, k * width), sent[k] / width) for k in keys],
        [(minutes(result, k * width), late[k] / width) for k in keys],
    )


def site_series(result: RunResult) -> tuple[tuple[Points, Points], tuple[Points, Points]]:
    """((latency p50, p95) in ms, (requests, errors) per second) of the booking site."""
    width = bin_width(result)
    grouped: dict[int, tuple[int, int, list[float]]] = {}
    for second, b in result.recorder.buckets[SITE].items():
        key = int(second // width)
        count, errors, lat = grouped.get(key, (0, 0, []))
        grouped[key] = (count + b.count, errors + b.errors, lat + b.latencies)
    keys = sorted(grouped)
    x = [minutes(result, k * width) for k in keys]

    def ms(k: int, pct: float) -> float:
        return (percentile(grouped[k][2], pct) or 0.0) * 1000

    return (
        (
            list(zip(x, [ms(k, 50) for k in keys], strict=True)),
            list(zip(x, [ms(k, 95) for k in keys], strict=True)),
        ),
        (
            list(zip(x, [grouped[k][0] / width for k in keys], strict=True)),
            list(zip(x, [grouped[k][1] / width for k in keys], strict=True)),
        ),
    )


def wait_histogram(result: RunResult, bins: int = 24) -> list[tuple[float, float, float]]:
    """(from, to, visitors) over the wait in line, in scenario minutes."""
    waits = [w * result.squeeze.speed / 60 for v in result.visitors if (w := v.wait_s) is not None]
    if not waits:
        return []
    width = (max(waits) or 1.0) / bins
    counts = [0] * bins
    for w in waits:
        counts[min(bins - 1, int(w / width))] += 1
    return [(i * width, (i + 1) * width, float(n)) for i, n in enumerate(counts)]


def promised_vs_actual(result: RunResult, cap: int = 2000) -> Points:
    """(promised, actual) waits in scenario minutes; an even sample of at most `cap`."""
    speed = result.squeeze.speed
    points = [
        (v.promised_s * speed / 60, w * speed / 60)
        for v in result.visitors
        if (w := v.wait_s) is not None and v.promised_s is not None
    ]
    step = max(1, len(points) // cap)
    return points[::step]


def peak(points: Sequence[tuple[float, float]]) -> float:
    return max((y for _, y in points), default=0.0)
