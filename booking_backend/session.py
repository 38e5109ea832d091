"""What the signed session cookie holds: where a visitor is in the flow.

Only two facts: the phone number a PIN was last sent for (with that PIN's challenge id), and
the phone number proven by a correct PIN. Attempt counts and bookings live in SQLite.
The cookie is signed (Starlette's SessionMiddleware, itsdangerous), so a visitor can read it
but cannot claim a number they never verified.
"""

from __future__ import annotations

import secrets
from typing import Any

from booking_backend.settings import BackendSettings

COOKIE_NAME = "booking_session"
# Sliding: the cookie is re-signed on every reply, so this is 30 minutes of inactivity.
MAX_AGE_S = 30 * 60

_PIN_PHONE = "pin_phone"
_PIN_CHALLENGE = "pin_challenge"
_VERIFIED_PHONE = "phone"


def secret_for(settings: BackendSettings) -> str:
    """BACKEND_SESSION_SECRET, or a random secret for this process.

    A random secret is fine for a simulator: sessions last minutes, and a restart only asks
    people to verify their phone again; their bookings are in the database. Set
    BACKEND_SESSION_SECRET to keep sessions across a restart.
    """
    return settings.session_secret or secrets.token_urlsafe(32)


def remember_pin_request(session: dict[str, Any], phone: str, challenge_id: str) -> None:
    session[_PIN_PHONE] = phone
    session[_PIN_CHALLENGE] = challenge_id


def pending_pin(session: dict[str, Any]) -> tuple[str, str] | None:
    """(phone, challenge id) of the last PIN requested in this session."""
    phone, challenge = session.get(_PIN_PHONE), session.get(_PIN_CHALLENGE)
    if isinstance(phone, str) and isinstance(challenge, str):
        return phone, challenge
    return None


def mark_verified(session: dict[str, Any], phone: str) -> None:
    session.pop(_PIN_PHONE, None)
    session.pop(_PIN_CHALLENGE, None)
    session[_VERIFIED_PHONE] = phone


def verified_phone(session: dict[str, Any]) -> str | None:
    phone = session.get(_VERIFIED_PHONE)
    return phone if isinstance(phone, str) else None
