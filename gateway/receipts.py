"""Queue receipts: a short code that gets a visitor's place back on another device.

A receipt is the place number and a 40-bit HMAC-SHA256 check over the room and place, e.g.
"1234-K7M2-QX9P". Nothing is stored per visitor: the code proves the place, and the line says
who holds it. Letters come from Crockford's base32 (no I, L, O, U), typing is forgiving about
case, spaces and dashes, and 40 bits make guessing hopeless at any rate a gateway will answer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence

from queue_core.tokens import VERIFIED_TICKETS

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans(_B32, _CROCKFORD)
_TYPOS = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V"})
CODE = re.compile(r"^(\d{1,15})([0-9A-Z]{8})$")


def _check(secret: str, room: str, place: int, lane: str = "") -> str:
    key = hashlib.sha256(b"waitroom.receipt.v1" + secret.encode()).digest()
    # The main lane's message is unchanged from before lanes existed.
    message = f"{room}\x00{place}" + (f"\x00{lane}" if lane else "")
    mac = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:5]).decode().translate(_TO_CROCKFORD)


class Receipts:
    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = list(secrets)  # oldest first, the newest writes
        # Shown on every waiting page: work each one out once.
        self.code = functools.lru_cache(maxsize=VERIFIED_TICKETS)(self._code)  # type: ignore[method-assign]

    def code(self, room: str, place: int, lane: str = "") -> str:
        return self._code(room, place, lane)

    def _code(self, room: str, place: int, lane: str = "") -> str:
        check = _check(self._secrets[-1], room, place, lane)
        return f"{place}-{check[:4]}-{check[4:]}"

    def place(self, room: str, typed: str, lanes: Iterable[str] = ("",)) -> tuple[str, int] | None:
        """The (lane, place) a typed or linked code stands for, or None if it is not genuine.
        The lane is not written in the code: each of the room's lanes is tried."""
        cleaned = re.sub(r"[\s\-]", "", typed.upper())[:40].translate(_TYPOS)
        match = CODE.match(cleaned)
        if not match:
            return None
        place, check = int(match.group(1)), match.group(2)
        found = None
        for lane in lanes:
            for secret in self._secrets:  # no early exit: timing does not tell which matched
                if hmac.compare_digest(_check(secret, room, place, lane), check):
                    found = lane
        return (found, place) if found is not None and place > 0 else None
