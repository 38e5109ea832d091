"""The line's only door to Redis: each operation is one Lua script, one round trip."""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from .connect import RedisClient
from .keys import MAIN_LANE, RoomKeys, room_keys
from .rooms import RoomConfig
from .snapshot import Sample, Snapshot

JoinStatus = Literal[
    "waiting",
    "admitted",
    "scheduled",
    "closed",
    "used",
    "recovering",
    "limited",
    "challenge",
    "replayed",
]
RestoreStatus = Literal["waiting", "admitted", "present"]


@dataclass(frozen=True, slots=True)
class JoinResult:
    status: JoinStatus
    place: int
    head: int
    now_us: int
    retry_after_ms: int = 0  # "limited": until the address's join window ends
    challenge_bits: int = 0  # "challenge": the proof of work the room asks for


@dataclass(frozen=True, slots=True)
class Newcomer:
    """Someone joining without a place to show for it: the room's join limits count them
    against their address and subnet, and its proof of work (if on) applies."""

    address: str  # the client's IP address, as text
    subnet: str  # its /24 (IPv4) or /64 (IPv6)
    counted: bool = True  # count the join against the address and subnet (public ones only)
    proof_id: str = ""  # the proof-of-work challenge solved for this join, if any
    proof_bits: int = 0
    proof_ttl_ms: int = 0  # how long the challenge stays valid: remember it as spent that long


@dataclass(frozen=True, slots=True)
class Claimed:
    expires_us: int  # the pass's expiry
    epoch: int  # the room's pass epoch: signed into the pass


@cache
def script_source(name: str) -> str:
    scripts = Path(__file__).with_name("scripts")
    common = (scripts / "_common.lua").read_text(encoding="utf-8")
    return common + "\n" + (scripts / f"{name}.lua").read_text(encoding="utf-8")


def new_generation() -> str:
    return secrets.token_hex(6)


