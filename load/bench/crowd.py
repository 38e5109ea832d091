"""A crowd in line: visitors written straight into Redis, and the tickets they would hold.

Joining a million people through the gateway would take minutes, so the line is seeded in bulk
with `seed.lua`, which writes what `join.lua` writes: the line entry, the heartbeat and the
room's counter. Visitor ids are derived from the place, so a ticket can be minted for any place
without reading Redis back. Tickets are minted with the gateway's own `Credentials` (tens of
microseconds each), so large batches are split over processes.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import multiprocessing
import secrets
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import queue_core.store
from queue_core.store import LineStore
from queue_core.tokens import Credentials, Pass, Ticket

SEED_CHUNK = 10_000  # visitors per script call: milliseconds of Redis time each
SEED_IN_FLIGHT = 4
MINT_CHUNK = 5_000


def visitor_id(room: str, place: int) -> str:
    """12 characters of [A-Za-z0-9_-], like `new_visitor_id()`, fixed by room and place."""
    digest = hashlib.blake2b(f"{room}:{place}".encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()


def seed_source() -> str:
    scripts = Path(queue_core.store.__file__).with_name("scripts")
    common = (scripts / "_common.lua").read_text(encoding="utf-8")
    return common + "\n" + Path(__file__).with_name("seed.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Seeded:
    seq: int  # the highest place handed out in the room
    gen: str  # the room's generation, which every ticket of the room carries


async def seed_line(
    store: LineStore, room: str, count: int, first: int = 1, gen: str = ""
) -> Seeded:
    """Put `count` visitors at places first..first+count-1; a room without a generation yet
    gets `gen` (or a random one)."""
    script = store.redis.register_script(seed_source())
    keys = store.keys(room)
    generation = gen or secrets.token_hex(6)
    in_flight: list[asyncio.Task[Seeded]] = []
    done: list[Seeded] = []

    async def call(start: int, ids: list[str]) -> Seeded:
        args: list[str | int] = [generation, start, *ids]
        seq, gen = await script(keys=[keys.state, keys.line, keys.seen], args=args)
        return Seeded(int(seq), gen.decode() if isinstance(gen, bytes) else str(gen))

    for start in range(first, first + count, SEED_CHUNK):
        ids = [visitor_id(room, p) for p in range(start, min(first + count, start + SEED_CHUNK))]
        # Build the next chunk while Redis runs this one.
        in_flight.append(asyncio.create_task(call(start, ids)))
        if len(in_flight) >= SEED_IN_FLIGHT:
            done.append(await in_flight.pop(0))
    done += [await task for task in in_flight]
    return Seeded(max(s.seq for s in done), done[-1].gen)


def ticket(room: str, place: int, issued_at: int, gen: str) -> Ticket:
    """The ticket the gateway would have given the visitor at `place` when they joined."""
    fields = {f.name for f in dataclasses.fields(Ticket)}
    # The generation is a newer field of tickets: stamped when tickets have it.
    extra = {"gen": gen} if "gen" in fields else {}
    return Ticket(room, place, visitor_id(room, place), issued_at, place - 1, **extra)


def _mint_tickets(
    secret: str, room: str, places: Sequence[int], issued_at: int, gen: str
) -> list[str]:
    credentials = Credentials([secret])
    return [credentials.issue_ticket(ticket(room, p, issued_at, gen)) for p in places]


def _mint_passes(secret: str, room: str, count: int, expires_at: int) -> list[str]:
    """Passes, each with its browser's session id: the gateway counts the browsers a pass is
    used from, and a browser always sends its session back (its first request on each
    worker costs a Redis call, later ones none: the steady state a crowd is in)."""
    credentials = Credentials([secret])
    return [
        credentials.issue_pass(Pass(room, visitor_id(room, -i), expires_at, secrets.token_hex(8)))
        + f"; wr_session_{room}={secrets.token_urlsafe(12)}"
        for i in range(1, count + 1)
    ]


class Mint:
    """Mints credentials in worker processes while the caller gets on with other work."""

    def __init__(self, secret: str, processes: int = 2) -> None:
        self.secret = secret
        self._pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
        self._jobs: dict[Path, list[tuple[str, Future[list[str]]]]] = {}

    def tickets(
        self, room: str, places: Sequence[int], issued_at: int, gen: str, path: Path
    ) -> None:
        """Write `wr_ticket_<room>=<ticket>` lines for `places` (in that order) to `path`."""
        chunks = [places[i : i + MINT_CHUNK] for i in range(0, len(places), MINT_CHUNK)]
        mint = _mint_tickets
        self._jobs[path] = [
            (f"wr_ticket_{room}=", self._pool.submit(mint, self.secret, room, c, issued_at, gen))
            for c in chunks
        ]

    def passes(self, room: str, count: int, expires_at: int, path: Path) -> None:
        job = self._pool.submit(_mint_passes, self.secret, room, count, expires_at)
        self._jobs[path] = [(f"wr_pass_{room}=", job)]

    def finish(self) -> None:
        """Wait for every batch and write the files."""
        try:
            for path, jobs in self._jobs.items():
                with open(path, "w", encoding="ascii") as out:
                    for prefix, future in jobs:
                        out.writelines(f"{prefix}{value}\n" for value in future.result())
        finally:
            self._pool.shutdown()
