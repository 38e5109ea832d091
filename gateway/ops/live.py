"""The ops dashboard's figures for one room: exact counters from Redis, not samples."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from queue_core.line_view import LineView
from queue_core.snapshot import Sample
from queue_core.store import LineStore

from ..proxy_stats import TOP_MS, WINDOW_SECONDS, beyond_top, merge, percentile_ms, window_of
from ..status import as_iso
from .forecast import Lane, clears_in, new_arrival_wait

MINUTE_US = 60_000_000
WINDOWS_PER_POINT = 6  # the booking site's charts: one point per 30 s


def per_minute(now: Mapping[str, float], then: Sample | None, field: str, now_us: int) -> float:
    if then is None or now_us <= then.now_us:
        return 0.0
    earlier = float(getattr(then, field))
    return (now[field] - earlier) * MINUTE_US / (now_us - then.now_us)


def sample_before(history: Sequence[Sample], at_us: int) -> Sample | None:
    """The newest sample taken at or before `at_us` (else the oldest there is)."""
    best = None
    for s in history:
        if s.now_us <= at_us:
            best = s
    return best or (history[0] if history else None)


def summarize(
    state: Mapping[str, str],
    lanes: Mapping[str, Lane],
    on_site: Mapping[str, int],
    history: Sequence[Sample],
    proxy_last_minute: Mapping[str, int],
    now_us: int,
) -> dict[str, Any]:
    """The figures of one room. `lanes` has every lane, main lane ("") first; `on_site` the
    admitted visitors: "active" (holding a pass) and "admitted" (not yet come for it)."""

    def num(name: str) -> float:
        try:
            return float(state.get(name, 0))
        except ValueError:
            return 0.0

    current = {
        # Arrivals are places handed out in every lane, as the history samples count them.
        "seq": float(sum(lane.seq for lane in lanes.values())),
        **{
            f: num(f)
            for f in (
                "processed",
                "admitted_total",
                "abandoned_total",
                "no_show_total",
                "arrived_total",
            )
        },
    }
    then = sample_before(history, now_us - MINUTE_US)
    rate = num("rate")
    paused = state.get("paused") == "1"
    opens_at_us = int(num("opens_at"))
    scheduled = opens_at_us > now_us and state.get("opened") != "1"
    to_opening = (opens_at_us - now_us) / 1e6 if scheduled else 0.0
    estimate = new_arrival_wait(lanes, rate, paused=paused, scheduled=scheduled)
    clear = clears_in(lanes, rate, paused=paused, seconds_to_opening=to_opening)
    n = proxy_last_minute.get("n", 0)
    try:
        autopilot = json.loads(state.get("autopilot") or "{}")
    except ValueError:
        autopilot = {}
    try:
        banner = json.loads(state.get("banner") or "{}")
    except ValueError:
        banner = {}
    out: dict[str, Any] = {
        "now_us": now_us,
        "waiting": sum(lane.waiting for lane in lanes.values()),
        "prequeue": sum(lane.prequeue for lane in lanes.values()),
        "active": on_site["active"],
        "admitted_unclaimed": on_site["admitted"],
        "rate_set_per_minute": rate,
        "admitted_per_minute": round(per_minute(current, then, "admitted_total", now_us), 2),
        "arrivals_per_minute": round(per_minute(current, then, "seq", now_us), 2),
        "arrived_per_minute": round(per_minute(current, then, "arrived_total", now_us), 2),
        "no_shows_per_minute": round(per_minute(current, then, "no_show_total", now_us), 2),
        "abandoned_per_minute": round(per_minute(current, then, "abandoned_total", now_us), 2),
        "totals": {k: int(v) for k, v in current.items()},
        "backend": {
            "requests_last_minute": n,
            "p50_ms": percentile_ms(proxy_last_minute, 0.5),
            "p95_ms": percentile_ms(proxy_last_minute, 0.95),
            # The figure above is then the top bucket's bound: the requests took longer.
            "p50_over_top": beyond_top(proxy_last_minute, 0.5),
            "p95_over_top": beyond_top(proxy_last_minute, 0.95),
            "top_ms": TOP_MS,
            "error_rate": round(proxy_last_minute.get("e", 0) / n, 4) if n else 0.0,
        },
        # What a new arrival's own page would say, and when everyone now waiting is in.
        "new_arrival_wait_seconds": None if estimate is None else round(estimate.seconds),
        "new_arrival_wait_range_seconds": (
            None if estimate is None else [round(estimate.low), round(estimate.high)]
        ),
        "line_clears_in_seconds": None if clear is None else round(clear),
        # A scheduled opening still to come (ISO 8601, UTC), else None.
        "scheduled_opening": as_iso(opens_at_us) if scheduled else None,
        # Times Redis lost this room's data and the line was restored from tickets.
        "recoveries": int(num("recoveries")),
        "recovered_at_us": int(num("recovered_at")),
        "settings": {
            "paused": paused,
            "closed": state.get("closed") == "1",
            "sold_out": state.get("sold_out") == "1",
            # "backend" when the booking site's signal set it, "ops" when set by hand.
            "sold_out_by": state.get("sold_out_by") or None,
            "max_active": int(num("max_active")),
            "opens_at_us": opens_at_us,
            "opened": state.get("opened") == "1",
            "banner": banner,
            "autopilot": autopilot,
            "epoch": int(num("epoch")),
            "challenge": state.get("challenge") == "1",
            "challenge_bits": int(num("challenge_bits")),
            "joins_per_ip": int(num("joins_per_ip")),
            "joins_per_subnet": int(num("joins_per_subnet")),
            "join_window_seconds": round(num("join_window_us") / 1e6),
            "sessions_per_pass": int(num("sessions_per_pass")),
        },
    }
    if len(lanes) > 1:
        out["lanes"] = {
            name or "main": {
                "share": round(lane.share, 4),
                "waiting": lane.waiting,
                "prequeue": lane.prequeue,
            }
            for name, lane in lanes.items()
        }
    return out


def series(
    history: Sequence[Sample], proxy: Sequence[tuple[int, Mapping[str, int]]]
) -> dict[str, Any]:
    """The last hour for charts: one point per 10 s sample, rates per minute between samples."""
    points: dict[str, list[Any]] = {
        k: []
        for k in (
            "t",
            "waiting",
            "arrivals_per_minute",
            "admitted_per_minute",
            "rate_set_per_minute",
        )
    }
    for prev, cur in itertools.pairwise(history):
        dt = (cur.now_us - prev.now_us) / MINUTE_US
        if dt <= 0:
            continue
        points["t"].append(cur.now_us // 1000)
        points["waiting"].append(cur.waiting + cur.prequeue)
        points["arrivals_per_minute"].append(round((cur.seq - prev.seq) / dt, 2))
        points["admitted_per_minute"].append(
            round((cur.admitted_total - prev.admitted_total) / dt, 2)
        )
        points["rate_set_per_minute"].append(cur.rate_per_minute)
    latency: dict[str, list[Any]] = {k: [] for k in ("t", "p50_ms", "p95_ms", "error_rate")}
    # Points of a few windows each, newest last: an hour of 5 s windows is too fine to draw.
    first = len(proxy) % WINDOWS_PER_POINT
    for i in range(first, len(proxy), WINDOWS_PER_POINT):
        group = proxy[i : i + WINDOWS_PER_POINT]
        counts = merge([dict(c) for _, c in group])
        n = counts.get("n", 0)
        latency["t"].append((group[-1][0] + 1) * WINDOW_SECONDS * 1000)
        latency["p50_ms"].append(percentile_ms(counts, 0.5))
        latency["p95_ms"].append(percentile_ms(counts, 0.95))
        latency["error_rate"].append(round(counts.get("e", 0) / n, 4) if n else None)
    return {"line": points, "backend": latency}


async def load(
    store: LineStore,
    room: str,
    *,
    with_series: bool = False,
    views: Mapping[str, LineView] | None = None,
    now_us: int | None = None,
) -> dict[str, Any]:
    """The room's figures from Redis. `views` are this gateway's views of the room's lanes,
    whose measured outflow the estimates use; `now_us` (tests) replaces the server clock."""
    k = store.keys(room)
    shares = store.lane_shares(room)
    # TIME on its own: a cluster pipeline refuses a command without a key (and any node's
    # clock will do for a dashboard).
    sec, usec = await store.redis.time()
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(k.state)
        pipe.zcard(k.active)
        pipe.zcard(k.admitted)
        for name in shares:
            lane_keys = k.lane(name)
            pipe.zcard(lane_keys.line)
            pipe.zcard(lane_keys.pre)
            pipe.hget(lane_keys.state, "seq")
        raw_state, active, admitted, *per_lane = await pipe.execute()
    if now_us is None:
        now_us = int(sec) * 1_000_000 + int(usec)
    state = {_s(a): _s(b) for a, b in raw_state.items()}
    lanes = {}
    for i, (name, share) in enumerate(shares.items()):
        waiting, prequeue, seq = per_lane[3 * i : 3 * i + 3]
        view = (views or {}).get(name)
        lanes[name] = Lane(
            share,
            int(waiting),
            int(prequeue),
            int(seq or 0),
            view.outflow.per_second() if view else None,
            view.outflow.band() if view else None,
        )
    history = await store.history(room, 360 if with_series else 8)
    per_minute_windows = 60 // WINDOW_SECONDS
    # The charts cover the last hour, as the history does (the counts are kept 3,700 s).
    count = 3600 // WINDOW_SECONDS if with_series else per_minute_windows
    windows = [window_of(now_us / 1e6) - i for i in range(count)][::-1]
    proxy = await store.proxy_windows(room, windows)
    last_minute = merge(proxy[-per_minute_windows:])
    on_site = {"active": int(active), "admitted": int(admitted)}
    out = summarize(state, lanes, on_site, history, last_minute, now_us)
    out["room"] = room
    if with_series:
        out["series"] = series(history, list(zip(windows, proxy, strict=True)))
    return out


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
