"""The ops dashboard's figures for one room: exact counters from Redis, not samples."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from queue_core.snapshot import Sample
from queue_core.store import LineStore

from ..proxy_stats import WINDOW_SECONDS, merge, percentile_ms, window_of

MINUTE_US = 60_000_000


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
    counts: Mapping[str, int],
    history: Sequence[Sample],
    proxy_last_minute: Mapping[str, int],
    now_us: int,
) -> dict[str, Any]:
    def num(name: str) -> float:
        try:
            return float(state.get(name, 0))
        except ValueError:
            return 0.0

    current = {
        f: num(k)
        for f, k in (
            ("seq", "seq"),
            ("processed", "processed"),
            ("admitted_total", "admitted_total"),
            ("abandoned_total", "abandoned_total"),
            ("no_show_total", "no_show_total"),
            ("arrived_total", "arrived_total"),
        )
    }
    then = sample_before(history, now_us - MINUTE_US)
    processed_pm = per_minute(current, then, "processed", now_us)
    rate = num("rate")
    paused = state.get("paused") == "1"
    outflow_pm = processed_pm if processed_pm > 0 else (0.0 if paused else rate)
    waiting = counts["waiting"] + counts["prequeue"]
    estimate = None if outflow_pm <= 0 else (waiting + 1) * 60 / outflow_pm
    clear = None if outflow_pm <= 0 else waiting * 60 / outflow_pm
    n = proxy_last_minute.get("n", 0)
    try:
        autopilot = json.loads(state.get("autopilot") or "{}")
    except ValueError:
        autopilot = {}
    try:
        banner = json.loads(state.get("banner") or "{}")
    except ValueError:
        banner = {}
    return {
        "now_us": now_us,
        "waiting": counts["waiting"],
        "prequeue": counts["prequeue"],
        "active": counts["active"],
        "admitted_unclaimed": counts["admitted"],
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
            "error_rate": round(proxy_last_minute.get("e", 0) / n, 4) if n else 0.0,
        },
        "new_arrival_wait_seconds": None if estimate is None else round(estimate),
        "line_clears_in_seconds": None if clear is None else round(clear),
        # Times Redis lost this room's data and the line was restored from tickets.
        "recoveries": int(num("recoveries")),
        "recovered_at_us": int(num("recovered_at")),
        "settings": {
            "paused": paused,
            "closed": state.get("closed") == "1",
            "sold_out": state.get("sold_out") == "1",
            "max_active": int(num("max_active")),
            "opens_at_us": int(num("opens_at")),
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
    latency = {
        "t": [w * WINDOW_SECONDS * 1000 for w, _ in proxy],
        "p95_ms": [percentile_ms(c, 0.95) for _, c in proxy],
        "error_rate": [round(c.get("e", 0) / c["n"], 4) if c.get("n") else None for _, c in proxy],
    }
    return {"line": points, "backend": latency}


async def load(store: LineStore, room: str, *, with_series: bool = False) -> dict[str, Any]:
    k = store.keys(room)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hgetall(k.state)
        for key in (k.line, k.pre, k.active, k.admitted):
            pipe.zcard(key)
        reply = await pipe.execute()
    (sec, usec), raw_state, waiting, prequeue, active, admitted = reply
    now_us = int(sec) * 1_000_000 + int(usec)
    state = {_s(a): _s(b) for a, b in raw_state.items()}
    history = await store.history(room, 360 if with_series else 8)
    per_minute_windows = 60 // WINDOW_SECONDS
    count = 10 * per_minute_windows if with_series else per_minute_windows
    windows = [window_of(now_us / 1e6) - i for i in range(count)][::-1]
    proxy = await store.proxy_windows(room, windows)
    last_minute = merge(proxy[-per_minute_windows:])
    counts = {"waiting": waiting, "prequeue": prequeue, "active": active, "admitted": admitted}
    out = summarize(state, counts, history, last_minute, now_us)
    out["room"] = room
    shares = store.lane_shares(room)
    if len(shares) > 1:
        async with store.redis.pipeline(transaction=False) as pipe:
            for name in shares:
                pipe.zcard(k.lane(name).line)
            lane_waiting = await pipe.execute()
        out["lanes"] = {
            name or "main": {"share": round(share, 4), "waiting": w}
            for (name, share), w in zip(shares.items(), lane_waiting, strict=True)
        }
        out["waiting"] = sum(lane_waiting)
    if with_series:
        out["series"] = series(history, list(zip(windows, proxy, strict=True)))
    return out


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
