"""What a bench run measures, and how big and long each part is: one frozen table per mode."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    # Status checks with this many people waiting; poll_rps is the largest line's figure.
    waiting_sizes: tuple[int, ...]
    # Distinct tickets polled per line: every visitor of a small line, else a random sample.
    tickets_per_line: int
    workers: int  # uvicorn workers of the gateway and of the hello app
    connections: int
    driver_threads: int
    run_seconds: int  # each throughput run
    rounds: int  # hello and the polls take turns this many times; the median counts
    warmup_seconds: int
    join_workers: int
    join_seconds: int
    proxy_seconds: int
    # The Belgian morning: 140,000 waiting, each checking every 20 s: 7,000 checks a second.
    latency_visitors: int
    latency_rate: int
    latency_seconds: int
    latency_connections: int
    admission_gateways: int
    admission_seconds: float  # at least 2 minutes for the real figure
    admission_rate_per_minute: float
    admission_backlog: int
    sampler_tick_seconds: float = 0.25
    micro_seconds: float = 0.5  # timing each step of the hot paths

    @property
    def largest_line(self) -> int:
        return max(self.waiting_sizes)


FULL = Plan(
    mode="full",
    waiting_sizes=(1_000, 100_000, 1_000_000),
    tickets_per_line=20_000,
    workers=2,
    connections=64,
    driver_threads=1,
    run_seconds=8,
    rounds=3,
    warmup_seconds=2,
    join_workers=1,
    join_seconds=8,
    proxy_seconds=8,
    latency_visitors=140_000,
    latency_rate=7_000,
    latency_seconds=30,
    latency_connections=512,
    admission_gateways=4,
    admission_seconds=150.0,
    admission_rate_per_minute=3_000.0,
    admission_backlog=20_000,
)

QUICK = replace(
    FULL,
    mode="quick",
    waiting_sizes=(200, 1_000, 2_000),
    tickets_per_line=500,
    connections=16,
    run_seconds=1,
    rounds=1,
    warmup_seconds=1,
    join_seconds=1,
    proxy_seconds=1,
    latency_visitors=2_000,
    latency_rate=100,
    latency_seconds=2,
    latency_connections=16,
    admission_seconds=4.0,
    admission_backlog=1_000,
    micro_seconds=0.05,
)

PLANS = {"full": FULL, "quick": QUICK}
