"""The line's behaviour in a real Redis: order, rate, pause, abandonment, claims.

Most tests pass an explicit server time (`now_us`) so that hours of admissions replay in
milliseconds; `test_concurrent_tickers_on_the_server_clock` runs on Redis's own clock.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest

from queue_core.connect import RedisClient, connect
from queue_core.line_view import LineView, Location, Standing
from queue_core.rooms import RoomConfig
from queue_core.store import LineStore

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000_000_000  # an arbitrary server time, in microseconds
SEC = 1_000_000


async def tick_through(
    store: LineStore, start: int, end: int, step: int = SEC // 4, seen: range = range(0)
) -> int:
    """Tick every `step` (as gateways do) from start to end; return admitted_total at the end."""
    now, total = start, 0
    while now <= end:
        total = (await store.tick("r", now_us=now, seen=seen)).admitted_total
        now += step
    return total


async def first_contact(clients: list[RedisClient]) -> list[RedisClient]:
    """One command each, one client at a time, before a burst: a cluster client learns the
    slot map on its first command, and redis-py 8.1's can trip over many first commands at
    once (AttributeError on a half-made connection). A gateway ticks before it serves."""
    for client in clients:
        await client.ping()
    return clients


async def make_room(store: LineStore, name: str = "r", **settings: float) -> RoomConfig:
    config = RoomConfig(name, ("/book",), **settings)  # type: ignore[arg-type]
    await store.ensure_room(config)
    return config


async def test_places_follow_arrival_and_rejoin_keeps_the_place(store: LineStore) -> None:
    await make_room(store, rate_per_minute=0)
    places = [(await store.join("r", f"visitor{i:05d}", now_us=T0 + i)).place for i in range(50)]
    assert places == list(range(1, 51))
    again = await store.join("r", "visitor00007", now_us=T0 + 100)
    assert (again.status, again.place) == ("waiting", 8)
    assert (await store.state("r"))["seq"] == "50"


async def test_concurrent_joins_get_distinct_contiguous_places(
    store: LineStore, redis_url: str
) -> None:
    await make_room(store, rate_per_minute=0)
    clients = await first_contact([connect(redis_url) for _ in range(8)])
    stores = [LineStore(c, store.prefix) for c in clients]
    try:
        results = await asyncio.gather(*(stores[i % 8].join("r", f"v{i:011d}") for i in range(400)))
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(r.place for r in results) == list(range(1, 401))


async def test_admissions_track_rate_times_time_within_one(store: LineStore) -> None:
    """Over half an hour of irregular ticks, admitted stays within 1 of rate x time."""
    rate = 7.5  # per minute: one visitor every 8 s
    await make_room(store, rate_per_minute=rate)
    for i in range(400):
        await store.join("r", f"v{i:011d}", now_us=T0)
    # The first visitor went straight through at T0, taking the slot at T0.
    start = T0
    rng = random.Random(3)
    now = start
    seen_all = list(range(1, 401))
    last_seen = start
    while now < start + 1800 * SEC:
        now += rng.randint(50_000, 1_500_000)
        # Everyone checks about once a minute, as the waiting page makes them.
        beat = now - last_seen >= 60 * SEC
        last_seen = now if beat else last_seen
        snap = await store.tick("r", now_us=now, seen=seen_all if beat else ())
        expected = rate / 60 * (now - start) / SEC
        assert abs(snap.admitted_total - expected) <= 1, (now - start) / SEC


async def test_outage_releases_at_most_the_burst(store: LineStore) -> None:
    await make_room(store, rate_per_minute=600, burst=5, grace_seconds=3600)  # 10 a second
    for i in range(500):
        await store.join("r", f"v{i:011d}", now_us=T0)
    everyone = range(1, 501)
    before = (await store.tick("r", now_us=T0, seen=everyone)).admitted_total
    # Nobody ticks for ten minutes (every gateway down): 6,000 slots missed.
    after = (await store.tick("r", now_us=T0 + 600 * SEC, seen=everyone)).admitted_total
    assert after - before == 5
    # Then the rate resumes exactly.
    later = await tick_through(store, T0 + 600 * SEC + 1, T0 + 601 * SEC, SEC // 10, everyone)
    assert later - after == 10


async def test_pause_admits_nobody_and_resume_brings_no_flood(store: LineStore) -> None:
    await make_room(store, rate_per_minute=60)
    for i in range(100):
        await store.join("r", f"v{i:011d}", now_us=T0)
    base = (await store.tick("r", now_us=T0)).admitted_total
    await store.configure("r", paused=True, now_us=T0 + 1)
    paused = await store.tick("r", now_us=T0 + 30 * SEC, seen=range(1, 101))
    assert paused.paused and paused.admitted_total == base
    # Resumed a minute after the last tick: the paused time releases nobody.
    await store.configure("r", paused=False, now_us=T0 + 90 * SEC)
    resumed = await store.tick("r", now_us=T0 + 90 * SEC + 1, seen=range(1, 101))
    assert resumed.admitted_total - base <= 1
    steady = await tick_through(store, T0 + 90 * SEC + 1, T0 + 100 * SEC + 1, seen=range(1, 101))
    assert steady - resumed.admitted_total == 10


async def test_no_slots_banked_for_people_not_yet_here(store: LineStore) -> None:
    await make_room(store, rate_per_minute=60)
    await store.tick("r", now_us=T0)
    # An hour with nobody in line, then ten arrive at once.
    now = T0 + 3600 * SEC
    results = [await store.join("r", f"v{i:011d}", now_us=now) for i in range(10)]
    assert [r.status for r in results].count("admitted") == 1
    assert results[0].status == "admitted"  # nobody waiting, spare capacity: straight through
    snap = await store.tick("r", now_us=now + 1)
    assert snap.admitted_total == 1 and snap.waiting == 9


async def test_a_full_site_lets_nobody_straight_through(store: LineStore) -> None:
    # Ops cap the visitors on the site at 2: once 2 are admitted, an empty line with a free
    # slot still queues the next arrival, until a place on the site frees up.
    await make_room(store, rate_per_minute=60)
    await store.configure("r", max_active=2, now_us=T0)
    first = await store.join("r", "v00000000001", now_us=T0)
    second = await store.join("r", "v00000000002", now_us=T0 + 2 * SEC)
    assert (first.status, second.status) == ("admitted", "admitted")
    for visitor in ("v00000000001", "v00000000002"):  # on the site for 20 s
        assert await store.claim("r", visitor, 20, now_us=T0 + 3 * SEC) is not None
    third = await store.join("r", "v00000000003", now_us=T0 + 10 * SEC)
    assert third.status == "waiting"
    snap = await store.tick("r", now_us=T0 + 11 * SEC)
    assert snap.admitted_total == 2 and snap.waiting == 1
    # The passes run out: the one waiting goes in.
    await store.tick("r", now_us=T0 + 24 * SEC)
    snap = await store.tick("r", now_us=T0 + 25 * SEC)
    assert snap.admitted_total == 3 and snap.waiting == 0


async def test_closed_room_takes_no_one_new_but_keeps_the_line(store: LineStore) -> None:
    await make_room(store, rate_per_minute=0)
    await store.join("r", "v00000000001", now_us=T0)
    await store.configure("r", closed=True, now_us=T0)
    assert (await store.join("r", "v00000000002", now_us=T0)).status == "closed"
    assert (await store.join("r", "v00000000001", now_us=T0)).place == 1


async def test_abandoned_visitors_stop_taking_slots(store: LineStore) -> None:
    """Visitors who stop checking lose their place after the grace period; others keep it."""
    grace = 300
    await make_room(store, rate_per_minute=0, grace_seconds=grace)
    for i in range(1, 21):
        await store.join("r", f"v{i:011d}", now_us=T0)
    keepers = set(range(2, 21, 2))  # even places keep checking
    view = LineView("r")
    now = T0
    while now < T0 + (grace + 30) * SEC:
        now += 20 * SEC
        view.apply(await store.tick("r", now_us=now, seen=keepers, holes_from=view.holes_next))
    assert view.snapshot is not None and view.snapshot.waiting == 10
    assert view.snapshot.abandoned_total == 10
    for place in range(1, 21):
        loc = view.locate(place)
        if place in keepers:
            assert loc.standing is Standing.WAITING
            assert loc.ahead == sum(1 for k in keepers if k < place)
        else:
            assert loc.standing is Standing.GONE
    # Admission resumes: only people who kept checking are admitted, in order.
    await store.configure("r", rate_per_minute=60, now_us=now)
    for second in range(4):
        view.apply(await store.tick("r", now_us=now + second * SEC + 1, seen=keepers))
    admitted = [p for p in sorted(keepers) if view.locate(p).standing is Standing.TURN]
    assert admitted == [2, 4, 6, 8]
    assert await store.claim("r", "v00000000004", 600, now_us=now + 4 * SEC) is not None
    # A swept visitor who comes back joins at the end of the line.
    back = await store.join("r", "v00000000003", now_us=now + 5 * SEC)
    assert back.place == 21


async def test_visitor_back_within_grace_keeps_the_place(store: LineStore) -> None:
    await make_room(store, rate_per_minute=0, grace_seconds=300)
    for i in range(1, 6):
        await store.join("r", f"v{i:011d}", now_us=T0)
    view = LineView("r")
    # Place 3 goes quiet for 4 minutes (inside the grace), then checks again.
    for minute in range(1, 9):
        seen = [1, 2, 4, 5] + ([3] if minute >= 4 else [])
        view.apply(await store.tick("r", now_us=T0 + minute * 60 * SEC, seen=seen))
    assert view.locate(3).standing is Standing.WAITING
    assert view.locate(3).ahead == 2


async def test_claim_only_for_admitted_and_idempotent(store: LineStore) -> None:
    await make_room(store, rate_per_minute=60, claim_seconds=60)
    assert (await store.join("r", "v00000000001", now_us=T0)).status == "admitted"
    await store.join("r", "v00000000002", now_us=T0)
    assert await store.claim("r", "v00000000002", 600, now_us=T0) is None  # still waiting
    first = await store.claim("r", "v00000000001", 600, now_us=T0 + SEC)
    assert first is not None and first.expires_us == T0 + SEC + 600 * SEC
    assert await store.claim("r", "v00000000001", 600, now_us=T0 + 2 * SEC) == first
    assert await store.claim("r", "stranger0000", 600, now_us=T0) is None
    # Admitted but never came within the claim window: a no-show, not admitted any more.
    await store.tick("r", now_us=T0 + 1 * SEC + 1)
    snap = await store.tick("r", now_us=T0 + 200 * SEC)
    assert snap.no_show_total == 1
    assert await store.claim("r", "v00000000002", 600, now_us=T0 + 200 * SEC) is None


async def test_concurrent_tickers_on_the_server_clock(store: LineStore, redis_url: str) -> None:
    """Four 'gateways' tick at once on Redis's clock: the room admits at one rate, not four."""
    rate = 1200.0  # 20 a second
    await make_room(store, rate_per_minute=rate)
    for i in range(500):
        await store.join("r", f"v{i:011d}")
    clients = await first_contact([connect(redis_url) for _ in range(4)])
    stores = [LineStore(c, store.prefix) for c in clients]
    stop = time.monotonic() + 3.0
    samples: list[tuple[int, int]] = []

    async def ticker(s: LineStore) -> None:
        while time.monotonic() < stop:
            snap = await s.tick("r")
            samples.append((snap.now_us, snap.admitted_total))
            await asyncio.sleep(random.uniform(0.01, 0.05))

    try:
        await asyncio.gather(*(ticker(s) for s in stores))
    finally:
        for c in clients:
            await c.aclose()
    samples.sort()
    (t0, a0), (t1, a1) = samples[0], samples[-1]
    expected = rate / 60 * (t1 - t0) / SEC
    assert abs((a1 - a0) - expected) <= 1.5  # the interval's two ends each round by < 1 slot
    for (_, before), (_, after) in itertools.pairwise(samples):
        assert after >= before  # admissions only ever grow, whichever gateway reports them


