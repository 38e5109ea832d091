"""The gateway application: `uvicorn gateway.app:create_app --factory`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles

from queue_core.connect import RedisClient, connect
from queue_core.keys import audit_key
from queue_core.store import LineStore
from queue_core.tokens import Credentials

from .challenge import Challenges
from .client_ip import TrustedProxies
from .fast_status import FastStatus
from .header_limits import HeaderLimits
from .invitations import Invitations
from .line_keeper import LineKeeper
from .metrics import AllowList, GatewayMetrics, MetricsEndpoint
from .openapi import name_the_rooms
from .ops.audit import AuditLog
from .ops.auth import OpsAuth
from .ops.autopilot import AutopilotRunner
from .ops.views import OpsViews
from .pages import Pages
from .proxy import BackendProxy
from .receipts import Receipts
from .settings import REPO_ROOT, Settings
from .sold_out import SoldOutSignal
from .visitors import Gate

log = logging.getLogger("waitroom.gateway")
TEMPLATES = REPO_ROOT / "templates"
API_PREFIX = "/_waitroom"
REDIS_CONNECTIONS = 64  # per worker process (and per node on a cluster)


class CachedStaticFiles(StaticFiles):
    """Static files with a cache lifetime: a crowd of 140,000 should fetch them once each."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("Cache-Control", "public, max-age=3600")
        return response


schemas = SchemaGenerator(
    {
        "openapi": "3.0.3",
        "info": {
            "title": "waitroom gateway",
            "version": "1",
            "description": "Join a waiting room and follow your place in line. Send the ticket "
            "back as the wr_ticket_<room> cookie or the X-Waitroom-Ticket header.",
        },
        "components": {
            "schemas": {
                "Status": {
                    "type": "object",
                    "required": ["room", "state", "poll_after_seconds"],
                    "properties": {
                        "room": {"type": "string"},
                        "state": {
                            "type": "string",
                            "enum": ["waiting", "paused", "admitted", "closed"],
                        },
                        "position": {
                            "type": "integer",
                            "nullable": True,
                            "description": "1 means next in line",
                        },
                        "ahead": {"type": "integer", "nullable": True},
                        "estimate_seconds": {"type": "integer", "nullable": True},
                        "estimate_range_seconds": {
                            "type": "array",
                            "items": {"type": "integer"},
                            "nullable": True,
                        },
                        "poll_after_seconds": {"type": "number"},
                        "as_of": {"type": "string", "format": "date-time", "nullable": True},
                        "stale": {"type": "boolean"},
                        "notice": {"type": "string", "nullable": True},
                        "next": {"type": "string", "nullable": True},
                        "ticket": {"type": "string"},
                        "pass": {"type": "string"},
                        "session": {
                            "type": "string",
                            "description": "send back as the wr_session_<room> cookie with "
                            "the pass: a pass opens only a few sessions",
                        },
                    },
                }
            }
        },
    }
)


