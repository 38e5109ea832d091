"""PIN challenges: the rules that prove a visitor holds the phone, without any storage.

Example with the defaults (valid 5 minutes, 3 attempts, a repeat request within 60 s reuses
the PIN):

| time | what happens |
| --- | --- |
| 08:00:00 | Ana asks for a PIN for +420 601 123 456; it is valid until 08:05:00 |
| 08:00:20 | She presses the button again: same PIN, no second SMS in the overloaded queue |
| 08:03:10 | The SMS arrives late (the operator's queue); she types a wrong digit: 2 attempts left |
| 08:03:30 | Correct PIN: the number is verified and the PIN cannot be used again |

A PIN that only arrives after 08:05:00 is useless: the expiry counts from the request,
not from delivery, as it did for the real system.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from booking_backend.errors import Refusal

PIN_DIGITS = 6


@dataclass(frozen=True)
class Challenge:
    phone: str
    challenge_id: str  # changes with every new PIN, so an old session cannot use a new PIN
    pin_hash: str
    requested_at: float
    expires_at: float
    attempts: int  # wrong PINs so far
    used: bool


class Verdict(enum.Enum):
    VERIFIED = enum.auto()
    WRONG = enum.auto()
    LAST_WRONG = enum.auto()  # wrong, and that was the last attempt
    LOCKED = enum.auto()
    EXPIRED = enum.auto()
    USED = enum.auto()
    SUPERSEDED = enum.auto()
    NONE = enum.auto()

    @property
    def counts_as_attempt(self) -> bool:
        return self in (Verdict.WRONG, Verdict.LAST_WRONG)

    @property
    def refusal_code(self) -> str:
        """The code in errors.PROBLEMS for every verdict but VERIFIED."""
        return _REFUSAL_CODES[self]


_REFUSAL_CODES = {
    Verdict.VERIFIED: "",
    Verdict.WRONG: "wrong_pin",
    Verdict.LAST_WRONG: "too_many_attempts",
    Verdict.LOCKED: "too_many_attempts",
    Verdict.EXPIRED: "pin_expired",
    Verdict.USED: "pin_used",
    Verdict.SUPERSEDED: "pin_superseded",
    Verdict.NONE: "no_pin_requested",
}


def new_pin() -> str:
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


def new_challenge_id() -> str:
    return secrets.token_urlsafe(12)


def hash_pin(challenge_id: str, pin: str) -> str:
    # Stored hashed so a copy of the database does not hand out live PINs.
    return hmac.new(challenge_id.encode(), pin.encode(), hashlib.sha256).hexdigest()


def read_pin(raw: str) -> str:
    """The PIN as typed, with spaces allowed; a malformed one costs no attempt."""
    pin = "".join(raw.split())
    if len(pin) != PIN_DIGITS or not pin.isascii() or not pin.isdigit():
        raise Refusal("invalid_pin")
    return pin


def may_send_new_pin(
    current: Challenge | None, now: float, *, resend_after_s: float, max_attempts: int
) -> bool:
    """False while the current PIN is still usable and recent: re-sending it would only
    lengthen the SMS queue that is making it late."""
    if current is None or current.used or now >= current.expires_at:
        return True
    if current.attempts >= max_attempts:
        return True
    return now - current.requested_at >= resend_after_s


def judge(
    current: Challenge | None, challenge_id: str, pin: str, now: float, *, max_attempts: int
) -> Verdict:
    """What entering ``pin`` for ``challenge_id`` at ``now`` means."""
    if current is None:
        return Verdict.NONE
    if current.challenge_id != challenge_id:
        return Verdict.SUPERSEDED
    if current.used:
        return Verdict.USED
    if now >= current.expires_at:
        return Verdict.EXPIRED
    if current.attempts >= max_attempts:
        return Verdict.LOCKED
    if hmac.compare_digest(hash_pin(challenge_id, pin), current.pin_hash):
        return Verdict.VERIFIED
    return Verdict.LAST_WRONG if current.attempts + 1 >= max_attempts else Verdict.WRONG


def pin_message(pin: str, ttl_s: float) -> str:
    minutes = ttl_s / 60
    valid = f"{minutes:g} minutes" if minutes >= 1 else f"{ttl_s:g} seconds"
    return (
        f"Your vaccination booking PIN is {pin}. It is valid for {valid} from when you "
        "asked for it. Never share it."
    )
