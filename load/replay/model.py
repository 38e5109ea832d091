"""The crowd as numbers: arrival curves, patience, and who arrives when. Pure, no I/O.

Arrival times are the curve's quantiles, not random draws: visitor i of n arrives when the
curve has delivered (i + 0.5) / n of its total, so a replay at any scale has exactly the
curve's shape, and two runs of one scenario put the same people at the same moments.
Randomness (patience, who is a bot) comes from a seeded generator.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from .scenario import Behaviour, Check, Curve, Scenario

LN2 = math.log(2)


def _segments(curve: Curve) -> Iterator[tuple[float, float, float, float]]:
    yield from (
        (m0, r0, m1, r1) for (m0, r0), (m1, r1) in zip(curve.points, curve.points[1:], strict=False)
    )


def rate_at(curve: Curve, minute: float) -> float:
    """Arrivals per minute at `minute` (the later value at a step)."""
    rate = 0.0
    for m0, r0, m1, r1 in _segments(curve):
        if m0 <= minute < m1:
            rate = r0 + (r1 - r0) * (minute - m0) / (m1 - m0)
    return rate


def arrivals_between(curve: Curve, start: float, end: float) -> float:
    """People arriving in [start, end) minutes: the area under the curve."""
    return cumulative(curve, end) - cumulative(curve, start)


def cumulative(curve: Curve, minute: float) -> float:
    total = 0.0
    for m0, r0, m1, r1 in _segments(curve):
        if minute <= m0 or m1 == m0:
            continue
        x = min(minute, m1) - m0
        total += r0 * x + (r1 - r0) * x * x / (2 * (m1 - m0))
    return total


def total(curve: Curve) -> float:
    return cumulative(curve, curve.end)


def arrival_minutes(curve: Curve, count: int) -> list[float]:
    """`count` arrival times (minutes) that follow the curve exactly: its quantiles."""
    whole = total(curve)
    if count <= 0 or whole <= 0:
        return []
    targets = [(i + 0.5) * whole / count for i in range(count)]
    times: list[float] = []
    before = 0.0
    index = 0
    for m0, r0, m1, r1 in _segments(curve):
        width = m1 - m0
        if width == 0:
            continue
        area = (r0 + r1) * width / 2
        slope_half = (r1 - r0) / (2 * width)
        while index < count and targets[index] <= before + area:
            a = targets[index] - before
            # Solve slope_half * x^2 + r0 * x = a in the stable form (no cancellation).
            root = math.sqrt(max(0.0, r0 * r0 + 4 * slope_half * a))
            x = 2 * a / (r0 + root) if r0 + root > 0 else 0.0
            times.append(m0 + min(width, x))
            index += 1
        before += area
    while index < count:  # rounding at the very end
        times.append(curve.end)
        index += 1
    return times


def weibull_scale(median_minutes: float, shape: float) -> float:
    return float(median_minutes / LN2 ** (1 / shape))


def survival(behaviour: Behaviour, minutes: float) -> float:
    """The share of people still willing to wait after `minutes` in line."""
    lam = weibull_scale(behaviour.patience_median_minutes, behaviour.patience_shape)
    return math.exp(-float((max(0.0, minutes) / lam) ** behaviour.patience_shape))


def hazard(behaviour: Behaviour, minutes: float) -> float:
    """Of those still waiting after `minutes`, the share giving up per minute from then."""
    k = behaviour.patience_shape
    lam = weibull_scale(behaviour.patience_median_minutes, k)
    return float((k / lam) * (max(minutes, 1e-9) / lam) ** (k - 1))


def draw_patience_minutes(behaviour: Behaviour, rng: random.Random) -> float:
    lam = weibull_scale(behaviour.patience_median_minutes, behaviour.patience_shape)
    return float(lam * (-math.log(1.0 - rng.random())) ** (1 / behaviour.patience_shape))


def fluid_line(curve: Curve, rate_per_minute: float, minute: float) -> tuple[float, float]:
    """(waiting at `minute`, admitted by `minute`) for a line served at a fixed rate where
    nobody gives up: the upper bound on the line that the news figures are checked against."""
    step = 1 / 60
    waiting = admitted = 0.0
    t = min(curve.start, 0.0)
    while t < minute - 1e-12:
        dt = min(step, minute - t)
        waiting += arrivals_between(curve, t, t + dt)
        served = min(waiting, rate_per_minute * dt)
        waiting -= served
        admitted += served
        t += dt
    return waiting, admitted


def fluid_peak(curve: Curve, rate_per_minute: float, end: float) -> float:
    """The longest the fluid line (`fluid_line`) gets before `end`."""
    step = 1 / 60
    waiting = peak = 0.0
    t = min(curve.start, 0.0)
    while t < end - 1e-12:
        dt = min(step, end - t)
        waiting += arrivals_between(curve, t, t + dt)
        waiting -= min(waiting, rate_per_minute * dt)
        peak = max(peak, waiting)
        t += dt
    return peak


def sold_out_minute(scenario: Scenario) -> float:
    """When the fluid line has let through as many people as there are appointments."""
    rate, slots = scenario.gateway.rate_per_minute, scenario.site.slots
    low, high = 0.0, scenario.duration_minutes
    if fluid_line(scenario.arrivals, rate, high)[1] < slots:
        return math.inf
    while high - low > 1 / 600:
        mid = (low + high) / 2
        low, high = (
            (mid, high) if fluid_line(scenario.arrivals, rate, mid)[1] < slots else (low, mid)
        )
    return high


def measure(scenario: Scenario, check: Check) -> float:
    """A check's value on the model: everyone admitted books while appointments last."""
    if check.measure == "arrivals":
        return arrivals_between(scenario.arrivals, check.from_minute, check.to_minute)
    if check.measure == "slots":
        return float(scenario.site.slots)
    if check.measure == "sold_out":
        return sold_out_minute(scenario)
    waiting, admitted = fluid_line(
        scenario.arrivals, scenario.gateway.rate_per_minute, check.to_minute
    )
    if check.measure == "waiting":
        return waiting
    if check.measure == "booked":
        return min(admitted, float(scenario.site.slots))
    return admitted  # "admitted", "registered"


@dataclass(frozen=True, slots=True)
class PlannedVisitor:
    index: int
    arrive_minute: float  # scenario minutes after the opening
    patience_minutes: float  # math.inf for bots
    bot: bool
    storm_refreshes: int  # extra reloads right after arriving


def plan_visitors(scenario: Scenario, scale: float, seed: int = 1) -> list[PlannedVisitor]:
    """Everyone who arrives in a replay at `scale` (0.01 = one person in a hundred)."""
    rng = random.Random(seed)
    b = scenario.behaviour
    count = round(total(scenario.arrivals) * scale)
    plan = []
    for i, minute in enumerate(arrival_minutes(scenario.arrivals, count)):
        bot = rng.random() < b.bot_share
        patience = math.inf if bot else draw_patience_minutes(b, rng)
        storm = b.storm_refreshes if minute < scenario.arrivals.start + b.storm_minutes else 0
        plan.append(PlannedVisitor(i, minute, patience, bot, storm))
    return plan
