"""Every way the booking site can say no, in one table.

Domain modules raise ``Refusal("slot_taken")`` and know nothing of HTTP; the page and API
adapters turn a refusal into a message in the page or a ``{"error", "detail"}`` JSON body
with the status listed here. One table keeps the wording the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    status: int
    detail: str


PROBLEMS: dict[str, Problem] = {
    # requests we cannot read
    "invalid_json": Problem(400, "Send a JSON object as the request body."),
    "invalid_form": Problem(400, "The submitted form could not be read."),
    "body_too_large": Problem(413, "The request body is too large."),
    "unsupported_media_type": Problem(
        415, "Send the form as application/x-www-form-urlencoded, or the API body as JSON."
    ),
    # phone and PIN
    "invalid_phone": Problem(
        400, "Enter your mobile number with + and the country code, e.g. +420 601 123 456."
    ),
    "no_pin_requested": Problem(
        400, "First enter your phone number; we will send you a PIN by SMS."
    ),
    "invalid_pin": Problem(400, "The PIN is the 6 digits from the SMS we sent you."),
    "wrong_pin": Problem(
        400,
        "That PIN is not right. If you asked for more than one PIN, use the latest message.",
    ),
    "pin_expired": Problem(
        410, "This PIN has expired: a PIN is valid for a limited time. Request a new PIN."
    ),
    "pin_used": Problem(409, "This PIN has already been used. Request a new PIN."),
    "pin_superseded": Problem(
        409, "A newer PIN was sent to this number. Use the latest SMS, or request a new PIN."
    ),
    "too_many_attempts": Problem(
        429, "Too many wrong PINs. For your safety this PIN no longer works: request a new one."
    ),
    "not_verified": Problem(
        401, "Please verify your phone number first: enter it and the PIN we send you."
    ),
    # inventory
    "invalid_day": Problem(400, "Choose a day as YYYY-MM-DD."),
    "invalid_slot": Problem(400, "Choose one of the listed times."),
    "unknown_centre": Problem(404, "There is no vaccination centre with that name."),
    "unknown_day": Problem(404, "That centre has no appointments on that day."),
    "unknown_slot": Problem(404, "That centre has no such time on that day."),
    "slot_taken": Problem(
        409, "Someone else booked that time a moment ago. Please choose another time."
    ),
    "day_full": Problem(
        409, "There are no free times left on that day at this centre. Choose another day."
    ),
    "sold_out": Problem(
        409,
        "All appointments are booked. You can register without a date; we will contact you "
        "when new appointments are released.",
    ),
    "slots_available": Problem(
        409, "There are still free appointments: please choose a time instead."
    ),
    "no_booking": Problem(404, "There is no booking or registration for this phone number yet."),
    "unknown_reference": Problem(404, "There is no booking with that reference."),
    # operations
    "invalid_release": Problem(
        400, 'Send {"centre": id, "day": "YYYY-MM-DD", "slots": n} with 1 <= n <= 10000.'
    ),
    "release_day_out_of_range": Problem(
        400, "Release slots for a day from today (UTC) up to 366 days ahead."
    ),
    "invalid_rate": Problem(400, 'Send {"per_second": n} with 0.01 <= n <= 100000.'),
    "admin_disabled": Problem(
        403, "Admin endpoints are off: start the backend with BACKEND_ADMIN_TOKEN set."
    ),
    "unauthorized": Problem(401, "Send the admin token as 'Authorization: Bearer <token>'."),
    "sim_inbox_off": Problem(
        404,
        "The simulation inbox is off. Start the backend with BACKEND_SIM_INBOX=1 to read "
        "delivered SMS at /_sim/inbox/{phone}.",
    ),
    # the site itself
    "no_admission_pass": Problem(
        403,
        "Please enter through the waiting room: this site only serves visitors it has "
        "admitted, and your admission pass is missing, expired or not valid here.",
    ),
    "busy": Problem(503, "The booking site is handling too many requests right now."),
    "not_found": Problem(404, "There is nothing at this address."),
    "method_not_allowed": Problem(405, "This address does not accept that method."),
    "internal": Problem(
        500, "Something went wrong on our side. Nothing was booked twice; please try again."
    ),
}


class Refusal(Exception):
    """A request the site declines, with a code from PROBLEMS and extra JSON fields."""

    def __init__(self, code: str, detail: str | None = None, **extra: Any) -> None:
        problem = PROBLEMS[code]
        self.code = code
        self.status = problem.status
        self.detail = detail or problem.detail
        self.extra = extra
        super().__init__(f"{code}: {self.detail}")
