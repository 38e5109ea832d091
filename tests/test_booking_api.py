"""The booking flow through the JSON API of a real backend process: each step, each way it
can go wrong, and the sold-out signal. PINs come from the simulation inbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from test_booking_support import (
    ADMIN_TOKEN,
    BOOKING_APP,
    backend_env,
    new_phone,
    verify,
    visitor,
    wait_for_pin,
)

from helpers import run_server

FIRST_DAY = date(2021, 1, 15)
PRAHA = "praha-vystaviste"
BRNO = "brno-exhibition-centre"
DAY = FIRST_DAY.isoformat()
# Releases are for today (UTC) up to a year ahead, whatever day the inventory starts on.
TODAY = datetime.now(UTC).date()
RELEASE_DAY = (TODAY + timedelta(days=5)).isoformat()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Under the 16 KB body cap, but far deeper than the JSON parser will recurse.
DEEP_LISTS = b"[" * 5000 + b"]" * 5000
DEEP_OBJECTS = b'{"a":' * 2500 + b"1" + b"}" * 2500


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("api") / "booking.sqlite3"
    env = backend_env(
        db,
        BACKEND_FIRST_DAY=DAY,
        BACKEND_DAYS="3",
        BACKEND_SLOTS_PER_DAY="50",
        BACKEND_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    with run_server(BOOKING_APP, env=env) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    """A visitor: their own cookie jar, so their own session."""
    with visitor(base_url) as http:
        yield http


def error_of(response: httpx.Response) -> str:
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "detail"} and body["detail"], body
    return str(body["error"])


# --- phone number and PIN ----------------------------------------------------------------


def test_pin_request_normalises_the_number_and_sends_an_sms(client: httpx.Client) -> None:
    phone = new_phone()
    typed = f"{phone[:4]} {phone[4:7]} {phone[7:10]} {phone[10:]}"
    response = client.post("/book/api/pin", json={"phone": typed})
    assert response.status_code == 202
    sent = response.json()
    assert sent["phone"] == phone
    assert sent["new_pin_sent"] is True
    assert sent["attempts_left"] == 3
    requested, expires = (datetime.fromisoformat(sent[k]) for k in ("requested_at", "expires_at"))
    assert (expires - requested).total_seconds() == pytest.approx(300, abs=0.002)
    pin = wait_for_pin(client, phone)
    assert len(pin) == 6 and pin.isdigit()
    assert "valid for 5 minutes" in client.get(f"/_sim/inbox/{phone}").json()["messages"][0]["text"]


def test_double_submitted_pin_request_sends_one_sms(client: httpx.Client) -> None:
    phone = new_phone()
    first = client.post("/book/api/pin", json={"phone": phone}).json()
    second = client.post("/book/api/pin", json={"phone": phone}).json()
    assert (first["new_pin_sent"], second["new_pin_sent"]) == (True, False)
    assert first["expires_at"] == second["expires_at"]
    pin = wait_for_pin(client, phone)
    assert len(client.get(f"/_sim/inbox/{phone}").json()["messages"]) == 1
    assert client.post("/book/api/pin/verify", json={"pin": pin}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code", "detail"),
    [
        ({"phone": "601 123 456"}, 400, "invalid_phone", "Start with + and your country code"),
        ({"phone": "+420 601 1"}, 400, "invalid_phone", "8 to 15 digits"),
        ({"phone": "+420 abc"}, 400, "invalid_phone", "Use only digits"),
        ({"phone": ""}, 400, "invalid_phone", "Enter your mobile phone number"),
        ({}, 400, "invalid_phone", "Enter your mobile phone number"),
        ({"phone": 420601123456}, 400, "invalid_json", "'phone' must be a string"),
    ],
)
def test_malformed_phone_numbers_get_a_clear_400(
    client: httpx.Client, body: dict[str, Any], status: int, code: str, detail: str
) -> None:
    response = client.post("/book/api/pin", json=body)
    assert response.status_code == status
    assert error_of(response) == code
    assert detail in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b'["+420601123456"]', "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        (b"phone=%2B420601123456", "application/x-www-form-urlencoded", 415, None),
        (b'{"phone": "' + b"1" * 20_000 + b'"}', "application/json", 413, "body_too_large"),
        (DEEP_LISTS, "application/json", 400, "invalid_json"),
        (DEEP_OBJECTS, "application/json", 400, "invalid_json"),
    ],
)
def test_unreadable_bodies_get_a_clear_4xx(
    client: httpx.Client, content: bytes, content_type: str, status: int, code: str | None
) -> None:
    response = client.post("/book/api/pin", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert error_of(response) == (code or "unsupported_media_type")


@pytest.mark.parametrize(
    "path",
    [
        "/book/api/pin",
        "/book/api/pin/verify",
        "/book/api/bookings",
        "/book/api/registrations",
        "/_backend/admin/release",
        "/_backend/admin/sms-rate",
    ],
)
def test_deeply_nested_json_is_refused_by_every_endpoint_with_a_body(
    client: httpx.Client, path: str
) -> None:
    for body in (DEEP_LISTS, DEEP_OBJECTS):
        response = client.post(
            path, content=body, headers={"content-type": "application/json", **ADMIN}
        )
        assert (response.status_code, error_of(response)) == (400, "invalid_json"), path


def test_checking_a_pin_before_asking_for_one(client: httpx.Client) -> None:
    response = client.post("/book/api/pin/verify", json={"pin": "123456"})
    assert response.status_code == 400
    assert error_of(response) == "no_pin_requested"


def test_wrong_pins_count_down_then_lock_until_a_new_pin(client: httpx.Client) -> None:
    phone = new_phone()
    client.post("/book/api/pin", json={"phone": phone})
    pin = wait_for_pin(client, phone)
    wrong = f"{(int(pin) + 1) % 1_000_000:06d}"

    malformed = client.post("/book/api/pin/verify", json={"pin": "12ab56"})
    assert (malformed.status_code, error_of(malformed)) == (400, "invalid_pin")
    first = client.post("/book/api/pin/verify", json={"pin": wrong})
    assert (first.status_code, error_of(first)) == (400, "wrong_pin")
    assert first.json()["attempts_left"] == 2  # the malformed one cost nothing
    assert "2 more attempts" in first.json()["detail"]
    second = client.post("/book/api/pin/verify", json={"pin": wrong})
    assert second.json()["attempts_left"] == 1
    third = client.post("/book/api/pin/verify", json={"pin": wrong})
    assert (third.status_code, error_of(third)) == (429, "too_many_attempts")
    assert "last attempt" in third.json()["detail"]
    # Locked: even the right PIN no longer works.
    right = client.post("/book/api/pin/verify", json={"pin": pin})
    assert (right.status_code, error_of(right)) == (429, "too_many_attempts")
    assert client.get("/book/api/booking").status_code == 401

    again = client.post("/book/api/pin", json={"phone": phone}).json()
    assert again["new_pin_sent"] is True and again["attempts_left"] == 3
    new_pin = wait_for_pin(client, phone, count=2)
    assert client.post("/book/api/pin/verify", json={"pin": new_pin}).status_code == 200


def test_a_pin_works_once(base_url: str) -> None:
    phone = new_phone()
    with (
        visitor(base_url) as phone_app,
        visitor(base_url) as laptop,
    ):
        phone_app.post("/book/api/pin", json={"phone": phone})
        laptop.post("/book/api/pin", json={"phone": phone})  # same PIN: within a minute
        pin = wait_for_pin(phone_app, phone)
        assert phone_app.post("/book/api/pin/verify", json={"pin": pin}).status_code == 200
        replay = laptop.post("/book/api/pin/verify", json={"pin": pin})
        assert (replay.status_code, error_of(replay)) == (409, "pin_used")


def test_a_pin_superseded_by_a_newer_one(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Ana asks on her phone, then again on her laptop once a new PIN may be sent (here at
    once): the phone's session now waits for a PIN that no longer exists."""
    db = tmp_path_factory.mktemp("superseded") / "booking.sqlite3"
    env = backend_env(db, BACKEND_PIN_RESEND_S="0")
    phone = new_phone()
    with run_server(BOOKING_APP, env=env) as url, visitor(url) as mobile, visitor(url) as laptop:
        mobile.post("/book/api/pin", json={"phone": phone})
        first = wait_for_pin(mobile, phone)
        assert laptop.post("/book/api/pin", json={"phone": phone}).json()["new_pin_sent"]
        latest = wait_for_pin(laptop, phone, count=2)

        # Neither PIN fits the phone's older request; as many tries as a PIN allows.
        for pin in (first, latest, first):
            stale = mobile.post("/book/api/pin/verify", json={"pin": pin})
            assert (stale.status_code, error_of(stale)) == (409, "pin_superseded")
            assert "A newer PIN was sent" in stale.json()["detail"]
        assert mobile.get("/book/api/booking").status_code == 401
        # Superseded is not a wrong guess: the latest PIN is not locked by those three.
        checked = laptop.post("/book/api/pin/verify", json={"pin": latest})
        assert checked.status_code == 200 and checked.json()["phone"] == phone


