"""Invitations into a priority lane: short single-use codes, e.g. "over80-7K2MQX9P-4TRW8H1B".

The code names the lane, a random id and a 40-bit HMAC-SHA256 check over room, lane and id,
so only the gateway can make one. It is redeemed by the join itself, which records the id in
Redis atomically: a code shared around lets exactly one visitor in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans(_B32, _CROCKFORD)
_TYPOS = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V"})
CODE = re.compile(r"^([a-z0-9_]{1,16})-([0-9A-Z]{8})-([0-9A-Z]{8})$")


def _check(secret: str, room: str, lane: str, invite_id: str) -> str:
    key = hashlib.sha256(b"waitroom.invite.v1" + secret.encode()).digest()
    mac = hmac.new(key, f"{room}\x00{lane}\x00{invite_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:5]).decode().translate(_TO_CROCKFORD)


class Invitations:
    def __init__(self, secret_keys: Sequence[str]) -> None:
        self._secrets = list(secret_keys)

    def make(self, room: str, lane: str) -> str:
        invite_id = base64.b32encode(secrets.token_bytes(5)).decode().translate(_TO_CROCKFORD)
        return f"{lane}-{invite_id}-{_check(self._secrets[-1], room, lane, invite_id)}"

    def parse(self, room: str, typed: str, lanes: Iterable[str]) -> tuple[str, str] | None:
        """(lane, invitation id) if `typed` is a genuine code for one of the room's lanes."""
        lane, _, rest = typed.strip()[:60].partition("-")
        rest = re.sub(r"[\s\-]", "", rest.upper()).translate(_TYPOS)
        match = CODE.match(f"{lane.lower()}-{rest[:8]}-{rest[8:]}")
        if not match or match.group(1) not in set(lanes):
            return None
        lane, invite_id, check = match.groups()
        ok = False
        for secret in self._secrets:
            ok |= hmac.compare_digest(_check(secret, room, lane, invite_id), check)
        return (lane, invite_id) if ok else None
