"""Fixtures: a real Redis for the whole session, and per-test key prefixes.

With REDIS_URL set the tests use that server instead of starting one (any form
queue_core.connect takes: a cluster or a Sentinel too); they only ever delete
keys under their own random prefix, so they never flush (or even scan beyond) data they did
not write.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from queue_core.connect import RedisClient, connect
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


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    """A Redis of the module's own, for tests that flush, pause or kill it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def key_prefix() -> str:
    return f"wrtest-{uuid.uuid4().hex[:12]}"


async def delete_prefix(client: RedisClient, prefix: str) -> None:
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(key)


@pytest.fixture
async def redis_client(redis_url: str, key_prefix: str) -> AsyncIterator[RedisClient]:
    client = connect(redis_url)
    try:
        yield client
    finally:
        await delete_prefix(client, key_prefix)
        await client.aclose()


@pytest.fixture
async def store(redis_client: RedisClient, key_prefix: str) -> LineStore:
    return LineStore(redis_client, key_prefix)


@pytest.fixture
async def stack_store(stack: Any) -> AsyncIterator[LineStore]:
    """A LineStore on the module's running stack (each module defines its own `stack`)."""
    client = connect(stack.redis_url)
    yield LineStore(client, stack.prefix)
    await client.aclose()
