"""The ops control plane against a running gateway: login, CSRF, every control taking effect
on a live room (through the API and through the form), bad input changing nothing, the audit
log, and the autopilot steering by a booking site that slows down and recovers."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from gateway.ops.audit import AuditLog
from gateway.ops.auth import OpsAuth, hash_password
from gateway.proxy_stats import window_of
from helpers import Stack, gateway_stack
from queue_core.keys import audit_key
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

[rooms.quiet]
paths = ["/quiet"]
rate_per_minute = 0

[rooms.steer]
paths = ["/steer"]
rate_per_minute = 0
lanes = { over80 = 0.5 }

[rooms.forms]
paths = ["/forms"]
rate_per_minute = 0

[rooms.resume]
paths = ["/resume"]
rate_per_minute = 600
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
        # A person at a form gets a page saying what happened, not a JSON error.
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
        assert "Nothing was changed" in r.text and "Reload the dashboard" in r.text
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


async def test_an_expired_session_asks_to_log_in_again_and_changes_nothing(
    stack: Stack, store: LineStore
) -> None:
    # A session signed nine hours ago with the gateway's own secret: genuine, but over 8 h old.
    nine_hours_ago = OpsAuth({"alice": ""}, [stack.secret], clock=lambda: time.time() - 9 * 3600)
    old = {"wr_ops": nine_hours_ago.issue("alice")}
    csrf = "does-not-matter"
    before = await store.state("quiet")
    async with httpx.AsyncClient(base_url=stack.url, cookies=old) as c:
        r = await c.get("/_waitroom/ops/api/rooms")
        assert (r.status_code, r.json()["error"]) == (401, "session_expired")
        r = await c.post(
            "/_waitroom/ops/api/rooms/quiet/settings",
            json={"closed": True},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status_code == 401
        r = await c.post("/_waitroom/ops/rooms/quiet", data={"csrf": csrf, "closed": "1"})
        assert r.status_code == 303
        assert r.headers["location"] == "/_waitroom/ops/login?expired=1"
        login = await c.get(r.headers["location"])
        assert login.status_code == 200
        assert "Your session has expired, so nothing was changed" in login.text
    assert (await store.state("quiet")).get("closed") == before.get("closed")


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 15) -> None:
    """Until `check()` holds: the gateway's view of a room follows Redis within a tick."""
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"{what}: the change did not show"
        await asyncio.sleep(0.05)


def form_cases() -> list[tuple[str, dict[str, str], str]]:
    opening = (datetime.now(UTC) + timedelta(hours=2)).isoformat(timespec="minutes")
    pilot = {
        "autopilot.target_p95_ms": "900",
        "autopilot.max_error_rate": "0.05",
        "autopilot.min_rate": "2",
        "autopilot.max_rate": "100",
    }
    return [
        ("rate", {"rate_per_minute": "12.5"}, "rate_per_minute"),
        ("active limit", {"max_active": "3"}, "max_active"),
        ("pause", {"paused": "1"}, "paused"),
        ("resume", {"paused": "0"}, "paused"),
        ("close", {"closed": "1"}, "closed"),
        ("open", {"closed": "0"}, "closed"),
        ("sold out", {"sold_out": "1"}, "sold_out"),
        ("not sold out", {"sold_out": "0"}, "sold_out"),
        ("opening", {"opens_at": opening}, "opens_at_us"),
        ("no opening", {"opens_at": ""}, "opens_at_us"),
        ("banner", {"banner_en": "New dates on Monday", "banner_cs": "Nové termíny"}, "banner"),
        ("no banner", {"banner_en": "", "banner_cs": ""}, "banner"),  # emptied fields clear it
        ("autopilot on", {"autopilot.enabled": "1", **pilot}, "autopilot"),
        ("autopilot off", pilot, "autopilot"),  # an unticked box sends nothing
    ]