# --- choosing and booking ----------------------------------------------------------------


def test_booking_needs_a_verified_phone(client: httpx.Client) -> None:
    for method, path, body in [
        ("POST", "/book/api/bookings", {"centre": PRAHA, "day": DAY, "slot": 1}),
        ("POST", "/book/api/registrations", {}),
        ("GET", "/book/api/booking", None),
    ]:
        response = client.request(method, path, json=body)
        assert (response.status_code, error_of(response)) == (401, "not_verified"), path
    # Asking for a PIN is not enough: the number is verified only by the PIN.
    client.post("/book/api/pin", json={"phone": new_phone()})
    response = client.post("/book/api/bookings", json={"centre": PRAHA, "day": DAY})
    assert (response.status_code, error_of(response)) == (401, "not_verified")


def test_the_whole_flow_and_one_booking_per_phone(base_url: str, client: httpx.Client) -> None:
    phone = verify(client)
    availability = client.get("/book/api/availability").json()
    assert availability["sold_out"] is False
    assert [c["id"] for c in availability["centres"]][:2] == [PRAHA, BRNO]
    assert [d["day"] for d in availability["centres"][0]["days"]] == [
        (FIRST_DAY + timedelta(days=i)).isoformat() for i in range(3)
    ]
    day = availability["centres"][1]["days"][2]["day"]
    slots = client.get(f"/book/api/centres/{BRNO}/days/{day}/slots").json()
    assert slots["centre"]["name"] == "Brno – Exhibition Centre"
    chosen = slots["slots"][10]

    booked = client.post(
        "/book/api/bookings", json={"centre": BRNO, "day": day, "slot": chosen["slot"]}
    )
    assert booked.status_code == 201
    booking = booked.json()["booking"]
    assert booking["phone"] == phone and booking["status"] == "booked"
    assert (booking["centre"]["id"], booking["day"], booking["slot"], booking["time"]) == (
        BRNO,
        day,
        chosen["slot"],
        chosen["time"],
    )
    reference = booking["reference"]
    taken = client.get(f"/book/api/centres/{BRNO}/days/{day}/slots").json()["slots"]
    assert chosen not in taken

    # The same confirmation again (a double click) or a different slot: the same booking.
    again = client.post(
        "/book/api/bookings", json={"centre": BRNO, "day": day, "slot": chosen["slot"]}
    )
    other = client.post("/book/api/bookings", json={"centre": PRAHA, "day": DAY})
    for response in (again, other):
        assert response.status_code == 200
        assert response.json() == {"booking": booking, "created": False}
    assert client.get("/book/api/booking").json() == {"booking": booking}

    public = client.get(f"/book/api/bookings/{reference.lower()}").json()["booking"]
    assert public["phone"] == phone[:4] + "*" * 6 + phone[-3:]
    assert public["reference"] == reference

    # Verifying the number again, in a new session, shows the existing booking.
    with visitor(base_url) as later:
        later.post("/book/api/pin", json={"phone": phone})
        pin = wait_for_pin(later, phone, count=2)
        verified = later.post("/book/api/pin/verify", json={"pin": pin}).json()
        assert verified["booking"] == booking


