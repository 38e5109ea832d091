"""Faults with real processes: Redis loses every key mid-queue (FLUSHALL on a private server,
never anyone else's), while the gateway runs two workers."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from redis.asyncio import Redis

from helpers import Stack, gateway_stack, record_figures
from queue_core.redis_server import RedisServer
from queue_core.store import LineStore

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOMS = '[rooms.vaccination]\npaths = ["/book"]\nrate_per_minute = 0\n'


@pytest.fixture(scope="module")
def stack(private_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(
        private_redis.url,
        tmp_path_factory.mktemp("faults"),
        ROOMS,
        workers=2,
        site_env={"BACKEND_BASE_LATENCY_MS": "1"},
    ) as s:
        yield s


async def configure(stack: Stack, **settings: object) -> None:
    client = Redis.from_url(stack.redis_url)
    try:
        await LineStore(client, stack.prefix).configure("vaccination", **settings)  # type: ignore[arg-type]
    finally:
        await client.aclose()


async def position(c: httpx.AsyncClient) -> dict[str, object]:
    r = await c.get("/_waitroom/api/rooms/vaccination/status")
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def test_redis_losing_everything_keeps_the_order_and_the_admitted(
    stack: Stack, private_redis: RedisServer
) -> None:
    visitors = [httpx.AsyncClient(base_url=stack.url, timeout=10) for _ in range(31)]
    try:
        # One visitor is admitted and on the booking site before the loss.
        await configure(stack, rate_per_minute=60000)
        admitted = visitors[0]
        assert (await admitted.get("/book")).status_code == 200
        assert "wr_pass_vaccination" in admitted.cookies
        await configure(stack, rate_per_minute=0)
        waiting = visitors[1:]
        for v in waiting:
            await v.post("/_waitroom/api/rooms/vaccination/join")
        await asyncio.sleep(0.5)
        before = [(await position(v))["position"] for v in waiting]
        assert before == list(range(1, 31))

        redis.Redis.from_url(private_redis.url).flushall()  # everything gone, mid-queue
        t_lost = time.monotonic()

        # The admitted visitor is not affected: the pass is self-contained.
        page = await admitted.get("/book")
        assert page.status_code == 200 and "You are in the line" not in page.text

        # Everyone checks again, in any order: each comes back at their place.
        await asyncio.sleep(0.5)
        order = list(range(30))
        random.Random(4).shuffle(order)
        after = {i: (await position(waiting[i]))["position"] for i in order}
        again = [(await position(v))["position"] for v in waiting]
        assert again == sorted(again) and len(set(again)) == 30, again  # order kept exactly
        assert all(a <= b for a, b in zip(again, before, strict=True))  # nobody moved back
        assert all(after[i] >= again[i] for i in range(30))

        # A newcomer queues behind all of them.
        async with httpx.AsyncClient(base_url=stack.url) as late:
            r = await late.post("/_waitroom/api/rooms/vaccination/join")
            assert r.status_code in (200, 503)
            if r.status_code == 503:  # the instant before the first tick restored the room
                await asyncio.sleep(0.5)
                r = await late.post("/_waitroom/api/rooms/vaccination/join")
            assert r.json()["position"] == 31

        # Admission resumes within seconds, in the original order.
        await configure(stack, rate_per_minute=600)
        deadline = time.monotonic() + 15
        while (await position(waiting[2]))["state"] != "admitted":
            assert time.monotonic() < deadline, "admission did not resume"
            await asyncio.sleep(0.2)
        assert time.monotonic() - t_lost < 20
        states = [(await position(v))["state"] for v in waiting[:3]]
        assert states == ["admitted"] * 3
        assert (await position(waiting[-1]))["state"] == "waiting"

        # Ops can see it happened.
        client = Redis.from_url(stack.redis_url)
        state = await LineStore(client, stack.prefix).state("vaccination")
        await client.aclose()
        assert state["recoveries"] == "1" and int(state["recovered_at"]) > 0
        record_figures(
            "redis flushed mid-queue",
            visitors_waiting=len(waiting),
            order_kept=again == sorted(again),
            moved_back=sum(a > b for a, b in zip(again, before, strict=True)),
            newcomer_position=31,
            admission_resumed_within_seconds=round(time.monotonic() - t_lost, 1),
            admitted_visitor_still_on_site=True,
        )
    finally:
        await asyncio.gather(*(v.aclose() for v in visitors))