async def test_every_control_works_through_the_form(stack: Stack, store: LineStore) -> None:
    """Each form of the dashboard, as ops use it, and what a visitor or ops then see."""
    room, status_url = "forms", "/_waitroom/api/rooms/forms/status"
    # The state each step changes away from; the autopilot only ever runs on a paused room.
    await store.configure(room, paused=True, max_active=0, banner={}, autopilot={})
    await store.configure(room, paused=False)
    async with (
        logged_in(stack) as (c, _),
        httpx.AsyncClient(base_url=stack.url) as waiting,
    ):
        page = await c.get("/_waitroom/ops/")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        await waiting.get("/forms")  # rate 0: this visitor waits throughout

        async def status() -> dict[str, Any]:
            body: dict[str, Any] = (await waiting.get(status_url)).json()
            return body

        async def newcomer_sees(text: str) -> bool:
            async with httpx.AsyncClient(base_url=stack.url) as newcomer:
                return text in (await newcomer.get("/forms")).text

        async def figures() -> dict[str, Any]:
            body: dict[str, Any] = (await c.get(f"/_waitroom/ops/api/rooms/{room}")).json()
            return body

        async def shows(name: str) -> bool:
            f = await figures()
            st = await status()
            match name:
                case "rate":
                    return f["rate_set_per_minute"] == 12.5
                case "active limit":
                    return f["settings"]["max_active"] == 3
                case "pause":
                    return bool(st["state"] == "paused")
                case "resume":
                    return bool(st["state"] == "waiting")
                case "close":
                    return await newcomer_sees("This waiting room is closed")
                case "open":
                    return await newcomer_sees("You are in the line")
                case "sold out":
                    page = (await waiting.get("/forms")).text
                    return bool(st["sold_out"]) and "All dates are booked" in page
                case "not sold out":
                    return st["sold_out"] is False
                case "opening":
                    return await newcomer_sees("The booking opens at")
                case "no opening":  # clearing a pending opening opens the room now
                    return await newcomer_sees("You are in the line")
                case "banner":
                    en = (await waiting.get("/forms")).text
                    cs = (await waiting.get("/forms", headers={"Accept-Language": "cs"})).text
                    return "New dates on Monday" in en and "Nové termíny" in cs
                case "no banner":
                    return "New dates on Monday" not in (await waiting.get("/forms")).text
                case "autopilot on":
                    return (
                        f["settings"]["autopilot"]
                        == {
                            "enabled": True,
                            "target_p95_ms": 900,
                            "max_error_rate": 0.05,
                            "min_rate": 2,
                            "max_rate": 100,
                        }
                        and "autopilot</span>" in (await c.get("/_waitroom/ops/")).text
                    )
                case "autopilot off":
                    return f["settings"]["autopilot"]["enabled"] is False
            raise AssertionError(name)

        try:
            for name, form, setting in form_cases():
                if name == "autopilot on":
                    await store.configure(room, paused=True)
                r = await c.post(f"/_waitroom/ops/rooms/{room}", data={"csrf": csrf, **form})
                assert r.status_code == 303, (name, r.text)
                assert r.headers["location"] == f"/_waitroom/ops/#room-{room}"
                await eventually(lambda name=name: shows(name), name)  # type: ignore[misc]
                entry = (await c.get(f"/_waitroom/ops/api/audit?room={room}&limit=1")).json()
                assert (entry["entries"][0]["who"], entry["entries"][0]["setting"]) == (
                    "alice",
                    setting,
                ), name
                if name == "rate":
                    await store.configure(room, rate_per_minute=0)  # keep the visitor waiting
        finally:
            await store.configure(
                room, rate_per_minute=0, paused=False, autopilot={}, banner={}, max_active=0
            )


async def test_admission_starts_again_after_a_resume(stack: Stack) -> None:
    status_url = "/_waitroom/api/rooms/resume/status"
    async with (
        logged_in(stack) as (c, csrf),
        httpx.AsyncClient(base_url=stack.url) as visitor,
    ):
        form = "/_waitroom/ops/rooms/resume"
        assert (await c.post(form, data={"csrf": csrf, "paused": "1"})).status_code == 303
        await asyncio.sleep(0.2)
        await visitor.get("/resume")  # 600 a minute, but paused: they wait
        await asyncio.sleep(1.0)  # ten slots' time
        assert (await visitor.get(status_url)).json()["state"] == "paused"
        assert (await c.post(form, data={"csrf": csrf, "paused": "0"})).status_code == 303
        deadline = time.monotonic() + 5
        while (state := (await visitor.get(status_url)).json()["state"]) != "admitted":
            assert state == "waiting" or state == "paused", state
            assert time.monotonic() < deadline, "nobody was admitted after the resume"
            await asyncio.sleep(0.1)
        assert (await visitor.get("/resume")).text == "booking page"  # through to the site


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


