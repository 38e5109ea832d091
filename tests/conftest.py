"""Fixtures: a real Redis for the whole session, and per-test key prefixes.

With REDIS_URL set the tests use that server instead of starting one; they only ever delete
keys under their own random prefix, so they never flush (or even scan beyond) data they did
not write.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from queue_core.redis_server import RedisServer
from queue_core.store import LineStore


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def key_prefix() -> str:
    return f"wrtest-{uuid.uuid4().hex[:12]}"


async def delete_prefix(client: Redis, prefix: str) -> None:
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(key)


@pytest.fixture
async def redis_client(redis_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await delete_prefix(client, key_prefix)
        await client.aclose()


@pytest.fixture
async def store(redis_client: Redis, key_prefix: str) -> LineStore:
    return LineStore(redis_client, key_prefix)


@pytest.fixture
async def stack_store(stack: Any) -> AsyncIterator[LineStore]:
    """A LineStore on the module's running stack (each module defines its own `stack`)."""
    client = Redis.from_url(stack.redis_url)
    yield LineStore(client, stack.prefix)
    await client.aclose()