def create_app(
    settings: Settings | None = None,
    *,
    redis: RedisClient | None = None,
    proxy: BackendProxy | None = None,
    metrics: GatewayMetrics | None = None,
) -> HeaderLimits:
    settings = settings or Settings.from_env()
    if settings.dev_mode:
        log.warning("DEV MODE: insecure secret allowed; never expose this gateway publicly")
    owns_redis = redis is None
    if redis is None:
        # Bounded, and a burst of joins waits for a free connection instead of failing.
        redis = connect(settings.redis_url, max_connections=REDIS_CONNECTIONS)
    redis_client = redis
    proxy = proxy or BackendProxy(settings.backend_url, read_timeout=settings.backend_timeout)
    metrics = metrics or GatewayMetrics(settings.rooms)
    keeper = LineKeeper(
        LineStore(redis_client, settings.key_prefix),
        settings.rooms,
        settings.tick_seconds,
        metrics=metrics,
    )
    secrets = [str(s) for s in settings.secrets]
    pages = Pages(TEMPLATES)
    audit = AuditLog(redis_client, audit_key(settings.key_prefix))
    invitations = Invitations(secrets)
    ops = OpsViews(
        auth=OpsAuth(settings.ops_users, secrets, settings.ops_session_seconds),
        store=keeper.store,
        audit=audit,
        rooms=settings.rooms,
        pages=pages,
        allow=settings.ops_allow,
        invitations=invitations,
        cookie_secure=settings.cookie_secure,
        lane_views=keeper.lane_views,
    )
    autopilot = AutopilotRunner(
        keeper.store, audit, list(settings.rooms), period=settings.autopilot_seconds
    )
    gate = Gate(
        rooms=settings.rooms,
        keeper=keeper,
        credentials=Credentials(secrets),
        receipts=Receipts(secrets),
        invitations=invitations,
        proxy=proxy,
        pages=pages,
        cookie_secure=settings.cookie_secure,
        metrics=metrics,
        challenges=Challenges(secrets),
        proxies=TrustedProxies(settings.trusted_proxies),
    )
    sold_out = SoldOutSignal(keeper.store, audit, gate.room_for_path)
    proxy.watch(sold_out.reply)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await keeper.start()
        tasks = [
            asyncio.create_task(keeper.run()),
            asyncio.create_task(run_autopilot()),
            asyncio.create_task(sold_out.run()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await keeper.flush_proxy_stats()
            await proxy.aclose()
            if owns_redis:
                await redis_client.aclose()

    async def run_autopilot() -> None:
        task = asyncio.current_task()
        while True:
            await asyncio.sleep(settings.autopilot_seconds * random.uniform(0.9, 1.1))
            for room in settings.rooms:
                try:
                    await autopilot.step(room, time.time())
                except RedisError as exc:
                    log.warning("autopilot for %s skipped: %s", room, exc)
                # redis-py can swallow a cancellation that lands mid-command (see LineKeeper.run).
                if task is not None and task.cancelling():
                    return

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        rooms = {name: keeper.is_fresh(name) for name in settings.rooms}
        try:
            await redis_client.ping()
            redis_ok = True
        except RedisError:
            redis_ok = False
        ready = redis_ok and all(rooms.values())
        return JSONResponse(
            {"ready": ready, "redis": redis_ok, "rooms_fresh": rooms, "worker": os.getpid()},
            status_code=200 if ready else 503,
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(name_the_rooms(schemas.get_schema(routes=api_routes), settings.rooms))

    async def room_status(request: Request) -> Response:
        """
        summary: Where a visitor stands in a room's line
        description: >
          Answered from the gateway's view of the line (no Redis round trip). When it is the
          visitor's turn the response sets the admission pass cookie and returns state
          `admitted`. Ask again after `poll_after_seconds`.
        parameters:
          - {name: room, in: path, required: true, schema: {type: string}}
          - {name: X-Waitroom-Ticket, in: header, required: false, schema: {type: string}}
        responses:
          200:
            description: Status (state is waiting, paused, admitted or closed)
            content: {application/json: {schema: {$ref: '#/components/schemas/Status'}}}
          400: {description: The ticket is damaged or for another room}
          401: {description: No ticket; join first}
          404: {description: No such room}
          503: {description: The line is briefly unavailable; retry after Retry-After}
        """
        return await gate.api_status(request)

    async def room_join(request: Request) -> Response:
        """
        summary: Join a room's line (or get back the place already held)
        description: >
          Returns the status plus `ticket`, which the visitor keeps (also set as a cookie).
          Joining again with a valid ticket keeps the original place. A room may ask a
          newcomer for a proof of work first (403 challenge_required, with `challenge` and
          `bits`): find decimal digits `nonce` so that SHA-256(challenge + nonce) starts
          with `bits` zero bits and join again with both headers. Each solution works once.
        parameters:
          - {name: room, in: path, required: true, schema: {type: string}}
          - {name: X-Waitroom-Challenge, in: header, required: false, schema: {type: string}}
          - {name: X-Waitroom-Nonce, in: header, required: false, schema: {type: string}}
        responses:
          200:
            description: Status, with the ticket
            content: {application/json: {schema: {$ref: '#/components/schemas/Status'}}}
          403: {description: "A proof of work is needed: {challenge, bits}"}
          404: {description: No such room}
          429: {description: Too many new places from this address or subnet; see Retry-After}
          503: {description: The line is briefly unavailable; retry after Retry-After}
        """
        return await gate.api_join(request)

    async def reserved(request: Request) -> Response:
        """Anything else under /_waitroom/ is ours: never proxied, a clear 404 or 405."""
        allowed = set()
        for route in api_routes:
            match, _ = route.matches(request.scope)
            if match is Match.PARTIAL and isinstance(route, Route) and route.methods:
                allowed |= route.methods
        if allowed:
            return JSONResponse(
                {"error": "method_not_allowed", "detail": f"Use {', '.join(sorted(allowed))}."},
                status_code=405,
                headers={"Allow": ", ".join(sorted(allowed))},
            )
        return JSONResponse(
            {"error": "not_found", "detail": "No such waitroom endpoint."}, status_code=404
        )

    api_routes = [
        Route("/healthz", healthz, include_in_schema=False),
        Route("/readyz", readyz, include_in_schema=False),
        Route(f"{API_PREFIX}/openapi.json", openapi, include_in_schema=False),
        Route(f"{API_PREFIX}/api/rooms/{{room}}/status", room_status, methods=["GET"]),
        Route(f"{API_PREFIX}/api/rooms/{{room}}/join", room_join, methods=["POST"]),
        Route(
            f"{API_PREFIX}/rooms/{{room}}/join",
            gate.entry,
            methods=["GET", "POST"],
            include_in_schema=False,
        ),
        Route(
            f"{API_PREFIX}/rooms/{{room}}/receipt",
            gate.receipt,
            methods=["GET", "POST"],
            include_in_schema=False,
        ),
        Route(f"{API_PREFIX}/lang/{{lang}}", gate.set_language, include_in_schema=False),
        Route(
            f"{API_PREFIX}/rooms/{{room}}/invite",
            gate.invite,
            methods=["GET", "POST"],
            include_in_schema=False,
        ),
        Mount(
            f"{API_PREFIX}/static",
            CachedStaticFiles(directory=str(TEMPLATES / "static")),
            name="static",
        ),
    ]
    routes = [
        *api_routes,
        *ops.routes(),
        # Prometheus scrapes: every method, so that none falls through to the proxy.
        Route(
            "/metrics",
            MetricsEndpoint(metrics, AllowList.from_env()).serve,
            include_in_schema=False,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        ),
        Route(
            f"{API_PREFIX}/{{rest:path}}",
            reserved,
            include_in_schema=False,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        ),
        Route(
            "/{path:path}",
            gate.site,
            include_in_schema=False,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        ),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gate = gate
    app.state.keeper = keeper
    app.state.metrics = metrics
    # The commonest request of all, a waiting visitor's status check, skips the router.
    return HeaderLimits(FastStatus(app, gate))