async def test_a_partial_autopilot_update_keeps_the_other_settings(stack: Stack) -> None:
    settings = "/_waitroom/ops/api/rooms/quiet/settings"
    pilot = {
        "enabled": True,
        "target_p95_ms": 700,
        "max_error_rate": 0.1,
        "min_rate": 5,
        "max_rate": 250,
    }
    async with logged_in(stack) as (c, csrf):
        h = {"X-CSRF-Token": csrf}
        # Paused, so the running autopilot leaves this room's rate alone meanwhile.
        r = await c.post(settings, json={"paused": True, "autopilot": pilot}, headers=h)
        assert r.status_code == 200
        r = await c.post(settings, json={"autopilot": {"max_rate": 300}}, headers=h)
        assert r.status_code == 200
        assert r.json()["settings"]["autopilot"] == {**pilot, "max_rate": 300}
        r = await c.post(settings, json={"autopilot": {"min_rate": 400}}, headers=h)
        assert r.status_code == 400 and "autopilot.min_rate" in r.json()["errors"]
        r = await c.post(
            settings, json={"paused": False, "autopilot": {"enabled": False}}, headers=h
        )
        assert r.json()["settings"]["autopilot"] == {**pilot, "max_rate": 300, "enabled": False}


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


async def test_audit_export_is_complete_and_quotes_only_formulas(
    stack: Stack, store: LineStore
) -> None:
    # More entries than one read of the stream returns (and than the old 10,000 cut-off).
    audit = AuditLog(store.redis, audit_key(stack.prefix))
    await audit.record(
        "bulk", "quiet", {f"s{i}": ("", str(i)) for i in range(10_500)}, why="bulk import"
    )
    await audit.record("mallory", "quiet", {"banner": ("", "=HYPERLINK(1)")})
    async with logged_in(stack) as (c, _):
        exported = await c.get("/_waitroom/ops/audit.csv?room=quiet")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    bulk = [row for row in rows if row["who"] == "bulk"]
    assert sorted(int(row["new"]) for row in bulk) == list(range(10_500))
    assert all(row["old"] == "" for row in bulk)  # empty stays empty, not "'"
    formula = next(row for row in rows if row["who"] == "mallory")
    assert (formula["new"], formula["old"], formula["why"]) == ("'=HYPERLINK(1)", "", "")
    assert {row["room"] for row in rows} == {"quiet"}


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


async def test_requests_slower_than_the_top_bucket_keep_the_figures_flowing(
    stack: Stack, store: LineStore
) -> None:
    # Two of twenty proxied requests took over 30 s (the top latency bucket): p95 is "> 30 s",
    # and the live JSON (which refuses infinity) still answers, with and without the charts.
    window = window_of(time.time())
    for w in (window - 1, window):
        await store.record_proxy("quiet", w, {"n": 10, "b3": 9, "b12": 1})
    async with logged_in(stack) as (c, _):
        for query in ("", "?series=1"):
            r = await c.get(f"/_waitroom/ops/api/rooms/quiet{query}")
            assert r.status_code == 200, r.text
            backend = r.json()["backend"]
            assert (backend["p95_ms"], backend["p95_over_top"]) == (30000, True)
            assert (backend["p50_ms"], backend["p50_over_top"]) == (50, False)
        assert 30000 in r.json()["series"]["backend"]["p95_ms"]
        page = await c.get("/_waitroom/ops/")
        assert page.status_code == 200 and "&gt; 30000" in page.text


