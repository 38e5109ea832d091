"""Settings of the booking site: one frozen dataclass, read from BACKEND_* variables.

| variable | default | meaning |
| --- | --- | --- |
| BACKEND_MAX_IN_FLIGHT | 8 | requests served at once; the rest wait |
| BACKEND_BASE_LATENCY_MS | 40 | service time of one request on an idle site |
| BACKEND_LATENCY_PER_REQUEST_MS | 15 | extra service time per other request in the system |
| BACKEND_QUEUE_TIMEOUT_S | 5 | how long a request waits for a worker before a 503 |
| BACKEND_DB | .waitroom/booking.sqlite3 | SQLite file; bookings survive restarts |
| BACKEND_CENTRES | 5 | a number of built-in centres, or names separated by ";" |
| BACKEND_DAYS | 14 | bookable days per centre |
| BACKEND_SLOTS_PER_DAY | 200 | appointments per centre and day |
| BACKEND_FIRST_DAY | today | first bookable day (YYYY-MM-DD) |
| BACKEND_SMS_PER_SECOND | 20 | SMS gateway throughput (0.01 to 100000); ops can change it live |
| BACKEND_PIN_TTL_S | 300 | a PIN is valid this long after it was requested |
| BACKEND_PIN_ATTEMPTS | 3 | wrong PINs allowed before a new one is needed |
| BACKEND_PIN_RESEND_S | 60 | a repeated PIN request within this reuses the PIN |
| BACKEND_SESSION_SECRET | random per process | signs the session cookie |
| BACKEND_ADMIN_TOKEN | unset (admin off) | bearer token of /_backend/admin/* |
| BACKEND_SIM_INBOX | 0 | 1 opens /_sim/inbox/{phone} (simulation only) |
| BACKEND_WAITROOM_SECRET | unset (no check) | the gateway's secrets: require an admission pass |
| BACKEND_WAITROOM_ROOM | vaccination | the room whose pass is required |

Inventory settings (centres, days, slots per day, first day) only seed a new database file;
an existing file keeps the inventory it was created with, plus any slots ops released since.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB_PATH = REPO_ROOT / ".waitroom" / "booking.sqlite3"

# Real vaccination centres of the Czech launch; beyond this list centres get numbered names.
BUILT_IN_CENTRES = (
    "Praha – Výstaviště",
    "Brno – Exhibition Centre",
    "Ostrava – Černá louka",
    "Plzeň – Lochotín University Hospital",
    "Olomouc – Flora Exhibition Grounds",
    "Liberec – Regional Hospital",
    "Hradec Králové – University Hospital",
    "České Budějovice – Exhibition Grounds",
    "Ústí nad Labem – Masaryk Hospital",
    "Pardubice – Regional Hospital",
    "Jihlava – Regional Hospital",
    "Zlín – Tomas Bata Hospital",
    "Karlovy Vary – Regional Hospital",
    "Kladno – Regional Hospital",
)
MAX_CENTRES = 1000
MAX_SLOTS_PER_DAY = 10_000
MAX_DAYS = 366
# An operator slower than one SMS a minute and a half, or faster than any real one, is a
# typo; and at 1e-300 a second the next delivery time is past anything a clock can show.
MIN_SMS_PER_SECOND = 0.01
MAX_SMS_PER_SECOND = 100_000.0

_Number = TypeVar("_Number", int, float)


@dataclass(frozen=True)
class Centre:
    id: str  # URL-safe slug of the name
    name: str


def slugify(name: str) -> str:
    """ "Plzeň – Lochotín" -> "plzen-lochotin": an id that is safe in URLs and forms."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def centres_from_names(names: list[str]) -> tuple[Centre, ...]:
    centres = tuple(Centre(slugify(name), name) for name in names)
    ids = [centre.id for centre in centres]
    if not centres or "" in ids or len(set(ids)) != len(ids):
        raise ValueError(
            "BACKEND_CENTRES must name distinct centres (separated by ';'), got "
            f"{[c.name for c in centres]}"
        )
    return centres


def numbered_centres(count: int) -> tuple[Centre, ...]:
    if not 1 <= count <= MAX_CENTRES:
        raise ValueError(f"BACKEND_CENTRES must be between 1 and {MAX_CENTRES}, got {count}")
    names = list(BUILT_IN_CENTRES[:count])
    names += [f"Vaccination centre {i}" for i in range(len(names) + 1, count + 1)]
    return centres_from_names(names)


