"""A launch-day scenario: what the crowd does and what the site can take, read from TOML.

The format is documented in docs/REPLAY.md; `load/scenarios/*.toml` are the examples. Every
table maps onto one frozen dataclass below, unknown keys are refused (a typo must not
silently fall back to a default), and all times are *scenario* time: minutes after the
opening for the curve, seconds for durations. Scaling to a smaller, faster replay is
`load.replay.scaling`'s job, not the file's.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import SCENARIO_DIR


class ScenarioError(ValueError):
    """The scenario file is not usable; the message names the field."""


@dataclass(frozen=True, slots=True)
class Curve:
    """Arrivals per minute as (minute, per_minute) points, linear between them, zero outside.

    Two points at the same minute make a step, e.g. [[0, 0], [0, 9000]] for a doorbuster.
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise ScenarioError("arrivals.points needs at least two (minute, per_minute) points")
        for (m0, _), (m1, _) in zip(self.points, self.points[1:], strict=False):
            if m1 < m0:
                raise ScenarioError("arrivals.points must be in order of minute")
        for minute, rate in self.points:
            if not (math.isfinite(minute) and math.isfinite(rate)) or rate < 0:
                raise ScenarioError(f"arrivals.points: bad point ({minute}, {rate})")

    @property
    def start(self) -> float:
        return self.points[0][0]

    @property
    def end(self) -> float:
        return self.points[-1][0]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How simulated people act. Durations in scenario seconds unless named minutes, except
    two reload paces, which are real seconds: a person hammering reload and a script polling
    keep their pace however fast the replay runs the day (bot_poll_seconds and
    storm_interval_seconds)."""

    # Giving up while waiting: a Weibull patience. shape > 1 means the hazard (the chance of
    # giving up in the next minute, for someone still there) grows the longer they wait.
    patience_median_minutes: float = 60.0
    patience_shape: float = 1.5
    # A share of visitors ignore poll_after and refresh every bot_poll_seconds (real
    # seconds); they never give up.
    bot_share: float = 0.0
    bot_poll_seconds: float = 1.0
    # Refresh storm: arrivals in the first storm_minutes reload the page storm_refreshes
    # times, storm_interval_seconds (real seconds) apart, before they settle down.
    storm_minutes: float = 0.0
    storm_refreshes: int = 0
    storm_interval_seconds: float = 2.0
    # After a 5xx, 429 or a network error: wait (Retry-After, or backoff doubling each
    # time, whichever is longer) and try again, at most retry_max times per step.
    retry_max: int = 3
    retry_backoff_seconds: float = 5.0
    # Human time between the steps of the booking flow.
    think_phone_seconds: float = 15.0
    think_pin_seconds: float = 20.0
    think_slot_seconds: float = 20.0
    # Ask for another PIN after an expired or lost one, at most this many times in all.
    pin_requests_max: int = 3
    # Tries at booking (slot taken, day full) before registering without a date.
    book_attempts_max: int = 4

    def __post_init__(self) -> None:
        if self.patience_median_minutes <= 0 or self.patience_shape <= 0:
            raise ScenarioError("behaviour: patience_median_minutes and shape must be > 0")
        if not 0 <= self.bot_share <= 1:
            raise ScenarioError("behaviour: bot_share must be between 0 and 1")
        if self.retry_max < 0 or self.pin_requests_max < 1 or self.book_attempts_max < 1:
            raise ScenarioError("behaviour: retry_max >= 0, the other maxima >= 1")


@dataclass(frozen=True, slots=True)
class Site:
    """The booking site (booking_backend settings), at full scale."""

    centres: int = 5
    days: int = 14
    slots_per_day: int = 200
    # (minute, SMS per second) from that minute on; the first entry is the start rate.
    sms_per_second: tuple[tuple[float, float], ...] = ((0.0, 20.0),)
    max_in_flight: int = 8
    base_latency_ms: float = 40.0
    latency_per_request_ms: float = 15.0
    queue_timeout_s: float = 5.0
    pin_ttl_s: float = 300.0
    pin_resend_s: float = 60.0

    def __post_init__(self) -> None:
        if min(self.centres, self.days, self.slots_per_day, self.max_in_flight) < 1:
            raise ScenarioError("site: centres, days, slots_per_day, max_in_flight must be >= 1")
        if not self.sms_per_second or any(rate <= 0 for _, rate in self.sms_per_second):
            raise ScenarioError("site.sms_per_second: a list of (minute, rate > 0)")

    @property
    def slots(self) -> int:
        return self.centres * self.days * self.slots_per_day


@dataclass(frozen=True, slots=True)
class Gateway:
    """The waiting room's settings for the room `vaccination`, at full scale."""

    rate_per_minute: float = 600.0
    grace_seconds: float = 300.0
    claim_seconds: float = 300.0
    pass_seconds: float = 1200.0

    def __post_init__(self) -> None:
        if self.rate_per_minute <= 0:
            raise ScenarioError("gateway.rate_per_minute must be > 0")


