"""Squeezing a launch day into a short replay: fewer people (scale) in less time (speed).

A replay at ``scale=0.01, speed=60`` has one person in a hundred and runs a scenario minute in
a real second. Every rate the site and the line see is then ``scale * speed`` times the
scenario's (0.6 here), so the replay keeps the day's proportions: how long the line gets
relative to its outflow, how far the SMS gateway falls behind, when the dates run out.

Durations are divided by ``speed``, with floors where the real machinery has fixed costs a
compressed second cannot absorb (the gateway never suggests polling sooner than 2 s; a request
takes a few real milliseconds however fast the scenario runs). The floors are listed below and
reported with every run. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .scenario import Gateway, Site

# Real-second floors for compressed durations, and why.
MIN_GRACE_S = 10.0  # the gateway's polls are >= 2 s apart; keep several inside the grace
MIN_CLAIM_S = 10.0  # an admitted visitor notices at its next poll, up to ~2.3 s later
MIN_PASS_S = 60.0  # the whole booking flow, SMS delays included, must fit in one pass
MIN_PIN_TTL_S = 3.0  # reading the inbox and typing the PIN take real round trips
MIN_PIN_RESEND_S = 0.5
MIN_QUEUE_TIMEOUT_S = 1.0  # a request's real cost is milliseconds however fast the day runs
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


def site_env(site: Site, squeeze: Squeeze) -> dict[str, str]:
    """BACKEND_* variables for the booking site of a replay (inventory seeds a new DB only).

    Throughput is max_in_flight / latency; scaling both keeps it at scale * speed times the
    scenario's. When max_in_flight * scale drops below one worker, latency shrinks less.
    """
    workers = max(1, round(site.max_in_flight * squeeze.scale))
    stretch = workers / (site.max_in_flight * squeeze.scale * squeeze.speed)
    centres, days, per_day = inventory(site, squeeze.scale)
    return {
        "BACKEND_CENTRES": str(centres),
        "BACKEND_DAYS": str(days),
        "BACKEND_SLOTS_PER_DAY": str(per_day),
        "BACKEND_SMS_PER_SECOND": f"{squeeze.rate(site.sms_per_second[0][1]):.6g}",
        "BACKEND_MAX_IN_FLIGHT": str(workers),
        "BACKEND_BASE_LATENCY_MS": f"{site.base_latency_ms * stretch:.6g}",
        "BACKEND_LATENCY_PER_REQUEST_MS": f"{site.latency_per_request_ms * stretch:.6g}",
        "BACKEND_QUEUE_TIMEOUT_S": f"{squeeze.real(site.queue_timeout_s, MIN_QUEUE_TIMEOUT_S):.6g}",
        "BACKEND_PIN_TTL_S": f"{squeeze.real(site.pin_ttl_s, MIN_PIN_TTL_S):.6g}",
        "BACKEND_PIN_RESEND_S": f"{squeeze.real(site.pin_resend_s, MIN_PIN_RESEND_S):.6g}",
    }


def sms_schedule(site: Site, squeeze: Squeeze) -> list[tuple[float, float]]:
    """(real seconds after the start, SMS per second) for each change after the first."""
    return [
        (squeeze.real(minute * 60), squeeze.rate(per_second))
        for minute, per_second in site.sms_per_second[1:]
    ]


def room_settings(gateway: Gateway, squeeze: Squeeze) -> dict[str, float]:
    return {
        "rate_per_minute": squeeze.rate(gateway.rate_per_minute),
        "grace_seconds": squeeze.real(gateway.grace_seconds, MIN_GRACE_S),
        "claim_seconds": squeeze.real(gateway.claim_seconds, MIN_CLAIM_S),
        "pass_seconds": squeeze.real(gateway.pass_seconds, MIN_PASS_S),
    }


def rooms_toml(gateway: Gateway, squeeze: Squeeze) -> str:
    """The gateway's rooms file: the room `vaccination` protecting /book."""
    lines = [f"[rooms.{ROOM}]", 'title = "Replay"', 'paths = ["/book"]']
    lines += [f"{k} = {v:.6g}" for k, v in room_settings(gateway, squeeze).items()]
    return "\n".join(lines) + "\n"
