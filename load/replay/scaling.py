"""Squeezing a launch day into a short replay: fewer people (scale) in less time (speed).

A replay at ``scale=0.01, speed=60`` has one person in a hundred and runs a scenario minute in
a real second. Every rate the site and the line see is then ``scale * speed`` times the
scenario's (0.6 here), so the replay keeps the day's proportions: how long the line gets
relative to its outflow, how far the SMS gateway falls behind, when the dates run out.

Durations are divided by ``speed``, with floors where the real machinery has fixed costs a
compressed second cannot absorb (a request takes a few real milliseconds however fast the
scenario runs). The floors are listed below and reported with every run.

The room's grace period is special. The gateway derives from it how often a waiting visitor
checks (every 2 s near the front, up to a quarter of the grace period and at most 45 s
further back), and visitors check in real seconds, as browsers do: the replay never makes
them check sooner or later than the gateway says. Squeezing a 300 s grace to 5 s would make
140,000 visitors check every 2.5 s, 56,000 requests a second, which no real crowd of that
size makes. So the grace is squeezed only as far as the crowd's checks stay within
`POLL_BUDGET_PER_S` at the line's longest (the model's line, scaled), and never beyond the
scenario's own. A small replay keeps a short grace (people who give up are swept out soon,
as in scenario time); a full-size one keeps a realistic grace and realistic checks, and
pays for it in scenario time: a visitor who gave up keeps the place for longer, so more
admitted places go unclaimed (the gateway's no-show counter, in the report, says how many).
Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .model import fluid_peak
from .scenario import Scenario, Site

# Real-second floors for compressed durations, and why.
MIN_GRACE_S = 10.0  # the gateway's checks are >= 2 s apart; keep several inside the grace
# Status checks a second that the crowd at its longest would make if all checked at the
# ceiling (a quarter of the grace): a few thousand, what 140,000 real visitors make.
POLL_BUDGET_PER_S = 3000.0
MIN_CLAIM_S = 10.0  # an admitted visitor notices at its next poll, up to ~2.3 s later
MIN_PASS_S = 60.0  # the whole booking flow, SMS delays included, must fit in one pass
MIN_PIN_TTL_S = 3.0  # reading the inbox and typing the PIN take real round trips
MIN_PIN_RESEND_S = 0.5
MIN_QUEUE_TIMEOUT_S = 1.0  # a request's real cost is milliseconds however fast the day runs
# The site keeps at least this many workers (or all it has): one worker standing for sixteen
# turns every real millisecond of the site's own Python and SQLite time into a long queue in
# scenario time, and the scaled site falls over where the real one would not.
MIN_SITE_WORKERS = 4
ROOM = "vaccination"


@dataclass(frozen=True, slots=True)
class Squeeze:
    speed: float = 60.0  # scenario seconds per real second
    scale: float = 0.01  # share of the scenario's people who take part

    def __post_init__(self) -> None:
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise ValueError("speed must be a positive number")
        if not 0 < self.scale <= 1:
            raise ValueError("scale must be in (0, 1]")

    def real(self, scenario_seconds: float, floor: float = 0.0) -> float:
        return max(floor, scenario_seconds / self.speed)

    def scenario(self, real_seconds: float) -> float:
        return real_seconds * self.speed

    def rate(self, per_unit: float) -> float:
        """A scenario rate (people per minute or per second) as the replay's real rate."""
        return per_unit * self.scale * self.speed


def inventory(site: Site, scale: float) -> tuple[int, int, int]:
    """(centres, days, slots per day) holding about scale * the site's slots, at least 1."""
    target = max(1, round(site.slots * scale))
    centres = min(site.centres, target)
    days = min(site.days, math.ceil(target / centres))
    per_day = max(1, round(target / (centres * days)))
    return centres, days, per_day


