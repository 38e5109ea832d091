"""The booking flow as plain HTML pages: forms, no JavaScript, every POST answered with a
redirect (so a refresh never submits twice) or with the same page and a clear message.

    GET  /book           1. phone number           POST /book/phone   -> /book/pin
    GET  /book/pin       2. PIN from the SMS       POST /book/pin     -> /book/centres
    GET  /book/centres   3. centre and day         (or register without a date)
    GET  /book/slots     4. time                   POST /book/confirm -> /book/booking
    GET  /book/booking   the booking and its reference
    GET  /book/register  registration without a date (the waiting room links here once
                         everything is booked)     POST /book/register -> /book/booking
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from booking_backend import session
from booking_backend.bodies import read_form
from booking_backend.errors import Refusal
from booking_backend.flow import BookingFlow, PinSent
from booking_backend.rendering import page, refusal_response

SMS_DELAY_NOTICE_S = 3
# A refused confirmation goes back to the list of times for these, to the centres otherwise.
_CHOOSE_ANOTHER_TIME = frozenset({"slot_taken", "invalid_slot", "unknown_slot"})
# Refusals that choosing another centre cannot fix: shown on the error page instead.
_NOT_A_CHOICE = frozenset(
    {"not_verified", "invalid_form", "body_too_large", "unsupported_media_type"}
)


def _see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


class Pages:
    def __init__(self, flow: BookingFlow) -> None:
        self.flow = flow

    def routes(self) -> list[Route]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/book", self.phone_form, methods=["GET"]),
            Route("/book/phone", self.request_pin, methods=["POST"]),
            Route("/book/pin", self.pin_form, methods=["GET"]),
            Route("/book/pin", self.check_pin, methods=["POST"]),
            Route("/book/centres", self.centres, methods=["GET"]),
            Route("/book/slots", self.slots, methods=["GET"]),
            Route("/book/confirm", self.confirm, methods=["POST"]),
            Route("/book/register", self.register_form, methods=["GET"]),
            Route("/book/register", self.register, methods=["POST"]),
            Route("/book/booking", self.booking, methods=["GET"]),
        ]

    async def home(self, request: Request) -> Response:
        return page(request, "home.html", {"sold_out": self.flow.sold_out})

    # -- 1. phone number -----------------------------------------------------------------

    async def phone_form(self, request: Request) -> Response:
        return self._phone_page(request)

    async def request_pin(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except Refusal as refusal:
            return refusal_response(request, refusal)
        raw_phone = form.get("phone", "")
        try:
            sent = await self.flow.request_pin(raw_phone)
        except Refusal as refusal:
            return self._phone_page(request, raw_phone, refusal)
        session.remember_pin_request(request.session, sent.phone, sent.challenge_id)
        return _see_other("/book/pin")

    def _phone_page(
        self, request: Request, phone: str = "", refusal: Refusal | None = None
    ) -> Response:
        context = {
            "phone": phone,
            "error": refusal.detail if refusal else None,
            "verified_phone": session.verified_phone(request.session),
        }
        return page(request, "phone.html", context, status_code=_status(refusal))

    # -- 2. PIN --------------------------------------------------------------------------

    async def pin_form(self, request: Request) -> Response:
        sent = await self.flow.pin_status(session.pending_pin(request.session))
        if sent is None:
            return _see_other("/book")
        return self._pin_page(request, sent)

    async def check_pin(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except Refusal as refusal:
            return refusal_response(request, refusal)
        pending = session.pending_pin(request.session)
        try:
            booking = await self.flow.verify_pin(pending, form.get("pin", ""))
        except Refusal as refusal:
            sent = await self.flow.pin_status(pending)
            if sent is None:
                return self._phone_page(request, "", refusal)
            return self._pin_page(request, sent, refusal)
        assert pending is not None  # verify_pin refuses a missing one
        session.mark_verified(request.session, pending[0])
        return _see_other("/book/booking?already=1" if booking else "/book/centres")

    def _pin_page(
        self, request: Request, sent: PinSent, refusal: Refusal | None = None
    ) -> Response:
        now = time.time()
        context = {
            "sent": sent,
            "expired": now >= sent.expires_at,
            "sms_wait_s": _sms_wait_s(sent, now),
            "error": refusal.detail if refusal else None,
            "locked": refusal is not None and refusal.code == "too_many_attempts",
        }
        return page(request, "pin.html", context, status_code=_status(refusal))

    # -- 3. centre and day, or registration ----------------------------------------------------

    async def centres(self, request: Request) -> Response:
        if session.verified_phone(request.session) is None:
            return refusal_response(request, Refusal("not_verified"))
        return await self._centres_page(request)

    async def register_form(self, request: Request) -> Response:
        phone = session.verified_phone(request.session)
        booking = None
        if phone is not None:
            with contextlib.suppress(Refusal):
                booking = await self.flow.booking_of(phone)
        context = {"verified_phone": phone, "booking": booking, "sold_out": self.flow.sold_out}
        return page(request, "register.html", context)

    async def register(self, request: Request) -> Response:
        try:
            await read_form(request)
            _, created = await self.flow.register(session.verified_phone(request.session))
        except Refusal as refusal:
            return await self._refused_choice(request, refusal)
        return _see_other("/book/booking" if created else "/book/booking?already=1")

    async def _centres_page(self, request: Request, refusal: Refusal | None = None) -> Response:
        days = await self.flow.availability()
        centres: dict[str, dict[str, Any]] = {}
        for entry in days:
            listing = centres.setdefault(entry.centre.id, {"centre": entry.centre, "days": []})
            listing["days"].append(entry)
        context = {
            "centres": list(centres.values()),
            "slots_left": sum(d.free for d in days),
            "error": refusal.detail if refusal else None,
        }
        return page(request, "centres.html", context, status_code=_status(refusal))

    # -- 4. time and confirmation ------------------------------------------------------------

    async def slots(self, request: Request) -> Response:
        if session.verified_phone(request.session) is None:
            return refusal_response(request, Refusal("not_verified"))
        centre_id = request.query_params.get("centre", "")
        day = request.query_params.get("day", "")
        return await self._slots_page(request, centre_id, day)

    async def confirm(self, request: Request) -> Response:
        form: dict[str, str] = {}
        try:
            form = await read_form(request)
            _, created = await self.flow.book(
                session.verified_phone(request.session),
                form.get("centre", ""),
                form.get("day", ""),
                form.get("slot", ""),
            )
        except Refusal as refusal:
            if refusal.code in _CHOOSE_ANOTHER_TIME:
                return await self._slots_page(
                    request, form.get("centre", ""), form.get("day", ""), refusal
                )
            return await self._refused_choice(request, refusal)
        return _see_other("/book/booking" if created else "/book/booking?already=1")

    async def _slots_page(
        self, request: Request, centre_id: str, day: str, refusal: Refusal | None = None
    ) -> Response:
        try:
            centre, chosen_day, free = await self.flow.free_slots(centre_id, day)
        except Refusal as not_found:
            return await self._centres_page(request, not_found)
        context = {
            "centre": centre,
            "day": chosen_day,
            "slots": free,
            "error": refusal.detail if refusal else None,
        }
        return page(request, "slots.html", context, status_code=_status(refusal))

    async def _refused_choice(self, request: Request, refusal: Refusal) -> Response:
        """Back to the list of centres with the reason, where choosing again can help."""
        if refusal.code in _NOT_A_CHOICE:
            return refusal_response(request, refusal)
        return await self._centres_page(request, refusal)

    # -- the booking ---------------------------------------------------------------------

    async def booking(self, request: Request) -> Response:
        try:
            booking = await self.flow.booking_of(session.verified_phone(request.session))
        except Refusal as refusal:
            if refusal.code == "no_booking":
                return await self._centres_page(request, refusal)
            return refusal_response(request, refusal)
        context = {"booking": booking, "already": request.query_params.get("already") == "1"}
        return page(request, "booking.html", context)


def _sms_wait_s(sent: PinSent, now: float) -> int:
    """Seconds until the SMS arrives, when that is long enough to be worth saying (a text
    normally takes a few seconds, so below that the notice would only worry people)."""
    if sent.sms_arrives_at is None:
        return 0
    wait = math.ceil(sent.sms_arrives_at - now)
    return wait if wait >= SMS_DELAY_NOTICE_S else 0


def _status(refusal: Refusal | None) -> int:
    return refusal.status if refusal else 200
