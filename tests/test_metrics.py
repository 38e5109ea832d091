"""The gateway's Prometheus metrics: exact counts from a real gateway with two uvicorn workers
(merged through PROMETHEUS_MULTIPROC_DIR), a real backend and a real Redis; who may scrape;
and the Grafana dashboard built on them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.metrics import AllowList, GatewayMetrics
from gateway.proxy import BackendProxy
from gateway.visitors import refusal_reason
from helpers import REPO_ROOT, gateway_stack
from queue_core.store import LineStore
from queue_core.tokens import Credentials, InvalidCredential, Pass, Ticket

DASHBOARD = REPO_ROOT / "docs" / "grafana" / "waitroom.json"
ROOMS = """
[rooms.line]
paths = ["/line"]
rate_per_minute = 0

[rooms.open]
paths = ["/echo"]
rate_per_minute = 60000

[rooms.again]
paths = ["/again"]
rate_per_minute = 0
"""


class Scrape:
    """One /metrics reply, parsed: value(name, label=value...) sums the matching samples."""

    def __init__(self, text: str) -> None:
        self.samples = [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        found = [
            v
            for n, ls, v in self.samples
            if n == name and all(ls.get(k) == want for k, want in labels.items())
        ]
        assert found, f"no sample {name} {labels}"
        return sum(found)


# -- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "host", "headers", "admitted"),
    [
        ("127.0.0.1/32,::1/128", "127.0.0.1", {}, True),
        ("127.0.0.1/32,::1/128", "::1", {}, True),
        ("127.0.0.1/32,::1/128", "::ffff:127.0.0.1", {}, True),  # dual-stack socket
        ("127.0.0.1/32,::1/128", "127.0.0.2", {}, False),
        ("127.0.0.1/32,::1/128", "203.0.113.9", {}, False),
        ("127.0.0.1/32,::1/128", None, {}, False),
        ("127.0.0.1/32,::1/128", "testclient", {}, False),
        ("127.0.0.1/32,::1/128", "127.0.0.1", {"x-forwarded-for": "127.0.0.1"}, False),
        ("127.0.0.1/32,::1/128", "127.0.0.1", {"forwarded": "for=127.0.0.1"}, False),
        (" 10.0.0.0/8 , 2001:db8::/32 ", "10.20.30.40", {}, True),
        (" 10.0.0.0/8 , 2001:db8::/32 ", "2001:db8::7", {}, True),
        (" 10.0.0.0/8 , 2001:db8::/32 ", "127.0.0.1", {}, False),
        ("10.1.2.3/24", "10.1.2.200", {}, True),  # host bits are forgiven
        ("", "127.0.0.1", {}, False),  # empty: metrics off
    ],
)
def test_allow_list(spec: str, host: str | None, headers: dict[str, str], admitted: bool) -> None:
    assert AllowList.parse(spec).admits(host, headers) is admitted


def test_allow_list_defaults_to_loopback_and_rejects_nonsense() -> None:
    assert AllowList.from_env({}).admits("127.0.0.1", {})
    assert not AllowList.from_env({}).admits("192.168.1.1", {})
    with pytest.raises(ValueError, match="WAITROOM_METRICS_ALLOW"):
        AllowList.parse("127.0.0.1/32,localhost")


def test_refusal_reasons_follow_the_credential() -> None:
    creds = Credentials(["k" * 40])
    good = creds.issue_ticket(Ticket("line", 3, "abcdefghijkl", 1))
    forged = Credentials(["z" * 40]).issue_ticket(Ticket("line", 3, "abcdefghijkl", 1))
    cases = {
        forged: "tampered",
        good[:-3] + "AAA": "tampered",
        "garbage": "tampered",  # no signature at all
        "x" * 500: "invalid",  # oversized, refused before any HMAC
        # A pass is signed with another salt, so it does not verify as a ticket.
        creds.issue_pass(Pass("line", "abcdefghijkl", 2_000_000_000, "aa")): "tampered",
        creds.issue_ticket(Ticket("line", -1, "abcdefghijkl", 1)): "invalid",  # out of range
    }
    for value, reason in cases.items():
        with pytest.raises(InvalidCredential) as caught:
            creds.read_ticket(value)
        assert refusal_reason(caught.value) == reason, value


def test_metrics_of_two_apps_in_one_process_do_not_clash() -> None:
    first, second = GatewayMetrics(["a"]), GatewayMetrics(["a", "b"])
    first.arrival("a")
    assert Scrape(first.render().decode()).value("waitroom_arrivals_total", room="a") == 1
    assert Scrape(second.render().decode()).value("waitroom_arrivals_total", room="a") == 0


@pytest.mark.anyio
async def test_redis_calls_are_timed_and_failures_counted() -> None:
    metrics = GatewayMetrics()

    async def ok() -> int:
        return 7

    async def broken() -> int:
        raise RedisConnectionError("down")

    assert await metrics.redis("join", ok()) == 7
    with pytest.raises(RedisConnectionError):
        await metrics.redis("join", broken())
    scrape = Scrape(metrics.render().decode())
    assert scrape.value("waitroom_redis_duration_seconds_count", op="join") == 2
    assert scrape.value("waitroom_redis_errors_total", op="join") == 1
    assert scrape.value("waitroom_redis_errors_total", op="tick") == 0


@pytest.mark.anyio
async def test_backend_down_counts_as_a_502_backend_error() -> None:
    metrics = GatewayMetrics(["book"])
    proxy = BackendProxy("http://127.0.0.1:9", connect_timeout=2)  # nothing listens on 9

    async def forward(request: Request) -> Response:
        return await proxy.forward(request, observe=metrics.forwarded("book"))

    app = Starlette(routes=[Route("/book", forward)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
        assert (await c.get("/book")).status_code == 502
    await proxy.aclose()
    scrape = Scrape(metrics.render().decode())
    assert scrape.value("waitroom_backend_errors_total", room="book", code="502") == 1
    assert scrape.value("waitroom_backend_errors_total", room="book", code="504") == 0
    count = "waitroom_proxied_request_duration_seconds_count"
    assert scrape.value(count, room="book", status_class="5xx") == 1
    assert scrape.value(count, room="book", status_class="2xx") == 0


def test_grafana_dashboard_uses_only_metrics_the_gateway_defines() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    defined = {name for name, _, _ in Scrape(GatewayMetrics(["r"]).render().decode()).samples}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"].lower() for p in panels)
    for topic in [
        "people waiting",
        "arrivals",
        "admissions",
        "admitted active",
        "no-shows",
        "abandon",
        "latency",
        "backend error",
        "refused",
        "redis latency",
        "redis errors",
    ]:
        assert topic in titles, topic
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert len(exprs) >= len(panels)
    exprs.append(variables["room"]["definition"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    for expr in exprs:
        used = set(re.findall(r"\bwaitroom_[a-z_]+", expr))
        assert used, expr
        assert used <= defined, (expr, used - defined)


def test_grafana_error_rate_is_the_share_of_5xx_replies() -> None:
    # As on the ops dashboard: every 5xx the visitor got (the site's own 500s and 503s as
    # well as the gateway's 502/504), over all proxied requests of the room.
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panel = next(p for p in dashboard["panels"] if p["title"] == "Backend error rate")
    (expr,) = (t["expr"] for t in panel["targets"])
    errors, total = expr.split(" / ")
    count = "waitroom_proxied_request_duration_seconds_count"
    assert count in errors and 'status_class="5xx"' in errors
    assert count in total and "status_class" not in total
    assert "waitroom_backend_errors_total" not in expr


# -- a real gateway with two workers ------------------------------------------------------


@dataclass
class Stack:
    url: str
    secret: str
    prefix: str
    redis_url: str
    metrics_dir: Path


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    metrics_dir = tmp_path_factory.mktemp("prometheus")
    site_env = {"BACKEND_BASE_LATENCY_MS": "2", "BACKEND_LATENCY_PER_REQUEST_MS": "0"}
    with gateway_stack(
        redis_url,
        tmp_path_factory.mktemp("metrics"),
        ROOMS,
        workers=2,
        site_env=site_env,
        gateway_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    ) as s:
        yield Stack(s.url, s.secret, s.prefix, s.redis_url, metrics_dir)


@pytest.fixture
def store(stack_store: LineStore) -> LineStore:
    return stack_store


def client(stack: Stack, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url, timeout=15, **kwargs)  # type: ignore[arg-type]


async def scrape(stack: Stack) -> Scrape:
    async with client(stack) as c:  # a new connection: either worker may answer
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    return Scrape(r.text)


def arrivals_by_worker(stack: Stack, room: str) -> dict[int, float]:
    """Each worker's own arrivals, read from its file: proof that both did some of the work."""
    counts: dict[int, float] = {}
    for path in stack.metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for metric in MultiProcessCollector.merge([str(path)]):
            for s in metric.samples:
                if s.name == "waitroom_arrivals_total" and s.labels.get("room") == room:
                    counts[pid] = counts.get(pid, 0) + s.value
    return counts


