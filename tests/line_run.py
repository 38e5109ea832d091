"""A run of one room's line through several gateway processes, with a fault in the middle
(a Redis primary killed): what the cluster and Sentinel tests share.

Visitors join through the gateways in turn and then check their status, each time through
a gateway picked at random, as a load balancer would send them; more arrive during the run.
The room's admitted_total is sampled from Redis all along. The checks are what a visitor
or an operator would notice: everyone let in, nobody's place changed or lapsed, the order of
places kept, the rate held before and after the fault, and no flood when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import redis
from redis.exceptions import RedisError

from helpers import Stack
from queue_core.redis_server import RedisServer
from queue_core.store import LineStore
from queue_core.tokens import Credentials

POLL_SECONDS = 0.2


def cut_off(primary: RedisServer, replicas: Sequence[RedisServer]) -> None:
    """Stop `replicas` and close their links: from now on the primary's writes reach none
    of them. (Stopping them alone is not enough: what was already sent waits in their
    sockets, and they would apply it on waking.) Resume them with SIGCONT."""
    for replica in replicas:
        os.kill(replica.pid, signal.SIGSTOP)
    with redis.Redis(host=primary.host, port=primary.port) as client:
        client.client_kill_filter(_type="replica")


@dataclass
class Visitor:
    client: httpx.AsyncClient
    places: list[int] = field(default_factory=list)  # each place a ticket of theirs carried
    notices: list[str] = field(default_factory=list)
    joined_at: float = 0.0
    admitted_at: float | None = None
    unavailable: int = 0  # 503s while Redis failed over

    @property
    def place(self) -> int:
        return self.places[0]


@dataclass
class Run:
    visitors: list[Visitor]
    samples: list[tuple[float, int]]  # (monotonic time, admitted_total) read from Redis
    fault_at: float
    recovered_at: float
    state: dict[str, str]


class LineRun:
    def __init__(self, stack: Stack, store: LineStore, room: str) -> None:
        self.stack = stack
        self.store = store
        self.room = room
        self.credentials = Credentials([stack.secret])
        self.visitors: list[Visitor] = []
        self.rng = random.Random(9)

    def gateway(self) -> str:
        return self.rng.choice(self.stack.urls)

    def note_ticket(self, visitor: Visitor, response: httpx.Response) -> None:
        body = response.json()
        if body.get("notice"):
            visitor.notices.append(body["notice"])
        value = visitor.client.cookies.get(f"wr_ticket_{self.room}")
        if value:
            place = self.credentials.read_ticket(value).place
            if not visitor.places or visitor.places[-1] != place:
                visitor.places.append(place)

    async def join(self, gateway: str | None = None) -> Visitor:
        visitor = Visitor(httpx.AsyncClient(timeout=10))
        self.visitors.append(visitor)
        while True:
            url = f"{gateway or self.gateway()}/_waitroom/api/rooms/{self.room}/join"
            response = await visitor.client.post(url)
            if response.status_code == 200:
                break
            assert response.status_code == 503, response.text
            visitor.unavailable += 1
            await asyncio.sleep(POLL_SECONDS)
        visitor.joined_at = time.monotonic()
        self.note_ticket(visitor, response)
        if response.json()["state"] == "admitted":
            visitor.admitted_at = visitor.joined_at
        return visitor

    async def follow(self, visitor: Visitor, deadline: float) -> None:
        """Check again and again, as the waiting page does, until let in."""
        while visitor.admitted_at is None and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS * self.rng.uniform(0.8, 1.2))
            url = f"{self.gateway()}/_waitroom/api/rooms/{self.room}/status"
            response = await visitor.client.get(url)
            if response.status_code == 503:
                visitor.unavailable += 1
                continue
            assert response.status_code == 200, response.text
            self.note_ticket(visitor, response)
            body = response.json()
            if body["state"] == "admitted":
                assert body["pass"]
                visitor.admitted_at = time.monotonic()

    async def sample(self, samples: list[tuple[float, int]], stop: asyncio.Event) -> None:
        state = self.store.keys(self.room).state
        while not stop.is_set():
            with contextlib.suppress(RedisError):
                admitted = await self.store.redis.hget(state, "admitted_total")
                samples.append((time.monotonic(), int(admitted or 0)))
            await asyncio.sleep(0.1)

    async def run(
        self,
        fault: Callable[[], tuple[float, float]],
        *,
        waiting: int,
        late: int,
        rate_per_minute: float,
        fault_when_admitted: int,
        within: float = 60.0,
    ) -> Run:
        """`waiting` join first (through each gateway in turn), then admission starts at
        `rate_per_minute`; `late` more arrive one by one while it runs. Once
        `fault_when_admitted` are in, `fault` runs (in a thread) and returns when it struck
        and when Redis was whole again."""
        for i in range(waiting):
            await self.join(self.stack.urls[i % len(self.stack.urls)])
        samples: list[tuple[float, int]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sample(samples, stop))
        await self.store.configure(self.room, rate_per_minute=rate_per_minute, burst=2)
        deadline = time.monotonic() + within
        followers = [asyncio.create_task(self.follow(v, deadline)) for v in self.visitors]

        async def arrivals() -> None:
            for _ in range(late):
                await asyncio.sleep(60 / rate_per_minute * 2)
                visitor = await self.join()
                followers.append(asyncio.create_task(self.follow(visitor, deadline)))

        arriving = asyncio.create_task(arrivals())
        while sum(v.admitted_at is not None for v in self.visitors) < fault_when_admitted:
            assert time.monotonic() < deadline, "admission never started"
            await asyncio.sleep(0.05)
        fault_at, recovered_at = await asyncio.to_thread(fault)
        await arriving
        await asyncio.gather(*followers)
        await asyncio.sleep(0.3)
        stop.set()
        await sampler
        state = await self.store.state(self.room)
        await asyncio.gather(*(v.client.aclose() for v in self.visitors))
        return Run(self.visitors, samples, fault_at, recovered_at, state)


def check(run: Run, rate_per_minute: float, burst: int = 2) -> None:
    """What must hold after any run, fault or not."""
    per_second = rate_per_minute / 60
    visitors = sorted(run.visitors, key=lambda v: v.place)
    # Everyone was let in, at the place they were first given, and nobody was told their
    # place had lapsed.
    assert all(v.admitted_at is not None for v in visitors), [v.places for v in visitors]
    assert all(len(set(v.places)) == 1 for v in visitors), [v.places for v in visitors]
    assert not [n for v in visitors for n in v.notices]
    # In the order of their places: nobody was let in noticeably before someone ahead of
    # them (a check every POLL_SECONDS, from gateways a tick apart, blurs it a little).
    slack = POLL_SECONDS * 1.2 + 0.3
    latest = 0.0
    for v in visitors:
        assert v.admitted_at is not None
        assert v.admitted_at + slack >= latest, f"place {v.place} let in out of order"
        latest = max(latest, v.admitted_at)
    # The rate: the room's own count only grows (across the fault too), never faster than
    # the rate plus the burst, and at the rate before the fault and after it.
    # Samples from the failover itself are left out: a replica just promoted holds the older
    # count until the first gateway's tick raises it (a tick later).
    samples = [s for s in run.samples if not run.fault_at <= s[0] <= run.recovered_at + 1.0]
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(samples))
    for i, (t1, a1) in enumerate(samples):
        for t2, a2 in samples[i + 1 :]:
            assert a2 - a1 <= per_second * (t2 - t1) + burst + 1, (t1, t2, a1, a2)
    busy_until = max(v.admitted_at or 0 for v in visitors[:-2]) - 0.5
    before = [s for s in samples if s[0] < run.fault_at - 0.2]
    after = [s for s in samples if run.recovered_at + 1.0 <= s[0] <= busy_until]
    for window in (before[len(before) // 4 :], after):
        assert len(window) >= 10, "too short a window to judge the rate"
        (t1, a1), (t2, a2) = window[0], window[-1]
        # Sampled by the test's clock, a tenth of a second apart: within 2 at each end.
        assert abs((a2 - a1) - per_second * (t2 - t1)) <= 3, (t2 - t1, a2 - a1)
