"""The site's fixed worker pool: at most ``max_in_flight`` requests at once, the rest wait a
while and are then turned away with 503 and Retry-After, as an overloaded site does."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from booking_backend.capacity import LoadCounters, retry_after_s, service_time_ms
from booking_backend.rendering import error_response
from booking_backend.settings import BackendSettings

# Probes, metrics, ops and the simulation harness must answer even when the site is
# drowning, or nobody could observe it or act on it.
UNLIMITED_PATHS = frozenset({"/healthz", "/metrics"})
UNLIMITED_PREFIXES = ("/_backend/", "/_sim/")


def is_unlimited(path: str) -> bool:
    return path in UNLIMITED_PATHS or path.startswith(UNLIMITED_PREFIXES)


class CapacityLimitMiddleware:
    def __init__(self, app: ASGIApp, *, settings: BackendSettings, counters: LoadCounters) -> None:
        self.app = app
        self.settings = settings
        self.counters = counters
        self._slots = asyncio.Semaphore(settings.max_in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_unlimited(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not await self._acquire_slot():
            self.counters.rejected += 1
            await self._overloaded(Request(scope, receive))(scope, receive, send)
            return
        counters = self.counters
        counters.in_flight += 1
        try:
            delay_ms = self._service_time_ms(others_in_flight=counters.in_flight - 1)
            await asyncio.sleep(delay_ms / 1000)
            await self.app(scope, receive, send)
            counters.served += 1
        finally:
            counters.in_flight -= 1
            self._slots.release()

    async def _acquire_slot(self) -> bool:
        self.counters.waiting += 1
        try:
            # Semaphore.acquire hands a slot it won back if the timeout cancels it, so
            # a timeout racing a wake-up cannot leak capacity.
            async with asyncio.timeout(self.settings.queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            return False
        finally:
            self.counters.waiting -= 1
        return True

    def _service_time_ms(self, *, others_in_flight: int) -> float:
        return service_time_ms(
            self.settings.base_latency_ms,
            self.settings.latency_per_request_ms,
            others_in_flight=others_in_flight,
            waiting=self.counters.waiting,
        )

    def _overloaded(self, request: Request) -> Response:
        retry = retry_after_s(
            waiting=self.counters.waiting,
            max_in_flight=self.settings.max_in_flight,
            service_ms=self._service_time_ms(others_in_flight=self.counters.in_flight),
            queue_timeout_s=self.settings.queue_timeout_s,
        )
        detail = (
            "The booking site is handling too many requests right now. "
            f"Please try again in {retry} seconds."
        )
        return error_response(request, "busy", detail, headers={"Retry-After": str(retry)})