def test_earliest_free_slot_when_none_is_chosen(client: httpx.Client) -> None:
    verify(client)
    day = (FIRST_DAY + timedelta(days=1)).isoformat()
    free = client.get(f"/book/api/centres/{PRAHA}/days/{day}/slots").json()["slots"]
    booked = client.post("/book/api/bookings", json={"centre": PRAHA, "day": day})
    assert booked.status_code == 201
    assert booked.json()["booking"]["slot"] == free[0]["slot"]


def test_a_slot_taken_meanwhile(base_url: str) -> None:
    choice = {"centre": PRAHA, "day": DAY, "slot": 42}
    with visitor(base_url) as ana, visitor(base_url) as ben:
        verify(ana)
        verify(ben)
        assert ana.post("/book/api/bookings", json=choice).status_code == 201
        late = ben.post("/book/api/bookings", json=choice)
        assert (late.status_code, error_of(late)) == (409, "slot_taken")
        assert "choose another time" in late.json()["detail"]
        assert ben.get("/book/api/booking").status_code == 404  # nothing was booked
        assert ben.post("/book/api/bookings", json={**choice, "slot": 43}).status_code == 201


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"centre": "mars", "day": DAY, "slot": 1}, 404, "unknown_centre"),
        ({"centre": "", "day": DAY}, 404, "unknown_centre"),
        ({"centre": PRAHA, "day": "2020-01-01", "slot": 1}, 404, "unknown_day"),
        ({"centre": PRAHA, "day": "tomorrow", "slot": 1}, 400, "invalid_day"),
        ({"centre": PRAHA, "day": DAY, "slot": 9999}, 404, "unknown_slot"),
        ({"centre": PRAHA, "day": DAY, "slot": "abc"}, 400, "invalid_slot"),
        ({"centre": PRAHA, "day": DAY, "slot": True}, 400, "invalid_slot"),
        ({"centre": PRAHA, "day": DAY, "slot": -1}, 400, "invalid_slot"),
        ({"centre": PRAHA, "day": DAY, "slot": 1.5}, 400, "invalid_slot"),
        ({"centre": ["x"], "day": DAY}, 400, "invalid_json"),
    ],
)
def test_bad_choices_get_a_clear_4xx_and_book_nothing(
    client: httpx.Client, body: dict[str, Any], status: int, code: str
) -> None:
    verify(client)
    response = client.post("/book/api/bookings", json=body)
    assert (response.status_code, error_of(response)) == (status, code)
    assert client.get("/book/api/booking").status_code == 404


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"/book/api/centres/mars/days/{DAY}/slots", 404, "unknown_centre"),
        (f"/book/api/centres/{PRAHA}/days/2020-01-01/slots", 404, "unknown_day"),
        (f"/book/api/centres/{PRAHA}/days/someday/slots", 400, "invalid_day"),
        ("/book/api/bookings/NOPE-NOPE", 404, "unknown_reference"),
        ("/book/api/nothing-here", 404, "not_found"),
    ],
)
def test_unknown_things_are_404s(client: httpx.Client, path: str, status: int, code: str) -> None:
    response = client.get(path)
    assert (response.status_code, error_of(response)) == (status, code)


