"""Every Redis key the line uses, in one place.

All keys of one room share the hash tag ``{room}``, so on Redis Cluster they land on one slot
and each Lua script touches a single shard; rooms spread over the shards by their names. The
few keys that belong to no room (the audit stream, login counters) are each used alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROOM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
LANE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,15}$")
MAIN_LANE = ""


@dataclass(frozen=True, slots=True)
class LaneKeys:
    """One lane's own line. The main lane's are the room's historical keys (its counters live
    in the room's state hash); a priority lane's carry its name."""

    state: str  # hash: seq, head, sweep, holes_base, pre_base, pre_moved, lane_processed
    line: str
    seen: str
    holes: str
    pre: str

    def all(self) -> list[str]:
        return [self.state, self.line, self.seen, self.holes, self.pre]


@dataclass(frozen=True, slots=True)
class RoomKeys:
    state: str  # hash: settings (rate, paused, ...) and counters (seq, head, totals)
    line: str  # zset: visitor id -> place, the people waiting
    seen: str  # bitfield: place -> last period the visitor checked (u16)
    admitted: str  # zset: visitor id -> deadline to collect the pass
    active: str  # zset: visitor id -> pass expiry, admitted visitors on the site
    holes: str  # list: places swept out ahead of the head
    pre: str  # zset: visitor id -> random draw, arrivals before a scheduled opening
    history: str  # list: one sample of the room's counters every 10 s, newest first
    proxy: str  # hash prefix: proxied-request latency buckets per 10 s window

    used_invites: str  # set: invitation ids already redeemed
    abuse: str  # prefix of the per-address join counters, proofs used and pass sessions

    def joins_from(self, kind: str, source: str) -> str:
        """string counter: new places given to one address ("ip") or subnet ("net") in the
        current join window; it expires with the window."""
        return f"{self.abuse}:joins:{kind}:{source}"

    def proof_used(self, challenge_id: str) -> str:
        """string: a proof-of-work challenge that was solved and spent (until it expires)."""
        return f"{self.abuse}:proof:{challenge_id}"

    def pass_sessions(self, pass_id: str) -> str:
        """set: the browser sessions that used one admission pass (until the pass expires)."""
        return f"{self.abuse}:pass:{pass_id}:sessions"

    def lane(self, name: str = MAIN_LANE) -> LaneKeys:
        if name == MAIN_LANE:
            return LaneKeys(self.state, self.line, self.seen, self.holes, self.pre)
        if not LANE_NAME.match(name):
            raise ValueError(f"invalid lane name {name!r}")
        base = self.state.rsplit(":", 1)[0]
        return LaneKeys(
            *(f"{base}:lane:{name}:{part}" for part in ("state", "line", "seen", "holes", "pre"))
        )

    def proxy_window(self, window: int) -> str:
        return f"{self.proxy}:{window}"


def room_keys(prefix: str, room: str) -> RoomKeys:
    if not ROOM_NAME.match(room):
        raise ValueError(f"invalid room name {room!r}")
    base = f"{prefix}:{{{room}}}"
    return RoomKeys(
        state=f"{base}:state",
        line=f"{base}:line",
        seen=f"{base}:seen",
        admitted=f"{base}:admitted",
        active=f"{base}:active",
        holes=f"{base}:holes",
        pre=f"{base}:pre",
        history=f"{base}:history",
        proxy=f"{base}:proxy",
        used_invites=f"{base}:invites-used",
        abuse=f"{base}:abuse",
    )


def audit_key(prefix: str) -> str:
    """The ops audit log: one stream for every room, so a change's context is in one place."""
    return f"{prefix}:audit"


def login_key(prefix: str, who: str) -> str:
    """Failed ops logins of one address or user name. Not per room: on a cluster these
    spread over slots, so they are only ever used one key per command."""
    return f"{prefix}:ops:login:{who}"


def guess_key(prefix: str, room: str, who: str) -> str:
    """Wrong receipt or invitation codes typed from one address into one room."""
    return f"{prefix}:{{{room}}}:guesses:{who}"


def autopilot_lock_key(prefix: str, room: str) -> str:
    return f"{prefix}:{{{room}}}:autopilot-lock"
