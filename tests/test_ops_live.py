"""The ops dashboard's live figures (gateway/ops/live.py) for a room driven, on a real Redis
and a timeline of the test's own, to values known in advance: who arrived, who was let in,
who never came, who gave up, how the booking site answered."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.ops import live
from gateway.proxy_stats import window_of
from gateway.status import waiting_status
from queue_core.line_view import LineView
from queue_core.rooms import RoomConfig
from queue_core.store import LineStore

pytestmark = pytest.mark.anyio
S = 1_000_000
T = 1_700_000_000 * S  # on the 10 s grid the history is sampled on
ROOM = RoomConfig(
    name="r",
    paths=("/r",),
    rate_per_minute=60,  # one a second
    grace_seconds=30,
    claim_seconds=20,
    lanes={"over80": 0.5},
)


class Driver:
    """Runs the room as a gateway would (ticks, heartbeats, visitors collecting passes),
    with this worker's lane views kept as the gateway keeps them."""

    def __init__(self, store: LineStore) -> None:
        self.store = store
        self.views = {lane: LineView("r", lane) for lane in ROOM.lane_shares()}
        self.places: dict[str, tuple[str, int]] = {}  # visitor -> (lane, place)
        self.quitters: set[str] = set()  # stopped checking their place
        self.no_shows: set[str] = set()  # admitted, never came
        self.handled: set[str] = set()

    async def join(self, visitor: str, at: int, lane: str = "") -> str:
        result = await self.store.join("r", visitor, now_us=at, lane=lane)
        self.places[visitor] = (lane, result.place)
        return result.status

    async def tick(self, at: int, *, no_show: bool = False) -> None:
        seen: dict[str, list[int]] = {lane: [] for lane in self.views}
        for visitor, (lane, place) in self.places.items():
            if visitor not in self.quitters and visitor not in self.handled:
                seen[lane].append(place)
        snap = await self.store.tick(
            "r",
            holes_from={lane: v.holes_next for lane, v in self.views.items()},
            seen=seen,
            now_us=at,
        )
        for view in self.views.values():
            view.apply(snap)
        admitted = await self.store.redis.zrange(self.store.keys("r").admitted, 0, -1)
        for raw in admitted:
            visitor = raw.decode()
            if visitor in self.handled:
                continue
            self.handled.add(visitor)
            if no_show:
                self.no_shows.add(visitor)
            else:
                assert await self.store.claim("r", visitor, 1200, now_us=at)

    async def figures(self, at: int) -> dict[str, Any]:
        return await live.load(self.store, "r", views=self.views, now_us=at)


@pytest.fixture
async def driven(store: LineStore) -> Driver:
    """70 seconds of a busy room, ending at T + 70 s.

    At T, while paused: 94 people join the main lane and 6 the priority lane; 8 of the main
    lane (places 81-88) never check again. At T + 1 s admission starts, one a second. The 3
    people let in at T + 2..4 s never come for their pass. At T + 30 s 12 more join the main
    lane; after the last tick 3 more join the priority lane.
    """
    room = Driver(store)
    await store.ensure_room(ROOM)
    await store.configure("r", paused=True, now_us=T)
    for i in range(1, 95):
        assert await room.join(f"m{i:03d}", T) == "waiting"
    for i in range(1, 7):
        assert await room.join(f"e{i:03d}", T, lane="over80") == "waiting"
    room.quitters = {f"m{i:03d}" for i in range(81, 89)}
    await room.tick(T)
    await store.configure("r", paused=False, now_us=T + S)
    for k in range(1, 71):
        if k == 30:
            for i in range(95, 107):
                assert await room.join(f"m{i:03d}", T + k * S) == "waiting"
        await room.tick(T + k * S, no_show=k in (2, 3, 4))
    for i in range(7, 10):
        assert await room.join(f"e{i:03d}", T + 70 * S, lane="over80") == "waiting"
    # The booking site over the last minute, as the proxy counted it: 100 requests, 90
    # within 100 ms, 6 within 500 ms, 4 within 5 s; 3 answered 5xx.
    window = window_of((T + 70 * S) / 1e6)
    await store.record_proxy("r", window, {"n": 60, "e": 2, "b4": 55, "b6": 3, "b9": 2})
    await store.record_proxy("r", window - 3, {"n": 40, "e": 1, "b4": 35, "b6": 3, "b9": 2})
    return room