async def join_until_both_workers_served(stack: Stack, room: str, pids: set[int]) -> int:
    """Join `room` in concurrent batches of new connections until every worker in `pids`
    has served some; returns how many joined."""
    joined = 0
    for _ in range(20):
        clients = [client(stack) for _ in range(10)]
        try:
            replies = await asyncio.gather(
                *(c.post(f"/_waitroom/api/rooms/{room}/join") for c in clients)
            )
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
        assert all(r.status_code == 200 and r.json()["state"] == "waiting" for r in replies)
        joined += len(replies)
        served = arrivals_by_worker(stack, room)
        if all(served.get(pid, 0) > 0 for pid in pids):
            return joined
    raise AssertionError(f"joins never reached every worker: {arrivals_by_worker(stack, room)}")


async def worker_pids(stack: Stack) -> set[int]:
    pids: set[int] = set()
    for _ in range(60):
        async with client(stack) as c:
            pids.add((await c.get("/readyz")).json()["worker"])
        if len(pids) == 2:
            break
    return pids


async def until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.anyio
@pytest.mark.slow
async def test_counts_are_exact_whichever_worker_served(stack: Stack, store: LineStore) -> None:
    pids = await worker_pids(stack)
    assert len(pids) == 2
    n = await join_until_both_workers_served(stack, "line", pids)

    # Visitors to a room that admits nobody, each with a pass that must be refused.
    creds = Credentials([stack.secret])
    future = int(time.time()) + 600
    passes = {
        "tampered": [
            Credentials(["x" * 40]).issue_pass(Pass("line", "abcdefghijkl", future, "ff")),
            creds.issue_pass(Pass("line", "abcdefghijkl", future, "aa"))[:-2] + "AA",
        ],
        "expired": [creds.issue_pass(Pass("line", "abcdefghijkl", int(time.time()) - 5, "bb"))],
        "wrong_room": [creds.issue_pass(Pass("open", "abcdefghijkl", future, "cc"))],
        "invalid": ["x" * 500],
    }
    forged = 0
    for values in passes.values():
        for value in values:
            async with client(stack, cookies={"wr_pass_line": value}) as c:
                r = await c.get("/line")
            assert r.status_code == 200 and "You are in the line" in r.text
            forged += 1
    # Bad tickets on the API: refused with a 400, no place given.
    bad_tickets = [
        Credentials(["y" * 40]).issue_ticket(Ticket("line", 1, "abcdefghijkl", 1)),
        creds.issue_ticket(Ticket("open", 1, "abcdefghijkl", 1)),
    ]
    for value in bad_tickets:
        async with client(stack, headers={"X-Waitroom-Ticket": value}) as c:
            r = await c.get("/_waitroom/api/rooms/line/status")
        assert r.status_code == 400

    # Admitted visitors: straight through (empty line, free slots), then on with the pass.
    admitted, more = 3, 2
    for _ in range(admitted):
        async with client(stack, headers={"Accept": "application/json"}) as c:
            first = await c.get("/echo")
            assert first.status_code == 200 and "wr_pass_open" in c.cookies
            for _ in range(more):
                assert (await c.get("/echo")).status_code == 200
            assert (await c.get("/echo/nowhere")).status_code == 404  # the backend's 404
    async with client(stack) as c:  # outside every room
        assert (await c.get("/")).status_code == 200

    waiting = n + forged
    assert (await store.tick("line")).waiting == waiting  # the truth, from Redis
    open_room = await store.tick("open")

    async def gauges_caught_up() -> bool:
        s = await scrape(stack)
        return s.value("waitroom_line_waiting", room="line") == waiting and s.value(
            "waitroom_room_admitted", room="open"
        ) == float(open_room.admitted_total)

    await until(gauges_caught_up)
    for _ in range(8):  # every scrape, from either worker, tells the same story
        s = await scrape(stack)
        # One line, reported by two workers: not doubled.
        assert s.value("waitroom_line_waiting", room="line") == waiting
        assert s.value("waitroom_admission_rate_per_minute", room="open") == 60000
        assert s.value("waitroom_admitted_active", room="open") == admitted
        assert s.value("waitroom_room_admitted", room="open") == admitted
        assert s.value("waitroom_arrivals_total", room="line") == n + forged
        assert s.value("waitroom_arrivals_total", room="open") == admitted
        issued = "waitroom_tokens_issued_total"
        assert s.value(issued, room="line", kind="ticket") == n + forged
        assert s.value(issued, room="line", kind="pass") == 0
        assert s.value(issued, room="open", kind="pass") == admitted
        assert s.value(issued, room="open", kind="ticket") == 0
        refused = "waitroom_tokens_refused_total"
        for reason, values in passes.items():
            assert s.value(refused, room="line", kind="pass", reason=reason) == len(values)
        assert s.value(refused, room="line", kind="ticket", reason="tampered") == 1
        assert s.value(refused, room="line", kind="ticket", reason="wrong_room") == 1
        assert s.value(refused, room="line", kind="ticket", reason="invalid") == 0
        assert s.value(refused) == forged + len(bad_tickets)
        proxied = "waitroom_proxied_request_duration_seconds_count"
        assert s.value(proxied, room="open", status_class="2xx") == admitted * (1 + more)
        assert s.value(proxied, room="open", status_class="4xx") == admitted
        assert s.value(proxied, room="open", status_class="5xx") == 0
        assert s.value(proxied, room="_unprotected", status_class="2xx") == 1
        assert s.value("waitroom_backend_errors_total") == 0
        redis_calls = "waitroom_redis_duration_seconds_count"
        assert s.value(redis_calls, op="join") == n + forged + admitted
        assert s.value(redis_calls, op="claim") == admitted
        assert s.value(redis_calls, op="tick") > 0
        assert s.value("waitroom_redis_errors_total") == 0
    per_worker = arrivals_by_worker(stack, "line")
    assert set(per_worker) == pids and sum(per_worker.values()) == n + forged
    print(f"\narrivals per worker {per_worker}, waiting {waiting}, forged passes {forged}")


