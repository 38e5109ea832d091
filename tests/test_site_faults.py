"""Faults behind and inside the gateway, with real processes: the booking site stopped,
then hanging, then back; a gateway worker killed while visitors keep checking.

The booking site runs as its own process on a fixed port, so a test can kill it and start
it again where the gateway expects it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from helpers import REPO_ROOT, delete_keys, free_port, record_figures, run_server
from queue_core.store import LineStore

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOMS = """
[rooms.book]
paths = ["/book"]
rate_per_minute = 0
timezone = "Europe/Prague"
"""
STATUS = "/_waitroom/api/rooms/book/status"
JOIN = "/_waitroom/api/rooms/book/join"


class Site:
    """The booking backend as a process of its own, which a test may kill and restart."""

    def __init__(self, db: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "BACKEND_DB": str(db), "BACKEND_BASE_LATENCY_MS": "1"}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "uvicorn", "booking_backend.app:create_app"]
        command += ["--factory", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--log-level", "warning"]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("the booking site did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)


@dataclass
class Stack:
    url: str
    site: Site
    prefix: str
    redis_url: str


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("site-faults")
    (tmp / "rooms.toml").write_text(ROOMS)
    site = Site(tmp / "booking.sqlite3")
    site.start()
    prefix = f"wrtest-{uuid.uuid4().hex[:12]}"
    env = {
        "REDIS_URL": redis_url,
        "WAITROOM_SECRET": "s" * 40,
        "WAITROOM_CONFIG": str(tmp / "rooms.toml"),
        "WAITROOM_BACKEND_URL": site.url,
        "WAITROOM_BACKEND_TIMEOUT": "1",
        "WAITROOM_KEY_PREFIX": prefix,
        "WAITROOM_TICK_SECONDS": "0.05",
    }
    try:
        with run_server("gateway.app:create_app", env=env, args=["--workers", "2"]) as url:
            yield Stack(url, site, prefix, redis_url)
    finally:
        with contextlib.suppress(Exception):
            site.kill()
        delete_keys(redis_url, prefix)


async def configure(stack: Stack, **settings: float) -> None:
    client = Redis.from_url(stack.redis_url)
    try:
        await LineStore(client, stack.prefix).configure("book", **settings)  # type: ignore[arg-type]
    finally:
        await client.aclose()


async def test_the_site_down_or_hanging_says_try_again_and_the_pass_holds(
    stack: Stack,
) -> None:
    await configure(stack, rate_per_minute=60_000)
    async with httpx.AsyncClient(
        base_url=stack.url, timeout=10, headers={"Accept-Language": "cs"}
    ) as citizen:
        assert (await citizen.get("/book")).status_code == 200  # admitted, on the site
        await configure(stack, rate_per_minute=0)
        pass_cookie = citizen.cookies["wr_pass_book"]

        stack.site.kill()  # down: connections refused
        page = await citizen.get("/book")
        assert page.status_code == 502
        assert "Rezervační systém právě neodpovídá" in page.text  # in the visitor's language
        assert 'http-equiv="refresh"' in page.text  # and it tries again by itself
        assert page.headers["retry-after"]
        # A script asking for JSON gets JSON.
        api = await citizen.get("/book/api/availability", headers={"Accept": "application/json"})
        assert api.status_code == 502 and api.json()["error"] == "backend_unavailable"

        stack.site.start()  # back, on the same address
        page = await citizen.get("/book")
        assert page.status_code == 200 and "Rezervační systém" not in page.text
        assert citizen.cookies["wr_pass_book"] == pass_cookie  # the same pass, still good

        stack.site.signal(signal.SIGSTOP)  # hanging: accepts, never answers
        try:
            started = time.monotonic()
            page = await citizen.get("/book")
            assert page.status_code == 504 and "Rezervační systém" in page.text
            assert time.monotonic() - started < 5  # WAITROOM_BACKEND_TIMEOUT, not for ever
        finally:
            stack.site.signal(signal.SIGCONT)
        assert (await citizen.get("/book")).status_code == 200

        # Every failure was seen, for the dashboard, the autopilot and alerts.
        async with httpx.AsyncClient(base_url=stack.url) as scraper:
            metrics = (await scraper.get("/metrics")).text
        errors = {
            line.split("code=")[1].split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("waitroom_backend_errors_total{") and 'room="book"' in line
        }
        assert errors["502"] >= 2 and errors["504"] >= 1, errors
        record_figures(
            "booking site killed, restarted, hung",
            backend_errors_counted=errors,
            same_pass_after=True,
            hang_answered_within_seconds=round(time.monotonic() - started, 2),
        )


def worker_pids(url: str) -> set[int]:
    pids = set()
    for _ in range(60):
        with httpx.Client(base_url=url) as c:  # a new connection each time
            pids.add(c.get("/readyz").json()["worker"])
        if len(pids) == 2:
            break
    return pids


async def test_a_worker_killed_mid_queue_loses_nobody_their_place(stack: Stack) -> None:
    await configure(stack, rate_per_minute=0)
    visitors = [httpx.AsyncClient(base_url=stack.url, timeout=10) for _ in range(20)]
    try:
        for v in visitors:
            assert (await v.post(JOIN)).status_code == 200
        await asyncio.sleep(0.3)

        async def positions() -> tuple[list[int], int]:
            places, failures = [], 0
            for v in visitors:
                for _attempt in range(3):  # a request in flight on the dying worker fails once
                    try:
                        r = await v.get(STATUS, headers={"Connection": "close"})
                        break
                    except httpx.TransportError:
                        failures += 1
                else:
                    raise AssertionError("the gateway stopped answering")
                assert r.status_code == 200, r.text
                places.append(r.json()["position"])
            return places, failures

        before, _ = await positions()
        first = before[0]
        assert before == list(range(first, first + 20))
        victim = min(worker_pids(stack.url))
        os.kill(victim, signal.SIGKILL)
        failures = 0
        for _ in range(5):  # while the other worker carries on, and the dead one is replaced
            after, failed = await positions()
            failures += failed
            assert after == before
            await asyncio.sleep(0.2)
        assert failures <= 3
        await asyncio.sleep(2.0)
        assert victim not in worker_pids(stack.url)
        assert (await positions())[0] == before
        record_figures(
            "gateway worker killed",
            visitors_waiting=len(visitors),
            places_lost=0,
            requests_retried=failures,
        )
    finally:
        await asyncio.gather(*(v.aclose() for v in visitors))
