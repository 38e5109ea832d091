import pytest

from gateway.receipts import Receipts

OLD, NEW = "o" * 40, "n" * 40


def test_code_round_trips_and_is_short() -> None:
    r = Receipts([NEW])
    code = r.code("vaccination", 12345)
    assert code.startswith("12345-") and len(code) == len("12345-ABCD-EFGH")
    assert r.place("vaccination", code) == ("", 12345)


@pytest.mark.parametrize(
    "typed",
    ["{code}", "{lower}", " {nodash} ", "{spaced}"],
)
def test_typing_is_forgiving(typed: str) -> None:
    r = Receipts([NEW])
    code = r.code("vaccination", 77)
    typed = typed.format(
        code=code, lower=code.lower(), nodash=code.replace("-", ""), spaced=code.replace("-", " ")
    )
    assert r.place("vaccination", typed) == ("", 77)


def test_confusable_letters_are_read_as_digits() -> None:
    r = Receipts([NEW])
    code = r.code("vaccination", 5)
    typo = code.replace("1", "I").replace("0", "O")
    assert r.place("vaccination", typo) == ("", 5)


@pytest.mark.parametrize("bad", ["", "12345", "12345-AAAA-AAAA", "x" * 500, "0-AAAA-AAAA", "-1-AB"])
def test_forged_or_malformed_codes_are_refused(bad: str) -> None:
    assert Receipts([NEW]).place("vaccination", bad) is None


def test_another_place_or_room_is_refused() -> None:
    r = Receipts([NEW])
    code = r.code("vaccination", 100)
    assert r.place("other", code) is None
    assert r.place("vaccination", code.replace("100-", "101-")) is None


def test_rotation_keeps_old_receipts_valid() -> None:
    old_code = Receipts([OLD]).code("vaccination", 9)
    assert Receipts([OLD, NEW]).place("vaccination", old_code) == ("", 9)
    assert Receipts([NEW]).place("vaccination", old_code) is None


def test_a_receipt_knows_its_lane() -> None:
    r = Receipts([NEW])
    code = r.code("vaccination", 3, "over80")
    assert r.place("vaccination", code, ["", "over80"]) == ("over80", 3)
    assert r.place("vaccination", code, [""]) is None  # that lane is not in this room
