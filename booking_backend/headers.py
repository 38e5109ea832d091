"""Headers every reply carries, whatever produced it (a page, the API, a 503 or an error)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking_backend.rendering import VISITOR_HEADER

SAW_VISITOR_HEADER = b"x-backend-saw-visitor"
SOLD_OUT_HEADER = b"x-booking-sold-out"
NO_STORE = (b"cache-control", b"no-store")


def _add_header(send: Send, header: Callable[[], tuple[bytes, bytes]]) -> Send:
    async def send_with_header(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), header()]}
        await send(message)

    return send_with_header


class VisitorEchoMiddleware:
    """Copy the gateway's visitor id into a response header, so tests can see what arrived."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        visitor = Headers(scope=scope).get(VISITOR_HEADER) if scope["type"] == "http" else None
        if visitor is None:
            await self.app(scope, receive, send)
            return
        # Headers decoded as latin-1, so encoding back gives the exact bytes received.
        echoed = (SAW_VISITOR_HEADER, visitor.encode("latin-1"))
        await self.app(scope, receive, _add_header(send, lambda: echoed))


class SoldOutHeaderMiddleware:
    """``X-Booking-Sold-Out: 1`` or ``0`` on every reply, so the gateway (or anything in
    front) learns that nothing is left from any response, without an extra request."""

    def __init__(self, app: ASGIApp, *, sold_out: Callable[[], bool]) -> None:
        self.app = app
        self.sold_out = sold_out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # Read when the reply starts, so a booking that took the last slot already says 1.
        def header() -> tuple[bytes, bytes]:
            return SOLD_OUT_HEADER, b"1" if self.sold_out() else b"0"

        await self.app(scope, receive, _add_header(send, header))


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on the booking flow: its pages and API replies carry phone
    numbers and PIN state, and must never be kept by a shared cache or the browser's history."""

    def __init__(self, app: ASGIApp, *, prefix: str = "/book") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _add_header(send, lambda: NO_STORE))
