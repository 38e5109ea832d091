"""The booking flow as a person without JavaScript meets it: HTML forms posted to a real
backend process, following each redirect, reading what the page says."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from test_booking_support import BOOKING_APP, backend_env, new_phone, visitor, wait_for_pin

from helpers import run_server

DAY = "2021-01-15"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("pages") / "booking.sqlite3"
    env = backend_env(db, BACKEND_FIRST_DAY=DAY, BACKEND_DAYS="2", BACKEND_SLOTS_PER_DAY="20")
    with run_server(BOOKING_APP, env=env) as url:
        yield url


@pytest.fixture
def browser(base_url: str) -> Iterator[httpx.Client]:
    with visitor(base_url) as http:
        yield http


def text_of(response: httpx.Response) -> str:
    """The page as read aloud: tags gone, entities decoded, whitespace collapsed."""
    inline_gone = re.sub(r"</?(a|strong|em|span)\b[^>]*>", "", response.text)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline_gone)).split())


def see_other(response: httpx.Response, location: str) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"] == location


def enter_phone_and_pin(browser: httpx.Client, phone: str) -> httpx.Response:
    see_other(browser.post("/book/phone", data={"phone": phone}), "/book/pin")
    pin = wait_for_pin(browser, phone.replace(" ", ""))
    return browser.post("/book/pin", data={"pin": pin})


def test_booking_through_the_pages(browser: httpx.Client) -> None:
    start = browser.get("/book")
    assert "Step 1 of 4" in text_of(start)
    assert 'autocomplete="tel"' in start.text

    phone = new_phone()
    typed = f"{phone[:4]} {phone[4:7]} {phone[7:10]} {phone[10:]}"
    see_other(browser.post("/book/phone", data={"phone": typed}), "/book/pin")
    pin_page = browser.get("/book/pin")
    assert pin_page.status_code == 200
    assert f"We sent a PIN to {phone} at" in text_of(pin_page)
    assert "It is valid until" in text_of(pin_page)
    assert 'autocomplete="one-time-code"' in pin_page.text

    pin = wait_for_pin(browser, phone)
    wrong = browser.post("/book/pin", data={"pin": f"{(int(pin) + 1) % 1_000_000:06d}"})
    assert wrong.status_code == 400
    assert "That PIN is not right" in text_of(wrong)
    assert "2 attempts left." in text_of(wrong)
    assert 'role="alert"' in wrong.text and 'aria-invalid="true"' in wrong.text

    see_other(browser.post("/book/pin", data={"pin": pin}), "/book/centres")
    centres = browser.get("/book/centres")
    assert "Choose a centre and a day" in text_of(centres)
    assert "Praha – Výstaviště" in text_of(centres)
    assert "Friday 15 January 2021: 20 free" in text_of(centres)
    links = re.findall(r'href="(/book/slots\?[^"]+)"', centres.text)
    assert len(links) == 5 * 2

    slots = browser.get(html.unescape(links[3]))  # Brno, the second day
    assert "Brno – Exhibition Centre, Saturday 16 January 2021" in text_of(slots)
    options = re.findall(r'<option value="(\d+)">(\d\d:\d\d)</option>', slots.text)
    assert len(options) == 20 and options[0] == ("1", "08:00")
    number, time_of_day = options[5]
    form = {"centre": "brno-exhibition-centre", "day": "2021-01-16", "slot": number}
    see_other(browser.post("/book/confirm", data=form), "/book/booking")

    booking = browser.get("/book/booking")
    assert booking.headers["cache-control"] == "no-store"  # it shows a phone number
    page = text_of(booking)
    assert "Your appointment is booked" in page
    reference = re.search(r'class="reference">([A-Z0-9]{4}-[A-Z0-9]{4})<', booking.text)
    assert reference
    assert f"Time {time_of_day}" in page and "Day Saturday 16 January 2021" in page

    # Submitting the same form again (back button, double click): the same booking, said so.
    see_other(browser.post("/book/confirm", data=form), "/book/booking?already=1")
    again = browser.get("/book/booking?already=1")
    assert "already has a booking" in text_of(again)
    assert reference.group(1) in again.text
    assert len(re.findall(r'<option value="\d+">', browser.get(html.unescape(links[3])).text)) == 19


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("601 123 456", "Start with + and your country code"),
        ("+420 601", "8 to 15 digits after the +; this one has 6"),
        ("", "Enter your mobile phone number."),
    ],
)
def test_a_malformed_number_is_explained_on_the_form(
    browser: httpx.Client, typed: str, message: str
) -> None:
    response = browser.post("/book/phone", data={"phone": typed})
    assert response.status_code == 400
    assert message in text_of(response)
    assert f'value="{typed}"' in response.text  # what they typed is kept to correct
    assert 'aria-invalid="true"' in response.text


def test_pages_that_need_a_verified_number(browser: httpx.Client) -> None:
    see_other(browser.get("/book/pin"), "/book")  # no PIN asked for yet
    for path in [
        "/book/centres",
        f"/book/slots?centre=praha-vystaviste&day={DAY}",
        "/book/booking",
    ]:
        response = browser.get(path)
        assert response.status_code == 401
        assert "Please verify your phone number" in text_of(response)
    refused = browser.post("/book/confirm", data={"centre": "praha-vystaviste", "day": DAY})
    assert refused.status_code == 401
    no_pin = browser.post("/book/pin", data={"pin": "123456"})
    assert no_pin.status_code == 400
    assert "First enter your phone number" in text_of(no_pin)


def test_three_wrong_pins_lock_the_pin(browser: httpx.Client) -> None:
    phone = new_phone()
    browser.post("/book/phone", data={"phone": phone})
    pin = wait_for_pin(browser, phone)
    wrong = f"{(int(pin) + 1) % 1_000_000:06d}"
    for _ in range(2):
        browser.post("/book/pin", data={"pin": wrong})
    locked = browser.post("/book/pin", data={"pin": wrong})
    assert locked.status_code == 429
    assert "it was the last attempt. Request a new PIN." in text_of(locked)
    assert 'action="/book/pin"' not in locked.text  # no PIN form, only "send a new PIN"
    assert "Send me a new PIN" in text_of(locked)


def test_an_expired_pin_is_explained_and_a_new_one_can_be_sent(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = tmp_path_factory.mktemp("pages-expired") / "booking.sqlite3"
    ttl_s = 1.0  # long enough to fetch a PIN and type it, short enough to wait out
    env = backend_env(db, BACKEND_PIN_TTL_S=str(ttl_s))
    phone = new_phone()
    with run_server(BOOKING_APP, env=env) as url, visitor(url) as browser:
        asked_at = time.time()
        see_other(browser.post("/book/phone", data={"phone": phone}), "/book/pin")
        pin = wait_for_pin(browser, phone)
        time.sleep(max(0.0, asked_at + ttl_s + 0.05 - time.time()))

        late = browser.post("/book/pin", data={"pin": pin})
        assert late.status_code == 410
        assert "This PIN has expired: a PIN is valid for a limited time." in text_of(late)
        assert 'role="alert"' in late.text
        assert 'action="/book/pin"' not in late.text  # no form for a PIN that cannot work
        assert "Send me a new PIN" in text_of(late)
        assert "This PIN has expired. Please ask for a new one." in text_of(
            browser.get("/book/pin")
        )
        assert browser.get("/book/centres").status_code == 401  # not verified

        # The button on the page: a new PIN at once, which works.
        see_other(browser.post("/book/phone", data={"phone": phone}), "/book/pin")
        assert 'action="/book/pin"' in browser.get("/book/pin").text
        fresh = wait_for_pin(browser, phone, count=2)
        see_other(browser.post("/book/pin", data={"pin": fresh}), "/book/centres")


def test_a_time_taken_meanwhile_offers_the_others(base_url: str) -> None:
    form = {"centre": "praha-vystaviste", "day": DAY, "slot": "7"}
    with visitor(base_url) as ana, visitor(base_url) as ben:
        see_other(enter_phone_and_pin(ana, new_phone()), "/book/centres")
        see_other(enter_phone_and_pin(ben, new_phone()), "/book/centres")
        see_other(ana.post("/book/confirm", data=form), "/book/booking")
        late = ben.post("/book/confirm", data=form)
        assert late.status_code == 409
        assert "Someone else booked that time a moment ago" in text_of(late)
        assert "Choose a time" in text_of(late)
        assert '<option value="7">' not in late.text and '<option value="8">' in late.text


def test_registration_page_while_slots_are_left(browser: httpx.Client) -> None:
    response = browser.get("/book/register")
    assert response.status_code == 200
    assert "There are still free appointments" in text_of(response)
    assert 'href="/book"' in response.text
    see_other(enter_phone_and_pin(browser, new_phone()), "/book/centres")
    refused = browser.post("/book/register")
    assert refused.status_code == 409
    assert "There are still free appointments: please choose a time instead." in text_of(refused)


def test_bad_choices_lead_back_to_the_list(browser: httpx.Client) -> None:
    see_other(enter_phone_and_pin(browser, new_phone()), "/book/centres")
    unknown = browser.get("/book/slots?centre=mars&day=2021-01-15")
    assert unknown.status_code == 404
    assert "There is no vaccination centre with that name." in text_of(unknown)
    assert "Choose a centre and a day" in text_of(unknown)
    bad_day = browser.post("/book/confirm", data={"centre": "praha-vystaviste", "day": "x"})
    assert bad_day.status_code == 400
    assert "Choose a day as YYYY-MM-DD." in text_of(bad_day)
    garbled = browser.post(
        "/book/confirm",
        content=b"centre=%FF",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert garbled.status_code == 400
    assert "could not be read" in text_of(garbled)


def test_sold_out_pages_offer_registration_without_a_date(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = tmp_path_factory.mktemp("pages-sold-out") / "booking.sqlite3"
    env = backend_env(db, BACKEND_CENTRES="1", BACKEND_DAYS="1", BACKEND_SLOTS_PER_DAY="1")
    with run_server(BOOKING_APP, env=env) as url, visitor(url) as first, visitor(url) as second:
        enter_phone_and_pin(first, new_phone())
        only = first.get("/book/centres")
        link = html.unescape(re.findall(r'href="(/book/slots\?[^"]+)"', only.text)[0])
        day = link.rsplit("=", 1)[1]
        see_other(
            first.post("/book/confirm", data={"centre": "praha-vystaviste", "day": day}),
            "/book/booking",
        )
        assert first.get("/").headers["x-booking-sold-out"] == "1"
        assert "All appointments are booked at the moment" in text_of(first.get("/"))

        # The waiting room links sold-out visitors to /book/register.
        landing = second.get("/book/register")
        assert landing.status_code == 200
        assert "All appointments are booked." in text_of(landing)
        assert 'action="/book/phone"' in landing.text  # first the phone number and PIN
        assert "already has a booking" in text_of(first.get("/book/register"))

        see_other(enter_phone_and_pin(second, new_phone()), "/book/centres")
        assert 'action="/book/register"' in second.get("/book/register").text
        sold_out = second.get("/book/centres")
        assert "All appointments are booked" in text_of(sold_out)
        assert 'action="/book/register"' in sold_out.text
        stale = second.post("/book/confirm", data={"centre": "praha-vystaviste", "day": day})
        assert stale.status_code == 409
        assert "You can register without a date" in text_of(stale)

        see_other(second.post("/book/register"), "/book/booking")
        registered = second.get("/book/booking")
        assert "You are registered without a date" in text_of(registered)
        assert re.search(r'class="reference">[A-Z0-9]{4}-[A-Z0-9]{4}<', registered.text)
        see_other(second.post("/book/register"), "/book/booking?already=1")
