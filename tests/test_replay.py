"""Launch-day replay: the scenario files, the crowd model, the squeeze, the summary's
arithmetic, and the report, all without a network. The real replay is test_replay_smoke.py."""

from __future__ import annotations

import ast
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO_ROOT
from load.replay import model
from load.replay.driver import DriverStats, Second
from load.replay.record import BOOKED, GAVE_UP, REGISTERED, SITE, STATUS, Recorder, VisitorRecord
from load.replay.report import render
from load.replay.run import GATEWAY, RunResult
from load.replay.scaling import (
    Squeeze,
    grace_seconds,
    inventory,
    room_settings,
    rooms_toml,
    site_env,
    sms_schedule,
)
from load.replay.scenario import (
    Behaviour,
    Check,
    Curve,
    ScenarioError,
    Site,
    available,
    load_scenario,
    parse_scenario,
)
from load.replay.series import waiting_over_time
from load.replay.summary import compare, order_inversions, summarize
from load.replay.transport import cookie_header, update_cookies
from queue_core.rooms import load_rooms

SCENARIOS = ["be-qvax", "cz-2021-01-15", "flash-crowd", "hold-150k"]


def test_every_scenario_is_shipped() -> None:
    assert available() == SCENARIOS


@pytest.mark.parametrize("name", SCENARIOS)
def test_curve_adds_up_to_the_stated_total(name: str) -> None:
    scenario = load_scenario(name)
    assert model.total(scenario.arrivals) == pytest.approx(scenario.arrivals_total, rel=1e-9)


# The launch-day facts (seeds/README.md), checked on the model: arrivals between two
# minutes, people waiting at a minute and people let through by a minute (a line served at
# the scenario's gateway rate, nobody giving up), and the site's appointments.
FACTS = [
    ("cz-2021-01-15", "arrivals", 0, 240, None, 441_000),  # within the 80+ target group
    ("cz-2021-01-15", "admitted", 0, 60, 44_000, None),  # over 44,000 in the first hour
    ("cz-2021-01-15", "slots", 0, 0, 44_000, 46_000),  # all dates gone after about an hour
    ("cz-2021-01-15", "admitted", 0, 70, 44_800, None),
    ("cz-2021-01-15", "admitted", 0, 240, 65_000, None),  # 65,000 registered within hours
    ("be-qvax", "waiting", 0, 90, 140_000, None),  # >140,000 waiting at 09:30
    ("be-qvax", "waiting", 0, 30, 260 * 60, None),  # registering took over an hour
    ("be-qvax", "admitted", 0, 300, 70_000, 80_000),  # 70,000 registered
    ("flash-crowd", "arrivals", 0, 1, 100_000, None),  # 100,000 within 60 s
    ("flash-crowd", "arrivals", 1, 120, None, 0),
    ("cz-2021-01-15", "booked", 0, 60, 44_000, None),  # over 44,000 reservations, first hour
    ("cz-2021-01-15", "sold_out", 0, 0, 45, 70),  # every date gone after about an hour
    ("be-qvax", "registered", 0, 300, 70_000, 80_000),
    ("flash-crowd", "sold_out", 0, 0, None, 15),  # 14,000 at 1,000 a minute
    ("hold-150k", "waiting", 0, 8, 140_000, None),
]


@pytest.mark.parametrize(("name", "measure", "start", "end", "low", "high"), FACTS)
def test_launch_day_facts(
    name: str, measure: str, start: float, end: float, low: float | None, high: float | None
) -> None:
    value = model.measure(load_scenario(name), Check("fact", measure, start, end))
    if low is not None:
        assert value >= low
    if high is not None:
        assert value <= high


@pytest.mark.parametrize(
    ("name", "index"),
    [(name, i) for name in SCENARIOS for i in range(len(load_scenario(name).checks))],
)
def test_checks_in_the_scenario_files_hold(name: str, index: int) -> None:
    scenario = load_scenario(name)
    check = scenario.checks[index]
    assert check.at_least <= model.measure(scenario, check) <= check.at_most, check.what


CURVES = [
    # points, [(start, end, arrivals)]
    ([(0, 60), (10, 60)], [(0, 10, 600), (0, 5, 300), (10, 20, 0)]),
    ([(0, 0), (10, 100)], [(0, 10, 500), (0, 5, 125), (5, 10, 375)]),
    ([(0, 0), (0, 1000), (1, 1000), (1, 0)], [(0, 1, 1000), (-5, 0, 0), (0.5, 1, 500)]),
    ([(0, 100), (2, 0), (4, 100)], [(0, 4, 200), (1, 3, 50)]),
]


