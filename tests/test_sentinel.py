"""Redis Sentinel: one primary, two replicas and three sentinels on loopback, all from the
embedded binary. Three gateway processes find the primary through the sentinels; the
primary dies mid-run, just after taking writes no replica got, and the gateways follow the
sentinels to the replica they promote."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from helpers import Stack, gateway_stack
from line_run import LineRun, check, cut_off
from queue_core.redis_sentinel import LocalSentinel
from queue_core.store import LineStore

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
RATE = 240.0  # per minute: one every 0.25 s
ROOMS = '[rooms.launch]\npaths = ["/book"]\nrate_per_minute = 0\n'


@pytest.fixture(scope="module")
def sentinel() -> Iterator[LocalSentinel]:
    with LocalSentinel(replicas=2, sentinels=3) as s:
        yield s


@pytest.fixture(scope="module")
def stack(sentinel: LocalSentinel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(
        sentinel.url,
        tmp_path_factory.mktemp("sentinel"),
        ROOMS,
        gateways=3,
        site_env={"BACKEND_BASE_LATENCY_MS": "1"},
    ) as s:
        yield s


async def test_three_gateways_follow_a_failover_and_keep_order_and_rate(
    sentinel: LocalSentinel, stack: Stack, stack_store: LineStore
) -> None:
    promoted = []

    def fault() -> tuple[float, float]:
        primary = sentinel.current_primary()
        # For a moment the primary goes on taking joins, ticks and claims that reach neither
        # replica; then it dies.
        cut_off(primary, sentinel.replicas)
        time.sleep(0.6)
        struck = time.monotonic()
        primary.kill()
        for replica in sentinel.replicas:
            os.kill(replica.pid, signal.SIGCONT)
        promoted.append(sentinel.wait_failover(primary))
        return struck, time.monotonic()

    run = await LineRun(stack, stack_store, "launch").run(
        fault, waiting=30, late=12, rate_per_minute=RATE, fault_when_admitted=10
    )
    check(run, RATE)
    assert promoted[0] in sentinel.replicas
    # The promoted replica was behind: the room noticed and recovered from the gateways.
    assert run.state["recoveries"] == "1", run.state
