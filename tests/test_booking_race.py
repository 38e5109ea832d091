"""The last slots, for real: forty verified people confirm at once against five appointments
in a real uvicorn process; then the process is killed with SIGKILL and started again on the
same database file, and every confirmed booking must still be there. And one person
confirming from several devices at once gets one booking."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_booking_support import async_visitor, averify, await_pin, backend_env, new_phone, visitor

from helpers import REPO_ROOT, free_port, run_server

pytestmark = pytest.mark.slow

PEOPLE = 40
SLOTS = 5
CENTRE = "praha-vystaviste"
DAY = "2021-01-15"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def kill_9(self) -> None:
        """SIGKILL: no shutdown, no flushing, as in a crash or an OOM kill."""
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=5) == -signal.SIGKILL


@contextlib.contextmanager
def killable_server(env: Mapping[str, str]) -> Iterator[Server]:
    """A backend process run directly (helpers.run_server only stops servers gracefully)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "booking_backend.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 10
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"backend exited: {log.read().decode(errors='replace')}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                        break
                assert time.monotonic() < deadline, "backend did not start"
                time.sleep(0.05)
            yield Server(url, process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def race(url: str) -> tuple[list[dict[str, Any]], list[httpx.Response], list[str]]:
    """Verify everyone, then fire all confirmations at once; return their cookies too."""
    clients = [async_visitor(url) for _ in range(PEOPLE)]
    try:
        phones = await asyncio.gather(*(averify(c) for c in clients))
        # Eight people want each of the five times.
        choices = [{"centre": CENTRE, "day": DAY, "slot": i % SLOTS + 1} for i in range(PEOPLE)]
        replies = await asyncio.gather(
            *(
                c.post("/book/api/bookings", json=choice)
                for c, choice in zip(clients, choices, strict=True)
            )
        )
        # The ones who lost try any time at all, then register without a date.
        losers = [c for c, r in zip(clients, replies, strict=True) if r.status_code != 201]
        retries = await asyncio.gather(
            *(c.post("/book/api/bookings", json={"centre": CENTRE, "day": DAY}) for c in losers)
        )
        assert {(r.status_code, r.json()["error"]) for r in retries} == {(409, "sold_out")}
        registrations = await asyncio.gather(*(c.post("/book/api/registrations") for c in losers))
        assert {r.status_code for r in registrations} == {201}
        sessions = [dict(c.cookies) for c in clients]
        return sessions, list(replies), phones
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def test_last_slots_race_and_bookings_survive_kill_9(tmp_path: Path) -> None:
    env = backend_env(
        tmp_path / "booking.sqlite3",
        BACKEND_CENTRES="1",
        BACKEND_DAYS="1",
        BACKEND_SLOTS_PER_DAY=str(SLOTS),
        BACKEND_FIRST_DAY=DAY,
        # Shared across the restart, so sessions from before the crash still work after it.
        BACKEND_SESSION_SECRET="race-test-session-secret-0123456789abcdef",
    )
    with killable_server(env) as server:
        sessions, replies, phones = asyncio.run(race(server.url))

        won = [r.json()["booking"] for r in replies if r.status_code == 201]
        lost = [r for r in replies if r.status_code != 201]
        assert len(won) == SLOTS
        assert sorted(b["slot"] for b in won) == list(range(1, SLOTS + 1))  # each slot once
        assert len({b["reference"] for b in won}) == SLOTS
        assert len({b["phone"] for b in won}) == SLOTS
        assert {(r.status_code, r.json()["error"]) for r in lost} <= {
            (409, "slot_taken"),
            (409, "sold_out"),
        }
        with visitor(server.url) as ops:
            health = ops.get("/_backend/health").json()
        assert health["inventory"] == {
            "slots_total": SLOTS,
            "slots_left": 0,
            "bookings": SLOTS,
            "registrations": PEOPLE - SLOTS,
        }
        server.kill_9()

    with killable_server(env) as restarted, visitor(restarted.url) as anyone:
        for booking in won:
            after = anyone.get(f"/book/api/bookings/{booking['reference']}")
            assert after.status_code == 200
            assert after.json()["booking"]["slot"] == booking["slot"]
            assert after.json()["booking"]["status"] == "booked"
        # Each person's own session from before the crash finds their record.
        statuses = []
        for cookies, phone in zip(sessions, phones, strict=True):
            with visitor(restarted.url, cookies=cookies) as person:
                mine = person.get("/book/api/booking").json()["booking"]
                assert mine["phone"] == phone
                statuses.append(mine["status"])
                if mine["status"] == "booked":
                    # Confirming again after the restart still gives the same booking.
                    again = person.post("/book/api/bookings", json={"centre": CENTRE, "day": DAY})
                    assert (again.status_code, again.json()["booking"]) == (200, mine)
        assert statuses.count("booked") == SLOTS
        assert statuses.count("registered_without_date") == PEOPLE - SLOTS

        signal_ = anyone.get("/_backend/sold-out")
        assert signal_.json() == {"sold_out": True, "slots_left": 0, "register_without_date": True}
        assert signal_.headers["x-booking-sold-out"] == "1"
        assert anyone.get("/book").headers["x-booking-sold-out"] == "1"
        assert anyone.get("/nowhere").headers["x-booking-sold-out"] == "1"


DEVICES = 6


async def one_phone_many_devices(url: str) -> tuple[list[httpx.Response], list[str]]:
    """One number verified in several sessions (a PIN works once, so one after another),
    then every session confirms a different time at the same instant."""
    phone = new_phone()
    clients = [async_visitor(url) for _ in range(DEVICES)]
    try:
        for n, client in enumerate(clients, start=1):
            assert (await client.post("/book/api/pin", json={"phone": phone})).status_code == 202
            pin = await await_pin(client, phone, count=n)
            checked = await client.post("/book/api/pin/verify", json={"pin": pin})
            assert checked.status_code == 200, checked.text
        replies = await asyncio.gather(
            *(
                c.post("/book/api/bookings", json={"centre": CENTRE, "day": DAY, "slot": slot})
                for slot, c in enumerate(clients, start=1)
            )
        )
        mine = await asyncio.gather(*(c.get("/book/api/booking") for c in clients))
        return list(replies), [r.json()["booking"]["reference"] for r in mine]
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def test_one_phone_confirming_from_several_devices_at_once_books_once(tmp_path: Path) -> None:
    env = backend_env(
        tmp_path / "booking.sqlite3",
        BACKEND_CENTRES="1",
        BACKEND_DAYS="1",
        BACKEND_SLOTS_PER_DAY="20",
        BACKEND_FIRST_DAY=DAY,
    )
    with run_server("booking_backend.app:create_app", env=env) as url:
        replies, seen_by_each = asyncio.run(one_phone_many_devices(url))
        with visitor(url) as ops:
            inventory = ops.get("/_backend/health").json()["inventory"]

    created = [r for r in replies if r.status_code == 201]
    assert len(created) == 1, [(r.status_code, r.text) for r in replies]
    booking = created[0].json()["booking"]
    for reply in replies:
        if reply is created[0]:
            continue
        # The others are told of the same booking, or refused clearly; never a second one.
        if reply.status_code == 200:
            assert reply.json() == {"booking": booking, "created": False}
        else:
            assert 400 <= reply.status_code < 500 and reply.json()["error"], reply.text
    assert seen_by_each == [booking["reference"]] * DEVICES
    assert inventory == {"slots_total": 20, "slots_left": 19, "bookings": 1, "registrations": 0}
