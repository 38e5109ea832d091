"""Property-based tests (hypothesis) of what a client can send against abuse: proof-of-work
challenges and answers, browser session cookies, and forwarded addresses. Whatever arrives is
either exactly what the gateway issued, or refused with None; never an exception."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.challenge import Challenges, leading_zero_bits, solve, solves
from gateway.client_ip import TrustedProxies, parse_networks
from gateway.pass_sessions import new_session_id, parse_session

SECRET = "p" * 40
NOW = 1_800_000_000
challenges = Challenges([SECRET])
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
room_names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)
junk = st.one_of(
    st.text(max_size=200),
    st.from_regex(r"[0-9a-zA-Z_.-]{1,80}", fullmatch=True),
    st.builds(
        lambda b, e, i, m: f"{b}.{e}.{i}.{m}",
        st.integers(-5, 120),
        st.integers(-1, 10**13),
        st.text("0123456789abcdef", max_size=20),
        st.text(string.ascii_letters + string.digits + "-_", max_size=30),
    ),
)


@PROPS
@given(room_names, st.integers(1, 28))
def test_every_challenge_reads_back_for_its_room_until_it_expires(room: str, bits: int) -> None:
    text = challenges.issue(room, bits, NOW)
    read = challenges.read(room, text, NOW)
    assert read is not None and (read.text, read.bits) == (text, bits)
    assert read.expires_at == NOW + challenges.lifetime
    assert challenges.read(room, text, read.expires_at) is None  # expired
    assert challenges.read(room + "x", text, NOW) is None  # another room's
    assert Challenges(["q" * 40]).read(room, text, NOW) is None  # another gateway's


@PROPS
@given(room_names, st.data())
def test_changing_any_character_of_a_challenge_is_refused(room: str, data: st.DataObject) -> None:
    text = challenges.issue(room, 16, NOW)
    i = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.sampled_from(string.ascii_letters + string.digits + "-_."))
    altered = text[:i] + char + text[i + 1 :]
    read = challenges.read(room, altered, NOW)
    # Base64's last character has spare bits; anything else changed is refused.
    assert read is None or altered == text or i == len(text) - 1


@PROPS
@given(junk, st.text(max_size=40))
@example("", "")
@example("16.1800000600.0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAA", "0")
def test_any_challenge_or_nonce_a_client_makes_up_is_refused(text: str, nonce: str) -> None:
    assert challenges.read("room", text, NOW) is None
    assert challenges.verify("room", text, nonce, NOW) is None


@settings(max_examples=25, deadline=None)
@given(room_names, st.integers(1, 10), st.text(max_size=30))
def test_a_solution_verifies_and_nothing_else_does(room: str, bits: int, other: str) -> None:
    text = challenges.issue(room, bits, NOW)
    nonce = solve(text, bits)
    assert challenges.verify(room, text, nonce, NOW) is not None
    checked = challenges.verify(room, text, other, NOW)
    assert checked is None or solves(text, other, bits)


@given(st.binary(min_size=32, max_size=32))
def test_leading_zero_bits_agrees_with_the_shift(digest: bytes) -> None:
    n = leading_zero_bits(digest)
    value = int.from_bytes(digest, "big")
    assert value >> (256 - n) == 0 if n else True
    assert n == 256 or value >> (255 - n) == 1


@PROPS
@given(st.one_of(st.none(), st.text(max_size=64)))
@example("AAAAAAAAAAAAAAA=")
@example("AAAAAAAAAAAAAAAA\n")
def test_a_session_cookie_is_ours_or_nothing(value: str | None) -> None:
    parsed = parse_session(value)
    assert parsed is None or (parsed == value and len(parsed) == 16)
    if parsed is not None:
        assert set(parsed) <= set(string.ascii_letters + string.digits + "-_")


def test_new_session_ids_parse_and_are_unique() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(parse_session(i) == i for i in ids)


@PROPS
@given(st.lists(st.text(max_size=60), max_size=4), st.text(max_size=45))
def test_any_forwarded_header_yields_an_address_never_an_error(
    forwarded: list[str], peer: str
) -> None:
    proxies = TrustedProxies(parse_networks("127.0.0.0/8,10.0.0.0/8,::1/128"))
    for who in (peer, "127.0.0.1", "10.1.1.1"):
        client = proxies.client(who, forwarded)
        assert client.address and client.subnet
        assert client.public is False or client.address != "unknown"
