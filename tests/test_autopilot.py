"""The autopilot's decision (pure): one row per situation the booking site can be in."""

from __future__ import annotations

import pytest

from gateway.ops.autopilot import Health, decide, share_of_no_shows, starting_base
from gateway.ops.controls import Autopilot
from queue_core.snapshot import Sample

PILOT = Autopilot(enabled=True, target_p95_ms=1000, max_error_rate=0.02, min_rate=10, max_rate=600)
QUIET = Health(0, None, 0.0)
HEALTHY = Health(100, 250.0, 0.0)


@pytest.mark.parametrize(
    ("base", "health", "no_shows", "waiting", "new_base", "rate", "reason"),
    [
        # Comfortable and people waiting: grow by 10% and one more.
        (100, HEALTHY, 0.0, 50, 111, 111, "site healthy and people waiting"),
        (100, QUIET, 0.0, 50, 111, 111, "site healthy"),  # no traffic yet: nothing says no
        # Nobody waiting: nothing to grow for.
        (100, HEALTHY, 0.0, 0, 100, 100, "holding"),
        # Between 70% and 100% of the target: close enough to stop growing.
        (100, Health(100, 800.0, 0.0), 0.0, 50, 100, 100, "holding"),
        # Struggling: cut by 30%, errors first.
        (100, Health(100, 2500.0, 0.0), 0.0, 50, 70, 70, "p95 2500 ms > target 1000 ms"),
        (100, Health(100, 250.0, 0.05), 0.0, 50, 70, 70, "errors 5.0% > 2.0%"),
        (100, Health(100, 2500.0, 0.5), 0.0, 50, 70, 70, "errors 50.0%"),
        # Too few requests for a verdict: a slow one or two do not cut the rate.
        (100, Health(3, 2500.0, 1.0), 0.0, 50, 100, 100, "holding"),
        # Within the bounds ops set.
        (590, HEALTHY, 0.0, 50, 600, 600, "site healthy"),
        (12, Health(100, 250.0, 0.5), 0.0, 50, 10, 10, "errors"),
        (0, HEALTHY, 0.0, 0, 10, 10, "holding"),  # a base below the floor starts at it
        (5000, HEALTHY, 0.0, 0, 600, 600, "holding"),
        # No-shows made up for: a fifth never comes, so admit a quarter more than should arrive.
        (100, HEALTHY, 0.2, 0, 100, 125, "holding; 20% no-shows made up for"),
        (100, HEALTHY, 0.2, 50, 111, 138.75, "healthy and people waiting; 20% no-shows"),
        (100, Health(100, 2500.0, 0.0), 0.5, 50, 70, 140, "p95 2500 ms > target 1000 ms; 50%"),
        # ...but never more than 80% of them, and never above the highest rate.
        (100, HEALTHY, 0.95, 0, 100, 500, "80% no-shows made up for"),
        (550, HEALTHY, 0.2, 0, 550, 600, "holding; 20%"),
        (100, HEALTHY, -0.1, 0, 100, 100, "holding"),
    ],
)
def test_decide(
    base: float,
    health: Health,
    no_shows: float,
    waiting: int,
    new_base: float,
    rate: float,
    reason: str,
) -> None:
    decision = decide(PILOT, base, health, no_shows, waiting)
    assert (decision.base, decision.rate) == (pytest.approx(new_base), pytest.approx(rate))
    assert reason in decision.reason
    assert PILOT.min_rate <= decision.rate <= PILOT.max_rate


def sample(admitted: int, no_shows: int) -> Sample:
    return Sample(0, 0, admitted, admitted, 0, no_shows, 0, 0, 60.0, 0, 0)


@pytest.mark.parametrize(
    ("history", "share"),
    [
        ([], 0.0),
        ([sample(10, 0)], 0.0),
        ([sample(10, 0), sample(110, 25)], 0.25),
        ([sample(10, 3), sample(10, 5)], 0.0),  # nobody admitted meanwhile: no evidence
    ],
)
def test_share_of_no_shows(history: list[Sample], share: float) -> None:
    assert share_of_no_shows(history) == pytest.approx(share)


@pytest.mark.parametrize(
    ("rate", "no_shows", "base"), [(20, 0.0, 20), (20, 0.2, 16), (20, 0.95, 4), (0, 0.5, 0)]
)
def test_taking_over_starts_from_what_the_rate_gives(
    rate: float, no_shows: float, base: float
) -> None:
    # So holding steady at first keeps the rate ops had set.
    assert starting_base(rate, no_shows) == pytest.approx(base)
    if rate and no_shows < 0.8:
        assert decide(PILOT, base, Health(100, 900.0, 0.0), no_shows, 5).rate == pytest.approx(rate)
