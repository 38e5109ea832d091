"""The citizen's way through the site, shared by the HTML pages and the JSON API:

    phone number -> PIN by SMS -> PIN check -> centre, day and time -> booking reference
                                             \\-> (nothing left) registration without a date

Each step is one method that either returns what the visitor should see next or raises a
Refusal. The pages and the API only translate; neither has rules of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial

from booking_backend import inventory, pin_store
from booking_backend.database import Database
from booking_backend.errors import PROBLEMS, Refusal
from booking_backend.inventory import Booking, DayAvailability, InventoryStats, Slot
from booking_backend.phones import normalise_phone
from booking_backend.pins import Verdict, pin_message, read_pin
from booking_backend.settings import BackendSettings, Centre
from booking_backend.sms import SmsGateway


@dataclass(frozen=True)
class PinSent:
    phone: str
    challenge_id: str
    requested_at: float
    expires_at: float
    new_pin_sent: bool  # False: a PIN sent moments ago is still on its way and still valid
    sms_arrives_at: float | None  # None once it has been delivered
    attempts_left: int


class BookingFlow:
    def __init__(
        self,
        settings: BackendSettings,
        db: Database,
        sms: SmsGateway,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.db = db
        self.sms = sms
        self.clock = clock
        # Cached for the sold-out header on every reply, which must not touch the disk;
        # refreshed after every write. Exact because the site is one process
        # (single_process), so every write goes through here.
        self.slots_left = 0

    @property
    def sold_out(self) -> bool:
        return self.slots_left == 0

    async def open(self) -> None:
        """Create the inventory of a new database file, then load the counts."""
        settings = self.settings
        first_day = settings.first_day or date.fromtimestamp(self.clock())
        seed = partial(
            inventory.seed,
            centres=settings.centres,
            first_day=first_day,
            days=settings.days,
            slots_per_day=settings.slots_per_day,
        )
        await self.db.run(seed)
        await self.refresh()

    async def refresh(self) -> InventoryStats:
        """Full counts, for health checks; also updates the cached number of free slots."""
        stats = await self.db.run(inventory.stats)
        self.slots_left = stats.slots_left
        return stats

    async def _recount_free(self) -> None:
        self.slots_left = await self.db.run(inventory.count_free)

    # -- phone and PIN ---------------------------------------------------------------------

    async def request_pin(self, raw_phone: str) -> PinSent:
        phone = normalise_phone(raw_phone)
        now = self.clock()
        settings = self.settings
        issued = await self.db.run(
            partial(
                pin_store.issue,
                phone=phone,
                now=now,
                ttl_s=settings.pin_ttl_s,
                resend_after_s=settings.pin_resend_after_s,
                max_attempts=settings.pin_attempts,
            )
        )
        now = self.clock()
        if issued.pin is not None:
            self.sms.send(phone, pin_message(issued.pin, settings.pin_ttl_s), now)
        challenge = issued.challenge
        return PinSent(
            phone=phone,
            challenge_id=challenge.challenge_id,
            requested_at=challenge.requested_at,
            expires_at=challenge.expires_at,
            new_pin_sent=issued.pin is not None,
            sms_arrives_at=self.sms.pending_delivery(phone, now),
            attempts_left=max(0, settings.pin_attempts - challenge.attempts),
        )

    async def pin_status(self, pending: tuple[str, str] | None) -> PinSent | None:
        """Where the session's PIN request stands; None if there is none, or a newer one."""
        if pending is None:
            return None
        phone, challenge_id = pending
        challenge = await self.db.run(partial(pin_store.current, phone=phone))
        if challenge is None or challenge.challenge_id != challenge_id:
            return None
        return PinSent(
            phone=phone,
            challenge_id=challenge_id,
            requested_at=challenge.requested_at,
            expires_at=challenge.expires_at,
            new_pin_sent=False,
            sms_arrives_at=self.sms.pending_delivery(phone, self.clock()),
            attempts_left=max(0, self.settings.pin_attempts - challenge.attempts),
        )

    async def verify_pin(self, pending: tuple[str, str] | None, raw_pin: str) -> Booking | None:
        """Check the PIN of the session's pending request; the phone's booking if it has one."""
        if pending is None:
            raise Refusal("no_pin_requested")
        phone, challenge_id = pending
        pin = read_pin(raw_pin)
        check = partial(
            pin_store.check,
            phone=phone,
            challenge_id=challenge_id,
            pin=pin,
            now=self.clock(),
            max_attempts=self.settings.pin_attempts,
        )
        verdict, attempts_left = await self.db.run(check)
        if verdict is Verdict.WRONG:
            tries = "1 more attempt" if attempts_left == 1 else f"{attempts_left} more attempts"
            detail = f"{PROBLEMS['wrong_pin'].detail} You have {tries}."
            raise Refusal("wrong_pin", detail, attempts_left=attempts_left)
        if verdict is Verdict.LAST_WRONG:
            detail = "That PIN is not right, and it was the last attempt. Request a new PIN."
            raise Refusal("too_many_attempts", detail, attempts_left=0)
        if verdict is not Verdict.VERIFIED:
            raise Refusal(verdict.refusal_code, attempts_left=attempts_left)
        return await self.db.run(partial(inventory.booking_for_phone, phone=phone))

    # -- choosing and booking ----------------------------------------------------------------

    async def availability(self) -> list[DayAvailability]:
        days = await self.db.run(inventory.availability)
        self.slots_left = sum(d.free for d in days)
        return days

    async def free_slots(self, centre_id: str, raw_day: str) -> tuple[Centre, date, list[Slot]]:
        day = inventory.parse_day(raw_day)
        centre, slots = await self.db.run(
            partial(inventory.free_slots, centre_id=centre_id, day=day)
        )
        return centre, day, slots

    async def book(
        self, phone: str | None, centre_id: str, raw_day: str, raw_slot: object
    ) -> tuple[Booking, bool]:
        """(booking, created). Confirming twice gives the same booking, never a second."""
        phone = _require_verified(phone)
        day = inventory.parse_day(raw_day)
        number = _slot_number(raw_slot)
        work = partial(inventory.book, phone=phone, centre_id=centre_id, day=day, number=number)
        try:
            return await self.db.run(partial(work, now=self.clock()))
        finally:
            await self._recount_free()

    async def register(self, phone: str | None) -> tuple[Booking, bool]:
        phone = _require_verified(phone)
        try:
            return await self.db.run(partial(inventory.register, phone=phone, now=self.clock()))
        finally:
            await self._recount_free()

    async def booking_of(self, phone: str | None) -> Booking:
        phone = _require_verified(phone)
        booking = await self.db.run(partial(inventory.booking_for_phone, phone=phone))
        if booking is None:
            raise Refusal("no_booking")
        return booking

    async def booking_by_reference(self, reference: str) -> Booking:
        booking = await self.db.run(partial(inventory.booking_by_reference, reference=reference))
        if booking is None:
            raise Refusal("unknown_reference")
        return booking

    # -- operations --------------------------------------------------------------------------

    async def release(self, centre_id: str, raw_day: str, count: int) -> int:
        day = inventory.parse_day(raw_day)
        if not inventory.releasable(day, today=datetime.fromtimestamp(self.clock(), UTC).date()):
            raise Refusal("release_day_out_of_range")
        try:
            return await self.db.run(
                partial(inventory.release, centre_id=centre_id, day=day, count=count)
            )
        finally:
            await self._recount_free()


def _require_verified(phone: str | None) -> str:
    if phone is None:
        raise Refusal("not_verified")
    return phone


def _slot_number(raw: object) -> int | None:
    """None (the earliest free time) when absent; a positive number otherwise."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        raw = int(raw.strip())
    # bool is an int subclass: `true` is not slot 1.
    if type(raw) is not int or not 1 <= raw <= 1_000_000:
        raise Refusal("invalid_slot")
    return raw