@dataclass(frozen=True, slots=True)
class Targets:
    """Pass/fail thresholds for a replay through the gateway."""

    max_order_inversions: int = 0
    max_lost_visitors: int = 0
    # Median of |actual wait - promised wait| / promised, over admitted visitors.
    estimate_error_median_pct: float = 50.0


MEASURES = ("arrivals", "waiting", "admitted", "slots", "booked", "registered", "sold_out")


@dataclass(frozen=True, slots=True)
class Check:
    """A fact from the news the scenario must reproduce, in full-scale figures.

    Each is checked twice: on the model (a line served at gateway.rate_per_minute where
    nobody gives up, no HTTP; `load.replay.model.measure`) and on a replay's own results
    scaled back up (`load.replay.outcomes`). The measures:

    - "arrivals": people arriving between from_minute and to_minute;
    - "waiting": people in line at to_minute (the model's figure is an upper bound);
    - "admitted": people let through by to_minute;
    - "slots": the site's appointments;
    - "booked": appointments booked by to_minute;
    - "registered": people through the whole flow by to_minute, with a date or without;
    - "sold_out": the minute the last appointment went (inf if never).
    """

    what: str
    measure: str
    from_minute: float = 0.0
    to_minute: float = 0.0
    at_least: float = -math.inf
    at_most: float = math.inf

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ScenarioError(f"check {self.what!r}: unknown measure {self.measure!r}")

    def holds(self, value: float) -> bool:
        return self.at_least <= value <= self.at_most

    @property
    def target(self) -> str:
        low = None if self.at_least == -math.inf else f">= {self.at_least:,.0f}"
        high = None if self.at_most == math.inf else f"<= {self.at_most:,.0f}"
        return " and ".join(t for t in (low, high) if t) or "any"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    source: str
    opening: str  # clock time of minute 0, for the report ("08:00")
    duration_minutes: float
    arrivals: Curve
    arrivals_total: float  # what the curve must add up to (stated in the file)
    behaviour: Behaviour = field(default_factory=Behaviour)
    site: Site = field(default_factory=Site)
    gateway: Gateway = field(default_factory=Gateway)
    targets: Targets = field(default_factory=Targets)
    checks: tuple[Check, ...] = ()


_T = TypeVar("_T")


def _build(cls: type[_T], table: Any, where: str) -> _T:
    if not isinstance(table, Mapping):
        raise ScenarioError(f"[{where}] must be a table")
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ScenarioError(f"[{where}]: unknown setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, raw in table.items():
        default = known[key].default
        try:
            if isinstance(default, bool) or isinstance(raw, bool):
                raise TypeError
            if isinstance(default, int) and not isinstance(default, bool):
                if float(raw) != int(raw):
                    raise ValueError
                values[key] = int(raw)
            elif isinstance(default, float):
                values[key] = float(raw)
            elif isinstance(default, tuple):
                values[key] = tuple((float(a), float(b)) for a, b in raw)
            else:
                values[key] = str(raw)
        except (TypeError, ValueError):
            raise ScenarioError(f"[{where}]: {key} has an invalid value {raw!r}") from None
    try:
        return cls(**values)
    except TypeError as exc:
        raise ScenarioError(f"[{where}]: {exc}") from None


def parse_scenario(data: Mapping[str, Any], name: str) -> Scenario:
    """A scenario from parsed TOML; `name` is the file's stem."""
    top = {"title", "source", "opening", "duration_minutes", "arrivals", "behaviour", "site"}
    top |= {"gateway", "targets", "checks"}
    unknown = sorted(set(data) - top)
    if unknown:
        raise ScenarioError(f"{name}: unknown top-level key(s) {', '.join(unknown)}")
    arrivals = data.get("arrivals")
    if not isinstance(arrivals, Mapping) or set(arrivals) != {"points", "total"}:
        raise ScenarioError(f"{name}: [arrivals] needs exactly points = [...] and total = n")
    try:
        points = tuple((float(m), float(r)) for m, r in arrivals["points"])
        total = float(arrivals["total"])
        duration = float(data["duration_minutes"])
    except (KeyError, TypeError, ValueError):
        raise ScenarioError(f"{name}: arrivals or duration_minutes malformed") from None
    checks = tuple(
        _build(Check, table, f"checks {i}") for i, table in enumerate(data.get("checks", []))
    )
    return Scenario(
        name=name,
        title=str(data.get("title", name)),
        source=str(data.get("source", "")),
        opening=str(data.get("opening", "00:00")),
        duration_minutes=duration,
        arrivals=Curve(points),
        arrivals_total=total,
        behaviour=_build(Behaviour, data.get("behaviour", {}), "behaviour"),
        site=_build(Site, data.get("site", {}), "site"),
        gateway=_build(Gateway, data.get("gateway", {}), "gateway"),
        targets=_build(Targets, data.get("targets", {}), "targets"),
        checks=checks,
    )


def available() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by name (a file in load/scenarios/) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(
            f"no scenario {name_or_path!r}; known: {', '.join(available())}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return parse_scenario(data, path.stem)
