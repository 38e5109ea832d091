"""The booking site as one ASGI app: ``uvicorn booking_backend.app:create_app --factory``.

Middleware, outermost first, and why in this order:

1. SoldOutHeader, VisitorEcho and NoStore: on every reply (NoStore: of the flow under /book),
   including the ones produced further in.
2. LastResort: a bug still becomes a clear 500 that carries the headers above.
3. Metrics: times everything below, including waiting for a worker and refusals.
4. AdmissionPass (only with BACKEND_WAITROOM_SECRET): bypassers are refused before they
   cost a worker.
5. CapacityLimit: the fixed worker pool of an overloaded site.
6. Session: the signed cookie that carries the flow.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from booking_backend import session
from booking_backend.api import Api
from booking_backend.capacity import LoadCounters
from booking_backend.database import Database
from booking_backend.flow import BookingFlow
from booking_backend.headers import (
    NoStoreMiddleware,
    SoldOutHeaderMiddleware,
    VisitorEchoMiddleware,
)
from booking_backend.last_resort import LastResortMiddleware
from booking_backend.load_shedding import CapacityLimitMiddleware
from booking_backend.metrics import BackendMetrics, MetricsMiddleware
from booking_backend.ops import Ops
from booking_backend.pages import Pages
from booking_backend.passcheck import AdmissionPassMiddleware
from booking_backend.rendering import STATIC_DIR, error_response
from booking_backend.settings import BackendSettings
from booking_backend.single_process import SiteLock
from booking_backend.sms import SmsGateway

_HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_ERROR_CODES.get(exc.status_code, "not_found")
    return error_response(request, code, status_code=exc.status_code, headers=exc.headers)


def create_app(
    settings: BackendSettings | None = None, *, clock: Callable[[], float] = time.time
) -> Starlette:
    """Build the app; settings default to the BACKEND_* environment variables."""
    settings = settings or BackendSettings.from_env()
    counters = LoadCounters()
    metrics = BackendMetrics()
    db = Database(settings.db_path)
    flow = BookingFlow(settings, db, SmsGateway(settings.sms_per_second), clock)

    site_lock = SiteLock(settings.db_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        site_lock.acquire()  # before anything else: a second worker must not seed or serve
        try:
            await anyio.to_thread.run_sync(db.open)
            try:
                await flow.open()
                yield
            finally:
                db.close()
        finally:
            site_lock.release()

    routes: list[BaseRoute] = [
        *Pages(flow).routes(),
        *Api(flow).routes(),
        *Ops(settings, flow, counters, metrics, clock).routes(),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    pass_check = (
        [
            Middleware(
                AdmissionPassMiddleware,
                secrets=settings.waitroom_secrets,
                room=settings.waitroom_room,
                clock=clock,
            )
        ]
        if settings.waitroom_secrets
        else []
    )
    middleware = [
        Middleware(SoldOutHeaderMiddleware, sold_out=lambda: flow.sold_out),
        Middleware(VisitorEchoMiddleware),
        Middleware(NoStoreMiddleware),
        Middleware(LastResortMiddleware),
        Middleware(MetricsMiddleware, metrics=metrics),
        *pass_check,
        Middleware(CapacityLimitMiddleware, settings=settings, counters=counters),
        Middleware(
            SessionMiddleware,
            secret_key=session.secret_for(settings),
            session_cookie=session.COOKIE_NAME,
            max_age=session.MAX_AGE_S,
            same_site="lax",  # a cross-site form post arrives without the session
        ),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
