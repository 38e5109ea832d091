"""The steps of each hot path timed one by one, in this process: microseconds per call.

A profile says which share of a worker's time each step takes under load; this says what each
step costs on its own, so a change to one of them can be judged without a full run. The steps
are the gateway's own functions, called as the request handlers call them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.pass_sessions import PassSessions
from gateway.receipts import Receipts
from gateway.status import waiting_status
from queue_core.line_view import LineView
from queue_core.rooms import RoomConfig
from queue_core.snapshot import LaneSnapshot, Snapshot
from queue_core.tokens import Credentials, Pass, new_visitor_id

from .crowd import ticket as crowd_ticket
from .crowd import visitor_id

LINE = 1_000_000
HOLES = 10_000
TICKS_PER_MINUTE = 240  # the outflow window holds a minute of ticks at 4 a second


def per_call_us(step: Callable[[], Any], seconds: float) -> float:
    """Median of five timings of as many calls as fit in `seconds` / 5."""
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.02:
        step()
        calls += 1
    batch = max(1, int(calls * seconds / 5 / 0.02))
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(batch):
            step()
        timings.append((time.perf_counter() - started) / batch)
    return round(sorted(timings)[2] * 1e6, 2)


def _view(room: str) -> LineView:
    """A view of a million-long line with holes, a minute of ticks into a steady outflow."""
    rng = random.Random(1)
    holes = tuple(sorted(rng.sample(range(1, LINE), HOLES)))
    view = LineView(room)
    for i in range(TICKS_PER_MINUTE):
        lane = LaneSnapshot(i, LINE, LINE - i, 0, i, 0, holes if i == 0 else ())
        view.apply(_snapshot(room, 1_700_000_000_000_000 + i * 250_000, i, {"": lane}))
    return view


def _request(cookie: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/_waitroom/api/rooms/w/status",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode())],
    }
    return Request(scope)


def hot_path_steps(seconds: float = 0.5) -> dict[str, float]:
    """Microseconds per call of each step, `seconds` spent timing each."""
    room = "w"
    secret = "a-micro-benchmark-secret-of-40-characters"
    credentials = Credentials([secret])
    receipts = Receipts([secret])
    config = RoomConfig(room, ("/w",))
    view = _view(room)
    place = LINE // 2
    ticket = credentials.issue_ticket(crowd_ticket(room, place, 1, "0123456789ab"))
    admission = credentials.issue_pass(Pass(room, visitor_id(room, 1), 2_000_000_000, "ab" * 8))
    admitted = credentials.read_pass(admission, 1_700_000_000)
    # A worker that has seen this browser before: the steady state of an admitted visitor.
    sessions = PassSessions(None, None)  # type: ignore[arg-type]  # memory only: no Redis
    sessions.note_known(room, admitted, "browser-session1")
    snapshot = view.snapshot
    cookie = f"wr_lang=en; wr_ticket_{room}={ticket}"
    status = waiting_status(view, config, place - 1, place - 1, receipt="1-AAAA-BBBB")

    steps: dict[str, Callable[[], Any]] = {
        # A status check, step by step.
        "status: parse the Cookie header": lambda: _request(cookie).cookies,
        "status: check the ticket (itsdangerous)": lambda: credentials.read_ticket(ticket),
        "status: locate the place (1M line, 10k holes)": lambda: view.locate(place),
        "status: receipt code (HMAC)": lambda: receipts.code(room, place),
        "status: estimate and status (waiting_status)": lambda: waiting_status(
            view, config, place - 1, place - 1, receipt="1-AAAA-BBBB"
        ),
        "status: JSON body (as_json + JSONResponse)": lambda: JSONResponse(status.as_json()),
        # A join, the gateway's side (Redis's is in the join and tick figures).
        "join: new visitor id": new_visitor_id,
        "join: sign the ticket (itsdangerous)": lambda: credentials.issue_ticket(
            crowd_ticket(room, place, 1, "0123456789ab")
        ),
        # The turn, and every admitted request after it.
        "turn: sign the pass": lambda: credentials.issue_pass(
            Pass(room, "abcdefghijkl", 2_000_000_000, "ab" * 8)
        ),
        "admitted: check the pass (token check)": lambda: credentials.read_pass(
            admission, 1_700_000_000
        ),
        "admitted: epoch and browser session (from memory)": lambda: (
            snapshot is not None
            and admitted.epoch >= snapshot.epoch
            and sessions.remembered(room, admitted, "browser-session1", 2)
        ),
        # The gateway's side of a tick.
        "tick: apply a snapshot to the view": lambda: _view_apply(view),
    }
    return {name: per_call_us(step, seconds) for name, step in steps.items()}


def _snapshot(room: str, now_us: int, processed: int, lanes: dict[str, LaneSnapshot]) -> Snapshot:
    return Snapshot(
        room=room,
        now_us=now_us,
        processed=processed,
        admitted_total=processed,
        abandoned_total=0,
        no_show_total=0,
        active=0,
        paused=False,
        closed=False,
        rate_per_minute=60.0,
        sold_out=False,
        opens_at_us=0,
        opened=False,
        banner="",
        lanes=lanes,
    )


def _view_apply(view: LineView) -> None:
    snap = view.snapshot
    assert snap is not None
    view.apply(_snapshot(snap.room, snap.now_us + 1, snap.processed, snap.lanes))
