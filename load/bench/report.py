"""The bench's verdict: each figure against its target, with what it was measured on."""

from __future__ import annotations

import contextlib
import operator
import os
import platform
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .plan import Plan


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    sign: str  # ">=" or "<="
    value: float

    def met(self, figure: float | None) -> bool | None:
        if figure is None:
            return None
        compare: Callable[[float, float], bool] = operator.ge if self.sign == ">=" else operator.le
        return compare(figure, self.value)

    def __str__(self) -> str:
        return f"{self.sign} {self.value:g}"


TARGETS = (
    Target("poll_vs_hello", ">=", 0.8),
    Target("poll_flatness", ">=", 0.9),
    Target("join_rps", ">=", 2000),
    Target("redis_calls_per_poll", "<=", 0.05),
    Target("redis_bytes_per_waiting", "<=", 150),
    Target("admission_error", "<=", 1),
    Target("poll_p99_ms", "<=", 50),
)

# Every key the JSON always has (tests check them); the report adds more.
REQUIRED_KEYS = (
    "poll_rps",
    "hello_rps",
    "poll_vs_hello",
    "poll_rps_by_waiting",
    "poll_flatness",
    "join_rps",
    "redis_calls_per_poll",
    "redis_bytes_per_waiting",
    "admission_error",
    "poll_p50_ms",
    "poll_p99_ms",
)


def run_setup(plan: Plan, driver: str, load_average: tuple[float, float, float]) -> dict[str, Any]:
    """What the figures were measured with, printed and kept beside them."""
    return {
        "mode": plan.mode,
        "machine": machine(load_average),
        "driver": driver,
        "driver_threads": plan.driver_threads,
        "workers": plan.workers,
        "join_workers": plan.join_workers,
        "connections": plan.connections,
        "latency_connections": plan.latency_connections,
        "run_seconds": plan.run_seconds,
        "rounds": plan.rounds,
        "waiting_sizes": list(plan.waiting_sizes),
        "tickets_per_line": plan.tickets_per_line,
        "latency_visitors": plan.latency_visitors,
        "latency_seconds": plan.latency_seconds,
        "admission_seconds_asked": plan.admission_seconds,
        "admission_backlog": plan.admission_backlog,
    }


def machine(load_average: tuple[float, float, float]) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "load_average_at_start": [round(x, 2) for x in load_average],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def verdicts(figures: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        t.key: {"target": str(t), "value": figures.get(t.key), "met": t.met(figures.get(t.key))}
        for t in TARGETS
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3f}".rstrip("0") if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int | float):
        return f"{value:,.0f}"
    return str(value)


def table(result: Mapping[str, Any]) -> str:
    """The figures, their targets and what each was measured with."""
    setup = result["setup"]
    m = setup["machine"]
    by_target = {t.key: t for t in TARGETS}
    conns = f"{setup['connections']} connections"
    run = f"{setup['rounds']} x {setup['run_seconds']} s, median"
    rows: list[tuple[str, str, str, str, str]] = []

    def row(key: str, how: str) -> None:
        target = by_target.get(key)
        value = result.get(key)
        met = target.met(value) if target else None
        verdict = "" if met is None else ("met" if met else "MISSED")
        rows.append((key, _fmt(value), str(target or ""), verdict, how))

    workers = f"{setup['workers']} workers"
    row("hello_rps", f"plain Starlette JSON, {workers}, {conns}, {run}")
    row("poll_rps", f"status checks, {max(setup['waiting_sizes']):,} waiting, {workers}, {conns}")
    row("poll_vs_hello", "poll_rps / hello_rps")
    row("poll_vs_hello_per_core", "the same per core of server CPU (machine noise taken out)")
    for size, rps in result["poll_rps_by_waiting"].items():
        rows.append((f"  poll_rps, {int(size):,} waiting", _fmt(rps), "", "", f"{run}"))
    row("page_poll_rps", "the waiting page's script polling for new figures (display=1)")
    row("page_poll_vs_hello", "page_poll_rps / hello_rps")
    row("poll_flatness", "largest line / smallest line")
    row("poll_flatness_per_core", "the same per core of server CPU")
    row("join_rps", f"new visitors, {setup['join_workers']} worker, {conns}")
    row("join_redis_us", "Redis time per join.lua call")
    row("redis_calls_per_poll", "Redis round trips (socket reads) / status checks")
    row("redis_bytes_per_waiting", f"used_memory delta / {max(setup['waiting_sizes']):,} seeded")
    row(
        "admission_error",
        f"max |admitted - rate x t|, {result.get('admission_gateways')} gateways, "
        f"{result.get('admission_rate_per_minute', 0):,.0f}/min, "
        f"{result.get('admission_seconds')} s, {result.get('admission_samples')} samples",
    )
    fixed = (
        f"{setup['latency_visitors']:,} waiting, {result.get('poll_latency_rate', 0):,}/s asked, "
        f"{result.get('poll_latency_achieved_rps', 0):,}/s served, "
        f"{setup['latency_connections']} connections, {setup['latency_seconds']} s"
    )
    row("poll_p50_ms", fixed)
    row("poll_p99_ms", f"late sends {result.get('poll_latency_late_share', 0):.1%}")
    row(
        "poll_half_capacity_p99_ms",
        f"the same crowd at {result.get('poll_half_capacity_rate', 0):,}/s, half of poll_rps",
    )
    row("proxy_rps", f"admitted requests through the gateway to the hello app, {conns}")
    row("tick_ms_p99", "one tick round trip, as seen by the admission watcher")
    row("tick_redis_us", "Redis time per tick of the polled gateway (all its rooms)")

    steps = result.get("micro_us") or {}
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = (
        f"waitroom bench ({setup['mode']}): {m['cores']} cores, {m['cpu'] or 'unknown CPU'}, "
        f"Python {m['python']}, load average {m['load_average_at_start']}\n"
        f"load generator: {setup['driver']}"
    )
    lines = [head, ""]
    for r in rows:
        cells = [r[i].ljust(widths[i]) if i != 1 else r[i].rjust(widths[i]) for i in range(4)]
        lines.append("  ".join(cells) + "  " + r[4])
    if steps:
        lines += ["", "each step alone, in this process (micro_us):"]
        lines += [f"  {us:8.2f} us  {step}" for step, us in steps.items()]
    return "\n".join(lines)
