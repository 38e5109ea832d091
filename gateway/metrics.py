"""The gateway's Prometheus metrics, and who may read them at GET /metrics.

Each app has its own `GatewayMetrics` on its own CollectorRegistry, never prometheus-client's
global default one, so several apps in one test process do not collide on metric names.

Several uvicorn workers are several processes, each counting only what it served. With
PROMETHEUS_MULTIPROC_DIR set (to an empty directory, before the workers start) prometheus-client
keeps every value in a memory-mapped file per process in that directory. Whichever worker
answers /metrics merges all the files: counters and histograms are summed over the workers,
gauges are merged by their multiprocess mode (see `GatewayMetrics`). `waitroom up` makes a
fresh directory for every run and removes it on exit. Without the variable each worker reports
only itself, which is right for one worker only.

Workers that die: uvicorn restarts a dead worker (and all of them on SIGHUP) but, unlike
gunicorn, offers no hook from which to call `multiprocess.mark_process_dead`. Nothing here
needs one. A dead worker's files stay, so what it counted stays in the sums at its final
values: counters never go down and lose nothing. Its replacement has a new pid, so new files
that start at zero: nothing is counted twice. (Should the OS hand out the dead worker's pid
again, the new worker opens the same file and counts on from its values: still monotonic.)
The gauges use "mostrecent", so a dead worker's last values are out-voted by the next tick of
any live one. The price is a few kilobytes of files per restart, until the directory goes.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from queue_core.snapshot import Snapshot

from .client_ip import Network, parse_networks

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ALLOW_ENV = "WAITROOM_METRICS_ALLOW"
DEFAULT_ALLOW = "127.0.0.1/32,::1/128"
# The room label of proxied paths outside every room; room names start with [a-z0-9].
NO_ROOM = "_unprotected"
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
BACKEND_ERROR_CODES = ("502", "504")
REDIS_OPS = ("tick", "ensure_room", "join", "claim", "where", "holder", "configure", "sessions")
REFUSAL_REASONS = {
    "ticket": ("invalid", "tampered", "wrong_room"),
    # "revoked": signed with an epoch ops have rotated; "sessions": a copied pass, in more
    # browsers than the room allows.
    "pass": ("invalid", "tampered", "expired", "wrong_room", "revoked", "sessions"),
}
# Joins turned away: too many from one address or subnet ("limited"), no valid proof of work
# ("challenge"), a proof already spent ("replayed").
JOIN_REFUSALS = ("limited", "challenge", "replayed")
# The booking site is the slow part: up to the proxy's 60 s read timeout.
PROXY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

T = TypeVar("T")
M = TypeVar("M", bound=MetricWrapperBase)
# Told of one forwarded request: status sent, seconds until the backend's headers (or the
# failure), and whether the gateway answered itself because the backend failed (502/504).
ForwardObserver = Callable[[int, float, bool], None]


class _Family(Generic[M]):
    """A labelled metric and its children in a plain dict: `labels()` validates and takes a
    lock on every call, a dict lookup does not."""

    def __init__(self, metric: M, preset: Iterable[tuple[str, ...]] = ()) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}
        for labels in preset:  # present at 0 from the start, so rate() sees the first event
            self.child(*labels)

    def child(self, *labels: str) -> M:
        found = self._children.get(labels)
        if found is None:
            found = self._children[labels] = self.metric.labels(*labels)
        return found


class GatewayMetrics:
    """Every metric the gateway exports. Methods are cheap enough for any request: a dict
    lookup and an in-memory (or memory-mapped) increment, no I/O, no contended lock."""

    def __init__(self, rooms: Iterable[str] = (), registry: CollectorRegistry | None = None):
        rooms = list(rooms)
        self.multiprocess_dir = _multiprocess_dir()
        self.registry = registry or CollectorRegistry()
        r = self.registry

        def room_gauge(name: str, doc: str) -> _Family[Gauge]:
            # Every worker reports the same room-wide figure from its latest tick, so summing
            # the workers ("sum", "all" per pid) would multiply it by their number.
            # "mostrecent" takes the value written last by any worker: the freshest tick's.
            # "max" or "livemax" would do while workers live, but a dead worker's file keeps
            # its last value, and without mark_process_dead (uvicorn has no hook for it) "max"
            # would hold a line length long after the line got shorter. A dead worker's
            # value is simply older than the next tick of a live one.
            return _Family(
                Gauge(name, doc, ["room"], registry=r, multiprocess_mode="mostrecent"),
                ((room,) for room in rooms),
            )

        self._waiting = room_gauge("waitroom_line_waiting", "People waiting in the line")
        self._prequeue = room_gauge(
            "waitroom_prequeue_waiting", "People waiting for a scheduled opening to draw places"
        )
        self._active = room_gauge(
            "waitroom_admitted_active", "Admitted visitors holding a valid pass"
        )
        self._rate = room_gauge(
            "waitroom_admission_rate_per_minute", "The admission rate set for the room"
        )
        self._paused = room_gauge("waitroom_room_paused", "1 while ops have paused the room")
        self._closed = room_gauge("waitroom_room_closed", "1 while the room takes nobody new")
        # Room-wide running totals as Redis reports them. Gauges, not counters: a counter is
        # summed over the workers, and these are the same total seen by each.
        self._admitted = room_gauge(
            "waitroom_room_admitted", "Admitted since the room began (running total from Redis)"
        )
        self._abandoned = room_gauge(
            "waitroom_room_abandoned",
            "Skipped for not checking within the grace period (running total from Redis)",
        )
        self._no_shows = room_gauge(
            "waitroom_room_no_shows",
            "Admitted but never collected the pass (running total from Redis)",
        )
        self._processed = room_gauge(
            "waitroom_room_processed",
            "Places processed at the head: admitted or skipped (running total from Redis)",
        )

        self._arrivals = _Family(
            Counter("waitroom_arrivals", "Joins: places given (and rejoins)", ["room"], registry=r),
            ((room,) for room in rooms),
        )
        self._issued = _Family(
            Counter(
                "waitroom_tokens_issued",
                "Credentials handed out, by kind (ticket, pass)",
                ["room", "kind"],
                registry=r,
            ),
            ((room, kind) for room in rooms for kind in REFUSAL_REASONS),
        )
        self._refused = _Family(
            Counter(
                "waitroom_tokens_refused",
                "Credentials refused, by kind and reason",
                ["room", "kind", "reason"],
                registry=r,
            ),
            (
                (room, kind, reason)
                for room in rooms
                for kind, reasons in REFUSAL_REASONS.items()
                for reason in reasons
            ),
        )
        self._joins_refused = _Family(
            Counter(
                "waitroom_joins_refused",
                "Joins turned away before any place was given, by reason",
                ["room", "reason"],
                registry=r,
            ),
            ((room, reason) for room in rooms for reason in JOIN_REFUSALS),
        )
        proxied_rooms = [*rooms, NO_ROOM]
        self._proxied = _Family(
            Histogram(
                "waitroom_proxied_request_duration_seconds",
                "Proxied requests: seconds until the backend's response headers (or the "
                "failure), by status class",
                ["room", "status_class"],
                registry=r,
                buckets=PROXY_BUCKETS,
            ),
            ((room, cls) for room in proxied_rooms for cls in STATUS_CLASSES),
        )
        self._backend_errors = _Family(
            Counter(
                "waitroom_backend_errors",
                "Proxied requests the backend failed: 502 unreachable, 504 too slow",
                ["room", "code"],
                registry=r,
            ),
            ((room, code) for room in proxied_rooms for code in BACKEND_ERROR_CODES),
        )
        self._redis_seconds = _Family(
            Histogram(
                "waitroom_redis_duration_seconds",
                "Redis calls by operation, failed ones included",
                ["op"],
                registry=r,
                buckets=REDIS_BUCKETS,
            ),
            ((op,) for op in REDIS_OPS),
        )
        self._redis_errors = _Family(
            Counter("waitroom_redis_errors", "Failed Redis calls by operation", ["op"], registry=r),
            ((op,) for op in REDIS_OPS),
        )
        self._failed_open = _Family(
            Counter(
                "waitroom_failed_open",
                "Visitors let through without the line because Redis could not be reached "
                "(rooms with fail_open)",
                ["room"],
                registry=r,
            ),
            ((room,) for room in rooms),
        )
        self._observers: dict[str, ForwardObserver] = {}

        if self.multiprocess_dir is None:
            self._exposition = self.registry
        else:
            self._exposition = CollectorRegistry()
            MultiProcessCollector(self._exposition, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def render(self) -> bytes:
        """The text exposition: this process's metrics, or every worker's in multiprocess mode."""
        return generate_latest(self._exposition)

    # -- the line, from each tick ----------------------------------------------------------

    def snapshot(self, snap: Snapshot) -> None:
        room = snap.room
        self._waiting.child(room).set(snap.waiting)
        self._prequeue.child(room).set(snap.prequeue)
        self._active.child(room).set(snap.active)
        self._rate.child(room).set(snap.rate_per_minute)
        self._paused.child(room).set(int(snap.paused))
        self._closed.child(room).set(int(snap.closed))
        self._admitted.child(room).set(snap.admitted_total)
        self._abandoned.child(room).set(snap.abandoned_total)
        self._no_shows.child(room).set(snap.no_show_total)
        self._processed.child(room).set(snap.processed)

    # -- visitors --------------------------------------------------------------------------

    def arrival(self, room: str) -> None:
        self._arrivals.child(room).inc()

    def token_issued(self, room: str, kind: str) -> None:
        self._issued.child(room, kind).inc()

    def failed_open(self, room: str) -> None:
        self._failed_open.child(room).inc()

    def token_refused(self, room: str, kind: str, reason: str) -> None:
        self._refused.child(room, kind, reason).inc()

    def join_refused(self, room: str, reason: str) -> None:
        self._joins_refused.child(room, reason).inc()

    def forwarded(self, room: str) -> ForwardObserver:
        """The proxy's observer for one room (NO_ROOM outside every room)."""
        known = self._observers.get(room)
        if known is not None:
            return known

        def observe(status: int, seconds: float, backend_error: bool) -> None:
            self._proxied.child(room, f"{status // 100}xx").observe(seconds)
            if backend_error:
                self._backend_errors.child(room, str(status)).inc()

        self._observers[room] = observe
        return observe

    # -- Redis -----------------------------------------------------------------------------

    async def redis(self, op: str, call: Awaitable[T]) -> T:
        """Await one store call, timing it and counting its failure under `op`."""
        started = time.perf_counter()
        try:
            result = await call
        except RedisError:
            self._redis_errors.child(op).inc()
            self._redis_seconds.child(op).observe(time.perf_counter() - started)
            raise
        self._redis_seconds.child(op).observe(time.perf_counter() - started)
        return result


