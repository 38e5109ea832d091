"""The booking site as the gateway relies on it: the load model, settings, the stand-in
behaviours (echo, health, visitor echo, pages), load shedding for real, and the headers every
reply carries. The booking flow itself is in test_booking_api.py and test_booking_pages.py."""

from __future__ import annotations

import asyncio
import hashlib
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_booking_support import BOOKING_APP

from booking_backend import inventory
from booking_backend.__main__ import parse_args
from booking_backend.app import create_app
from booking_backend.capacity import retry_after_s, service_time_ms
from booking_backend.database import Database
from booking_backend.headers import SoldOutHeaderMiddleware
from booking_backend.last_resort import LastResortMiddleware
from booking_backend.settings import BackendSettings, numbered_centres
from gateway.settings import Settings as GatewaySettings
from helpers import REPO_ROOT, run_server

# No artificial latency: page tests check content, not timing. Inbox and admin stay off.
FAST_ENV = {
    "BACKEND_MAX_IN_FLIGHT": "4",
    "BACKEND_BASE_LATENCY_MS": "0",
    "BACKEND_LATENCY_PER_REQUEST_MS": "0",
    "BACKEND_QUEUE_TIMEOUT_S": "1",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    # One real server for all page tests: starting one per test would cost seconds.
    db = tmp_path_factory.mktemp("backend") / "booking.sqlite3"
    with (
        run_server(BOOKING_APP, env={**FAST_ENV, "BACKEND_DB": str(db)}) as base_url,
        httpx.Client(base_url=base_url, timeout=5) as http,
    ):
        yield http


# --- pure load model -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "per_request", "others_in_flight", "waiting", "expected"),
    [
        (40, 15, 0, 0, 40),
        (40, 15, 1, 0, 55),
        (40, 15, 0, 1, 55),
        (40, 15, 7, 10, 40 + 15 * 17),
        (0, 0, 100, 100, 0),
        (300, 0, 5, 5, 300),
        (0, 2.5, 2, 2, 10),
    ],
)
def test_service_time_grows_with_load(
    base: float, per_request: float, others_in_flight: int, waiting: int, expected: float
) -> None:
    got = service_time_ms(base, per_request, others_in_flight=others_in_flight, waiting=waiting)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("base", "per_request", "others_in_flight", "waiting"),
    [(-1, 0, 0, 0), (0, -1, 0, 0), (0, 0, -1, 0), (0, 0, 0, -1)],
)
def test_service_time_rejects_negative_inputs(
    base: float, per_request: float, others_in_flight: int, waiting: int
) -> None:
    with pytest.raises(ValueError):
        service_time_ms(base, per_request, others_in_flight=others_in_flight, waiting=waiting)


@pytest.mark.parametrize(
    ("waiting", "max_in_flight", "service_ms", "queue_timeout_s", "expected"),
    [
        (0, 8, 40, 5, 1),  # never below one second
        (0, 1, 2500, 5, 3),  # rounded up to whole seconds
        (4, 2, 1000, 5, 3),  # two batches ahead plus our own
        (5, 2, 1000, 5, 3),
        (6, 2, 1000, 5, 4),
        (0, 2, 0, 5, 1),
        (0, 2, 0, 0, 1),
        # Capped at the queue timeout plus one service time: by then the queue is new.
        (6, 2, 1000, 0.5, 2),
        (1000, 8, 40 + 15 * 1007, 5, 21),  # not the 32 minutes the queue would take
        (10_000, 8, 40 + 15 * 10_007, 5, 156),  # not 2.2 days
    ],
)
def test_retry_after_estimates_queue_drain_time(
    waiting: int, max_in_flight: int, service_ms: float, queue_timeout_s: float, expected: int
) -> None:
    got = retry_after_s(
        waiting=waiting,
        max_in_flight=max_in_flight,
        service_ms=service_ms,
        queue_timeout_s=queue_timeout_s,
    )
    assert got == expected


# --- settings --------------------------------------------------------------------------


def test_settings_defaults_when_env_is_empty() -> None:
    settings = BackendSettings.from_env({})
    assert settings == BackendSettings(8, 40.0, 15.0, 5.0)
    assert (len(settings.centres), settings.days, settings.slots_per_day) == (5, 14, 200)
    assert (settings.sms_per_second, settings.pin_ttl_s, settings.pin_attempts) == (20, 300, 3)
    assert settings.db_path.name == "booking.sqlite3"
    assert settings.db_path.parent.name == ".waitroom"
    assert not settings.sim_inbox and settings.admin_token is None
    assert settings.waitroom_secrets == () and settings.waitroom_room == "vaccination"


