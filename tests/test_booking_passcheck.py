"""Defence in depth: with BACKEND_WAITROOM_SECRET set, a real backend process refuses every
visitor without a valid admission pass from the waiting room, as the gateway would."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from test_booking_support import BOOKING_APP, backend_env, visitor

from helpers import run_server
from queue_core.tokens import Credentials, Pass

OLD_SECRET = "old-waiting-room-secret-0123456789abcdefgh"
NEW_SECRET = "new-waiting-room-secret-0123456789abcdefgh"
VISITOR = "abcdefghijkl"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("passcheck") / "booking.sqlite3"
    # Same format as the gateway's WAITROOM_SECRET: oldest first, newest last.
    env = backend_env(db, BACKEND_WAITROOM_SECRET=f"{OLD_SECRET},{NEW_SECRET}")
    with run_server(BOOKING_APP, env=env) as url:
        yield url


def a_pass(
    secret: str = NEW_SECRET,
    room: str = "vaccination",
    visitor_id: str = VISITOR,
    expires_in: int = 600,
) -> str:
    admission = Pass(room, visitor_id, int(time.time()) + expires_in, "ab" * 8)
    return Credentials([secret]).issue_pass(admission)


def get(base_url: str, path: str, pass_value: str | None, **kwargs: object) -> httpx.Response:
    cookies = {"wr_pass_vaccination": pass_value} if pass_value is not None else {}
    with visitor(base_url, cookies=cookies) as client:
        return client.get(path, **kwargs)  # type: ignore[arg-type]


def good_pass_signed_then_tampered() -> str:
    value = a_pass()
    return value[:-2] + ("AA" if not value.endswith("AA") else "BB")


@pytest.mark.parametrize(
    ("case", "pass_value"),
    [
        ("no pass", None),
        ("empty", ""),
        ("garbage", "not-a-pass"),
        ("signed with another secret", a_pass(secret="x" * 40)),
        ("tampered", good_pass_signed_then_tampered()),
        ("expired", a_pass(expires_in=-1)),
        ("for another room", a_pass(room="other")),
        ("oversized", "x" * 5000),
    ],
)
def test_requests_without_a_valid_pass_are_refused(
    base_url: str, case: str, pass_value: str | None
) -> None:
    page = get(base_url, "/book", pass_value)
    assert page.status_code == 403, case
    assert "Please enter through the waiting room" in page.text
    assert 'action="/book/phone"' not in page.text
    assert page.headers["x-booking-sold-out"] == "0"
    api = get(base_url, "/book/api/availability", pass_value)
    assert api.status_code == 403
    assert api.json()["error"] == "no_admission_pass"
    assert "waiting room" in api.json()["detail"]


@pytest.mark.parametrize("path", ["/book", "/"])
@pytest.mark.parametrize("named", ["someone-else", ""])
def test_a_pass_of_another_visitor_is_refused(base_url: str, path: str, named: str) -> None:
    response = get(base_url, path, a_pass(), headers={"X-Waitroom-Visitor": named})
    assert response.status_code == 403


@pytest.mark.parametrize("secret", [NEW_SECRET, OLD_SECRET])  # rotation: both still verify
def test_a_valid_pass_gets_through(base_url: str, secret: str) -> None:
    value = a_pass(secret=secret)
    page = get(base_url, "/book", value, headers={"X-Waitroom-Visitor": VISITOR})
    assert page.status_code == 200
    assert f"Visitor: {VISITOR}" in page.text
    named = {"X-Waitroom-Visitor": VISITOR}
    with visitor(base_url, cookies={"wr_pass_vaccination": value}, headers=named) as client:
        asked = client.post("/book/api/pin", json={"phone": "+420 601 555 000"})
        assert asked.status_code == 202


@pytest.mark.parametrize("path", ["/book", "/book/pin", "/book/api/availability"])
def test_the_flow_refuses_a_valid_pass_without_the_gateways_visitor_header(
    base_url: str, path: str
) -> None:
    """A browser that goes round the gateway still sends the pass cookie (cookies ignore the
    port), but only the gateway names the visitor: under /book that is required."""
    response = get(base_url, path, a_pass())
    assert response.status_code == 403
    assert "Please enter through the waiting room" in response.text
    assert get(base_url, path, a_pass(), headers={"X-Waitroom-Visitor": VISITOR}).status_code in (
        200,
        303,  # /book/pin before any PIN was asked for
    )


def test_the_home_page_needs_only_the_pass(base_url: str) -> None:
    # Every page links to /, which lies outside the room: the gateway proxies it without
    # naming the visitor, so an admitted visitor must not be turned away there.
    home = get(base_url, "/", a_pass())
    assert home.status_code == 200
    assert 'href="/book"' in home.text
    assert get(base_url, "/", None).status_code == 403


def test_a_pass_in_the_gateways_header_gets_through(base_url: str) -> None:
    """A visitor let straight through has the pass only in the gateway's Set-Cookie, so the
    gateway hands it over in X-Waitroom-Pass: no cookie at all reaches the site."""
    headers = {"X-Waitroom-Pass": a_pass(), "X-Waitroom-Visitor": VISITOR}
    page = get(base_url, "/book", None, headers=headers)
    assert page.status_code == 200
    assert f"Visitor: {VISITOR}" in page.text
    with visitor(base_url, headers=headers) as client:
        asked = client.post("/book/api/pin", json={"phone": "+420 601 555 001"})
        assert asked.status_code == 202


@pytest.mark.parametrize(
    ("case", "header", "cookie"),
    [
        ("forged header", good_pass_signed_then_tampered(), None),
        ("expired header", a_pass(expires_in=-1), None),
        ("header for another room", a_pass(room="other"), None),
        # The header is the gateway's word: a bad one is not rescued by a good cookie.
        ("bad header, good cookie", "not-a-pass", a_pass()),
    ],
)
def test_a_bad_pass_in_the_header_is_refused(
    base_url: str, case: str, header: str, cookie: str | None
) -> None:
    headers = {"X-Waitroom-Pass": header, "X-Waitroom-Visitor": VISITOR}
    response = get(base_url, "/book/api/availability", cookie, headers=headers)
    assert (response.status_code, response.json()["error"]) == (403, "no_admission_pass"), case


def test_an_empty_pass_header_falls_back_to_the_cookie(base_url: str) -> None:
    # The gateway sends the header empty when it has no fresh pass and the visitor's
    # browser sent the cookie, which then travels along as usual.
    headers = {"X-Waitroom-Pass": "", "X-Waitroom-Visitor": VISITOR}
    assert get(base_url, "/book", a_pass(), headers=headers).status_code == 200
    assert get(base_url, "/book", None, headers=headers).status_code == 403


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/healthz", 200),
        ("/_backend/health", 200),
        ("/_backend/sold-out", 200),
        ("/metrics", 200),
        ("/static/booking.css", 200),
        ("/_sim/inbox/+420601555000", 200),
    ],
)
def test_probes_ops_and_static_files_need_no_pass(base_url: str, path: str, status: int) -> None:
    assert get(base_url, path, None).status_code == status


def test_refusals_are_counted(base_url: str) -> None:
    get(base_url, "/book", None)
    with visitor(base_url) as client:
        codes = client.get("/_backend/health").json()["errors"]["by_code"]
    assert codes["no_admission_pass"] >= 1
