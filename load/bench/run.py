"""One bench run, start to finish: servers up, lines seeded, every figure measured side by
side, everything stopped.

Three private Valkey servers keep the measurements apart: one behind the gateway whose status
checks are measured (so its round trips are theirs alone), one for the join test, and one for
the admission test, whose gateways and watcher tick all through the other runs, so admission
is judged on a busy machine, as it would be on the day.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import redis_stats
from .admission import AdmissionWatch
from .crowd import Mint, seed_line
from .drivers import Driver, Load, LoadResult
from .micro import hot_path_steps
from .plan import Plan
from .processes import CpuMeter, Uvicorn, running
from .profile import Profiler
from .report import run_setup
from .stack import (
    JOIN_PATH,
    PREFIX,
    STATUS_PATH,
    Gateways,
    Together,
    Valkey,
    fetch,
    hello_server,
    line_room,
    valkey,
)

LIVE_ROOM = "live"  # the 140,000 of the latency test
ADMISSION_ROOM = "adm"
JOIN_ROOM = "join"
PASSES = 1_000
T = TypeVar("T")


class Measured(Protocol):
    """What a run charges as "server": a gateway, or a gateway and the site behind it."""

    workers: int

    def pids(self) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class Crowd:
    room: str
    credentials: Path  # one Cookie header value per line
    first_place: int  # the place of the first ticket, to check the gateway agrees
    gen: str  # the room's generation, on every ticket


def new_gen() -> str:
    return secrets.token_hex(6)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


class Bench:
    def __init__(
        self,
        plan: Plan,
        driver: Driver,
        driver_note: str,
        workdir: Path,
        say: Callable[[str], None],
        profiler: Profiler | None = None,
    ) -> None:
        self.plan = plan
        self.driver = driver
        self.driver_note = driver_note
        self.dir = workdir
        self.say = say
        self.profiler = profiler
        self.gateways = Gateways(secrets.token_urlsafe(48), workdir)
        self.runs: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {}
        self.aio = asyncio.Runner()
        self.load_average_at_start = os.getloadavg()

    def wait(self, awaitable: Awaitable[T]) -> T:
        """Await on the bench's own event loop (its Redis clients live there)."""

        async def result() -> T:
            return await awaitable

        return self.aio.run(result())

    def run(self) -> dict[str, Any]:
        with (
            self.aio,
            valkey(self.aio, self.dir) as main,
            valkey(self.aio, self.dir) as joins,
            valkey(self.aio, self.dir) as admissions,
            self.admission_test(admissions),
        ):
            self.measure(main, joins)
        # With every server stopped: the steps of the hot paths, one at a time.
        self.figures["micro_us"] = hot_path_steps(self.plan.micro_seconds)
        return self.report()

    @contextlib.contextmanager
    def admission_test(self, redis: Valkey) -> Iterator[None]:
        """Gateways ticking one room with a backlog, for the whole of the block and at least
        `admission_seconds`, sampled by a watcher thread."""
        plan = self.plan
        self.say(
            f"admission: {plan.admission_backlog:,} waiting, {plan.admission_gateways} gateways, "
            f"{plan.admission_rate_per_minute:,.0f} a minute"
        )
        self.aio.run(seed_line(redis.store, ADMISSION_ROOM, plan.admission_backlog))
        rooms = {ADMISSION_ROOM: plan.admission_rate_per_minute}
        gateways = [
            self.gateways(f"admission-{i}", redis, rooms, workers=1)
            for i in range(plan.admission_gateways)
        ]
        with running(gateways):
            watch = AdmissionWatch(
                redis.url,
                PREFIX,
                ADMISSION_ROOM,
                plan.admission_rate_per_minute,
                plan.sampler_tick_seconds,
            )
            watch.start()
            try:
                yield
            except BaseException:
                watch.stop()
                raise
            left = plan.admission_seconds - (time.monotonic() - (watch.started_at or 0))
            if left > 0:
                self.say(f"admission: {left:.0f} s to go")
                time.sleep(left)
            result = watch.stop()
        self.figures |= result.summary()
        self.figures["admission_rate_per_minute"] = plan.admission_rate_per_minute
        self.figures["admission_gateways"] = plan.admission_gateways

    def crowds(self, redis: Valkey, mint: Mint) -> dict[str, Crowd]:
        """Seed every line, while its tickets are minted (finished by `mint.finish()`)."""
        plan = self.plan
        rng = random.Random(2021_01_15)
        now = int(time.time())
        crowds: dict[str, Crowd] = {}
        sizes = sorted(plan.waiting_sizes, reverse=True)
        lines = {line_room(size): size for size in sizes} | {LIVE_ROOM: plan.latency_visitors}
        for room, size in lines.items():
            # Every visitor of a small line; a random sample of a large one; in random order.
            sample = size if room == LIVE_ROOM else min(size, plan.tickets_per_line)
            places = rng.sample(range(1, size + 1), sample)
            crowds[room] = Crowd(room, self.dir / f"tickets-{room}.txt", places[0], new_gen())
            mint.tickets(room, places, now, crowds[room].gen, crowds[room].credentials)
        proxy_room = line_room(min(sizes))
        mint.passes(proxy_room, PASSES, now + 3 * 3600, self.dir / "passes.txt")

        for room, size in lines.items():
            if size == sizes[0]:
                # Memory per visitor: the largest line first, into an empty Redis.
                self.say(f"seeding {size:,} waiting visitors")
                before = self.aio.run(redis_stats.used_memory(redis.client))
                started = time.monotonic()
            seeded = self.aio.run(seed_line(redis.store, room, size, gen=crowds[room].gen))
            if seeded.gen != crowds[room].gen:
                raise RuntimeError(f"room {room} already had a generation: not a fresh Redis")
            if size == sizes[0]:
                seconds = time.monotonic() - started
                after = self.aio.run(redis_stats.used_memory(redis.client))
                keys = redis.store.keys(room)
                in_keys = sum(
                    self.wait(redis.client.memory_usage(k, samples=0)) or 0
                    for k in (keys.line, keys.seen)
                )
                self.figures["redis_bytes_per_waiting"] = round((after - before) / size, 1)
                self.figures["redis_bytes_per_waiting_keys"] = round(in_keys / size, 1)
                self.figures["seeded_per_second"] = round(size / seconds)
        return crowds

    def measure(self, main: Valkey, joins: Valkey) -> None:
        plan = self.plan
        mint = Mint(self.gateways.secret)
        crowds = self.crowds(main, mint)
        passes = self.dir / "passes.txt"
        proxy_room = line_room(min(plan.waiting_sizes))
        hello = hello_server(plan.workers, self.dir)
        rooms = dict.fromkeys(crowds, 0.0)
        gateway = self.gateways("gateway", main, rooms, workers=plan.workers, backend=hello.url)
        joiner = self.gateways("join", joins, {JOIN_ROOM: 0.0}, workers=plan.join_workers)
        self.say("minting tickets and starting the servers")
        with running([hello, gateway, joiner]):
            mint.finish()
            self.check(gateway, crowds.values(), passes, proxy_room)
            self.throughput(hello, gateway, main, crowds)
            self.proxy(hello, gateway, main, passes, proxy_room)
            self.latency(gateway, main, crowds[LIVE_ROOM])
            self.join(joiner, joins)
            if self.profiler is not None:
                self.profile(self.profiler, hello, gateway, joiner, crowds, passes, proxy_room)

    # -- the measurements ------------------------------------------------------------------

    def load(
        self, name: str, server: Measured, redis: Valkey, load: Load, **info: Any
    ) -> LoadResult:
        """One timed run, recorded with the CPU each party used meanwhile."""
        meter = CpuMeter({"server": server.pids, "redis": redis.pids})
        meter.start()
        result = self.driver.run(load)
        cpu = meter.stop(result.driver_cpu_seconds)
        record = {"name": name, **info, "workers": server.workers}
        record |= {"connections": load.connections, "rate": load.rate or None}
        record |= result.as_dict() | {"cpu_cores": cpu}
        record.pop("driver_cpu_seconds")
        # CPU per request: the load generator's against the server's shows which could go
        # faster (a driver far cheaper per request than the server is not the bottleneck).
        if result.requests:
            for who in ("server", "driver"):
                record[f"{who}_us_per_request"] = round(cpu[who] * 1e6 / result.rps, 1)
        self.runs.append(record)
        self.say(
            f"  {name:<24} {result.rps:>9,.0f}/s  p50 {result.p50_ms:6.1f} ms  "
            f"p99 {result.p99_ms:6.1f} ms  errors {result.errors}  cores {cpu}"
        )
        return result

    def per_core(self, result: LoadResult) -> float:
        """Requests per second per core of server CPU, in the run just recorded."""
        cores: float = self.runs[-1]["cpu_cores"]["server"]
        return result.rps / max(0.01, cores)

    def check(self, gateway: Uvicorn, crowds: Iterable[Crowd], passes: Path, room: str) -> None:
        """The gateway agrees with the seeded lines before anything is timed."""
        for crowd in crowds:
            with open(crowd.credentials, encoding="ascii") as f:
                cookie = f.readline().strip()
            body = fetch(gateway.url + STATUS_PATH.format(room=crowd.room), cookie)
            if body.get("state") != "waiting" or body.get("position") != crowd.first_place:
                raise RuntimeError(f"room {crowd.room}: a status check answered {body}")
        with open(passes, encoding="ascii") as f:
            body = fetch(f"{gateway.url}/{room}/hello", f.readline().strip())
        if body != {"hello": "world"}:
            raise RuntimeError(f"an admitted request was not proxied: {body}")

    def page_query(self, gateway: Uvicorn, crowd: Crowd) -> str:
        """The query the waiting page's script polls with, once it shows its section: every
        visitor of the line shows a section of the same shape, so one query serves them all.
        Checked to bring back only new figures, as it would for a real page."""
        url = gateway.url + STATUS_PATH.format(room=crowd.room)
        with open(crowd.credentials, encoding="ascii") as f:
            cookie = f.readline().strip()
        query = f"?display=1&path=/{crowd.room}"
        layout = fetch(url + query, cookie)["display"]["layout"]
        query += f"&layout={layout}"
        if "fill" not in fetch(url + query, cookie)["display"]:
            raise RuntimeError(f"room {crowd.room}: the page's poll did not get figures only")
        return query

    def poll_load(
        self,
        gateway: Uvicorn,
        crowd: Crowd,
        seconds: int,
        connections: int | None = None,
        rate: float = 0.0,
        query: str = "",
    ) -> Load:
        """Status checks, each with the next visitor's ticket."""
        return Load(
            gateway.url + STATUS_PATH.format(room=crowd.room) + query,
            connections or self.plan.connections,
            seconds,
            self.plan.driver_threads,
            header="Cookie",
            values=crowd.credentials,
            rate=rate,
        )

    def throughput(
        self, hello: Uvicorn, gateway: Uvicorn, redis: Valkey, crowds: dict[str, Crowd]
    ) -> None:
        """Hello and the status checks take turns, round after round, so that whatever else
        the machine does weighs on both alike."""
        plan = self.plan
        sizes = sorted(plan.waiting_sizes)
        say_hello = Load(hello.url + "/hello", plan.connections, plan.run_seconds)
        self.say("warming up")
        self.driver.run(Load(say_hello.url, plan.connections, plan.warmup_seconds))
        self.driver.run(self.poll_load(gateway, crowds[line_room(sizes[-1])], plan.warmup_seconds))
        largest = crowds[line_room(sizes[-1])]
        page_query = self.page_query(gateway, largest)
        hello_rps: list[float] = []
        page_rps: list[float] = []
        poll_rps: dict[int, list[float]] = {size: [] for size in sizes}
        hello_per_core: list[float] = []
        poll_per_core: dict[int, list[float]] = {size: [] for size in sizes}
        polls = 0
        spent = redis_stats.RedisCounters(0, 0, 0, 0, 0)
        for round_ in range(1, plan.rounds + 1):
            self.say(f"round {round_} of {plan.rounds}")
            result = self.load("hello", hello, redis, say_hello, round=round_)
            hello_rps.append(result.rps)
            hello_per_core.append(self.per_core(result))
            for size in sizes:
                load = self.poll_load(gateway, crowds[line_room(size)], plan.run_seconds)
                before = self.aio.run(redis_stats.counters(redis.client))
                result = self.load(
                    f"poll, {size:,} waiting", gateway, redis, load, round=round_, waiting=size
                )
                spent = spent + (self.aio.run(redis_stats.counters(redis.client)) - before)
                poll_rps[size].append(result.rps)
                poll_per_core[size].append(self.per_core(result))
                polls += result.requests
            # The waiting page's own script, polling for its new figures.
            load = self.poll_load(gateway, largest, plan.run_seconds, query=page_query)
            before = self.aio.run(redis_stats.counters(redis.client))
            result = self.load("page poll", gateway, redis, load, round=round_)
            spent = spent + (self.aio.run(redis_stats.counters(redis.client)) - before)
            page_rps.append(result.rps)
            polls += result.requests
        by_size = {str(size): round(median(v)) for size, v in poll_rps.items()}
        f = self.figures
        f["hello_rps"] = round(median(hello_rps))
        f["poll_rps_by_waiting"] = by_size
        f["poll_rps"] = by_size[str(sizes[-1])]
        f["poll_vs_hello"] = round(f["poll_rps"] / f["hello_rps"], 3)
        f["poll_flatness"] = round(by_size[str(sizes[-1])] / by_size[str(sizes[0])], 3)
        f["page_poll_rps"] = round(median(page_rps))
        f["page_poll_vs_hello"] = round(f["page_poll_rps"] / f["hello_rps"], 3)
        f["redis_calls_per_poll"] = round(spent.reads / max(1, polls), 5)
        f["redis_scripts_per_poll"] = round(spent.scripts / max(1, polls), 5)
        f["tick_redis_us"] = round(spent.script_usec / spent.scripts) if spent.scripts else None
        # Per core of server CPU: what a check costs, whatever else the machine was doing.
        per_core = {str(size): round(median(v)) for size, v in poll_per_core.items()}
        f["hello_rps_per_core"] = round(median(hello_per_core))
        f["poll_rps_per_core_by_waiting"] = per_core
        f["poll_rps_per_core"] = per_core[str(sizes[-1])]
        f["poll_vs_hello_per_core"] = round(f["poll_rps_per_core"] / f["hello_rps_per_core"], 3)
        f["poll_flatness_per_core"] = round(per_core[str(sizes[-1])] / per_core[str(sizes[0])], 3)

    def proxy(
        self, hello: Uvicorn, gateway: Uvicorn, redis: Valkey, passes: Path, room: str
    ) -> None:
        plan = self.plan
        url = f"{gateway.url}/{room}/hello"
        load = Load(url, plan.connections, plan.proxy_seconds, header="Cookie", values=passes)
        result = self.load("proxy, admitted", Together(gateway, hello), redis, load)
        self.figures["proxy_rps"] = round(result.rps)
        self.figures["proxy_vs_hello"] = round(result.rps / self.figures["hello_rps"], 3)

    def latency(self, gateway: Uvicorn, redis: Valkey, crowd: Crowd) -> None:
        plan = self.plan
        self.say(
            f"latency: {plan.latency_visitors:,} waiting, {plan.latency_rate:,} checks a second "
            f"for {plan.latency_seconds} s"
        )
        load = self.poll_load(
            gateway,
            crowd,
            plan.latency_seconds,
            connections=plan.latency_connections,
            rate=plan.latency_rate,
        )
        result = self.load("poll at a fixed rate", gateway, redis, load, waiting=crowd.room)
        # And at half the measured capacity: the latency a visitor sees when the gateway
        # keeps up, whatever the asked rate was.
        half = max(1, round(self.figures["poll_rps"] / 2))
        load = self.poll_load(
            gateway,
            crowd,
            max(1, plan.latency_seconds // 2),
            connections=plan.latency_connections,
            rate=half,
        )
        within = self.load("poll at half capacity", gateway, redis, load, waiting=crowd.room)
        self.figures |= {
            "poll_half_capacity_rate": half,
            "poll_half_capacity_p50_ms": round(within.p50_ms, 2),
            "poll_half_capacity_p99_ms": round(within.p99_ms, 2),
        }
        self.figures |= {
            "poll_p50_ms": round(result.p50_ms, 2),
            "poll_p99_ms": round(result.p99_ms, 2),
            "poll_latency_rate": plan.latency_rate,
            "poll_latency_achieved_rps": round(result.rps),
            "poll_latency_late_share": round(result.late / max(1, result.requests), 4),
            "poll_latency_lag_max_ms": round(result.lag_max_ms, 1),
        }

    def join(self, joiner: Uvicorn, redis: Valkey) -> None:
        plan = self.plan
        before = self.aio.run(redis_stats.used_memory(redis.client))
        counted = self.aio.run(redis_stats.counters(redis.client))
        url = joiner.url + JOIN_PATH.format(room=JOIN_ROOM)
        load = Load(url, plan.connections, plan.join_seconds, method="POST")
        result = self.load("join", joiner, redis, load)
        spent = self.aio.run(redis_stats.counters(redis.client)) - counted
        after = self.aio.run(redis_stats.used_memory(redis.client))
        # Nearly every script call here is a join (the joining gateway ticks 4 times a second).
        self.figures["join_redis_us"] = round(spent.script_usec / max(1, spent.scripts))
        joined = self.wait(redis.client.zcard(redis.store.keys(JOIN_ROOM).line))
        self.figures["join_rps"] = round(result.rps)
        self.figures["joined"] = joined
        self.figures["redis_bytes_per_joined"] = round((after - before) / max(1, joined), 1)

    def profile(
        self,
        profiler: Profiler,
        hello: Uvicorn,
        gateway: Uvicorn,
        joiner: Uvicorn,
        crowds: dict[str, Crowd],
        passes: Path,
        proxy_room: str,
    ) -> None:
        """Extra runs, not counted in the figures, with py-spy on one worker of the server."""
        plan = self.plan
        seconds = max(plan.run_seconds, 5)
        largest = crowds[line_room(max(plan.waiting_sizes))]
        conns = plan.connections
        proxied = Load(f"{gateway.url}/{proxy_room}/hello", conns, seconds, values=passes,
                       header="Cookie")  # fmt: skip
        joins = Load(joiner.url + JOIN_PATH.format(room=JOIN_ROOM), conns, seconds, method="POST")
        runs = [
            ("hello", hello, Load(hello.url + "/hello", conns, seconds)),
            ("status", gateway, self.poll_load(gateway, largest, seconds)),
            ("proxy", gateway, proxied),
            ("join", joiner, joins),
        ]
        for name, server, load in runs:
            profiler.start(name, server.worker_pids()[0], seconds - 1)
            self.driver.run(load)
            self.say(f"  profile of {name}: {profiler.finish(name)}")

    def report(self) -> dict[str, Any]:
        setup = run_setup(self.plan, self.driver_note, self.load_average_at_start)
        return self.figures | {"setup": setup, "runs": self.runs}