def _now_arg(now_us: int | None) -> str:
    return "" if now_us is None else str(now_us)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LineStore:
    """Rooms' lines in Redis. `now_us` arguments exist for tests; production leaves them out
    so that every script reads the Redis server's clock."""

    def __init__(self, redis: RedisClient, prefix: str = "wr") -> None:
        self.redis = redis
        self.prefix = prefix
        self._join = redis.register_script(script_source("join"))
        self._tick = redis.register_script(script_source("tick"))
        self._claim = redis.register_script(script_source("claim"))
        self._configure = redis.register_script(script_source("configure"))
        self._where = redis.register_script(script_source("where"))
        self._restore = redis.register_script(script_source("restore"))
        self._sold_out_signal = redis.register_script(script_source("sold_out_signal"))
        self._session = redis.register_script(script_source("session"))
        self._keys: dict[str, RoomKeys] = {}
        # The highest place this store's joins handed out, per (room, lane): a floor the next
        # tick passes on, so that a join lost in a failover is noticed (see tick.lua).
        self._issued: dict[tuple[str, str], int] = {}
        # Each room's lanes and their shares of the outflow, main lane ("") first.
        self.lanes: dict[str, dict[str, float]] = {}

    def keys(self, room: str) -> RoomKeys:
        keys = self._keys.get(room)
        if keys is None:
            keys = self._keys[room] = room_keys(self.prefix, room)
        return keys

    def lane_shares(self, room: str) -> dict[str, float]:
        return self.lanes.get(room) or {MAIN_LANE: 1.0}

    async def ensure_room(self, config: RoomConfig) -> None:
        """Seed a room's live settings from its config, leaving values ops already set."""
        self.lanes[config.name] = config.lane_shares()
        state = self.keys(config.name).state
        async with self.redis.pipeline(transaction=True) as pipe:
            for field, value in _settings(config).items():
                pipe.hsetnx(state, field, value)
            await pipe.execute()

    async def configure(
        self,
        room: str,
        *,
        rate_per_minute: float | None = None,
        burst: int | None = None,
        paused: bool | None = None,
        closed: bool | None = None,
        grace_seconds: float | None = None,
        claim_seconds: float | None = None,
        sold_out: bool | None = None,
        banner: Mapping[str, str] | None = None,
        max_active: int | None = None,
        autopilot: Mapping[str, Any] | None = None,
        opens_at_us: int | None = None,
        revoke_passes: bool = False,
        challenge: bool | None = None,
        challenge_bits: int | None = None,
        joins_per_ip: int | None = None,
        joins_per_subnet: int | None = None,
        sessions_per_pass: int | None = None,
        now_us: int | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if revoke_passes:
            changes["epoch"] = "next"  # every pass issued so far is refused from now on
        if challenge is not None:
            changes["challenge"] = int(challenge)
        for field, value in (
            ("challenge_bits", challenge_bits),
            ("joins_per_ip", joins_per_ip),
            ("joins_per_subnet", joins_per_subnet),
            ("sessions_per_pass", sessions_per_pass),
        ):
            if value is not None:
                changes[field] = int(value)
        if sold_out is not None:
            changes["sold_out"] = int(sold_out)
            # Set by hand: the booking site's signal must not undo it (see sold_out_signal).
            changes["sold_out_by"] = "ops"
        if max_active is not None:
            changes["max_active"] = int(max_active)
        if autopilot is not None:
            changes["autopilot"] = json.dumps(dict(autopilot)) if autopilot else ""
        if banner is not None:
            changes["banner"] = json.dumps(dict(banner), ensure_ascii=False) if banner else ""
        if opens_at_us is not None:
            # A new schedule starts a new pre-queue; 0 removes the schedule.
            changes["opens_at"] = int(opens_at_us)
            changes["opened"] = 0
        if rate_per_minute is not None:
            if rate_per_minute < 0:
                raise ValueError("rate_per_minute must not be negative")
            changes["rate"] = repr(float(rate_per_minute))
        if burst is not None:
            changes["burst"] = int(burst)
        if paused is not None:
            changes["paused"] = int(paused)
        if closed is not None:
            changes["closed"] = int(closed)
        if grace_seconds is not None:
            changes["grace_us"] = round(grace_seconds * 1_000_000)
        if claim_seconds is not None:
            changes["claim_us"] = round(claim_seconds * 1_000_000)
        if changes:
            pairs = [x for item in changes.items() for x in item]
            k = self.keys(room)
            await self._configure(keys=[k.state, k.active], args=[_now_arg(now_us), *pairs])

    async def follow_sold_out_signal(self, room: str, sold_out: bool) -> bool | None:
        """The booking site says it is (or is no longer) sold out. Returns the room's new
        sold-out mode if this call changed it; None if the news was old or changed nothing."""
        changed = int(
            await self._sold_out_signal(keys=[self.keys(room).state], args=[int(sold_out)])
        )
        return None if changed == 0 else changed > 0

    async def join(
        self,
        room: str,
        visitor: str,
        *,
        now_us: int | None = None,
        draw: float | None = None,
        lane: str = MAIN_LANE,
        invite: str = "",
        known_gen: str = "",
        known_seq: int = 0,
        newcomer: Newcomer | None = None,
    ) -> JoinResult:
        """Give `visitor` a place in `lane` (or return theirs). `draw` orders a pre-queue at
        the opening; `invite` is a single-use invitation id redeemed by this join.
        `known_gen` and `known_seq` are the room's generation and the lane's seq as the
        caller last saw them (they tell a room Redis lost, in part or whole). A `newcomer`
        is held to the room's join limits and proof of work; without one the caller vouches
        for the visitor (a signed ticket, an invitation)."""
        k = self.keys(room)
        draw = random.random() if draw is None else draw
        lines = [k.lane(name).line for name in self.lane_shares(room)]
        floor = max(known_seq, self._issued.get((room, lane), 0)) if known_gen else 0
        who = newcomer or Newcomer("-", "-")
        abuse = [
            k.joins_from("ip", who.address),
            k.joins_from("net", who.subnet),
            k.proof_used(who.proof_id or "-"),
        ]
        status, place, head, now, extra = await self._join(
            keys=[
                k.state,
                k.admitted,
                k.used_invites,
                *k.lane(lane).all(),
                *abuse,
                k.active,
                *lines,
            ],
            args=[
                _now_arg(now_us),
                visitor,
                repr(draw),
                invite,
                known_gen,
                new_generation(),
                "1" if newcomer else "",
                who.proof_bits,
                max(1, who.proof_ttl_ms),
                "1" if newcomer and newcomer.counted else "",
                floor,
            ],
        )
        status = _text(status)
        result = JoinResult(
            status,  # type: ignore[arg-type]
            int(place),
            int(head),
            int(now),
            retry_after_ms=int(extra) if status == "limited" else 0,
            challenge_bits=int(extra) if status == "challenge" else 0,
        )
        if result.place > self._issued.get((room, lane), 0):
            self._issued[room, lane] = result.place
        return result

    async def tick(
        self,
        room: str,
        *,
        holes_from: int | Mapping[str, int] = 0,
        seen: Collection[int] | Mapping[str, Collection[int]] = (),
        known: Snapshot | None = None,
        now_us: int | None = None,
    ) -> Snapshot:
        """Admit, sweep and report. `holes_from` and `seen` are per lane (a plain value means
        the main lane's). `known` is the caller's last snapshot: if Redis has lost the room
        since, or the last moments of it (a failover to a replica that was behind), the room
        is restored from it."""
        k = self.keys(room)
        shares = self.lane_shares(room)
        if not isinstance(holes_from, Mapping):
            holes_from = {MAIN_LANE: holes_from}
        if not isinstance(seen, Mapping):
            seen = {MAIN_LANE: seen}
        keys = [k.state, k.admitted, k.active, k.history]
        args: list[Any] = [
            _now_arg(now_us),
            len(shares),
            known.gen if known else "",
            new_generation(),
            *(
                (known.processed, known.admitted_total, known.abandoned_total, known.no_show_total)
                if known
                else (0, 0, 0, 0)
            ),
            known.epoch if known else 0,
        ]
        for name, share in shares.items():
            keys += k.lane(name).all()
            places = seen.get(name, ())
            last = known.lane(name) if known else None
            issued = self._issued.get((room, name), 0) if known else 0
            args += [
                name,
                repr(share),
                holes_from.get(name, 0),
                last.head if last else 0,
                max(last.seq if last else 0, issued),
                last.processed if last else 0,
                len(places),
                *places,
            ]
        reply = await self._tick(keys=keys, args=args)
        return Snapshot.from_reply(room, reply, list(shares))

    async def claim(
        self, room: str, visitor: str, pass_seconds: float, *, now_us: int | None = None
    ) -> Claimed | None:
        """Collect an admitted visitor's pass: its expiry and epoch, or None."""
        k = self.keys(room)
        ok, expires_us, epoch = await self._claim(
            keys=[k.state, k.admitted, k.active],
            args=[_now_arg(now_us), visitor, round(pass_seconds * 1_000_000)],
        )
        return Claimed(int(expires_us), int(epoch)) if int(ok) else None

    async def open_session(
        self, room: str, pass_id: str, session: str, most: int, expires_at: int
    ) -> frozenset[str] | None:
        """May browser `session` use pass `pass_id`? None if it may (it is one of the pass's
        first `most` distinct sessions, ever); else the sessions that may."""
        ok, *members = await self._session(
            keys=[self.keys(room).pass_sessions(pass_id)],
            # An hour past expiry: gateway clocks may disagree a little about when that is.
            args=[session, most, expires_at + 3600],
        )
        return None if int(ok) else frozenset(_text(m) for m in members)

    async def place_after_opening(
        self, room: str, visitor: str, lane: str = MAIN_LANE
    ) -> int | None:
        """A pre-queue visitor's drawn place; 0 before the opening; None if they hold none."""
        k = self.keys(room)
        lk = k.lane(lane)
        place = int(
            await self._where(
                keys=[k.state, k.admitted, k.active, lk.state, lk.line, lk.pre], args=[visitor]
            )
        )
        return None if place < 0 else place

    async def restore(
        self,
        room: str,
        visitor: str,
        place: int,
        lane: str = MAIN_LANE,
        *,
        now_us: int | None = None,
    ) -> RestoreStatus:
        """Put a visitor back at their ticket's place after Redis lost the line."""
        k = self.keys(room)
        lk = k.lane(lane)
        status, _head, _gen = await self._restore(
            keys=[k.state, k.admitted, k.active, lk.state, lk.line, lk.seen],
            args=[_now_arg(now_us), visitor, place],
        )
        return _text(status)  # type: ignore[return-value]

    async def holder(self, room: str, place: int, lane: str = MAIN_LANE) -> str | None:
        """Who holds `place` in `lane` now (for redeeming a receipt), or None."""
        found = await self.redis.zrange(
            self.keys(room).lane(lane).line, place, place, byscore=True, offset=0, num=1
        )
        return _text(found[0]) if found and isinstance(found[0], bytes | str) else None

    async def history(self, room: str, count: int = 360) -> list[Sample]:
        """The room's recorded samples, oldest first (one per 10 s; 360 is an hour)."""
        raw = await self.redis.lrange(self.keys(room).history, 0, count - 1)
        return [Sample.from_text(r) for r in reversed(raw)]

    async def record_proxy(
        self, room: str, window: int, counts: Mapping[str, int], ttl_seconds: int = 3700
    ) -> None:
        """Add one worker's proxied-request counts for a 10 s window (batched, ~once a second).

        One MULTI: the counts and the key's expiry land together or not at all."""
        key = self.keys(room).proxy_window(window)
        async with self.redis.pipeline(transaction=True) as pipe:
            for field, n in counts.items():
                pipe.hincrby(key, field, n)
            pipe.expire(key, ttl_seconds)
            await pipe.execute()

    async def proxy_windows(self, room: str, windows: Collection[int]) -> list[dict[str, int]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for w in windows:
                pipe.hgetall(self.keys(room).proxy_window(w))
            replies = await pipe.execute()
        return [{_text(k): int(v) for k, v in r.items()} for r in replies]

    async def state(self, room: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys(room).state)
        return {_text(k): _text(v) for k, v in raw.items()}


def _settings(config: RoomConfig) -> dict[str, Any]:
    values = {
        "rate": repr(float(config.rate_per_minute)),
        "burst": config.burst,
        "grace_us": round(config.grace_seconds * 1_000_000),
        "claim_us": round(config.claim_seconds * 1_000_000),
        "paused": 0,
        "closed": 0,
        "sold_out": 0,
        "joins_per_ip": config.joins_per_ip,
        "joins_per_subnet": config.joins_per_subnet,
        "join_window_us": round(config.join_window_seconds * 1_000_000),
        "challenge": int(config.challenge),
        "challenge_bits": config.challenge_bits,
        "sessions_per_pass": config.sessions_per_pass,
    }
    if config.opens_at_us:
        values["opens_at"] = config.opens_at_us
    return values
