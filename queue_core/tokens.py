"""The two signed credentials: the queue ticket and the admission pass.

Both are itsdangerous serializers with their own salt, HMAC-SHA256 (the library's default is
SHA-1) and a list of secrets for rotation: the newest signs, every one of them verifies, so a
deploy that adds a secret sends nobody back to the end of the line. Every field a check
depends on (room, place, visitor, expiry, epoch) is inside the signed payload; nothing rides
beside it.

The pass carries the room's *epoch*, and the ticket does not. Rotating the epoch revokes
every pass at once: that is for an incident on the booking site's side (passes leaked or
mass-shared, a bot wave that got through). The people still waiting did nothing wrong, and
a ticket only ever yields the one place it names, so rotating must not send 140,000 of them
to the back of the line; a ticket compromised wholesale is what secret rotation is for.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

TICKET_SALT = "waitroom.ticket.v1"
PASS_SALT = "waitroom.pass.v1"
MAX_CREDENTIAL_LENGTH = 400
# Tickets remembered as verified, per worker. Every worker sees every visitor (no sticky
# routing), so this must hold a whole launch-morning crowd: 140,000 waiting in Belgium. A
# miss costs a full verification (~9 us); an entry about 400 bytes (80 MB when full).
VERIFIED_TICKETS = 200_000
VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{12}$")


class InvalidCredential(ValueError):
    """Malformed, tampered, expired or signed for something else."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """A place in line: proof of where this visitor stands, even if Redis forgets."""

    room: str
    place: int  # 0 while waiting for a scheduled opening to draw the order
    visitor: str
    issued_at: int  # unix seconds
    ahead_at_join: int = 0  # people ahead when the place was given: the progress bar's 0%
    lane: str = ""  # "" is the main lane; a priority lane's name otherwise
    gen: str = ""  # the room's generation when issued: tells a ticket from before a data loss


@dataclass(frozen=True, slots=True)
class Pass:
    """Admission to the booking site for one visitor of one room until `expires_at`."""

    room: str
    visitor: str
    expires_at: int  # unix seconds
    pass_id: str  # unique per admission, so a copied pass can be traced and limited
    epoch: int = 0  # the room's pass epoch when issued: older epochs are revoked


def new_visitor_id() -> str:
    return secrets.token_urlsafe(9)


def pass_id_for(room: str, visitor: str, expires_us: int) -> str:
    """The id of the pass for one admission. Derived, not random: every pass collected for the
    same admission (again, from another worker, or with a copied ticket) has the same id, so
    the browsers using it are counted together."""
    return hashlib.sha256(f"{room}\x00{visitor}\x00{expires_us}".encode()).hexdigest()[:16]


class Credentials:
    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            raise ValueError("at least one secret is required")
        keys = list(secret_keys)  # oldest first: the last one signs
        kwargs: dict[str, Any] = {"digest_method": hashlib.sha256}
        self._tickets = URLSafeSerializer(keys, salt=TICKET_SALT, signer_kwargs=kwargs)
        self._passes = URLSafeSerializer(keys, salt=PASS_SALT, signer_kwargs=kwargs)
        # A waiting visitor sends the same ticket at every check: verify each string once.
        # Keyed by the exact string, so only what was already proven genuine is ever a hit;
        # failures raise and are never cached, so forging always pays the full check.
        self._verified_ticket = functools.lru_cache(maxsize=VERIFIED_TICKETS)(self._verify_ticket)

    def issue_ticket(self, ticket: Ticket) -> str:
        fields = [
            ticket.room,
            ticket.place,
            ticket.visitor,
            ticket.issued_at,
            ticket.ahead_at_join,
            ticket.lane,
            ticket.gen,
        ]
        return str(self._tickets.dumps(fields))

    def read_ticket(self, value: str) -> Ticket:
        ticket: Ticket = self._verified_ticket(value)
        return ticket

    def _verify_ticket(self, value: str) -> Ticket:
        room, place, visitor, issued_at, ahead, lane, gen = _load(
            self._tickets, value, (str, int, str, int, int, str, str)
        )
        # Place 0 is a pre-queue ticket: the opening has not drawn its place yet.
        if place < 0 or ahead < 0 or not VISITOR_ID.match(visitor):
            raise InvalidCredential("ticket fields out of range")
        return Ticket(room, place, visitor, issued_at, ahead, lane, gen)

    def issue_pass(self, admission: Pass) -> str:
        return str(
            self._passes.dumps(
                [
                    admission.room,
                    admission.visitor,
                    admission.expires_at,
                    admission.pass_id,
                    admission.epoch,
                ]
            )
        )

    def read_pass(self, value: str, now: float) -> Pass:
        # Passes signed before epochs existed have four fields: epoch 0, refused once the
        # room's epoch is first rotated, so a deploy does not throw admitted visitors out.
        room, visitor, expires_at, pass_id, *epoch = _load(
            self._passes, value, (str, str, int, str, int), optional=1
        )
        if expires_at <= now:
            raise InvalidCredential("pass expired")
        if epoch and epoch[0] < 0:
            raise InvalidCredential("pass epoch out of range")
        return Pass(room, visitor, expires_at, pass_id, *epoch)


def _load(
    serializer: URLSafeSerializer, value: str, shape: tuple[type, ...], optional: int = 0
) -> list[Any]:
    """The signed list in `value`, its fields of the types in `shape`; the last `optional`
    fields may be missing (credentials signed before those fields existed)."""
    if not value or len(value) > MAX_CREDENTIAL_LENGTH:
        raise InvalidCredential("missing or oversized credential")
    try:
        data = serializer.loads(value)
    except (BadData, UnicodeError, ValueError) as exc:
        # BadData covers bad signatures and undecodable payloads; the others, bytes that only
        # look like base64. All of them mean the same thing to the caller.
        raise InvalidCredential("credential not valid") from exc
    if (
        not isinstance(data, list)
        or not len(shape) - optional <= len(data) <= len(shape)
        # bool is an int subclass: reject it explicitly so `true` cannot stand in for 1.
        or any(type(v) is not t for v, t in zip(data, shape, strict=False))
    ):
        raise InvalidCredential("credential has the wrong shape")
    return data
