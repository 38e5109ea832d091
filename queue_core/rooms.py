"""Waiting-room definitions: a TOML file of rooms, with environment overrides.

```toml
[rooms.vaccination]
title = "Vaccination booking"
paths = ["/book"]
rate_per_minute = 120
```

Any field can be overridden as ``WAITROOM_ROOM_<NAME>_<FIELD>``, e.g.
``WAITROOM_ROOM_VACCINATION_RATE_PER_MINUTE=30`` (paths comma-separated).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .keys import LANE_NAME, ROOM_NAME

# Most leading zero bits a proof of work may ask for: 28 is minutes of a phone's time already.
MAX_CHALLENGE_BITS = 28
LIMITS = {"joins_per_ip": 10_000_000, "joins_per_subnet": 10_000_000, "sessions_per_pass": 1000}


class ConfigError(ValueError):
    """The rooms file or an override is not usable; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class RoomConfig:
    name: str
    paths: tuple[str, ...]
    title: str = ""
    rate_per_minute: float = 60.0
    # Most visitors released at once after a pause or outage; 0 means two seconds of slots.
    burst: int = 0
    grace_seconds: float = 300.0
    claim_seconds: float = 300.0
    pass_seconds: float = 1200.0
    # A scheduled opening, ISO 8601 with a time zone ("2021-01-15T08:00:00+01:00"), or "".
    opens_at: str = ""
    # Where visitors can still go once every date is booked (e.g. register without a date).
    sold_out_url: str = ""
    # The time zone visitors live in, for the times pages show ("Europe/Prague").
    timezone: str = "UTC"
    # Priority lanes, entered by invitation: lane name -> share of the outflow while people
    # wait in it ({"over80" = 0.5}). The main lane has the rest; an empty lane's share goes
    # to the others.
    lanes: Mapping[str, float] = dataclass_field(default_factory=dict)
    # New places per address, and per /24 (IPv4) or /64 (IPv6) subnet, in each join window;
    # 0 turns a limit off. Generous, because a mobile carrier puts many people behind one
    # address. A visitor who already holds a place never counts again.
    joins_per_ip: int = 60
    joins_per_subnet: int = 600
    join_window_seconds: float = 600.0
    # A proof-of-work puzzle the browser solves before joining (off unless set), and its
    # difficulty in leading zero bits of SHA-256: each bit doubles the work.
    challenge: bool = False
    challenge_bits: int = 16
    # Browsers one admission pass may be used from (a copied pass opens no more); 0: any.
    sessions_per_pass: int = 2
    # While the line's Redis cannot be reached: False (fail closed) keeps everyone waiting in
    # their place and lets nobody new through; True (fail open) lets everyone through to the
    # site, each with a pass of the usual lifetime, until the line is back.
    fail_open: bool = False

    def __post_init__(self) -> None:
        if not ROOM_NAME.match(self.name):
            raise ConfigError(f"room name {self.name!r}: use a-z, 0-9, '-' or '_' (max 32)")
        if not self.paths:
            raise ConfigError(f"room {self.name}: paths must name at least one path prefix")
        for path in self.paths:
            if not path.startswith("/") or path.startswith("//") or "\\" in path:
                raise ConfigError(f"room {self.name}: path {path!r} must start with a single /")
        for field in ("rate_per_minute", "grace_seconds", "claim_seconds", "pass_seconds"):
            value = getattr(self, field)
            if not math.isfinite(value) or value < 0 or (field != "rate_per_minute" and value == 0):
                raise ConfigError(f"room {self.name}: {field} must be a positive number")
        if self.burst < 0:
            raise ConfigError(f"room {self.name}: burst must be 0 (automatic) or more")
        for field, most in LIMITS.items():
            value = getattr(self, field)
            if not 0 <= value <= most:
                raise ConfigError(f"room {self.name}: {field} must be from 0 to {most:,}")
        if not 1 <= self.challenge_bits <= MAX_CHALLENGE_BITS:
            raise ConfigError(
                f"room {self.name}: challenge_bits must be from 1 to {MAX_CHALLENGE_BITS}"
            )
        if not math.isfinite(self.join_window_seconds) or self.join_window_seconds < 1:
            raise ConfigError(f"room {self.name}: join_window_seconds must be 1 or more")
        if self.opens_at:
            try:
                parsed = datetime.fromisoformat(self.opens_at)
            except ValueError as exc:
                raise ConfigError(f"room {self.name}: opens_at is not an ISO 8601 time") from exc
            if parsed.tzinfo is None:
                raise ConfigError(f"room {self.name}: opens_at needs a time zone, e.g. +01:00")
        for lane, share in self.lanes.items():
            if not LANE_NAME.match(lane):
                raise ConfigError(f"room {self.name}: lane {lane!r}: use a-z, 0-9, '_' (max 16)")
            if not isinstance(share, int | float) or not 0 < share < 1:
                raise ConfigError(f"room {self.name}: lane {lane} share must be between 0 and 1")
        if sum(self.lanes.values()) >= 1:
            raise ConfigError(f"room {self.name}: lane shares must leave some for the main lane")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"room {self.name}: unknown timezone {self.timezone!r}") from exc
        if self.sold_out_url and not (
            self.sold_out_url.startswith(("https://", "http://"))
            or (self.sold_out_url.startswith("/") and not self.sold_out_url.startswith("//"))
        ):
            raise ConfigError(f"room {self.name}: sold_out_url must be a path or an http(s) URL")

    def lane_shares(self) -> dict[str, float]:
        return {"": 1.0 - sum(self.lanes.values()), **self.lanes}

    @property
    def opens_at_us(self) -> int:
        if not self.opens_at:
            return 0
        return round(datetime.fromisoformat(self.opens_at).timestamp() * 1_000_000)

    @property
    def entry_path(self) -> str:
        return self.paths[0]

    def protects(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.paths)


