"""What a replay remembers: one record per visitor, and per-second request counters.

Times are real seconds since the replay started. Records stay small (slots, no per-poll
lists) so that a replay of 100,000+ visitors fits in memory: a position is kept only as the
first and the last seen, with a count of the times it went up (which must never happen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .histogram import LogHistogram

# How a visitor's journey ended.
BOOKED = "booked"
REGISTERED = "registered"  # without a date: the dates were gone
GAVE_UP = "gave_up"  # patience ran out while waiting (or while the site kept failing)
ERROR = "error"  # the site or the line failed them more often than they retry
UNFINISHED = "unfinished"  # still on their way when the replay's time ran out
NOT_ARRIVED = "not_arrived"  # planned after the replay's time ran out
OUTCOMES = (BOOKED, REGISTERED, GAVE_UP, ERROR, UNFINISHED, NOT_ARRIVED)

# Request kinds, for latency and error counts.
JOIN = "join"
STATUS = "status"
SITE = "site"  # a request the booking site serves (through the gateway or straight at it)
INBOX = "inbox"  # the simulated SMS inbox, read straight from the site
KINDS = (JOIN, STATUS, SITE, INBOX)


@dataclass(slots=True)
class VisitorRecord:
    index: int
    bot: bool
    planned_at: float
    patience_minutes: float
    arrived_at: float | None = None
    join_started: float | None = None
    join_done: float | None = None
    first_position: int | None = None
    last_position: int | None = None
    position_rises: int = 0
    promised_s: float | None = None  # estimate_seconds at the first answer
    promised_low_s: float | None = None
    promised_high_s: float | None = None
    last_waiting_at: float | None = None  # the last answer that said "waiting"
    admitted_at: float | None = None
    verified_at: float | None = None
    done_at: float | None = None
    polls: int = 0
    lapsed: int = 0  # answers saying the place had lapsed: a lost place
    lapsed_at: float | None = None  # the first such answer
    pin_requests: int = 0
    retries: int = 0
    outcome: str = NOT_ARRIVED
    detail: str = ""

    @property
    def wait_s(self) -> float | None:
        if self.admitted_at is None or self.join_done is None:
            return None
        return self.admitted_at - self.join_done


@dataclass(slots=True)
class Bucket:
    """One real second of one kind of request."""

    count: int = 0
    errors: int = 0  # 5xx, 429 and network errors
    late: int = 0  # sent more than LATE_S after they were due
    latencies: list[float] = field(default_factory=list)  # capped sample, seconds


LATENCY_SAMPLE_CAP = 200  # per second and kind: enough for a chart's p95, cheap at 10k/s
LATE_S = 1.0  # a request sent more than this after it was due is late


class Recorder:
    """Per-second, per-kind request counters, and whole-run histograms of latency (per kind)
    and of lateness (every request: when it was sent, less when it was due)."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[int, Bucket]] = {kind: {} for kind in KINDS}
        self.statuses: dict[str, dict[int, int]] = {kind: {} for kind in KINDS}
        self.latency: dict[str, LogHistogram] = {kind: LogHistogram() for kind in KINDS}
        self.lateness = LogHistogram()

    def request(self, kind: str, at: float, status: int, seconds: float, late: float = 0.0) -> None:
        bucket = self.buckets[kind].get(int(at))
        if bucket is None:
            bucket = self.buckets[kind][int(at)] = Bucket()
        bucket.count += 1
        if status == 0 or status == 429 or status >= 500:
            bucket.errors += 1
        if late > LATE_S:
            bucket.late += 1
        if len(bucket.latencies) < LATENCY_SAMPLE_CAP:
            bucket.latencies.append(seconds)
        self.latency[kind].add(seconds)
        self.lateness.add(late)
        codes = self.statuses[kind]
        codes[status] = codes.get(status, 0) + 1

    def requests(self) -> int:
        return self.lateness.count


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
