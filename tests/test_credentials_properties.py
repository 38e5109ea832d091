"""Property-based tests (hypothesis) of the credentials a visitor carries: whatever arrives in
a cookie, a header, a receipt box or an invitation link is either exactly what the gateway
signed, or refused with InvalidCredential / None. Never anything else, never an exception
the gateway would turn into a 500."""

from __future__ import annotations

import hashlib
import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from gateway.invitations import Invitations
from gateway.receipts import Receipts
from queue_core.tokens import PASS_SALT, Credentials, InvalidCredential, Pass, Ticket

SECRET = "p" * 40
OTHER = "q" * 40
creds = Credentials([SECRET])
foreign = Credentials([OTHER])
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

room_names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)
lane_names = st.one_of(st.just(""), st.from_regex(r"[a-z0-9][a-z0-9_]{0,15}", fullmatch=True))
visitor_ids = st.from_regex(r"[A-Za-z0-9_-]{12}", fullmatch=True)
tickets = st.builds(
    Ticket,
    room=room_names,
    place=st.integers(0, 10**12),
    visitor=visitor_ids,
    issued_at=st.integers(0, 2**40),
    ahead_at_join=st.integers(0, 10**9),
    lane=lane_names,
    gen=st.text(string.hexdigits, max_size=12),
)
passes = st.builds(
    Pass,
    room=room_names,
    visitor=visitor_ids,
    expires_at=st.integers(1, 2**40),
    pass_id=st.text(string.hexdigits, min_size=1, max_size=16),
    epoch=st.integers(0, 2**40),
)
# What a hostile or broken client might send: any text, and text shaped like a token.
junk = st.one_of(
    st.text(max_size=600),
    st.from_regex(r"[A-Za-z0-9_.-]{1,450}", fullmatch=True),
    st.builds(lambda a, b: f"{a}.{b}", st.text(max_size=200), st.text(max_size=60)),
)


@PROPS
@given(tickets)
def test_every_ticket_reads_back_exactly(ticket: Ticket) -> None:
    assert creds.read_ticket(creds.issue_ticket(ticket)) == ticket


@PROPS
@given(passes)
def test_every_pass_reads_back_exactly_until_it_expires(admission: Pass) -> None:
    value = creds.issue_pass(admission)
    assert creds.read_pass(value, admission.expires_at - 1) == admission
    try:
        creds.read_pass(value, admission.expires_at)
    except InvalidCredential:
        pass
    else:
        raise AssertionError("an expired pass was accepted")


@PROPS
@given(junk)
@example("")
@example(".")
@example("W10.")
def test_anything_else_is_refused_cleanly(value: str) -> None:
    for read in (creds.read_ticket, lambda v: creds.read_pass(v, 0)):
        try:
            read(value)
        except InvalidCredential:
            continue
        raise AssertionError(f"accepted {value!r}")


@PROPS
@given(tickets, st.data())
def test_changing_any_character_never_yields_another_valid_ticket(
    ticket: Ticket, data: st.DataObject
) -> None:
    value = creds.issue_ticket(ticket)
    i = data.draw(st.integers(0, len(value) - 1))
    char = data.draw(st.sampled_from(string.ascii_letters + string.digits + "-_."))
    altered = value[:i] + char + value[i + 1 :]
    try:
        read = creds.read_ticket(altered)
    except InvalidCredential:
        return
    # Base64's last character carries spare bits: a change there can decode to the same
    # bytes. Then it is the same ticket, never a different one.
    assert read == ticket


@PROPS
@given(st.one_of(tickets, passes))
def test_a_credential_signed_with_another_secret_is_refused(cred: Ticket | Pass) -> None:
    if isinstance(cred, Ticket):
        value = foreign.issue_ticket(cred)
        readers = [creds.read_ticket, lambda v: creds.read_pass(v, 0)]
    else:
        value = foreign.issue_pass(cred)
        readers = [creds.read_ticket, lambda v: creds.read_pass(v, 0)]
    for read in readers:
        try:
            read(value)
        except InvalidCredential:
            continue
        raise AssertionError("a foreign credential was accepted")


@PROPS
@given(passes)
def test_a_pass_is_never_a_ticket_and_a_ticket_never_a_pass(admission: Pass) -> None:
    try:
        creds.read_ticket(creds.issue_pass(admission))
    except InvalidCredential:
        pass
    else:
        raise AssertionError("a pass was read as a ticket")


@PROPS
@given(room_names, st.integers(1, 10**12), lane_names)
def test_receipts_read_back_and_typing_slips_are_forgiven(room: str, place: int, lane: str) -> None:
    receipts = Receipts([SECRET])
    code = receipts.code(room, place, lane)
    assert receipts.place(room, code, ["", lane]) == (lane, place)
    sloppy = code.lower().replace("-", " ").replace("1", "l").replace("0", "o")
    assert receipts.place(room, sloppy, ["", lane]) == (lane, place)
    assert Receipts([OTHER]).place(room, code, ["", lane]) is None


@PROPS
@given(room_names, st.text(max_size=80))
def test_any_typed_receipt_or_invitation_is_a_place_or_nothing(room: str, typed: str) -> None:
    found = Receipts([SECRET]).place(room, typed, [""])
    assert found is None or (found[0] == "" and found[1] > 0)
    invitation = Invitations([SECRET]).parse(room, typed, {"over80": 0.5})
    assert invitation is None


@PROPS
@given(passes)
def test_a_pass_signed_before_epochs_existed_reads_as_epoch_zero(admission: Pass) -> None:
    """Passes issued by the previous release have four fields: still good after a deploy,
    until the room's epoch is first rotated."""
    signer = URLSafeSerializer(
        SECRET, salt=PASS_SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )
    legacy = signer.dumps(
        [admission.room, admission.visitor, admission.expires_at, admission.pass_id]
    )
    read = creds.read_pass(legacy, admission.expires_at - 1)
    assert read == Pass(admission.room, admission.visitor, admission.expires_at, admission.pass_id)
    assert read.epoch == 0
    for bad_epoch in (-1, True, "1", 1.5):
        forged = signer.dumps([*signer.loads(legacy), bad_epoch])
        try:
            creds.read_pass(forged, 0)
        except InvalidCredential:
            continue
        raise AssertionError(f"epoch {bad_epoch!r} accepted")
