"""The line's defences in a real Redis: join limits per address and subnet, proofs of work
spent once, pass revocation by epoch, and the browsers a pass may be used from. Each is
decided inside one Lua script, so what is checked and what is changed happen together."""

from __future__ import annotations

import pytest

from queue_core.rooms import RoomConfig
from queue_core.store import LineStore, Newcomer

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000_000_000
SEC = 1_000_000


async def make_room(store: LineStore, **settings: object) -> RoomConfig:
    settings = {"rate_per_minute": 0, **settings}
    config = RoomConfig("r", ("/book",), **settings)  # type: ignore[arg-type]
    await store.ensure_room(config)
    return config


def bot(address: str, subnet: str = "81.0.0.0/24", **proof: object) -> Newcomer:
    return Newcomer(address, subnet, **proof)  # type: ignore[arg-type]


async def line_state(store: LineStore) -> tuple[str | None, int]:
    return (await store.state("r")).get("seq"), await store.redis.zcard(store.keys("r").line)


async def test_joins_beyond_an_address_limit_are_refused_and_change_nothing(
    store: LineStore,
) -> None:
    await make_room(store, joins_per_ip=3, joins_per_subnet=0, join_window_seconds=600)
    places = [
        (await store.join("r", f"b{i:011d}", newcomer=bot("81.0.0.1"), now_us=T0)).place
        for i in range(3)
    ]
    assert places == [1, 2, 3]
    before = await line_state(store)
    refused = await store.join("r", "b99999999999", newcomer=bot("81.0.0.1"), now_us=T0)
    assert refused.status == "limited" and refused.place == 0
    assert 0 < refused.retry_after_ms <= 600_000
    assert await line_state(store) == before
    # Another address is not held back; nor is a visitor the caller vouches for (a ticket).
    assert (await store.join("r", "c00000000001", newcomer=bot("81.0.0.2"))).status == "waiting"
    assert (await store.join("r", "d00000000001")).status == "waiting"


async def test_a_subnet_limit_catches_an_address_rotating_bot(store: LineStore) -> None:
    await make_room(store, joins_per_ip=100, joins_per_subnet=5)
    results = [
        await store.join("r", f"b{i:011d}", newcomer=bot(f"81.0.0.{i + 1}")) for i in range(8)
    ]
    assert [r.status for r in results] == ["waiting"] * 5 + ["limited"] * 3
    other = await store.join("r", "c00000000001", newcomer=bot("81.0.1.1", "81.0.1.0/24"))
    assert other.status == "waiting"


async def test_rejoining_with_a_place_never_counts(store: LineStore) -> None:
    await make_room(store, joins_per_ip=1)
    first = await store.join("r", "a00000000001", newcomer=bot("81.0.0.1"))
    again = await store.join("r", "a00000000001", newcomer=bot("81.0.0.1"))
    assert (first.place, again.status, again.place) == (1, "waiting", 1)


async def test_uncounted_newcomers_and_zero_limits_are_never_refused(store: LineStore) -> None:
    await make_room(store, joins_per_ip=1, joins_per_subnet=1)
    proxied = [
        await store.join("r", f"p{i:011d}", newcomer=Newcomer("10.0.0.1", "10.0.0.0/24", False))
        for i in range(5)
    ]
    assert all(r.status == "waiting" for r in proxied)
    await store.configure("r", joins_per_ip=0, joins_per_subnet=0)
    free = [await store.join("r", f"b{i:011d}", newcomer=bot("81.0.0.1")) for i in range(5)]
    assert all(r.status == "waiting" for r in free)


async def test_counters_always_carry_an_expiry(store: LineStore) -> None:
    """The trap of INCR then EXPIRE as two calls: here both are one script, and a counter
    found without an expiry (however that happened) gets one before it can refuse anyone."""
    await make_room(store, joins_per_ip=2, join_window_seconds=60)
    await store.join("r", "a00000000001", newcomer=bot("81.0.0.1"))
    keys = store.keys("r")
    for kind, source in (("ip", "81.0.0.1"), ("net", "81.0.0.0/24")):
        ttl = await store.redis.pttl(keys.joins_from(kind, source))
        assert 0 < ttl <= 60_000
    frozen = keys.joins_from("ip", "81.0.0.9")
    await store.redis.set(frozen, 99)  # no expiry
    refused = await store.join("r", "z00000000001", newcomer=bot("81.0.0.9"))
    assert refused.status == "limited"
    assert 0 < await store.redis.pttl(frozen) <= 60_000