async def test_scheduled_opening_draws_random_places_and_latecomers_queue_behind(
    store: LineStore,
) -> None:
    await make_room(store, rate_per_minute=60)
    opening = T0 + 3600 * SEC
    await store.configure("r", opens_at_us=opening, now_us=T0)
    early = [f"e{i:011d}" for i in range(30)]
    for i, vid in enumerate(early):  # they arrive in this order, an hour early
        result = await store.join("r", vid, now_us=T0 + i * SEC)
        assert (result.status, result.place) == ("scheduled", 0)
    snap = await store.tick("r", now_us=opening - SEC)
    assert snap.scheduled and snap.prequeue == 30 and snap.admitted_total == 0
    assert await store.place_after_opening("r", early[0]) == 0

    opened = await store.tick("r", now_us=opening)
    assert opened.opened and opened.seq == 30 and opened.prequeue == 0
    places = [await store.place_after_opening("r", vid) for vid in early]
    # The first drawn may already be admitted at the opening: their place is the head's.
    assert sorted(p for p in places if p) == list(range(1, 31))
    assert places != list(range(1, 31)), "arrival order must not decide the place"
    late = await store.join("r", "late00000001", now_us=opening + 1)
    assert (late.status, late.place) == ("waiting", 31)
    # The slot clock started at the opening, not an hour earlier.
    assert opened.admitted_total <= 1


