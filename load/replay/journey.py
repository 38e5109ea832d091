"""One simulated person's journey, as a state machine the driver steps through.

Each step makes at most one HTTP request and returns how long (in real seconds) until the
visitor's next step, or None when the journey is over. No step sleeps: waiting is the
driver's heap, so a visitor costs a small object and a heap entry, never a task.

Through the gateway:  join -> (refresh storm) -> poll as told -> admitted -> PIN -> inbox ->
verify -> availability -> book (or register without a date once sold out).
Straight at the site:  (refresh storm on /book) -> PIN -> ... the same from there.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .model import PlannedVisitor
from .record import (
    BOOKED,
    ERROR,
    GAVE_UP,
    INBOX,
    JOIN,
    REGISTERED,
    SITE,
    STATUS,
    UNFINISHED,
    Recorder,
    VisitorRecord,
)
from .scaling import ROOM, Squeeze
from .scenario import Behaviour
from .transport import Reply, Transport, cookie_header, update_cookies

PIN_PATTERN = re.compile(r"\b(\d{6})\b")
MIN_BOT_POLL_S = 0.5  # real seconds: a scenario's bot may not poll in a busy loop
MIN_STORM_INTERVAL_S = 0.2
MIN_RETRY_S = 0.05


@dataclass(frozen=True, slots=True)
class Endpoints:
    site: str  # where /book/... is requested: the gateway, or the site itself
    backend: str  # the site itself, for the SMS inbox
    gateway: str | None  # None: no waiting room

    @property
    def join(self) -> str:
        return f"{self.gateway}/_waitroom/api/rooms/{ROOM}/join"

    @property
    def status(self) -> str:
        return f"{self.gateway}/_waitroom/api/rooms/{ROOM}/status"


class Visitor:
    __slots__ = (
        "book_tries",
        "choice",
        "cookie_line",
        "cookies",
        "due",
        "phone",
        "pin",
        "pin_unix",
        "plan",
        "record",
        "retries",
        "state",
        "storm_left",
    )

    def __init__(self, plan: PlannedVisitor, record: VisitorRecord, phone: str) -> None:
        self.plan = plan
        self.record = record
        self.phone = phone
        self.cookies: dict[str, str] = {}
        self.cookie_line = ""  # the Cookie header, rebuilt only when a reply sets one
        self.state = "arrive"
        self.retries = 0
        self.storm_left = plan.storm_refreshes
        self.pin = ""
        self.pin_unix = 0.0
        self.choice: tuple[str, str] = ("", "")
        self.book_tries = 0
        self.due = record.planned_at  # when the current step was due (real s): for lateness


class Journey:
    def __init__(
        self,
        transport: Transport,
        recorder: Recorder,
        behaviour: Behaviour,
        squeeze: Squeeze,
        endpoints: Endpoints,
        epoch: float,
        seed: int = 1,
    ) -> None:
        self.transport = transport
        self.recorder = recorder
        self.b = behaviour
        self.squeeze = squeeze
        self.at = endpoints
        self.epoch = epoch  # time.monotonic() at the replay's start
        self.now: Callable[[], float] = lambda: time.monotonic() - epoch
        self.rng = random.Random(seed)
        self.started = 0  # requests handed to the transport

    async def step(self, v: Visitor) -> float | None:
        handler = getattr(self, f"_{v.state}")
        delay: float | None = await handler(v)
        if delay is None and v.record.done_at is None:
            v.record.done_at = self.now()
        return delay

    # -- helpers -------------------------------------------------------------------------

    async def _call(self, v: Visitor, kind: str, method: str, url: str, body: Any = None) -> Reply:
        asked = self.now()
        self.started += 1
        reply = await self.transport.request(method, url, cookies=v.cookie_line, body=body)
        if reply.set_cookies:
            update_cookies(v.cookies, reply.set_cookies)
            v.cookie_line = cookie_header(v.cookies)
        sent = reply.sent_at - self.epoch if reply.sent_at else asked
        self.recorder.request(kind, sent, reply.status, reply.seconds, sent - v.due)
        return reply

    def _paced(self, floor: float, real_seconds: float) -> float:
        """A reload pace in real seconds, give or take a tenth: people and scripts that
        started together drift apart, as the gateway's own jitter makes its visitors do."""
        return max(floor, real_seconds * self.rng.uniform(0.9, 1.1))

    def _human(self, scenario_seconds: float) -> float:
        return self.squeeze.real(scenario_seconds * self.rng.uniform(0.5, 1.5))

    def _finish(self, v: Visitor, outcome: str, detail: str = "") -> None:
        v.record.outcome = outcome
        v.record.detail = detail
        v.state = "done"

    def _retry(self, v: Visitor, reply: Reply) -> float | None:
        """After an error: back off and try the same step again, or give up."""
        v.retries += 1
        v.record.retries += 1
        code = reply.error or str(reply.status)
        if v.retries > self.b.retry_max:
            self._finish(v, ERROR, f"{v.state}:{code}")
            return None
        if self.at.gateway is None and self._out_of_patience(v):
            self._finish(v, GAVE_UP, f"{v.state}:{code}")
            return None
        backoff = self.squeeze.real(self.b.retry_backoff_seconds * 2 ** (v.retries - 1))
        # Retry-After comes from the real site about its real queue: honoured in real time.
        wait = max(backoff, reply.retry_after or 0.0, MIN_RETRY_S)
        return wait * self.rng.uniform(0.8, 1.2)

    def _failed(self, reply: Reply) -> bool:
        return reply.status == 0 or reply.status == 429 or reply.status >= 500

    def _patience_left(self, v: Visitor) -> float:
        """Real seconds until this visitor gives up waiting (inf for bots)."""
        start = v.record.join_done if v.record.join_done is not None else v.record.arrived_at
        end = (start or 0.0) + self.squeeze.real(v.plan.patience_minutes * 60)
        return end - self.now()

    def _out_of_patience(self, v: Visitor) -> bool:
        return self._patience_left(v) < 0

    def _refused(self, v: Visitor, reply: Reply) -> None:
        data = reply.json() if reply.is_json else None
        code = data.get("error") if isinstance(data, dict) else None
        if code is None and not reply.is_json:
            code = "not_admitted"  # the gateway answered with its waiting page
        self._finish(v, ERROR, f"{v.state}:{reply.status}:{code}")

    # -- arriving and the line -----------------------------------------------------------

    async def _arrive(self, v: Visitor) -> float | None:
        v.record.arrived_at = self.now()
        v.record.outcome = UNFINISHED
        if self.at.gateway is None:
            if v.storm_left:
                v.state = "storm"
                return await self._storm(v)
            v.state = "pin_request"
            return self._human(self.b.think_phone_seconds)
        v.state = "join"
        return await self._join(v)

    async def _leave(self, v: Visitor) -> float | None:
        """Out of patience between two checks: the tab is closed, no request is made."""
        self._finish(v, GAVE_UP, "waiting")
        return None

    async def _join(self, v: Visitor) -> float | None:
        if v.record.join_started is None:
            v.record.join_started = self.now()
        sent = self.now()
        reply = await self._call(v, JOIN, "POST", self.at.join)
        if self._failed(reply):
            return self._retry(v, reply)
        if reply.status != 200:
            self._refused(v, reply)
            return None
        v.retries = 0
        v.record.join_done = self.now()
        return self._line_answer(v, reply.json(), sent)

    async def _poll(self, v: Visitor) -> float | None:
        sent = self.now()
        reply = await self._call(v, STATUS, "GET", self.at.status)
        if self._failed(reply):
            return self._retry(v, reply)
        if reply.status != 200:
            self._refused(v, reply)
            return None
        v.retries = 0
        return self._line_answer(v, reply.json(), sent)

    def _line_answer(self, v: Visitor, status: Any, sent: float) -> float | None:
        """Act on the line's answer; `sent` is when the request left, so "still waiting"
        is dated conservatively when order inversions are counted."""
        rec = v.record
        now = self.now()
        rec.polls += 1
        state = status.get("state") if isinstance(status, dict) else None
        if state == "admitted":
            rec.admitted_at = now
            v.state = "pin_request"
            return self._human(self.b.think_phone_seconds)
        if state not in ("waiting", "paused", "scheduled"):
            self._finish(v, ERROR, f"line:{state}")
            return None
        assert isinstance(status, dict)
        rec.last_waiting_at = sent
        if status.get("notice") == "lapsed":
            rec.lapsed += 1
            if rec.lapsed_at is None:
                rec.lapsed_at = now
        position = status.get("position")
        if isinstance(position, int):
            if rec.first_position is None:
                rec.first_position = position
            elif rec.last_position is not None and position > rec.last_position:
                rec.position_rises += 1
            rec.last_position = position
        if rec.promised_s is None and status.get("estimate_seconds") is not None:
            rec.promised_s = float(status["estimate_seconds"])
            low, high = status.get("estimate_range_seconds") or (None, None)
            rec.promised_low_s, rec.promised_high_s = low, high
        if v.plan.bot:
            v.state = "poll"
            # A script reloads at its own pace, in real seconds: compression does not change it.
            return self._paced(MIN_BOT_POLL_S, self.b.bot_poll_seconds)
        left = self._patience_left(v)
        if left <= 0:
            self._finish(v, GAVE_UP, "waiting")
            return None
        if v.storm_left:
            v.storm_left -= 1
            # Hammering reload is a person's pace too: real seconds.
            delay = self._paced(MIN_STORM_INTERVAL_S, self.b.storm_interval_seconds)
        else:
            # Check back as the server asks: its poll_after is real seconds, followed as given.
            delay = float(status.get("poll_after_seconds") or 5.0)
        if delay > left:
            v.state = "leave"  # gives up before the next check: leaves at that moment
            return left
        v.state = "poll"
        return delay

    # -- straight at the site: reloading the first page ------------------------------------

    async def _storm(self, v: Visitor) -> float | None:
        await self._call(v, SITE, "GET", f"{self.at.site}/book")
        v.storm_left -= 1
        if v.storm_left > 0:
            return self._paced(MIN_STORM_INTERVAL_S, self.b.storm_interval_seconds)
        v.state = "pin_request"
        return self._human(self.b.think_phone_seconds)

    # -- the booking flow ------------------------------------------------------------------

    async def _pin_request(self, v: Visitor) -> float | None:
        if v.record.pin_requests >= self.b.pin_requests_max:
            self._finish(v, GAVE_UP, "pin")
            return None
        reply = await self._call(
            v, SITE, "POST", f"{self.at.site}/book/api/pin", {"phone": v.phone}
        )
        if self._failed(reply):
            return self._retry(v, reply)
        if reply.status != 202 or not reply.is_json:
            self._refused(v, reply)
            return None
        v.retries = 0
        v.record.pin_requests += 1
        data = reply.json()
        v.pin_unix = time.time()
        expected = _unix(data.get("sms_expected_at")) if isinstance(data, dict) else None
        v.state = "inbox"
        return max(0.0, (expected or v.pin_unix) - time.time()) + 0.005

    async def _inbox(self, v: Visitor) -> float | None:
        reply = await self._call(v, INBOX, "GET", f"{self.at.backend}/_sim/inbox/{v.phone}")
        if self._failed(reply):
            return self._retry(v, reply)
        data = reply.json()
        if reply.status != 200 or not isinstance(data, dict):
            self._refused(v, reply)
            return None
        v.retries = 0
        pending = data.get("next_delivery_at")
        if isinstance(pending, int | float):  # the newest PIN is still on its way
            return max(0.0, pending - time.time()) + 0.005
        messages = data.get("messages") or []
        found = PIN_PATTERN.search(str(messages[-1].get("text", ""))) if messages else None
        if found is None:
            v.state = "pin_request"  # nothing arrived and nothing on its way: ask again
            return 0.0
        v.pin = found.group(1)
        v.state = "verify"
        return self._human(self.b.think_pin_seconds)

    async def _verify(self, v: Visitor) -> float | None:
        reply = await self._call(
            v, SITE, "POST", f"{self.at.site}/book/api/pin/verify", {"pin": v.pin}
        )
        if self._failed(reply):
            return self._retry(v, reply)
        data = reply.json() if reply.is_json else None
        code = data.get("error") if isinstance(data, dict) else None
        if reply.status == 200:
            v.retries = 0
            v.record.verified_at = self.now()
            booking = data.get("booking") if isinstance(data, dict) else None
            if isinstance(booking, dict):  # this number already has one
                self._finish(v, _outcome_of(booking))
                return None
            v.state = "availability"
            return 0.0
        if code in ("pin_expired", "pin_used", "pin_superseded", "too_many_attempts"):
            v.state = "pin_request"  # as people did in 2021: ask for another one
            return 0.0
        self._refused(v, reply)
        return None

    async def _availability(self, v: Visitor) -> float | None:
        reply = await self._call(v, SITE, "GET", f"{self.at.site}/book/api/availability")
        if self._failed(reply):
            return self._retry(v, reply)
        data = reply.json() if reply.is_json else None
        if reply.status != 200 or not isinstance(data, dict):
            self._refused(v, reply)
            return None
        v.retries = 0
        open_days = [
            (centre["id"], day["day"])
            for centre in data.get("centres", [])
            for day in centre.get("days", [])
            if day.get("slots_left", 0) > 0
        ]
        if data.get("sold_out") or not open_days:
            v.state = "register"
            return self._human(self.b.think_slot_seconds) / 2
        # Most people take the first day offered at a centre near them.
        centre = self.rng.choice(sorted({c for c, _ in open_days}))
        v.choice = min((c, d) for c, d in open_days if c == centre)
        v.state = "book"
        return self._human(self.b.think_slot_seconds)

    async def _book(self, v: Visitor) -> float | None:
        centre, day = v.choice
        body = {"centre": centre, "day": day}
        reply = await self._call(v, SITE, "POST", f"{self.at.site}/book/api/bookings", body)
        if self._failed(reply):
            return self._retry(v, reply)
        data = reply.json() if reply.is_json else None
        code = data.get("error") if isinstance(data, dict) else None
        if reply.status in (200, 201) and isinstance(data, dict):
            self._finish(v, _outcome_of(data.get("booking") or {}))
            return None
        if code == "sold_out":
            v.state = "register"
            return 0.0
        if code in ("day_full", "slot_taken"):
            v.book_tries += 1
            if v.book_tries >= self.b.book_attempts_max:
                v.state = "register"
                return 0.0
            v.state = "availability"
            return 0.0
        self._refused(v, reply)
        return None

    async def _register(self, v: Visitor) -> float | None:
        reply = await self._call(v, SITE, "POST", f"{self.at.site}/book/api/registrations", {})
        if self._failed(reply):
            return self._retry(v, reply)
        data = reply.json() if reply.is_json else None
        code = data.get("error") if isinstance(data, dict) else None
        if reply.status in (200, 201) and isinstance(data, dict):
            self._finish(v, _outcome_of(data.get("booking") or {}))
            return None
        if code == "slots_available" and v.book_tries < self.b.book_attempts_max:
            v.state = "availability"  # a slot came free again
            return 0.0
        self._refused(v, reply)
        return None


def _outcome_of(booking: dict[str, Any]) -> str:
    return BOOKED if booking.get("status") == "booked" else REGISTERED


def _unix(iso: Any) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso)).timestamp() if iso else None
    except ValueError:
        return None
