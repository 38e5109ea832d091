"""How many browsers an admission pass opens: a copied pass gets no further than the limit.

Each browser gets a random session id with its pass (the `wr_session_<room>` cookie). Redis
keeps, per pass id, the set of sessions that used it (session.lua); the room's first
`sessions_per_pass` sessions are let in, any other is refused. Every pass collected for one
admission has the same id (`pass_id_for`), so a copied ticket is counted with its pass.

The set only grows while its pass lives, and once full it never changes, which makes both
answers safe to remember: this worker asks Redis once per (pass, session), and once Redis
says a pass is full (and names its sessions) it answers any session of that pass itself. A
request from a known browser costs a dict lookup.

A browser that copies every cookie, session included, is the same browser as far as any
cookie can tell; what this bounds is the pass handed around on its own.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import TypeVar

from redis.exceptions import RedisError

from queue_core.store import LineStore
from queue_core.tokens import Pass

from .metrics import GatewayMetrics

log = logging.getLogger("waitroom.gateway")
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")
MAX_REMEMBERED = 100_000  # (pass, session) pairs per worker; the oldest are forgotten first
V = TypeVar("V")


def session_cookie(room: str) -> str:
    return f"wr_session_{room}"


def new_session_id() -> str:
    return secrets.token_urlsafe(12)


def parse_session(value: str | None) -> str | None:
    """The session id in a cookie value, or None if it is missing or not one of ours."""
    if value and len(value) == 16 and SESSION_ID.match(value):
        return value
    return None


class PassSessions:
    def __init__(
        self, store: LineStore, metrics: GatewayMetrics, max_remembered: int = MAX_REMEMBERED
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.max_remembered = max_remembered
        # (room, pass id, session) -> the pass's expiry
        self._known: dict[tuple[str, ...], int] = {}
        # (room, pass id) -> the limit it reached and the sessions it holds: that is all of
        # them until it expires, unless ops raise the limit
        self._full: dict[tuple[str, ...], tuple[int, frozenset[str]]] = {}

    def remembered(self, room: str, admission: Pass, session: str, most: int) -> bool | None:
        """The answer from this worker's memory, or None if only Redis knows."""
        if most <= 0:
            return True
        pair = (room, admission.pass_id, session)
        if pair in self._known:
            return True
        full = self._full.get((room, admission.pass_id))
        if full is None or full[0] < most:
            return None
        if session not in full[1]:
            return False
        self.note_known(room, admission, session)
        return True

    def note_known(self, room: str, admission: Pass, session: str) -> None:
        """`session` may use `admission`: ask Redis no more."""
        self._remember(self._known, (room, admission.pass_id, session), admission.expires_at)

    async def admits(self, room: str, admission: Pass, session: str, most: int) -> bool:
        """May `session` use `admission`, with at most `most` sessions per pass (0: any)?"""
        known = self.remembered(room, admission, session, most)
        if known is not None:
            return known
        try:
            holders = await self.metrics.redis(
                "sessions",
                self.store.open_session(
                    room, admission.pass_id, session, most, admission.expires_at
                ),
            )
        except RedisError as exc:
            # A brake, not a gate: admitted visitors keep reaching the site while Redis is
            # away (the pass alone proves admission); the count resumes when it is back.
            log.warning("session count for a pass in %s skipped: %s", room, exc)
            return True
        if holders is None:
            self.note_known(room, admission, session)
            return True
        self._remember(self._full, (room, admission.pass_id), (most, holders))
        return False

    def _remember(self, memo: dict[tuple[str, ...], V], key: tuple[str, ...], value: V) -> None:
        memo[key] = value
        if len(memo) > self.max_remembered:
            # Dicts keep insertion order: the oldest entry goes. Forgetting only costs a
            # Redis call the next time that browser comes, never a wrong answer.
            del memo[next(iter(memo))]
