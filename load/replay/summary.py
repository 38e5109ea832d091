"""From a replay's records to figures and pass/fail checks (summary.json). Pure, no I/O.

Order inversions are counted from evidence, not from noticing times: visitor B counts as
admitted out of order when some A whose join had *completed* before B's join *started* was
still told "waiting" (in a request sent more than `tolerance_s` after B held its pass).
Noticing late because of a long poll interval is therefore never an inversion.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .outcomes import launch_day
from .record import (
    BOOKED,
    ERROR,
    GAVE_UP,
    INBOX,
    JOIN,
    LATE_S,
    OUTCOMES,
    REGISTERED,
    SITE,
    STATUS,
    Recorder,
    VisitorRecord,
    percentile,
)
from .run import GATEWAY, RunResult

ENDED = (BOOKED, REGISTERED, GAVE_UP, ERROR)
INVERSION_TOLERANCE_S = 0.25  # a gateway snapshot is at most a tick (0.05 s) old, plus slack
DRIVER_LATE_P99_LIMIT_S = LATE_S


def order_inversions(
    visitors: Sequence[VisitorRecord], tolerance_s: float = INVERSION_TOLERANCE_S
) -> list[tuple[int, int]]:
    """(earlier, later) pairs: `later` joined after `earlier` had joined, and was admitted
    while `earlier` was still being told to wait. One pair per out-of-order visitor."""
    earlier = sorted(
        (v for v in visitors if v.join_done is not None and v.last_waiting_at is not None),
        key=lambda v: v.join_done or 0.0,
    )
    done_times = [v.join_done or 0.0 for v in earlier]
    # Running maximum of "last told to wait" over everyone who had joined by a moment.
    best: list[tuple[float, int]] = []
    for v in earlier:
        entry = (v.last_waiting_at or 0.0, v.index)
        best.append(max(best[-1], entry) if best else entry)
    pairs = []
    for b in visitors:
        if b.admitted_at is None or b.join_started is None:
            continue
        k = bisect.bisect_left(done_times, b.join_started)
        if k and best[k - 1][0] > b.admitted_at + tolerance_s:
            pairs.append((best[k - 1][1], b.index))
    return pairs


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _latency(recorder: Recorder, kind: str) -> dict[str, Any]:
    buckets = recorder.buckets[kind].values()
    requests = sum(b.count for b in buckets)
    errors = sum(b.errors for b in buckets)
    whole = recorder.latency[kind]
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": _round(errors / requests if requests else 0.0, 4),
        "p50_ms": _round(_ms(whole.percentile(50)), 1),
        "p95_ms": _round(_ms(whole.percentile(95)), 1),
        "p99_ms": _round(_ms(whole.percentile(99)), 1),
        "statuses": {str(k): v for k, v in sorted(recorder.statuses[kind].items())},
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def estimate_errors(visitors: Sequence[VisitorRecord]) -> list[float]:
    """(actual - promised) / promised, in percent, for admitted visitors given an estimate."""
    errors = []
    for v in visitors:
        wait = v.wait_s
        if wait is not None and v.promised_s:
            errors.append((wait - v.promised_s) / v.promised_s * 100)
    return errors


def cpu_figures(result: RunResult) -> dict[str, Any]:
    """CPU seconds per party over the run, cores on average, and the driver's and the
    gateway's CPU per request sent."""
    cpu = result.cpu_s
    requests = result.recorder.requests()
    seconds = result.duration_s or 1.0
    out: dict[str, Any] = {"seconds": dict(cpu)}
    out["cores"] = {name: round(value / seconds, 3) for name, value in cpu.items()}
    for party in ("driver", "gateway"):
        if party in cpu and requests:
            out[f"{party}_us_per_request"] = round(cpu[party] / requests * 1e6, 1)
    return out


def gateway_counters(result: RunResult) -> dict[str, Any] | None:
    """The gateway's own totals (from its /metrics) over the run, and its peak line."""
    samples = result.gateway_samples
    if not samples:
        return None
    first, last = samples[0], samples[-1]
    peak = max(samples, key=lambda s: s.waiting)
    return {
        "samples": len(samples),
        "admitted": round(last.admitted - first.admitted),
        "abandoned": round(last.abandoned - first.abandoned),
        "no_shows": round(last.no_shows - first.no_shows),
        "peak_waiting": round(peak.waiting),
        "peak_waiting_at_s": peak.at,
        "rate_per_minute": last.rate_per_minute,
    }


