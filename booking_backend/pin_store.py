"""The current PIN challenge of each phone number, in SQLite.

Server-side rather than in the session cookie: a cookie can be replayed, so an attempt
counter kept there could be reset by sending an old copy. Each check runs in one write
transaction, so parallel guesses cannot slip past the limit either.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from booking_backend.database import write_transaction
from booking_backend.pins import (
    Challenge,
    Verdict,
    hash_pin,
    judge,
    may_send_new_pin,
    new_challenge_id,
    new_pin,
)


@dataclass(frozen=True)
class Issued:
    challenge: Challenge
    pin: str | None  # None when the current PIN was reused rather than a new one made


def issue(
    conn: sqlite3.Connection,
    phone: str,
    now: float,
    *,
    ttl_s: float,
    resend_after_s: float,
    max_attempts: int,
) -> Issued:
    with write_transaction(conn):
        challenge = current(conn, phone)
        if challenge is not None and not may_send_new_pin(
            challenge, now, resend_after_s=resend_after_s, max_attempts=max_attempts
        ):
            return Issued(challenge, None)
        pin = new_pin()
        challenge_id = new_challenge_id()
        fresh = Challenge(
            phone, challenge_id, hash_pin(challenge_id, pin), now, now + ttl_s, 0, False
        )
        conn.execute(
            "INSERT OR REPLACE INTO pins (phone, challenge_id, pin_hash, requested_at, "
            "expires_at, attempts, used) VALUES (?, ?, ?, ?, ?, 0, 0)",
            (phone, challenge_id, fresh.pin_hash, now, fresh.expires_at),
        )
    return Issued(fresh, pin)


def check(
    conn: sqlite3.Connection,
    phone: str,
    challenge_id: str,
    pin: str,
    now: float,
    *,
    max_attempts: int,
) -> tuple[Verdict, int]:
    """The verdict on ``pin``, recorded; and the attempts left afterwards."""
    with write_transaction(conn):
        challenge = current(conn, phone)
        verdict = judge(challenge, challenge_id, pin, now, max_attempts=max_attempts)
        if verdict.counts_as_attempt:
            conn.execute("UPDATE pins SET attempts = attempts + 1 WHERE phone = ?", (phone,))
        elif verdict is Verdict.VERIFIED:
            conn.execute("UPDATE pins SET used = 1 WHERE phone = ?", (phone,))
    attempts = (challenge.attempts if challenge else 0) + int(verdict.counts_as_attempt)
    return verdict, max(0, max_attempts - attempts)


def current(conn: sqlite3.Connection, phone: str) -> Challenge | None:
    row = conn.execute(
        "SELECT phone, challenge_id, pin_hash, requested_at, expires_at, attempts, used "
        "FROM pins WHERE phone = ?",
        (phone,),
    ).fetchone()
    if row is None:
        return None
    return Challenge(
        row["phone"],
        row["challenge_id"],
        row["pin_hash"],
        row["requested_at"],
        row["expires_at"],
        row["attempts"],
        bool(row["used"]),
    )
