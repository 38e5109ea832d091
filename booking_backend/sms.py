"""A simulated SMS gateway with a fixed throughput, like the one that held up 15 January 2021.

The operator sends at most ``per_second`` messages a second; anything beyond waits in one
FIFO queue. There is no sending loop: each message's delivery time is computed when it is
queued, from the time the one before it goes out:

    deliver_at = max(now, previous deliver_at) + 1 / per_second

Example at 20 per second: three PINs requested together at 08:00:00.000 arrive at .050,
.100 and .150. A hundred requested together: the last arrives five seconds later. When ops
raise the rate (the Czech operators went from 20 to 200 a second at 08:35), the messages
still queued are re-spaced at the new rate from that moment, so the backlog drains sooner.

Everything takes ``now`` as an argument, so the model is deterministic and tests use plain
numbers for time. It is in memory: a restart loses the queue, as a real operator would not,
but a PIN can simply be requested again. Being in memory is also why the site runs as one
process (``single_process``). The simulation inbox is bounded so that a long load test
cannot grow it without end: the last ``keep_per_phone`` messages of each number, for the
``max_phones`` numbers delivered to most recently.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

# Delivered messages the simulation inbox remembers: a visitor reads the latest PIN, so ten
# per number is plenty; and 100,000 numbers is over five minutes (a PIN's life) of
# deliveries even at 300 a second, well past the 200 the Czech operators reached.
KEEP_PER_PHONE = 10
MAX_INBOX_PHONES = 100_000


def next_delivery(now: float, previous_delivery: float, per_second: float) -> float:
    """When a message queued at ``now`` is delivered, given the one before it.

    Computed in whole microseconds, with the interval rounded up: summing 0.05 twenty times
    in floating point gives 1.0000000000000002, which would let a 21st message into a second.
    """
    if not per_second > 0:
        raise ValueError("per_second must be > 0")
    interval_us = math.ceil(1_000_000 / per_second)
    start_us = round(now * 1_000_000)
    if math.isfinite(previous_delivery):
        start_us = max(start_us, round(previous_delivery * 1_000_000))
    return (start_us + interval_us) / 1_000_000


@dataclass(slots=True)  # the inbox may hold a million of these
class Sms:
    phone: str
    text: str
    queued_at: float
    deliver_at: float  # may move earlier while queued, if ops raise the rate


@dataclass(frozen=True)
class Backlog:
    per_second: float
    queued: int
    oldest_queued_age_s: float  # 0 when nothing is queued
    delay_s: float  # how long a message sent now would take to arrive
    delivered: int


class SmsGateway:
    def __init__(
        self,
        per_second: float,
        *,
        keep_per_phone: int = KEEP_PER_PHONE,
        max_phones: int = MAX_INBOX_PHONES,
    ) -> None:
        if not (math.isfinite(per_second) and per_second > 0):
            raise ValueError("per_second must be a finite number > 0")
        if keep_per_phone < 1 or max_phones < 1:
            raise ValueError("the inbox must keep at least one message of one phone")
        self._per_second = per_second
        self._queue: deque[Sms] = deque()
        self._last_delivery = -math.inf  # of the last message queued
        self._last_delivered = -math.inf  # of the last message that has arrived
        # Least recently delivered to first, so the number to forget is at the front.
        self._inboxes: OrderedDict[str, deque[Sms]] = OrderedDict()
        self._keep_per_phone = keep_per_phone
        self._max_phones = max_phones
        self._latest_queued: dict[str, Sms] = {}
        self._delivered = 0

    @property
    def per_second(self) -> float:
        return self._per_second

    def send(self, phone: str, text: str, now: float) -> Sms:
        self._settle(now)
        message = Sms(phone, text, now, next_delivery(now, self._last_delivery, self._per_second))
        self._last_delivery = message.deliver_at
        self._queue.append(message)
        self._latest_queued[phone] = message
        return message

    def set_rate(self, per_second: float, now: float) -> None:
        """Change the throughput from ``now`` on; queued messages are re-spaced."""
        if not (math.isfinite(per_second) and per_second > 0):
            raise ValueError("per_second must be a finite number > 0")
        self._settle(now)
        self._per_second = per_second
        # Delivered messages are history; the queue is re-spaced from now, or from the last
        # delivery if that is later, so the new rate holds across the change too.
        previous = max(now, self._last_delivered)
        for message in self._queue:
            message.deliver_at = next_delivery(message.queued_at, previous, per_second)
            previous = message.deliver_at
        if self._queue:
            self._last_delivery = previous

    def inbox(self, phone: str, now: float) -> list[Sms]:
        """Messages delivered to ``phone`` by ``now``, oldest first."""
        self._settle(now)
        return list(self._inboxes.get(phone, ()))

    def pending_delivery(self, phone: str, now: float) -> float | None:
        """When the last queued message to ``phone`` arrives; None if none is queued."""
        self._settle(now)
        message = self._latest_queued.get(phone)
        return message.deliver_at if message is not None else None

    def backlog(self, now: float) -> Backlog:
        self._settle(now)
        oldest = now - self._queue[0].queued_at if self._queue else 0.0
        delay = next_delivery(now, self._last_delivery, self._per_second) - now
        return Backlog(self._per_second, len(self._queue), oldest, delay, self._delivered)

    def _settle(self, now: float) -> None:
        while self._queue and self._queue[0].deliver_at <= now:
            message = self._queue.popleft()
            self._file(message)
            self._delivered += 1
            self._last_delivered = message.deliver_at
            if self._latest_queued.get(message.phone) is message:
                del self._latest_queued[message.phone]

    def _file(self, message: Sms) -> None:
        """Put a delivered message in its number's inbox, forgetting the oldest if full."""
        inbox = self._inboxes.get(message.phone)
        if inbox is None:
            inbox = self._inboxes[message.phone] = deque(maxlen=self._keep_per_phone)
            if len(self._inboxes) > self._max_phones:
                self._inboxes.popitem(last=False)
        else:
            self._inboxes.move_to_end(message.phone)
        inbox.append(message)
