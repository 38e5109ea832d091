"""The JSON API of the booking flow, under /book/api/ (behind the waiting room like the pages).

The session cookie carries the flow, as for the pages, so a client must keep cookies.

| step | request | success |
| --- | --- | --- |
| ask for a PIN | POST /book/api/pin {"phone"} | 202 when the SMS is queued |
| check it | POST /book/api/pin/verify {"pin"} | 200, with the booking if the number has one |
| see what is free | GET /book/api/availability | 200 |
| times of a day | GET /book/api/centres/{centre}/days/{day}/slots | 200 |
| book | POST /book/api/bookings {"centre", "day", "slot"?} | 201, or 200 with the existing one |
| register without a date | POST /book/api/registrations | 201, or 200 with the existing one |
| my booking | GET /book/api/booking | 200 |
| a booking by reference | GET /book/api/bookings/{reference} | 200, phone masked |

Every refusal is ``{"error": code, "detail": text}`` with a 4xx status (errors.PROBLEMS).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from booking_backend import session
from booking_backend.bodies import read_json, text_field
from booking_backend.errors import Refusal
from booking_backend.flow import BookingFlow
from booking_backend.inventory import Booking
from booking_backend.phones import mask_phone
from booking_backend.rendering import iso_time, refusal_response

_Handler = Callable[[Request], Awaitable[Response]]


def _refusals_as_json(handler: _Handler) -> _Handler:
    @wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except Refusal as refusal:
            return refusal_response(request, refusal)

    return wrapper


def booking_json(booking: Booking, *, mask: bool = False) -> dict[str, Any]:
    return {
        "reference": booking.reference,
        "phone": mask_phone(booking.phone) if mask else booking.phone,
        "status": "booked" if booking.has_date else "registered_without_date",
        "centre": {"id": booking.centre.id, "name": booking.centre.name}
        if booking.centre
        else None,
        "day": booking.day.isoformat() if booking.day else None,
        "slot": booking.slot.number if booking.slot else None,
        "time": booking.slot.time if booking.slot else None,
        "created_at": iso_time(booking.created_at),
    }


class Api:
    def __init__(self, flow: BookingFlow) -> None:
        self.flow = flow

    def routes(self) -> list[Route]:
        endpoints: list[tuple[str, _Handler, str]] = [
            ("/book/api/pin", self.request_pin, "POST"),
            ("/book/api/pin/verify", self.verify_pin, "POST"),
            ("/book/api/availability", self.availability, "GET"),
            ("/book/api/centres/{centre}/days/{day}/slots", self.day_slots, "GET"),
            ("/book/api/bookings", self.book, "POST"),
            ("/book/api/registrations", self.register, "POST"),
            ("/book/api/booking", self.my_booking, "GET"),
            ("/book/api/bookings/{reference}", self.by_reference, "GET"),
        ]
        return [
            Route(path, _refusals_as_json(handler), methods=[method])
            for path, handler, method in endpoints
        ]

    async def request_pin(self, request: Request) -> Response:
        body = await read_json(request)
        sent = await self.flow.request_pin(text_field(body, "phone"))
        session.remember_pin_request(request.session, sent.phone, sent.challenge_id)
        arrives = sent.sms_arrives_at
        payload = {
            "phone": sent.phone,
            "new_pin_sent": sent.new_pin_sent,
            "requested_at": iso_time(sent.requested_at),
            "expires_at": iso_time(sent.expires_at),
            "sms_expected_at": iso_time(arrives) if arrives is not None else None,
            "attempts_left": sent.attempts_left,
        }
        return JSONResponse(payload, status_code=202)

    async def verify_pin(self, request: Request) -> Response:
        body = await read_json(request)
        pending = session.pending_pin(request.session)
        booking = await self.flow.verify_pin(pending, text_field(body, "pin"))
        assert pending is not None  # verify_pin refuses a missing one
        session.mark_verified(request.session, pending[0])
        return JSONResponse(
            {
                "phone": pending[0],
                "verified": True,
                "booking": booking_json(booking) if booking else None,
            }
        )

    async def availability(self, request: Request) -> Response:
        days = await self.flow.availability()
        centres: dict[str, dict[str, Any]] = {}
        for entry in days:
            centre = centres.setdefault(
                entry.centre.id,
                {"id": entry.centre.id, "name": entry.centre.name, "slots_left": 0, "days": []},
            )
            centre["slots_left"] += entry.free
            centre["days"].append({"day": entry.day.isoformat(), "slots_left": entry.free})
        slots_left = sum(entry.free for entry in days)
        return JSONResponse(
            {
                "sold_out": slots_left == 0,
                "slots_left": slots_left,
                "centres": list(centres.values()),
            }
        )

    async def day_slots(self, request: Request) -> Response:
        params = request.path_params
        centre, day, slots = await self.flow.free_slots(params["centre"], params["day"])
        return JSONResponse(
            {
                "centre": {"id": centre.id, "name": centre.name},
                "day": day.isoformat(),
                "slots": [{"slot": s.number, "time": s.time} for s in slots],
            }
        )

    async def book(self, request: Request) -> Response:
        body = await read_json(request)
        booking, created = await self.flow.book(
            session.verified_phone(request.session),
            text_field(body, "centre"),
            text_field(body, "day"),
            body.get("slot"),
        )
        return JSONResponse(
            {"booking": booking_json(booking), "created": created},
            status_code=201 if created else 200,
        )

    async def register(self, request: Request) -> Response:
        await read_json(request)  # nothing to read, but refuse garbage all the same
        booking, created = await self.flow.register(session.verified_phone(request.session))
        return JSONResponse(
            {"booking": booking_json(booking), "created": created},
            status_code=201 if created else 200,
        )

    async def my_booking(self, request: Request) -> Response:
        booking = await self.flow.booking_of(session.verified_phone(request.session))
        return JSONResponse({"booking": booking_json(booking)})

    async def by_reference(self, request: Request) -> Response:
        booking = await self.flow.booking_by_reference(request.path_params["reference"])
        return JSONResponse({"booking": booking_json(booking, mask=True)})
