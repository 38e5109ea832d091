"""Defence in depth: refuse visitors who did not come through the waiting room.

The gateway only forwards visitors holding an admission pass, but the booking site is often
reachable by other routes (a leaked address, a misrouted load balancer). With
BACKEND_WAITROOM_SECRET set, the site checks the same signed pass cookie itself, and that the
visitor the gateway names (``X-Waitroom-Visitor``) is the one the pass was issued to.
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
        # only in the response's Set-Cookie); a browser going round the gateway sends the
        # cookie. Either way it is the same signed pass, checked the same way.
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
        if visitor is not None and not hmac.compare_digest(
            # Bytes: compare_digest refuses non-ASCII str, and a header may carry anything.
            visitor.encode("latin-1"),
            admission.visitor.encode(),
        ):
            return "pass belongs to another visitor"
        return None
