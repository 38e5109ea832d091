"""Proof of work before joining: a signed, expiring puzzle that costs a browser a second or
two and a bot farm the same per place, with no captcha service and nothing stored to issue it.

A challenge reads "16.1700000600.3f2a9c0e11d4b7a8.<mac>": the difficulty in bits, its expiry
(unix seconds), a random id, and an HMAC-SHA256 over those and the room, so it is good for
one room only and nobody but the gateway can make or alter one. The page's script finds a
nonce (decimal digits) such that SHA-256(challenge || nonce) starts with that many zero bits;
on average that takes 2^bits hashes, and checking it takes one. The join records the id in
Redis atomically (join.lua), so each solution gets exactly one place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

LIFETIME_SECONDS = 300  # to solve it and join; a page left longer just gets a new one
MAX_NONCE_DIGITS = 20
_FORM = re.compile(r"^([1-9][0-9]?)\.([0-9]{1,12})\.([0-9a-f]{16})\.([A-Za-z0-9_-]{22})$")
_NONCE = re.compile(rf"^[0-9]{{1,{MAX_NONCE_DIGITS}}}$")
MAX_LENGTH = 64  # longer than any challenge this module writes


@dataclass(frozen=True, slots=True)
class Challenge:
    text: str  # exactly as issued: what the nonce is appended to
    bits: int
    expires_at: int  # unix seconds
    challenge_id: str


def _mac(secret: str, room: str, bits: int, expires_at: int, challenge_id: str) -> str:
    key = hashlib.sha256(b"waitroom.challenge.v1" + secret.encode()).digest()
    message = f"{room}\x00{bits}\x00{expires_at}\x00{challenge_id}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def solves(text: str, nonce: str, bits: int) -> bool:
    """Does SHA-256(text || nonce) start with `bits` zero bits?"""
    digest = hashlib.sha256((text + nonce).encode()).digest()
    return int.from_bytes(digest, "big") >> (256 - bits) == 0


def solve(text: str, bits: int) -> str:
    """Find a nonce by brute force, as the page's script does (for tests and API clients)."""
    n = 0
    while not solves(text, str(n), bits):
        n += 1
    return str(n)


class Challenges:
    def __init__(self, secret_keys: Sequence[str], lifetime: int = LIFETIME_SECONDS) -> None:
        self._secrets = list(secret_keys)  # oldest first: the newest signs
        self.lifetime = lifetime

    def issue(self, room: str, bits: int, now: float) -> str:
        expires_at = int(now) + self.lifetime
        challenge_id = secrets.token_hex(8)
        mac = _mac(self._secrets[-1], room, bits, expires_at, challenge_id)
        return f"{bits}.{expires_at}.{challenge_id}.{mac}"

    def read(self, room: str, text: str, now: float) -> Challenge | None:
        """The challenge `text` stands for, if this gateway issued it for `room` and it has
        not expired; None for anything else."""
        match = _FORM.match(text) if len(text) <= MAX_LENGTH else None
        if match is None:
            return None
        bits, expires_at, challenge_id, mac = (
            int(match[1]),
            int(match[2]),
            match[3],
            match[4],
        )
        genuine = False
        for secret in self._secrets:  # no early exit: timing does not tell which matched
            expected = _mac(secret, room, bits, expires_at, challenge_id)
            genuine |= hmac.compare_digest(expected.encode(), mac.encode())
        if not genuine or expires_at <= now or bits > 64:
            return None
        return Challenge(text, bits, expires_at, challenge_id)

    def verify(self, room: str, text: str, nonce: str, now: float) -> Challenge | None:
        """The challenge, if it is genuine, current, and `nonce` solves it; else None."""
        challenge = self.read(room, text, now)
        if challenge is None or not _NONCE.match(nonce):
            return None
        return challenge if solves(challenge.text, nonce, challenge.bits) else None
