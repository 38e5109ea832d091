"""One gateway worker's view of a room's line, refreshed by each tick.

Status checks are answered from here, without a Redis round trip: the head only moves
forward and holes are only added, so a position computed from any recent snapshot is exact
as of that snapshot and never goes up from one snapshot to the next.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass

from .estimate import Estimate, Outflow, estimate_wait
from .snapshot import Snapshot


class Standing(enum.Enum):
    WAITING = "waiting"
    TURN = "turn"  # the head has passed this place: admitted, unless they were skipped
    GONE = "gone"  # swept out for not checking within the grace period


@dataclass(frozen=True, slots=True)
class Location:
    standing: Standing
    ahead: int = 0


class LineView:
    """One lane of a room (the main lane by default) as this worker sees it."""

    def __init__(self, room: str, lane: str = "") -> None:
        self.room = room
        self.lane = lane
        self.snapshot: Snapshot | None = None
        self.outflow = Outflow()
        self.holes_next = 0  # absolute index of the next hole to ask for
        self._holes: list[int] = []  # sorted places swept out, all above the head

    def apply(self, snap: Snapshot) -> None:
        current = self.snapshot
        if current is not None and snap.now_us < current.now_us:
            return  # a slow reply overtaken by a newer one
        lane = snap.lane(self.lane)
        if current is not None and lane.head < current.lane(self.lane).head:
            # Only a reset room moves the head back; start the view afresh.
            self._holes.clear()
        self.snapshot = snap
        holes = self._holes
        for place in lane.holes:
            if place > lane.head:
                # A hole counted twice would make a position rise once the head passes it.
                i = bisect.bisect_left(holes, place)
                if i == len(holes) or holes[i] != place:
                    holes.insert(i, place)
        del holes[: bisect.bisect_right(holes, lane.head)]
        self.holes_next = lane.holes_from + len(lane.holes)
        rate = 0.0 if snap.paused else snap.rate_per_minute
        self.outflow.observe(snap.now_us, lane.processed, lane.waiting, rate)

    def estimate(self, ahead: int, share: float = 1.0) -> Estimate | None:
        """The wait of someone with `ahead` people in front, in this lane; None if unknown.
        `share` is this lane's part of the room's rate, assumed until its outflow is measured."""
        snap = self.snapshot
        if snap is None or snap.paused:
            return None
        out = self.outflow
        return estimate_wait(
            ahead, out.per_second(), snap.rate_per_minute * share, out.band(), out.settled()
        )

    def locate(self, place: int) -> Location:
        snap = self.snapshot
        if snap is None:
            raise LookupError("no snapshot yet")
        head = snap.lane(self.lane).head
        if place <= head:
            return Location(Standing.TURN)
        holes = self._holes
        below = bisect.bisect_left(holes, place)
        if below < len(holes) and holes[below] == place:
            return Location(Standing.GONE)
        return Location(Standing.WAITING, place - head - 1 - below)
