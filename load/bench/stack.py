"""The system under test as the bench builds it: private Valkey servers, rooms files and
gateway processes configured exactly as `waitroom up` configures them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from queue_core.redis_server import RedisServer
from queue_core.store import LineStore

from .processes import Uvicorn

PREFIX = "bench"
GATEWAY_APP = "gateway.app:create_app"
HELLO_APP = "load.bench.hello:create_app"
STATUS_PATH = "/_waitroom/api/rooms/{room}/status"
JOIN_PATH = "/_waitroom/api/rooms/{room}/join"
# Nobody is swept during a bench: seeded visitors check once, or never.
GRACE_SECONDS = 3600
# The status and join endpoints never reach the booking site; nothing listens here.
NO_BACKEND = "http://127.0.0.1:9"


def line_room(size: int) -> str:
    return f"w{size}"


def rooms_toml(rooms: Mapping[str, float]) -> str:
    """A rooms file: each room protects /<name> and admits `rate` a minute (0: nobody)."""
    return "".join(
        f'[rooms.{name}]\npaths = ["/{name}"]\nrate_per_minute = {rate!r}\n'
        f"grace_seconds = {GRACE_SECONDS}\n\n"
        for name, rate in rooms.items()
    )


@dataclass(frozen=True, slots=True)
class Valkey:
    """A private server, and the bench's own client for seeding and reading INFO."""

    server: RedisServer
    client: Redis
    store: LineStore

    @property
    def url(self) -> str:
        return self.server.url

    def pids(self) -> list[int]:
        return [self.server.pid]


@contextlib.contextmanager
def valkey(aio: asyncio.Runner, workdir: Path) -> Iterator[Valkey]:
    server = RedisServer(data_dir=workdir / f"valkey-{secrets.token_hex(3)}")
    server.start()
    client = Redis.from_url(server.url)
    try:
        yield Valkey(server, client, LineStore(client, PREFIX))
    finally:
        aio.run(client.aclose())
        server.stop()


class Gateways:
    """Makes gateway servers that share one secret, so the bench's tickets are theirs."""

    def __init__(self, secret: str, workdir: Path) -> None:
        self.secret = secret
        self.workdir = workdir

    def __call__(
        self,
        name: str,
        redis: Valkey,
        rooms: Mapping[str, float],
        *,
        workers: int,
        backend: str = NO_BACKEND,
    ) -> Uvicorn:
        rooms_file = self.workdir / f"{name}.toml"
        rooms_file.write_text(rooms_toml(rooms), encoding="utf-8")
        env = {
            "REDIS_URL": redis.url,
            "WAITROOM_SECRET": self.secret,
            "WAITROOM_CONFIG": str(rooms_file),
            "WAITROOM_BACKEND_URL": backend,
            "WAITROOM_KEY_PREFIX": PREFIX,
        }
        return Uvicorn(name, GATEWAY_APP, workers=workers, env=env, log_dir=self.workdir)


def hello_server(workers: int, workdir: Path) -> Uvicorn:
    return Uvicorn("hello", HELLO_APP, workers=workers, env={}, log_dir=workdir)


class Together:
    """Two servers charged as one: the gateway and the site behind it."""

    def __init__(self, *servers: Uvicorn) -> None:
        self.servers = servers
        self.workers = sum(s.workers for s in servers)

    def pids(self) -> list[int]:
        return [pid for s in self.servers for pid in s.pids()]


def fetch(url: str, cookie: str) -> Any:
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())
