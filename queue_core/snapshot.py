"""What a tick tells a gateway about a room, as a plain value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LaneSnapshot:
    head: int  # highest place processed in this lane (admitted, or skipped for not checking)
    seq: int  # highest place handed out in this lane
    waiting: int
    prequeue: int
    processed: int  # this lane's places processed since the room began
    holes_from: int  # absolute index of holes[0] in the lane's hole log
    holes: tuple[int, ...]  # places swept out ahead of the head, new since holes_from


EMPTY_LANE = LaneSnapshot(0, 0, 0, 0, 0, 0, ())


@dataclass(frozen=True, slots=True)
class Snapshot:
    room: str
    now_us: int  # the Redis server's clock when the tick ran
    processed: int  # places processed since the room began, all lanes
    admitted_total: int
    abandoned_total: int
    no_show_total: int
    active: int  # admitted visitors holding a valid pass
    paused: bool
    closed: bool
    rate_per_minute: float
    sold_out: bool
    opens_at_us: int  # a scheduled opening (0: none)
    opened: bool  # the scheduled opening has happened and drawn the pre-queues' order
    banner: str  # JSON {language: text} set by ops, or ""
    lanes: dict[str, LaneSnapshot]  # "" is the main lane
    gen: str = ""  # the room's generation: changes when Redis lost the room and it recovered
    recoveries: int = 0  # times Redis lost this room's data and the line recovered
    recovered_at_us: int = 0
    # Admission passes signed with an older epoch are refused: ops rotate it to revoke them all.
    epoch: int = 0
    challenge_bits: int = 0  # proof of work a new visitor must show before joining; 0: none
    sessions_per_pass: int | None = None  # browsers per admission pass; None: the room's config

    @classmethod
    def from_reply(
        cls, room: str, reply: Sequence[bytes | int | str], lane_names: Sequence[str] = ("",)
    ) -> Snapshot:
        n = [int(v) for v in reply[:8]]
        banner, gen = reply[12], reply[13]
        lanes: dict[str, LaneSnapshot] = {}
        i = 20
        for name in lane_names[: int(reply[19])]:
            head, seq, waiting, pre, processed, holes_from, count = (
                int(v) for v in reply[i : i + 7]
            )
            holes = tuple(int(v) for v in reply[i + 7 : i + 7 + count])
            lanes[name] = LaneSnapshot(head, seq, waiting, pre, processed, holes_from, holes)
            i += 7 + count
        return cls(
            room=room,
            now_us=n[0],
            processed=n[1],
            admitted_total=n[2],
            abandoned_total=n[3],
            no_show_total=n[4],
            active=n[5],
            paused=bool(n[6]),
            closed=bool(n[7]),
            rate_per_minute=float(reply[8]),
            sold_out=bool(int(reply[9])),
            opens_at_us=int(reply[10]),
            opened=bool(int(reply[11])),
            banner=banner.decode() if isinstance(banner, bytes) else str(banner),
            lanes=lanes,
            gen=gen.decode() if isinstance(gen, bytes) else str(gen),
            recoveries=int(reply[14]),
            recovered_at_us=int(reply[15]),
            epoch=int(reply[16]),
            challenge_bits=int(reply[17]),
            sessions_per_pass=None if int(reply[18]) < 0 else int(reply[18]),
        )

    def lane(self, name: str = "") -> LaneSnapshot:
        return self.lanes.get(name, EMPTY_LANE)

    # The main lane's figures, and the room's totals, under the names most callers want.
    @property
    def head(self) -> int:
        return self.lane().head

    @property
    def seq(self) -> int:
        return self.lane().seq

    @property
    def holes(self) -> tuple[int, ...]:
        return self.lane().holes

    @property
    def holes_from(self) -> int:
        return self.lane().holes_from

    @property
    def waiting(self) -> int:
        return sum(lane.waiting for lane in self.lanes.values())

    @property
    def prequeue(self) -> int:
        return sum(lane.prequeue for lane in self.lanes.values())

    @property
    def scheduled(self) -> bool:
        """A future opening is set and has not happened: arrivals go to the pre-queue."""
        return self.opens_at_us > self.now_us and not self.opened


@dataclass(frozen=True, slots=True)
class Sample:
    """The room's counters at one moment, as the tick records them every 10 s."""

    now_us: int
    seq: int  # places handed out so far: arrivals
    processed: int
    admitted_total: int
    abandoned_total: int
    no_show_total: int
    active: int
    waiting: int
    rate_per_minute: float
    arrived_total: int  # admitted visitors who came and collected their pass
    prequeue: int

    @classmethod
    def from_text(cls, text: bytes | str) -> Sample:
        raw = text.decode() if isinstance(text, bytes) else text
        f = raw.split(",")
        n = [int(float(v)) for v in f]
        return cls(
            now_us=n[0],
            seq=n[1],
            processed=n[2],
            admitted_total=n[3],
            abandoned_total=n[4],
            no_show_total=n[5],
            active=n[6],
            waiting=n[7],
            rate_per_minute=float(f[8]),
            arrived_total=n[9],
            prequeue=n[10],
        )
