"""The raw status path (gateway/fast_status.py) against a real Redis: it answers exactly what
the application would, and leaves to the application everything that is not a plain check by
someone waiting. The application is wrapped so a test can see which of the two answered."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from redis.asyncio import Redis
from starlette.datastructures import Secret
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app
from gateway.fast_status import FastStatus
from gateway.i18n import Formatter, load_catalogs
from gateway.settings import REPO_ROOT, Settings
from queue_core.rooms import parse_rooms
from queue_core.store import LineStore

pytestmark = pytest.mark.anyio
SECRET = "a-test-secret-for-the-raw-status-path-000"
STATUS = "/_waitroom/api/rooms/{room}/status"
JOIN = "/_waitroom/api/rooms/{room}/join"
# A query the raw path does not know: the application answers it, ignoring the extra field.
VIA_APP = {"via": "app"}
# What differs between two answers a moment apart: the suggested interval has jitter.
JITTERED = {"poll_after_seconds"}


@dataclass
class Counting:
    """The application, counting the requests that reach it."""

    app: ASGIApp
    paths: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@dataclass
class Gateway:
    app: ASGIApp
    fast: FastStatus
    inner: Counting
    store: LineStore

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://gw", **kwargs)  # type: ignore[arg-type]

    async def join(self, room: str, **kwargs: object) -> httpx.AsyncClient:
        c = self.client(**kwargs)
        r = await c.post(JOIN.format(room=room))
        assert r.status_code == 200, r.text
        return c


@pytest.fixture
async def gateway(redis_client: Redis, key_prefix: str, redis_url: str) -> AsyncIterator[Gateway]:
    rooms = parse_rooms(
        {
            "rooms": {
                "line": {"paths": ["/line"], "rate_per_minute": 0},
                "other": {"paths": ["/other"], "rate_per_minute": 0},
            }
        },
        {},
    )
    settings = Settings(
        secrets=(Secret(SECRET),),
        redis_url=redis_url,
        backend_url="http://127.0.0.1:9",
        rooms=rooms,
        key_prefix=key_prefix,
    )
    app = create_app(settings, redis=redis_client)
    fast = app.app
    assert isinstance(fast, FastStatus)
    starlette = fast.app
    inner = fast.app = Counting(starlette)
    async with starlette.router.lifespan_context(starlette):  # type: ignore[attr-defined]
        yield Gateway(app, fast, inner, fast.gate.store)


async def test_a_waiting_visitors_check_is_answered_as_the_application_would(
    gateway: Gateway,
) -> None:
    visitors = [await gateway.join("line") for _ in range(5)]
    await gateway.store.tick("line")
    for place, c in enumerate(visitors, start=1):
        before = len(gateway.inner.paths)
        fast = await c.get(STATUS.format(room="line"))
        assert len(gateway.inner.paths) == before, "the application answered a plain check"
        slow = await c.get(STATUS.format(room="line"), params=VIA_APP)
        assert len(gateway.inner.paths) == before + 1
        assert fast.status_code == slow.status_code == 200
        assert fast.headers["content-type"] == slow.headers["content-type"]
        assert fast.headers["cache-control"] == slow.headers["cache-control"] == "no-store"
        a, b = fast.json(), slow.json()
        assert a["position"] == place and a["state"] == "waiting"
        assert {k: v for k, v in a.items() if k not in JITTERED} == {
            k: v for k, v in b.items() if k not in JITTERED
        }
    for c in visitors:
        await c.aclose()


async def test_the_ticket_header_works_like_the_cookie(gateway: Gateway) -> None:
    async with gateway.client() as c:
        ticket = (await c.post(JOIN.format(room="line"))).json()["ticket"]
    async with gateway.client() as bare:
        before = len(gateway.inner.paths)
        r = await bare.get(STATUS.format(room="line"), headers={"X-Waitroom-Ticket": ticket})
        assert r.status_code == 200 and r.json()["position"] == 1
        assert len(gateway.inner.paths) == before


async def test_everything_but_a_plain_check_is_left_to_the_application(
    gateway: Gateway,
) -> None:
    c = await gateway.join("line")
    ticket = c.cookies["wr_ticket_line"]
    tampered = ticket[:-3] + ("AAA" if not ticket.endswith("AAA") else "BBB")
    cases: list[tuple[str, dict[str, str], int]] = [
        (STATUS.format(room="line"), {}, 401),  # no ticket
        (STATUS.format(room="line"), {"cookie": f"wr_ticket_line={tampered}"}, 400),
        (STATUS.format(room="other"), {"cookie": f"wr_ticket_other={ticket}"}, 400),
        (STATUS.format(room="nowhere"), {"cookie": f"wr_ticket_line={ticket}"}, 404),
    ]
    async with gateway.client() as bare:
        for path, headers, expected in cases:
            before = len(gateway.inner.paths)
            r = await bare.get(path, headers=headers)
            assert r.status_code == expected, (path, headers, r.text)
            assert len(gateway.inner.paths) == before + 1
    # Their turn: the application collects the pass (a Redis call) and sets its cookie.
    await gateway.store.configure("line", rate_per_minute=60_000)
    await gateway.store.tick("line")
    await gateway.fast.gate.keeper.refresh("line")
    before = len(gateway.inner.paths)
    r = await c.get(STATUS.format(room="line"))
    assert r.json()["state"] == "admitted" and "wr_pass_line" in r.cookies
    assert len(gateway.inner.paths) == before + 1
    await c.aclose()


async def test_the_page_script_gets_the_whole_section_then_only_new_figures(
    gateway: Gateway,
) -> None:
    first = await gateway.join("line")
    c = await gateway.join("line", headers={"Accept-Language": "cs,en;q=0.5"})
    await gateway.store.tick("line")
    await gateway.fast.gate.keeper.refresh("line")
    query = {"display": "1", "path": "/line"}

    whole = (await c.get(STATUS.format(room="line"), params=query)).json()["display"]
    assert '<dd id="wr-position">2</dd>' in whole["html"]
    assert whole["layout"] and "fill" not in whole

    before = len(gateway.inner.paths)
    shown = query | {"layout": whole["layout"]}
    figures = (await c.get(STATUS.format(room="line"), params=shown)).json()["display"]
    assert len(gateway.inner.paths) == before, "the application rendered an unchanged section"
    assert "html" not in figures and figures["layout"] == whole["layout"]
    cs = load_catalogs(REPO_ROOT / "templates" / "locale")["cs"]
    assert figures["fill"]["wr-position"] == "2"
    assert figures["fill"]["wr-ahead"] == "1"
    assert figures["fill"]["wr-estimate"] == cs.gettext("not known yet")
    assert figures["title"].startswith(cs.gettext("Place %(position)s in line") % {"position": "2"})
    # The same words the whole section carries.
    for element, text in figures["fill"].items():
        assert re.search(f'id="{element}">{re.escape(text)}<', whole["html"]), element

    # Pausing changes the section's shape: it is written out whole again, by the application.
    await gateway.store.configure("line", paused=True)
    await gateway.fast.gate.keeper.refresh("line")
    paused = (await c.get(STATUS.format(room="line"), params=shown)).json()["display"]
    assert paused["layout"] != whole["layout"] and "html" in paused
    assert cs.gettext("The line is paused") in paused["html"]
    await c.aclose()
    await first.aclose()


@pytest.mark.parametrize("lang", ["en", "cs", "fr", "nl", "de"])
def test_whole_numbers_are_written_as_babel_writes_them(lang: str) -> None:
    from babel.numbers import format_decimal

    fmt = Formatter(lang, lambda s, p, n: s if n == 1 else p)
    for n in (0, 1, 9, 10, 999, 1000, 1001, 20_000, 140_000, 999_999, 1_000_000, 44_123_456):
        assert fmt.number(n) == format_decimal(n, locale=lang)


async def test_oversized_headers_are_refused_before_anything_reads_them(
    gateway: Gateway,
) -> None:
    async with gateway.client() as c:
        before = len(gateway.inner.paths)
        for headers in (
            {"cookie": "wr_ticket_line=" + "A" * 9_000},  # one header too large
            {f"x-pad-{i}": "B" * 4_000 for i in range(5)},  # all of them together
        ):
            r = await c.get(STATUS.format(room="line"), headers=headers)
            assert r.status_code == 431
            assert r.json()["error"] == "headers_too_large"
        assert len(gateway.inner.paths) == before
        # A real browser's headers are far below the limits.
        ok = await c.get(STATUS.format(room="line"), headers={"cookie": "a=" + "C" * 3_000})
        assert ok.status_code == 401
