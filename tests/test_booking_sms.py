"""The SMS bottleneck of 15 January 2021, in a real backend process: a burst of PIN requests
queues at 20 messages a second, a PIN that arrives after it expired is useless, and raising
the rate (as the operators did at 08:35) drains the queue. Delivery times come from the
simulation inbox. The limit is per process, so the site refuses to run as several."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from test_booking_support import (
    ADMIN_TOKEN,
    BOOKING_APP,
    async_visitor,
    backend_env,
    new_phone,
    pin_from,
    visitor,
)

from helpers import REPO_ROOT, free_port, run_server

pytestmark = pytest.mark.slow

BURST = 100
RATE = 20
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("sms") / "booking.sqlite3"
    env = backend_env(
        db,
        BACKEND_SMS_PER_SECOND=str(RATE),
        BACKEND_MAX_IN_FLIGHT="200",  # the bottleneck under test is the SMS gateway alone
        BACKEND_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    with run_server(BOOKING_APP, env=env) as url:
        yield url


def most_in_any_second(times: list[float]) -> int:
    """Deliveries in the busiest half-open window [t, t + 1 s)."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + 1 - 1e-9) for t in times)


async def request_pins(base_url: str, phones: list[str]) -> list[httpx.Response]:
    async with async_visitor(base_url, limits=httpx.Limits(max_connections=BURST)) as client:
        return list(
            await asyncio.gather(*(client.post("/book/api/pin", json={"phone": p}) for p in phones))
        )


def wait_until_sent(client: httpx.Client, timeout_s: float) -> float:
    """Poll until the gateway's queue is empty; returns when that was seen."""
    deadline = time.time() + timeout_s
    while client.get("/_backend/health").json()["sms"]["queued"] > 0:
        assert time.time() < deadline, "SMS queue did not drain"
        time.sleep(0.05)
    return time.time()


def deliveries(client: httpx.Client, phones: list[str]) -> list[dict[str, float]]:
    inboxes = [client.get(f"/_sim/inbox/{p}").json()["messages"] for p in phones]
    assert [len(messages) for messages in inboxes] == [1] * len(phones)
    return [messages[0] for messages in inboxes]


def test_a_burst_of_pin_requests_is_delivered_at_twenty_a_second(base_url: str) -> None:
    phones = [new_phone() for _ in range(BURST)]
    asked_at = time.time()
    replies = asyncio.run(request_pins(base_url, phones))
    assert {r.status_code for r in replies} == {202}
    with visitor(base_url) as client:
        backlog = client.get("/_backend/health").json()["sms"]
        assert backlog["queued"] >= BURST - RATE  # at most a second's worth went out already
        assert backlog["oldest_queued_age_s"] > 0
        assert backlog["delay_s"] > 3
        metrics = client.get("/metrics").text
        assert any(line.startswith("booking_sms_queued ") for line in metrics.splitlines())

        # Someone asking now is told on the page that their SMS will be late.
        with visitor(base_url) as latecomer:
            latecomer.post("/book/api/pin", json={"phone": new_phone()})
            notice = " ".join(latecomer.get("/book/pin").text.split())
        wait = re.search(r"Yours should arrive in about (\d+) seconds\.", notice)
        assert wait and 3 <= int(wait.group(1)) <= 6, notice

        wait_until_sent(client, timeout_s=10)
        sent = deliveries(client, phones)

    delivered = sorted(m["delivered_at"] for m in sent)
    lateness = sorted(m["delivered_at"] - m["queued_at"] for m in sent)
    assert most_in_any_second(delivered) == RATE
    assert delivered[-1] - delivered[0] == pytest.approx((BURST - 1) / RATE, abs=0.05)
    assert lateness[0] < 0.5  # the first ones were quick ...
    assert lateness[-1] == pytest.approx(BURST / RATE, abs=0.5)  # ... the last ~5 s late
    assert delivered[0] >= asked_at
    # Each reply told its visitor when to expect the SMS.
    expected = sorted(r.json()["sms_expected_at"] for r in replies)
    assert expected[-1] > expected[0]