def _check(name: str, value: Any, target: str, passed: bool | None) -> dict[str, Any]:
    return {"name": name, "value": value, "target": target, "passed": passed}


def summarize(result: RunResult) -> dict[str, Any]:
    visitors = result.visitors
    speed = result.squeeze.speed
    outcomes = Counter(v.outcome for v in visitors)
    waits = [w for v in visitors if (w := v.wait_s) is not None]
    errors = estimate_errors(visitors)
    abs_errors = [abs(e) for e in errors]
    in_range = [
        v.promised_low_s <= w <= v.promised_high_s
        for v in visitors
        if (w := v.wait_s) is not None
        and v.promised_low_s is not None
        and v.promised_high_s is not None
    ]
    inversions = order_inversions(visitors)
    lost = [v.index for v in visitors if v.lapsed]
    verified = sum(1 for v in visitors if v.verified_at is not None)
    # Who got through: verified a phone and finished; one still choosing a slot when the
    # replay's time ran out may yet book or not.
    got_through = sum(1 for v in visitors if v.verified_at is not None and v.outcome in ENDED)
    booked = outcomes[BOOKED]
    slots = result.slots_before
    site_booked = (
        slots - result.slots_after if slots is not None and result.slots_after is not None else None
    )
    stats = result.stats
    lateness = result.recorder.lateness
    late_p99 = lateness.percentile(99)
    busiest = max(stats.seconds, key=lambda s: s.held, default=None)
    figures: dict[str, Any] = {
        "visitors": len(visitors),
        "bots": sum(v.bot for v in visitors),
        "arrived": sum(1 for v in visitors if v.arrived_at is not None),
        "outcomes": {name: outcomes[name] for name in OUTCOMES},
        "admitted": sum(1 for v in visitors if v.admitted_at is not None),
        "verified_phone": verified,
        "got_through": got_through,
        "booked": booked,
        "registered_without_date": outcomes[REGISTERED],
        "sold_out_minute": sold_out_minute(result),
        "slots": slots,
        "slots_booked_per_site": site_booked,
        "pin_requests": sum(v.pin_requests for v in visitors),
        "retries": sum(v.retries for v in visitors),
        "order_inversions": len(inversions),
        "inversion_examples": [list(p) for p in inversions[:10]],
        "position_rises": sum(v.position_rises for v in visitors),
        "lost_visitors": len(lost),
        "wait_real_s": {
            "p50": _round(percentile(waits, 50)),
            "p90": _round(percentile(waits, 90)),
            "max": _round(max(waits) if waits else None),
        },
        "wait_scenario_min": {
            "p50": _round((percentile(waits, 50) or 0) * speed / 60, 1) if waits else None,
            "p90": _round((percentile(waits, 90) or 0) * speed / 60, 1) if waits else None,
            "max": _round(max(waits) * speed / 60, 1) if waits else None,
        },
        "estimate_error_pct": {
            "samples": len(errors),
            "median_abs": _round(statistics.median(abs_errors), 1) if errors else None,
            "median_signed": _round(statistics.median(errors), 1) if errors else None,
            "p90_abs": _round(percentile(abs_errors, 90), 1),
            "share_within_promised_range": _round(sum(in_range) / len(in_range), 3)
            if in_range
            else None,
        },
        "site": _latency(result.recorder, SITE),
        "gateway_status": _latency(result.recorder, STATUS),
        "gateway_join": _latency(result.recorder, JOIN),
        "sms_inbox": _latency(result.recorder, INBOX),
        "driver": {
            "steps": stats.steps,
            "requests": lateness.count,
            "requests_per_s": _round(lateness.count / result.duration_s, 1)
            if result.duration_s
            else None,
            "max_present": stats.max_present,
            "max_held": stats.max_held,
            "held_at": busiest.at if busiest else None,
            "seconds_with_overdue": sum(1 for s in stats.seconds if s.overdue),
            "max_overdue": max((s.overdue for s in stats.seconds), default=0),
            "lateness_s": {
                "p50": _round(lateness.percentile(50), 4),
                "p95": _round(lateness.percentile(95), 4),
                "p99": _round(late_p99, 4),
                "max": _round(lateness.max, 3),
                "share_late": _round(lateness.share_above(LATE_S), 5),
            },
            "cpu_s": _round(stats.cpu_s, 1),
            "max_loop_gap_s": _round(stats.max_loop_gap_s, 3),
            "max_rss_mb": _round(stats.max_rss_mb, 0),
            "crashes": stats.crashes,
            "stopped_at_time_limit": stats.stopped_early,
        },
    }
    figures["cpu"] = cpu_figures(result)
    figures["gateway_counters"] = gateway_counters(result)
    t = result.scenario.targets
    checks = [
        _check("no_driver_crashes", stats.crashes, "0", stats.crashes == 0),
        _check(
            "driver_kept_up",
            _round(late_p99, 3),
            f"lateness p99 <= {DRIVER_LATE_P99_LIMIT_S} s",
            late_p99 is None or late_p99 <= DRIVER_LATE_P99_LIMIT_S,
        ),
        _check(
            "site_agrees_on_bookings",
            site_booked,
            f"== bookings seen by visitors ({booked})",
            None if site_booked is None else site_booked == booked,
        ),
    ]
    if result.mode == GATEWAY:
        expected = min(slots, got_through) if slots is not None else None
        median_abs = figures["estimate_error_pct"]["median_abs"]
        checks += [
            _check(
                "order_inversions",
                len(inversions),
                f"<= {t.max_order_inversions}",
                len(inversions) <= t.max_order_inversions,
            ),
            _check(
                "positions_never_rise",
                figures["position_rises"],
                "0",
                not figures["position_rises"],
            ),
            _check(
                "lost_visitors",
                len(lost),
                f"<= {t.max_lost_visitors}",
                len(lost) <= t.max_lost_visitors,
            ),
            _check(
                "estimate_error_median_pct",
                median_abs,
                f"<= {t.estimate_error_median_pct:g}",
                None if median_abs is None else median_abs <= t.estimate_error_median_pct,
            ),
            _check(
                "bookings_match_supply",
                booked,
                f"== min(slots, visitors who verified a phone and finished) = {expected}",
                None if expected is None else booked == expected,
            ),
        ]
    facts = launch_day(result)
    return {
        "scenario": result.scenario.name,
        "title": result.scenario.title,
        "mode": result.mode,
        "speed": speed,
        "scale": result.squeeze.scale,
        "duration_real_s": _round(result.duration_s, 2),
        "limit_real_s": _round(result.limit_s, 2),
        "room": result.room,
        "site_env": result.site_env,
        "sms_changes": result.sms_changes,
        "figures": figures,
        "checks": checks,
        "launch_day": facts,
        "passed": all(c["passed"] is not False for c in [*checks, *facts]),
    }


