"""Load model of the booking backend, kept free of I/O so it can be tested as a table."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class LoadCounters:
    """Live load figures, reported by the health endpoint.

    Plain ints rather than locks: all mutation happens on one event loop between awaits.
    """

    in_flight: int = 0
    waiting: int = 0
    served: int = 0
    rejected: int = 0


def service_time_ms(
    base_ms: float, per_request_ms: float, *, others_in_flight: int, waiting: int
) -> float:
    """Time needed to serve one request, given everyone else already in the system.

    Linear growth with load mimics a site whose shared database slows every caller down as
    more of them pile up, which is exactly the behaviour the waiting room must absorb.
    """
    if base_ms < 0 or per_request_ms < 0:
        raise ValueError("latencies must not be negative")
    if others_in_flight < 0 or waiting < 0:
        raise ValueError("request counts must not be negative")
    return base_ms + per_request_ms * (others_in_flight + waiting)


def retry_after_s(
    *, waiting: int, max_in_flight: int, service_ms: float, queue_timeout_s: float
) -> int:
    """Seconds a rejected client should wait before retrying.

    Estimates how long the current queue needs to drain, one batch of ``max_in_flight`` at a
    time, but never more than ``queue_timeout_s`` plus one service time: by then everyone
    waiting now has been served or turned away, so a retry meets a fresh queue. Without that
    cap the estimate grows with the square of the queue (more batches, each slower), and a
    burst of thousands would tell people to come back in hours. Whole seconds because
    Retry-After only carries integers, and never below 1 so that obedient clients cannot
    retry in a tight loop.
    """
    if waiting < 0 or service_ms < 0 or queue_timeout_s < 0:
        raise ValueError("waiting, service time and queue timeout must not be negative")
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be at least 1")
    batches_ahead = waiting // max_in_flight + 1
    drain_s = batches_ahead * service_ms / 1000
    return max(1, math.ceil(min(drain_s, queue_timeout_s + service_ms / 1000)))