async def test_the_live_figures_are_the_rooms_own(driven: Driver) -> None:
    f = await driven.figures(T + 70 * S)
    assert len(driven.no_shows) == 3
    # 106 + 9 joined; 70 let in (6 from the priority lane); 8 gave up.
    assert (f["waiting"], f["prequeue"]) == (37, 0)
    assert f["lanes"] == {
        "main": {"share": 0.5, "waiting": 34, "prequeue": 0},
        "over80": {"share": 0.5, "waiting": 3, "prequeue": 0},
    }
    assert (f["active"], f["admitted_unclaimed"]) == (67, 0)
    # Over the last minute (T + 10 s to T + 70 s): exact counts, per minute.
    assert f["rate_set_per_minute"] == 60
    assert f["admitted_per_minute"] == 60
    assert f["arrivals_per_minute"] == 15  # 12 in the main lane and 3 in the priority lane
    # Passes collected: the 60 let in since, and the one let in at T + 10 s, who came for it
    # just after that tick's sample was taken.
    assert f["arrived_per_minute"] == 61
    assert f["no_shows_per_minute"] == 3
    assert f["abandoned_per_minute"] == 8
    assert f["backend"] | {"top_ms": 0} == {
        "requests_last_minute": 100,
        "p50_ms": 100,
        "p95_ms": 500,
        "p50_over_top": False,
        "p95_over_top": False,
        "top_ms": 0,
        "error_rate": 0.03,
    }
    # Everyone now waiting, in both lanes, at one a second (the priority lane's outflow is not
    # measured yet: it was empty until now, so the set rate stands in).
    assert f["line_clears_in_seconds"] == 37


async def test_the_new_arrival_estimate_is_what_a_new_arrival_is_told(driven: Driver) -> None:
    f = await driven.figures(T + 70 * S)
    # The main lane let 59 through in the last minute (the priority lane took one slot): a
    # newcomer behind its 34 waits (34 + 1) / (59 / 60) s.
    assert f["new_arrival_wait_seconds"] == round(35 * 60 / 59) == 36
    await driven.join("newcomer", T + 70 * S)
    view = driven.views[""]
    ahead = view.locate(driven.places["newcomer"][1]).ahead
    assert ahead == 34
    told = waiting_status(view, ROOM, ahead, ahead, share=ROOM.lane_shares()[""]).as_json()
    assert told["estimate_seconds"] == f["new_arrival_wait_seconds"]
    assert told["estimate_range_seconds"] == f["new_arrival_wait_range_seconds"]


async def test_a_pre_queue_counts_towards_when_the_line_clears(
    driven: Driver, store: LineStore
) -> None:
    now = T + 70 * S
    await store.configure("r", opens_at_us=now + 600 * S, now_us=now)
    for i in range(5):
        assert await driven.join(f"p{i}", now) == "scheduled"
    f = await driven.figures(now)
    assert (f["waiting"], f["prequeue"]) == (37, 5)
    assert f["lanes"]["main"]["prequeue"] == 5
    # A newcomer would get a place at the opening, not an estimate; the line as it is clears
    # well before the opening, and the pre-queue takes 5 s after it.
    assert f["new_arrival_wait_seconds"] is None
    assert f["line_clears_in_seconds"] == 605


async def test_paused_nobody_is_promised_anything(driven: Driver, store: LineStore) -> None:
    await store.configure("r", paused=True, now_us=T + 70 * S)
    f = await driven.figures(T + 70 * S)
    assert f["new_arrival_wait_seconds"] is None and f["line_clears_in_seconds"] is None
