"""A short real replay: the flash crowd at 1/1000 scale and 600x speed against a private
stack (Valkey, the booking site, the gateway), with the same crowd then sent straight at a
site with no line. Latency figures belong to the machine and are not asserted; what a
citizen would notice is: the line kept its order, nobody lost a place, bookings were made
and each one was real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load.replay.cli import main

pytestmark = pytest.mark.slow

FIGURE_KEYS = {
    "visitors", "arrived", "outcomes", "admitted", "verified_phone", "got_through", "booked",
    "registered_without_date", "slots", "slots_booked_per_site", "order_inversions",
    "position_rises", "lost_visitors", "wait_real_s", "wait_scenario_min",
    "estimate_error_pct", "site", "gateway_status", "gateway_join", "driver",
}  # fmt: skip


@pytest.fixture(scope="module")
def replay_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    argv = ["flash-crowd", "--scale", "0.001", "--speed", "600", "--max-seconds", "15"]
    main([*argv, "--compare", "--out", str(out)])  # the exit status is the verdict; see below
    return out


def test_writes_the_summary_and_the_report(replay_out: Path) -> None:
    summary = json.loads((replay_out / "summary.json").read_text())
    assert summary["scenario"] == "flash-crowd" and summary["mode"] == "gateway"
    assert set(summary["figures"]) >= FIGURE_KEYS
    assert {"direct", "comparison", "checks", "passed", "room", "site_env"} <= set(summary)
    page = (replay_out / "report.html").read_text()
    assert "<svg" in page and "With and without the waiting room" in page
    assert (replay_out / "visitors.csv").read_text().startswith("index,")


def test_the_line_kept_order_and_lost_nobody(replay_out: Path) -> None:
    summary = json.loads((replay_out / "summary.json").read_text())
    f = summary["figures"]
    assert f["visitors"] == 100
    assert f["admitted"] >= 20
    assert f["order_inversions"] == 0, f["inversion_examples"]
    assert f["position_rises"] == 0
    assert f["lost_visitors"] == 0
    assert f["driver"]["crashes"] == 0


def test_bookings_were_made_and_are_real(replay_out: Path) -> None:
    summary = json.loads((replay_out / "summary.json").read_text())
    f = summary["figures"]
    assert f["booked"] >= 1
    # Every booking a visitor saw is one the site made, and no more.
    assert f["slots_booked_per_site"] == f["booked"]
    checks = {c["name"]: c for c in summary["checks"]}
    assert checks["bookings_match_supply"]["passed"], checks["bookings_match_supply"]
    direct = summary["direct"]["figures"]
    assert direct["slots_booked_per_site"] == direct["booked"]
    assert summary["comparison"]["straight_at_site"]["site_requests"] > 0
