"""A scenario's arrival curve as a Locust load shape: users wanted now, and how fast to start
them. Pure, no I/O, and no locust: `load/locustfile.py` calls it from `LoadTestShape.tick`.

Each Locust user makes one journey and then idles, so the user count at a moment is everyone
who has arrived so far. Locust asks about once a second and starts users at the returned
rate; the rate must therefore close the whole gap between the users running and the users
wanted within the next tick. A rate taken from the curve's instantaneous arrival rate falls
short after a step (a doorbuster's curve jumps from 0 to 100,000 a minute), and the shape
never catches up.
"""

from __future__ import annotations

from .model import cumulative
from .scaling import Squeeze
from .scenario import Scenario

TICK_S = 1.0  # Locust calls tick() about once a second


def users_at(scenario: Scenario, squeeze: Squeeze, run_time_s: float) -> int | None:
    """Users that should be running `run_time_s` real seconds in; None once the day is over."""
    minute = squeeze.scenario(run_time_s) / 60
    if minute > scenario.duration_minutes:
        return None
    return round(cumulative(scenario.arrivals, minute) * squeeze.scale)


def spawn_rate(target: int, current: int, tick_s: float = TICK_S) -> float:
    """Users a second to start (or stop) so that `current` reaches `target` by the next tick."""
    return max(1.0, abs(target - current) / tick_s)


def tick(
    scenario: Scenario, squeeze: Squeeze, run_time_s: float, current: int
) -> tuple[int, float] | None:
    """What `LoadTestShape.tick` returns: (users, spawn rate), or None to stop."""
    target = users_at(scenario, squeeze, run_time_s)
    if target is None:
        return None
    return target, spawn_rate(target, current)