async def test_autopilot_starts_from_the_rate_ops_set_and_sees_every_lane(
    stack: Stack, store: LineStore
) -> None:
    settings = "/_waitroom/ops/api/rooms/steer/settings"
    pilot = {"enabled": True, "target_p95_ms": 1000, "min_rate": 1, "max_rate": 5000}

    async def rate_after_a_step(previous: float) -> float:
        deadline = time.monotonic() + 10
        while (rate := float((await store.state("steer"))["rate"])) == previous:
            assert time.monotonic() < deadline, "the autopilot did not act"
            await asyncio.sleep(0.1)
        return rate

    async with logged_in(stack) as (c, csrf):
        h = {"X-CSRF-Token": csrf}
        await c.post(settings, json={"rate_per_minute": 400, "max_active": 1}, headers=h)
        # One visitor admitted fills the site; the only one waiting is in the priority lane.
        assert (await store.join("steer", "blocker0000")).status == "admitted"
        joined = await store.join("steer", "elder000000", lane="over80")
        assert joined.status == "waiting"
        try:
            r = await c.post(settings, json={"autopilot": pilot}, headers=h)
            assert r.json()["lanes"]["over80"]["waiting"] == 1
            # Someone is waiting (in a lane) and the site is idle: it grows from 400.
            grown = await rate_after_a_step(400)
            assert 400 < grown <= 400 * 1.1 + 1
            # Off, 20 by hand, on again: it carries on from 20, not from where it had got to.
            await c.post(settings, json={"autopilot": {"enabled": False}}, headers=h)
            await c.post(settings, json={"rate_per_minute": 20}, headers=h)
            await c.post(settings, json={"autopilot": {"enabled": True}}, headers=h)
            assert 20 < await rate_after_a_step(20) <= 20 * 1.1 + 1
            # And a rate set by hand while it runs is where it goes on from.
            await c.post(settings, json={"rate_per_minute": 50}, headers=h)
            assert 50 < await rate_after_a_step(50) <= 50 * 1.1 + 1
        finally:
            await c.post(
                settings, json={"autopilot": {"enabled": False}, "paused": True}, headers=h
            )


async def test_dashboard_shows_an_hour_of_the_site_the_lanes_and_the_opening(
    stack: Stack, store: LineStore
) -> None:
    now = time.time()
    # The booking site had trouble 50 minutes ago: 4 of 8 requests failed, slowly.
    await store.record_proxy("forms", window_of(now - 3000), {"n": 8, "e": 4, "b6": 4, "b9": 4})
    await store.record_proxy("forms", window_of(now), {"n": 2, "b3": 2})
    async with logged_in(stack) as (c, csrf):
        backend = (await c.get("/_waitroom/ops/api/rooms/forms?series=1")).json()["series"][
            "backend"
        ]
        assert len(backend["t"]) == 120  # a point per 30 s
        assert backend["t"][-1] - backend["t"][0] >= 3500_000
        assert set(backend) == {"t", "p50_ms", "p95_ms", "error_rate"}
        assert 0.5 in backend["error_rate"] and 5000 in backend["p95_ms"]
        assert 500 in backend["p50_ms"] and backend["error_rate"][-1] == 0

        opening = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
        r = await c.post(
            "/_waitroom/ops/api/rooms/forms/settings",
            json={"opens_at": opening.isoformat()},
            headers={"X-CSRF-Token": csrf},
        )
        try:
            assert r.json()["scheduled_opening"] == opening.isoformat()
            page = (await c.get("/_waitroom/ops/")).text
        finally:
            await c.post(
                "/_waitroom/ops/api/rooms/forms/settings",
                json={"opens_at": ""},
                headers={"X-CSRF-Token": csrf},
            )
        forms = page.split('id="room-forms"', 1)[1].split("</section>", 1)[0]
        assert f'data-k="scheduled_opening" data-none="none">{opening.isoformat()}<' in forms
        lanes = page.split('id="room-lanes"', 1)[1].split("</section>", 1)[0]
        assert "Waiting per lane" in lanes and 'data-k="lanes.over80.waiting"' in lanes
        assert "Waiting per lane" not in forms
        for chart in ("backend.p50_ms,backend.p95_ms", "backend.error_rate"):
            assert f'data-series="{chart}"' in forms
        # Light: nothing fetched from anywhere else.
        assert not re.search(r'(?:src|href)="(?:https?:)?//', page)


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
