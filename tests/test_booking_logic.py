"""The booking site's pure logic as tables: phone numbers, the SMS schedule, PIN rules,
latency percentiles, slot times and settings. Time is always a plain number here."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest

from booking_backend.errors import PROBLEMS, Refusal
from booking_backend.inventory import parse_day, slot_time
from booking_backend.latency import LatencyWindow, percentile
from booking_backend.phones import mask_phone, normalise_phone
from booking_backend.pins import (
    Challenge,
    Verdict,
    hash_pin,
    judge,
    may_send_new_pin,
    read_pin,
)
from booking_backend.rendering import clock_time, iso_time
from booking_backend.settings import BackendSettings, Centre, slugify
from booking_backend.sms import KEEP_PER_PHONE, MAX_INBOX_PHONES, SmsGateway, next_delivery

# --- phone numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("+420601123456", "+420601123456"),
        ("+420 601 123 456", "+420601123456"),
        ("  +420 601-123-456 ", "+420601123456"),
        ("00420 601 123 456", "+420601123456"),  # the European international prefix
        ("+32 470 12 34 56", "+32470123456"),  # Belgian mobile
        ("+1 212 555 0100", "+12125550100"),
        ("+12345678", "+12345678"),  # 8 digits, the shortest accepted
        ("+123456789012345", "+123456789012345"),  # 15 digits, E.164's longest
    ],
)
def test_phone_numbers_are_normalised(typed: str, canonical: str) -> None:
    assert normalise_phone(typed) == canonical


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter your mobile phone number."),
        ("   ", "Enter your mobile phone number."),
        ("601 123 456", "Start with + and your country code"),
        ("420601123456", "Start with + and your country code"),
        ("+420 601 ABC 456", "Use only digits and spaces"),
        ("+420(601)123456", "Use only digits and spaces"),
        ("+420 ٦٠١ ١٢٣ ٤٥٦", "Use only digits and spaces"),  # Arabic-Indic digits
        ("+1234567", "8 to 15 digits after the +; this one has 7"),
        ("+1234567890123456", "8 to 15 digits after the +; this one has 16"),
        ("+0420601123456", "never starts with 0"),
        ("+" + "1" * 60, "too long"),
    ],
)
def test_malformed_phone_numbers_say_what_is_wrong(typed: str, message: str) -> None:
    with pytest.raises(Refusal) as refused:
        normalise_phone(typed)
    assert refused.value.code == "invalid_phone"
    assert refused.value.status == 400
    assert message in refused.value.detail


@pytest.mark.parametrize(
    ("phone", "masked"),
    [("+420601123456", "+420******456"), ("+12345678", "+123**678"), ("+1234567", "+123*567")],
)
def test_masked_phone_keeps_only_the_ends(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


# --- the SMS schedule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "previous", "per_second", "expected"),
    [
        (100.0, -math.inf, 20, 100.05),  # idle gateway: one transmission time
        (100.0, 99.0, 20, 100.05),  # the last message went long ago
        (100.0, 100.5, 20, 100.55),  # queued behind a message still waiting
        (100.0, 100.5, 200, 100.505),  # the 08:35 rate
        (0.0, 0.0, 0.5, 2.0),  # a very slow operator
    ],
)
def test_next_delivery(now: float, previous: float, per_second: float, expected: float) -> None:
    assert next_delivery(now, previous, per_second) == pytest.approx(expected)


@pytest.mark.parametrize("per_second", [0, -1])
def test_next_delivery_rejects_a_stopped_gateway(per_second: float) -> None:
    with pytest.raises(ValueError):
        next_delivery(0, 0, per_second)


def deliveries_in_any_second(times: list[float]) -> int:
    """The most deliveries in any half-open one-second window [t, t + 1)."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + 1 - 1e-9) for t in times)


@pytest.mark.parametrize(
    ("per_second", "burst", "last_arrives_after"),
    [(20, 100, 5.0), (20, 20, 1.0), (200, 100, 0.5), (1, 3, 3.0)],
)
def test_a_burst_queues_at_the_gateway_rate(
    per_second: float, burst: int, last_arrives_after: float
) -> None:
    gateway = SmsGateway(per_second)
    sent = [gateway.send(f"+42060100{i:04d}", "PIN", now=1000.0) for i in range(burst)]
    times = [m.deliver_at for m in sent]
    assert times == sorted(times)
    assert deliveries_in_any_second(times) <= per_second
    assert times[-1] - 1000.0 == pytest.approx(last_arrives_after)
    backlog = gateway.backlog(now=1000.0)
    assert (backlog.queued, backlog.delivered) == (burst, 0)
    assert backlog.delay_s == pytest.approx(last_arrives_after + 1 / per_second)


