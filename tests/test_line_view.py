import dataclasses
import random

import pytest

from queue_core.estimate import Outflow, estimate_wait, poll_after
from queue_core.line_view import LineView, Location, Standing
from queue_core.snapshot import LaneSnapshot, Snapshot


def snap(
    now: int,
    head: int,
    seq: int,
    holes: tuple[int, ...] = (),
    holes_from: int = 0,
    processed: int = 0,
    waiting: int = 1,
) -> Snapshot:
    return Snapshot(
        room="r",
        now_us=now,
        processed=processed,
        admitted_total=0,
        abandoned_total=0,
        no_show_total=0,
        active=0,
        paused=False,
        closed=False,
        rate_per_minute=60.0,
        sold_out=False,
        opens_at_us=0,
        opened=False,
        banner="",
        lanes={"": LaneSnapshot(head, seq, waiting, 0, processed, holes_from, holes)},
    )


@pytest.mark.parametrize(
    ("head", "holes", "place", "expected"),
    [
        (0, (), 1, Location(Standing.WAITING, 0)),
        (0, (), 10, Location(Standing.WAITING, 9)),
        (5, (), 10, Location(Standing.WAITING, 4)),
        (5, (7, 8), 10, Location(Standing.WAITING, 2)),
        (5, (7, 12), 10, Location(Standing.WAITING, 3)),
        (5, (10,), 10, Location(Standing.GONE)),
        (10, (), 10, Location(Standing.TURN)),
        (10, (), 3, Location(Standing.TURN)),
    ],
)
def test_locate(head: int, holes: tuple[int, ...], place: int, expected: Location) -> None:
    view = LineView("r")
    view.apply(snap(1, head, 20, holes))
    assert view.locate(place) == expected


def test_holes_arrive_incrementally_and_are_forgotten_behind_the_head() -> None:
    view = LineView("r")
    view.apply(snap(1, 0, 20, (3, 9), holes_from=0))
    assert view.holes_next == 2
    view.apply(snap(2, 4, 20, (6,), holes_from=2))
    assert view.holes_next == 3
    assert view.locate(10) == Location(Standing.WAITING, 10 - 4 - 1 - 2)
    assert view._holes == [6, 9]


def test_older_snapshot_is_ignored() -> None:
    view = LineView("r")
    view.apply(snap(10, 5, 20))
    view.apply(snap(9, 2, 20))
    assert view.locate(8) == Location(Standing.WAITING, 2)


def test_position_never_goes_up_over_random_snapshots() -> None:
    rng = random.Random(7)
    view = LineView("r")
    head, seq = 0, 0
    holes: list[int] = []
    mine = 500
    last = None
    for now in range(1, 301):
        seq = max(seq, mine) + rng.randint(0, 5)
        head = min(mine - 1, head + rng.randint(0, 3))
        new = tuple(
            p for p in (rng.randint(head + 1, seq) for _ in range(rng.randint(0, 2))) if p != mine
        )
        holes.extend(new)
        view.apply(snap(now, head, seq, new, holes_from=len(holes) - len(new)))
        loc = view.locate(mine)
        assert loc.standing is Standing.WAITING
        if last is not None:
            assert loc.ahead <= last
        last = loc.ahead


def test_outflow_measures_only_backlogged_time() -> None:
    out = Outflow()
    out.observe(0, 0, waiting=5)
    assert out.per_second() is None
    out.observe(10_000_000, 20, waiting=5)
    assert out.per_second() == pytest.approx(2.0)
    out.observe(11_000_000, 20, waiting=0)  # the line emptied: no longer a measure of the rate
    assert out.per_second() is None


@pytest.mark.parametrize(
    ("ahead", "measured", "rate", "seconds"),
    [
        (0, None, 60.0, 1.0),
        (59, None, 60.0, 60.0),
        (99, 2.0, 60.0, 50.0),  # measured outflow wins over the configured rate
        (10, None, 0.5, 1320.0),  # fractional rate: 1 visitor every 2 minutes
    ],
)
def test_estimate_wait(ahead: int, measured: float | None, rate: float, seconds: float) -> None:
    est = estimate_wait(ahead, measured, rate)
    assert est is not None
    assert est.seconds == pytest.approx(seconds)
    assert est.low < est.seconds < est.high


def test_no_estimate_at_rate_zero() -> None:
    assert estimate_wait(10, None, 0.0) is None


@pytest.mark.parametrize(
    ("wait", "low", "high"),
    [(5.0, 2.0, 2.3), (100.0, 8.5, 11.5), (100_000.0, 38.25, 45.0), (None, 38.25, 45.0)],
)
def test_poll_after_near_front_often_far_back_rarely(
    wait: float | None, low: float, high: float
) -> None:
    rng = random.Random(1)
    values = [poll_after(wait, 300, rng) for _ in range(200)]
    assert low <= min(values) and max(values) <= high
    assert len(set(values)) > 1  # jittered, so a crowd spreads out


def test_poll_after_stays_well_inside_grace() -> None:
    assert all(poll_after(10_000, 40, random.Random(i)) <= 10 for i in range(50))


