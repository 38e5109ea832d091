"""The booking site's sold-out signal: a real booking backend behind a real gateway, where
booking the last appointment puts the waiting room into sold-out mode for everyone waiting,
and a new delivery takes it out again; and, on a real Redis, whose word wins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from redis.asyncio import Redis
from test_booking_support import ADMIN_TOKEN, await_pin, backend_env, new_phone

from gateway.ops.audit import AuditLog, Entry
from gateway.sold_out import SoldOutSignal
from helpers import Stack, gateway_stack
from queue_core.keys import audit_key
from queue_core.store import LineStore

pytestmark = pytest.mark.anyio
# Releases are only taken for days from today on (booking_backend/inventory.py).
DAY = datetime.now(UTC).date().isoformat()
PRAHA = "praha-vystaviste"
ROOMS = """
[rooms.book]
paths = ["/book"]
rate_per_minute = 1
"""


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sold-out")
    one_appointment = backend_env(
        tmp / "booking.sqlite3",
        BACKEND_CENTRES="1",
        BACKEND_DAYS="1",
        BACKEND_SLOTS_PER_DAY="1",
        BACKEND_FIRST_DAY=DAY,
        BACKEND_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    with gateway_stack(redis_url, tmp, ROOMS, site_env=one_appointment) as s:
        yield s


@pytest.fixture
def store(stack_store: LineStore) -> LineStore:
    return stack_store


async def backend_entries(store: LineStore, prefix: str, room: str) -> list[Entry]:
    entries = await AuditLog(store.redis, audit_key(prefix)).recent(100, room)
    return [e for e in entries if e.who == "backend"]


@pytest.mark.slow
async def test_booking_the_last_appointment_tells_everyone_waiting(
    stack: Stack, store: LineStore
) -> None:
    status_url = "/_waitroom/api/rooms/book/status"
    async with (
        httpx.AsyncClient(base_url=stack.url, timeout=10) as ana,
        httpx.AsyncClient(base_url=stack.url, timeout=10) as ben,
        httpx.AsyncClient(base_url=stack.backend, timeout=10) as site,
    ):
        first = await ana.get("/book")  # nobody waiting: straight through to the site
        assert first.status_code == 200 and first.headers["x-booking-sold-out"] == "0"
        await store.configure("book", max_active=1)  # Ana is on the site: Ben waits
        await ben.get("/book")
        waiting = (await ben.get(status_url)).json()
        assert (waiting["state"], waiting["sold_out"]) == ("waiting", False)

        phone = new_phone()
        assert (await ana.post("/book/api/pin", json={"phone": phone})).status_code == 202
        pin = await await_pin(site, phone)  # the simulated SMS, read at the site itself
        assert (await ana.post("/book/api/pin/verify", json={"pin": pin})).status_code == 200
        booked = await ana.post("/book/api/bookings", json={"centre": PRAHA, "day": DAY})
        assert booked.status_code == 201 and booked.headers["x-booking-sold-out"] == "1"
        for _ in range(3):  # more replies saying the same: no more changes
            assert (await ana.get("/book/api/availability")).json()["sold_out"] is True

        await until(lambda: sold_out_for(ben, status_url), True)
        assert "All dates are booked" in (await ben.get("/book")).text
        entries = await backend_entries(store, stack.prefix, "book")
        assert [(e.setting, e.old, e.new) for e in entries] == [("sold_out", "0", "1")]

        # A new delivery: the next reply the gateway passes on says so, and the room follows.
        released = await site.post(
            "/_backend/admin/release",
            json={"centre": PRAHA, "day": DAY, "slots": 2},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert released.status_code == 200
        assert (await ana.get("/book/api/availability")).headers["x-booking-sold-out"] == "0"
        await until(lambda: sold_out_for(ben, status_url), False)
        entries = await backend_entries(store, stack.prefix, "book")
        assert [(e.old, e.new) for e in entries] == [("1", "0"), ("0", "1")]


async def sold_out_for(visitor: httpx.AsyncClient, status_url: str) -> bool:
    return bool((await visitor.get(status_url)).json()["sold_out"])


async def until(check: Callable[[], Awaitable[bool]], expected: bool, within_s: float = 5) -> None:
    deadline = time.monotonic() + within_s
    while await check() != expected:
        assert time.monotonic() < deadline, f"sold_out did not become {expected}"
        await asyncio.sleep(0.05)


# -- whose word wins, on a real Redis -----------------------------------------------------


@pytest.fixture
async def workers(
    redis_client: Redis, key_prefix: str
) -> AsyncIterator[tuple[LineStore, AuditLog, list[SoldOutSignal]]]:
    store = LineStore(redis_client, key_prefix)
    audit = AuditLog(redis_client, audit_key(key_prefix))
    yield store, audit, [SoldOutSignal(store, audit, lambda path: None) for _ in range(3)]


async def hear(signals: list[SoldOutSignal], sold_out: bool) -> None:
    """Every worker hears the site say it (as they would, each from its own replies)."""
    for signal in signals:
        signal.heard("r", sold_out)
        await signal.flush()


async def test_the_site_changes_sold_out_once_however_many_workers_hear_it(
    workers: tuple[LineStore, AuditLog, list[SoldOutSignal]],
) -> None:
    store, audit, signals = workers
    await hear(signals, False)
    assert (await store.state("r")).get("sold_out", "0") == "0"
    await hear(signals, True)
    await hear(signals, True)
    assert (await store.state("r"))["sold_out"] == "1"
    await hear(signals, False)
    assert (await store.state("r"))["sold_out"] == "0"
    changes = [(e.who, e.setting, e.old, e.new) for e in await audit.recent()]
    assert changes == [("backend", "sold_out", "1", "0"), ("backend", "sold_out", "0", "1")]


async def test_sold_out_set_by_hand_stays_until_ops_clear_it(
    workers: tuple[LineStore, AuditLog, list[SoldOutSignal]],
) -> None:
    store, audit, signals = workers
    await hear(signals, False)
    await store.configure("r", sold_out=True)  # ops: "no more dates today"
    await hear(signals, True)
    await hear(signals, False)  # the site has dates again, but ops said sold out
    assert (await store.state("r"))["sold_out"] == "1"
    assert await audit.recent() == []


async def test_ops_clearing_sold_out_by_hand_is_not_undone_by_an_old_signal(
    workers: tuple[LineStore, AuditLog, list[SoldOutSignal]],
) -> None:
    store, _, signals = workers
    await hear(signals[:1], True)
    assert (await store.state("r"))["sold_out"] == "1"
    await store.configure("r", sold_out=False)  # ops know better (e.g. a release is coming)
    await hear(signals[1:], True)  # other workers hear the same old news for the first time
    assert (await store.state("r"))["sold_out"] == "0"
    await hear(signals, False)
    await hear(signals, True)  # sold out again, after ops cleared it: the site's word counts
    assert (await store.state("r"))["sold_out"] == "1"