async def test_proof_of_work_is_required_and_works_once(store: LineStore) -> None:
    await make_room(store, challenge=True, challenge_bits=12)
    none = await store.join("r", "a00000000001", newcomer=bot("81.0.0.1"))
    assert (none.status, none.challenge_bits) == ("challenge", 12)
    weak = await store.join(
        "r", "a00000000001", newcomer=bot("81.0.0.1", proof_id="c1", proof_bits=8)
    )
    assert weak.status == "challenge"
    solved = bot("81.0.0.1", proof_id="c1", proof_bits=12, proof_ttl_ms=60_000)
    assert (await store.join("r", "a00000000001", newcomer=solved)).status == "waiting"
    before = await line_state(store)
    replay = await store.join("r", "b00000000001", newcomer=solved)
    assert replay.status == "replayed"
    assert await line_state(store) == before
    assert 0 < await store.redis.pttl(store.keys("r").proof_used("c1")) <= 60_000
    # A known visitor (a lapsed ticket coming back) and an invitation need no proof.
    assert (await store.join("r", "k00000000001")).status == "waiting"


async def test_a_refused_join_spends_no_proof(store: LineStore) -> None:
    await make_room(store, challenge=True, challenge_bits=4, joins_per_ip=1)
    proof = {"proof_bits": 4, "proof_ttl_ms": 60_000}
    await store.join("r", "a00000000001", newcomer=bot("81.0.0.1", proof_id="c1", **proof))
    second = bot("81.0.0.1", proof_id="c2", **proof)
    limited = await store.join("r", "b00000000001", newcomer=second)
    assert limited.status == "limited"
    assert not await store.redis.exists(store.keys("r").proof_used("c2"))


async def test_revoking_moves_the_epoch_and_empties_the_site(store: LineStore) -> None:
    await make_room(store, rate_per_minute=60)
    assert (await store.join("r", "a00000000001", now_us=T0)).status == "admitted"
    claimed = await store.claim("r", "a00000000001", 600, now_us=T0)
    assert claimed is not None and claimed.epoch == 0
    assert (await store.tick("r", now_us=T0)).active == 1
    await store.configure("r", revoke_passes=True, now_us=T0 + SEC)
    snap = await store.tick("r", now_us=T0 + SEC)
    assert (snap.epoch, snap.active) == (1, 0)
    # The revoked visitor's ticket collects no new pass: they are no longer admitted.
    assert await store.claim("r", "a00000000001", 600, now_us=T0 + 2 * SEC) is None
    # Anyone admitted from now on gets a pass of the new epoch, from Redis itself.
    await store.configure("r", revoke_passes=True, now_us=T0 + 3 * SEC)
    assert (await store.join("r", "b00000000001", now_us=T0 + 5 * SEC)).status == "admitted"
    later = await store.claim("r", "b00000000001", 600, now_us=T0 + 5 * SEC)
    assert later is not None and later.epoch == 2


async def test_a_data_loss_does_not_bring_revoked_passes_back(store: LineStore) -> None:
    await make_room(store)
    await store.configure("r", revoke_passes=True)
    await store.configure("r", revoke_passes=True)
    known = await store.tick("r")
    assert known.epoch == 2
    for key in [k async for k in store.redis.scan_iter(match=f"{store.prefix}:*")]:
        await store.redis.delete(key)
    restored = await store.tick("r", known=known)
    assert restored.epoch == 2 and restored.recoveries == 1


async def test_a_pass_opens_a_bounded_number_of_sessions(store: LineStore) -> None:
    expires_at = T0 // SEC + 600
    assert await store.open_session("r", "p1", "browser-aaaaaaa1", 2, expires_at) is None
    assert await store.open_session("r", "p1", "browser-aaaaaaa2", 2, expires_at) is None
    # A third browser is refused, and told which two hold the pass (workers cache that).
    holders = await store.open_session("r", "p1", "browser-aaaaaaa3", 2, expires_at)
    assert holders == {"browser-aaaaaaa1", "browser-aaaaaaa2"}
    assert await store.open_session("r", "p1", "browser-aaaaaaa1", 2, expires_at) is None
    assert await store.open_session("r", "p2", "browser-aaaaaaa3", 2, expires_at) is None
    ttl = await store.redis.ttl(store.keys("r").pass_sessions("p1"))
    assert ttl > 0  # the set goes when its pass does (plus a margin for clock skew)


async def test_live_settings_reach_every_gateway_through_the_tick(store: LineStore) -> None:
    config = await make_room(store)
    snap = await store.tick("r")
    assert (snap.challenge_bits, snap.sessions_per_pass) == (0, config.sessions_per_pass)
    await store.configure("r", challenge=True, challenge_bits=18, sessions_per_pass=5)
    snap = await store.tick("r")
    assert (snap.challenge_bits, snap.sessions_per_pass) == (18, 5)
