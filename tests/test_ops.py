"""The ops control plane against a running gateway: login, CSRF, every control taking effect
on a live room (through the API and through the form), bad input changing nothing, the audit
log, and the autopilot steering by a booking site that slows down and recovers."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis

from gateway.ops.auth import hash_password
from helpers import Stack, gateway_stack
from queue_core.store import LineStore

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
PASSWORD = "correct horse battery staple"
ROOMS = """
[rooms.main]
title = "Vaccination booking"
paths = ["/book"]
rate_per_minute = 0

[rooms.pilot]
paths = ["/pilot"]
rate_per_minute = 60

[rooms.lanes]
paths = ["/lanes"]
rate_per_minute = 0
lanes = { over80 = 0.5 }
"""


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    gateway_env = {
        "WAITROOM_OPS_USERS": f"alice:{hash_password(PASSWORD)}",
        "WAITROOM_AUTOPILOT_SECONDS": "1",
    }
    with gateway_stack(
        redis_url,
        tmp_path_factory.mktemp("ops"),
        ROOMS,
        gateway_env=gateway_env,
        site="slow_site:app",
        site_factory=False,
        site_args=["--app-dir", "tests"],
    ) as s:
        yield s


@pytest.fixture
def store(stack_store: LineStore) -> LineStore:
    return stack_store


@contextlib.asynccontextmanager
async def logged_in(stack: Stack) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as c:
        r = await c.post("/_waitroom/ops/login", json={"user": "alice", "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield c, r.json()["csrf"]


async def test_ops_pages_need_a_login(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as c:
        r = await c.get("/_waitroom/ops/")
        assert r.status_code == 303 and r.headers["location"] == "/_waitroom/ops/login"
        assert (await c.get("/_waitroom/ops/api/rooms")).status_code == 401
        r = await c.post("/_waitroom/ops/api/rooms/main/settings", json={"paused": True})
        assert r.status_code == 401
    forged = {"wr_ops": "eyJ1IjoiYWxpY2UiLCJjIjoieCJ9.forged.sig"}
    async with httpx.AsyncClient(base_url=stack.url, cookies=forged) as c:
        assert (await c.get("/_waitroom/ops/api/rooms")).status_code == 401


async def test_login_sets_a_strict_session_and_the_dashboard_shows_rooms(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as c:
        r = await c.post("/_waitroom/ops/login", data={"user": "alice", "password": PASSWORD})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Path=/_waitroom/ops" in cookie
        page = await c.get("/_waitroom/ops/")
        assert page.status_code == 200
        assert "Vaccination booking" in page.text and 'name="csrf"' in page.text
        assert page.headers["x-frame-options"] == "DENY"


async def test_failed_logins_are_rate_limited(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as c:
        for _ in range(5):
            r = await c.post("/_waitroom/ops/login", json={"user": "mallory", "password": "x"})
            assert r.status_code == 401
        r = await c.post("/_waitroom/ops/login", json={"user": "mallory", "password": "y"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        # The same address is now locked out even with alice's right password.
        r = await c.post("/_waitroom/ops/login", json={"user": "alice", "password": PASSWORD})
        assert r.status_code == 429
    client = redis.Redis.from_url(stack.redis_url)
    for key in client.scan_iter(match=f"{stack.prefix}:ops:login:*"):
        client.delete(key)  # let the other tests log in again
    client.close()


async def test_changes_need_the_csrf_token(stack: Stack, store: LineStore) -> None:
    async with logged_in(stack) as (c, _):
        before = await store.state("main")
        r = await c.post("/_waitroom/ops/api/rooms/main/settings", json={"paused": True})
        assert r.status_code == 403
        r = await c.post(
            "/_waitroom/ops/api/rooms/main/settings",
            json={"paused": True},
            headers={"X-CSRF-Token": "wrong"},
        )
        assert r.status_code == 403
        r = await c.post("/_waitroom/ops/rooms/main", data={"paused": "1"})
        assert r.status_code == 403
        assert (await store.state("main")).get("paused") == before.get("paused")


async def test_each_control_takes_effect_on_the_running_room(
    stack: Stack, store: LineStore
) -> None:
    settings = "/_waitroom/ops/api/rooms/main/settings"
    async with logged_in(stack) as (c, csrf), httpx.AsyncClient(base_url=stack.url) as visitor:
        h = {"X-CSRF-Token": csrf}
        first = await visitor.get("/book", headers={"Accept-Language": "cs"})
        assert "Jste ve frontě" in first.text

        r = await c.post(settings, json={"paused": True, "why": "backend deploy"}, headers=h)
        assert r.status_code == 200 and r.json()["settings"]["paused"] is True
        await asyncio.sleep(0.3)
        status = (await visitor.get("/_waitroom/api/rooms/main/status")).json()
        assert status["state"] == "paused"

        banner = {"en": "New dates on Monday", "cs": "Nové termíny v pondělí"}
        r = await c.post(
            settings, json={"paused": False, "sold_out": True, "banner": banner}, headers=h
        )
        assert r.status_code == 200
        await asyncio.sleep(0.3)
        page = await visitor.get("/book", headers={"Accept-Language": "cs"})
        assert "Nové termíny v pondělí" in page.text and "obsazené" in page.text

        r = await c.post(settings, json={"closed": True, "sold_out": False}, headers=h)
        assert r.status_code == 200
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=stack.url) as newcomer:
            assert "closed" in (await newcomer.get("/book")).text

        opening = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        r = await c.post(settings, json={"closed": False, "opens_at": opening}, headers=h)
        assert r.status_code == 200
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=stack.url) as early:
            assert "The booking opens at" in (await early.get("/book")).text
        await c.post(settings, json={"opens_at": ""}, headers=h)

        # A cap of 1 admitted visitor at a time, then a fast rate: only one gets in.
        r = await c.post(settings, json={"max_active": 1, "rate_per_minute": 6000}, headers=h)
        assert r.json()["rate_set_per_minute"] == 6000
        await asyncio.sleep(1.0)
        figures = (await c.get("/_waitroom/ops/api/rooms/main")).json()
        assert figures["active"] + figures["admitted_unclaimed"] == 1
        assert figures["waiting"] >= 1
        await c.post(settings, json={"max_active": 0}, headers=h)
        await asyncio.sleep(1.0)
        assert (await c.get("/_waitroom/ops/api/rooms/main")).json()["waiting"] == 0


async def test_controls_through_the_form(stack: Stack, store: LineStore) -> None:
    async with logged_in(stack) as (c, _):
        page = await c.get("/_waitroom/ops/")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = await c.post(
            "/_waitroom/ops/rooms/main",
            data={"csrf": csrf, "rate_per_minute": "12.5", "why": "SMS slow"},
        )
        assert r.status_code == 303
        assert float((await store.state("main"))["rate"]) == 12.5
        r = await c.post("/_waitroom/ops/rooms/main", data={"csrf": csrf, "paused": "1"})
        assert r.status_code == 303 and (await store.state("main"))["paused"] == "1"
        r = await c.post("/_waitroom/ops/rooms/main", data={"csrf": csrf, "paused": "0"})
        # A bad value re-shows the dashboard with the error, and changes nothing.
        r = await c.post("/_waitroom/ops/rooms/main", data={"csrf": csrf, "rate_per_minute": "0"})
        assert r.status_code == 400 and "Nothing was changed" in r.text
        assert float((await store.state("main"))["rate"]) == 12.5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rate_per_minute": 0}, "rate_per_minute"),
        ({"rate_per_minute": -5}, "rate_per_minute"),
        ({"rate_per_minute": "fast"}, "rate_per_minute"),
        ({"rate_per_minute": True}, "rate_per_minute"),
        ({"max_active": -1}, "max_active"),
        ({"max_active": 2.5}, "max_active"),
        ({"opens_at": "2021-01-15T08:00:00+01:00"}, "opens_at"),
        ({"opens_at": "tomorrow"}, "opens_at"),
        ({"opens_at": "2099-01-15T08:00:00"}, "opens_at"),
        ({"paused": "maybe"}, "paused"),
        ({"banner": {"tlh": "Qapla'"}}, "banner"),
        ({"autopilot": {"enabled": True, "min_rate": 100, "max_rate": 10}}, "autopilot.min_rate"),
        ({"rate_per_minute": 30, "colour": "red"}, "colour"),
        ({"revoke_passes": False}, "revoke_passes"),
        ({"revoke_passes": "soon"}, "revoke_passes"),
        ({"challenge_bits": 0}, "challenge_bits"),
        ({"challenge_bits": 29}, "challenge_bits"),
        ({"joins_per_ip": -1}, "joins_per_ip"),
        ({"joins_per_subnet": 1.5}, "joins_per_subnet"),
        ({"sessions_per_pass": 1001}, "sessions_per_pass"),
        ({"challenge": "perhaps", "revoke_passes": True}, "challenge"),
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(
    stack: Stack, store: LineStore, body: dict[str, object], field: str
) -> None:
    async with logged_in(stack) as (c, csrf):
        before = await store.state("main")
        r = await c.post(
            "/_waitroom/ops/api/rooms/main/settings", json=body, headers={"X-CSRF-Token": csrf}
        )
        assert r.status_code == 400
        assert field in r.json()["errors"]
        after = await store.state("main")
        for key in ("rate", "paused", "closed", "max_active", "opens_at", "banner", "autopilot"):
            assert after.get(key) == before.get(key)
        assert after.get("epoch") == before.get("epoch")  # nothing revoked either


async def test_abuse_controls_through_the_form_and_the_audit_log(
    stack: Stack, store: LineStore
) -> None:
    async with logged_in(stack) as (c, _):
        page = await c.get("/_waitroom/ops/")
        assert "Revoke every pass" in page.text and "Proof of work before joining" in page.text
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        limits = {
            "csrf": csrf,
            "challenge": "1",
            "challenge_bits": "18",
            "joins_per_ip": "40",
            "joins_per_subnet": "0",
            "sessions_per_pass": "3",
        }
        assert (await c.post("/_waitroom/ops/rooms/main", data=limits)).status_code == 303
        snap = await store.tick("main")
        assert (snap.challenge_bits, snap.sessions_per_pass) == (18, 3)
        state = await store.state("main")
        assert (state["joins_per_ip"], state["joins_per_subnet"]) == ("40", "0")
        epoch = snap.epoch
        revoke = {"csrf": csrf, "revoke_passes": "1", "why": "pass list leaked"}
        assert (await c.post("/_waitroom/ops/rooms/main", data=revoke)).status_code == 303
        assert (await store.tick("main")).epoch == epoch + 1
        entries = (await c.get("/_waitroom/ops/api/audit?room=main")).json()["entries"]
        settings = {e["setting"]: e for e in entries}
        assert settings["revoke_passes"]["new"] == str(epoch + 1)
        assert settings["revoke_passes"]["why"] == "pass list leaked"
        assert settings["challenge_bits"]["new"] == "18"
        await store.configure("main", challenge=False)


async def test_audit_log_records_who_what_and_why_and_exports(stack: Stack) -> None:
    async with logged_in(stack) as (c, csrf):
        await c.post(
            "/_waitroom/ops/api/rooms/main/settings",
            json={"rate_per_minute": 44, "why": "SMS raised to 200/s"},
            headers={"X-CSRF-Token": csrf},
        )
        entries = (await c.get("/_waitroom/ops/api/audit?room=main")).json()["entries"]
        latest = entries[0]
        assert (latest["who"], latest["room"], latest["setting"]) == (
            "alice",
            "main",
            "rate_per_minute",
        )
        assert latest["new"] == "44.0" and latest["why"] == "SMS raised to 200/s"
        exported = (await c.get("/_waitroom/ops/audit.csv")).text
        rows = list(csv.DictReader(io.StringIO(exported)))
        assert any(row["why"] == "SMS raised to 200/s" for row in rows)
        assert "SMS raised to 200/s" in (await c.get("/_waitroom/ops/")).text


async def test_admin_api_is_documented(stack: Stack) -> None:
    async with logged_in(stack) as (c, _):
        spec = (await c.get("/_waitroom/ops/openapi.json")).json()
    assert "/_waitroom/ops/api/rooms/{room}/settings" in spec["paths"]
    assert "/_waitroom/ops/api/audit" in spec["paths"]


async def test_autopilot_slows_down_for_a_struggling_site_and_recovers(
    stack: Stack, store: LineStore
) -> None:
    pilot = {
        "enabled": True,
        "target_p95_ms": 1000,  # far from a healthy site, even on a busy machine
        "max_error_rate": 0.5,
        "min_rate": 10,
        "max_rate": 600,
    }
    stop = asyncio.Event()

    async def admitted_visitor() -> None:
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as v:
            while not stop.is_set():
                await v.get("/pilot")  # joins, is admitted, then uses the site
                await asyncio.sleep(0.05)

    async with logged_in(stack) as (c, csrf), httpx.AsyncClient() as site:
        h = {"X-CSRF-Token": csrf}
        await c.post(
            "/_waitroom/ops/api/rooms/pilot/settings",
            json={"rate_per_minute": 300, "autopilot": pilot},
            headers=h,
        )
        users = [asyncio.create_task(admitted_visitor()) for _ in range(4)]
        await asyncio.sleep(2)  # they are through and using the site
        # Then a long line behind them, so the autopilot has a reason to grow when it can.
        sem = asyncio.Semaphore(50)

        async def join(i: int) -> None:
            async with sem:
                await store.join("pilot", f"w{i:011d}")

        await asyncio.gather(*(join(i) for i in range(3000)))
        try:
            before = float((await store.state("pilot"))["rate"])
            await site.post(f"{stack.backend}/_delay?ms=2500")
            deadline = time.monotonic() + 20
            while float((await store.state("pilot"))["rate"]) >= before:
                assert time.monotonic() < deadline, "autopilot did not slow down"
                await asyncio.sleep(0.5)
            slowed = float((await store.state("pilot"))["rate"])
            await site.post(f"{stack.backend}/_delay?ms=0")
            deadline = time.monotonic() + 60
            while float((await store.state("pilot"))["rate"]) <= slowed:
                assert time.monotonic() < deadline, "autopilot did not recover"
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(*users)
            await c.post(
                "/_waitroom/ops/api/rooms/pilot/settings",
                json={"autopilot": {"enabled": False}},
                headers=h,
            )
        audit = (await c.get("/_waitroom/ops/api/audit?room=pilot")).json()["entries"]
        reasons = [e["why"] for e in audit if e["who"] == "autopilot"]
        assert any("p95" in r for r in reasons)
        assert any("healthy" in r for r in reasons)


async def test_priority_lane_invitations_through_the_gateway(stack: Stack) -> None:
    async with logged_in(stack) as (c, csrf):
        h = {"X-CSRF-Token": csrf}
        for _ in range(5):  # a line in the main lane
            async with httpx.AsyncClient(base_url=stack.url) as v:
                await v.get("/lanes")
        r = await c.post(
            "/_waitroom/ops/api/rooms/lanes/invitations",
            json={"lane": "over80", "count": 2, "why": "80+ first"},
            headers=h,
        )
        assert r.status_code == 200
        codes, links = r.json()["codes"], r.json()["links"]
        assert len(codes) == 2 and links[0].endswith(codes[0])
        bad = await c.post(
            "/_waitroom/ops/api/rooms/lanes/invitations",
            json={"lane": "vip", "count": 1},
            headers=h,
        )
        assert bad.status_code == 400 and "lane" in bad.json()["errors"]

        async with httpx.AsyncClient(base_url=stack.url, follow_redirects=True) as elder:
            page = await elder.get(links[0])
            assert '<dd id="wr-position">1</dd>' in page.text  # first in the priority lane
            status = (await elder.get("/_waitroom/api/rooms/lanes/status")).json()
            assert (status["state"], status["position"]) == ("waiting", 1)
        async with httpx.AsyncClient(base_url=stack.url) as sharer:
            again = await sharer.post("/_waitroom/rooms/lanes/invite", data={"code": codes[0]})
            assert again.status_code == 409 and "already been used" in again.text
            forged = await sharer.get(
                "/_waitroom/rooms/lanes/invite", params={"code": codes[1][:-1] + "0"}
            )
            assert forged.status_code == 400
        figures = (await c.get("/_waitroom/ops/api/rooms/lanes")).json()
        assert figures["lanes"]["over80"]["waiting"] == 1
        assert figures["lanes"]["main"]["waiting"] == 5
        audit = (await c.get("/_waitroom/ops/api/audit?room=lanes")).json()["entries"]
        assert audit[0]["setting"] == "invitations" and audit[0]["why"] == "80+ first"