def _coerce(field: dataclasses.Field[Any], raw: Any, where: str) -> Any:
    try:
        if field.name == "lanes":
            if isinstance(raw, str):  # from the environment: "over80=0.5,carers=0.1"
                pairs = (p.split("=", 1) for p in raw.split(",") if p.strip())
                return {k.strip(): float(v) for k, v in pairs}
            return {str(k): float(v) for k, v in dict(raw).items()}
        if field.name == "paths":
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(p).strip() for p in items if str(p).strip())
        if field.type == "bool":
            return _boolean(raw)
        if field.type == "float":
            return float(raw)
        if field.type == "int":
            return int(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {field.name} has an invalid value {raw!r}") from exc


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a yes/no value: {raw!r}")


def parse_rooms(data: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, RoomConfig]:
    fields = {f.name: f for f in dataclasses.fields(RoomConfig) if f.name != "name"}
    rooms: dict[str, RoomConfig] = {}
    for name, table in (data.get("rooms") or {}).items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"[rooms.{name}] must be a table")
        values: dict[str, Any] = {}
        for key, raw in table.items():
            if key not in fields:
                raise ConfigError(f"[rooms.{name}]: unknown setting {key!r}")
            values[key] = _coerce(fields[key], raw, f"[rooms.{name}]")
        env_prefix = f"WAITROOM_ROOM_{name.upper().replace('-', '_')}_"
        for key, field in fields.items():
            raw_env = environ.get(env_prefix + key.upper())
            if raw_env is not None:
                values[key] = _coerce(field, raw_env, env_prefix + key.upper())
        rooms[name] = RoomConfig(name=name, **values)
    if not rooms:
        raise ConfigError("no rooms defined: add a [rooms.NAME] table with paths = [...]")
    for a in rooms.values():
        for b in rooms.values():
            clash = next((p for p in b.paths if a is not b and a.protects(p)), None)
            if clash:
                raise ConfigError(f"rooms {a.name} and {b.name} both protect {clash}")
    return rooms


def load_rooms(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> dict[str, RoomConfig]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read rooms file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"rooms file {path} is not valid TOML: {exc}") from exc
    return parse_rooms(data, os.environ if environ is None else environ)