async def test_pre_queue_larger_than_one_tick_keeps_latecomers_behind(store: LineStore) -> None:
    """The opening reserves the whole block first, then fills it over several ticks."""
    await make_room(store, rate_per_minute=0)
    opening = T0 + 60 * SEC
    await store.configure("r", opens_at_us=opening, now_us=T0)
    pipe = store.redis.pipeline(transaction=False)
    n = 12_000  # more than one tick moves (10,000)
    for i in range(n):
        pipe.zadd(store.keys("r").pre, {f"p{i:011d}": i / n})
    await pipe.execute()
    first = await store.tick("r", now_us=opening)
    assert first.seq == n and first.waiting == 10_000
    late = await store.join("r", "late00000001", now_us=opening + 1)
    assert late.place == n + 1
    # Not yet moved in, but already told the place it will get.
    assert await store.place_after_opening("r", f"p{n - 1:011d}") == n
    second = await store.tick("r", now_us=opening + SEC)
    assert second.waiting == n + 1
    assert await store.place_after_opening("r", f"p{n - 1:011d}") == n


async def test_sold_out_and_banner_reach_every_gateway(store: LineStore) -> None:
    await make_room(store)
    await store.configure(
        "r", sold_out=True, banner={"en": "New dates Monday", "cs": "Nové termíny v pondělí"}
    )
    snap = await store.tick("r")
    assert snap.sold_out
    assert "Nové termíny" in snap.banner