def test_inbox_shows_only_delivered_messages_in_order() -> None:
    gateway = SmsGateway(10)
    for i in range(3):
        gateway.send("+420601000001", f"message {i}", now=0.0)
    gateway.send("+420601000002", "someone else", now=0.0)
    assert gateway.inbox("+420601000001", now=0.05) == []
    assert [m.text for m in gateway.inbox("+420601000001", now=0.2)] == ["message 0", "message 1"]
    assert gateway.pending_delivery("+420601000001", now=0.2) == pytest.approx(0.3)
    assert len(gateway.inbox("+420601000001", now=10)) == 3
    assert gateway.pending_delivery("+420601000001", now=10) is None
    backlog = gateway.backlog(now=10)
    assert (backlog.queued, backlog.delivered, backlog.oldest_queued_age_s) == (0, 4, 0.0)


def test_the_inbox_keeps_the_latest_messages_of_the_latest_numbers() -> None:
    gateway = SmsGateway(1000, keep_per_phone=3, max_phones=2)
    for i in range(5):
        gateway.send("+420601000001", f"Ana {i}", now=0.0)
    gateway.send("+420601000002", "Ben", now=0.0)
    assert [m.text for m in gateway.inbox("+420601000001", now=1)] == ["Ana 2", "Ana 3", "Ana 4"]
    # A third number: the one delivered to least recently (Ana) is forgotten, not Ben.
    gateway.send("+420601000003", "Cleo", now=2.0)
    assert gateway.inbox("+420601000001", now=3) == []
    assert [m.text for m in gateway.inbox("+420601000002", now=3)] == ["Ben"]
    assert [m.text for m in gateway.inbox("+420601000003", now=3)] == ["Cleo"]
    # A new message to Ben makes him the most recent, so Dan's arrival drops Cleo.
    gateway.send("+420601000002", "Ben again", now=4.0)
    gateway.send("+420601000004", "Dan", now=5.0)
    assert gateway.inbox("+420601000003", now=6) == []
    assert [m.text for m in gateway.inbox("+420601000002", now=6)] == ["Ben", "Ben again"]
    assert gateway.backlog(now=6).delivered == 9  # forgetting is the inbox's, not the count's


def test_the_inbox_is_bounded_by_default() -> None:
    gateway = SmsGateway(100_000)
    for i in range(KEEP_PER_PHONE + 5):
        gateway.send("+420601000001", f"PIN {i}", now=0.0)
    for i in range(MAX_INBOX_PHONES + 10):
        gateway.send(f"+4207{i:08d}", "PIN", now=1.0)
    assert len(gateway.inbox("+420601000001", now=0.5)) == KEEP_PER_PHONE
    assert gateway.inbox("+420601000001", now=100) == []  # the oldest number, forgotten
    assert gateway.inbox(f"+4207{MAX_INBOX_PHONES + 9:08d}", now=100) != []


def test_raising_the_rate_drains_the_backlog_sooner() -> None:
    """08:35: a hundred PINs queued at 20/s; the operator raises the rate to 200/s at +1 s."""
    gateway = SmsGateway(20)
    for i in range(100):
        gateway.send(f"+4206010{i:05d}", "PIN", now=0.0)
    assert gateway.backlog(now=1.0).queued == 80  # 20 went out in the first second
    assert gateway.backlog(now=1.0).oldest_queued_age_s == pytest.approx(1.0)
    gateway.set_rate(200, now=1.0)
    later = [gateway.pending_delivery(f"+4206010{i:05d}", now=1.0) for i in range(20, 100)]
    assert later[0] == pytest.approx(1.005)
    assert later[-1] == pytest.approx(1.4)  # instead of 5.0
    assert gateway.backlog(now=1.4).queued == 0
    # New messages queue behind the re-spaced ones at the new rate.
    assert gateway.send("+420601099999", "PIN", now=1.0).deliver_at == pytest.approx(1.405)


def test_lowering_the_rate_spaces_the_queue_out() -> None:
    gateway = SmsGateway(100)
    sent = [gateway.send(f"+4206020{i:05d}", "PIN", now=0.0) for i in range(10)]
    gateway.set_rate(1, now=0.0)
    assert [m.deliver_at for m in sent] == pytest.approx([float(i) for i in range(1, 11)])


