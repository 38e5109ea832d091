"""Real replays against a private stack (Valkey, the booking site, the gateway).

The smoke replay is the flash crowd at 1/500 scale and 120x speed, then the same crowd sent
straight at a site with no line: its verdict must be a pass, the driver must have kept up,
and the line must have done what a citizen would notice (order kept, nobody lost, more
bookings and fewer errors than without it). The capacity replay holds about 5,000 waiting
visitors for 20 s and asserts that every one of them was served on schedule: the reduced
version of the 140,000-visitor run in docs/REPLAY.md. Latency figures belong to the machine
and are not asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from load.replay.cli import main
from load.replay.record import LATE_S

pytestmark = pytest.mark.slow

FIGURE_KEYS = {
    "visitors", "arrived", "outcomes", "admitted", "verified_phone", "got_through", "booked",
    "registered_without_date", "slots", "slots_booked_per_site", "order_inversions",
    "position_rises", "lost_visitors", "wait_real_s", "wait_scenario_min",
    "estimate_error_pct", "site", "gateway_status", "gateway_join", "driver", "cpu",
    "gateway_counters",
}  # fmt: skip


def _replay(out: Path, argv: list[str]) -> tuple[int, dict[str, Any]]:
    status = main([*argv, "--out", str(out)])
    return status, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict[str, Any]]:
    out = tmp_path_factory.mktemp("replay")
    argv = ["flash-crowd", "--scale", "0.002", "--speed", "120", "--max-seconds", "12"]
    status, summary = _replay(out, [*argv, "--compare"])
    return out, status, summary


def test_the_verdict_is_a_pass(smoke: tuple[Path, int, dict[str, Any]]) -> None:
    _, status, summary = smoke
    every = summary["checks"] + summary["launch_day"] + summary["comparison"]["checks"]
    failed = [c for c in every if c["passed"] is False]
    assert status == 0 and summary["passed"], failed
    facts = {fact["measure"]: fact for fact in summary["launch_day"]}
    assert facts["sold_out"]["passed"] and facts["arrivals"]["passed"]


def test_the_driver_kept_up(smoke: tuple[Path, int, dict[str, Any]]) -> None:
    _, _, summary = smoke
    driver = summary["figures"]["driver"]
    assert driver["crashes"] == 0
    assert driver["lateness_s"]["p99"] <= LATE_S
    assert driver["max_held"] == driver["max_present"] >= 150


def test_writes_the_summary_and_the_report(smoke: tuple[Path, int, dict[str, Any]]) -> None:
    out, _, summary = smoke
    assert summary["scenario"] == "flash-crowd" and summary["mode"] == "gateway"
    assert set(summary["figures"]) >= FIGURE_KEYS
    assert {"direct", "comparison", "checks", "launch_day", "passed", "room"} <= set(summary)
    page = (out / "report.html").read_text()
    assert "<svg" in page and "With and without the waiting room" in page
    assert (out / "visitors.csv").read_text().startswith("index,")
    assert (out / "driver.csv").read_text().startswith("second,started,present,held")
    # The gateway's own counters were read throughout.
    assert summary["figures"]["gateway_counters"]["samples"] >= 8


def test_the_line_kept_order_and_lost_nobody(smoke: tuple[Path, int, dict[str, Any]]) -> None:
    _, _, summary = smoke
    f = summary["figures"]
    assert f["visitors"] == 200
    assert f["order_inversions"] == 0, f["inversion_examples"]
    assert f["position_rises"] == 0
    assert f["lost_visitors"] == 0


def test_the_gateway_saved_the_site(smoke: tuple[Path, int, dict[str, Any]]) -> None:
    _, _, summary = smoke
    f, direct = summary["figures"], summary["direct"]["figures"]
    # Every booking a visitor saw is one the site made, and no more.
    assert f["slots_booked_per_site"] == f["booked"] >= 1
    assert direct["slots_booked_per_site"] == direct["booked"]
    side = summary["comparison"]
    line, bare = side["with_gateway"], side["straight_at_site"]
    assert line["completed"] > bare["completed"]
    assert line["booked"] >= bare["booked"]
    assert line["site_errors"] < bare["site_errors"]


def test_holds_thousands_of_visitors_on_schedule(tmp_path: Path) -> None:
    argv = ["be-qvax", "--scale", "0.11", "--speed", "30", "--max-seconds", "20"]
    _, summary = _replay(tmp_path, argv)
    driver = summary["figures"]["driver"]
    assert driver["crashes"] == 0
    assert driver["max_present"] >= 5000
    # Held means present and on schedule: at the busiest second nobody was overdue.
    assert driver["max_held"] == driver["max_present"]
    assert driver["seconds_with_overdue"] == 0
    assert driver["lateness_s"]["p99"] <= LATE_S
    assert driver["requests"] >= 10_000
