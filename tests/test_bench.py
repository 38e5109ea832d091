"""`waitroom bench`: its arithmetic, its bulk seeding, its load generators, and a --quick run.

The figures themselves are not asserted (they belong to the machine); that the bench runs,
measures what it says, and reports every key is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT, run_server
from load.bench.admission import Sample, admission_error
from load.bench.crowd import Mint, Seeded, seed_line, visitor_id
from load.bench.drivers import Load, PythonDriver, Wrk
from load.bench.profile import summarise
from load.bench.redis_stats import RedisCounters
from load.bench.report import REQUIRED_KEYS, TARGETS, Target, table, verdicts
from load.bench.stack import rooms_toml
from queue_core.line_view import LineView, Standing
from queue_core.rooms import parse_rooms
from queue_core.store import LineStore
from queue_core.tokens import VISITOR_ID, Credentials

SECRET = "a-bench-secret-that-is-long-enough-1234"


@pytest.mark.parametrize(
    ("samples", "rate_per_minute", "expected"),
    [
        ([], 60, 0.0),
        ([(0, 5)], 60, 0.0),
        # Exactly on the clock: 1 a second.
        ([(0, 0), (1_000_000, 1), (10_000_000, 10)], 60, 0.0),
        # One behind at 10 s, half ahead at 2.5 s.
        ([(0, 0), (2_500_000, 3), (10_000_000, 9)], 60, 1.0),
        # Measured from the first sample by server time, whatever order they come in.
        ([(10_000_000, 110), (0, 100), (5_000_000, 105)], 60, 0.0),
        ([(0, 0), (60_000_000, 2_997)], 3_000, 3.0),
    ],
)
def test_admission_error_is_the_largest_gap_from_rate_times_time(
    samples: list[tuple[int, int]], rate_per_minute: float, expected: float
) -> None:
    error = admission_error([Sample(t, n) for t, n in samples], rate_per_minute)
    assert error == pytest.approx(expected)


@pytest.mark.parametrize(
    ("target", "figure", "met"),
    [
        (Target("x", ">=", 0.8), 0.8, True),
        (Target("x", ">=", 0.8), 0.79, False),
        (Target("x", "<=", 50), 49.9, True),
        (Target("x", "<=", 50), 51, False),
        (Target("x", "<=", 50), None, None),
    ],
)
def test_targets(target: Target, figure: float | None, met: bool | None) -> None:
    assert target.met(figure) is met


def test_every_target_names_a_required_key() -> None:
    assert {t.key for t in TARGETS} <= set(REQUIRED_KEYS)


def test_redis_counters_leave_out_the_info_call_that_read_them() -> None:
    before = RedisCounters(reads=100, commands=500, scripts=10, transactions=1, script_usec=900)
    after = RedisCounters(reads=131, commands=801, scripts=40, transactions=2, script_usec=3900)
    spent = after - before
    assert spent == RedisCounters(30, 300, 30, 1, 3000)
    assert spent + spent == RedisCounters(60, 600, 60, 2, 6000)


def test_profile_summary_shares_by_function() -> None:
    stacks = [
        "run (server.py:1);handle (app.py:10);read_ticket (tokens.py:5) 6",
        "run (server.py:1);handle (app.py:10);render (responses.py:7) 3",
        "run (server.py:1);poll (loop.py:2) 1",
    ]
    text = summarise(stacks)
    assert "10 samples" in text
    assert "90.0%  handle (app.py)" in text
    assert "60.0%  read_ticket (tokens.py)" in text
    # In every sample: no information, left out.
    assert "run (server.py)" not in text


def test_rooms_file_is_one_the_gateway_accepts() -> None:
    import tomllib

    rooms = parse_rooms(tomllib.loads(rooms_toml({"w1000": 0.0, "adm": 3000.0})), {})
    assert rooms["adm"].rate_per_minute == 3000
    assert rooms["w1000"].protects("/w1000/anything")
    assert rooms["w1000"].grace_seconds >= 3600


def test_visitor_ids_look_like_the_gateways() -> None:
    ids = {visitor_id("w1000", place) for place in range(1, 2001)}
    assert len(ids) == 2000
    assert all(VISITOR_ID.match(v) for v in ids)


@pytest.mark.anyio
async def test_a_seeded_line_is_what_joins_would_have_made(store: LineStore) -> None:
    first = await seed_line(store, "bench", 25, gen="0123456789ab")
    assert (first.seq, first.gen) == (25, "0123456789ab")
    # A room keeps its generation, as it does when visitors join.
    assert await seed_line(store, "bench", 25, first=26) == Seeded(50, "0123456789ab")
    snap = await store.tick("bench")
    assert (snap.seq, snap.waiting, snap.head) == (50, 50, 0)
    # Every seeded visitor counts as having checked just now: nobody is swept.
    assert snap.abandoned_total == 0
    view = LineView("bench")
    view.apply(snap)
    assert view.locate(26).standing is Standing.WAITING
    assert view.locate(26).ahead == 25
    assert await store.holder("bench", 26) == visitor_id("bench", 26)
    # The next real arrival queues behind the crowd.
    assert (await store.join("bench", "newcomer-123")).place == 51
    assert snap.gen in ("", "0123456789ab")  # whether or not snapshots carry it yet


def test_minted_tickets_are_the_gateways_own(tmp_path: Path) -> None:
    mint = Mint(SECRET, processes=1)
    mint.tickets("w1000", [7, 3], 1_700_000_000, "0123456789ab", tmp_path / "t.txt")
    mint.passes("w1000", 2, 1_800_000_000, tmp_path / "p.txt")
    mint.finish()
    lines = (tmp_path / "t.txt").read_text().split()
    assert [line.split("=", 1)[0] for line in lines] == ["wr_ticket_w1000"] * 2
    credentials = Credentials([SECRET])
    ticket = credentials.read_ticket(lines[0].split("=", 1)[1])
    assert (ticket.room, ticket.place, ticket.visitor) == ("w1000", 7, visitor_id("w1000", 7))
    assert ticket.ahead_at_join == 6
    passes = (tmp_path / "p.txt").read_text().splitlines()
    cookies = dict(part.split("=", 1) for part in passes[0].split("; "))
    assert credentials.read_pass(cookies["wr_pass_w1000"], 1_700_000_000).room == "w1000"
    assert len(cookies["wr_session_w1000"]) == 16  # each pass comes with its browser's session


@pytest.fixture(scope="module")
def hello_url() -> object:
    with run_server("load.bench.hello:create_app") as url:
        yield url


@pytest.mark.parametrize("rate", [0.0, 200.0])
def test_python_driver_closed_and_open_loop(hello_url: str, tmp_path: Path, rate: float) -> None:
    values = tmp_path / "values.txt"
    values.write_text("a=1\nb=2\n")
    load = Load(hello_url + "/hello", 4, 1, header="Cookie", values=values, rate=rate)
    result = PythonDriver().run(load)
    assert result.errors == 0
    assert result.requests > 50
    assert result.p50_ms <= result.p99_ms <= result.max_ms
    if rate:
        assert result.rps == pytest.approx(rate, rel=0.2)


@pytest.mark.skipif(Wrk.find() is None, reason="wrk is not installed (apt-get install wrk)")
@pytest.mark.parametrize("rate", [0.0, 200.0])
def test_wrk_closed_and_open_loop(hello_url: str, tmp_path: Path, rate: float) -> None:
    values = tmp_path / "values.txt"
    values.write_text("a=1\nb=2\n")
    wrk = Wrk.find()
    assert wrk is not None
    result = wrk.run(Load(hello_url + "/hello", 4, 1, header="Cookie", values=values, rate=rate))
    assert result.errors == 0
    assert result.requests > 50
    if rate:
        assert result.rps == pytest.approx(rate, rel=0.2)


@pytest.mark.slow
def test_quick_bench_reports_every_figure_with_its_setup(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "load.bench", "--quick", "--json", "--keep", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    missing = [key for key in REQUIRED_KEYS if key not in result]
    assert not missing, missing
    assert set(result["poll_rps_by_waiting"]) == {"200", "1000", "2000"}
    assert result["poll_rps"] > 0 and result["hello_rps"] > 0 and result["join_rps"] > 0
    assert 0 <= result["redis_calls_per_poll"] < 1
    assert result["redis_bytes_per_waiting"] > 0
    assert result["admission_samples"] >= 10
    assert result["poll_p50_ms"] <= result["poll_p99_ms"]
    # Every run served what it was asked without errors, and says what it ran with.
    for run in result["runs"]:
        assert run["errors"] == 0, run
        assert run["requests"] > 0 and run["workers"] >= 1 and run["connections"] >= 1
        assert {"server", "driver", "other"} <= set(run["cpu_cores"])
    assert set(result["targets"]) == {t.key for t in TARGETS}
    assert result["setup"]["driver"]
    # The table shows the same figures.
    text = table(result | {"targets": verdicts(result)})
    assert "poll_vs_hello" in text and "admission_error" in text