def test_settings_read_from_env() -> None:
    env = {
        "BACKEND_MAX_IN_FLIGHT": "2",
        "BACKEND_BASE_LATENCY_MS": "300",
        "BACKEND_LATENCY_PER_REQUEST_MS": "0.5",
        "BACKEND_QUEUE_TIMEOUT_S": "0.25",
    }
    assert BackendSettings.from_env(env) == BackendSettings(2, 300.0, 0.5, 0.25)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKEND_MAX_IN_FLIGHT", "0"),
        ("BACKEND_MAX_IN_FLIGHT", "two"),
        ("BACKEND_MAX_IN_FLIGHT", "1.5"),
        ("BACKEND_BASE_LATENCY_MS", "-1"),
        ("BACKEND_LATENCY_PER_REQUEST_MS", "nan"),
        ("BACKEND_QUEUE_TIMEOUT_S", "0"),
        ("BACKEND_QUEUE_TIMEOUT_S", "inf"),
    ],
)
def test_settings_reject_bad_env_values_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        BackendSettings.from_env({name: value})


def test_python_m_booking_backend_listens_where_the_gateway_looks() -> None:
    gateway_default = next(f.default for f in fields(GatewaySettings) if f.name == "backend_url")
    assert isinstance(gateway_default, str)
    assert parse_args([]).port == urlsplit(gateway_default).port == 8001
    shown = subprocess.run(
        [sys.executable, "-m", "booking_backend", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "default 8001" in shown


# --- pages and headers -------------------------------------------------------------------


def test_home_page_links_to_booking(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "Vaccination booking" in response.text
    assert 'href="/book"' in response.text


def test_booking_page_asks_for_a_phone_number(client: httpx.Client) -> None:
    response = client.get("/book")
    assert response.status_code == 200
    assert 'action="/book/phone"' in response.text
    assert '<label for="phone">Mobile phone number</label>' in response.text


def test_the_site_has_its_own_stylesheet(client: httpx.Client) -> None:
    page = client.get("/book")
    assert '<link rel="stylesheet" href="/static/booking.css">' in page.text
    css = client.get("/static/booking.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/", "/book", "/nowhere"])
def test_visitor_header_is_echoed_html_escaped(client: httpx.Client, path: str) -> None:
    visitor = '<script>alert("x")</script>&co'
    response = client.get(path, headers={"X-Waitroom-Visitor": visitor})
    assert "Visitor: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;co" in response.text
    assert "<script>" not in response.text
    assert response.headers["X-Backend-Saw-Visitor"] == visitor


def test_visitor_echoed_on_json_replies_too(client: httpx.Client) -> None:
    response = client.post(
        "/book/api/pin", json={"phone": "nope"}, headers={"X-Waitroom-Visitor": "v-123"}
    )
    assert response.status_code == 400
    assert response.headers["X-Backend-Saw-Visitor"] == "v-123"


def test_no_visitor_header_means_no_visitor_shown(client: httpx.Client) -> None:
    response = client.get("/")
    assert "Visitor:" not in response.text
    assert "X-Backend-Saw-Visitor" not in response.headers


def test_unknown_path_is_a_404_page(client: httpx.Client) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert "Not Found" in response.text
    assert response.headers["x-booking-sold-out"] == "0"


def test_wrong_method_is_a_405(client: httpx.Client) -> None:
    response = client.delete("/book/api/booking")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_simulation_inbox_is_off_unless_enabled(client: httpx.Client) -> None:
    response = client.get("/_sim/inbox/+420601123456")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "sim_inbox_off"
    assert "BACKEND_SIM_INBOX=1" in body["detail"]


def test_admin_endpoints_are_off_without_a_token(client: httpx.Client) -> None:
    for path, body in [
        (
            "/_backend/admin/release",
            {"centre": "praha-vystaviste", "day": "2021-01-15", "slots": 1},
        ),
        ("/_backend/admin/sms-rate", {"per_second": 200}),
    ]:
        response = client.post(path, json=body, headers={"Authorization": "Bearer guess"})
        assert response.status_code == 403
        assert response.json()["error"] == "admin_disabled"
        assert "BACKEND_ADMIN_TOKEN" in response.json()["detail"]


# --- echo and health -------------------------------------------------------------------


def test_echo_get_reports_what_arrived(client: httpx.Client) -> None:
    response = client.get("/echo?a=1&b=two", headers={"X-Custom-Thing": "Yes"})
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["method"] == "GET"
    assert echoed["path"] == "/echo"
    assert echoed["query_string"] == "a=1&b=two"
    assert echoed["headers"]["x-custom-thing"] == "Yes"
    assert all(name == name.lower() for name in echoed["headers"])
    assert echoed["body_length"] == 0
    assert "body_sha256" not in echoed


def test_echo_post_reports_body_hash(client: httpx.Client) -> None:
    body = bytes(range(256)) * 1000
    response = client.post("/echo", content=body)
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_health_endpoints(client: httpx.Client) -> None:
    before = client.get("/_backend/health").json()
    client.get("/")
    health = client.get("/_backend/health").json()
    assert {"in_flight", "waiting", "served", "rejected", "max_in_flight"} <= set(health)
    assert health["served"] == before["served"] + 1
    assert (health["in_flight"], health["waiting"], health["rejected"]) == (0, 0, 0)
    assert health["max_in_flight"] == 4
    assert health["latency_ms"]["samples"] >= 1
    assert health["latency_ms"]["p50"] <= health["latency_ms"]["p95"] <= health["latency_ms"]["p99"]
    assert health["sms"]["per_second"] == 20
    assert health["slots_left"] == health["inventory"]["slots_total"] == 5 * 14 * 200
    assert health["sold_out"] is False
    healthz = client.get("/healthz")
    assert healthz.status_code == 200
    assert healthz.text == "ok"


def test_prometheus_metrics(client: httpx.Client) -> None:
    client.get("/nowhere")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    for expected in [
        "booking_slots_left 14000.0",
        "booking_sold_out 0.0",
        "booking_max_in_flight 4.0",
        "booking_sms_per_second 20.0",
        "booking_sms_queued 0.0",
        'booking_errors_total{code="not_found"}',
        'booking_responses_total{status="404"}',
        'booking_latency_seconds{quantile="0.99"}',
    ]:
        assert any(line.startswith(expected) for line in lines), expected


# --- capacity, against a real uvicorn process ------------------------------------------

BURST_SIZE = 20
OVERLOADED_ENV = {
    "BACKEND_MAX_IN_FLIGHT": "2",
    "BACKEND_QUEUE_TIMEOUT_S": "0.5",
    "BACKEND_BASE_LATENCY_MS": "300",
    "BACKEND_LATENCY_PER_REQUEST_MS": "15",
}


@pytest.fixture
def overloaded_backend(tmp_path: Path) -> Iterator[str]:
    # run_server stops the process in its own finally, whatever the test does.
    env = {**OVERLOADED_ENV, "BACKEND_DB": str(tmp_path / "booking.sqlite3")}
    with run_server(BOOKING_APP, env=env) as base_url:
        yield base_url


async def _burst(
    base_url: str, size: int
) -> tuple[list[httpx.Response], list[dict[str, Any]], dict[str, Any]]:
    """Fire ``size`` concurrent requests while sampling the health endpoint throughout."""
    samples: list[dict[str, Any]] = []
    done = asyncio.Event()
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:

        async def sample_health() -> None:
            while not done.is_set():
                samples.append((await client.get("/_backend/health")).json())
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample_health())
        try:
            # Alternate Accept headers so both the HTML and the JSON 503 are exercised.
            responses = await asyncio.gather(
                *(
                    client.get("/book", headers={"Accept": "application/json"} if i % 2 else {})
                    for i in range(size)
                )
            )
        finally:
            done.set()
            await sampler
        # Counters update just after the last byte is sent, so allow a moment to settle.
        deadline = time.monotonic() + 2
        while True:
            final = (await client.get("/_backend/health")).json()
            settled = final["served"] + final["rejected"] >= size
            if settled or time.monotonic() > deadline:
                return list(responses), samples, final
            await asyncio.sleep(0.02)


@pytest.mark.slow
def test_real_server_sheds_load_beyond_max_in_flight(overloaded_backend: str) -> None:
    responses, samples, final = asyncio.run(_burst(overloaded_backend, BURST_SIZE))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    ok, busy = statuses.count(200), statuses.count(503)
    assert ok >= 2
    assert busy >= 1
    # The queue timeout (0.5 s) plus the slowest service time (300 + 15 * 19 ms), rounded up.
    longest_retry_s = math.ceil(0.5 + (300 + 15 * (BURST_SIZE - 1)) / 1000)
    for response in responses:
        if response.status_code != 503:
            continue
        assert 1 <= int(response.headers["Retry-After"]) <= longest_retry_s
        assert response.headers["X-Booking-Sold-Out"] == "0"  # even when shedding load
        if response.request.headers.get("accept") == "application/json":
            assert response.json()["error"] == "busy"
            assert "too many requests" in response.json()["detail"]
        else:
            assert "too many requests" in response.text

    assert samples, "health endpoint was never sampled during the burst"
    assert max(s["in_flight"] for s in samples) <= 2
    assert max(s["waiting"] for s in samples) >= 1
    assert final["served"] + final["rejected"] == BURST_SIZE
    assert (final["served"], final["rejected"]) == (ok, busy)
    assert final["in_flight"] == final["waiting"] == 0


CONCURRENT_ENV = {
    "BACKEND_MAX_IN_FLIGHT": "2",
    "BACKEND_QUEUE_TIMEOUT_S": "30",  # nobody is turned away: this is about waiting
    "BACKEND_BASE_LATENCY_MS": "50",
    "BACKEND_LATENCY_PER_REQUEST_MS": "10",
}


async def _latencies(base_url: str, *, alone: int, together: int) -> tuple[float, float]:
    """Median seconds of ``alone`` requests one after another, then of ``together`` at once."""
    limits = httpx.Limits(max_connections=together)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

        async def timed() -> float:
            started = time.perf_counter()
            response = await client.get("/book")
            assert response.status_code == 200
            return time.perf_counter() - started

        await timed()  # warm up: connection, templates
        single = [await timed() for _ in range(alone)]
        burst = await asyncio.gather(*(timed() for _ in range(together)))
    return statistics.median(single), statistics.median(burst)


@pytest.mark.slow
def test_latency_grows_with_concurrency(tmp_path: Path) -> None:
    env = {**CONCURRENT_ENV, "BACKEND_DB": str(tmp_path / "booking.sqlite3")}
    with run_server(BOOKING_APP, env=env) as base_url:
        single, burst = asyncio.run(_latencies(base_url, alone=5, together=16))
    # Sixteen at once through two workers: the median waits for about four batches, each
    # slower than an idle one. Ratios within one run, so a busy machine cannot fake it.
    assert burst > 3 * single, (single, burst)


def test_create_app_uses_given_settings_over_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BACKEND_MAX_IN_FLIGHT", "9")
    app = create_app(BackendSettings(max_in_flight=3, db_path=tmp_path / "b.sqlite3"))

    async def health() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        # The lifespan opens the database; ASGITransport alone would not run it.
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://backend") as http,
        ):
            result: dict[str, Any] = (await http.get("/_backend/health")).json()
            return result

    assert asyncio.run(health())["max_in_flight"] == 3


