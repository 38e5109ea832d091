"""The gateway as visitors meet it: real uvicorn processes (two workers), the real booking
backend and a real Redis. Each test uses its own room so they cannot disturb each other."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import Stack, gateway_stack, run_server
from queue_core.store import LineStore
from queue_core.tokens import Credentials, Pass

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
TICK_SECONDS = 0.05  # the stack's WAITROOM_TICK_SECONDS (tests/helpers.py)

ROOMS = """
[rooms.fifo]
paths = ["/fifo"]
rate_per_minute = 0

[rooms.states]
title = "Vaccination booking"
paths = ["/book"]
rate_per_minute = 0

[rooms.proxy]
paths = ["/echo"]
rate_per_minute = 60000

[rooms.bad]
paths = ["/bad"]
rate_per_minute = 0

[rooms.soldout]
title = "Vaccination booking"
paths = ["/soldout"]
rate_per_minute = 0
sold_out_url = "/soldout/register"
"""


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    site_env = {
        "BACKEND_MAX_IN_FLIGHT": "64",
        "BACKEND_BASE_LATENCY_MS": "2",
        "BACKEND_LATENCY_PER_REQUEST_MS": "0",
    }
    with gateway_stack(
        redis_url, tmp_path_factory.mktemp("gw"), ROOMS, workers=2, site_env=site_env
    ) as s:
        yield s


@pytest.fixture
def store(stack_store: LineStore) -> LineStore:
    return stack_store


def client(stack: Stack, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url, timeout=15, **kwargs)  # type: ignore[arg-type]


async def backend_served(stack: Stack) -> int:
    async with httpx.AsyncClient() as c:
        served: int = (await c.get(f"{stack.backend}/_backend/health")).json()["served"]
        return served


async def test_two_workers_really_serve(stack: Stack) -> None:
    pids = set()
    for _ in range(40):
        async with client(stack) as c:  # a new connection each time
            pids.add((await c.get("/readyz")).json()["worker"])
    assert len(pids) == 2


async def test_fifo_with_many_concurrent_joiners_through_two_workers(
    stack: Stack, store: LineStore
) -> None:
    n = 200
    clients = [client(stack) for _ in range(n)]
    try:
        joined = await asyncio.gather(*(c.post("/_waitroom/api/rooms/fifo/join") for c in clients))
        assert all(r.status_code == 200 for r in joined)
        bodies = [r.json() for r in joined]
        assert all(b["state"] == "waiting" for b in bodies)
        # Every visitor has a cookie; their positions, from either worker, are 1..n exactly.
        await asyncio.sleep(0.3)
        statuses = await asyncio.gather(
            *(c.get("/_waitroom/api/rooms/fifo/status") for c in clients)
        )
        positions = [s.json()["position"] for s in statuses]
        assert sorted(positions) == list(range(1, n + 1))
        order = sorted(range(n), key=lambda i: positions[i])

        # Let them in at 100 a second. Poll from the back of the line to the front: the head
        # only moves forward, so once anyone is admitted, everyone ahead of them is too. Each
        # worker answers from its own snapshot, at most a tick old, so someone ahead may hear
        # of it up to a tick later than someone behind them on the other worker; once every
        # worker has ticked again, nobody ahead of an admitted visitor may still be waiting.
        await store.configure("fifo", rate_per_minute=6000)
        t_start = await store.tick("fifo")
        admitted: set[int] = set()

        async def check(i: int) -> bool:
            body = (await clients[i].get("/_waitroom/api/rooms/fifo/status")).json()
            if body["state"] == "admitted":
                assert body["pass"]
                admitted.add(i)
                return True
            assert body["state"] == "waiting"
            return False

        deadline = time.monotonic() + 30
        while len(admitted) < n and time.monotonic() < deadline:
            for i in reversed(order):
                if i not in admitted:
                    await check(i)
            furthest = max((order.index(i) for i in admitted), default=-1)
            behind = [order[k] for k in range(furthest) if order[k] not in admitted]
            if behind:
                await asyncio.sleep(max(0.5, TICK_SECONDS * 10))  # every worker has ticked since
                for i in behind:
                    assert await check(i), "someone was admitted before a person ahead of them"
        assert len(admitted) == n
        t_end = await store.tick("fifo")
        elapsed = (t_end.now_us - t_start.now_us) / 1e6
        # Both workers' ticks (and ours) together admit at one rate, within a slot at each end.
        assert t_end.admitted_total - t_start.admitted_total <= 100 * elapsed + 2
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def test_waiting_page_states_and_booking_after_admission(
    stack: Stack, store: LineStore
) -> None:
    async with client(stack) as visitor, client(stack) as other:
        first = await other.get("/book")  # somebody ahead
        assert first.status_code == 200 and "You are in the line" in first.text
        page = await visitor.get("/book")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert '<dd id="wr-position">2</dd>' in page.text
        assert '<meta http-equiv="refresh"' in page.text  # works without JavaScript
        assert "<progress" in page.text
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie

        status = (await visitor.get("/_waitroom/api/rooms/states/status")).json()
        assert (status["state"], status["position"], status["ahead"]) == ("waiting", 2, 1)
        assert status["poll_after_seconds"] >= 2

        await store.configure("states", paused=True)
        await asyncio.sleep(0.3)
        status = (await visitor.get("/_waitroom/api/rooms/states/status")).json()
        assert (status["state"], status["position"]) == ("paused", 2)
        assert "The line is paused" in (await visitor.get("/book")).text

        await store.configure("states", paused=False, rate_per_minute=600)
        deadline = time.monotonic() + 10
        while True:
            status = (await visitor.get("/_waitroom/api/rooms/states/status")).json()
            if status["state"] == "admitted" or time.monotonic() > deadline:
                break
            assert status["position"] <= 2
            await asyncio.sleep(0.1)
        assert status["state"] == "admitted"
        # With the pass the same URL is now the booking site, and it knows who this is.
        booking = await visitor.get("/book")
        assert booking.status_code == 200
        assert "Visitor:" in booking.text and "You are in the line" not in booking.text
        assert booking.headers["x-backend-saw-visitor"]

        await store.configure("states", closed=True)
        await asyncio.sleep(0.2)
        async with client(stack) as late:
            closed = await late.get("/book")
            assert "This waiting room is closed" in closed.text
            assert "wr_ticket_states" not in closed.headers.get("set-cookie", "")
        await store.configure("states", closed=False)


async def test_proxy_passes_admitted_requests_only_with_unforgeable_identity(stack: Stack) -> None:
    async with client(stack) as c:
        # Nobody waiting and spare capacity: straight through, no pointless queue.
        r = await c.get(
            "/echo?x=1", headers={"X-Waitroom-Visitor": "forged", "Accept": "application/json"}
        )
        assert r.status_code == 200
        seen = r.json()
        assert seen["path"] == "/echo" and seen["query_string"] == "x=1"
        visitor = seen["headers"]["x-waitroom-visitor"]
        assert visitor != "forged" and len(visitor) == 12
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert seen["headers"]["x-forwarded-proto"] == "http"
        # The body streams through to the backend intact.
        body = secrets.token_bytes(300_000)
        posted = (await c.post("/echo", content=body)).json()
        assert posted["body_length"] == len(body)
        assert posted["headers"]["x-waitroom-visitor"] == visitor


async def test_forged_tampered_expired_and_other_room_passes_never_reach_the_backend(
    stack: Stack, store: LineStore
) -> None:
    creds = Credentials([stack.secret])
    future = int(time.time()) + 600
    forged = Credentials(["x" * 40]).issue_pass(Pass("proxy", "abcdefghijkl", future, "ff" * 8))
    good = creds.issue_pass(Pass("proxy", "abcdefghijkl", future, "aa" * 8))
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    expired = creds.issue_pass(Pass("proxy", "abcdefghijkl", int(time.time()) - 1, "bb" * 8))
    other_room = creds.issue_pass(Pass("states", "abcdefghijkl", future, "cc" * 8))
    await store.configure("proxy", rate_per_minute=0)  # nobody goes straight through now
    await asyncio.sleep(0.2)
    try:
        before = await backend_served(stack)
        for value in (forged, tampered, expired, other_room):
            async with client(stack, cookies={"wr_pass_proxy": value}) as c:
                r = await c.get("/echo")
                assert r.status_code == 200
                assert "You are in the line" in r.text  # the waiting page, not the backend
        assert await backend_served(stack) == before
    finally:
        await store.configure("proxy", rate_per_minute=60000)


async def test_cookies_are_secure_when_served_over_https(stack: Stack) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as from a TLS terminator in front.
    async with client(stack, headers={"X-Forwarded-Proto": "https"}) as c:
        r = await c.get("/bad")  # a room admitting nobody, so the answer is a ticket
    cookie = r.headers["set-cookie"]
    assert "wr_ticket_bad=" in cookie and "Secure" in cookie and "HttpOnly" in cookie


async def test_entry_links_never_redirect_off_site(stack: Stack) -> None:
    async with client(stack) as c:
        for target in [
            "https://evil.example/",
            "//evil.example/book",
            "/\\evil.example",
            "/book/../admin",
            "javascript:alert(1)",
            "/elsewhere",
        ]:
            r = await c.get("/_waitroom/rooms/states/join", params={"next": target})
            assert r.status_code == 303
            assert r.headers["location"] == "/book", target
        ok = await c.get("/_waitroom/rooms/states/join", params={"next": "/book/confirm?c=1"})
        assert ok.headers["location"] == "/book/confirm?c=1"


async def test_bad_input_gets_clear_errors_and_changes_nothing(
    stack: Stack, store: LineStore
) -> None:
    async with client(stack) as c:
        await c.get("/bad")  # one honest visitor
    state_before = await store.state("bad")
    line_before = await store.redis.zcard(store.keys("bad").line)
    creds = Credentials([stack.secret])
    other_room_ticket = creds.issue_pass(Pass("bad", "abcdefghijkl", 2_000_000_000, "ab" * 8))
    cases = [
        ("/bad", {"wr_ticket_bad": "garbage"}, 400, "could not read your place"),
        ("/bad", {"wr_ticket_bad": "x" * 5000}, 400, "could not read your place"),
        ("/bad", {"wr_ticket_bad": other_room_ticket}, 400, "could not read your place"),
        ("/_waitroom/api/rooms/bad/status", {"wr_ticket_bad": "garbage"}, 400, "invalid_ticket"),
        ("/_waitroom/api/rooms/bad/status", {}, 401, "not_in_line"),
        ("/_waitroom/api/rooms/nope/status", {}, 404, "unknown_room"),
        ("/_waitroom/rooms/nope/join", {}, 404, "No such waiting room"),
    ]
    for path, cookies, code, text in cases:
        async with client(stack, cookies=cookies) as c:
            r = await c.get(path)
            assert r.status_code == code, path
            assert text in r.text
    async with client(stack) as c:
        r = await c.post("/_waitroom/api/rooms/bad/status")
        assert r.status_code == 405
    await asyncio.sleep(0.2)
    after = await store.state("bad")
    for field in ("seq", "head", "processed", "admitted_total"):
        assert after.get(field) == state_before.get(field), field
    assert await store.redis.zcard(store.keys("bad").line) == line_before


async def test_openapi_document_lists_the_api(stack: Stack) -> None:
    async with client(stack) as c:
        spec = (await c.get("/_waitroom/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/_waitroom/api/rooms/{room}/status",
        "/_waitroom/api/rooms/{room}/join",
    }
    assert "Status" in spec["components"]["schemas"]


def test_healthz_and_readyz(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/healthz").text == "ok"
    ready = httpx.get(f"{stack.url}/readyz").json()
    assert ready["ready"] and ready["redis"]


def test_gateway_with_redis_down_answers_clearly(tmp_path: Path) -> None:
    """Redis dies under a running gateway: people already waiting still get their status;
    a newcomer's page says the room is busy and tries again by itself (no error page), an
    app gets a 503 with Retry-After; never a bare 500."""
    from queue_core.redis_server import RedisServer

    config = tmp_path / "rooms.toml"
    config.write_text('[rooms.solo]\npaths = ["/book"]\nrate_per_minute = 0\n')
    with RedisServer() as server:
        env = {
            "REDIS_URL": server.url,
            "WAITROOM_SECRET": secrets.token_urlsafe(40),
            "WAITROOM_CONFIG": str(config),
            "WAITROOM_BACKEND_URL": "http://127.0.0.1:9",
            "WAITROOM_TICK_SECONDS": "0.05",
        }
        with run_server("gateway.app:create_app", env=env) as url:
            waiting = httpx.Client(base_url=url)
            assert waiting.get("/book").status_code == 200
            server.kill()
            time.sleep(0.5)
            status = waiting.get("/_waitroom/api/rooms/solo/status")
            assert status.status_code == 200
            assert status.json()["position"] == 1
            newcomer = httpx.get(f"{url}/book")
            assert newcomer.status_code == 200
            assert 'http-equiv="refresh"' in newcomer.text
            assert "busy for a moment" in newcomer.text
            api = httpx.post(f"{url}/_waitroom/api/rooms/solo/join")
            assert api.status_code == 503 and api.json()["error"] == "unavailable"
            assert httpx.get(f"{url}/readyz").status_code == 503
            time.sleep(2.5)
            assert waiting.get("/_waitroom/api/rooms/solo/status").json()["stale"] is True
            waiting.close()


async def test_pages_are_light_and_self_contained(stack: Stack) -> None:
    async with client(stack) as c:
        page = await c.get("/bad", headers={"Accept-Language": "cs"})
        css = await c.get("/_waitroom/static/waitroom.css")
        js = await c.get("/_waitroom/static/waitroom.js")
        receipt = await c.get("/_waitroom/rooms/bad/receipt")
    total = len(page.content) + len(css.content) + len(js.content)
    assert total < 30_000, total
    assert len(receipt.content) + len(css.content) < 30_000
    for r in (css, js):
        assert "max-age" in r.headers["cache-control"] and r.headers.get("etag")
    # No third-party requests: every src and href stays on this site (the receipt's link is
    # absolute on purpose, to be opened on another device, but it is this site too).
    for ref in re.findall(r'(?:src|href)="([^"]*)"', page.text + receipt.text):
        local = ref.startswith("/") and not ref.startswith("//")
        assert local or ref.startswith(stack.url + "/"), ref


async def test_booking_site_internals_are_not_public_through_the_gateway(stack: Stack) -> None:
    async with client(stack) as c:
        for path in ("/_backend/health", "/_backend/admin/release", "/_sim/inbox/+420601123456"):
            r = await c.get(path)
            assert r.status_code == 404, path
    async with httpx.AsyncClient() as direct:  # the operators' own network still sees them
        assert (await direct.get(f"{stack.backend}/_backend/health")).status_code == 200


async def test_gateway_pages_carry_security_headers(stack: Stack) -> None:
    async with client(stack) as c:
        for path in ("/bad", "/_waitroom/rooms/bad/receipt", "/_waitroom/rooms/nope/join"):
            r = await c.get(path)
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "same-origin"


async def test_guessing_receipt_codes_is_slowed_to_a_halt(stack: Stack) -> None:
    async with client(stack) as c:
        for i in range(20):
            r = await c.post("/_waitroom/rooms/fifo/receipt", data={"code": f"{i + 1}-AAAA-AAAA"})
            assert r.status_code == 400
        r = await c.post("/_waitroom/rooms/fifo/receipt", data={"code": "1-AAAA-AAAA"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "Too many wrong codes" in r.text


async def test_a_banner_in_english_only_is_marked_as_english(
    stack: Stack, store: LineStore
) -> None:
    czech = {"Accept-Language": "cs"}
    async with client(stack) as visitor:
        await store.configure("soldout", banner={"en": "New dates on Monday."})
        await asyncio.sleep(0.3)  # both workers have ticked
        page = await visitor.get("/soldout", headers=czech)
        # A Czech screen reader would read English words with Czech sounds otherwise.
        assert '<p lang="en">New dates on Monday.</p>' in page.text
        await store.configure(
            "soldout", banner={"en": "New dates on Monday.", "cs": "Nové termíny v pondělí."}
        )
        await asyncio.sleep(0.3)
        page = await visitor.get("/soldout", headers=czech)
        assert "<p>Nové termíny v pondělí.</p>" in page.text
        await store.configure("soldout", banner={})


async def test_the_your_turn_page_keeps_the_banner_and_the_sold_out_help(
    stack: Stack, store: LineStore
) -> None:
    async with client(stack) as visitor:
        assert "You are in the line" in (await visitor.get("/soldout")).text
        await store.configure(
            "soldout", sold_out=True, banner={"en": "New dates are released on Monday."}
        )
        await asyncio.sleep(0.3)
        await store.configure("soldout", rate_per_minute=600)
        deadline = time.monotonic() + 10
        page = await visitor.get("/soldout")
        while "It is your turn" not in page.text and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            page = await visitor.get("/soldout")
        assert "It is your turn" in page.text
        # Going to the site now, the visitor still learns what ops announced, and that the
        # dates are gone but registering without one is still open.
        assert "New dates are released on Monday." in page.text
        assert "All dates are booked at the moment." in page.text
        assert '<a id="wr-sold-out-link" href="/soldout/register">Register without a date</a>' in (
            page.text
        )
        await store.configure("soldout", sold_out=False, banner={}, rate_per_minute=0)
