"""The ops pages and admin API under /_waitroom/ops/.

Every route but the login needs a signed session; every change needs the session's CSRF
token (a hidden form field, or the X-CSRF-Token header for the JSON API). Changes are
validated whole before any is applied and each one lands in the audit log.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from queue_core.keys import login_key
from queue_core.line_view import LineView
from queue_core.rooms import RoomConfig
from queue_core.store import LineStore

from ..forms import FormTooLarge, read_form
from ..invitations import Invitations
from ..limits import FailureLimiter
from ..openapi import name_the_rooms
from ..pages import Pages
from . import autopilot, live
from .audit import AuditLog, as_csv
from .auth import SESSION_COOKIE, OpsAuth, Session, csrf_ok
from .controls import Autopilot, Changes, parse_changes

PREFIX = "/_waitroom/ops"
NO_STORE = {"Cache-Control": "no-store"}
LOGIN_LIMIT = 5  # failed attempts per address, and per user name, per window
LOGIN_WINDOW = 900
STATE_FIELDS = {
    "rate_per_minute": "rate",
    "max_active": "max_active",
    "paused": "paused",
    "closed": "closed",
    "sold_out": "sold_out",
    "opens_at_us": "opens_at",
    "banner": "banner",
    "autopilot": "autopilot",
    # Recorded as the epoch moving on: old -> new.
    "revoke_passes": "epoch",
    "challenge": "challenge",
    "challenge_bits": "challenge_bits",
    "joins_per_ip": "joins_per_ip",
    "joins_per_subnet": "joins_per_subnet",
    "sessions_per_pass": "sessions_per_pass",
}
Handler = Callable[[Request], Awaitable[Response]]
CSRF_ADVICE = (
    "The form did not carry this session's security token (it may come from an old page or "
    "another site). Reload the dashboard and try again."
)


class OpsViews:
    def __init__(
        self,
        *,
        auth: OpsAuth,
        store: LineStore,
        audit: AuditLog,
        rooms: Mapping[str, RoomConfig],
        pages: Pages,
        allow: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        cookie_secure: str = "auto",
        invitations: Invitations | None = None,
        lane_views: Mapping[str, Mapping[str, LineView]] | None = None,
    ) -> None:
        self.invitations = invitations
        # This gateway's views of each room's lanes: their measured outflow is what visitors'
        # estimates come from, so the dashboard's estimate does too.
        self.lane_views = lane_views or {}
        self.login_limiter = FailureLimiter(store.redis, LOGIN_LIMIT, LOGIN_WINDOW)
        self.auth = auth
        self.store = store
        self.audit = audit
        self.rooms = rooms
        self.pages = pages
        self.allow = list(allow)
        self.cookie_secure = cookie_secure

    # -- access ----------------------------------------------------------------------------

    def reachable(self, request: Request) -> bool:
        if not self.allow:
            return True
        host = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.allow)

    def guard(
        self,
        handler: Callable[[Request, Session], Awaitable[Response]],
        *,
        change: bool = False,
        api: bool = False,
    ) -> Handler:
        @functools.wraps(handler)  # keeps the docstring the OpenAPI document is built from
        async def guarded(request: Request) -> Response:
            if not self.reachable(request) or not self.auth.enabled:
                return JSONResponse({"error": "not_found"}, status_code=404)
            cookie = request.cookies.get(SESSION_COOKIE)
            session = self.auth.session(cookie)
            if session is None:
                expired = self.auth.expired(cookie)
                if api and expired:
                    return error(401, "session_expired", "The session expired: log in again.")
                if api:
                    return error(401, "login_required", "Log in first: POST /_waitroom/ops/login")
                login = f"{PREFIX}/login?expired=1" if expired else f"{PREFIX}/login"
                return RedirectResponse(login, status_code=303, headers=NO_STORE)
            if change and api and not csrf_ok(session, request.headers.get("x-csrf-token")):
                return error(403, "csrf", "Missing or wrong X-CSRF-Token header.")
            return await handler(request, session)

        return guarded

    # -- login -----------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if not self.reachable(request) or not self.auth.enabled:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return self.render(
            request, "ops/login.html", {"expired": request.query_params.get("expired") == "1"}
        )

    async def login(self, request: Request) -> Response:
        if not self.reachable(request) or not self.auth.enabled:
            return JSONResponse({"error": "not_found"}, status_code=404)
        wants_json = "application/json" in request.headers.get("content-type", "")
        try:
            if wants_json:
                data = json.loads(await request.body() or b"{}")
                data = data if isinstance(data, dict) else {}
            else:
                data = await read_form(request)
        except (FormTooLarge, ValueError):
            return error(400, "bad_request", "Send user and password.")
        user, password = str(data.get("user", ""))[:100], str(data.get("password", ""))[:200]
        ip = request.client.host if request.client else "unknown"
        keys = [
            login_key(self.store.prefix, f"ip:{ip}"),
            login_key(self.store.prefix, f"user:{user}"),
        ]
        try:
            blocked = await self.login_limiter.blocked(keys)
        except RedisError:
            return error(503, "unavailable", "Cannot check login attempts right now.")
        if blocked:
            headers = NO_STORE | {"Retry-After": str(LOGIN_WINDOW)}
            if wants_json:
                return error(
                    429, "too_many_attempts", "Too many failed logins; wait 15 minutes.", headers
                )
            return self.render(
                request,
                "ops/login.html",
                {"error": "Too many failed logins. Wait 15 minutes."},
                429,
                headers,
            )
        if not self.auth.verify(user, password):
            await self.login_limiter.failed(keys)
            if wants_json:
                return error(401, "bad_credentials", "Wrong user name or password.")
            return self.render(
                request, "ops/login.html", {"error": "Wrong user name or password."}, 401
            )
        token = self.auth.issue(user)
        session = self.auth.session(token)
        assert session is not None
        response: Response = (
            JSONResponse({"user": user, "csrf": session.csrf}, headers=NO_STORE)
            if wants_json
            else RedirectResponse(f"{PREFIX}/", status_code=303, headers=NO_STORE)
        )
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=self.auth.max_age,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self.cookie_secure == "always" or request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        try:
            form = await read_form(request)
        except FormTooLarge:
            form = {}
        if not csrf_ok(session, form.get("csrf") or request.headers.get("x-csrf-token")):
            return self.error_page(request, 403, "Not logged out", CSRF_ADVICE)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=NO_STORE)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # -- dashboard and live figures --------------------------------------------------------

    async def dashboard(self, request: Request, session: Session) -> Response:
        return await self.dashboard_page(request, session)

    async def dashboard_page(
        self,
        request: Request,
        session: Session,
        errors: Mapping[str, Mapping[str, str]] = {},
        status_code: int = 200,
    ) -> Response:
        try:
            figures = {name: await self.figures(name) for name in self.rooms}
            audit = await self.audit.recent(30)
        except RedisError:
            return self.error_page(
                request, 503, "Redis is unreachable", "The dashboard will be back when it is."
            )
        return self.render(
            request,
            "ops/dashboard.html",
            {
                "session": session,
                "rooms": self.rooms,
                "figures": figures,
                "audit": audit,
                "errors": errors,
                "languages": self.pages.names,
            },
            status_code,
        )

    async def api_rooms(self, request: Request, session: Session) -> Response:
        try:
            return JSONResponse(
                {"rooms": [await self.figures(name) for name in self.rooms]},
                headers=NO_STORE,
            )
        except RedisError:
            return error(503, "unavailable", "Redis is unreachable.")

    async def figures(self, room: str, with_series: bool = False) -> dict[str, Any]:
        return await live.load(
            self.store, room, with_series=with_series, views=self.lane_views.get(room)
        )

    async def api_room(self, request: Request, session: Session) -> Response:
        """
        summary: Live figures of one room (exact counters), with the last hour if series=1
        parameters:
          - {name: room, in: path, required: true, schema: {type: string}}
          - {name: series, in: query, required: false, schema: {type: integer, enum: [0, 1]}}
        responses:
          200: {description: Figures, settings and optionally series for charts}
          401: {description: Not logged in}
          404: {description: No such room}
        """
        room = self.rooms.get(request.path_params["room"])
        if room is None:
            return error(404, "unknown_room", "No such room.")
        try:
            figures = await self.figures(
                room.name, with_series=request.query_params.get("series") == "1"
            )
        except RedisError:
            return error(503, "unavailable", "Redis is unreachable.")
        return JSONResponse(figures, headers=NO_STORE)

    # -- changes ---------------------------------------------------------------------------

    async def api_settings(self, request: Request, session: Session) -> Response:
        """
        summary: Change a room's settings (all validated first; nothing changes on an error)
        description: >
          JSON object with any of rate_per_minute (> 0), max_active (0 = no limit), paused,
          closed, sold_out, opens_at (ISO 8601 with a zone, in the future; "" clears),
          banner ({language: text}), autopilot ({enabled, target_p95_ms, max_error_rate,
          min_rate, max_rate}; fields left out keep their stored values), revoke_passes
          (true: every admission pass issued so far is refused by every gateway within a
          tick), challenge (ask newcomers for a proof of work), challenge_bits (1 to 28),
          joins_per_ip and joins_per_subnet (new places per address or /24 or /64 per join
          window; 0 = no limit), sessions_per_pass (browsers per pass; 0 = any) and why.
          Needs the X-CSRF-Token header.
        parameters:
          - {name: room, in: path, required: true, schema: {type: string}}
          - {name: X-CSRF-Token, in: header, required: true, schema: {type: string}}
        responses:
          200: {description: The room's figures after the change}
          400: {description: "Invalid settings: {errors: {field: message}}"}
          401: {description: Not logged in}
          403: {description: Missing or wrong CSRF token}
          404: {description: No such room}
        """
        room = self.rooms.get(request.path_params["room"])
        if room is None:
            return error(404, "unknown_room", "No such room.")
        try:
            body = await request.body()
            data = json.loads(body) if len(body) <= 65_536 else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return error(400, "bad_request", "Send a JSON object of settings.")
        try:
            changes = await self.parse(room.name, data)
            if changes.errors:
                return JSONResponse({"error": "invalid", "errors": changes.errors}, status_code=400)
            await self.apply(room.name, changes, session.user)
            return JSONResponse(await self.figures(room.name), headers=NO_STORE)
        except RedisError:
            return error(503, "unavailable", "Redis is unreachable; nothing was changed.")

    async def form_settings(self, request: Request, session: Session) -> Response:
        room = self.rooms.get(request.path_params["room"])
        if room is None:
            return self.error_page(request, 404, "No such room", "Nothing was changed.")
        try:
            # An emptied field means "clear it" (the opening, a banner), so blanks are kept.
            form = await read_form(request, keep_blank=True)
        except FormTooLarge:
            return self.error_page(request, 413, "Form too large", "Nothing was changed.")
        if not csrf_ok(session, form.pop("csrf", None)):
            return self.error_page(request, 403, "Nothing was changed", CSRF_ADVICE)
        data: dict[str, Any] = {k: v for k, v in form.items() if not k.startswith("autopilot.")}
        pilot = {k.split(".", 1)[1]: v for k, v in form.items() if k.startswith("autopilot.")}
        if pilot:
            pilot.setdefault("enabled", "0")  # an unticked checkbox sends nothing
            data["autopilot"] = pilot
        try:
            changes = await self.parse(room.name, data)
            if changes.errors:
                return await self.dashboard_page(request, session, {room.name: changes.errors}, 400)
            await self.apply(room.name, changes, session.user)
        except RedisError:
            return self.error_page(
                request, 503, "Nothing was changed", "Redis is unreachable; try again shortly."
            )
        return RedirectResponse(f"{PREFIX}/#room-{room.name}", status_code=303, headers=NO_STORE)

    async def parse(self, room: str, data: Mapping[str, Any]) -> Changes:
        state = await self.store.state(room)
        return parse_changes(
            data,
            now_us=time.time_ns() // 1000,
            languages=self.pages.languages,
            autopilot=Autopilot.from_json(state.get("autopilot")),
        )

    async def apply(self, room: str, changes: Changes, who: str) -> None:
        before = await self.store.state(room)
        await self.store.configure(room, **changes.store_kwargs())
        if autopilot.base_outdated(Autopilot.from_json(before.get("autopilot")), changes):
            await autopilot.forget_base(self.store, room)
        after = await self.store.state(room)
        diff = {}
        for setting, field in STATE_FIELDS.items():
            old, new = before.get(field, ""), after.get(field, "")
            if getattr(changes, setting) is not None and old != new:
                diff[setting] = (old, new)
        if diff:
            await self.audit.record(who, room, diff, changes.why)

    async def api_invitations(self, request: Request, session: Session) -> Response:
        """
        summary: Make single-use invitation codes into a priority lane
        description: >
          JSON {lane, count (1 to 10,000), why}. Each code lets exactly one visitor into the
          lane, typed at /_waitroom/rooms/{room}/invite or opened as its link. Needs the
          X-CSRF-Token header.
        parameters:
          - {name: room, in: path, required: true, schema: {type: string}}
          - {name: X-CSRF-Token, in: header, required: true, schema: {type: string}}
        responses:
          200: {description: "{codes: [...], links: [...]}"}
          400: {description: Unknown lane or bad count}
        """
        room = self.rooms.get(request.path_params["room"])
        if room is None or self.invitations is None:
            return error(404, "unknown_room", "No such room.")
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return error(400, "bad_request", "Send a JSON object {lane, count}.")
        lane, count = data.get("lane"), data.get("count", 1)
        if not isinstance(lane, str) or lane not in room.lanes:
            return JSONResponse(
                {
                    "error": "invalid",
                    "errors": {
                        "lane": "must be one of: "
                        + (", ".join(room.lanes) or "(this room has no lanes)")
                    },
                },
                status_code=400,
            )
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
            return JSONResponse(
                {
                    "error": "invalid",
                    "errors": {"count": "must be a whole number from 1 to 10,000"},
                },
                status_code=400,
            )
        codes = [self.invitations.make(room.name, lane) for _ in range(count)]
        base = str(request.base_url).rstrip("/")
        links = [f"{base}/_waitroom/rooms/{room.name}/invite?code={c}" for c in codes]
        await self.audit.record(
            session.user,
            room.name,
            {"invitations": ("", f"{count} for lane {lane}")},
            str(data.get("why") or "")[:500],
        )
        return JSONResponse({"codes": codes, "links": links}, headers=NO_STORE)

    # -- audit -----------------------------------------------------------------------------

    async def api_audit(self, request: Request, session: Session) -> Response:
        """
        summary: The audit log, newest first (who, when, setting, old, new, why)
        parameters:
          - {name: room, in: query, required: false, schema: {type: string}}
          - {name: limit, in: query, required: false, schema: {type: integer}}
        responses:
          200: {description: Entries}
          401: {description: Not logged in}
        """
        try:
            limit = min(10_000, max(1, int(request.query_params.get("limit", "100"))))
        except ValueError:
            return error(400, "bad_request", "limit must be a whole number.")
        entries = await self.audit.recent(limit, request.query_params.get("room"))
        return JSONResponse({"entries": [asdict(e) for e in entries]}, headers=NO_STORE)

    async def audit_csv(self, request: Request, session: Session) -> Response:
        """The whole audit log, streamed a page at a time (it keeps up to 100,000 entries)."""
        room = request.query_params.get("room")

        async def rows() -> AsyncIterator[str]:
            yield as_csv([])  # the header row
            async for page in self.audit.pages(room):
                yield as_csv(page, header=False)

        return StreamingResponse(
            rows(),
            media_type="text/csv",
            headers=NO_STORE | {"Content-Disposition": 'attachment; filename="waitroom-audit.csv"'},
        )

    async def openapi(self, request: Request, session: Session) -> Response:
        schema = SchemaGenerator(
            {
                "openapi": "3.0.3",
                "info": {
                    "title": "waitroom ops API",
                    "version": "1",
                    "description": "Log in with POST /_waitroom/ops/login (JSON {user, password}); "
                    "send the returned csrf as X-CSRF-Token on changes.",
                },
            }
        )
        return JSONResponse(name_the_rooms(schema.get_schema(self.routes()), self.rooms))

    # -- plumbing --------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        status_code: int = 200,
        headers: Mapping[str, str] = NO_STORE,
    ) -> Response:
        response = self.pages.render(
            request, template, dict(context), status_code=status_code, headers=headers, lang="en"
        )
        return response

    def error_page(self, request: Request, status: int, title: str, detail: str) -> Response:
        """For the forms: a page a person can read and go back from, not a JSON error."""
        return self.render(request, "ops/error.html", {"title": title, "detail": detail}, status)

    def routes(self) -> list[BaseRoute]:
        g = self.guard
        return [
            Route(f"{PREFIX}/login", self.login_page, methods=["GET"], include_in_schema=False),
            Route(f"{PREFIX}/login", self.login, methods=["POST"], include_in_schema=False),
            Route(f"{PREFIX}/logout", g(self.logout), methods=["POST"], include_in_schema=False),
            Route(f"{PREFIX}/", g(self.dashboard), methods=["GET"], include_in_schema=False),
            Route(
                f"{PREFIX}/rooms/{{room}}",
                g(self.form_settings),
                methods=["POST"],
                include_in_schema=False,
            ),
            Route(
                f"{PREFIX}/api/rooms",
                g(self.api_rooms, api=True),
                methods=["GET"],
                include_in_schema=False,
            ),
            Route(f"{PREFIX}/api/rooms/{{room}}", g(self.api_room, api=True), methods=["GET"]),
            Route(
                f"{PREFIX}/api/rooms/{{room}}/settings",
                g(self.api_settings, change=True, api=True),
                methods=["POST"],
            ),
            Route(f"{PREFIX}/api/audit", g(self.api_audit, api=True), methods=["GET"]),
            Route(
                f"{PREFIX}/api/rooms/{{room}}/invitations",
                g(self.api_invitations, change=True, api=True),
                methods=["POST"],
            ),
            Route(
                f"{PREFIX}/audit.csv", g(self.audit_csv), methods=["GET"], include_in_schema=False
            ),
            Route(
                f"{PREFIX}/openapi.json",
                g(self.openapi, api=True),
                methods=["GET"],
                include_in_schema=False,
            ),
        ]


def error(status: int, code: str, detail: str, headers: Mapping[str, str] = NO_STORE) -> Response:
    return JSONResponse(
        {"error": code, "detail": detail}, status_code=status, headers=dict(headers)
    )
