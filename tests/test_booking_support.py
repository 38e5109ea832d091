"""Helpers shared by the tests/test_booking_*.py files (no tests of its own beyond a sanity
check): environments for real backend processes, fresh phone numbers, and getting a PIN out
of the simulation inbox the way a load script would."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

BOOKING_APP = "booking_backend.app:create_app"
ADMIN_TOKEN = "test-admin-token-0123456789"
# No artificial latency, a wide worker pool, instant SMS and the inbox on: for tests that
# check behaviour rather than load.
FAST_ENV = {
    "BACKEND_MAX_IN_FLIGHT": "64",
    "BACKEND_BASE_LATENCY_MS": "0",
    "BACKEND_LATENCY_PER_REQUEST_MS": "0",
    "BACKEND_QUEUE_TIMEOUT_S": "5",
    "BACKEND_SMS_PER_SECOND": "10000",
    "BACKEND_SIM_INBOX": "1",
}
PIN_IN_SMS = re.compile(r"PIN is (\d{6})")

# Distinct numbers across every test of one run, and unlikely to repeat between runs.
_numbers = itertools.count(random.randrange(10_000_000, 80_000_000, 1000))


# Building an SSL context costs ~70 ms per httpx client; the tests make hundreds of clients
# (one per visitor) and never use TLS, so they share one.
_TLS = ssl.create_default_context()


def visitor(base_url: str, **kwargs: Any) -> httpx.Client:
    """A visitor's browser: its own cookie jar, so its own session."""
    return httpx.Client(base_url=base_url, verify=_TLS, timeout=10, **kwargs)


def async_visitor(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, verify=_TLS, timeout=20, **kwargs)


def backend_env(db: Path, **overrides: str) -> dict[str, str]:
    return {**FAST_ENV, "BACKEND_DB": str(db), **overrides}


def new_phone() -> str:
    """A Czech mobile number in canonical form, never handed out before in this run."""
    return f"+4207{next(_numbers):08d}"


def pin_from(messages: list[dict[str, object]]) -> str | None:
    for message in reversed(messages):
        found = PIN_IN_SMS.search(str(message["text"]))
        if found:
            return found.group(1)
    return None


def wait_for_pin(client: httpx.Client, phone: str, count: int = 1, timeout_s: float = 5) -> str:
    """The PIN of the ``count``-th SMS to ``phone``, once the simulated operator delivers it."""
    deadline = time.monotonic() + timeout_s
    while True:
        messages = client.get(f"/_sim/inbox/{phone}").json()["messages"]
        if len(messages) >= count and (pin := pin_from(messages)):
            return pin
        if time.monotonic() > deadline:
            raise AssertionError(f"no SMS #{count} for {phone} after {timeout_s}s: {messages}")
        time.sleep(0.01)


async def await_pin(
    client: httpx.AsyncClient, phone: str, count: int = 1, timeout_s: float = 10
) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        messages = (await client.get(f"/_sim/inbox/{phone}")).json()["messages"]
        if len(messages) >= count and (pin := pin_from(messages)):
            return pin
        if time.monotonic() > deadline:
            raise AssertionError(f"no SMS #{count} for {phone} after {timeout_s}s: {messages}")
        await asyncio.sleep(0.02)


def verify(client: httpx.Client, phone: str | None = None) -> str:
    """Take ``client`` through phone number and PIN; returns the verified number."""
    phone = phone or new_phone()
    sent = client.post("/book/api/pin", json={"phone": phone})
    assert sent.status_code == 202, sent.text
    pin = wait_for_pin(client, phone)
    checked = client.post("/book/api/pin/verify", json={"pin": pin})
    assert checked.status_code == 200, checked.text
    return phone


async def averify(client: httpx.AsyncClient, phone: str | None = None) -> str:
    phone = phone or new_phone()
    sent = await client.post("/book/api/pin", json={"phone": phone})
    assert sent.status_code == 202, sent.text
    pin = await await_pin(client, phone)
    checked = await client.post("/book/api/pin/verify", json={"pin": pin})
    assert checked.status_code == 200, checked.text
    return phone


def test_new_phone_numbers_are_distinct_and_canonical() -> None:
    numbers = [new_phone() for _ in range(1000)]
    assert len(set(numbers)) == 1000
    assert all(re.fullmatch(r"\+4207\d{8}", n) for n in numbers)
