"""Counting failures (wrong passwords, wrong codes) per address or name, in Redis, so guessing
stays slow however many gateways there are. A fixed window per key: the count and its expiry
are set in one MULTI, so a lost EXPIRE can never lock someone out for good.

Every command and every MULTI names one key: the keys of one check (an address, a user name)
may sit on different Redis Cluster slots."""

from __future__ import annotations

from collections.abc import Sequence

from queue_core.connect import RedisClient


class FailureLimiter:
    def __init__(self, redis: RedisClient, limit: int, window_seconds: int) -> None:
        self.redis = redis
        self.limit = limit
        self.window_seconds = window_seconds

    async def blocked(self, keys: Sequence[str]) -> bool:
        """True if any key has used up its failures for the current window."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
            counts = await pipe.execute()
        return any(int(c or 0) >= self.limit for c in counts)

    async def failed(self, keys: Sequence[str]) -> None:
        for key in keys:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.window_seconds, nx=True)
                await pipe.execute()
