"""What the dashboard forecasts for a room: the wait a new arrival would be told, and when the
line clears. Pure, from every lane and pre-queue, with the outflow visitors' estimates use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from queue_core.estimate import Estimate, estimate_wait
from queue_core.keys import MAIN_LANE


@dataclass(frozen=True, slots=True)
class Lane:
    share: float  # of the room's outflow while people wait in it
    waiting: int
    prequeue: int  # arrivals before a scheduled opening (or drawn at it, not yet placed)
    seq: int  # places handed out in this lane so far
    # This gateway's measured outflow of the lane (people per second), and how uneven it
    # was: exactly what a waiting visitor's own estimate is computed from.
    per_second: float | None = None
    band: tuple[float, float] | None = None

    @property
    def people(self) -> int:
        return self.waiting + self.prequeue


def new_arrival_wait(
    lanes: Mapping[str, Lane], rate_per_minute: float, *, paused: bool, scheduled: bool
) -> Estimate | None:
    """The estimate someone arriving now would see on their own page.

    They join the main lane (lanes are by invitation), behind everyone in it and behind a
    pre-queue still being placed after an opening. Before a scheduled opening they get a
    place at the opening instead, and no estimate; while paused, none either."""
    if paused or scheduled:
        return None
    main = lanes[MAIN_LANE]
    return estimate_wait(main.people, main.per_second, rate_per_minute * main.share, main.band)


def clears_in(
    lanes: Mapping[str, Lane],
    rate_per_minute: float,
    *,
    paused: bool,
    seconds_to_opening: float = 0.0,
) -> float | None:
    """Seconds until the last person now waiting (in any lane or pre-queue) is let in, at the
    current rate; 0 when nobody waits, None when nobody is let in (paused, rate 0)."""
    busy = [lane for lane in lanes.values() if lane.people]
    if not busy:
        return 0.0
    if paused:
        return None
    # Slots go to whichever lanes have people, so the room drains at its whole outflow: the
    # lanes' measured outflows added up once each busy lane has one, else the set rate.
    rates = [lane.per_second for lane in busy]
    measured = sum(r for r in rates if r) if all(rates) else None
    waiting = sum(lane.waiting for lane in busy)
    prequeue = sum(lane.prequeue for lane in busy)
    line = estimate_wait(waiting - 1, measured, rate_per_minute) if waiting else None
    if waiting and line is None:
        return None
    drained = line.seconds if line is not None else 0.0
    if not prequeue:
        return drained
    # A pre-queue joins behind the line at the opening (or at once, if it has opened).
    after = estimate_wait(prequeue - 1, measured, rate_per_minute)
    if after is None:
        return None
    return max(drained, seconds_to_opening) + after.seconds