@pytest.mark.parametrize(("points", "windows"), CURVES)
def test_curve_areas(
    points: list[tuple[float, float]], windows: list[tuple[float, float, float]]
) -> None:
    curve = Curve(tuple(points))
    for start, end, expected in windows:
        assert model.arrivals_between(curve, start, end) == pytest.approx(expected)


@pytest.mark.parametrize(("points", "windows"), CURVES)
@pytest.mark.parametrize("count", [1, 7, 1000])
def test_arrival_times_follow_the_curve(
    points: list[tuple[float, float]], windows: list[tuple[float, float, float]], count: int
) -> None:
    curve = Curve(tuple(points))
    times = model.arrival_minutes(curve, count)
    assert len(times) == count
    assert times == sorted(times)
    whole = model.total(curve)
    for start, end, expected in windows:
        inside = sum(start <= t < end for t in times)
        assert abs(inside - expected * count / whole) <= 1


@pytest.mark.parametrize(("name", "scale"), [(n, s) for n in SCENARIOS for s in (0.001, 0.01)])
def test_plan_has_the_scaled_number_of_people(name: str, scale: float) -> None:
    scenario = load_scenario(name)
    plan = model.plan_visitors(scenario, scale)
    assert len(plan) == round(scenario.arrivals_total * scale)
    bots = sum(p.bot for p in plan)
    assert bots == pytest.approx(len(plan) * scenario.behaviour.bot_share, abs=4 + len(plan) / 50)
    assert all(math.isinf(p.patience_minutes) for p in plan if p.bot)
    assert model.plan_visitors(scenario, scale) == plan  # the same crowd every time


def test_patience_hazard_grows_with_the_wait() -> None:
    behaviour = Behaviour(patience_median_minutes=30, patience_shape=1.5)
    assert model.survival(behaviour, 0) == 1.0
    assert model.survival(behaviour, 30) == pytest.approx(0.5)
    hazards = [model.hazard(behaviour, m) for m in (1, 10, 30, 90)]
    assert hazards == sorted(hazards)
    rng = random.Random(3)
    draws = sorted(model.draw_patience_minutes(behaviour, rng) for _ in range(4000))
    assert draws[2000] == pytest.approx(30, rel=0.08)


def test_scenario_file_errors_name_the_field() -> None:
    base = {
        "duration_minutes": 10,
        "arrivals": {"points": [[0, 1], [1, 1]], "total": 1},
    }
    assert parse_scenario(base, "ok").arrivals_total == 1
    with pytest.raises(ScenarioError, match="patience_medain"):
        parse_scenario({**base, "behaviour": {"patience_medain_minutes": 3}}, "typo")
    with pytest.raises(ScenarioError, match="slots_per_day"):
        parse_scenario({**base, "site": {"slots_per_day": "many"}}, "bad")
    with pytest.raises(ScenarioError, match="in order"):
        parse_scenario({**base, "arrivals": {"points": [[5, 1], [1, 1]], "total": 1}}, "x")
    with pytest.raises(ScenarioError, match="unknown top-level"):
        parse_scenario({**base, "extra": 1}, "x")
    with pytest.raises(ScenarioError, match="no scenario"):
        load_scenario("no-such-day")


@pytest.mark.parametrize(
    ("slots", "scale"), [(44_800, 0.01), (14_000, 0.002), (1, 0.001), (44_800, 1.0)]
)
def test_inventory_is_scaled_down(slots: int, scale: float) -> None:
    site = Site(centres=14, days=16, slots_per_day=200) if slots == 44_800 else Site()
    if slots == 1:
        site = Site(centres=1, days=1, slots_per_day=1)
    centres, days, per_day = inventory(site, scale)
    target = max(1, round(site.slots * scale))
    assert centres * days * per_day == pytest.approx(target, rel=0.35, abs=2)


