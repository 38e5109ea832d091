import pytest

from gateway.invitations import Invitations

SECRET = "s" * 40


def test_codes_are_short_unique_and_name_their_lane() -> None:
    inv = Invitations([SECRET])
    codes = {inv.make("vaccination", "over80") for _ in range(500)}
    assert len(codes) == 500
    code = next(iter(codes))
    assert code.startswith("over80-") and len(code) == len("over80-") + 17
    lane, invite_id = inv.parse("vaccination", code, ["over80"]) or ("", "")
    assert lane == "over80" and len(invite_id) == 8


def test_typing_is_forgiving() -> None:
    inv = Invitations([SECRET])
    code = inv.make("vaccination", "over80")
    lane, rest = code.split("-", 1)
    typed = f"  {lane.upper()}-{rest.lower().replace('-', ' ')}  "
    assert inv.parse("vaccination", typed, ["over80"]) == inv.parse("vaccination", code, ["over80"])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),  # check changed
        lambda c: "carers" + c[len("over80") :],  # another lane
        lambda c: "",
        lambda c: c + "X" * 100,
    ],
)
def test_forged_codes_are_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    inv = Invitations([SECRET])
    code = inv.make("vaccination", "over80")
    assert inv.parse("vaccination", mutate(code), ["over80", "carers"]) is None


def test_a_code_is_for_one_room() -> None:
    inv = Invitations([SECRET])
    assert inv.parse("other", inv.make("vaccination", "over80"), ["over80"]) is None
