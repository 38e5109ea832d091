"""The finite stock of appointments and the bookings that use it, in SQLite.

Every function takes an open connection and runs synchronously; ``database.Database.run``
calls them in a worker thread. A slot is one appointment: a centre, a day and a number, shown
as a time of day. Booking a slot is one conditional UPDATE (``... WHERE reference IS NULL``)
inside a write transaction, so of any number of people confirming the same slot at once
exactly one gets it; the UNIQUE constraints in the schema back that up.

Queries for free slots name their index (``INDEXED BY free_slots``): without statistics the
planner may otherwise walk all 44,000 free slots of a Czech-sized inventory per booking.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta

from booking_backend.database import write_transaction
from booking_backend.errors import Refusal
from booking_backend.settings import Centre

OPENING_MINUTE = 8 * 60  # centres open at 08:00 ...
OPEN_MINUTES = 10 * 60  # ... for ten hours
# No 0/O or 1/I: references are read out over the phone and typed from paper.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
MAX_RELEASE = 10_000
# A delivery is for a day people can still come on, and within a year: 1999-01-01 or
# 9999-12-31 is a typo that would otherwise add unbookable or absurd days to the list.
MAX_RELEASE_DAYS_AHEAD = 366


@dataclass(frozen=True)
class Slot:
    number: int
    time: str  # "HH:MM"; with more slots than minutes, lanes share a time


@dataclass(frozen=True)
class DayAvailability:
    centre: Centre
    day: date
    free: int


@dataclass(frozen=True)
class Booking:
    reference: str
    phone: str
    centre: Centre | None  # None for a registration without a date
    day: date | None
    slot: Slot | None
    created_at: float

    @property
    def has_date(self) -> bool:
        return self.slot is not None


@dataclass(frozen=True)
class InventoryStats:
    slots_total: int
    slots_left: int
    bookings: int  # with a date
    registrations: int  # without a date


def slot_time(index: int, count: int) -> str:
    """Time of the index-th of ``count`` appointments spread evenly over opening hours."""
    if not 0 <= index < count:
        raise ValueError("index must be in [0, count)")
    minute = OPENING_MINUTE + index * OPEN_MINUTES // count
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_day(raw: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise Refusal("invalid_day") from None


def new_reference() -> str:
    letters = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def seed(
    conn: sqlite3.Connection,
    centres: tuple[Centre, ...],
    first_day: date,
    days: int,
    slots_per_day: int,
) -> bool:
    """Create the inventory of a new database; an existing one is left as it is."""
    with write_transaction(conn):
        if conn.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone():
            _rebuild_day_stock(conn)
            return False
        conn.executemany(
            "INSERT INTO centres (id, name, position) VALUES (?, ?, ?)",
            [(c.id, c.name, i) for i, c in enumerate(centres)],
        )
        times = [slot_time(i, slots_per_day) for i in range(slots_per_day)]
        conn.executemany(
            "INSERT INTO slots (centre, day, number, time) VALUES (?, ?, ?, ?)",
            (
                (centre.id, (first_day + timedelta(days=d)).isoformat(), i + 1, times[i])
                for centre in centres
                for d in range(days)
                for i in range(slots_per_day)
            ),
        )
        _rebuild_day_stock(conn)
        conn.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?)", (first_day.isoformat(),))
    return True


def _rebuild_day_stock(conn: sqlite3.Connection) -> None:
    """Recount day_stock from the slots, which are the truth. Done at every start (50 ms for
    44,800 slots), so a file from an older version, or edited by hand, is counted right."""
    conn.execute("DELETE FROM day_stock")
    conn.execute(
        "INSERT INTO day_stock (centre, day, free, total) "
        "SELECT centre, day, SUM(reference IS NULL), COUNT(*) FROM slots GROUP BY centre, day"
    )


def list_centres(conn: sqlite3.Connection) -> list[Centre]:
    rows = conn.execute("SELECT id, name FROM centres ORDER BY position").fetchall()
    return [Centre(row["id"], row["name"]) for row in rows]


def availability(conn: sqlite3.Connection) -> list[DayAvailability]:
    """Free slots per centre and day, including days that are fully booked."""
    centres = {c.id: c for c in list_centres(conn)}
    rows = conn.execute(
        "SELECT d.centre, d.day, d.free FROM day_stock d "
        "JOIN centres c ON c.id = d.centre ORDER BY c.position, d.day"
    ).fetchall()
    return [
        DayAvailability(centres[row["centre"]], date.fromisoformat(row["day"]), row["free"])
        for row in rows
    ]


def free_slots(conn: sqlite3.Connection, centre_id: str, day: date) -> tuple[Centre, list[Slot]]:
    centre = _require_day(conn, centre_id, day)
    rows = conn.execute(
        "SELECT number, time FROM slots INDEXED BY free_slots "
        "WHERE centre = ? AND day = ? AND reference IS NULL ORDER BY number",
        (centre_id, day.isoformat()),
    ).fetchall()
    return centre, [Slot(row["number"], row["time"]) for row in rows]


def count_free(conn: sqlite3.Connection) -> int:
    free: int = conn.execute("SELECT COALESCE(SUM(free), 0) FROM day_stock").fetchone()[0]
    return free


def stats(conn: sqlite3.Connection) -> InventoryStats:
    total, free = conn.execute(
        "SELECT COALESCE(SUM(total), 0), COALESCE(SUM(free), 0) FROM day_stock"
    ).fetchone()
    bookings, dated = conn.execute("SELECT COUNT(*), COUNT(number) FROM bookings").fetchone()
    return InventoryStats(total, free, dated, bookings - dated)


def book(
    conn: sqlite3.Connection,
    phone: str,
    centre_id: str,
    day: date,
    number: int | None,
    now: float,
) -> tuple[Booking, bool]:
    """Book a slot for a verified phone: (booking, True), or (their existing booking, False).

    ``number=None`` takes the earliest free slot of that centre and day. Someone registered
    without a date keeps their reference and now gets the slot.
    """
    with write_transaction(conn):
        existing = _booking_row(conn, "b.phone", phone)
        if existing is not None and existing["number"] is not None:
            return _booking(existing), False
        _require_day(conn, centre_id, day)
        if number is None:
            row = conn.execute(
                "SELECT number FROM slots INDEXED BY free_slots "
                "WHERE centre = ? AND day = ? AND reference IS NULL ORDER BY number LIMIT 1",
                (centre_id, day.isoformat()),
            ).fetchone()
            if row is None:
                raise _no_free_slot(conn, centre_id, day)
            number = int(row["number"])
        elif not conn.execute(
            "SELECT 1 FROM slots WHERE centre = ? AND day = ? AND number = ?",
            (centre_id, day.isoformat(), number),
        ).fetchone():
            raise Refusal("unknown_slot")
        reference = existing["reference"] if existing is not None else _unused_reference(conn)
        claimed = conn.execute(
            "UPDATE slots SET reference = ? "
            "WHERE centre = ? AND day = ? AND number = ? AND reference IS NULL",
            (reference, centre_id, day.isoformat(), number),
        ).rowcount
        if claimed != 1:
            raise _no_free_slot(conn, centre_id, day, wanted_specific=True)
        conn.execute(
            "UPDATE day_stock SET free = free - 1 WHERE centre = ? AND day = ?",
            (centre_id, day.isoformat()),
        )
        if existing is not None:
            conn.execute(
                "UPDATE bookings SET centre = ?, day = ?, number = ?, booked_at = ? "
                "WHERE reference = ?",
                (centre_id, day.isoformat(), number, now, reference),
            )
        else:
            conn.execute(
                "INSERT INTO bookings (reference, phone, centre, day, number, created_at, "
                "booked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (reference, phone, centre_id, day.isoformat(), number, now, now),
            )
        booked = _booking_row(conn, "b.reference", reference)
    assert booked is not None
    return _booking(booked), True


def register(conn: sqlite3.Connection, phone: str, now: float) -> tuple[Booking, bool]:
    """Register without a date, once nothing is left to book; one record per phone."""
    with write_transaction(conn):
        existing = _booking_row(conn, "b.phone", phone)
        if existing is not None:
            return _booking(existing), False
        if count_free(conn) > 0:
            raise Refusal("slots_available")
        reference = _unused_reference(conn)
        conn.execute(
            "INSERT INTO bookings (reference, phone, created_at) VALUES (?, ?, ?)",
            (reference, phone, now),
        )
        registered = _booking_row(conn, "b.reference", reference)
    assert registered is not None
    return _booking(registered), True


def booking_for_phone(conn: sqlite3.Connection, phone: str) -> Booking | None:
    row = _booking_row(conn, "b.phone", phone)
    return _booking(row) if row is not None else None


def booking_by_reference(conn: sqlite3.Connection, reference: str) -> Booking | None:
    row = _booking_row(conn, "b.reference", reference.strip().upper())
    return _booking(row) if row is not None else None


def releasable(day: date, *, today: date) -> bool:
    """Whether ops may release slots on ``day``: from ``today`` to a year ahead."""
    return today <= day <= today + timedelta(days=MAX_RELEASE_DAYS_AHEAD)


def release(conn: sqlite3.Connection, centre_id: str, day: date, count: int) -> int:
    """Add ``count`` slots (a new vaccine delivery) to a centre's day; returns its free slots.

    The new slots are spread over the opening hours, like an extra vaccination lane.
    """
    if not 1 <= count <= MAX_RELEASE:
        raise Refusal("invalid_release")
    with write_transaction(conn):
        if not conn.execute("SELECT 1 FROM centres WHERE id = ?", (centre_id,)).fetchone():
            raise Refusal("unknown_centre")
        highest = conn.execute(
            "SELECT COALESCE(MAX(number), 0) FROM slots WHERE centre = ? AND day = ?",
            (centre_id, day.isoformat()),
        ).fetchone()[0]
        conn.executemany(
            "INSERT INTO slots (centre, day, number, time) VALUES (?, ?, ?, ?)",
            (
                (centre_id, day.isoformat(), highest + i + 1, slot_time(i, count))
                for i in range(count)
            ),
        )
        free: int = conn.execute(
            "INSERT INTO day_stock (centre, day, free, total) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (centre, day) DO UPDATE "
            "SET free = free + excluded.free, total = total + excluded.total RETURNING free",
            (centre_id, day.isoformat(), count, count),
        ).fetchall()[0][0]  # fetchall: a RETURNING statement must run to completion
    return free


def _require_day(conn: sqlite3.Connection, centre_id: str, day: date) -> Centre:
    row = conn.execute("SELECT id, name FROM centres WHERE id = ?", (centre_id,)).fetchone()
    if row is None:
        raise Refusal("unknown_centre")
    if not conn.execute(
        "SELECT 1 FROM day_stock WHERE centre = ? AND day = ?", (centre_id, day.isoformat())
    ).fetchone():
        raise Refusal("unknown_day")
    return Centre(row["id"], row["name"])


def _no_free_slot(
    conn: sqlite3.Connection, centre_id: str, day: date, *, wanted_specific: bool = False
) -> Refusal:
    """The most useful of sold_out, day_full and slot_taken, in that order."""
    if count_free(conn) == 0:
        return Refusal("sold_out")
    day_free = conn.execute(
        "SELECT free FROM day_stock WHERE centre = ? AND day = ?", (centre_id, day.isoformat())
    ).fetchone()
    if day_free is None or day_free["free"] == 0:
        return Refusal("day_full")
    return Refusal("slot_taken" if wanted_specific else "day_full")


def _unused_reference(conn: sqlite3.Connection) -> str:
    while True:
        reference = new_reference()
        if not conn.execute("SELECT 1 FROM bookings WHERE reference = ?", (reference,)).fetchone():
            return reference


_BOOKING_QUERY = """
SELECT b.reference, b.phone, b.centre, c.name AS centre_name, b.day, b.number, s.time,
       b.created_at
FROM bookings b
LEFT JOIN centres c ON c.id = b.centre
LEFT JOIN slots s ON s.centre = b.centre AND s.day = b.day AND s.number = b.number
WHERE {column} = ?
"""


def _booking_row(conn: sqlite3.Connection, column: str, value: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        _BOOKING_QUERY.format(column=column), (value,)
    ).fetchone()
    return row


def _booking(row: sqlite3.Row) -> Booking:
    dated = row["number"] is not None
    return Booking(
        reference=row["reference"],
        phone=row["phone"],
        centre=Centre(row["centre"], row["centre_name"]) if dated else None,
        day=date.fromisoformat(row["day"]) if dated else None,
        slot=Slot(row["number"], row["time"]) if dated else None,
        created_at=row["created_at"],
    )