def test_a_bug_still_gets_a_clear_500_with_the_sold_out_header() -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    app = Starlette(
        routes=[Route("/book/api/broken", broken), Route("/broken", broken)],
        middleware=[
            Middleware(SoldOutHeaderMiddleware, sold_out=lambda: True),
            Middleware(LastResortMiddleware),
        ],
    )

    async def get_both() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://backend") as http:
            return await http.get("/book/api/broken"), await http.get("/broken")

    api, page = asyncio.run(get_both())
    assert api.status_code == page.status_code == 500
    assert api.json()["error"] == "internal"
    assert "Something went wrong" in page.text
    assert api.headers["x-booking-sold-out"] == page.headers["x-booking-sold-out"] == "1"


def test_inventory_settings_only_seed_a_new_database(tmp_path: Path) -> None:
    """A restart with other BACKEND_CENTRES/DAYS/SLOTS_PER_DAY keeps the stock and bookings
    already in the file; only ops releases add to it."""
    path = tmp_path / "booking.sqlite3"
    day = date(2021, 1, 15)
    db = Database(path)
    db.open()
    assert db.run_sync(lambda c: inventory.seed(c, numbered_centres(1), day, 1, 3)) is True
    db.run_sync(lambda c: inventory.book(c, "+420601000001", "praha-vystaviste", day, 2, 0.0))
    db.close()

    reopened = Database(path)
    reopened.open()
    assert reopened.run_sync(lambda c: inventory.seed(c, numbered_centres(5), day, 9, 99)) is False
    assert reopened.run_sync(inventory.stats) == inventory.InventoryStats(3, 2, 1, 0)
    assert reopened.run_sync(lambda c: inventory.release(c, "praha-vystaviste", day, 2)) == 4
    assert reopened.run_sync(inventory.stats).slots_total == 5
    assert [
        s.number
        for s in reopened.run_sync(lambda c: inventory.free_slots(c, "praha-vystaviste", day))[1]
    ] == [1, 3, 4, 5]
    reopened.close()
