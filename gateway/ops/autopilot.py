"""The autopilot: the admission rate steered by the booking site's health.

Multiplicative decrease when the site struggles (latency over target or errors over the
limit), additive-and-proportional increase when it is comfortable and people are waiting:
the shape TCP uses to find a link's capacity, for the same reason. The steered rate is the
rate of *arrivals* the site should see; admissions are raised to make up for the share of
admitted visitors who never come (no-shows), within the bounds ops set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from queue_core.keys import autopilot_lock_key
from queue_core.snapshot import Sample
from queue_core.store import LineStore

from ..proxy_stats import merge, percentile_ms, window_of
from .audit import AuditLog
from .controls import Autopilot, Changes

log = logging.getLogger("waitroom.autopilot")
PERIOD_SECONDS = 5.0
DECREASE = 0.7
INCREASE = 0.10
MIN_REQUESTS = 5  # fewer proxied requests than this in the window: no verdict on health
# Beyond this, making up for no-shows would flood the site the moment people do come.
MAX_NO_SHOW_SHARE = 0.8
BASE_FIELD = "autopilot_base"  # in the room's state: the arrivals per minute steered for


@dataclass(frozen=True, slots=True)
class Health:
    requests: int
    p95_ms: float | None
    error_rate: float


@dataclass(frozen=True, slots=True)
class Decision:
    base: float  # arrivals per minute the site should see
    rate: float  # admissions per minute, no-shows made up for
    reason: str


def decide(
    pilot: Autopilot,
    base: float,
    health: Health,
    no_show_share: float,
    waiting: int,
) -> Decision:
    base = min(max(base, pilot.min_rate), pilot.max_rate)
    if health.requests >= MIN_REQUESTS and health.error_rate > pilot.max_error_rate:
        base = max(pilot.min_rate, base * DECREASE)
        reason = f"errors {health.error_rate:.1%} > {pilot.max_error_rate:.1%}"
    elif (
        health.requests >= MIN_REQUESTS
        and health.p95_ms is not None
        and health.p95_ms > pilot.target_p95_ms
    ):
        base = max(pilot.min_rate, base * DECREASE)
        reason = f"p95 {health.p95_ms:.0f} ms > target {pilot.target_p95_ms:.0f} ms"
    elif waiting > 0 and (health.p95_ms is None or health.p95_ms <= 0.7 * pilot.target_p95_ms):
        base = min(pilot.max_rate, base * (1 + INCREASE) + 1)
        reason = "site healthy and people waiting"
    else:
        reason = "holding"
    share = min(max(no_show_share, 0.0), MAX_NO_SHOW_SHARE)
    rate = min(pilot.max_rate, max(pilot.min_rate, base / (1 - share)))
    if share > 0:
        reason += f"; {share:.0%} no-shows made up for"
    return Decision(round(base, 3), round(rate, 3), reason)


def share_of_no_shows(history: Sequence[Sample]) -> float:
    """Of the visitors admitted over `history`, the share who never came to the site."""
    if len(history) < 2:
        return 0.0
    admitted = history[-1].admitted_total - history[0].admitted_total
    no_shows = history[-1].no_show_total - history[0].no_show_total
    return no_shows / admitted if admitted > 0 else 0.0


def starting_base(rate: float, no_show_share: float) -> float:
    """The arrivals per minute that `rate` admissions give: where steering starts from when
    there is no base to go on, so taking over changes nothing until the site's health says so."""
    return rate * (1 - min(max(no_show_share, 0.0), MAX_NO_SHOW_SHARE))


def base_outdated(before: Autopilot, changes: Changes) -> bool:
    """Ops set the rate by hand, or switched the autopilot on: the base it steered from before
    no longer describes the room (off, then 20 by hand, then on again must not jump back to
    the 440 it had reached), so it starts again from the rate as it is."""
    switched_on = changes.autopilot is not None and changes.autopilot.enabled and not before.enabled
    return changes.rate_per_minute is not None or switched_on


async def forget_base(store: LineStore, room: str) -> None:
    await store.redis.hdel(store.keys(room).state, BASE_FIELD)


class AutopilotRunner:
    """Runs `decide` for every room with the autopilot on, once per period. Any gateway may
    run it; a short Redis lock lets exactly one act per period, whichever that is."""

    def __init__(
        self, store: LineStore, audit: AuditLog, rooms: list[str], period: float = PERIOD_SECONDS
    ) -> None:
        self.store = store
        self.audit = audit
        self.rooms = rooms
        self.period = period

    async def step(self, room: str, now: float) -> Decision | None:
        lock = autopilot_lock_key(self.store.prefix, room)
        if not await self.store.redis.set(lock, "1", nx=True, px=int(self.period * 900)):
            return None
        state = await self.store.state(room)
        pilot = Autopilot.from_json(state.get("autopilot"))
        if not pilot.enabled or state.get("paused") == "1":
            return None
        # The window under way and the two before it: 10 to 15 s of every proxied request.
        windows = [window_of(now) - i for i in range(3)]
        stats = merge(await self.store.proxy_windows(room, windows))
        n = stats.get("n", 0)
        health = Health(n, percentile_ms(stats, 0.95), stats.get("e", 0) / n if n else 0.0)
        share = share_of_no_shows(await self.store.history(room, 31))
        rate = float(state.get("rate", 0) or 0)
        base = float(state.get(BASE_FIELD) or starting_base(rate, share) or pilot.min_rate)
        keys = self.store.keys(room)
        # Everyone waiting in any lane is a reason to grow: priority lanes take slots too.
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for lane in self.store.lane_shares(room):
                pipe.zcard(keys.lane(lane).line)
            waiting = sum(await pipe.execute())
        decision = decide(pilot, base, health, share, waiting)
        await self.store.redis.hset(keys.state, BASE_FIELD, decision.base)
        if rate and abs(decision.rate - rate) / rate < 0.02:
            return decision  # too small to be worth a change (or an audit entry)
        await self.store.configure(room, rate_per_minute=decision.rate)
        await self.audit.record(
            "autopilot",
            room,
            {"rate_per_minute": (f"{rate:g}", f"{decision.rate:g}")},
            why=decision.reason,
        )
        log.info("room %s: rate %g -> %g (%s)", room, rate, decision.rate, decision.reason)
        return decision