def site_workers(site: Site, squeeze: Squeeze) -> tuple[int, float]:
    """(workers, latency stretch) of the replay's site.

    Throughput is workers / latency, and must be scale * speed times the scenario's: with
    `workers` = w instead of the scenario's K, each latency is multiplied by
    w / (K * scale * speed). The slowdown per other request is multiplied by K / w besides,
    so that the site slows down as much when the same share of its workers is busy.
    """
    full = site.max_in_flight
    workers = max(min(full, MIN_SITE_WORKERS), round(full * squeeze.scale))
    return workers, workers / (full * squeeze.scale * squeeze.speed)


def site_env(site: Site, squeeze: Squeeze) -> dict[str, str]:
    """BACKEND_* variables for the booking site of a replay (inventory seeds a new DB only)."""
    workers, stretch = site_workers(site, squeeze)
    per_request = site.latency_per_request_ms * stretch * site.max_in_flight / workers
    # A request waits as many service times before being turned away as it would at full
    # scale: the queue timeout stretches with the latency.
    queue_timeout = max(MIN_QUEUE_TIMEOUT_S, site.queue_timeout_s * stretch)
    centres, days, per_day = inventory(site, squeeze.scale)
    return {
        "BACKEND_CENTRES": str(centres),
        "BACKEND_DAYS": str(days),
        "BACKEND_SLOTS_PER_DAY": str(per_day),
        "BACKEND_SMS_PER_SECOND": f"{squeeze.rate(site.sms_per_second[0][1]):.6g}",
        "BACKEND_MAX_IN_FLIGHT": str(workers),
        "BACKEND_BASE_LATENCY_MS": f"{site.base_latency_ms * stretch:.6g}",
        "BACKEND_LATENCY_PER_REQUEST_MS": f"{per_request:.6g}",
        "BACKEND_QUEUE_TIMEOUT_S": f"{queue_timeout:.6g}",
        "BACKEND_PIN_TTL_S": f"{squeeze.real(site.pin_ttl_s, MIN_PIN_TTL_S):.6g}",
        "BACKEND_PIN_RESEND_S": f"{squeeze.real(site.pin_resend_s, MIN_PIN_RESEND_S):.6g}",
    }


def sms_schedule(site: Site, squeeze: Squeeze) -> list[tuple[float, float]]:
    """(real seconds after the start, SMS per second) for each change after the first."""
    return [
        (squeeze.real(minute * 60), squeeze.rate(per_second))
        for minute, per_second in site.sms_per_second[1:]
    ]


def grace_seconds(scenario: Scenario, squeeze: Squeeze) -> float:
    """The room's grace period in real seconds (see the module's docstring)."""
    gateway = scenario.gateway
    longest = fluid_peak(scenario.arrivals, gateway.rate_per_minute, scenario.duration_minutes)
    budget_floor = 4 * longest * squeeze.scale / POLL_BUDGET_PER_S
    squeezed = squeeze.real(gateway.grace_seconds, max(MIN_GRACE_S, budget_floor))
    return round(min(gateway.grace_seconds, squeezed), 1)


def room_settings(
    scenario: Scenario, squeeze: Squeeze, grace_s: float | None = None
) -> dict[str, float]:
    """The room's settings in real time; `grace_s` overrides the grace period."""
    gateway = scenario.gateway
    grace = grace_s if grace_s is not None else grace_seconds(scenario, squeeze)
    return {
        "rate_per_minute": squeeze.rate(gateway.rate_per_minute),
        "grace_seconds": grace,
        "claim_seconds": squeeze.real(gateway.claim_seconds, MIN_CLAIM_S),
        "pass_seconds": squeeze.real(gateway.pass_seconds, MIN_PASS_S),
    }


def rooms_toml(settings: dict[str, float]) -> str:
    """The gateway's rooms file: the room `vaccination` protecting /book."""
    lines = [f"[rooms.{ROOM}]", 'title = "Replay"', 'paths = ["/book"]']
    lines += [f"{k} = {v:.6g}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"
