"""Counting failures (wrong passwords, wrong codes) per address or name, in Redis, so guessing
stays slow however many gateways there are. A fixed window per key: the count and its expiry
are set in one MULTI, so a lost EXPIRE can never lock someone out for good."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis


class FailureLimiter:
    def __init__(self, redis: Redis, limit: int, window_seconds: int) -> None:
        self.redis = redis
        self.limit = limit
        self.window_seconds = window_seconds

    async def blocked(self, keys: Sequence[str]) -> bool:
        """True if any key has used up its failures for the current window."""
        counts = await self.redis.mget(list(keys))
        return any(int(c or 0) >= self.limit for c in counts)

    async def failed(self, keys: Sequence[str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, self.window_seconds, nx=True)
            await pipe.execute()
