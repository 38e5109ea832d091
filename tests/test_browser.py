"""The citizen's page in a real browser: Debian's Chromium driven by Playwright, against a
real gateway, backend and Redis. Screenshots of every state go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from browsers import chromium
from playwright.sync_api import Browser, Page, expect
from redis.asyncio import Redis

from gateway.ops.auth import hash_password
from helpers import REPO_ROOT, delete_keys, run_server
from queue_core.store import LineStore

pytestmark = pytest.mark.slow
OPS_PASSWORD = "launch-morning-0800"
SHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
ROOMS = """
[rooms.book]
title = "Vaccination booking"
paths = ["/book"]
rate_per_minute = 0
timezone = "Europe/Prague"
sold_out_url = "/book/register"

[rooms.short]
title = "Vaccination booking"
paths = ["/short"]
rate_per_minute = 0
grace_seconds = 20

[rooms.opening]
title = "Vaccination booking"
paths = ["/echo"]
rate_per_minute = 600
"""


@dataclass
class Stack:
    url: str
    prefix: str
    redis_url: str

    def line(self, coro_fn: Any) -> Any:
        """Run one store operation (as ops would through the admin API) and return its result."""

        async def go() -> Any:
            client = Redis.from_url(self.redis_url)
            try:
                return await coro_fn(LineStore(client, self.prefix))
            finally:
                await client.aclose()

        # Playwright's sync API keeps an event loop on this thread: use another one.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def drain(self, room: str) -> None:
        """Let everyone left over from earlier tests through, then stop admitting."""
        self.line(
            lambda s: s.configure(
                room, rate_per_minute=60000, paused=False, sold_out=False, banner={}, closed=False
            )
        )
        deadline = time.monotonic() + 10
        while self.line(lambda s: s.tick(room)).waiting and time.monotonic() < deadline:
            time.sleep(0.05)
        self.line(lambda s: s.configure(room, rate_per_minute=0))


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = tmp_path_factory.mktemp("browser") / "rooms.toml"
    config.write_text(ROOMS)
    prefix = f"wrtest-{uuid.uuid4().hex[:12]}"
    db = tmp_path_factory.mktemp("booking") / "booking.sqlite3"
    with run_server("booking_backend.app:create_app", env={"BACKEND_DB": str(db)}) as backend:
        env = {
            "REDIS_URL": redis_url,
            "WAITROOM_SECRET": secrets.token_urlsafe(40),
            "WAITROOM_CONFIG": str(config),
            "WAITROOM_BACKEND_URL": backend,
            "WAITROOM_KEY_PREFIX": prefix,
            "WAITROOM_TICK_SECONDS": "0.05",
            "WAITROOM_OPS_USERS": f"ops:{hash_password(OPS_PASSWORD)}",
        }
        with run_server("gateway.app:create_app", env=env) as url:
            try:
                yield Stack(url, prefix, redis_url)
            finally:
                delete_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as b:
        yield b


def visitor(browser: Browser, stack: Stack, lang: str = "en-GB", js: bool = True) -> Page:
    context = browser.new_context(
        base_url=stack.url,
        locale=lang,
        java_script_enabled=js,
        viewport={"width": 412, "height": 915},
        extra_http_headers={"Accept-Language": lang},
    )
    return context.new_page()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def back_to_tab(page: Page) -> None:
    """The visitor returns to the tab: the page checks at once instead of at its next turn."""
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")


def no_serious_violations(page: Page) -> None:
    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in {"serious", "critical"}]
    assert not serious, json.dumps(serious, indent=1)[:3000]


def no_serious_violations_without_javascript(browser: Browser, stack: Stack, page: Page) -> None:
    """axe runs on timers, and a page without JavaScript never fires one: so axe reads the
    same markup (`page` as it stands) in a page of this site where JavaScript runs but the
    page's own script is blocked. The one thing it cannot see there is the <noscript> meta
    refresh, which its meta-refresh rule would call critical: that refresh is how a page
    without JavaScript keeps up with the line, and it is the only such page."""
    html = page.content()
    reader = visitor(browser, stack)
    reader.route("**/_waitroom/static/waitroom.js", lambda route: route.abort())
    reader.goto("/_waitroom/static/waitroom.css")  # this site, so the page's own links load
    reader.set_content(html)
    no_serious_violations(reader)
    reader.context.close()


def test_join_wait_turn_and_booking_in_english_with_javascript(
    browser: Browser, stack: Stack
) -> None:
    stack.drain("book")
    ahead = visitor(browser, stack)
    ahead.goto("/book")
    page = visitor(browser, stack, "en-GB")
    page.goto("/book")
    expect(page.locator("h2")).to_have_text("You are in the line")
    expect(page.locator("#wr-position")).to_have_text("2")
    expect(page.locator("#wr-ahead")).to_have_text("1")
    assert "Your progress" in (page.locator("progress").get_attribute("aria-label") or "")
    shot(page, "en-waiting")
    no_serious_violations(page)

    page.evaluate("window.__stillTheSamePage = true")
    stack.line(lambda s: s.configure("book", paused=True))
    back_to_tab(page)
    expect(page.locator("h2")).to_have_text("The line is paused", timeout=15_000)
    # Said too, not only shown: a screen reader user hears why nothing moves.
    expect(page.locator("#wr-live")).to_contain_text("The line is paused.")
    expect(page.locator("#wr-live")).to_contain_text("Your place is kept.")
    shot(page, "en-paused")
    no_serious_violations(page)

    stack.line(
        lambda s: s.configure(
            "book", paused=False, sold_out=True, banner={"en": "New dates are released on Monday."}
        )
    )
    back_to_tab(page)
    expect(page.locator(".notice")).to_contain_text("All dates are booked", timeout=15_000)
    expect(page.locator(".notice a")).to_have_attribute("href", "/book/register")
    expect(page.locator("#wr-live")).to_contain_text("The line is moving again.")
    expect(page.locator("#wr-live")).to_contain_text("All dates are booked at the moment.")
    page.reload()
    expect(page.locator(".banner")).to_have_text("New dates are released on Monday.")
    shot(page, "en-sold-out")
    no_serious_violations(page)
    page.evaluate("window.__stillTheSamePage = true")

    stack.line(lambda s: s.configure("book", rate_per_minute=120, sold_out=False, banner={}))
    back_to_tab(page)
    expect(page.locator("h2")).to_have_text("It is your turn", timeout=20_000)
    # It came in place: no full-page reload, and a polite announcement for screen readers.
    assert page.evaluate("window.__stillTheSamePage") is True
    expect(page.locator("#wr-live")).to_have_text("It is your turn")
    expect(page).to_have_title("It is your turn – Vaccination booking")
    expect(page.locator("main")).to_contain_text("Your pass is valid for 20 minutes")
    shot(page, "en-your-turn")
    no_serious_violations(page)

    page.get_by_role("link", name="Continue to the booking site").click()
    expect(page.locator("body")).to_contain_text("Visitor:")
    shot(page, "en-booking")


def test_figures_change_in_place_and_focus_stays_where_it_was(
    browser: Browser, stack: Stack
) -> None:
    stack.drain("book")
    ahead = visitor(browser, stack)
    ahead.goto("/book")
    page = visitor(browser, stack, "cs")
    page.goto("/book")
    expect(page.locator("#wr-position")).to_have_text("2")
    # Record what each status reply carried.
    page.evaluate(
        """() => { window.__replies = []; const f = window.fetch;
        window.fetch = (...a) => f(...a).then(r => { r.clone().json().then(
          b => window.__replies.push(b.display || {})); return r; }); }"""
    )
    # One slot at once, the next in 10 s: the person ahead goes in, this visitor moves up.
    stack.line(lambda s: s.configure("book", rate_per_minute=6))
    back_to_tab(page)
    expect(page.locator("#wr-position")).to_have_text("1", timeout=15_000)
    expect(page.locator("#wr-ahead")).to_have_text("0")
    page.evaluate("window.__replies = []")
    page.locator(".receipt a").focus()
    page.wait_for_function("() => window.__replies.some(d => d.fill)", timeout=15_000)
    # Only figures were sent, and written into the section the page already had: the
    # keyboard focus is still on the link the visitor was on.
    assert page.evaluate("document.activeElement.closest('.receipt') !== null")
    assert page.evaluate("window.__replies.filter(d => d.fill).every(d => !d.html)")
    stack.line(lambda s: s.configure("book", rate_per_minute=0))
    ahead.context.close()
    page.context.close()


def test_focus_survives_a_change_of_the_sections_shape(browser: Browser, stack: Stack) -> None:
    stack.drain("book")
    ahead = visitor(browser, stack)
    ahead.goto("/book")
    page = visitor(browser, stack)
    page.goto("/book")
    expect(page.locator("#wr-position")).to_have_text("2")
    # A keyboard user is on the receipt link when ops pause: the whole section is replaced,
    # and the focus is on the same link in the new one, not lost on the page's body.
    page.get_by_role("link", name="Show my receipt or enter one").focus()
    stack.line(lambda s: s.configure("book", paused=True))
    back_to_tab(page)
    expect(page.locator("h2")).to_have_text("The line is paused", timeout=15_000)
    assert page.evaluate("document.activeElement.id") == "wr-receipt-link"
    # The link they were on goes away (dates again): the focus goes to the heading.
    stack.line(lambda s: s.configure("book", paused=False, sold_out=True))
    back_to_tab(page)
    expect(page.locator(".notice")).to_contain_text("All dates are booked", timeout=15_000)
    page.get_by_role("link", name="Register without a date").focus()
    stack.line(lambda s: s.configure("book", sold_out=False))
    back_to_tab(page)
    expect(page.locator(".notice")).to_have_count(0, timeout=15_000)
    assert page.evaluate("document.activeElement.id") == "wr-heading"
    ahead.context.close()
    page.context.close()


def test_a_phone_that_slept_past_the_grace_period_shows_its_new_place(
    browser: Browser, stack: Stack
) -> None:
    stack.drain("short")
    ahead = visitor(browser, stack)
    ahead.goto("/short")
    phone = visitor(browser, stack)
    phone.goto("/short")
    expect(phone.locator("#wr-position")).to_have_text("2")
    place = int(phone.locator(".receipt .code").inner_text().split("-")[0])
    # The phone sleeps: none of its checks get through. Two people join behind it meanwhile
    # and keep checking, and its place lapses.
    phone.route("**/_waitroom/api/**", lambda route: route.abort())
    behind = [visitor(browser, stack) for _ in range(2)]
    for page in behind:
        page.goto("/short")
    deadline = time.monotonic() + 60
    while stack.line(lambda s: s.holder("short", place, "")) is not None:
        assert time.monotonic() < deadline, "the place never lapsed"
        time.sleep(1)
    phone.unroute("**/_waitroom/api/**")
    back_to_tab(phone)
    # Back at the end of the line, behind the three who kept checking: a higher number than
    # before, shown and said, not the old place frozen on the screen.
    expect(phone.locator("#wr-position")).to_have_text("4", timeout=15_000)
    expect(phone.locator("[role=alert]")).to_contain_text("Your earlier place has lapsed")
    expect(phone.locator("#wr-live")).to_contain_text("Your earlier place has lapsed")
    expect(phone.locator("progress")).to_have_attribute("value", "0")
    # Its next checks, with the new ticket, keep showing the new place.
    phone.evaluate("window.__replies = 0")
    phone.evaluate(
        """() => { const f = window.fetch; window.fetch = (...a) => f(...a).then(r => {
        window.__replies++; return r; }); }"""
    )
    back_to_tab(phone)
    phone.wait_for_function("() => window.__replies > 1", timeout=20_000)  # one applied
    expect(phone.locator("#wr-position")).to_have_text("4")
    for page in (ahead, phone, *behind):
        page.context.close()


def test_czech_with_javascript_from_the_line_to_the_booking_page(
    browser: Browser, stack: Stack
) -> None:
    stack.drain("book")
    ahead = visitor(browser, stack, "cs-CZ")
    ahead.goto("/book")
    page = visitor(browser, stack, "cs-CZ")
    page.goto("/book")
    expect(page.locator("h2")).to_have_text("Jste ve frontě")
    expect(page.locator("#wr-position")).to_have_text("2")
    page.evaluate("window.__stillTheSamePage = true")
    stack.line(lambda s: s.configure("book", rate_per_minute=120))
    back_to_tab(page)
    expect(page.locator("h2")).to_have_text("Jste na řadě", timeout=20_000)
    assert page.evaluate("window.__stillTheSamePage") is True
    expect(page.locator("#wr-live")).to_have_text("Jste na řadě")
    expect(page).to_have_title("Jste na řadě – Vaccination booking")
    expect(page.locator("main")).to_contain_text("Vaše vstupenka platí 20 minut")
    shot(page, "cs-your-turn")
    no_serious_violations(page)
    page.get_by_role("link", name="Pokračovat na rezervační stránku").click()
    expect(page.locator("body")).to_contain_text("Visitor:")
    stack.line(lambda s: s.configure("book", rate_per_minute=0))
    ahead.context.close()
    page.context.close()


def test_a_hidden_tab_checks_less_often_but_within_a_third_of_the_grace_period(
    browser: Browser, stack: Stack
) -> None:
    stack.drain("short")  # grace_seconds = 20: the page is told to check every 5 s at most
    page = visitor(browser, stack)
    # Note each wait the script asks for, and when each check goes out.
    page.add_init_script(
        """window.__waits = []; window.__checks = [];
        const wait = window.setTimeout, get = window.fetch;
        window.setTimeout = (f, ms, ...a) => { if (ms >= 1000) window.__waits.push(ms);
          return wait(f, ms, ...a); };
        window.fetch = (...a) => { window.__checks.push(performance.now()); return get(...a); };"""
    )
    page.goto("/short")
    expect(page.locator("#wr-position")).to_have_text("1")
    page.wait_for_function("() => window.__checks.length >= 1", timeout=15_000)
    visible = max(page.evaluate("window.__waits"))
    assert 2_000 <= visible <= 5_000
    page.evaluate(
        """() => {
        Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
        Object.defineProperty(document, "visibilityState", { configurable: true,
          get: () => "hidden" });
        document.dispatchEvent(new Event("visibilitychange")); }"""
    )
    page.evaluate("window.__waits = []; window.__checks = []")
    # The next check (due while visible) is followed by the hidden tab's slower ones.
    page.wait_for_function("() => window.__checks.length >= 3", timeout=30_000)
    checks, waits = page.evaluate("window.__checks"), page.evaluate("window.__waits")
    grace_third = 20_000 / 3 + 1  # ms, and a little for rounding
    assert all(visible < w <= grace_third for w in waits), (visible, waits)
    gap = checks[2] - checks[1]
    assert visible < gap <= grace_third + 1_000, (visible, gap)
    # Checking that rarely still keeps the place.
    expect(page.locator("#wr-position")).to_have_text("1")
    page.context.close()


def test_czech_without_javascript_refreshes_itself_to_the_booking_page(
    browser: Browser, stack: Stack
) -> None:
    stack.drain("book")
    visitor(browser, stack).goto("/book")  # someone ahead
    # One visitor every 10 s: the estimate is short, so the page asks to refresh every 2 s.
    stack.line(lambda s: s.configure("book", rate_per_minute=6))
    page = visitor(browser, stack, "cs-CZ", js=False)
    page.goto("/book")
    expect(page.locator("h2")).to_have_text("Jste ve frontě")
    expect(page.locator("html")).to_have_attribute("lang", "cs")
    expect(page.locator("main")).to_contain_text("Odhadované čekání")
    assert page.locator("noscript").count() == 1  # the refresh is for JavaScript-less pages
    shot(page, "cs-waiting-nojs")
    no_serious_violations_without_javascript(browser, stack, page)
    # Nobody reloads the page: its own refresh brings the turn.
    expect(page.locator("h2")).to_have_text("Jste na řadě", timeout=30_000)
    shot(page, "cs-your-turn-nojs")
    no_serious_violations_without_javascript(browser, stack, page)
    page.get_by_role("link", name="Pokračovat na rezervační stránku").click()
    expect(page.locator("body")).to_contain_text("Visitor:")


def test_language_switcher_sticks(browser: Browser, stack: Stack) -> None:
    stack.drain("book")
    page = visitor(browser, stack, "de-DE")
    page.goto("/book")
    expect(page.locator("h2")).to_have_text("Sie stehen in der Warteschlange")
    page.get_by_role("link", name="Nederlands").click()
    expect(page.locator("h2")).to_have_text("U staat in de rij")
    expect(page).to_have_url(f"{stack.url}/book")
    page.reload()
    expect(page.locator("h2")).to_have_text("U staat in de rij")
    expect(page.locator("#wr-position")).to_have_text("1")  # same place, different words
    fr = visitor(browser, stack, "fr-BE")
    fr.goto("/book")
    expect(fr.locator("h2")).to_have_text("Vous êtes dans la file")
    shot(fr, "fr-waiting")
    no_serious_violations(fr)


def test_receipt_brings_the_place_to_another_phone(browser: Browser, stack: Stack) -> None:
    stack.drain("book")
    for _ in range(3):
        visitor(browser, stack).goto("/book")
    phone = visitor(browser, stack)
    phone.goto("/book")
    expect(phone.locator("#wr-position")).to_have_text("4")
    code = phone.locator(".receipt .code").inner_text().strip()
    phone.get_by_role("link", name="Show my receipt or enter one").click()
    expect(phone.locator(".code")).to_have_text(code)
    # The number the code starts with is the receipt's, not a position (this visitor is 4th).
    number = code.split("-")[0]
    expect(phone.locator("main")).to_contain_text(f"Your receipt, number {number}:")
    expect(phone.locator("main")).to_contain_text("is not your position")
    expect(phone.locator("main")).to_contain_text("Anyone who has the code can use your place")
    no_serious_violations(phone)

    other = visitor(browser, stack)
    other.goto("/_waitroom/rooms/book/receipt")
    other.get_by_label("Receipt code").fill(code.lower().replace("-", " "))
    other.get_by_role("button", name="Get my place back").click()
    expect(other).to_have_url(f"{stack.url}/book")
    expect(other.locator("#wr-position")).to_have_text("4")
    shot(other, "en-receipt-restored")

    wrong = visitor(browser, stack, "cs-CZ")
    wrong.goto("/_waitroom/rooms/book/receipt")
    no_serious_violations(wrong)  # the form alone, for someone with a code to type
    wrong.get_by_label("Kód potvrzení").fill("4-AAAA-AAAA")
    wrong.get_by_role("button", name="Vrátit mé místo").click()
    expect(wrong.locator("[role=alert]")).to_contain_text("Tento kód není správný")
    shot(wrong, "cs-receipt-wrong-code")
    no_serious_violations(wrong)


def test_a_receipt_link_carries_the_place_to_the_visitors_turn(
    browser: Browser, stack: Stack
) -> None:
    stack.drain("book")
    ahead = visitor(browser, stack)
    ahead.goto("/book")
    phone = visitor(browser, stack)
    phone.goto("/book")
    expect(phone.locator("#wr-position")).to_have_text("2")
    phone.get_by_role("link", name="Show my receipt or enter one").click()
    link = phone.locator("main a[href*='code=']").get_attribute("href") or ""
    assert link.startswith(f"{stack.url}/_waitroom/rooms/book/receipt?code=")
    # The link opened on a laptop, in French: the same place, then the turn, then the site.
    laptop = visitor(browser, stack, "fr-BE")
    laptop.goto(link)
    expect(laptop).to_have_url(f"{stack.url}/book")
    expect(laptop.locator("#wr-position")).to_have_text("2")
    no_serious_violations(laptop)
    stack.line(lambda s: s.configure("book", rate_per_minute=120))
    back_to_tab(laptop)
    expect(laptop.locator("h2")).to_have_text("C\u2019est votre tour", timeout=20_000)
    shot(laptop, "fr-your-turn-from-receipt")
    laptop.get_by_role("link", name="Continuer vers le site de réservation").click()
    expect(laptop.locator("body")).to_contain_text("Visitor:")
    stack.line(lambda s: s.configure("book", rate_per_minute=0))
    for page in (ahead, phone, laptop):
        page.context.close()


def test_scheduled_opening_counts_down_then_shows_the_place(browser: Browser, stack: Stack) -> None:
    opening = time.time() + 6
    stack.line(lambda s: s.configure("opening", opens_at_us=int(opening * 1e6), rate_per_minute=0))
    page = visitor(browser, stack, "nl-BE")
    page.goto("/echo")
    expect(page.locator("h2")).to_contain_text("De reserveringen openen om")
    expect(page.locator("main")).to_contain_text("willekeurige plaats")
    expect(page.locator("time[data-countdown]")).not_to_have_text("")
    shot(page, "nl-scheduled")
    no_serious_violations(page)
    expect(page.locator("h2")).to_have_text("U staat in de rij", timeout=30_000)
    expect(page.locator("#wr-position")).to_have_text("1")


def test_closed_room_page(browser: Browser, stack: Stack) -> None:
    stack.drain("book")
    stack.line(lambda s: s.configure("book", closed=True))
    try:
        page = visitor(browser, stack)
        page.goto("/book")
        expect(page.locator("h2")).to_have_text("This waiting room is closed")
        shot(page, "en-closed")
        no_serious_violations(page)
    finally:
        stack.line(lambda s: s.configure("book", closed=False))


def test_ops_dashboard_updates_live_and_changes_the_rate(browser: Browser, stack: Stack) -> None:
    stack.drain("book")
    ops = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 1000})
    page = ops.new_page()
    page.goto("/_waitroom/ops/")
    expect(page).to_have_url(f"{stack.url}/_waitroom/ops/login")
    page.get_by_label("User name").fill("ops")
    page.get_by_label("Password").fill(OPS_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("h1")).to_have_text("waitroom ops")
    waiting = page.locator("#room-book [data-k=waiting]")
    expect(waiting).to_have_text("0")
    page.evaluate("window.__stillTheSamePage = true")
    for _ in range(3):
        visitor(browser, stack).goto("/book")
    expect(waiting).to_have_text("3", timeout=5_000)  # live, within the 2 s refresh
    assert page.evaluate("window.__stillTheSamePage") is True
    no_serious_violations(page)

    page.locator("#rate-book").fill("42")
    page.locator("#why-rate-book").fill("SMS gateway at 200/s")
    page.locator("#room-book form[aria-label='Admission rate'] button").click()
    expect(page.locator("table")).to_contain_text("SMS gateway at 200/s")
    expect(page.locator("#room-book [data-k=rate_set_per_minute]")).to_have_text("42")
    page.wait_for_timeout(2500)  # let the charts draw
    room = page.locator("#room-book")
    expect(room.locator("svg.chart")).to_have_count(4)
    for series in ("backend.p50_ms,backend.p95_ms", "backend.error_rate"):
        expect(room.locator(f'svg.chart[data-series="{series}"] polyline')).not_to_have_count(0)
    expect(room.locator("figcaption")).to_contain_text(["", "", "p50", "errors"])
    expect(room.locator("[data-k=scheduled_opening]")).to_have_text("none")
    shot(page, "ops-dashboard")
    stack.line(lambda s: s.configure("book", rate_per_minute=0))
