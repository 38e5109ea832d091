"""The reply when a bug escapes: a clear 500 page or JSON, from inside our own middleware.

Starlette's own 500 is produced outside every user middleware, so it would lack the headers
every reply must carry (X-Booking-Sold-Out). This one sits inside them.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking_backend.rendering import error_response

log = logging.getLogger("booking_backend")


class LastResortMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a reply is out; let the server drop the connection
            await error_response(Request(scope), "internal")(scope, receive, send)
