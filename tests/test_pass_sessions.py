"""Each worker's memory of the browsers a pass is used from, against a real Redis: a known
browser is answered from memory (no Redis call), a full pass refuses newcomers from memory
and still lets its own browsers in, and Redis trouble never locks an admitted visitor out."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from gateway.metrics import GatewayMetrics
from gateway.pass_sessions import PassSessions
from queue_core.store import LineStore
from queue_core.tokens import Pass

pytestmark = pytest.mark.anyio
ADMISSION = Pass("r", "abcdefghijkl", 2_000_000_000, "0123456789abcdef", 0)


def worker(store: LineStore) -> PassSessions:
    return PassSessions(store, GatewayMetrics(["r"]))


async def forget_in_redis(store: LineStore) -> None:
    await store.redis.delete(store.keys("r").pass_sessions(ADMISSION.pass_id))


async def test_a_known_browser_costs_no_redis_call(store: LineStore) -> None:
    one = worker(store)
    assert await one.admits("r", ADMISSION, "browser-aaaaaaa1", 2)
    assert one.remembered("r", ADMISSION, "browser-aaaaaaa1", 2) is True
    await forget_in_redis(store)  # had it asked Redis again, the answer would now differ
    assert await one.admits("r", ADMISSION, "browser-aaaaaaa1", 2)
    assert one.remembered("r", ADMISSION, "browser-aaaaaaa9", 2) is None  # a stranger: ask


async def test_a_full_pass_is_answered_from_memory_on_every_worker(store: LineStore) -> None:
    one, two = worker(store), worker(store)
    assert await one.admits("r", ADMISSION, "browser-aaaaaaa1", 2)
    assert await one.admits("r", ADMISSION, "browser-aaaaaaa2", 2)
    assert not await two.admits("r", ADMISSION, "browser-aaaaaaa3", 2)  # Redis says full
    await forget_in_redis(store)
    # Worker two now knows the whole set: the two browsers that hold the pass, and nobody else.
    assert not await two.admits("r", ADMISSION, "browser-aaaaaaa4", 2)
    assert await two.admits("r", ADMISSION, "browser-aaaaaaa1", 2)
    assert await two.admits("r", ADMISSION, "browser-aaaaaaa2", 2)
    # Ops raising the limit is not overruled by an old memory: Redis is asked again.
    assert two.remembered("r", ADMISSION, "browser-aaaaaaa4", 3) is None


async def test_no_limit_asks_nothing_and_redis_trouble_lets_admitted_visitors_through(
    store: LineStore,
) -> None:
    assert await worker(store).admits("r", ADMISSION, "browser-aaaaaaa1", 0)
    dead = Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2)
    try:
        cut_off = worker(LineStore(dead, store.prefix))
        assert await cut_off.admits("r", ADMISSION, "browser-aaaaaaa1", 2)
        # ... and nothing is remembered from it: the count resumes when Redis is back.
        assert cut_off.remembered("r", ADMISSION, "browser-aaaaaaa1", 2) is None
    finally:
        await dead.aclose()


async def test_memory_stays_bounded(store: LineStore) -> None:
    small = PassSessions(store, GatewayMetrics(["r"]), max_remembered=3)
    for i in range(10):
        small.note_known("r", ADMISSION, f"browser-{i:08d}")
    assert small.remembered("r", ADMISSION, "browser-00000009", 2) is True
    assert small.remembered("r", ADMISSION, "browser-00000000", 2) is None  # forgotten
