"""Measuring the site: every reply's status, error code and latency, and Prometheus output.

Each app has its own CollectorRegistry, never the global default one, so tests that build
several apps in one process do not collide on metric names.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking_backend.health import ErrorCounts, HealthReport
from booking_backend.latency import LatencyWindow
from booking_backend.load_shedding import is_unlimited
from booking_backend.rendering import ERROR_CODE_STATE

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class BackendMetrics:
    def __init__(self, latency_window_s: float = 60.0) -> None:
        self.registry = CollectorRegistry()
        self.latency = LatencyWindow(latency_window_s)
        self.client_errors = 0
        self.server_errors = 0
        self.error_codes: Tally[str] = Tally()
        self._responses = Counter(
            "booking_responses",
            "Replies of the site by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self._errors = Counter(
            "booking_errors", "Refusals and errors by code", ["code"], registry=self.registry
        )
        self._duration = Histogram(
            "booking_request_duration_seconds",
            "Time from request to the end of the reply, including waiting for a worker",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._report = _ReportCollector()
        self.registry.register(self._report)

    def observe(self, now: float, seconds: float, status: int, error_code: str | None) -> None:
        self.latency.record(now, seconds)
        self._duration.observe(seconds)
        self._responses.labels(status=str(status)).inc()
        if 400 <= status < 500:
            self.client_errors += 1
        elif status >= 500:
            self.server_errors += 1
        if error_code is not None:
            self.error_codes[error_code] += 1
            self._errors.labels(code=error_code).inc()

    def error_counts(self) -> ErrorCounts:
        return ErrorCounts(self.client_errors, self.server_errors, dict(self.error_codes))

    def render(self, report: HealthReport) -> bytes:
        """The Prometheus text format, with the live figures of ``report``."""
        self._report.report = report
        return generate_latest(self.registry)


class _ReportCollector:
    """Gauges read from the health report at scrape time, rather than kept up to date."""

    def __init__(self) -> None:
        self.report: HealthReport | None = None

    def collect(self) -> Iterable[Metric]:
        report = self.report
        if report is None:
            return
        yield _gauge("booking_in_flight", "Requests being served", report.load.in_flight)
        yield _gauge("booking_waiting", "Requests waiting for a worker", report.load.waiting)
        yield _gauge("booking_max_in_flight", "Worker pool size", report.max_in_flight)
        yield _counter("booking_served", "Requests served", report.load.served)
        yield _counter("booking_rejected", "Requests shed with 503", report.load.rejected)
        latency = GaugeMetricFamily(
            "booking_latency_seconds",
            f"Latency percentiles over the last {report.latency_window_s:g} seconds",
            labels=["quantile"],
        )
        for name, ms in report.latency_ms.items():
            if ms is not None:
                latency.add_metric([f"0.{name[1:]}"], ms / 1000)
        yield latency
        sms = report.sms
        yield _gauge("booking_sms_per_second", "SMS gateway throughput", sms.per_second)
        yield _gauge("booking_sms_queued", "SMS waiting to be delivered", sms.queued)
        yield _gauge(
            "booking_sms_oldest_queued_age_seconds",
            "Age of the oldest SMS still queued",
            sms.oldest_queued_age_s,
        )
        yield _gauge("booking_sms_delay_seconds", "Delay of an SMS sent now", sms.delay_s)
        yield _counter("booking_sms_delivered", "SMS delivered", sms.delivered)
        stock = report.inventory
        yield _gauge("booking_slots_total", "Appointments in the inventory", stock.slots_total)
        yield _gauge("booking_slots_left", "Appointments still free", stock.slots_left)
        yield _gauge("booking_bookings", "Bookings with a date", stock.bookings)
        yield _gauge("booking_registrations", "Registrations without a date", stock.registrations)
        yield _gauge("booking_sold_out", "1 when no appointment is left", int(report.sold_out))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class MetricsMiddleware:
    """Times every reply of the site itself; probes and ops endpoints are left out, or a
    monitoring system polling them would drown the numbers it is meant to watch."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: BackendMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_unlimited(scope["path"]):
            await self.app(scope, receive, send)
            return
        # Handlers note their error code here (rendering.error_response); shared by reference
        # with every copy of the scope further in.
        state = scope.setdefault("state", {})
        status = 500
        started = self.clock()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            now = self.clock()
            code = state.get(ERROR_CODE_STATE) or ("internal" if status >= 500 else None)
            self.metrics.observe(now, now - started, status, code)