@dataclass(frozen=True)
class BackendSettings:
    """Everything configurable; see the module docstring for the variable of each."""

    max_in_flight: int = 8
    base_latency_ms: float = 40.0
    latency_per_request_ms: float = 15.0
    queue_timeout_s: float = 5.0
    db_path: Path = DEFAULT_DB_PATH
    centres: tuple[Centre, ...] = numbered_centres(5)
    days: int = 14
    slots_per_day: int = 200
    first_day: date | None = None  # None: the day the database is created
    sms_per_second: float = 20.0
    pin_ttl_s: float = 300.0
    pin_attempts: int = 3
    pin_resend_after_s: float = 60.0
    sim_inbox: bool = False
    waitroom_room: str = "vaccination"
    # Secrets are kept out of repr so that logging the settings never prints them.
    admin_token: str | None = field(default=None, repr=False)
    session_secret: str | None = field(default=None, repr=False)
    waitroom_secrets: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        _check_at_least("max_in_flight (BACKEND_MAX_IN_FLIGHT)", self.max_in_flight, 1)
        _check_at_least("days (BACKEND_DAYS)", self.days, 1, MAX_DAYS)
        _check_at_least(
            "slots_per_day (BACKEND_SLOTS_PER_DAY)", self.slots_per_day, 1, MAX_SLOTS_PER_DAY
        )
        _check_at_least("pin_attempts (BACKEND_PIN_ATTEMPTS)", self.pin_attempts, 1)
        latencies = {
            "base_latency_ms (BACKEND_BASE_LATENCY_MS)": self.base_latency_ms,
            "latency_per_request_ms (BACKEND_LATENCY_PER_REQUEST_MS)": self.latency_per_request_ms,
            "pin_resend_after_s (BACKEND_PIN_RESEND_S)": self.pin_resend_after_s,
        }
        for name, value in latencies.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        positive = {
            "queue_timeout_s (BACKEND_QUEUE_TIMEOUT_S)": self.queue_timeout_s,
            "pin_ttl_s (BACKEND_PIN_TTL_S)": self.pin_ttl_s,
        }
        for name, value in positive.items():
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if not sms_rate_allowed(self.sms_per_second):
            raise ValueError(
                "sms_per_second (BACKEND_SMS_PER_SECOND) must be between "
                f"{MIN_SMS_PER_SECOND:g} and {MAX_SMS_PER_SECOND:g}, got {self.sms_per_second}"
            )
        if str(self.db_path) in ("", ":memory:") or str(self.db_path).startswith("file::memory:"):
            raise ValueError("BACKEND_DB must be a file path: bookings must survive a restart")
        if not self.centres:
            raise ValueError("at least one centre is needed (BACKEND_CENTRES)")
        if not self.waitroom_room:
            raise ValueError("BACKEND_WAITROOM_ROOM must not be empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BackendSettings:
        env = os.environ if environ is None else environ

        def number(name: str, parse: Callable[[str], _Number], default: _Number) -> _Number:
            return _env_number(env, name, parse, default)

        def text(name: str) -> str | None:
            return env.get(name, "").strip() or None

        return cls(
            max_in_flight=number("BACKEND_MAX_IN_FLIGHT", int, cls.max_in_flight),
            base_latency_ms=number("BACKEND_BASE_LATENCY_MS", float, cls.base_latency_ms),
            latency_per_request_ms=number(
                "BACKEND_LATENCY_PER_REQUEST_MS", float, cls.latency_per_request_ms
            ),
            queue_timeout_s=number("BACKEND_QUEUE_TIMEOUT_S", float, cls.queue_timeout_s),
            db_path=Path(text("BACKEND_DB") or DEFAULT_DB_PATH),
            centres=_env_centres(text("BACKEND_CENTRES")) or cls.centres,
            days=number("BACKEND_DAYS", int, cls.days),
            slots_per_day=number("BACKEND_SLOTS_PER_DAY", int, cls.slots_per_day),
            first_day=_env_date("BACKEND_FIRST_DAY", text("BACKEND_FIRST_DAY")),
            sms_per_second=number("BACKEND_SMS_PER_SECOND", float, cls.sms_per_second),
            pin_ttl_s=number("BACKEND_PIN_TTL_S", float, cls.pin_ttl_s),
            pin_attempts=number("BACKEND_PIN_ATTEMPTS", int, cls.pin_attempts),
            pin_resend_after_s=number("BACKEND_PIN_RESEND_S", float, cls.pin_resend_after_s),
            sim_inbox=_env_flag("BACKEND_SIM_INBOX", text("BACKEND_SIM_INBOX")),
            waitroom_room=text("BACKEND_WAITROOM_ROOM") or cls.waitroom_room,
            admin_token=text("BACKEND_ADMIN_TOKEN"),
            session_secret=text("BACKEND_SESSION_SECRET"),
            waitroom_secrets=tuple(
                s.strip() for s in env.get("BACKEND_WAITROOM_SECRET", "").split(",") if s.strip()
            ),
        )


def sms_rate_allowed(per_second: float) -> bool:
    """Whether ``per_second`` is a believable SMS throughput, at start-up or set live."""
    # NaN fails both comparisons; an int is compared exactly, so a huge one cannot overflow.
    return MIN_SMS_PER_SECOND <= per_second <= MAX_SMS_PER_SECOND


def _check_at_least(name: str, value: int, low: int, high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _env_number(
    env: Mapping[str, str], name: str, parse: Callable[[str], _Number], default: _Number
) -> _Number:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _env_centres(raw: str | None) -> tuple[Centre, ...] | None:
    if raw is None:
        return None
    if raw.isdigit():
        return numbered_centres(int(raw))
    return centres_from_names([name.strip() for name in raw.split(";") if name.strip()])


def _env_date(name: str, raw: str | None) -> date | None:
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be a date (YYYY-MM-DD), got {raw!r}") from None


def _env_flag(name: str, raw: str | None) -> bool:
    if raw is None or raw.lower() in ("0", "false", "no", "off"):
        return False
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be 1 or 0, got {raw!r}")