async def test_clearing_a_schedule_opens_the_room_for_the_pre_queue(store: LineStore) -> None:
    await make_room(store, rate_per_minute=0)
    await store.configure("r", opens_at_us=T0 + 3600 * SEC, now_us=T0)
    await store.join("r", "e00000000001", now_us=T0 + SEC)
    await store.configure("r", opens_at_us=0, now_us=T0 + 2 * SEC)
    snap = await store.tick("r", now_us=T0 + 3 * SEC)
    assert snap.opened and snap.waiting == 1 and snap.prequeue == 0
    assert await store.place_after_opening("r", "e00000000001") == 1


async def test_lanes_share_the_outflow_and_keep_their_own_order(store: LineStore) -> None:
    config = RoomConfig(
        "r", ("/book",), rate_per_minute=60, grace_seconds=3600, lanes={"over80": 0.25}
    )
    await store.ensure_room(config)
    for i in range(200):
        await store.join("r", f"m{i:011d}", now_us=T0)
        await store.join("r", f"o{i:011d}", now_us=T0, lane="over80")
    first = await store.tick("r", now_us=T0)
    assert first.lane("over80").seq == 200 and first.lane("").seq == 200
    # The first over-80 visitor is first in their lane, however long the main lane is.
    view = LineView("r", "over80")
    view.apply(first)
    assert view.locate(1) == Location(Standing.WAITING, 0)
    snap = await store.tick("r", now_us=T0 + 100 * SEC)  # 100 slots at one a second
    for second in range(1, 101):
        snap = await store.tick("r", now_us=T0 + second * SEC)
    over80 = snap.lane("over80").head
    main = snap.lane("").head
    assert over80 + main == snap.admitted_total
    assert abs(over80 - 0.25 * snap.admitted_total) <= 1


async def test_an_empty_lane_gives_its_turns_to_the_others(store: LineStore) -> None:
    config = RoomConfig("r", ("/book",), rate_per_minute=60, lanes={"over80": 0.5})
    await store.ensure_room(config)
    for i in range(50):
        await store.join("r", f"m{i:011d}", now_us=T0)
    snap = None
    for second in range(0, 21):
        snap = await store.tick("r", now_us=T0 + second * SEC, seen={"": range(1, 51)})
    assert snap is not None and snap.lane("").head >= 20  # the full rate, not half of it