@pytest.mark.anyio
@pytest.mark.slow
async def test_metrics_are_not_for_the_public(stack: Stack) -> None:
    async with client(stack) as c:
        proxied = await c.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        spoofed = await c.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
        posted = await c.post("/metrics")
        ours = await c.get("/metrics")
    assert proxied.status_code == 404 and spoofed.status_code == 404
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
    # The gateway's own metrics, never the backend's /metrics behind it.
    assert "waitroom_arrivals_total" in ours.text and "booking_" not in ours.text


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_killed_worker_neither_loses_nor_doubles_counts(
    stack: Stack, store: LineStore
) -> None:
    old = await worker_pids(stack)
    assert len(old) == 2
    before = await join_until_both_workers_served(stack, "again", old)
    await until(lambda: _waiting_is(stack, "again", before))

    victim = min(old)
    os.kill(victim, signal.SIGKILL)  # a child of the uvicorn we started; it restarts it

    async def replaced() -> bool:
        try:
            pids = await worker_pids(stack)
        except httpx.TransportError:
            return False
        return len(pids) == 2 and victim not in pids

    await until(replaced, within=20)
    new = await worker_pids(stack)
    s = await scrape(stack)
    # The dead worker's counts stay in its file: not lost. The new worker counts from zero
    # in its own file: not doubled.
    assert s.value("waitroom_arrivals_total", room="again") == before
    after = await join_until_both_workers_served(stack, "again", new)
    s = await scrape(stack)
    assert s.value("waitroom_arrivals_total", room="again") == before + after
    assert (await store.tick("again")).waiting == before + after
    # The dead worker's last gauge values are older than any live worker's tick.
    await until(lambda: _waiting_is(stack, "again", before + after))
    by_worker = arrivals_by_worker(stack, "again")
    assert victim in by_worker and sum(by_worker.values()) == before + after
    print(f"\nkilled {victim}; arrivals per worker file {by_worker}")


async def _waiting_is(stack: Stack, room: str, expected: int) -> bool:
    return (await scrape(stack)).value("waitroom_line_waiting", room=room) == expected


def test_alert_rules_use_only_metrics_the_gateway_defines() -> None:
    import yaml

    rules = yaml.safe_load((REPO_ROOT / "docs" / "prometheus" / "alerts.yml").read_text())
    defined = {name for name, _, _ in Scrape(GatewayMetrics(["r"]).render().decode()).samples}
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in alerts}
    assert {"BookingSiteFailing", "LineUnreachable", "RoomFailedOpen", "LineStalled"} <= names
    for rule in alerts:
        used = set(re.findall(r"\bwaitroom_[a-z_]+", rule["expr"]))
        assert used and used <= defined, (rule["alert"], used - defined)
