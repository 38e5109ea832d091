"""Redis Cluster: three primaries with a replica each, on loopback, from the embedded binary.

Every test of the line itself (tests/test_store.py) runs here again, unchanged, on the
cluster. Then: each room's keys on one slot and rooms over every shard, the keys that belong
to no room, and three gateway processes keeping one room's order and rate while the primary
of its shard dies, having just taken writes its replica never got.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import ConnectionError

import test_store
from gateway.limits import FailureLimiter
from gateway.ops import live
from gateway.ops.audit import AuditLog
from helpers import Stack, gateway_stack
from line_run import LineRun, check, cut_off
from queue_core.connect import RedisClient, connect
from queue_core.keys import RoomKeys, audit_key, autopilot_lock_key, guess_key, login_key
from queue_core.redis_cluster import SLOTS, LocalCluster
from queue_core.rooms import RoomConfig
from queue_core.store import LineStore

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
RATE = 240.0  # per minute: one every 0.25 s

# The line's own tests, collected again in this module: here `redis_url` is the cluster's.
globals().update({k: v for k, v in vars(test_store).items() if k.startswith("test_")})


def room_per_shard(shards: int = 3) -> list[str]:
    """A room name whose slot falls in each shard's range, in order (as LocalCluster splits
    the slots): rooms spread over the shards by their names alone."""
    names = []
    for shard in range(shards):
        first, last = SLOTS * shard // shards, SLOTS * (shard + 1) // shards - 1
        names.append(
            next(f"room{i}" for i in range(1000) if first <= key_slot(f"room{i}".encode()) <= last)
        )
    return names


ROOMS = room_per_shard()
MAIN = ROOMS[0]
ROOMS_TOML = "".join(
    f'[rooms.{name}]\npaths = ["/{name}"]\nrate_per_minute = 0\n\n' for name in ROOMS
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(primaries=3, replicas=1) as c:
        yield c


@pytest.fixture(scope="module")
def redis_url(cluster: LocalCluster) -> str:
    return cluster.url


def all_keys(keys: RoomKeys) -> list[str]:
    names = [getattr(keys, f.name) for f in fields(keys)]
    return [*names, *keys.lane("over80").all(), keys.proxy_window(17)]


async def test_a_rooms_keys_share_one_slot_and_rooms_spread_over_every_shard(
    cluster: LocalCluster, store: LineStore
) -> None:
    primaries = set()
    for room in ROOMS:
        keys = [
            *all_keys(store.keys(room)),
            autopilot_lock_key(store.prefix, room),
            guess_key(store.prefix, room, "10.0.0.1"),
        ]
        assert {key_slot(k.encode()) for k in keys} == {key_slot(room.encode())}, room
        primaries.add(cluster.primary_for(keys[0]).port)
        # Every script runs on every shard, in one round trip each.
        await store.ensure_room(RoomConfig(room, (f"/{room}",), rate_per_minute=60))
        joined = await store.join(room, "v00000000001")
        assert joined.status == "admitted"
        assert (await store.join(room, "v00000000002")).place == 2
        snap = await store.tick(room)
        assert snap.waiting == 1 and snap.admitted_total == 1
        assert await store.claim(room, "v00000000001", 60) is not None
        assert await store.restore(room, "v00000000002", 2) == "present"
        assert await store.place_after_opening(room, "v00000000002") == 2
        await store.record_proxy(room, 17, {"2xx": 3})
        assert await store.proxy_windows(room, [17]) == [{"2xx": 3}]
        figures = await live.load(store, room, with_series=True)  # the ops dashboard's
        assert (figures["waiting"], figures["active"]) == (1, 1)
    assert len(primaries) == 3
    # Loaded on the primary that ran it, by the client, on first use (EVALSHA, then SCRIPT
    # LOAD on a miss): a replica promoted later loads it again the same way.
    sha = store._tick.sha
    for port in primaries:
        with redis.Redis(port=port) as node:
            assert node.script_exists(sha) == [True]


async def test_keys_of_no_room_work_across_slots(
    redis_client: RedisClient, key_prefix: str
) -> None:
    by_address = login_key(key_prefix, "ip:10.0.0.1")
    by_name = login_key(key_prefix, "user:alice")
    assert key_slot(by_address.encode()) != key_slot(by_name.encode())
    limiter = FailureLimiter(redis_client, limit=2, window_seconds=60)
    for _ in range(2):
        assert not await limiter.blocked([by_address, by_name])
        await limiter.failed([by_address, by_name])
    assert await limiter.blocked([by_address, by_name])
    assert 0 < await redis_client.ttl(by_name) <= 60

    audit = AuditLog(redis_client, audit_key(key_prefix))
    await audit.record("alice", MAIN, {"rate": ("60", "90"), "paused": ("0", "1")}, why="test")
    entries = await audit.recent(room=MAIN)
    assert [(e.setting, e.old, e.new) for e in entries] == [
        ("paused", "0", "1"),
        ("rate", "60", "90"),
    ]


async def test_a_burst_waits_for_the_bounded_pool(cluster: LocalCluster, key_prefix: str) -> None:
    client = connect(cluster.url, max_connections=2, pool_timeout=0.3)
    counter = f"{key_prefix}:counter"
    try:
        await client.ping()
        counts = await asyncio.gather(*(client.incr(counter) for _ in range(200)))
        assert sorted(counts) == list(range(1, 201))  # all waited their turn, none refused
        busy = [client.blpop([f"{key_prefix}:never:{i}"], timeout=0.6) for i in range(2)]
        waiting = asyncio.gather(*busy)
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectionError, match="No connection available"):
            await client.ping()
        await waiting
    finally:
        await client.delete(counter)
        await client.aclose()


@pytest.fixture(scope="module")
def stack(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(
        cluster.url,
        tmp_path_factory.mktemp("cluster"),
        ROOMS_TOML,
        gateways=3,
        site_env={"BACKEND_BASE_LATENCY_MS": "1"},
    ) as s:
        yield s


async def test_three_gateways_keep_order_and_rate_when_a_primary_dies(
    cluster: LocalCluster, stack: Stack, stack_store: LineStore, tmp_path: Path
) -> None:
    """Runs last: it leaves the cluster with one shard that has no replica."""
    state = stack_store.keys(MAIN).state
    others = [stack_store.keys(room).state for room in ROOMS[1:]]
    # The other shards' rooms have people waiting and admit all along.
    for room in ROOMS[1:]:
        for i in range(100):
            await stack_store.join(room, f"o{i:011d}")
        await stack_store.configure(room, rate_per_minute=120)
    admitted_elsewhere: list[tuple[int, ...]] = []

    def others_admitted() -> tuple[int, ...]:
        counts = []
        for key in others:
            node = cluster.primary_for(key)
            with redis.Redis(port=node.port) as client:
                counts.append(int(client.hget(key, "admitted_total") or 0))
        return tuple(counts)

    def fault() -> tuple[float, float]:
        primary = cluster.primary_for(state)
        replica = cluster.replica_of(primary)
        # For a moment the primary goes on taking joins, ticks and claims that will never
        # reach its replica; then it dies.
        cut_off(primary, [replica])
        time.sleep(0.6)
        struck = time.monotonic()
        primary.kill()
        os.kill(replica.pid, signal.SIGCONT)
        admitted_elsewhere.append(others_admitted())
        promoted = cluster.wait_failover(state, primary)
        assert promoted is replica
        admitted_elsewhere.append(others_admitted())
        return struck, time.monotonic()

    run = await LineRun(stack, stack_store, MAIN).run(
        fault, waiting=30, late=12, rate_per_minute=RATE, fault_when_admitted=10
    )
    check(run, RATE)
    # The promoted replica was behind: the room noticed and recovered from the gateways.
    assert run.state["recoveries"] == "1", run.state
    # While the shard failed over, the rooms on the other shards went on admitting.
    (before, after) = admitted_elsewhere
    assert all(b > a for a, b in zip(before, after, strict=True)), admitted_elsewhere
