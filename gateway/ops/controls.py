"""Validating what ops ask to change: pure, so a bad form changes nothing at all.

Every field is checked before any is applied; one bad value rejects the whole request with a
message per field, and the running room stays exactly as it was.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from queue_core.rooms import LIMITS, MAX_CHALLENGE_BITS

MAX_RATE = 1_000_000.0
# Whole-number settings against abuse, and the most each may be set to.
ABUSE_LIMITS = {**LIMITS, "challenge_bits": MAX_CHALLENGE_BITS}
MAX_BANNER = 500
MAX_WHY = 500


@dataclass(frozen=True)
class Autopilot:
    enabled: bool = False
    target_p95_ms: float = 1000.0  # the booking site's latency to stay under
    max_error_rate: float = 0.02  # share of proxied requests failing (5xx) to stay under
    min_rate: float = 1.0
    max_rate: float = 600.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "target_p95_ms": self.target_p95_ms,
            "max_error_rate": self.max_error_rate,
            "min_rate": self.min_rate,
            "max_rate": self.max_rate,
        }

    @classmethod
    def from_json(cls, raw: str | None) -> Autopilot:
        """The settings a room has stored (defaults for any it has not, or cannot read)."""
        try:
            data = json.loads(raw or "{}")
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        try:
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except TypeError:
            return cls()


@dataclass(frozen=True)
class Changes:
    rate_per_minute: float | None = None
    max_active: int | None = None
    paused: bool | None = None
    closed: bool | None = None
    sold_out: bool | None = None
    opens_at_us: int | None = None  # 0 clears the schedule
    banner: dict[str, str] | None = None
    autopilot: Autopilot | None = None
    # Rotate the room's epoch: every admission pass issued so far is refused at once.
    revoke_passes: bool | None = None
    challenge: bool | None = None  # ask newcomers for a proof of work
    challenge_bits: int | None = None
    joins_per_ip: int | None = None
    joins_per_subnet: int | None = None
    sessions_per_pass: int | None = None
    why: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def store_kwargs(self) -> dict[str, Any]:
        names = (
            "rate_per_minute",
            "max_active",
            "paused",
            "closed",
            "sold_out",
            "opens_at_us",
            "banner",
            "revoke_passes",
            "challenge",
            *ABUSE_LIMITS,
        )
        out = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.autopilot is not None:
            out["autopilot"] = self.autopilot.as_dict()
        return out


def _number(raw: Any, name: str, errors: dict[str, str]) -> float | None:
    if isinstance(raw, bool):
        errors[name] = "must be a number"
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        errors[name] = "must be a number"
        return None
    if not math.isfinite(value):
        errors[name] = "must be a finite number"
        return None
    return value


def _flag(raw: Any, name: str, errors: dict[str, str]) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in {"1", "true", "on", "yes"}:
        return True
    if isinstance(raw, str) and raw.lower() in {"0", "false", "off", "no"}:
        return False
    errors[name] = "must be true or false"
    return None


def parse_changes(
    data: Mapping[str, Any],
    *,
    now_us: int,
    languages: Collection[str],
    autopilot: Autopilot | None = None,
) -> Changes:
    """Read a JSON object or a form. Unknown fields are errors too: a typo must not pass.

    `autopilot` is the room's stored autopilot: a partial update changes only the fields it
    names, and the result is validated as a whole."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    known = {
        "rate_per_minute",
        "max_active",
        "paused",
        "closed",
        "sold_out",
        "opens_at",
        "banner",
        "autopilot",
        "revoke_passes",
        "challenge",
        *ABUSE_LIMITS,
        "why",
        "csrf",
    }
    known |= {f"banner_{lang}" for lang in languages}
    for name in data:
        if name not in known:
            errors[name] = "is not a setting"

    if "rate_per_minute" in data:
        rate = _number(data["rate_per_minute"], "rate_per_minute", errors)
        if rate is not None and not 0 < rate <= MAX_RATE:
            errors["rate_per_minute"] = (
                f"must be above 0 and at most {MAX_RATE:,.0f} (to stop admitting, pause)"
            )
        elif rate is not None:
            values["rate_per_minute"] = rate
    if "max_active" in data:
        cap = _number(data["max_active"], "max_active", errors)
        if cap is not None and (cap != int(cap) or not 0 <= cap <= 10_000_000):
            errors["max_active"] = "must be a whole number from 0 (no limit) to 10,000,000"
        elif cap is not None:
            values["max_active"] = int(cap)
    for name in ("paused", "closed", "sold_out", "challenge"):
        if name in data:
            flag = _flag(data[name], name, errors)
            if flag is not None:
                values[name] = flag
    if "revoke_passes" in data:
        # Only ever true: there is no undoing a revocation, and `false` asking for nothing
        # would read as if it did something.
        if _flag(data["revoke_passes"], "revoke_passes", errors) is not True:
            errors["revoke_passes"] = "must be true (it revokes every pass issued so far)"
        else:
            values["revoke_passes"] = True
    for name, most in ABUSE_LIMITS.items():
        if name in data:
            n = _number(data[name], name, errors)
            least = 1 if name == "challenge_bits" else 0
            if n is not None and (n != int(n) or not least <= n <= most):
                errors[name] = f"must be a whole number from {least} to {most:,}" + (
                    "" if least else " (0 turns it off)"
                )
            elif n is not None:
                values[name] = int(n)
    if "opens_at" in data:
        raw = data["opens_at"]
        if raw in ("", None):
            values["opens_at_us"] = 0
        else:
            try:
                when = datetime.fromisoformat(str(raw))
            except ValueError:
                errors["opens_at"] = "must be a date and time like 2021-01-15T08:00+01:00"
            else:
                if when.tzinfo is None:
                    errors["opens_at"] = "needs a time zone, like +01:00"
                elif when.timestamp() * 1_000_000 <= now_us:
                    errors["opens_at"] = "is in the past"
                else:
                    values["opens_at_us"] = round(when.timestamp() * 1_000_000)

    banner = _banner(data, languages, errors)
    if banner is not None:
        values["banner"] = banner
    if "autopilot" in data:
        pilot = _autopilot(data["autopilot"], autopilot or Autopilot(), errors)
        if pilot is not None:
            values["autopilot"] = pilot
    why = str(data.get("why") or "").strip()
    if len(why) > MAX_WHY:
        errors["why"] = f"must be at most {MAX_WHY} characters"
    if errors:
        return Changes(errors=errors)
    return Changes(**values, why=why)


