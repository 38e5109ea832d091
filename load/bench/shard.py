"""What one Redis shard spends per room and per visitor: the figures docs/SCALING.md sizes a
deployment with. `python -m load.bench.shard [--cluster] [--waiting N]`

On a private Valkey (or a private three-primary cluster, to show the cost does not change
when the client routes by slot), it times each script the line runs, as the Redis server
counts it (INFO commandstats: microseconds inside EVALSHA, on the room's own node):

- join, claim and restore: once per visitor (restore only after a data loss);
- the tick, by line length and by heartbeats carried: every gateway worker runs one per room
  several times a second, and each status check adds its place to the next tick.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis

from queue_core.connect import RedisClient, connect
from queue_core.redis_cluster import LocalCluster
from queue_core.redis_server import RedisServer
from queue_core.rooms import RoomConfig
from queue_core.store import LineStore

from .crowd import seed_line

CONCURRENCY = 64


def script_usec(node: redis.Redis) -> tuple[int, int]:
    stats: Any = node.info("commandstats")
    evalsha = stats.get("cmdstat_evalsha", {})
    return int(evalsha.get("calls", 0)), int(evalsha.get("usec", 0))


async def timed(
    node: redis.Redis, calls: Sequence[Callable[[], Awaitable[object]]]
) -> dict[str, float]:
    """Run `calls`, CONCURRENCY at a time; Redis microseconds per script call, and calls per
    second of wall time from this one client process."""
    before = script_usec(node)
    started = time.perf_counter()
    for i in range(0, len(calls), CONCURRENCY):
        await asyncio.gather(*(call() for call in calls[i : i + CONCURRENCY]))
    wall = time.perf_counter() - started
    after = script_usec(node)
    count = after[0] - before[0]
    return {
        "redis_us": round((after[1] - before[1]) / max(1, count), 1),
        "per_s": round(count / wall),
    }


async def measure(
    client: RedisClient, node_of: Callable[[str], redis.Redis], waiting: int
) -> dict[str, Any]:
    store = LineStore(client, f"wrshard-{random.getrandbits(32):08x}")
    figures: dict[str, Any] = {}
    rng = random.Random(5)

    async def room(name: str, rate: float = 0) -> redis.Redis:
        config = RoomConfig(name, (f"/{name}",), rate_per_minute=rate, grace_seconds=3600)
        await store.ensure_room(config)
        return node_of(store.keys(name).state)

    node = await room("joins")
    ids = [f"j{i:011d}" for i in range(20_000)]
    figures["join"] = await timed(node, [functools.partial(store.join, "joins", v) for v in ids])

    node = await room("claims", rate=6_000_000)  # everyone is let in at the next tick
    for i in range(0, 5_000, 500):
        await asyncio.gather(*(store.join("claims", f"c{j:011d}") for j in range(i, i + 500)))
    await store.tick("claims")
    claims = [functools.partial(store.claim, "claims", f"c{j:011d}", 600) for j in range(5000)]
    figures["claim"] = await timed(node, claims)

    node = await room("restores")
    restores = [
        functools.partial(store.restore, "restores", f"r{j:011d}", j + 1) for j in range(5000)
    ]
    figures["restore"] = await timed(node, restores)

    ticks: dict[str, Any] = {}
    for size in (1_000, waiting):
        name = f"line{size}"
        node = await room(name)
        await seed_line(store, name, size)
        # Unmeasured: right after a big insert Valkey is still rehashing the line's index a
        # step per access, which would be counted against the first ticks.
        for _ in range(200):
            await store.tick(name)
        for beats in (0, 100, 1_000, 10_000):
            beating = [rng.sample(range(1, size + 1), min(beats, size)) for _ in range(100)]
            tick_calls = [functools.partial(store.tick, name, seen=places) for places in beating]
            spent = await timed(node, tick_calls)
            ticks[f"{size} waiting, {beats} heartbeats"] = spent["redis_us"]
    # Admitting as it goes: 6,000 a minute, ticked every 10 ms by one caller.
    name = f"line{waiting}"
    await store.configure(name, rate_per_minute=6000)
    before = script_usec(node)
    for _ in range(300):
        await store.tick(name)
        await asyncio.sleep(0.01)
    after = script_usec(node)
    ticks[f"{waiting} waiting, admitting 100/s"] = round(
        (after[1] - before[1]) / max(1, after[0] - before[0]), 1
    )
    figures["tick_redis_us"] = ticks
    memory: Any = node.memory_usage(store.keys(name).line)
    figures["line_bytes_per_waiting"] = round(int(memory) / waiting, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.bench.shard", description=__doc__)
    parser.add_argument("--cluster", action="store_true", help="a three-primary cluster")
    parser.add_argument("--waiting", type=int, default=1_000_000, help="the long line's length")
    args = parser.parse_args(argv)
    topology: RedisServer | LocalCluster = LocalCluster() if args.cluster else RedisServer()
    with topology:
        client = connect(topology.url)

        def node_of(key: str) -> redis.Redis:
            server = topology.primary_for(key) if isinstance(topology, LocalCluster) else topology
            return redis.Redis(host=server.host, port=server.port)

        async def run() -> dict[str, Any]:
            try:
                await client.ping()  # a cluster client learns the slots before the bursts
                return await measure(client, node_of, args.waiting)
            finally:
                await client.aclose()

        figures = asyncio.run(run())
    figures["topology"] = "cluster, 3 primaries" if args.cluster else "one server"
    json.dump(figures, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