@pytest.mark.parametrize(("scale", "speed"), [(0.01, 60), (0.001, 600), (0.002, 120), (1, 10)])
def test_squeezed_settings_keep_the_days_proportions(scale: float, speed: float) -> None:
    scenario = load_scenario("cz-2021-01-15")
    squeeze = Squeeze(speed=speed, scale=scale)
    env = site_env(scenario.site, squeeze)
    assert float(env["BACKEND_SMS_PER_SECOND"]) == pytest.approx(20 * scale * speed)
    assert sms_schedule(scenario.site, squeeze) == [
        (35 * 60 / speed, pytest.approx(200 * scale * speed))
    ]
    # Throughput = workers / latency scales by scale * speed, at rest and under load (all
    # workers busy): the scaled site falls over where the real one would.
    site = scenario.site
    workers = int(env["BACKEND_MAX_IN_FLIGHT"])
    assert workers >= min(4, site.max_in_flight)
    base = float(env["BACKEND_BASE_LATENCY_MS"])
    slope = float(env["BACKEND_LATENCY_PER_REQUEST_MS"])
    expected = site.max_in_flight / site.base_latency_ms * scale * speed
    assert workers / base == pytest.approx(expected, rel=1e-4)
    busy = workers / (base + slope * (workers - 1))
    full = site.max_in_flight / (
        site.base_latency_ms + site.latency_per_request_ms * (site.max_in_flight - 1)
    )
    # Within a quarter: 4 workers standing for 16 are busy in steps of a quarter.
    assert busy == pytest.approx(full * scale * speed, rel=0.25)


@pytest.mark.parametrize(
    ("name", "scale", "speed", "low", "high"),
    [
        ("flash-crowd", 0.01, 60, 10, 20),  # a small crowd: squeezed (5 s), floored at 10 s
        ("be-qvax", 1.0, 10, 180, 300),  # 140,000+: realistic, checks up to 45 s apart
        ("be-qvax", 0.01, 60, 10, 10),
    ],
)
def test_grace_is_squeezed_only_while_checks_stay_few(
    name: str, scale: float, speed: float, low: float, high: float
) -> None:
    scenario = load_scenario(name)
    squeeze = Squeeze(speed=speed, scale=scale)
    grace = grace_seconds(scenario, squeeze)
    assert low <= grace <= high
    assert grace <= scenario.gateway.grace_seconds
    # The crowd at its longest, all checking at the ceiling (a quarter of the grace period,
    # at most 45 s), stays within a few thousand checks a second.
    longest = model.fluid_peak(
        scenario.arrivals, scenario.gateway.rate_per_minute, scenario.duration_minutes
    )
    checks_per_s = longest * scale / min(45, grace / 4)
    assert checks_per_s <= 3000 * 1.01 or grace == scenario.gateway.grace_seconds


def test_rooms_file_is_one_the_gateway_reads(tmp_path: Path) -> None:
    path = tmp_path / "rooms.toml"
    settings = room_settings(load_scenario("flash-crowd"), Squeeze(600, 0.002))
    path.write_text(rooms_toml(settings))
    room = load_rooms(path, environ={})["vaccination"]
    assert room.protects("/book/api/pin")
    assert room.rate_per_minute == pytest.approx(1000 * 0.002 * 600)
    assert room.grace_seconds == 10.0


def test_cookies_are_kept_per_visitor() -> None:
    jar: dict[str, str] = {}
    update_cookies(
        jar,
        [
            "wr_ticket_vaccination=abc.def; Path=/; HttpOnly; SameSite=lax",
            'booking_session="e30="; path=/; Max-Age=1800',
        ],
    )
    assert cookie_header(jar) == 'wr_ticket_vaccination=abc.def; booking_session="e30="'
    update_cookies(jar, ["wr_ticket_vaccination=; Max-Age=0; Path=/"])
    assert list(jar) == ["booking_session"]


def _visitor(
    index: int,
    join: float,
    admitted: float | None,
    last_waiting: float | None,
    outcome: str = BOOKED,
) -> VisitorRecord:
    v = VisitorRecord(index, False, join, 60.0)
    v.arrived_at = v.join_started = join
    v.join_done = join + 0.01
    v.admitted_at = admitted
    v.last_waiting_at = last_waiting
    v.outcome = outcome
    return v