def _multiprocess_dir() -> str | None:
    """The directory to merge at scrape time, or None for a single process.

    prometheus-client decides once, when first imported, whether values go to files; a
    variable set (or removed) after that would have us merge files nobody writes."""
    path = os.environ.get(MULTIPROC_ENV) or None
    writes_files = bool(getattr(values.ValueClass, "_multiprocess", False))
    if writes_files != (path is not None):
        raise RuntimeError(
            f"{MULTIPROC_ENV} must be set before prometheus_client is first imported, "
            "and not changed afterwards"
        )
    if path is not None and not os.path.isdir(path):
        raise RuntimeError(f"{MULTIPROC_ENV}={path} is not a directory")
    return path


# -- who may read /metrics --------------------------------------------------------------------

# Headers a request picks up on its way through a proxy.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for")


class AllowList:
    """Addresses allowed to scrape /metrics.

    The metrics tell anyone how long the line is, how the backend is coping and which
    credentials are being refused, and merging every worker's files makes a scrape dearer
    than a status check: not for the public. Everyone else gets a 404, the same as a path
    that does not exist, rather than a 403 that would confirm there is something here.

    A scrape comes straight from Prometheus, never through a proxy, so a request bearing
    forwarding headers is refused whatever its address. That stops a client that sends
    `X-Forwarded-For: 127.0.0.1` to a uvicorn trusting it (--forwarded-allow-ips='*'). A TLS
    terminator on the same host that passes requests on *without* X-Forwarded-For makes the
    public look like 127.0.0.1: block /metrics there, or set this list to addresses it never
    connects from.
    """

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    @classmethod
    def parse(cls, spec: str) -> AllowList:
        """Comma-separated CIDRs ("10.0.0.0/8, ::1/128"); empty allows nobody."""
        return cls(parse_networks(spec, ALLOW_ENV))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AllowList:
        env = os.environ if environ is None else environ
        return cls.parse(env.get(ALLOW_ENV, DEFAULT_ALLOW))

    def admits(self, host: str | None, headers: Mapping[str, str]) -> bool:
        if host is None or any(name in headers for name in FORWARDING_HEADERS):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a unix socket path, or a test client's made-up name
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
        return any(address in network for network in self.networks)


class MetricsEndpoint:
    """GET /metrics. Routed ahead of the proxy for every method, so it is never proxied."""

    def __init__(self, metrics: GatewayMetrics, allow: AllowList) -> None:
        self.metrics = metrics
        self.allow = allow

    async def serve(self, request: Request) -> Response:
        host = request.client.host if request.client is not None else None
        if not self.allow.admits(host, request.headers):
            return PlainTextResponse("Not Found", status_code=404)
        if request.method not in {"GET", "HEAD"}:
            return PlainTextResponse(
                "Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"}
            )
        # Reading every worker's files is blocking I/O: keep it off the event loop.
        body = await run_in_threadpool(self.metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
