"""A cap on request headers, checked before anything reads them.

uvicorn's httptools parser takes headers of any size, and a crowd has its share of broken
clients and bots: a 1 MB cookie must cost the gateway no more than adding up lengths. Real
browsers stay far below these limits (a waiting visitor sends well under 1 KB of cookies).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_HEADER_BYTES = 16 * 1024  # all of a request's header names and values together
MAX_FIELD_BYTES = 8 * 1024  # any one header's value

_BODY = json.dumps(
    {
        "error": "headers_too_large",
        "detail": "The request's headers are too large. Clear this site's cookies and try again.",
    }
).encode()
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"cache-control", b"no-store"),
    (b"connection", b"close"),
]


class HeaderLimits:
    def __init__(
        self, app: ASGIApp, max_total: int = MAX_HEADER_BYTES, max_field: int = MAX_FIELD_BYTES
    ) -> None:
        self.app = app
        self.max_total = max_total
        self.max_field = max_field

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            total = 0
            for name, value in scope["headers"]:
                size = len(value)
                total += len(name) + size
                if size > self.max_field or total > self.max_total:
                    await send({"type": "http.response.start", "status": 431, "headers": _HEADERS})
                    await send({"type": "http.response.body", "body": _BODY})
                    return
        await self.app(scope, receive, send)
