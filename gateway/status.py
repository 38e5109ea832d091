"""A visitor's status, as the page and the JSON API show it. Pure: no I/O."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from queue_core.estimate import Estimate, poll_after, poll_before_opening
from queue_core.line_view import LineView
from queue_core.rooms import RoomConfig
from queue_core.snapshot import Snapshot


# Not frozen: one is made for every status check, and a frozen dataclass's __init__ sets
# each of its many fields through object.__setattr__ (measured: 2.5% of a polled worker).
@dataclass(slots=True)
class VisitorStatus:
    room: str
    state: str  # scheduled, waiting, paused, admitted, closed
    position: int | None = None  # 1 = next in line
    ahead: int | None = None
    estimate: Estimate | None = None
    poll_after: float = 5.0
    as_of_us: int = 0
    stale: bool = False
    notice: str | None = None
    next_url: str | None = None
    progress_percent: int | None = None  # share of the line covered since joining
    sold_out: bool = False
    banner: dict[str, str] = field(default_factory=dict)
    opens_at_us: int = 0
    prequeue: int = 0  # people waiting for a scheduled opening
    pass_expires_at: int | None = None  # unix seconds, once admitted
    receipt: str | None = None

    def as_json(self) -> dict[str, Any]:
        est = self.estimate
        return {
            "room": self.room,
            "state": self.state,
            "position": self.position,
            "ahead": self.ahead,
            "estimate_seconds": None if est is None else round(est.seconds),
            "estimate_range_seconds": None if est is None else [round(est.low), round(est.high)],
            "poll_after_seconds": self.poll_after,
            "as_of": as_iso(self.as_of_us),
            "stale": self.stale,
            "notice": self.notice,
            "next": self.next_url,
            "progress_percent": self.progress_percent,
            "sold_out": self.sold_out,
            "opens_at": as_iso(self.opens_at_us),
            "receipt": self.receipt,
        }


@lru_cache(maxsize=256)  # a snapshot's time is shown to everyone who checks until the next tick
def as_iso(us: int) -> str | None:
    if not us:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat(timespec="seconds")


@lru_cache(maxsize=64)
def parse_banner(raw: str) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str) and v.strip()}


def progress(ahead: int, ahead_at_join: int) -> int:
    """Percent of the line covered since joining; it only grows, because `ahead` only shrinks."""
    if ahead_at_join <= 0:
        return 99
    return max(0, min(99, round(100 * (1 - ahead / ahead_at_join))))


def _common(snap: Snapshot) -> dict[str, Any]:
    return {
        "as_of_us": snap.now_us,
        "sold_out": snap.sold_out,
        "banner": parse_banner(snap.banner),
    }


def waiting_status(
    view: LineView,
    config: RoomConfig,
    ahead: int,
    ahead_at_join: int,
    *,
    stale: bool = False,
    notice: str | None = None,
    receipt: str | None = None,
    share: float = 1.0,
    rng: random.Random | None = None,
) -> VisitorStatus:
    snap = view.snapshot
    assert snap is not None
    estimate = view.estimate(ahead, share)
    return VisitorStatus(
        room=config.name,
        state="paused" if snap.paused else "waiting",
        position=ahead + 1,
        ahead=ahead,
        estimate=estimate,
        poll_after=poll_after(
            None if estimate is None else estimate.seconds, config.grace_seconds, rng
        ),
        stale=stale,
        notice=notice,
        progress_percent=progress(ahead, ahead_at_join),
        receipt=receipt,
        **_common(snap),
    )


def scheduled_status(
    view: LineView, config: RoomConfig, rng: random.Random | None = None
) -> VisitorStatus:
    snap = view.snapshot
    assert snap is not None
    return VisitorStatus(
        room=config.name,
        state="scheduled",
        poll_after=poll_before_opening((snap.opens_at_us - snap.now_us) / 1_000_000, rng),
        opens_at_us=snap.opens_at_us,
        prequeue=snap.prequeue,
        **_common(snap),
    )


def closed_status(view: LineView, config: RoomConfig) -> VisitorStatus:
    snap = view.snapshot
    extra = _common(snap) if snap is not None else {}
    return VisitorStatus(room=config.name, state="closed", poll_after=60.0, **extra)


def admitted_status(
    config: RoomConfig,
    pass_expires_at: int,
    now_us: int,
    next_url: str | None,
    snap: Snapshot | None = None,
) -> VisitorStatus:
    # The banner and sold-out help matter most now, as the visitor goes to the site; the
    # time is the gateway's, like the pass's expiry it is shown against.
    common: dict[str, Any] = {"as_of_us": now_us}
    if snap is not None:
        common = _common(snap) | common
    return VisitorStatus(
        room=config.name,
        state="admitted",
        position=0,
        ahead=0,
        poll_after=0,
        next_url=next_url,
        progress_percent=100,
        pass_expires_at=pass_expires_at,
        **common,
    )
