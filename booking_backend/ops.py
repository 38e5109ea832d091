"""Endpoints for machines and operators rather than citizens: probes, health, metrics, the
sold-out signal, admin actions, the simulation inbox and the echo used by proxy tests."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from booking_backend.bodies import read_json, text_field
from booking_backend.capacity import LoadCounters
from booking_backend.errors import Refusal
from booking_backend.flow import BookingFlow
from booking_backend.health import HealthReport
from booking_backend.inventory import MAX_RELEASE
from booking_backend.metrics import BackendMetrics
from booking_backend.phones import normalise_phone
from booking_backend.rendering import error_response, refusal_response
from booking_backend.settings import BackendSettings, sms_rate_allowed


class Ops:
    def __init__(
        self,
        settings: BackendSettings,
        flow: BookingFlow,
        counters: LoadCounters,
        metrics: BackendMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.flow = flow
        self.counters = counters
        self.metrics = metrics
        self.clock = clock

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/_backend/health", self.health, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/_backend/sold-out", self.sold_out, methods=["GET"]),
            Route("/_backend/admin/release", self.release, methods=["POST"]),
            Route("/_backend/admin/sms-rate", self.sms_rate, methods=["POST"]),
            Route("/_sim/inbox/{phone}", self.inbox, methods=["GET"]),
            Route("/echo", self.echo, methods=["GET", "POST"]),
        ]

    async def report(self) -> HealthReport:
        stats = await self.flow.refresh()
        monotonic_now = time.monotonic()
        return HealthReport(
            load=LoadCounters(**asdict(self.counters)),
            max_in_flight=self.settings.max_in_flight,
            latency_ms=self.metrics.latency.percentiles(monotonic_now),
            latency_window_s=self.metrics.latency.window_s,
            latency_samples=self.metrics.latency.count(monotonic_now),
            errors=self.metrics.error_counts(),
            sms=self.flow.sms.backlog(self.clock()),
            inventory=stats,
        )

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def health(self, request: Request) -> Response:
        return JSONResponse((await self.report()).to_json())

    async def prometheus(self, request: Request) -> Response:
        body = self.metrics.render(await self.report())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def sold_out(self, request: Request) -> Response:
        stats = await self.flow.refresh()
        return JSONResponse(
            {
                "sold_out": stats.slots_left == 0,
                "slots_left": stats.slots_left,
                # Always offered: once the dates are gone, people can still get on the list.
                "register_without_date": True,
            }
        )

    async def release(self, request: Request) -> Response:
        """A new vaccine delivery: {"centre": id, "day": "YYYY-MM-DD", "slots": n}."""
        if (refused := self._refuse_unless_admin(request)) is not None:
            return refused
        try:
            body = await read_json(request)
            count = body.get("slots")
            if type(count) is not int or not 1 <= count <= MAX_RELEASE:
                raise Refusal("invalid_release")
            centre, day = text_field(body, "centre"), text_field(body, "day")
            day_free = await self.flow.release(centre, day, count)
        except Refusal as refusal:
            return refusal_response(request, refusal)
        return JSONResponse(
            {
                "centre": centre,
                "day": day.strip(),
                "released": count,
                "day_slots_left": day_free,
                "slots_left": self.flow.slots_left,
                "sold_out": self.flow.sold_out,
            }
        )

    async def sms_rate(self, request: Request) -> Response:
        """Change the SMS throughput now, e.g. {"per_second": 200} as at 08:35."""
        if (refused := self._refuse_unless_admin(request)) is not None:
            return refused
        try:
            body = await read_json(request)
            rate = body.get("per_second")
            if (
                not isinstance(rate, int | float)
                or isinstance(rate, bool)
                or not sms_rate_allowed(rate)
            ):
                raise Refusal("invalid_rate")
        except Refusal as refusal:
            return refusal_response(request, refusal)
        now = self.clock()
        self.flow.sms.set_rate(float(rate), now)
        backlog = self.flow.sms.backlog(now)
        return JSONResponse(
            {
                "per_second": backlog.per_second,
                "queued": backlog.queued,
                "delay_s": round(backlog.delay_s, 3),
            }
        )

    async def inbox(self, request: Request) -> Response:
        """Simulation only: the SMS delivered so far to one number (times in unix seconds)."""
        if not self.settings.sim_inbox:
            return error_response(request, "sim_inbox_off")
        try:
            phone = normalise_phone(request.path_params["phone"])
        except Refusal as refusal:
            return refusal_response(request, refusal)
        now = self.clock()
        messages = [
            {"text": m.text, "queued_at": m.queued_at, "delivered_at": m.deliver_at}
            for m in self.flow.sms.inbox(phone, now)
        ]
        next_at = self.flow.sms.pending_delivery(phone, now)
        return JSONResponse({"phone": phone, "messages": messages, "next_delivery_at": next_at})

    async def echo(self, request: Request) -> Response:
        digest = hashlib.sha256()
        length = 0
        # Streamed rather than buffered so proxy tests can push large bodies through.
        async for chunk in request.stream():
            digest.update(chunk)
            length += len(chunk)
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        payload: dict[str, Any] = {
            "method": request.method,
            "path": request.scope["path"],
            "query_string": request.scope["query_string"].decode("latin-1"),
            "headers": headers,
            "body_length": length,
        }
        if request.method == "POST":
            payload["body_sha256"] = digest.hexdigest()
        return JSONResponse(payload)

    def _refuse_unless_admin(self, request: Request) -> Response | None:
        token = self.settings.admin_token
        if token is None:
            return error_response(request, "admin_disabled")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("latin-1"), token.encode()
        ):
            return error_response(request, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
        return None
