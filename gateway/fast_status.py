"""The status check of a waiting visitor, answered in raw ASGI in front of the application.

It is the request a waiting room serves most by far: 140,000 people checking every 20 s is
7,000 a second, each with the same answer shape. Starlette's router, `Request` and
`JSONResponse` cost more than the answer itself, so this layer answers the plain case (a JSON
status check with a valid ticket from someone waiting) straight from the worker's view of the
line, and hands everything else, unchanged, to the application: no ticket, a bad ticket, a
visitor whose turn has come or whose place lapsed, `display=1`, any other path or method. The
application answers those the same way it always did, so there is one meaning of each request
and this is only a shorter road to the commonest one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from queue_core.rooms import RoomConfig
from queue_core.tokens import InvalidCredential

from .i18n import LANG_COOKIE
from .visitors import TICKET_HEADER, Gate, ticket_cookie

PREFIX = "/_waitroom/api/rooms/"
SUFFIX = "/status"
_TICKET_HEADER = TICKET_HEADER.encode()
# What the page's script sends (see Gate.display); any other query is the application's.
DISPLAY_QUERY = frozenset({"display", "layout", "path"})
# The same headers `JSONResponse(..., headers=NO_STORE)` sends.
_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


def json_body(body: Mapping[str, Any]) -> bytes:
    """JSON exactly as Starlette's JSONResponse writes it."""
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


class FastStatus:
    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate
        self.cookie_names = {name: ticket_cookie(name) for name in gate.rooms}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(PREFIX) and path.endswith(SUFFIX):
                room = self.gate.rooms.get(path[len(PREFIX) : -len(SUFFIX)])
                body = None
                if room is not None:
                    body = self.answer(room, scope["headers"], scope["query_string"])
                if body is not None:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [
                                (b"content-length", str(len(body)).encode()),
                                *_HEADERS,
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    def answer(
        self, room: RoomConfig, headers: list[tuple[bytes, bytes]], query_string: bytes
    ) -> bytes | None:
        """The JSON body for a plainly waiting visitor, or None to leave it to the app."""
        query = dict(parse_qsl(query_string.decode("latin-1"))) if query_string else {}
        if not query.keys() <= DISPLAY_QUERY:
            return None
        cookie = header = accept = None
        for name, raw in headers:
            if name == b"cookie" and cookie is None:
                cookie = raw
            elif name == _TICKET_HEADER and header is None:
                header = raw
            elif name == b"accept-language" and accept is None:
                accept = raw
        # As the application reads it: the room's cookie first, else the ticket header.
        cookies = cookie_parser(cookie.decode("latin-1")) if cookie is not None else {}
        value = cookies.get(self.cookie_names[room.name])
        if value is None and header is not None:
            value = header.decode("latin-1")
        if not value:
            return None
        try:
            ticket = self.gate.credentials.read_ticket(value)
        except InvalidCredential:
            return None  # the application refuses it, and counts the refusal
        if ticket.room != room.name:
            return None
        status = self.gate.still_waiting(room, ticket)
        if status is None:
            return None
        body = status.as_json()
        if query.get("display") == "1":
            # The page's script: just the new figures while its section keeps its shape.
            lang = self.gate.pages.language_for(
                cookies.get(LANG_COOKIE), "" if accept is None else accept.decode("latin-1")
            )
            display = self.gate.display(
                room, status, lang, query.get("layout"), query.get("path"), render=False
            )
            if display is None:
                return None
            body["display"] = display
        return json_body(body)
