"""Attacks on the line and on admission, tried against the real thing: two uvicorn workers,
the booking backend and Redis. Revoked and copied passes, bursts of joins from one address or
one subnet, proofs of work forged or replayed, and a browser joining twice. Each test asserts
what a visitor or the booking site would notice, and docs/RELIABILITY.md quotes the figures.

The gateway trusts X-Forwarded-For from 127.0.0.1 (WAITROOM_TRUSTED_PROXIES), and uvicorn's
own handling of the header is off, so each request can come "from" any address the test
names, and the addresses are read by the gateway's own code.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from gateway.challenge import Challenges, solve
from gateway.invitations import Invitations
from gateway.ops.auth import hash_password
from helpers import Stack, gateway_stack
from queue_core.store import LineStore

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
PASSWORD = "revoke-them-all-0800"
ROOMS = """
[rooms.revoke]
paths = ["/echo"]
rate_per_minute = 60000

[rooms.copies]
paths = ["/book"]
rate_per_minute = 60000
sessions_per_pass = 2

[rooms.limits]
paths = ["/limits"]
rate_per_minute = 0
joins_per_ip = 5
joins_per_subnet = 12

[rooms.work]
paths = ["/work"]
rate_per_minute = 0
challenge = true
challenge_bits = 8

[rooms.places]
paths = ["/places"]
rate_per_minute = 0
lanes = { over80 = 0.5 }
"""


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "WAITROOM_OPS_USERS": f"ops:{hash_password(PASSWORD)}",
        "WAITROOM_TRUSTED_PROXIES": "127.0.0.1/32",
        "FORWARDED_ALLOW_IPS": "",  # uvicorn's own X-Forwarded-For handling: off
    }
    site_env = {"BACKEND_MAX_IN_FLIGHT": "64", "BACKEND_BASE_LATENCY_MS": "1"}
    with gateway_stack(
        redis_url,
        tmp_path_factory.mktemp("abuse"),
        ROOMS,
        workers=2,
        gateway_env=env,
        site_env=site_env,
    ) as s:
        yield s


@pytest.fixture
def store(stack_store: LineStore) -> LineStore:
    return stack_store


def client(stack: Stack, address: str | None = None, **kwargs: object) -> httpx.AsyncClient:
    headers = dict(kwargs.pop("headers", None) or {})  # type: ignore[call-overload]
    if address is not None:
        headers["X-Forwarded-For"] = address
    return httpx.AsyncClient(base_url=stack.url, timeout=15, headers=headers, **kwargs)  # type: ignore[arg-type]


async def backend_served(stack: Stack) -> int:
    async with httpx.AsyncClient() as c:
        served: int = (await c.get(f"{stack.backend}/_backend/health")).json()["served"]
        return served


@pytest.fixture
async def ops(stack: Stack) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as c:
        r = await c.post("/_waitroom/ops/login", json={"user": "ops", "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield c, {"X-CSRF-Token": r.json()["csrf"]}


async def position(c: httpx.AsyncClient, room: str) -> int:
    body = (await c.get(f"/_waitroom/api/rooms/{room}/status")).json()
    assert body["state"] in ("waiting", "paused"), body
    p: int = body["position"]
    return p


# -- revocation ------------------------------------------------------------------------------


async def test_revoking_refuses_every_pass_at_once_and_keeps_the_line(
    stack: Stack, store: LineStore, ops: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    admin, csrf = ops
    async with client(stack, "81.10.0.1") as ana, client(stack, "81.10.0.2") as ben:
        first = await ana.get("/echo")  # an empty line and a free slot: straight through
        assert first.status_code == 200 and first.json()["path"] == "/echo"
        copied = dict(ana.cookies.items())
        await store.configure("revoke", paused=True)
        await asyncio.sleep(0.3)
        assert 'id="wr-position"' in (await ben.get("/echo")).text
        assert await position(ben, "revoke") == 1

        r = await admin.post(
            "/_waitroom/ops/api/rooms/revoke/settings",
            json={"revoke_passes": True, "why": "passes posted on a forum"},
            headers=csrf,
        )
        assert r.status_code == 200 and r.json()["settings"]["epoch"] == 1
        revoked_at = time.monotonic()
        served, still_in = await backend_served(stack), 0
        while True:  # how long until the pass is refused (the tick brings the epoch)
            async with client(stack, cookies=copied) as c:
                page = await c.get("/echo")
            if page.status_code == 403:
                break
            still_in += 1
            assert time.monotonic() - revoked_at < 2, "the revoked pass still works"
        took = time.monotonic() - revoked_at
        # Now every request, from either worker, is refused with a page that says why.
        for _ in range(20):
            async with client(stack, cookies=copied) as c:
                page = await c.get("/echo")
            assert page.status_code == 403
            assert "has been withdrawn" in page.text and "Join the line" in page.text
            assert 'wr_pass_revoke=""' in page.headers["set-cookie"]
        assert await backend_served(stack) == served + still_in
        # The person waiting kept their place; the revoked visitor can join again, behind.
        assert await position(ben, "revoke") == 1
        refused = await ana.get("/echo")  # her own browser: its cookies are set aside
        assert refused.status_code == 403 and "wr_pass_revoke" not in ana.cookies
        back = await ana.get("/_waitroom/rooms/revoke/join?next=/echo", follow_redirects=True)
        assert 'id="wr-position"' in back.text
        assert await position(ana, "revoke") == 2
        audit = (await admin.get("/_waitroom/ops/api/audit?room=revoke")).json()["entries"]
        entry = next(e for e in audit if e["setting"] == "revoke_passes")
        assert (entry["old"], entry["new"], entry["why"]) == ("", "1", "passes posted on a forum")
    await store.configure("revoke", paused=False)
    print(f"\nrevoked pass refused {took * 1000:.0f} ms after the ops API call", end=" ")
    print(f"({still_in} requests got through in between)")


# -- copied passes ---------------------------------------------------------------------------


async def test_a_copied_pass_opens_two_browsers_and_no_more(stack: Stack) -> None:
    async with client(stack, "81.11.0.1") as ana:
        assert "Visitor:" in (await ana.get("/book")).text  # straight through, to the site
        cookies = dict(ana.cookies.items())
    the_pass = {"wr_pass_copies": cookies["wr_pass_copies"]}
    assert cookies["wr_session_copies"]
    served = await backend_served(stack)
    # A second browser with the pass alone: its own session, let in.
    async with client(stack, cookies=the_pass) as ben:
        assert "Visitor:" in (await ben.get("/book")).text
        ben_cookies = dict(ben.cookies.items())
    # A third: refused, whichever worker it reaches, and the site never sees it.
    for _ in range(10):
        async with client(stack, cookies=the_pass) as cleo:
            r = await cleo.get("/book")
            assert r.status_code == 403 and "already in use in other browsers" in r.text
    assert await backend_served(stack) == served + 1
    # The two browsers that came first carry on, on either worker.
    for jar in (cookies, ben_cookies) * 5:
        async with client(stack, cookies=jar) as c:
            assert "Visitor:" in (await c.get("/book")).text
    assert await backend_served(stack) == served + 11


async def test_a_copied_ticket_is_counted_with_its_pass(stack: Stack, store: LineStore) -> None:
    await store.configure("copies", paused=True)
    await asyncio.sleep(0.3)
    async with client(stack, "81.12.0.1") as eve:
        assert 'id="wr-position"' in (await eve.get("/book")).text
        ticket = {"wr_ticket_copies": eve.cookies["wr_ticket_copies"]}
        await store.configure("copies", paused=False)
        outcomes = []
        for holder in range(3):  # eve, and two more browsers with her ticket
            async with client(stack, cookies=ticket) as c:
                for _ in range(100):
                    status = (await c.get("/_waitroom/api/rooms/copies/status")).json()
                    if status["state"] == "admitted":
                        break
                    await asyncio.sleep(0.05)
                assert status["state"] == "admitted", holder
                outcomes.append((await c.get("/book")).status_code)
    # The same admission, whoever collects it: one pass id, two browsers.
    assert outcomes == [200, 200, 403]


# -- joins per address and subnet ------------------------------------------------------------


async def test_a_burst_from_one_address_is_cut_off_and_pushes_nobody_back(
    stack: Stack, store: LineStore
) -> None:
    honest = [client(stack, a) for a in ("81.20.0.1", "81.21.0.1", "2a00:1028:21::1")]
    try:
        for i, c in enumerate(honest):
            assert "You are in the line" in (await c.get("/limits")).text
            assert await position(c, "limits") == i + 1
        seq_before = int((await store.state("limits"))["seq"])

        async def bot_join(address: str) -> httpx.Response:
            async with client(stack, address) as c:
                return await c.post("/_waitroom/api/rooms/limits/join")

        one = await asyncio.gather(*(bot_join("81.99.0.1") for _ in range(30)))
        assert sorted(r.status_code for r in one) == [200] * 5 + [429] * 25
        refused = next(r for r in one if r.status_code == 429)
        assert refused.json()["error"] == "too_many_joins"
        assert 0 < int(refused.headers["retry-after"]) <= 600
        # Rotating addresses inside the /24 only gets to the subnet's limit (12 in all).
        rotating = await asyncio.gather(*(bot_join(f"81.99.0.{i}") for i in range(10, 30)))
        assert sum(r.status_code == 200 for r in rotating) == 12 - 5
        # IPv6: every address in one /64 is one subnet.
        v6 = await asyncio.gather(*(bot_join(f"2a00:1028:99:1::{i:x}") for i in range(1, 21)))
        assert sum(r.status_code == 200 for r in v6) == 12
        # The page says the same in words, with Retry-After, and gives no place.
        async with client(stack, "81.99.0.1") as c:
            page = await c.get("/limits")
            assert page.status_code == 429 and int(page.headers["retry-after"]) > 0
            assert "Too many people joined from your connection" in page.text
            assert "wr_ticket_limits" not in page.headers.get("set-cookie", "")
        # Nothing the bots did moved an honest visitor back; the line grew by exactly the
        # places the limits allowed; the next honest arrival queues behind everyone.
        await asyncio.sleep(0.2)
        assert [await position(c, "limits") for c in honest] == [1, 2, 3]
        assert int((await store.state("limits"))["seq"]) == seq_before + 5 + 7 + 12
        async with client(stack, "81.22.0.1") as late:
            await late.get("/limits")
            assert await position(late, "limits") == 3 + 5 + 7 + 12 + 1
    finally:
        await asyncio.gather(*(c.aclose() for c in honest))


# -- proof of work ---------------------------------------------------------------------------


async def test_the_page_asks_for_work_and_says_so_without_javascript(
    stack: Stack, store: LineStore
) -> None:
    async with client(stack, "81.30.0.1") as c:
        page = await c.get("/work/slot?id=7")
        js = await c.get("/_waitroom/static/challenge.js")
        css = await c.get("/_waitroom/static/waitroom.css")
    assert page.status_code == 200 and 'data-bits="8"' in page.text
    assert "This waiting room needs JavaScript to let you join." in page.text
    assert re.search(r'name="next" value="/work/slot\?id=7"', page.text)
    assert "wr_ticket_work" not in page.headers.get("set-cookie", "")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert len(page.content) + len(js.content) + len(css.content) < 30_000
    assert not (await store.state("work")).get("seq")  # a challenge costs Redis nothing


async def test_a_proof_of_work_gets_one_place_and_forgeries_none(
    stack: Stack, store: LineStore
) -> None:
    async with client(stack, "81.31.0.1") as c:
        asked = await c.post("/_waitroom/api/rooms/work/join")
        assert asked.status_code == 403 and asked.json()["error"] == "challenge_required"
        challenge, bits = asked.json()["challenge"], asked.json()["bits"]
        assert bits == 8
        nonce = solve(challenge, bits)
        proof = {"X-Waitroom-Challenge": challenge, "X-Waitroom-Nonce": nonce}
        joined = await c.post("/_waitroom/api/rooms/work/join", headers=proof)
        assert joined.status_code == 200 and joined.json()["position"] == 1
    seq = (await store.state("work"))["seq"]
    expired = Challenges([stack.secret]).issue("work", 8, time.time() - 3600)
    other_room = Challenges([stack.secret]).issue("limits", 8, time.time())
    attempts = [
        proof,  # the same solution again, from another browser: spent
        {"X-Waitroom-Challenge": challenge, "X-Waitroom-Nonce": str(int(nonce) + 1)},
        {"X-Waitroom-Challenge": expired, "X-Waitroom-Nonce": solve(expired, 8)},
        {"X-Waitroom-Challenge": other_room, "X-Waitroom-Nonce": solve(other_room, 8)},
        {"X-Waitroom-Challenge": challenge.replace("8.", "1.", 1), "X-Waitroom-Nonce": "0"},
    ]
    for headers in attempts:
        async with client(stack, "81.31.0.2") as c:
            r = await c.post("/_waitroom/api/rooms/work/join", headers=headers)
            assert r.status_code == 403 and r.json()["challenge"] != challenge, headers
    assert (await store.state("work"))["seq"] == seq  # not one place given


async def test_the_page_form_joins_once_and_a_browser_keeps_its_place(
    stack: Stack, store: LineStore
) -> None:
    async with client(stack, "81.32.0.1") as c:
        page = await c.get("/work")
        challenge = re.search(r'data-challenge="([^"]+)"', page.text)
        assert challenge is not None
        form = {
            "challenge": challenge[1],
            "nonce": solve(challenge[1], 8),
            "next": "/work",
        }
        posted = await c.post("/_waitroom/rooms/work/join", data=form)
        assert posted.status_code == 303 and posted.headers["location"] == "/work"
        where = await position(c, "work")
        assert "You are in the line" in (await c.get("/work")).text
        # Posting again (a reload, a double click): the place is kept, nothing is spent.
        again = await c.post("/_waitroom/rooms/work/join", data=form)
        assert again.status_code == 303
        assert await position(c, "work") == where
    async with client(stack, "81.32.0.2") as thief:  # the same answer in another browser
        stolen = await thief.post("/_waitroom/rooms/work/join", data=form)
        assert stolen.status_code == 200 and 'id="wr-challenge"' in stolen.text
    # Another site's page posting the form for a visitor (whose ticket SameSite=Lax keeps
    # out of a cross-site POST) must not give them a new place over the one they hold.
    seq = (await store.state("work"))["seq"]
    page = await client(stack, "81.32.0.3").get("/work")
    fresh = re.search(r'data-challenge="([^"]+)"', page.text)
    assert fresh is not None
    forged = {"challenge": fresh[1], "nonce": solve(fresh[1], 8), "next": "/work"}
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        async with client(stack, "81.32.0.3", headers=headers) as victim:
            r = await victim.post("/_waitroom/rooms/work/join", data=forged)
            assert r.status_code == 303 and "wr_ticket_work" not in r.headers.get("set-cookie", "")
    assert (await store.state("work"))["seq"] == seq


# -- one place per browser -------------------------------------------------------------------


async def test_joining_again_keeps_the_place_on_every_path(stack: Stack, store: LineStore) -> None:
    async with client(stack, "81.40.0.1") as a, client(stack, "81.40.0.2") as b:
        await a.get("/places")
        assert await position(a, "places") == 1
        await a.get("/places")  # the page again
        r = await a.post("/_waitroom/api/rooms/places/join")  # the API, with the cookie
        assert r.json()["position"] == 1
        entry = await a.get("/_waitroom/rooms/places/join?next=/places")  # an entry link
        assert entry.status_code == 303
        assert await position(a, "places") == 1
        # An app without cookies, sending its ticket in the header.
        ticket = (await b.post("/_waitroom/api/rooms/places/join")).json()["ticket"]
        async with client(stack, "81.40.0.2") as app:
            headers = {"X-Waitroom-Ticket": ticket}
            again = await app.post("/_waitroom/api/rooms/places/join", headers=headers)
            assert again.json()["position"] == 2
    assert int((await store.state("places"))["seq"]) == 2

    # Invitations: a browser already in the lane keeps its place and does not spend a code.
    invitations = Invitations([stack.secret])
    first, second = invitations.make("places", "over80"), invitations.make("places", "over80")
    async with client(stack, "81.40.0.3") as c, client(stack, "81.40.0.4") as d:
        await c.get(f"/_waitroom/rooms/places/invite?code={first}")
        assert await position(c, "places") == 1
        kept = await c.get(f"/_waitroom/rooms/places/invite?code={second}")
        assert kept.status_code == 303 and await position(c, "places") == 1
        await d.get(f"/_waitroom/rooms/places/invite?code={second}")  # still good for d
        assert await position(d, "places") == 2


# -- what it all costs -----------------------------------------------------------------------


async def test_refusals_are_counted_in_the_metrics(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as c:  # no forwarding headers
        text = (await c.get("/metrics")).text

    def total(name: str, **labels: str) -> float:
        found = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                found += float(line.rsplit(" ", 1)[1])
        return found

    refused = "waitroom_tokens_refused_total"
    assert total(refused, room="revoke", kind="pass", reason="revoked") >= 20
    assert total(refused, room="copies", kind="pass", reason="sessions") >= 11
    assert total("waitroom_joins_refused_total", room="limits", reason="limited") >= 25
    assert total("waitroom_joins_refused_total", room="work", reason="replayed") >= 1
    assert total("waitroom_joins_refused_total", room="work", reason="challenge") >= 4