# --- PIN rules -----------------------------------------------------------------------------

CHALLENGE = Challenge(
    phone="+420601123456",
    challenge_id="c1",
    pin_hash=hash_pin("c1", "123456"),
    requested_at=1000.0,
    expires_at=1300.0,
    attempts=0,
    used=False,
)


def challenge(**changes: object) -> Challenge:
    return Challenge(**{**CHALLENGE.__dict__, **changes})


@pytest.mark.parametrize(
    ("current", "challenge_id", "pin", "now", "verdict"),
    [
        (CHALLENGE, "c1", "123456", 1000.0, Verdict.VERIFIED),
        (CHALLENGE, "c1", "123456", 1299.9, Verdict.VERIFIED),
        (CHALLENGE, "c1", "123456", 1300.0, Verdict.EXPIRED),  # expiry counts from the request
        (CHALLENGE, "c1", "654321", 1000.0, Verdict.WRONG),
        (challenge(attempts=2), "c1", "654321", 1000.0, Verdict.LAST_WRONG),
        (challenge(attempts=3), "c1", "123456", 1000.0, Verdict.LOCKED),  # even the right PIN
        (challenge(used=True), "c1", "123456", 1000.0, Verdict.USED),
        (CHALLENGE, "c0", "123456", 1000.0, Verdict.SUPERSEDED),  # an older request's session
        (None, "c1", "123456", 1000.0, Verdict.NONE),
        (challenge(attempts=2), "c1", "123456", 1400.0, Verdict.EXPIRED),
    ],
)
def test_judging_a_pin(
    current: Challenge | None, challenge_id: str, pin: str, now: float, verdict: Verdict
) -> None:
    assert judge(current, challenge_id, pin, now, max_attempts=3) is verdict


@pytest.mark.parametrize(
    ("current", "now", "new_pin"),
    [
        (None, 1000.0, True),
        (CHALLENGE, 1010.0, False),  # a double submit: the PIN is still on its way
        (CHALLENGE, 1059.9, False),
        (CHALLENGE, 1060.0, True),  # a minute later the visitor may ask again
        (challenge(used=True), 1010.0, True),
        (challenge(attempts=3), 1010.0, True),
        (CHALLENGE, 1300.0, True),  # expired
    ],
)
def test_when_a_new_pin_is_sent(current: Challenge | None, now: float, new_pin: bool) -> None:
    assert may_send_new_pin(current, now, resend_after_s=60, max_attempts=3) is new_pin


@pytest.mark.parametrize(
    ("typed", "pin"), [("123456", "123456"), (" 123 456 ", "123456"), ("000000", "000000")]
)
def test_pins_are_read_with_spaces_allowed(typed: str, pin: str) -> None:
    assert read_pin(typed) == pin


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12a456", "١٢٣٤٥٦"])
def test_malformed_pins_are_refused(typed: str) -> None:
    with pytest.raises(Refusal) as refused:
        read_pin(typed)
    assert refused.value.code == "invalid_pin"


def test_every_verdict_but_verified_maps_to_a_known_problem() -> None:
    for verdict in Verdict:
        if verdict is not Verdict.VERIFIED:
            assert verdict.refusal_code in PROBLEMS


# --- latency percentiles -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([7.0], 50, 7.0),
        ([7.0], 99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 75, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 76, 4.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 100, 100.0),
    ],
)
def test_nearest_rank_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_latency_window_forgets_old_samples() -> None:
    window = LatencyWindow(window_s=60)
    for _ in range(100):
        window.record(now=0.0, seconds=10.0)  # a slow minute long ago
    for i in range(1, 101):
        window.record(now=100.0, seconds=i / 1000)
    assert window.percentiles(now=100.0) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert window.count(now=100.0) == 100
    assert window.percentiles(now=200.0) == {"p50": None, "p95": None, "p99": None}


# --- times in replies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "iso", "clock"),
    [
        (1610697600.0, "2021-01-15T08:00:00.000+00:00", "08:00:00 UTC"),
        (1610697600.1234, "2021-01-15T08:00:00.123+00:00", "08:00:00 UTC"),
        # Beyond what datetime holds (an SMS behind a very slow operator): clamped, no crash.
        (1e300, "9999-12-31T23:59:59.999+00:00", "23:59:59 UTC"),
        (math.inf, "9999-12-31T23:59:59.999+00:00", "23:59:59 UTC"),
        (-1e300, "0001-01-01T00:00:00.000+00:00", "00:00:00 UTC"),
    ],
)
def test_times_are_shown_in_utc_and_never_overflow(timestamp: float, iso: str, clock: str) -> None:
    assert (iso_time(timestamp), clock_time(timestamp)) == (iso, clock)


