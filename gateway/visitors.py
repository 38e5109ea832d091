"""What a visitor gets: the waiting page, the status API, the pass, or the booking site.

A status check by someone waiting is answered from this worker's view of the line, without
Redis. Redis is touched to join, once at the visitor's turn to collect the pass, once after a
scheduled opening to learn the drawn place, when a receipt is redeemed, and once per worker
for each browser that uses a pass (to count the browsers a pass is used from).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from queue_core.keys import guess_key
from queue_core.line_view import LineView, Standing
from queue_core.rooms import RoomConfig
from queue_core.store import Claimed, LineStore, Newcomer
from queue_core.tokens import (
    Credentials,
    InvalidCredential,
    Pass,
    Ticket,
    new_visitor_id,
    pass_id_for,
)

from .challenge import Challenge, Challenges
from .client_ip import ClientAddress, TrustedProxies
from .forms import FormTooLarge, read_form
from .i18n import LANG_COOKIE
from .invitations import Invitations
from .limits import FailureLimiter
from .line_keeper import LineKeeper
from .metrics import NO_ROOM, GatewayMetrics
from .pages import LANG_COOKIE_SECONDS, Pages
from .pass_sessions import PassSessions, new_session_id, parse_session, session_cookie
from .proxy import BackendProxy
from .receipts import Receipts
from .status import (
    VisitorStatus,
    admitted_status,
    closed_status,
    scheduled_status,
    waiting_status,
)
from .status_text import StatusText, banner_for, status_text

log = logging.getLogger("waitroom.gateway")
NO_STORE = {"Cache-Control": "no-store"}
TICKET_HEADER = "x-waitroom-ticket"
# An API client's proof of work: the challenge it was given, and the nonce that solves it.
CHALLENGE_HEADER = "x-waitroom-challenge"
NONCE_HEADER = "x-waitroom-nonce"
TICKET_COOKIE_SECONDS = 24 * 3600
# Wrong receipt or invitation codes allowed per address per window: plenty for typos, and
# against 40-bit checks it leaves guessing hopeless.
GUESS_LIMIT = 20
GUESS_WINDOW = 900
CLOCK_SKEW = 120  # seconds gateways' clocks may disagree by, for a spent challenge's record


def ticket_cookie(room: str) -> str:
    return f"wr_ticket_{room}"


def pass_cookie(room: str) -> str:
    return f"wr_pass_{room}"


class Unavailable(Exception):
    """The line cannot be read or written right now (Redis unreachable)."""


class Gate:
    def __init__(
        self,
        *,
        rooms: Mapping[str, RoomConfig],
        keeper: LineKeeper,
        credentials: Credentials,
        receipts: Receipts,
        invitations: Invitations,
        proxy: BackendProxy,
        pages: Pages,
        cookie_secure: str = "auto",
        internal_paths: Sequence[str] = ("/_backend/", "/_sim/", "/metrics"),
        metrics: GatewayMetrics | None = None,
        challenges: Challenges | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.rooms = rooms
        self.keeper = keeper
        self.metrics = metrics or keeper.metrics
        self.store: LineStore = keeper.store
        self.credentials = credentials
        self.receipts = receipts
        self.invitations = invitations
        self.guesses = FailureLimiter(keeper.store.redis, GUESS_LIMIT, GUESS_WINDOW)
        self.sessions = PassSessions(keeper.store, self.metrics)
        self.challenges = challenges or Challenges(["unused: rooms ask for no proof of work"])
        self.proxies = proxies or TrustedProxies()
        self.warned_private = False
        self.proxy = proxy
        self.pages = pages
        self.cookie_secure = cookie_secure
        # Entries ending in "/" cover everything below them; others are exact paths.
        self.internal_prefixes = tuple(p for p in internal_paths if p.endswith("/"))
        self.internal_paths = frozenset(p for p in internal_paths if not p.endswith("/"))

    # -- routing ---------------------------------------------------------------------------

    def room_for_path(self, path: str) -> RoomConfig | None:
        for room in self.rooms.values():
            if room.protects(path):
                return room
        return None

    async def site(self, request: Request) -> Response:
        """Every request outside /_waitroom/: proxied, unless it is protected and unadmitted."""
        room = self.room_for_path(request.url.path)
        if room is None:
            path = request.url.path
            if path in self.internal_paths or path.startswith(self.internal_prefixes):
                # The booking site's own ops, metrics and simulator endpoints are for the
                # operators' network, never for the public through the gateway.
                return self.error_json(404, "not_found", "No such page.")
            return await self.proxy.forward(request, observe=self.metrics.forwarded(NO_ROOM))
        admission = self.valid_pass(request, room)
        if admission is not None:
            return await self.admitted(request, room, admission)
        return await self.queue(request, room, api=False)

    async def admitted(self, request: Request, room: RoomConfig, admission: Pass) -> Response:
        """A genuine, current pass: to the site, unless ops revoked it or it is a copy in
        more browsers than the room allows. Both are decided from this worker's memory in
        the steady state: the epoch comes with every tick, and known browsers are cached."""
        snap = self.keeper.views[room.name].snapshot
        if snap is not None and admission.epoch < snap.epoch:
            self.metrics.token_refused(room.name, "pass", "revoked")
            return self.pass_refused(request, room, "pass_revoked")
        most = self.sessions_per_pass(room)
        session = parse_session(request.cookies.get(session_cookie(room.name)))
        fresh = session is None and most > 0
        session = session or new_session_id()
        if not await self.sessions.admits(room.name, admission, session, most):
            self.metrics.token_refused(room.name, "pass", "sessions")
            return self.pass_refused(request, room, "pass_sessions")
        response = await self.forward_admitted(
            request, room, admission.visitor, admission.expires_at
        )
        if fresh:
            self.set_session(request, response, room, session, admission.expires_at)
        return response

    def sessions_per_pass(self, room: RoomConfig) -> int:
        """Browsers per pass: as ops set it live (from the tick), else the room's config."""
        snap = self.keeper.views[room.name].snapshot
        if snap is None or snap.sessions_per_pass is None:
            return room.sessions_per_pass
        return snap.sessions_per_pass

    def pass_refused(self, request: Request, room: RoomConfig, kind: str) -> Response:
        """A clear page, and this browser's credentials for the room set aside, so that
        "join the line" from here starts afresh, at the end of the line. A revoked pass must
        not lead back to the front: that would undo the revocation for whoever held it."""
        response = self.message(request, room, kind, 403)
        for cookie in (pass_cookie, session_cookie, ticket_cookie):
            response.delete_cookie(cookie(room.name), path="/")
        return response

    # -- credentials -----------------------------------------------------------------------

    def valid_pass(self, request: Request, room: RoomConfig) -> Pass | None:
        value = request.cookies.get(pass_cookie(room.name))
        if not value:
            return None
        try:
            admission = self.credentials.read_pass(value, time.time())
        except InvalidCredential as exc:
            self.metrics.token_refused(room.name, "pass", self.pass_refusal(value, exc))
            return None
        if admission.room != room.name:
            self.metrics.token_refused(room.name, "pass", "wrong_room")
            return None
        return admission

    def pass_refusal(self, value: str, exc: InvalidCredential) -> str:
        """Why a pass was refused, for the metrics (only refusals pay for this)."""
        if exc.__cause__ is None:
            try:  # good in every respect but its time?
                self.credentials.read_pass(value, float("-inf"))
            except InvalidCredential:
                return "invalid"
            return "expired"
        return refusal_reason(exc)

    def read_ticket(self, request: Request, room: RoomConfig, api: bool) -> Ticket | None:
        """The visitor's ticket for this room, None if they have none; raises if it is bad."""
        value = request.cookies.get(ticket_cookie(room.name))
        if value is None and api:
            value = request.headers.get(TICKET_HEADER)
        if value is None:
            return None
        try:
            ticket = self.credentials.read_ticket(value)
        except InvalidCredential as exc:
            self.metrics.token_refused(room.name, "ticket", refusal_reason(exc))
            raise
        if ticket.room != room.name:
            self.metrics.token_refused(room.name, "ticket", "wrong_room")
            raise InvalidCredential("ticket is for another room")
        return ticket

    # -- the line --------------------------------------------------------------------------

    async def queue(self, request: Request, room: RoomConfig, *, api: bool) -> Response:
        try:
            ticket = self.read_ticket(request, room, api)
        except InvalidCredential:
            return self.bad_ticket(request, room, api)
        if ticket is None and api:
            return self.error_json(
                401, "not_in_line", "No queue ticket: join first (POST .../join)."
            )
        return await self.enter(request, room, ticket, api)

    async def enter(
        self,
        request: Request,
        room: RoomConfig,
        ticket: Ticket | None,
        api: bool,
        proof: Challenge | None = None,
    ) -> Response:
        """A visitor at the line: where their ticket stands, or a new place without one
        (with the proof of work an app sent, if any)."""
        line_down = not self.keeper.is_fresh(room.name)
        if line_down and room.fail_open:
            return await self.let_through(request, room, ticket, api)
        if line_down and ticket is None and self.keeper.views[room.name].snapshot is not None:
            # No tick has reached Redis for seconds: a join would only wait for its timeout.
            return self.unavailable(request, room, api)
        try:
            if ticket is None:
                return await self.join(request, room, api=api, proof=proof)
            return await self.respond_for_ticket(request, room, ticket, api)
        except (Unavailable, RedisError) as exc:
            log.warning("room %s unavailable: %s", room.name, exc)
            if room.fail_open:
                return await self.let_through(request, room, ticket, api)
            held = None if ticket is None else self.held_place(room, ticket)
            if held is not None:
                return self.show(request, room, held, api)
            return self.unavailable(request, room, api)

    def held_place(self, room: RoomConfig, ticket: Ticket) -> VisitorStatus | None:
        """What a visitor with a ticket is told when the line cannot be reached for what
        their check needed (their pass, a restore after a data loss): their place as this
        worker last saw it, marked as old. Never an error page: the place is kept, and the
        signed ticket proves it once the line is back."""
        view = self.keeper.view(room.name, ticket.lane)
        if view.snapshot is None or ticket.place == 0:
            return None
        location = view.locate(ticket.place)
        return waiting_status(
            view,
            room,
            location.ahead if location.standing is Standing.WAITING else 0,
            ticket.ahead_at_join,
            stale=True,
            receipt=self.receipts.code(room.name, ticket.place, ticket.lane),
            share=room.lane_shares().get(ticket.lane, 1.0),
        )

    async def let_through(
        self, request: Request, room: RoomConfig, ticket: Ticket | None, api: bool
    ) -> Response:
        """Fail open: the line cannot be reached, so the room steps aside and everyone goes
        through with a pass of the usual lifetime, signed here without Redis."""
        visitor = ticket.visitor if ticket is not None else new_visitor_id()
        ticket = ticket or Ticket(room.name, 0, visitor, int(time.time()))
        snap = self.keeper.views[room.name].snapshot
        claimed = Claimed(
            round((time.time() + room.pass_seconds) * 1_000_000),
            snap.epoch if snap is not None else 0,
        )
        self.metrics.failed_open(room.name)
        # Browsers per pass are counted in Redis, which is away: the count starts with the
        # pass's first request once it is back.
        return await self.admit_now(request, room, ticket, claimed, api, count_session=False)

    async def admit_now(
        self,
        request: Request,
        room: RoomConfig,
        ticket: Ticket,
        claimed: Claimed,
        api: bool,
        then: str | None = None,
        *,
        count_session: bool = True,
    ) -> Response:
        """A visitor let in without a turn in line to wait for: the API says so with the
        pass; a page request goes straight on to the site, carrying the new pass (or to
        `then`, after a posted form)."""
        if api:
            return self.your_turn(request, room, ticket, claimed, api)
        admission = self.new_pass(room, ticket, claimed)
        token = self.credentials.issue_pass(admission)
        if then is not None:
            response: Response = RedirectResponse(then, status_code=303, headers=NO_STORE)
            self.set_pass(request, response, room, token, claimed.expires_us)
            return response
        # This request is the pass's first use: it counts as the browser's session.
        session = new_session_id()
        if count_session:
            await self.sessions.admits(room.name, admission, session, self.sessions_per_pass(room))
        response = await self.forward_admitted(
            request, room, ticket.visitor, admission.expires_at, token
        )
        self.set_pass(request, response, room, token, claimed.expires_us, session)
        return response

    def gen(self, room: RoomConfig) -> str:
        """The room's generation as this worker knows it (stamped on every ticket)."""
        snap = self.keeper.views[room.name].snapshot
        return snap.gen if snap is not None else ""

    def known_seq(self, room: RoomConfig, lane: str) -> int:
        snap = self.keeper.view(room.name, lane).snapshot
        return snap.lane(lane).seq if snap is not None else 0

    async def view(self, room: RoomConfig) -> LineView:
        view = self.keeper.views[room.name]
        if view.snapshot is None:
            try:
                await self.keeper.refresh(room.name)
            except RedisError as exc:
                raise Unavailable(str(exc)) from exc
        return view

    async def respond_for_ticket(
        self, request: Request, room: RoomConfig, ticket: Ticket, api: bool
    ) -> Response:
        await self.view(room)
        view = self.keeper.view(room.name, ticket.lane)
        snap = view.snapshot
        assert snap is not None
        if ticket.place == 0:  # joined a pre-queue: the opening draws the place
            if snap.scheduled:
                return self.show(request, room, scheduled_status(view, room), api)
            place = await self.metrics.redis(
                "where", self.store.place_after_opening(room.name, ticket.visitor, ticket.lane)
            )
            if place == 0:
                return self.show(request, room, scheduled_status(view, room), api)
            if place is None:
                return await self.join(
                    request,
                    room,
                    api=api,
                    visitor=ticket.visitor,
                    notice="lapsed",
                    lane=ticket.lane,
                )
            location = view.locate(place)
            ahead = location.ahead if location.standing is Standing.WAITING else 0
            ticket = Ticket(
                room.name,
                place,
                ticket.visitor,
                int(time.time()),
                ahead,
                ticket.lane,
                gen=self.gen(room),
            )
            response = await self.respond_located(request, room, view, ticket, api)
            self.set_ticket(request, response, ticket)
            return response
        if ticket.gen and snap.gen and ticket.gen != snap.gen:
            # Redis lost the line since this ticket was issued: the ticket's signed place puts
            # the visitor back where they were, and a ticket of the new generation goes out.
            await self.metrics.redis(
                "restore",
                self.store.restore(room.name, ticket.visitor, ticket.place, ticket.lane),
            )
            ticket = dataclasses.replace(ticket, gen=snap.gen)
            response = await self.respond_located(request, room, view, ticket, api)
            self.set_ticket(request, response, ticket)
            return response
        return await self.respond_located(request, room, view, ticket, api)

    def still_waiting(self, room: RoomConfig, ticket: Ticket) -> VisitorStatus | None:
        """The status of a visitor who is plainly waiting, from this worker's view alone, and
        their heartbeat noted; None for anything that needs more (their turn, a lapsed place,
        a pre-queue ticket, a ticket from before a Redis data loss, no snapshot yet). Pure
        and synchronous: the raw status path (`fast_status`) answers with it too."""
        if ticket.place == 0:
            return None
        view = self.keeper.view(room.name, ticket.lane)
        snap = view.snapshot
        if snap is None or (ticket.gen and snap.gen and ticket.gen != snap.gen):
            return None
        location = view.locate(ticket.place)
        if location.standing is not Standing.WAITING:
            return None
        if room.fail_open and not self.keeper.is_fresh(room.name):
            return None  # the room has stepped aside: `queue` lets them through
        self.keeper.note_seen(room.name, ticket.place, ticket.lane)
        return waiting_status(
            view,
            room,
            location.ahead,
            ticket.ahead_at_join,
            stale=not self.keeper.is_fresh(room.name),
            receipt=self.receipts.code(room.name, ticket.place, ticket.lane),
            share=room.lane_shares().get(ticket.lane, 1.0),
        )

    async def respond_located(
        self, request: Request, room: RoomConfig, view: LineView, ticket: Ticket, api: bool
    ) -> Response:
        status = self.still_waiting(room, ticket)
        if status is not None:
            return self.show(request, room, status, api)
        location = view.locate(ticket.place)
        if location.standing is Standing.TURN:
            # If the line cannot be reached, `enter` tells them they are next (held_place):
            # the admission waits for them in Redis for the claim window.
            claimed = await self.metrics.redis(
                "claim", self.store.claim(room.name, ticket.visitor, room.pass_seconds)
            )
            if claimed is not None:
                return self.your_turn(request, room, ticket, claimed, api)
            if await self.line_was_restored(room, ticket):
                # Their turn was among the last writes of a primary that died before its
                # replica had them: the room is restored now, and so is this visitor.
                return await self.respond_for_ticket(request, room, ticket, api)
        # Swept out, or skipped at the head, for not checking within the grace period: they
        # are back, so they go to the end of the line, and the page says why.
        return await self.join(
            request, room, api=api, visitor=ticket.visitor, notice="lapsed", lane=ticket.lane
        )

    async def line_was_restored(self, room: RoomConfig, ticket: Ticket) -> bool:
        """Tick now: has the room moved to a new generation since `ticket` was issued? This
        worker's ticks may not have noticed a failover's lost writes yet."""
        await self.keeper.refresh(room.name)
        snap = self.keeper.views[room.name].snapshot
        return bool(ticket.gen and snap is not None and snap.gen and snap.gen != ticket.gen)

    async def join(
        self,
        request: Request,
        room: RoomConfig,
        *,
        api: bool,
        visitor: str | None = None,
        notice: str | None = None,
        lane: str = "",
        proof: Challenge | None = None,
        then: str | None = None,
    ) -> Response:
        """Give a place (or the one this visitor holds). A visitor the caller knows (from a
        signed ticket) rejoins as they are; a newcomer is held to the room's join limits and
        proof of work, checked inside the same single round trip. `then`: a path to redirect
        to on success instead of answering with the page (after a form was posted)."""
        newcomer = None
        if visitor is None:
            snap = self.keeper.views[room.name].snapshot
            bits = snap.challenge_bits if snap is not None and not snap.closed else 0
            if bits and (proof is None or proof.bits < bits):
                self.metrics.join_refused(room.name, "challenge")
                return self.challenge(request, room, bits, api, then)
            client = self.client(request)
            newcomer = Newcomer(client.address, client.subnet, client.public)
            if proof is not None:
                newcomer = dataclasses.replace(
                    newcomer,
                    proof_id=proof.challenge_id,
                    proof_bits=proof.bits,
                    # Remembered as spent for as long as any gateway could still accept it.
                    proof_ttl_ms=max(1, proof.expires_at - int(time.time()) + CLOCK_SKEW) * 1000,
                )
        visitor = visitor or new_visitor_id()
        result = await self.metrics.redis(
            "join",
            self.store.join(
                room.name,
                visitor,
                lane=lane,
                known_gen=self.gen(room),
                known_seq=self.known_seq(room, lane),
                newcomer=newcomer,
            ),
        )
        if result.status == "recovering":
            raise Unavailable("the line is being restored after a Redis data loss")
        if result.status == "limited":
            self.metrics.join_refused(room.name, "limited")
            return self.too_many_joins(request, room, result.retry_after_ms, api)
        if result.status in ("challenge", "replayed"):
            self.metrics.join_refused(room.name, result.status)
            # Asked for more than was shown (ops just raised it), or shown a spent proof.
            bits = result.challenge_bits or (proof.bits if proof else 1)
            return self.challenge(request, room, bits, api, then)
        self.metrics.arrival(room.name)
        await self.view(room)
        view = self.keeper.view(room.name, lane)
        if result.status == "closed":
            return self.show(request, room, closed_status(view, room), api)
        if result.status == "admitted":
            # Nobody waiting and a slot free: no pointless queue, straight to the site.
            ticket = Ticket(
                room.name, result.place, visitor, int(time.time()), 0, lane, gen=self.gen(room)
            )
            claimed = await self.metrics.redis(
                "claim", self.store.claim(room.name, visitor, room.pass_seconds)
            )
            if claimed is not None:
                return await self.admit_now(request, room, ticket, claimed, api, then)
        if result.status == "scheduled":
            ticket = Ticket(room.name, 0, visitor, int(time.time()), 0, lane, gen=self.gen(room))
            status = scheduled_status(view, room)
        else:
            location = view.locate(result.place)
            ahead = location.ahead if location.standing is Standing.WAITING else 0
            ticket = Ticket(
                room.name, result.place, visitor, int(time.time()), ahead, lane, gen=self.gen(room)
            )
            status = waiting_status(
                view,
                room,
                ahead,
                ahead,
                notice=notice,
                receipt=self.receipts.code(room.name, result.place, lane),
                share=room.lane_shares().get(lane, 1.0),
            )
        signed = self.credentials.issue_ticket(ticket)  # once, for the body and the cookie
        response: Response
        if then is not None:
            response = RedirectResponse(then, status_code=303, headers=NO_STORE)
        else:
            response = self.show(request, room, status, api, signed_ticket=signed)
        self.set_ticket(request, response, ticket, signed)
        return response

    def client(self, request: Request) -> ClientAddress:
        peer = request.client.host if request.client else None
        client = self.proxies.client(peer, request.headers.getlist("x-forwarded-for"))
        if not client.public and not self.warned_private:
            self.warned_private = True
            log.warning(
                "joins arrive from %s, not a public address: the per-address join limits do "
                "not count them. Behind a proxy, set WAITROOM_TRUSTED_PROXIES to its CIDRs.",
                client.address,
            )
        return client

    def your_turn(
        self, request: Request, room: RoomConfig, ticket: Ticket, claimed: Claimed, api: bool
    ) -> Response:
        """The pass, and a page saying so: the next request to the same URL is the site."""
        expires_us = claimed.expires_us
        token = self.issue_pass(room, ticket, claimed)
        next_url = safe_next(room, request.query_params.get("next")) if api else None
        status = admitted_status(
            room,
            expires_us // 1_000_000,
            time.time_ns() // 1000,
            next_url,
            self.keeper.views[room.name].snapshot,
        )
        # The browser keeps its session id; an app is told it, to send back with the pass.
        session = parse_session(request.cookies.get(session_cookie(room.name)))
        session = session or new_session_id()
        if api:
            body = status.as_json() | {
                "pass": token,
                "pass_expires_at": status.pass_expires_at,
                "session": session,
            }
            response: Response = self.json(request, room, status, body)
        else:
            response = self.show(request, room, status, api)
        self.set_pass(request, response, room, token, expires_us, session)
        return response

    async def forward_admitted(
        self,
        request: Request,
        room: RoomConfig,
        visitor: str,
        pass_expires_at: int,
        token: str | None = None,
    ) -> Response:
        started = time.perf_counter()

        def site_down(request: Request, status_code: int) -> Response:
            # In the visitor's language, and saying what they most want to know: the
            # admission is not lost, and until when it holds.
            lang = self.pages.language(request)
            until = self.pages.formatter(lang).clock(pass_expires_at * 1_000_000, room.timezone)
            context = {"room": room, "kind": "site_down", "until": until}
            return self.pages.render(
                request, "message.html", context, status_code=status_code, headers=NO_STORE
            )

        # The pass goes along for a booking site that checks it itself (defence in depth):
        # from the cookie, or freshly issued when the visitor was let straight through.
        token = token or request.cookies.get(pass_cookie(room.name), "")
        response = await self.proxy.forward(
            request,
            extra_headers={
                "X-Waitroom-Visitor": visitor,
                "X-Waitroom-Room": room.name,
                "X-Waitroom-Pass": token,
            },
            observe=self.metrics.forwarded(room.name),
            unavailable_page=site_down,
        )
        # Time to the response's head: what the booking site's load does to a visitor.
        self.keeper.proxy_stats.record(
            room.name, time.perf_counter() - started, response.status_code
        )
        return response

    # -- API endpoints ---------------------------------------------------------------------

    def api_room(self, request: Request) -> RoomConfig | None:
        return self.rooms.get(request.path_params["room"])

    async def api_status(self, request: Request) -> Response:
        room = self.api_room(request)
        if room is None:
            return self.error_json(404, "unknown_room", "No waiting room by that name.")
        return await self.queue(request, room, api=True)

    async def api_join(self, request: Request) -> Response:
        room = self.api_room(request)
        if room is None:
            return self.error_json(404, "unknown_room", "No waiting room by that name.")
        try:
            ticket = self.read_ticket(request, room, api=True)
        except InvalidCredential:
            ticket = None  # joining afresh is exactly what a visitor with a bad ticket needs
        proof = self.proof(
            room, request.headers.get(CHALLENGE_HEADER, ""), request.headers.get(NONCE_HEADER, "")
        )
        return await self.enter(request, room, ticket, api=True, proof=proof)

    def proof(self, room: RoomConfig, challenge: str, nonce: str) -> Challenge | None:
        """A proof of work shown with a join, if it is genuine, current and correct."""
        if not challenge:
            return None
        return self.challenges.verify(room.name, challenge, nonce, time.time())

    async def entry(self, request: Request) -> Response:
        """A link into the line (from a news article, an SMS...): go to `next` in the room,
        where the line takes over. Never anywhere else."""
        room = self.api_room(request)
        if room is None:
            return self.message(request, None, "unknown_room", 404)
        form: dict[str, str] = {}
        if request.method == "POST":  # the proof-of-work page, solved
            try:
                form = await read_form(request, limit=4096)
            except FormTooLarge:
                form = {}
        target = safe_next(room, form.get("next") or request.query_params.get("next"))
        response = RedirectResponse(target, status_code=303, headers=NO_STORE)
        try:
            ticket = self.read_ticket(request, room, api=False)
        except InvalidCredential:
            ticket = None
        if request.method == "POST" and not same_origin(request):
            # A form posted from another site: SameSite=Lax keeps the ticket out of a
            # cross-site POST, so joining (or clearing the cookie) would cost the visitor
            # the place they hold. It gets the redirect and nothing else.
            return response
        if ticket is not None or request.method != "POST":
            # Holding a ticket, this browser keeps its place: nothing to join, nothing spent.
            if ticket is None:
                response.delete_cookie(ticket_cookie(room.name), path="/")
            return response
        proof = self.proof(room, form.get("challenge", ""), form.get("nonce", ""))
        try:
            return await self.join(request, room, api=False, proof=proof, then=target)
        except (Unavailable, RedisError) as exc:
            log.warning("room %s unavailable: %s", room.name, exc)
            return self.unavailable(request, room, api=False)

    async def set_language(self, request: Request) -> Response:
        lang = request.path_params["lang"]
        target = safe_local_path(request.query_params.get("next"))
        response = RedirectResponse(target, status_code=303, headers=NO_STORE)
        if lang in self.pages.catalogs:
            response.set_cookie(
                LANG_COOKIE,
                lang,
                max_age=LANG_COOKIE_SECONDS,
                path="/",
                samesite="lax",
                secure=self.secure(request),
            )
        return response

    async def receipt(self, request: Request) -> Response:
        """Show this visitor's receipt, or redeem a typed (POST) or linked (?code=) one."""
        room = self.api_room(request)
        if room is None:
            return self.message(request, None, "unknown_room", 404)
        typed = await typed_code(request)
        if typed is not None:
            return await self.redeem(request, room, typed)
        context: dict[str, Any] = {"room": room}
        try:
            ticket = self.read_ticket(request, room, api=False)
        except InvalidCredential:
            ticket = None
        if ticket is not None and ticket.place > 0:
            code = self.receipts.code(room.name, ticket.place, ticket.lane)
            link = str(request.url.replace(query=f"code={code}"))
            context |= {"code": code, "receipt_number": ticket.place, "link": link}
        return self.page(request, room, "receipt.html", context)

    async def redeem(self, request: Request, room: RoomConfig, typed: str) -> Response:
        lang = self.pages.language(request)
        if await self.guessing(request, room):
            return self.too_many_guesses(request, room, "receipt.html")
        found = self.receipts.place(room.name, typed, room.lane_shares())
        if found is None:
            await self.wrong_guess(request, room)
            error = self.pages.translate(lang, "That code is not right. Check it and try again.")
            return self.page(
                request,
                room,
                "receipt.html",
                {"room": room, "error": error, "typed": typed[:40]},
                400,
            )
        lane, place = found
        try:
            visitor = await self.metrics.redis("holder", self.store.holder(room.name, place, lane))
        except RedisError:
            return self.unavailable(request, room, api=False)
        if visitor is None:
            error = self.pages.translate(
                lang,
                "That place is no longer in the line: it lapsed, or its turn has come and "
                "gone. You can join the line again.",
            )
            return self.page(
                request,
                room,
                "receipt.html",
                {"room": room, "error": error, "typed": typed[:40]},
                410,
            )
        view = self.keeper.view(room.name, lane)
        ahead = view.locate(place).ahead if view.snapshot is not None else 0
        ticket = Ticket(
            room.name, place, visitor, int(time.time()), ahead, lane, gen=self.gen(room)
        )
        response = RedirectResponse(room.entry_path, status_code=303, headers=NO_STORE)
        self.set_ticket(request, response, ticket)
        return response

    async def invite(self, request: Request) -> Response:
        """Redeem a priority-lane invitation (a link, or a code typed into the form)."""
        room = self.api_room(request)
        if room is None:
            return self.message(request, None, "unknown_room", 404)
        typed = await typed_code(request)
        if typed is None:
            return self.page(request, room, "invite.html", {"room": room})
        lang = self.pages.language(request)
        if await self.guessing(request, room):
            return self.too_many_guesses(request, room, "invite.html")
        found = self.invitations.parse(room.name, typed, room.lanes)
        if found is None:
            await self.wrong_guess(request, room)
            error = self.pages.translate(
                lang, "That invitation code is not right. Check it and try again."
            )
            return self.page(
                request,
                room,
                "invite.html",
                {"room": room, "error": error, "typed": typed[:60]},
                400,
            )
        lane, invite_id = found
        if self.holds_place(request, room, lane):
            # One place per browser: already in this lane, it keeps that place, and the code
            # is not spent (someone else can still use it).
            return RedirectResponse(room.entry_path, status_code=303, headers=NO_STORE)
        # A fresh visitor id: a place already held in the main lane simply lapses, and can
        # never be admitted as well.
        visitor = new_visitor_id()
        try:
            result = await self.metrics.redis(
                "join", self.store.join(room.name, visitor, lane=lane, invite=invite_id)
            )
        except RedisError:
            return self.unavailable(request, room, api=False)
        self.metrics.arrival(room.name)
        if result.status == "used":
            error = self.pages.translate(lang, "This invitation has already been used.")
            return self.page(
                request,
                room,
                "invite.html",
                {"room": room, "error": error, "typed": typed[:60]},
                409,
            )
        view = self.keeper.view(room.name, lane)
        ahead = 0
        if result.place and view.snapshot is not None:
            location = view.locate(result.place)
            ahead = location.ahead if location.standing is Standing.WAITING else 0
        ticket = Ticket(
            room.name, result.place, visitor, int(time.time()), ahead, lane, gen=self.gen(room)
        )
        response = RedirectResponse(room.entry_path, status_code=303, headers=NO_STORE)
        if result.status != "closed":
            self.set_ticket(request, response, ticket)
        return response

    def holds_place(self, request: Request, room: RoomConfig, lane: str) -> bool:
        """Does this browser hold a ticket for a place in `lane` that has not lapsed, as far
        as this worker can tell?"""
        try:
            ticket = self.read_ticket(request, room, api=False)
        except InvalidCredential:
            return False
        if ticket is None or ticket.lane != lane:
            return False
        view = self.keeper.view(room.name, lane)
        if ticket.place == 0 or view.snapshot is None:
            return True
        return view.locate(ticket.place).standing is not Standing.GONE

    # -- guessing codes --------------------------------------------------------------------

    def guess_keys(self, request: Request, room: RoomConfig) -> list[str]:
        ip = request.client.host if request.client else "unknown"
        return [guess_key(self.store.prefix, room.name, ip)]

    async def guessing(self, request: Request, room: RoomConfig) -> bool:
        try:
            return await self.guesses.blocked(self.guess_keys(request, room))
        except RedisError:
            return False  # the check is a brake, not a gate: Redis trouble must not lock out

    async def wrong_guess(self, request: Request, room: RoomConfig) -> None:
        try:
            await self.guesses.failed(self.guess_keys(request, room))
        except RedisError:
            log.warning("could not count a wrong code from %s", request.client)

    def too_many_guesses(self, request: Request, room: RoomConfig, template: str) -> Response:
        lang = self.pages.language(request)
        error = self.pages.translate(
            lang, "Too many wrong codes from this connection. Please wait 15 minutes."
        )
        response = self.page(request, room, template, {"room": room, "error": error}, 429)
        response.headers["Retry-After"] = str(GUESS_WINDOW)
        return response

    # -- responses -------------------------------------------------------------------------

    def show(
        self,
        request: Request,
        room: RoomConfig,
        status: VisitorStatus,
        api: bool,
        signed_ticket: str | None = None,
    ) -> Response:
        if api:
            body: dict[str, Any] = status.as_json()
            if signed_ticket is not None:
                body["ticket"] = signed_ticket
            return self.json(request, room, status, body)
        lang = self.pages.language(request)
        return self.pages.render(
            request,
            "room.html",
            self.context(room, status, lang),
            headers=NO_STORE,
            lang=lang,
        )

    def context(
        self,
        room: RoomConfig,
        status: VisitorStatus,
        lang: str,
        shown_layout: str | None = None,
    ) -> dict[str, Any]:
        banner, banner_lang = banner_for(status, lang)
        text = status_text(self.pages, lang, room, status, banner, banner_lang, shown_layout)
        return {
            "room": room,
            "status": status,
            "refresh": max(2, round(status.poll_after)),
            "banner_text": banner,
            "banner_lang": banner_lang,
            "text": text,
        }

    def json(
        self, request: Request, room: RoomConfig, status: VisitorStatus, body: dict[str, Any]
    ) -> JSONResponse:
        # The page's own script asks for the status already written in the visitor's
        # language, so JavaScript and no-JavaScript visitors read exactly the same words.
        query = request.query_params
        if query.get("display") == "1":
            lang = self.pages.language(request)
            body["display"] = self.display(
                room, status, lang, query.get("layout"), query.get("path")
            )
        return JSONResponse(body, headers=NO_STORE)

    def display(
        self,
        room: RoomConfig,
        status: VisitorStatus,
        lang: str,
        shown_layout: str | None,
        path: str | None,
        *,
        render: bool = True,
    ) -> dict[str, Any] | None:
        """What the page's script needs to show `status`: the new figures when the section
        the page shows (`shown_layout`) still has the right shape, else the section written
        out whole (or None when `render` is off: the raw status path leaves that to us)."""
        # The page's script sends no layout before its first check of a fresh section: "".
        ctx = self.context(room, status, lang, shown_layout or "")
        text: StatusText = ctx["text"]
        shown = {
            "layout": text.layout,
            "title": text.title,
            "banner": ctx["banner_text"],
            "announce": text.announce,
        }
        if text.layout and text.layout == shown_layout:
            return shown | {"fill": text.fill()}
        if not render:
            return None
        ctx["path"] = safe_next(room, path)
        return shown | {"html": self.pages.render_string(lang, "_status.html", ctx)}

    def page(
        self,
        request: Request,
        room: RoomConfig | None,
        template: str,
        context: Mapping[str, Any],
        status_code: int = 200,
    ) -> Response:
        return self.pages.render(
            request, template, context, status_code=status_code, headers=NO_STORE
        )

    def bad_ticket(self, request: Request, room: RoomConfig, api: bool) -> Response:
        if api:
            response: Response = self.error_json(
                400, "invalid_ticket", "The queue ticket is damaged or not for this room."
            )
        else:
            response = self.message(request, room, "invalid_ticket", 400)
        response.delete_cookie(ticket_cookie(room.name), path="/")
        return response

    def challenge(
        self, request: Request, room: RoomConfig, bits: int, api: bool, then: str | None = None
    ) -> Response:
        """The proof of work to do before joining: a fresh challenge (no Redis: it is signed,
        not stored). The page solves it with its script and posts the answer to the entry
        link; an app gets it as JSON and sends the answer in two headers."""
        challenge = self.challenges.issue(room.name, bits, time.time())
        if api:
            return JSONResponse(
                {
                    "error": "challenge_required",
                    "detail": "This room asks for a proof of work before joining: find a nonce "
                    "(decimal digits) so that SHA-256(challenge + nonce) starts with `bits` "
                    "zero bits, then join again with the X-Waitroom-Challenge and "
                    "X-Waitroom-Nonce headers.",
                    "challenge": challenge,
                    "bits": bits,
                },
                status_code=403,
                headers=NO_STORE,
            )
        # Where to go once joined: the page asked for (or, posted back, where it was going).
        query = f"?{request.url.query}" if request.url.query else ""
        target = then or safe_next(room, request.url.path + query)
        return self.page(
            request,
            room,
            "challenge.html",
            {"room": room, "challenge": challenge, "bits": bits, "next": target},
        )

    def too_many_joins(
        self, request: Request, room: RoomConfig, retry_after_ms: int, api: bool
    ) -> Response:
        seconds = max(1, -(-retry_after_ms // 1000))
        headers = NO_STORE | {"Retry-After": str(seconds)}
        if api:
            return JSONResponse(
                {
                    "error": "too_many_joins",
                    "detail": "Too many people joined from this address in a short time; "
                    "try again after Retry-After seconds.",
                    "retry_after_seconds": seconds,
                },
                status_code=429,
                headers=headers,
            )
        response = self.pages.render(
            request,
            "message.html",
            {"room": room, "kind": "too_many_joins", "retry_seconds": seconds},
            status_code=429,
            headers=headers,
        )
        return response

    def unavailable(self, request: Request, room: RoomConfig, api: bool) -> Response:
        """The line cannot be reached for something that needs it (a new place, a pass).
        An app gets a 503 with Retry-After, the standard "try again"; a person gets a page
        that says their place is kept and tries again by itself, not an error page."""
        if api:
            return self.error_json(
                503,
                "unavailable",
                "The waiting room is briefly unavailable; retry soon.",
                NO_STORE | {"Retry-After": "10"},
            )
        return self.message(request, room, "unavailable", 200)

    def message(
        self,
        request: Request,
        room: RoomConfig | None,
        kind: str,
        status_code: int,
        headers: Mapping[str, str] = NO_STORE,
    ) -> Response:
        return self.pages.render(
            request,
            "message.html",
            {"room": room, "kind": kind},
            status_code=status_code,
            headers=headers,
        )

    @staticmethod
    def error_json(
        status_code: int, error: str, detail: str, headers: Mapping[str, str] = NO_STORE
    ) -> JSONResponse:
        return JSONResponse(
            {"error": error, "detail": detail}, status_code=status_code, headers=dict(headers)
        )

    def secure(self, request: Request) -> bool:
        return self.cookie_secure == "always" or request.url.scheme == "https"

    def set_ticket(
        self, request: Request, response: Response, ticket: Ticket, signed: str | None = None
    ) -> None:
        self.metrics.token_issued(ticket.room, "ticket")
        response.set_cookie(
            ticket_cookie(ticket.room),
            signed or self.credentials.issue_ticket(ticket),
            max_age=TICKET_COOKIE_SECONDS,
            path="/",
            secure=self.secure(request),
            httponly=True,
            samesite="lax",
        )

    def new_pass(self, room: RoomConfig, ticket: Ticket, claimed: Claimed) -> Pass:
        self.metrics.token_issued(room.name, "pass")
        return Pass(
            room.name,
            ticket.visitor,
            claimed.expires_us // 1_000_000,
            pass_id_for(room.name, ticket.visitor, claimed.expires_us),
            claimed.epoch,
        )

    def issue_pass(self, room: RoomConfig, ticket: Ticket, claimed: Claimed) -> str:
        return self.credentials.issue_pass(self.new_pass(room, ticket, claimed))

    def set_pass(
        self,
        request: Request,
        response: Response,
        room: RoomConfig,
        token: str,
        expires_us: int,
        session: str | None = None,
    ) -> None:
        """The pass cookie, and with it this browser's session id (kept if it has one)."""
        until = expires_us // 1_000_000
        self.set_cookie(request, response, pass_cookie(room.name), token, until)
        if session is None and parse_session(request.cookies.get(session_cookie(room.name))):
            return
        self.set_session(request, response, room, session or new_session_id(), until)

    def set_session(
        self, request: Request, response: Response, room: RoomConfig, session: str, until: int
    ) -> None:
        self.set_cookie(request, response, session_cookie(room.name), session, until)

    def set_cookie(
        self, request: Request, response: Response, name: str, value: str, until: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max(1, until - int(time.time())),
            path="/",
            secure=self.secure(request),
            httponly=True,
            samesite="lax",
        )


async def typed_code(request: Request) -> str | None:
    """The code a visitor typed (POST form) or followed a link with (?code=); None if neither."""
    if request.method == "POST":
        try:
            return (await read_form(request, limit=2048)).get("code", "")
        except FormTooLarge:
            return ""
    return request.query_params.get("code")


def same_origin(request: Request) -> bool:
    """Was this request sent by a page of this site? Browsers say so in Sec-Fetch-Site, or
    in Origin on a POST; a client that sends neither is not a browser on another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.url.netloc


def refusal_reason(exc: InvalidCredential) -> str:
    """A signature that does not verify (forged, altered, or signed with a retired secret)
    is "tampered"; anything else unreadable (oversized, wrong shape) is "invalid"."""
    return "tampered" if isinstance(exc.__cause__, BadSignature) else "invalid"


def safe_local_path(raw: str | None, fallback: str = "/") -> str:
    """`raw` if it is a path on this site, else `fallback`: never a way off the site.

    Anything with a scheme, a host, `//`, a backslash, control characters or dot segments
    could leave the site once a browser resolves it: refused.
    """
    if not raw or len(raw) > 2048 or not raw.startswith("/") or raw.startswith("//"):
        return fallback
    if "\\" in raw or any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return fallback
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or any(s in {".", ".."} for s in parts.path.split("/")):
        return fallback
    return raw


def safe_next(room: RoomConfig, raw: str | None) -> str:
    """`raw` if it is a path this room protects on this site, else the room's entry path."""
    target = safe_local_path(raw, room.entry_path)
    return target if room.protects(urlsplit(target).path) else room.entry_path