def compare(gateway: dict[str, Any], direct: dict[str, Any]) -> dict[str, Any]:
    """The same crowd with and without the line, side by side."""

    def pick(s: dict[str, Any]) -> dict[str, Any]:
        f = s["figures"]
        return {
            "completed": f["booked"] + f["registered_without_date"],
            "booked": f["booked"],
            "registered_without_date": f["registered_without_date"],
            "sold_out_minute": f["sold_out_minute"],
            "gave_up": f["outcomes"]["gave_up"],
            "errors": f["outcomes"]["error"],
            "unfinished": f["outcomes"]["unfinished"],
            "site_requests": f["site"]["requests"],
            "site_errors": f["site"]["errors"],
            "site_error_rate": f["site"]["error_rate"],
            "site_p50_ms": f["site"]["p50_ms"],
            "site_p95_ms": f["site"]["p95_ms"],
            "pin_requests": f["pin_requests"],
            "retries": f["retries"],
        }

    line, bare = pick(gateway), pick(direct)
    checks = [
        _check(
            "line_completes_more_journeys",
            line["completed"],
            f"> straight at the site ({bare['completed']})",
            line["completed"] > bare["completed"],
        ),
        _check(
            "line_spares_the_site_errors",
            line["site_errors"],
            f"< straight at the site ({bare['site_errors']})",
            line["site_errors"] < bare["site_errors"],
        ),
    ]
    return {"with_gateway": line, "straight_at_site": bare, "checks": checks}


def sold_out_minute(result: RunResult) -> float | None:
    """The scenario minute of the last booking, if the appointments ran out; else None."""
    if result.slots_after != 0:
        return None
    times = [v.done_at for v in result.visitors if v.outcome == BOOKED and v.done_at is not None]
    return _round(result.squeeze.scenario(max(times)) / 60, 1) if times else None
