import base64
import hashlib
import hmac
import json

import pytest
from itsdangerous import URLSafeSerializer

from queue_core.tokens import (
    PASS_SALT,
    TICKET_SALT,
    Credentials,
    InvalidCredential,
    Pass,
    Ticket,
    new_visitor_id,
)

OLD = "o" * 40
NEW = "n" * 40
TICKET = Ticket("vaccination", 42, "abcdefghijkl", 1_700_000_000, 17, "over80", "a1b2c3")
PASS = Pass("vaccination", "abcdefghijkl", 2_000_000_000, "0123456789abcdef")


def test_ticket_round_trip_keeps_every_field() -> None:
    creds = Credentials([NEW])
    assert creds.read_ticket(creds.issue_ticket(TICKET)) == TICKET


def test_signature_is_hmac_sha256() -> None:
    creds = Credentials([NEW])
    value = creds.issue_ticket(TICKET)
    payload, sig = value.rsplit(".", 1)
    # itsdangerous derives the HMAC key from salt and secret ("django-concat").
    key = hashlib.sha256((TICKET_SALT + "signer" + NEW).encode()).digest()
    expected = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)) == expected


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"),  # signature changed
        lambda v: v[:5] + ("A" if v[5] != "A" else "B") + v[6:],  # payload changed
        lambda v: v.replace(".", ""),  # signature removed
        lambda v: "",
        lambda v: v + "x" * 500,  # oversized
        lambda v: "not-a-token",
        lambda v: "\u00e9\u00e9\u00e9.\u00e9\u00e9",
    ],
)
def test_tampered_ticket_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    creds = Credentials([NEW])
    with pytest.raises(InvalidCredential):
        creds.read_ticket(mutate(creds.issue_ticket(TICKET)))


def test_forged_payload_with_valid_shape_refused() -> None:
    forged = URLSafeSerializer("guessed-secret-of-32-characters!!", salt=TICKET_SALT)
    value = forged.dumps(["vaccination", 1, "abcdefghijkl", 1, 0, "", ""])
    with pytest.raises(InvalidCredential):
        Credentials([NEW]).read_ticket(value)


def test_ticket_is_not_a_pass_and_vice_versa() -> None:
    creds = Credentials([NEW])
    with pytest.raises(InvalidCredential):
        creds.read_pass(creds.issue_ticket(TICKET), now=0)
    with pytest.raises(InvalidCredential):
        creds.read_ticket(creds.issue_pass(PASS))


def test_key_rotation_newest_signs_all_verify() -> None:
    old_value = Credentials([OLD]).issue_ticket(TICKET)
    rotated = Credentials([OLD, NEW])
    assert rotated.read_ticket(old_value) == TICKET
    new_value = rotated.issue_ticket(TICKET)
    assert Credentials([NEW]).read_ticket(new_value) == TICKET
    with pytest.raises(InvalidCredential):
        Credentials([NEW]).read_ticket(old_value)  # retired secret


def test_pass_expiry_is_inside_the_mac() -> None:
    creds = Credentials([NEW])
    value = creds.issue_pass(PASS)
    assert creds.read_pass(value, now=PASS.expires_at - 1) == PASS
    with pytest.raises(InvalidCredential):
        creds.read_pass(value, now=PASS.expires_at)
    # A payload with a later expiry under the original signature is refused.
    sig = value.rsplit(".", 1)[1]
    data = [PASS.room, PASS.visitor, PASS.expires_at + 10_000, PASS.pass_id]
    raw = json.dumps(data, separators=(",", ":")).encode()
    later = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with pytest.raises(InvalidCredential):
        creds.read_pass(f"{later}.{sig}", now=PASS.expires_at)


@pytest.mark.parametrize(
    "payload",
    [
        ["vaccination", -1, "abcdefghijkl", 1, 0, "", ""],  # no negative places
        ["vaccination", True, "abcdefghijkl", 1, 0, "", ""],  # bool is not a place
        ["vaccination", 1, "short", 1, 0, "", ""],
        ["vaccination", 1, "abcdefghijkl", 1, -1, "", ""],
        ["vaccination", 1, "abcdefghijkl", 1, 0, ""],
        {"room": "vaccination"},
    ],
)
def test_signed_but_malformed_ticket_refused(payload: object) -> None:
    signer = URLSafeSerializer(
        NEW, salt=TICKET_SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )
    with pytest.raises(InvalidCredential):
        Credentials([NEW]).read_ticket(signer.dumps(payload))


def test_pass_salt_differs_from_ticket_salt() -> None:
    assert PASS_SALT != TICKET_SALT


def test_visitor_ids_are_unique_and_well_formed() -> None:
    ids = {new_visitor_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 12 for i in ids)


def test_the_verification_cache_never_lets_a_forgery_through() -> None:
    creds = Credentials([NEW])
    genuine = creds.issue_ticket(TICKET)
    assert creds.read_ticket(genuine) == TICKET
    assert creds.read_ticket(genuine) == TICKET  # cached
    forged = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
    for _ in range(2):  # and a failure is never remembered as a success
        with pytest.raises(InvalidCredential):
            creds.read_ticket(forged)