async def test_an_invitation_admits_one_visitor_only(store: LineStore) -> None:
    config = RoomConfig("r", ("/book",), rate_per_minute=0, lanes={"over80": 0.5})
    await store.ensure_room(config)
    a = await store.join("r", "a00000000001", lane="over80", invite="inv-1", now_us=T0)
    assert (a.status, a.place) == ("waiting", 1)
    again = await store.join("r", "a00000000001", lane="over80", invite="inv-1", now_us=T0)
    assert (again.status, again.place) == ("waiting", 1)  # the same visitor, same place
    b = await store.join("r", "b00000000001", lane="over80", invite="inv-1", now_us=T0)
    assert b.status == "used"
    snap = await store.tick("r", now_us=T0 + 1)
    assert snap.lane("over80").waiting == 1


async def keys_of(store: LineStore) -> list[str]:
    return [k.decode() async for k in store.redis.scan_iter(match=f"{store.prefix}:*")]


async def test_a_failover_that_lost_the_last_writes_is_recovered(store: LineStore) -> None:
    """A replica promoted before it had the primary's last writes: the room is older than
    what the gateways saw. The next tick notices, and recovers as after a data loss."""
    await make_room(store, rate_per_minute=60, grace_seconds=3600)
    for i in range(1, 11):
        await store.join("r", f"v{i:011d}", now_us=T0)
    seen = range(1, 100)
    view = LineView("r")
    view.apply(await store.tick("r", now_us=T0 + 1, seen=seen))
    replica = {key: await store.redis.dump(key) for key in await keys_of(store)}

    # The primary takes more writes, which never reach the replica: three more admitted
    # (places 2-4), five more joined (11-15), one of whom only this store's join reply knows.
    for i in range(11, 15):
        await store.join("r", f"v{i:011d}", now_us=T0 + 2 * SEC)
    for second in (2, 3):
        view.apply(await store.tick("r", now_us=T0 + second * SEC, known=view.snapshot, seen=seen))
    assert (await store.join("r", "v00000000015", now_us=T0 + 3 * SEC)).place == 15
    last = view.snapshot
    assert last is not None and last.head == 4 and last.seq == 14

    # The primary dies; the replica is promoted with what it had.
    for key in await keys_of(store):
        await store.redis.delete(key)
    for key, value in replica.items():
        await store.redis.restore(key, 0, value, replace=True)
    assert (await store.state("r"))["seq"] == "10"

    # A join before any tick noticed would hand out place 11 a second time: it waits.
    early = await store.join("r", "early0000001", now_us=T0 + 4 * SEC, known_gen=last.gen)
    assert early.status == "recovering"

    snap = await store.tick("r", now_us=T0 + 4 * SEC, known=last, seen=seen)
    assert snap.gen != last.gen and snap.recoveries == 1
    assert snap.head >= last.head and snap.seq == 15  # the join only its reply knew counts
    assert snap.admitted_total >= last.admitted_total and snap.processed >= last.processed
    # Those whose turn came in the lost moments are let in again; those who joined in them come
    # back with their tickets; a newcomer queues behind all of them.
    assert await store.restore("r", "v00000000003", 3, now_us=T0 + 4 * SEC) == "present"
    assert await store.claim("r", "v00000000003", 600, now_us=T0 + 4 * SEC) is not None
    assert await store.restore("r", "v00000000013", 13, now_us=T0 + 4 * SEC) == "waiting"
    assert await store.restore("r", "v00000000007", 7, now_us=T0 + 4 * SEC) == "present"
    assert (await store.join("r", "late00000001", now_us=T0 + 4 * SEC)).place == 16


async def test_a_failover_that_lost_nothing_changes_nothing(store: LineStore) -> None:
    await make_room(store, rate_per_minute=60)
    for i in range(1, 6):
        await store.join("r", f"v{i:011d}", now_us=T0)
    first = await store.tick("r", now_us=T0 + 1)
    replica = {key: await store.redis.dump(key) for key in await keys_of(store)}
    for key, value in replica.items():
        await store.redis.restore(key, 0, value, replace=True)
    snap = await store.tick("r", now_us=T0 + 2 * SEC, known=first)
    assert snap.gen == first.gen and snap.recoveries == 0
