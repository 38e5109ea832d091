"""One report of how the site is doing, shown as JSON (/_backend/health) and as Prometheus
metrics (/metrics), so the two can never disagree."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from booking_backend.capacity import LoadCounters
from booking_backend.inventory import InventoryStats
from booking_backend.sms import Backlog


@dataclass(frozen=True)
class ErrorCounts:
    client: int  # 4xx replies
    server: int  # 5xx replies
    by_code: dict[str, int]  # e.g. {"wrong_pin": 3, "busy": 12}


@dataclass(frozen=True)
class HealthReport:
    load: LoadCounters
    max_in_flight: int
    latency_ms: dict[str, float | None]  # p50, p95, p99 over the window
    latency_window_s: float
    latency_samples: int
    errors: ErrorCounts
    sms: Backlog
    inventory: InventoryStats

    @property
    def sold_out(self) -> bool:
        return self.inventory.slots_left == 0

    def to_json(self) -> dict[str, Any]:
        return {
            # The original flat counters first: load tests and the gateway's tests read them.
            **asdict(self.load),
            "max_in_flight": self.max_in_flight,
            "latency_ms": {
                **{k: _round(v) for k, v in self.latency_ms.items()},
                "window_s": self.latency_window_s,
                "samples": self.latency_samples,
            },
            "errors": asdict(self.errors),
            "sms": {
                "per_second": self.sms.per_second,
                "queued": self.sms.queued,
                "oldest_queued_age_s": round(self.sms.oldest_queued_age_s, 3),
                "delay_s": round(self.sms.delay_s, 3),
                "delivered": self.sms.delivered,
            },
            "inventory": asdict(self.inventory),
            "slots_left": self.inventory.slots_left,
            "sold_out": self.sold_out,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
