"""A lean HTTP/1.1 client: keep-alive asyncio connections shared by every visitor.

The driver's budget is its own CPU per request: holding 140,000 visitors who check every
20-45 s is several thousand requests a second, on the same two cores as the gateway. A
general client (httpx: URL objects, header models, cookie jars, a pool with locks) costs
several hundred microseconds per request; this one writes the request bytes itself and
parses the reply with httptools (the parser uvicorn uses), about 20-30 us a request.

What it does not do, because the replay never needs it: TLS, redirects, chunked request
bodies, pipelining (one request per connection at a time), proxies, cookies (each visitor
keeps its own jar and sends its own `Cookie` header).

A request that waits for a free connection is queued in the pool, not refused: the time it
waited shows up as lateness (`Reply.sent_at` against when it was due), so a pool too small
for the load is measured, never hidden.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any, cast

import httptools

from .transport import Reply

CONNECT_TIMEOUT_S = 10.0


class _Request:
    __slots__ = ("data", "future", "queued_at", "resent")

    def __init__(self, data: bytes, future: asyncio.Future[Reply], queued_at: float) -> None:
        self.data = data
        self.future = future
        self.queued_at = queued_at
        self.resent = False


class _Connection(asyncio.Protocol):
    """One keep-alive connection; httptools calls the `on_*` methods while parsing."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.request: _Request | None = None
        self.sent_at = 0.0
        self.served = 0  # replies read on this connection
        self._answered = False  # bytes of the current reply have arrived
        self._header_name = b""
        self._content_type = b""
        self._retry_after = b""
        self._cookies: list[str] = []
        self._body: list[bytes] = []
        self._status = 0
        self._keep_alive = True

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(f"bad_response:{exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        request, self.request = self.request, None
        if request is not None and self.served and not self._answered and not request.resent:
            # A kept-alive connection the server closed as we reused it (its idle timeout):
            # the request was never read, so it goes out again once, as any client does.
            request.resent = True
            self.pool.lost(self, resend=request)
            return
        self.request = request
        if request is not None:
            self.fail("connection_lost")
        self.pool.lost(self)

    # -- sending -------------------------------------------------------------------------

    def send(self, request: _Request) -> None:
        assert self.transport is not None
        self.request = request
        self._answered = False
        self._status = 0
        self._content_type = self._retry_after = b""
        self._cookies = []
        self._body = []
        self.sent_at = time.monotonic()
        self.transport.write(request.data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def fail(self, error: str) -> None:
        """Answer the request in flight with status 0 (`error` says why) and close."""
        request, self.request = self.request, None
        if request is not None and not request.future.done():
            seconds = time.monotonic() - self.sent_at
            request.future.set_result(Reply(0, seconds, error=error, sent_at=self.sent_at))
        self.close()

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 10 and name.lower() == b"set-cookie":
            self._cookies.append(value.decode("latin-1"))
        elif len(name) == 12 and name.lower() == b"content-type":
            self._content_type = value
        elif len(name) == 11 and name.lower() == b"retry-after":
            self._retry_after = value

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.served += 1
        request, self.request = self.request, None
        if request is None:
            return
        reply = Reply(
            status=self._status,
            seconds=time.monotonic() - self.sent_at,
            body=b"".join(self._body),
            content_type=self._content_type.decode("latin-1"),
            retry_after=_seconds(self._retry_after),
            set_cookies=self._cookies,
            sent_at=self.sent_at,
        )
        if not request.future.done():
            request.future.set_result(reply)
        if self._keep_alive:
            self.pool.release(self)
        else:
            self.close()


class Pool:
    """Up to `size` keep-alive connections to one host:port, and a queue of requests."""

    def __init__(self, host: str, port: int, size: int, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.size = size
        self.timeout_s = timeout_s
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.opening = 0
        self.queue: deque[_Request] = deque()
        self.connects = 0  # connections opened over the pool's life
        self._sweeper: asyncio.TimerHandle | None = None
        self._connecting: set[asyncio.Task[None]] = set()

    @property
    def spare(self) -> int:
        """Idle connections kept ready: a burst must not wait for a busy server to accept."""
        return min(self.size // 4, 8 + len(self.busy) // 8)

    @property
    def open(self) -> int:
        return len(self.idle) + len(self.busy) + self.opening

    def submit(self, data: bytes) -> asyncio.Future[Reply]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        request = _Request(data, future, time.monotonic())
        if self.idle:
            self._start(self.idle.pop(), request)
            if len(self.idle) + self.opening < self.spare and self.open < self.size:
                self._open()  # ahead of need: a busy server is slow to accept
            return future
        self.queue.append(request)
        if self.open < self.size:
            self._open()
        return future

    def oldest_queued(self) -> float | None:
        """When the request that has waited longest for a connection was queued."""
        return self.queue[0].queued_at if self.queue else None

    def _start(self, conn: _Connection, request: _Request) -> None:
        self.busy.add(conn)
        conn.send(request)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    def release(self, conn: _Connection) -> None:
        self.busy.discard(conn)
        while self.queue:
            request = self.queue.popleft()
            if not request.future.done():
                self._start(conn, request)
                return
        self.idle.append(conn)

    def lost(self, conn: _Connection, resend: _Request | None = None) -> None:
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if resend is not None:
            if self.idle:
                self._start(self.idle.pop(), resend)
            else:
                self.queue.appendleft(resend)
        if self.queue and self.open < self.size:
            self._open()

    def _open(self) -> None:
        self.opening += 1
        task = asyncio.get_running_loop().create_task(self._connect())
        self._connecting.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._connecting.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                transport, conn = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
        except (OSError, TimeoutError) as exc:
            self.opening -= 1
            # Nobody to serve the queue: the oldest request learns why, the rest keep waiting
            # for a connection that does open (or for their own turn to fail).
            if self.queue:
                request = self.queue.popleft()
                if not request.future.done():
                    error = f"connect:{type(exc).__name__}"
                    now = time.monotonic()
                    request.future.set_result(Reply(0, 0.0, error=error, sent_at=now))
            if self.queue and self.open < self.size:
                self._open()
            return
        self.opening -= 1
        self.connects += 1
        if transport.is_closing():
            return  # lost already: connection_lost told the pool
        self.release(conn)

    def _sweep(self) -> None:
        """Once a second: close connections whose request has outlived the timeout."""
        now = time.monotonic()
        for conn in [c for c in self.busy if now - c.sent_at > self.timeout_s]:
            conn.fail("timeout")
        if self.busy or self.queue:
            self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)
        else:
            self._sweeper = None

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in [*self.idle, *self.busy]:
            conn.close()
        self.idle.clear()
        for request in self.queue:
            if not request.future.done():
                request.future.cancel()
        self.queue.clear()


def split_url(url: str) -> tuple[str, int, str]:
    """("127.0.0.1", 8000, "/path?q") from "http://127.0.0.1:8000/path?q"."""
    if not url.startswith("http://"):
        raise ValueError(f"only http:// URLs: {url!r}")
    rest = url[7:]
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    host, _, port = hostport.rpartition(":")
    if not host:
        return hostport, 80, path
    return host, int(port), path


class WireTransport:
    """The `Transport` the replay drives with: a pool per host:port, `size` connections
    each. Bodies are JSON, sent with a Content-Length."""

    def __init__(self, connections: int = 256, timeout_s: float = 30.0) -> None:
        self.connections = connections
        self.timeout_s = timeout_s
        self.pools: dict[str, Pool] = {}
        self._prefixes: dict[str, tuple[Pool, bytes]] = {}

    def _pool(self, origin: str) -> tuple[Pool, bytes]:
        found = self._prefixes.get(origin)
        if found is None:
            host, port, _ = split_url(origin + "/")
            pool = self.pools[origin] = Pool(host, port, self.connections, self.timeout_s)
            found = self._prefixes[origin] = (pool, f"Host: {host}:{port}\r\n".encode())
        return found

    def request_bytes(
        self, method: str, path: str, host_line: bytes, cookies: str, body: bytes | None
    ) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + host_line
        if cookies:
            head += b"Cookie: " + cookies.encode("latin-1") + b"\r\n"
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            return head + body
        return head + b"\r\n"

    async def request(self, method: str, url: str, *, cookies: str = "", body: Any = None) -> Reply:
        # The origin is everything before the path's first "/" after "http://".
        slash = url.find("/", 7)
        origin, path = (url, "/") if slash < 0 else (url[:slash], url[slash:])
        pool, host_line = self._pool(origin)
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        return await pool.submit(self.request_bytes(method, path, host_line, cookies, data))

    def oldest_queued(self) -> float | None:
        times = [t for pool in self.pools.values() if (t := pool.oldest_queued()) is not None]
        return min(times) if times else None

    def queued(self) -> int:
        return sum(len(pool.queue) for pool in self.pools.values())

    def open_connections(self) -> int:
        return sum(pool.open for pool in self.pools.values())

    async def aclose(self) -> None:
        for pool in self.pools.values():
            pool.close()
        await asyncio.sleep(0)


def _seconds(raw: bytes) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None