def test_no_registration_without_a_date_while_slots_are_left(client: httpx.Client) -> None:
    verify(client)
    response = client.post("/book/api/registrations")
    assert (response.status_code, error_of(response)) == (409, "slots_available")


# --- the sold-out signal -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/book", 200),
        ("GET", "/book/api/availability", 200),
        ("POST", "/book/api/pin", 400),
        ("GET", "/book/api/booking", 401),
        ("POST", "/_backend/admin/release", 401),
        ("GET", "/nowhere", 404),
        ("GET", "/book/api/nowhere", 404),
        ("PUT", "/book/api/pin", 405),
        ("GET", "/healthz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/static/booking.css", 200),
    ],
)
def test_every_reply_says_whether_it_is_sold_out(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["X-Booking-Sold-Out"] == "0"


def test_sold_out_endpoint(client: httpx.Client) -> None:
    signal = client.get("/_backend/sold-out").json()
    assert signal["sold_out"] is False
    assert signal["register_without_date"] is True
    assert 0 < signal["slots_left"] <= 2 * 3 * 50 * 5


@pytest.fixture
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two appointments in all, and ops with a token."""
    db = tmp_path_factory.mktemp("tiny") / "booking.sqlite3"
    env = backend_env(
        db,
        BACKEND_CENTRES="1",
        BACKEND_DAYS="1",
        BACKEND_SLOTS_PER_DAY="2",
        BACKEND_FIRST_DAY=DAY,
        BACKEND_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    with run_server(BOOKING_APP, env=env) as url:
        yield url


def test_sell_out_register_without_a_date_then_a_new_delivery(tiny: str) -> None:
    with (
        visitor(tiny) as ana,
        visitor(tiny) as ben,
        visitor(tiny) as cleo,
    ):
        for person in (ana, ben, cleo):
            verify(person)
        assert ana.post("/book/api/bookings", json={"centre": PRAHA, "day": DAY}).status_code == 201
        last = ben.post("/book/api/bookings", json={"centre": PRAHA, "day": DAY})
        assert last.status_code == 201
        assert last.headers["X-Booking-Sold-Out"] == "1"  # the reply that took the last slot

        late = cleo.post("/book/api/bookings", json={"centre": PRAHA, "day": DAY, "slot": 1})
        assert (late.status_code, error_of(late)) == (409, "sold_out")
        assert "register without a date" in late.json()["detail"]
        assert late.headers["X-Booking-Sold-Out"] == "1"
        assert cleo.get("/_backend/sold-out").json() == {
            "sold_out": True,
            "slots_left": 0,
            "register_without_date": True,
        }
        assert cleo.get("/book/api/availability").json()["sold_out"] is True

        registered = cleo.post("/book/api/registrations")
        assert registered.status_code == 201
        registration = registered.json()["booking"]
        assert registration["status"] == "registered_without_date"
        assert (registration["centre"], registration["day"], registration["slot"]) == (None,) * 3
        again = cleo.post("/book/api/registrations")
        assert (again.status_code, again.json()["booking"]) == (200, registration)
        # Someone with a booking who registers gets their booking, not a second record.
        assert ana.post("/book/api/registrations").json()["created"] is False

        # Ops release a new delivery: the registrant books and keeps the reference.
        released = cleo.post(
            "/_backend/admin/release",
            json={"centre": PRAHA, "day": RELEASE_DAY, "slots": 3},
            headers=ADMIN,
        )
        assert released.status_code == 200
        assert released.json()["day_slots_left"] == 3 and released.json()["sold_out"] is False
        assert released.headers["X-Booking-Sold-Out"] == "0"
        booked = cleo.post("/book/api/bookings", json={"centre": PRAHA, "day": RELEASE_DAY})
        assert booked.status_code == 201
        assert booked.json()["booking"]["reference"] == registration["reference"]
        assert booked.json()["booking"]["status"] == "booked"

        health = cleo.get("/_backend/health").json()
        assert health["inventory"] == {
            "slots_total": 5,
            "slots_left": 2,
            "bookings": 3,
            "registrations": 0,
        }


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, {"centre": PRAHA, "day": RELEASE_DAY, "slots": 1}, 401, "unauthorized"),
        (
            {"Authorization": "Bearer x"},
            {"centre": PRAHA, "day": RELEASE_DAY, "slots": 1},
            401,
            None,
        ),
        ({"Authorization": ADMIN_TOKEN}, {"centre": PRAHA, "day": DAY, "slots": 1}, 401, None),
        (ADMIN, {"centre": "mars", "day": RELEASE_DAY, "slots": 1}, 404, "unknown_centre"),
        (ADMIN, {"centre": PRAHA, "day": "soon", "slots": 1}, 400, "invalid_day"),
        (ADMIN, {"centre": PRAHA, "day": RELEASE_DAY, "slots": 0}, 400, "invalid_release"),
        (ADMIN, {"centre": PRAHA, "day": RELEASE_DAY, "slots": "5"}, 400, "invalid_release"),
        (ADMIN, {"centre": PRAHA, "day": RELEASE_DAY, "slots": 10_001}, 400, "invalid_release"),
        # A day that is over, or absurdly far ahead, is a typo rather than a delivery.
        *(
            (ADMIN, {"centre": PRAHA, "day": day, "slots": 1}, 400, "release_day_out_of_range")
            for day in [
                "1999-01-01",
                "9999-12-31",
                DAY,  # the first day of the inventory, long gone
                (TODAY - timedelta(days=1)).isoformat(),
                (TODAY + timedelta(days=367)).isoformat(),
            ]
        ),
    ],
)
def test_release_refuses_bad_requests(
    client: httpx.Client,
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    before = client.get("/_backend/sold-out").json()["slots_left"]
    response = client.post("/_backend/admin/release", json=body, headers=headers)
    assert response.status_code == status
    assert error_of(response) == (code or "unauthorized")
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/_backend/sold-out").json()["slots_left"] == before


def test_release_accepts_today_to_a_year_ahead(client: httpx.Client) -> None:
    for day in (TODAY, TODAY + timedelta(days=366)):
        body = {"centre": BRNO, "day": day.isoformat(), "slots": 1}
        response = client.post("/_backend/admin/release", json=body, headers=ADMIN)
        assert (response.status_code, response.json()["day_slots_left"]) == (200, 1), day
        days = client.get("/book/api/availability").json()["centres"][1]["days"]
        assert {"day": day.isoformat(), "slots_left": 1} in days


def test_sms_rate_refuses_bad_requests(client: httpx.Client) -> None:
    for body in [
        {},
        {"per_second": 0},
        {"per_second": "200"},
        {"per_second": True},
        {"per_second": 1e-300},  # accepted once, then every PIN request was a 500
        {"per_second": 0.009},
        {"per_second": 100_001},
        {"per_second": 10**400},
    ]:
        response = client.post("/_backend/admin/sms-rate", json=body, headers=ADMIN)
        assert (response.status_code, error_of(response)) == (400, "invalid_rate"), body
        assert "0.01 <= n <= 100000" in response.json()["detail"]
    assert client.post("/_backend/admin/sms-rate", json={"per_second": 5}).status_code == 401
    # Nothing changed: PINs still go out at once.
    phone = new_phone()
    assert client.post("/book/api/pin", json={"phone": phone}).status_code == 202
    wait_for_pin(client, phone, timeout_s=1)


def test_sms_rate_accepts_the_bounds(client: httpx.Client) -> None:
    try:
        for rate in (0.01, 100_000):
            response = client.post(
                "/_backend/admin/sms-rate", json={"per_second": rate}, headers=ADMIN
            )
            assert (response.status_code, response.json()["per_second"]) == (200, rate)
            # The slowest operator: the PIN is 100 s away, and the reply says when.
            sent = client.post("/book/api/pin", json={"phone": new_phone()})
            assert sent.status_code == 202
            assert sent.json()["sms_expected_at"] is not None
    finally:
        client.post("/_backend/admin/sms-rate", json={"per_second": 10_000}, headers=ADMIN)
