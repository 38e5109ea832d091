"""Locust: the same launch-day crowd as `waitroom replay`, for people who run Locust.

    pip install -e '.[load]'          # locust is an optional extra
    REPLAY_SCENARIO=cz-2021-01-15 REPLAY_SPEED=60 REPLAY_SCALE=0.01 \\
    REPLAY_BACKEND=http://127.0.0.1:8001 \\
    locust -f load/locustfile.py -H http://127.0.0.1:8000 --headless

The shape replays the scenario's arrival curve: the user count at any moment is everyone who
has arrived so far (scaled), and each user makes one journey (join, poll as told, PIN from
the simulated inbox, book or register) and then idles, so a finished visitor is not
replaced by a new one. REPLAY_DIRECT=1 sends the crowd straight at the site (then -H is the
site, which must run without BACKEND_WAITROOM_SECRET). The site needs BACKEND_SIM_INBOX=1.

Importing locust monkey-patches the standard library (gevent), so nothing but this file
imports it; the crowd model is the pure `load.replay.model`, the shape `load.replay.shape`.
This file type-checks (mypy --strict) with locust installed or not: without it, locust's
names are Any, hence the ignores, which are unused (and allowed to be) when it is there.
"""

# mypy: disable-error-code="unused-ignore"

from __future__ import annotations

import math
import os
import random
import re
import time
from typing import Any

from locust import HttpUser, LoadTestShape, constant, task  # type: ignore[import-not-found]

from load.replay import model, shape
from load.replay.scaling import ROOM, Squeeze
from load.replay.scenario import load_scenario

SCENARIO = load_scenario(os.environ.get("REPLAY_SCENARIO", "cz-2021-01-15"))
SQUEEZE = Squeeze(
    speed=float(os.environ.get("REPLAY_SPEED", "60")),
    scale=float(os.environ.get("REPLAY_SCALE", "0.01")),
)
BACKEND = os.environ.get("REPLAY_BACKEND", "http://127.0.0.1:8001")
DIRECT = os.environ.get("REPLAY_DIRECT") == "1"
PIN = re.compile(r"\b(\d{6})\b")
B = SCENARIO.behaviour
STARTED = time.monotonic()  # the test starts when locust loads this file
RNG = random.Random()


def _human(seconds: float) -> float:
    return SQUEEZE.real(seconds * RNG.uniform(0.5, 1.5))


class Visitor(HttpUser):  # type: ignore[misc]
    wait_time = constant(3600)  # after the one journey: idle, never replaced

    def on_start(self) -> None:
        self.bot = RNG.random() < B.bot_share
        self.patience_min = math.inf if self.bot else model.draw_patience_minutes(B, RNG)
        self.phone = f"+4207{RNG.randrange(10**8):08d}"
        self.done = False

    def _ok(self, response: Any) -> bool:
        return bool(response.status_code < 500 and response.status_code != 429)

    def _retrying(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        response = None
        for attempt in range(B.retry_max + 1):
            response = self.client.request(method, path, name=name, **kwargs)
            if self._ok(response):
                return response
            backoff = B.retry_backoff_seconds * 2**attempt
            time.sleep(SQUEEZE.real(backoff, 0.05))
        return response

    def _wait_in_line(self) -> bool:
        status_path = f"/_waitroom/api/rooms/{ROOM}/status"
        reply = self._retrying("POST", f"/_waitroom/api/rooms/{ROOM}/join", "join")
        joined = time.monotonic()
        arrived_min = SQUEEZE.scenario(joined - STARTED) / 60
        storm = B.storm_refreshes if arrived_min < B.storm_minutes else 0
        while reply is not None and self._ok(reply):
            body = reply.json()
            if body.get("state") == "admitted":
                return True
            waited_min = SQUEEZE.scenario(time.monotonic() - joined) / 60
            if waited_min > self.patience_min:
                return False
            if storm:
                storm -= 1
                time.sleep(max(0.2, B.storm_interval_seconds))  # a person's pace: real seconds
            elif self.bot:
                time.sleep(max(0.5, B.bot_poll_seconds))  # a script's pace: real seconds
            else:
                time.sleep(float(body.get("poll_after_seconds") or 5))
            reply = self._retrying("GET", status_path, "status")
        return False

    def _pin(self) -> bool:
        for _ in range(B.pin_requests_max):
            reply = self._retrying("POST", "/book/api/pin", "pin", json={"phone": self.phone})
            if reply is None or reply.status_code != 202:
                return False
            for _ in range(50):
                inbox = self.client.get(f"{BACKEND}/_sim/inbox/{self.phone}", name="inbox").json()
                pending = inbox.get("next_delivery_at")
                if pending is None:
                    break
                time.sleep(max(0.0, pending - time.time()) + 0.005)
            messages = inbox.get("messages") or []
            found = PIN.search(messages[-1]["text"]) if messages else None
            if found is None:
                continue
            time.sleep(_human(B.think_pin_seconds))
            verify = self._retrying(
                "POST", "/book/api/pin/verify", "verify", json={"pin": found.group(1)}
            )
            if verify is not None and verify.status_code == 200:
                return True
        return False

    def _book(self) -> None:
        for _ in range(B.book_attempts_max):
            free = self._retrying("GET", "/book/api/availability", "availability")
            if free is None or free.status_code != 200:
                return
            data = free.json()
            days = [
                (c["id"], d["day"])
                for c in data.get("centres", [])
                for d in c.get("days", [])
                if d.get("slots_left", 0) > 0
            ]
            if data.get("sold_out") or not days:
                break
            centre = RNG.choice(sorted({c for c, _ in days}))
            day = min(d for c, d in days if c == centre)
            time.sleep(_human(B.think_slot_seconds))
            booked = self._retrying(
                "POST", "/book/api/bookings", "book", json={"centre": centre, "day": day}
            )
            if booked is not None and booked.status_code in (200, 201):
                return
            if booked is None or booked.json().get("error") == "sold_out":
                break
        self._retrying("POST", "/book/api/registrations", "register", json={})

    @task  # type: ignore[untyped-decorator]
    def journey(self) -> None:
        if self.done:
            return
        self.done = True
        if DIRECT:
            for _ in range(B.storm_refreshes):
                self.client.get("/book", name="refresh")
        elif not self._wait_in_line():
            return
        time.sleep(_human(B.think_phone_seconds))
        if self._pin():
            self._book()


class ScenarioShape(LoadTestShape):  # type: ignore[misc]
    """Users = everyone who has arrived by now (scaled), started fast enough to get there by
    the next tick: the spawn rate comes from the gap, not from the curve's slope."""

    def tick(self) -> tuple[int, float] | None:
        current = int(self.runner.user_count) if self.runner is not None else 0
        run_time = float(self.get_run_time())  # type: ignore[no-untyped-call]
        return shape.tick(SCENARIO, SQUEEZE, run_time, current)
