"""The scenario's launch-day facts, measured on a replay's own results. Pure, no I/O.

A replay at scale 0.01 has one person in a hundred, so every count is divided by the scale
to compare it with the news figure ("more than 140,000 waiting"); minutes are scenario
minutes. A fact the replay cannot speak to (it stopped before the minute in question, or
it ran without a line and the fact is about the line) is reported as n/a, not as a pass.
"""

from __future__ import annotations

import math
from typing import Any

from .model import measure as model_measure
from .record import BOOKED, REGISTERED
from .run import GATEWAY, RunResult
from .scenario import Check
from .watch import RoomSample

LINE_MEASURES = ("waiting", "admitted")


def _real(result: RunResult, minute: float) -> float:
    return result.squeeze.real(minute * 60)


def _admitted_by(samples: list[RoomSample], at: float) -> float | None:
    """The gateway's admitted counter at `at` (real s), from its first sample on."""
    before = [s for s in samples if s.at <= at]
    if not before or not samples:
        return None
    return before[-1].admitted - samples[0].admitted


def replay_measure(result: RunResult, check: Check) -> float | None:
    """The check's value in this replay, at full scale; None when it cannot say."""
    scale = result.squeeze.scale
    visitors = result.visitors
    if check.measure == "slots":
        return None if result.slots_before is None else result.slots_before / scale
    if check.measure == "sold_out":
        if result.slots_after != 0:
            # Not sold out: a fact the replay speaks to only if it ran past the deadline.
            ran = result.squeeze.scenario(result.duration_s) / 60
            return math.inf if ran >= min(check.at_most, check.at_least) else None
        times = [v.done_at for v in visitors if v.outcome == BOOKED and v.done_at is not None]
        return result.squeeze.scenario(max(times)) / 60 if times else math.inf
    at = _real(result, check.to_minute)
    if at > result.duration_s + 1e-9:
        return None  # the replay stopped before that minute
    if check.measure in LINE_MEASURES and result.mode != GATEWAY:
        return None
    if check.measure == "arrivals":
        # When they came, as planned: how late the driver sent them is its own figure.
        start = _real(result, check.from_minute)
        came = [v.planned_at for v in visitors if v.arrived_at is not None]
        return sum(1 for t in came if start <= t < at) / scale
    if check.measure == "waiting":
        # People there by then (in line, or at its door with their join on its way), not
        # yet admitted, given up or turned away.
        waiting = 0
        for v in visitors:
            if v.arrived_at is None or v.planned_at > at:
                continue
            left = v.admitted_at if v.admitted_at is not None else v.done_at
            if left is None or left > at:
                waiting += 1
        return waiting / scale
    if check.measure == "admitted":
        counted = _admitted_by(result.gateway_samples, at)
        if counted is None:  # no gateway figures: what the visitors noticed
            counted = sum(1 for v in visitors if v.admitted_at is not None and v.admitted_at <= at)
        return counted / scale
    done = (BOOKED,) if check.measure == "booked" else (BOOKED, REGISTERED)
    return sum(1 for v in visitors if v.outcome in done and (v.done_at or math.inf) <= at) / scale


def _shown(value: float | None) -> float | str | None:
    if value is None:
        return None
    if math.isinf(value):
        return "never"
    return round(value, 1)


def launch_day(result: RunResult) -> list[dict[str, Any]]:
    """Every check of the scenario: its model value, its replay value, and the verdicts."""
    rows = []
    for check in result.scenario.checks:
        model = model_measure(result.scenario, check)
        replay = replay_measure(result, check)
        rows.append(
            {
                "what": check.what,
                "measure": check.measure,
                "target": check.target,
                "model": _shown(model),
                "model_passed": check.holds(model),
                "replay": _shown(replay),
                "passed": None if replay is None else check.holds(replay),
            }
        )
    return rows