def _banner(
    data: Mapping[str, Any], languages: Collection[str], errors: dict[str, str]
) -> dict[str, str] | None:
    if "banner" in data:
        raw = data["banner"]
        if not isinstance(raw, Mapping):
            errors["banner"] = "must be an object of language: text"
            return None
        texts = dict(raw)
    elif any(f"banner_{lang}" in data for lang in languages):
        texts = {lang: data.get(f"banner_{lang}", "") for lang in languages}
    else:
        return None
    banner = {}
    for lang, text in texts.items():
        if lang not in languages:
            errors["banner"] = f"unknown language {lang!r}"
        elif not isinstance(text, str) or len(text) > MAX_BANNER:
            errors[f"banner_{lang}"] = f"must be text of at most {MAX_BANNER} characters"
        elif text.strip():
            banner[lang] = text.strip()
    return banner


def _autopilot(raw: Any, stored: Autopilot, errors: dict[str, str]) -> Autopilot | None:
    if not isinstance(raw, Mapping):
        errors["autopilot"] = "must be an object"
        return None
    allowed = set(Autopilot().as_dict())
    if set(raw) - allowed:
        errors["autopilot"] = f"unknown fields: {', '.join(sorted(set(raw) - allowed))}"
        return None
    values: dict[str, Any] = {}
    if "enabled" in raw:
        values["enabled"] = _flag(raw["enabled"], "autopilot.enabled", errors)
    limits = {
        "target_p95_ms": (10, 120_000),
        "max_error_rate": (0, 0.5),
        "min_rate": (0.01, MAX_RATE),
        "max_rate": (0.01, MAX_RATE),
    }
    for name, (lo, hi) in limits.items():
        if name in raw:
            v = _number(raw[name], f"autopilot.{name}", errors)
            if v is not None and not lo <= v <= hi:
                errors[f"autopilot.{name}"] = f"must be between {lo} and {hi}"
            values[name] = v
    if any(k.startswith("autopilot") for k in errors):
        return None
    pilot = dataclasses.replace(stored, **values)
    if pilot.min_rate > pilot.max_rate:
        errors["autopilot.min_rate"] = "must not be above max_rate"
        return None
    return pilot
