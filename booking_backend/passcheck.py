"""Defence in depth: refuse visitors who did not come through the waiting room.

The gateway only forwards visitors holding an admission pass, but the booking site is often
reachable by other routes (a leaked address, a misrouted load balancer). With
BACKEND_WAITROOM_SECRET set, the site checks the same signed pass itself, and that the
visitor the gateway names (``X-Waitroom-Visitor``) is the one the pass was issued to.

Under /book, the booking flow and the room the gateway protects, the gateway names the
visitor on every request it forwards, so the header is required there: a browser that goes
round the gateway with a valid pass cookie (cookies do not care about the port) is refused.
The header is not a credential (the visitor id is readable in the pass), so this stops
browsers, not someone writing their own client; the pass is what keeps those out. Outside
/book (the home page every page links to) the gateway proxies without a line and names
nobody, so there the pass alone is enough, and a header, if sent, must still match.
Probes, metrics, ops endpoints, the simulation harness and static files stay open.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from booking_backend.rendering import VISITOR_HEADER, error_response
from queue_core.tokens import Credentials, InvalidCredential

log = logging.getLogger("booking_backend.passcheck")

OPEN_PATHS = frozenset({"/healthz", "/metrics"})
OPEN_PREFIXES = ("/_backend/", "/_sim/", "/static/")


PASS_HEADER = "x-waitroom-pass"
# The room the gateway protects, where it always names the visitor (see the docstring).
FLOW_PREFIX = "/book"


def gateway_names_the_visitor(path: str) -> bool:
    return path == FLOW_PREFIX or path.startswith(FLOW_PREFIX + "/")


def pass_cookie(room: str) -> str:
    return f"wr_pass_{room}"  # the gateway's name for it


class AdmissionPassMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        secrets: Sequence[str],
        room: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.credentials = Credentials(secrets)
        self.room = room
        self.cookie = pass_cookie(room)
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        problem = self.problem(request)
        if problem is None:
            await self.app(scope, receive, send)
            return
        log.info("refused %s %s: %s", scope.get("method"), path, problem)
        await error_response(request, "no_admission_pass")(scope, receive, send)

    def problem(self, request: Request) -> str | None:
        """Why this request may not pass, or None if it may."""
        # The gateway hands the pass over in a header (a visitor let straight through has it
        # only in the response's Set-Cookie); otherwise the visitor's own cookie comes along.
        # Either way it is the same signed pass, checked the same way.
        value = request.headers.get(PASS_HEADER) or request.cookies.get(self.cookie)
        if not value:
            return "no pass"
        try:
            admission = self.credentials.read_pass(value, now=self.clock())
        except InvalidCredential as exc:
            return str(exc)
        if admission.room != self.room:
            return f"pass for room {admission.room!r}"
        visitor = request.headers.get(VISITOR_HEADER)
        if visitor is None and gateway_names_the_visitor(request.scope.get("path", "")):
            return "no X-Waitroom-Visitor: not forwarded by the gateway"
        if visitor is not None and not hmac.compare_digest(
            # Bytes: compare_digest refuses non-ASCII str, and a header may carry anything.
            visitor.encode("latin-1"),
            admission.visitor.encode(),
        ):
            return "pass belongs to another visitor"
        return None