@pytest.mark.parametrize(
    ("visitors", "pairs"),
    [
        # In order: 0 admitted at 5, 1 at 6.
        ([_visitor(0, 0, 5, 4.9), _visitor(1, 1, 6, 5.9)], []),
        # 1 joined later but was admitted at 3 while 0 was still told to wait at 4.
        ([_visitor(0, 0, 5, 4.0), _visitor(1, 1, 3, 2.0)], [(0, 1)]),
        # Within the tolerance (a snapshot a tick old): not counted.
        ([_visitor(0, 0, 5, 3.1), _visitor(1, 1, 3, 2.0)], []),
        # Joined together (1 started before 0's join completed): no order between them.
        ([_visitor(0, 1.0, 5, 4.0), _visitor(1, 1.005, 3, 2.0)], []),
        # 0 gave up while waiting; its last "waiting" answer still counts as evidence.
        ([_visitor(0, 0, None, 8.0, GAVE_UP), _visitor(1, 1, 3, 2.0)], [(0, 1)]),
    ],
)
def test_order_inversions(visitors: list[VisitorRecord], pairs: list[tuple[int, int]]) -> None:
    assert order_inversions(visitors) == pairs


def synthetic_result() -> RunResult:
    """A small made-up replay: 6 visitors through the line, a few site requests."""
    visitors = [
        _visitor(0, 0.0, 2.0, 1.5),
        _visitor(1, 0.5, 4.0, 3.5),
        _visitor(2, 1.0, 6.0, 5.0, REGISTERED),
        _visitor(3, 1.5, None, 7.0, GAVE_UP),
        _visitor(4, 2.0, None, None, "unfinished"),
        _visitor(5, 2.5, 9.0, 8.5),
    ]
    for v, promised in zip(visitors, (2, 3, 4, 5, 6, 8), strict=True):
        v.promised_s, v.promised_low_s, v.promised_high_s = (
            promised,
            promised * 0.85,
            promised * 1.25,
        )
        v.first_position = v.last_position = v.index + 1
        if v.admitted_at is not None:
            v.verified_at = v.admitted_at + 0.5
            v.done_at = v.admitted_at + 1
    recorder = Recorder()
    for second in range(10):
        recorder.request(STATUS, second + 0.1, 200, 0.004)
        recorder.request(SITE, second + 0.2, 200 if second % 4 else 503, 0.05 + second / 100)
    return RunResult(
        load_scenario("flash-crowd"),
        GATEWAY,
        Squeeze(speed=60, scale=0.001),
        visitors,
        recorder,
        DriverStats(
            steps=40, seconds=[Second(s, 4 * s, 6, 1 if s == 3 else 0, 0, 0, 1) for s in range(10)]
        ),
        duration_s=10.0,
        limit_s=120.0,
        room={"rate_per_minute": 30.0},
        slots_before=3,
        slots_after=0,
    )


def test_summary_of_a_synthetic_replay() -> None:
    summary = summarize(synthetic_result())
    f = summary["figures"]
    assert f["booked"] == 3 and f["registered_without_date"] == 1
    assert f["outcomes"]["gave_up"] == 1 and f["outcomes"]["unfinished"] == 1
    assert f["order_inversions"] == 0 and f["lost_visitors"] == 0
    assert f["site"]["requests"] == 10 and f["site"]["errors"] == 3
    assert f["slots_booked_per_site"] == 3
    checks = {c["name"]: c["passed"] for c in summary["checks"]}
    assert checks["bookings_match_supply"] is True  # min(3 slots, 4 verified) == 3 booked
    assert checks["order_inversions"] is True
    facts = [fact["passed"] for fact in summary["launch_day"]]
    assert len(facts) == len(load_scenario("flash-crowd").checks)
    assert summary["passed"] is all(v is not False for v in [*checks.values(), *facts])
    both = compare(summary, summary)
    assert both["with_gateway"]["site_errors"] == 3


def test_report_renders_from_a_synthetic_replay() -> None:
    result = synthetic_result()
    summary = summarize(result)
    page = render(result, summary, (result, summary), compare(summary, summary))
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") >= 6
    for heading in (
        "People waiting in line",
        "Admissions: set rate and actual",
        "Booking site latency",
        "Wait in line",
        "Estimate error",
        "With and without the waiting room",
    ):
        assert heading in page
    # Self-contained: nothing fetched from anywhere.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page
    assert max(y for _, y in waiting_over_time(result)) == 5  # at 3 s: six joined, one in


LOCUSTFILE = REPO_ROOT / "load" / "locustfile.py"


def test_locustfile_is_valid_python_and_only_it_imports_locust() -> None:
    tree = ast.parse(LOCUSTFILE.read_text(), filename=str(LOCUSTFILE))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert "locust" in imported
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    assert {"Visitor", "ScenarioShape"} <= classes
    for path in (REPO_ROOT / "load" / "replay").glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+locust", path.read_text(), re.M), path