# --- slot times and days -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "count", "time"),
    [
        (0, 200, "08:00"),
        (1, 200, "08:03"),
        (199, 200, "17:57"),
        (0, 1, "08:00"),
        (1, 2, "13:00"),
        (999, 1000, "17:59"),  # more slots than minutes: lanes share a time
    ],
)
def test_slot_times_spread_over_opening_hours(index: int, count: int, time: str) -> None:
    assert slot_time(index, count) == time


@pytest.mark.parametrize(
    ("raw", "day"), [("2021-01-15", date(2021, 1, 15)), (" 2021-01-15 ", None)]
)
def test_days_are_iso_dates(raw: str, day: date | None) -> None:
    assert parse_day(raw) == (day or date(2021, 1, 15))


@pytest.mark.parametrize("raw", ["", "tomorrow", "2021-02-30", "15.1.2021"])
def test_bad_days_are_refused(raw: str) -> None:
    with pytest.raises(Refusal) as refused:
        parse_day(raw)
    assert refused.value.code == "invalid_day"


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Praha – Výstaviště", "praha-vystaviste"),
        ("Plzeň – Lochotín University Hospital", "plzen-lochotin-university-hospital"),
        ("  Brno  ", "brno"),
    ],
)
def test_centre_ids_are_url_safe(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_inventory_settings_from_env() -> None:
    settings = BackendSettings.from_env(
        {
            "BACKEND_CENTRES": "Praha – Výstaviště; Brno",
            "BACKEND_DAYS": "3",
            "BACKEND_SLOTS_PER_DAY": "7",
            "BACKEND_FIRST_DAY": "2021-01-15",
            "BACKEND_DB": "/tmp/x.sqlite3",
            "BACKEND_SMS_PER_SECOND": "200",
            "BACKEND_PIN_TTL_S": "1.5",
            "BACKEND_SIM_INBOX": "1",
            "BACKEND_WAITROOM_SECRET": " old-secret , new-secret ,",
            "BACKEND_ADMIN_TOKEN": "t0ken",
        }
    )
    assert settings.centres == (
        Centre("praha-vystaviste", "Praha – Výstaviště"),
        Centre("brno", "Brno"),
    )
    assert (settings.days, settings.slots_per_day) == (3, 7)
    assert settings.first_day == date(2021, 1, 15)
    assert settings.db_path == Path("/tmp/x.sqlite3")
    assert (settings.sms_per_second, settings.pin_ttl_s, settings.sim_inbox) == (200, 1.5, True)
    assert settings.waitroom_secrets == ("old-secret", "new-secret")
    assert "t0ken" not in repr(settings) and "new-secret" not in repr(settings)


def test_a_number_of_centres_uses_the_built_in_names() -> None:
    assert [c.name for c in BackendSettings.from_env({"BACKEND_CENTRES": "2"}).centres] == [
        "Praha – Výstaviště",
        "Brno – Exhibition Centre",
    ]
    many = BackendSettings.from_env({"BACKEND_CENTRES": "20"}).centres
    assert len({c.id for c in many}) == 20
    assert many[-1].name == "Vaccination centre 20"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKEND_DB", ":memory:"),
        ("BACKEND_CENTRES", "0"),
        ("BACKEND_CENTRES", "Brno;Brno"),
        ("BACKEND_DAYS", "0"),
        ("BACKEND_SLOTS_PER_DAY", "0"),
        ("BACKEND_SLOTS_PER_DAY", "many"),
        ("BACKEND_FIRST_DAY", "15.1.2021"),
        ("BACKEND_SMS_PER_SECOND", "0"),
        ("BACKEND_SMS_PER_SECOND", "1e-300"),  # the next SMS would be due after year 9999
        ("BACKEND_SMS_PER_SECOND", "0.009"),
        ("BACKEND_SMS_PER_SECOND", "100001"),
        ("BACKEND_SMS_PER_SECOND", "nan"),
        ("BACKEND_PIN_TTL_S", "-1"),
        ("BACKEND_PIN_ATTEMPTS", "0"),
        ("BACKEND_SIM_INBOX", "maybe"),
    ],
)
def test_bad_inventory_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name if name != "BACKEND_CENTRES" else "BACKEND_CENTRES"):
        BackendSettings.from_env({name: value})