@pytest.mark.parametrize(
    ("ahead", "at_join", "percent"),
    [(10, 10, 0), (5, 10, 50), (0, 10, 99), (0, 0, 99), (999, 1000, 0)],
)
def test_progress_counts_from_where_the_visitor_joined(
    ahead: int, at_join: int, percent: int
) -> None:
    from gateway.status import progress

    assert progress(ahead, at_join) == percent


def test_uneven_outflow_widens_the_range_and_it_recovers() -> None:
    steady, uneven = Outflow(), Outflow()
    for second in range(0, 61, 5):
        steady.observe(second * 1_000_000, second, waiting=100)  # 1 a second throughout
        # Stalled for 30 s, then 2 a second: same average, far less certain.
        uneven.observe(second * 1_000_000, 0 if second <= 30 else (second - 30) * 2, waiting=100)
    calm = estimate_wait(59, steady.per_second(), 60.0, steady.band())
    shaky = estimate_wait(59, uneven.per_second(), 60.0, uneven.band())
    assert calm is not None and shaky is not None
    assert calm.seconds == pytest.approx(60.0)
    assert shaky.high - shaky.low > calm.high - calm.low
    # The stall scrolls out of the window: the estimate tightens again.
    for second in range(65, 131, 5):
        uneven.observe(second * 1_000_000, (second - 30) * 2, waiting=100)
    later = estimate_wait(59, uneven.per_second(), 60.0, uneven.band())
    assert later is not None and later.high - later.low < shaky.high - shaky.low


def admissions(phases: list[tuple[float, bool, int]]) -> list[float]:
    """Slot times (seconds) of a room run through `phases` of (rate per minute, paused,
    seconds): each phase's slots start one interval after it begins, as after a resume."""
    slots, start = [], 0
    for rate, paused, seconds in phases:
        if rate > 0 and not paused:
            interval = 60 / rate
            slots += [start + k * interval for k in range(1, int(seconds / interval) + 1)]
        start += seconds
    return slots


def phase_at(phases: list[tuple[float, bool, int]], now: int) -> tuple[float, bool]:
    """The (rate per minute, paused) of the room `now` seconds in."""
    for rate, paused, seconds in phases:
        if now < seconds:
            return rate, paused
        now -= seconds
    return phases[-1][0], phases[-1][1]


@pytest.mark.parametrize(
    "phases",
    [
        pytest.param([(30.0, False, 120), (6.0, False, 1200)], id="ops drop the rate 30 to 6"),
        pytest.param([(0.0, False, 120), (30.0, False, 300)], id="ops raise the rate from 0"),
        pytest.param([(6.0, False, 120), (30.0, False, 300)], id="ops raise the rate 6 to 30"),
        pytest.param(
            [(30.0, False, 120), (30.0, True, 120), (30.0, False, 300)], id="resume after pause"
        ),
    ],
)
def test_after_a_rate_change_the_range_holds_the_new_truth_at_once(
    phases: list[tuple[float, bool, int]],
) -> None:
    """A visitor with 99 people ahead when ops change the rate: from the first check after the
    change, the range they are shown contains the time they really wait, and the estimate does
    not creep up while the old rate scrolls out of the measurement."""
    slots = admissions(phases)
    changed_at = sum(seconds for _, _, seconds in phases[:-1])
    view, line = LineView("r"), 5000
    mine = None
    shown: list[float] = []
    for now in range(sum(seconds for _, _, seconds in phases)):
        rate, paused = phase_at(phases, now)
        processed = sum(1 for t in slots if t <= now)
        lane = LaneSnapshot(processed, line, line - processed, 0, processed, 0, ())
        view.apply(
            dataclasses.replace(
                snap(now * 1_000_000, processed, line),
                rate_per_minute=rate,
                paused=paused,
                lanes={"": lane},
            )
        )
        if now < changed_at:
            continue
        if mine is None:
            mine = processed + 100  # 99 people ahead
        ahead = mine - processed - 1
        if ahead < 10:  # near the front a slot's timing matters more than any rate
            break
        est = view.estimate(ahead)
        assert est is not None
        truth = slots[mine - 1] - now
        assert est.low <= truth <= est.high, (now - changed_at, ahead, truth, est)
        if shown:
            assert est.seconds <= shown[-1] * 1.05, (now - changed_at, shown[-1], est)
        shown.append(est.seconds)
    assert len(shown) > 60


def test_a_measurement_just_restarted_leans_on_the_configured_rate() -> None:
    # Five seconds at 2 a second say little against a configured 1 a second; a full window
    # says everything.
    assert estimate_wait(99, 2.0, 60.0, settled=0.0) == estimate_wait(99, None, 60.0)
    early = estimate_wait(99, 2.0, 60.0, settled=5 / 60)
    full = estimate_wait(99, 2.0, 60.0, settled=1.0)
    assert early is not None and full is not None
    assert full.seconds == pytest.approx(50.0)
    assert 90.0 < early.seconds < 100.0