@pytest.mark.parametrize(
    ("run_time", "current", "expected"),
    [
        (0.0, 0, (0, 1.0)),
        # A doorbuster: the curve jumps to 100,000 a minute. A step in, 11 users run and 100
        # are wanted: start the other 89 within the next tick, not 1.67 a second.
        (0.5, 11, (50, 39.0)),
        (1.0, 11, (100, 89.0)),
        (1.0, 100, (100, 1.0)),
        (5.0, 100, (100, 1.0)),  # everyone has come: nothing more to start
        (121.0, 100, None),  # the day is over: stop
    ],
)
def test_locust_shape_closes_the_gap_by_the_next_tick(
    run_time: float, current: int, expected: tuple[int, float] | None
) -> None:
    from load.replay import shape

    scenario = load_scenario("flash-crowd")
    assert shape.tick(scenario, Squeeze(speed=60, scale=0.001), run_time, current) == expected


def test_locustfile_shape_ticks_without_locust(monkeypatch: pytest.MonkeyPatch) -> None:
    """The locustfile's own LoadTestShape, ticked with a stand-in for locust (which is an
    optional extra, and patches the standard library when imported)."""
    import importlib.util
    import sys
    import types
    from collections.abc import Callable

    class Shape:
        runner: Any = None
        run_time = 0.0

        def get_run_time(self) -> float:
            return self.run_time

    def task(f: Callable[..., Any]) -> Callable[..., Any]:
        return f

    stub = types.ModuleType("locust")
    stub.HttpUser = type("HttpUser", (), {})  # type: ignore[attr-defined]
    stub.LoadTestShape = Shape  # type: ignore[attr-defined]
    stub.constant = lambda seconds: seconds  # type: ignore[attr-defined]
    stub.task = task  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "locust", stub)
    for name, value in {"REPLAY_SCENARIO": "flash-crowd", "REPLAY_SPEED": "60"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REPLAY_SCALE", "0.001")
    spec = importlib.util.spec_from_file_location("replay_locustfile", LOCUSTFILE)
    assert spec is not None and spec.loader is not None
    locustfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(locustfile)
    shape = locustfile.ScenarioShape()
    shape.run_time = 1.0
    shape.runner = types.SimpleNamespace(user_count=11)
    assert shape.tick() == (100, 89.0)
    shape.runner = None  # before the runner is attached
    assert shape.tick() == (100, 100.0)


def test_overdue_walk_counts_what_a_full_scan_counts() -> None:
    import heapq
    import types

    from load.replay.driver import _overdue

    rng = random.Random(5)
    heap: list[tuple[float, int, Any]] = []
    for i in range(5000):
        state = "arrive" if rng.random() < 0.3 else "poll"
        heapq.heappush(heap, (rng.uniform(0, 100), i, types.SimpleNamespace(state=state)))
    for cutoff in (-1.0, 0.5, 10.0, 50.0, 101.0):
        full = sum(1 for due, _, v in heap if due < cutoff and v.state != "arrive")
        assert _overdue(heap, cutoff) == full  # type: ignore[arg-type]


def test_launch_day_facts_measured_on_a_replay() -> None:
    """The scenario's facts on a replay's own records, scaled back up (scale 0.001)."""
    from load.replay.outcomes import launch_day

    facts = {fact["measure"]: fact for fact in launch_day(synthetic_result())}
    # Planned within the first real second (minute 1 at speed 60): visitors 0 and 1.
    assert facts["arrivals"]["replay"] == 2000 and facts["arrivals"]["passed"] is False
    # There by minute 1 and not yet admitted or gone: visitors 0, 1 and 2.
    assert facts["waiting"]["replay"] == 3000
    # The last booking (visitor 5) ended at 10 real seconds: minute 10, within 25.
    assert facts["sold_out"]["replay"] == 10.0 and facts["sold_out"]["passed"] is True
    assert all(fact["model_passed"] for fact in facts.values())


@pytest.mark.parametrize(("low", "high"), [(0, 197), (0, 1), (0, 200), (3, 17), (0, 149_725)])
def test_chart_ticks_cover_every_value(low: float, high: float) -> None:
    from load.replay.svg import nice_ticks

    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high  # no line drawn above the top of a chart
    assert 4 <= len(ticks) <= 7