def test_raising_the_rate_at_runtime_drains_the_backlog(base_url: str) -> None:
    phones = [new_phone() for _ in range(BURST)]
    replies = asyncio.run(request_pins(base_url, phones))
    assert {r.status_code for r in replies} == {202}
    with visitor(base_url) as client:
        raised = client.post("/_backend/admin/sms-rate", json={"per_second": 200}, headers=ADMIN)
        raised_at = time.time()
        assert raised.status_code == 200
        assert raised.json()["per_second"] == 200
        assert raised.json()["queued"] >= BURST - RATE
        assert raised.json()["delay_s"] < 1  # was about 5 s at 20 a second
        drained_at = wait_until_sent(client, timeout_s=5)
        sent = deliveries(client, phones)
        assert client.get("/_backend/health").json()["sms"]["per_second"] == 200
        client.post("/_backend/admin/sms-rate", json={"per_second": RATE}, headers=ADMIN)

    delivered = sorted(m["delivered_at"] for m in sent)
    assert drained_at - raised_at < 1.5  # instead of the ~5 s it would have taken
    assert delivered[-1] - raised_at < 0.7
    assert most_in_any_second(delivered) <= 200


def test_a_pin_that_arrives_after_it_expired_cannot_be_used(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = tmp_path_factory.mktemp("sms-slow") / "booking.sqlite3"
    # One SMS a second, PINs valid for half a second: every PIN arrives too late.
    env = backend_env(db, BACKEND_SMS_PER_SECOND="1", BACKEND_PIN_TTL_S="0.5")
    with run_server(BOOKING_APP, env=env) as url, visitor(url) as client:
        phone = new_phone()
        sent = client.post("/book/api/pin", json={"phone": phone}).json()
        assert sent["sms_expected_at"] > sent["expires_at"]

        inbox = client.get(f"/_sim/inbox/{phone}").json()
        assert inbox["messages"] == [] and inbox["next_delivery_at"] is not None
        deadline = time.time() + 5
        while not (messages := client.get(f"/_sim/inbox/{phone}").json()["messages"]):
            assert time.time() < deadline
            time.sleep(0.05)
        message = messages[0]
        assert message["delivered_at"] - message["queued_at"] >= 0.99
        pin = pin_from(messages)
        assert pin is not None

        late = client.post("/book/api/pin/verify", json={"pin": pin})
        assert late.status_code == 410
        assert late.json()["error"] == "pin_expired"
        assert client.get("/book/api/booking").status_code == 401  # not verified

        # The expired PIN does not block a new request; that one is sent at once.
        assert client.post("/book/api/pin", json={"phone": phone}).json()["new_pin_sent"] is True


def run_until_it_stops(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Start a backend that is expected to refuse to run; its exit code and output."""
    command = [sys.executable, "-m", "uvicorn", BOOKING_APP, "--factory", "--host", "127.0.0.1"]
    command += ["--port", str(free_port()), *args]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so its workers go down with it
    )
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # workers would hold the pipe open
        output, _ = process.communicate()
        raise AssertionError(f"the backend kept running:\n{output}") from None
    return process.returncode, output


def test_several_workers_would_multiply_the_sms_limit_so_they_are_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = tmp_path_factory.mktemp("sms-workers") / "booking.sqlite3"
    _, output = run_until_it_stops(backend_env(db), "--workers", "2")
    # uvicorn's parent exits 0 even so; what counts is that nothing is left serving.
    assert "another booking backend process" in output, output
    assert "the site runs as exactly one process" in output
    assert "failed to start, stopping the parent process" in output


def test_a_second_process_on_the_same_database_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = tmp_path_factory.mktemp("sms-second") / "booking.sqlite3"
    with run_server(BOOKING_APP, env=backend_env(db)) as url:
        code, output = run_until_it_stops(backend_env(db))
        assert code != 0
        assert "another booking backend process" in output, output
        assert "give each copy its own BACKEND_DB" in output
        assert httpx.get(f"{url}/healthz").status_code == 200  # the first one carries on
    # Once the first has stopped, the same file can be served again.
    with run_server(BOOKING_APP, env=backend_env(db)) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
