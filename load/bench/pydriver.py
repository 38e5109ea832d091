"""The fallback load generator, for machines without wrk: HTTP/1.1 keep-alive in asyncio.

`python -m load.bench.pydriver '<json spec>'` prints one JSON line of results. Closed loop:
each connection sends its next request as soon as the answer to the last one is in. Open loop
(`rate` > 0): request n is due at start + n / rate whether or not the server keeps up, and its
latency is counted from that moment, so a server that falls behind shows its queue in the
percentiles instead of hiding it (no coordinated omission).

It costs far more CPU per request than wrk; the bench prints its CPU time beside the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Spec:
    url: str
    connections: int
    seconds: float
    method: str = "GET"
    header: str = ""
    values: str = ""
    rate: float = 0.0


def build_requests(spec: Spec) -> list[bytes]:
    parts = urlsplit(spec.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"{spec.method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    if spec.method == "POST":
        head += "Content-Length: 0\r\n"
    if not spec.values:
        return [(head + "\r\n").encode()]
    with open(spec.values, encoding="ascii") as f:
        values = [line.strip() for line in f if line.strip()]
    return [f"{head}{spec.header}: {value}\r\n\r\n".encode() for value in values]


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request and read its whole answer; returns the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


class Run:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.requests = build_requests(spec)
        self.latencies: list[float] = []
        self.errors = 0
        self.late = 0
        self.lag_max = 0.0
        self._next = 0

    def next_request(self) -> bytes:
        self._next = (self._next + 1) % len(self.requests)
        return self.requests[self._next]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self.spec.url)
        return await asyncio.open_connection(parts.hostname, parts.port or 80)

    async def closed_loop(self, deadline: float) -> None:
        reader, writer = await self.connect()
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                if await exchange(reader, writer, self.next_request()) >= 400:
                    self.errors += 1
                self.latencies.append(time.perf_counter() - started)
        except (OSError, asyncio.IncompleteReadError):
            self.errors += 1
        finally:
            writer.close()

    async def open_loop(self, deadline: float) -> None:
        idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        for _ in range(self.spec.connections):
            idle.put_nowait(await self.connect())
        interval = 1 / self.spec.rate
        start = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while True:
            due = start + n * interval
            if due >= deadline:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            conn = await idle.get()
            lag = time.perf_counter() - due
            if lag > 0.001:
                self.late += 1
                self.lag_max = max(self.lag_max, lag)
            task = asyncio.create_task(self._one(conn, due, idle))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    async def _one(
        self,
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        due: float,
        idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> None:
        try:
            if await exchange(*conn, self.next_request()) >= 400:
                self.errors += 1
            # From when it was due, not when a connection came free.
            self.latencies.append(time.perf_counter() - due)
            idle.put_nowait(conn)
        except (OSError, asyncio.IncompleteReadError):
            self.errors += 1
            conn[1].close()
            with contextlib.suppress(OSError):
                idle.put_nowait(await self.connect())

    async def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        deadline = started + self.spec.seconds
        if self.spec.rate > 0:
            await self.open_loop(deadline)
        else:
            loops = [self.closed_loop(deadline) for _ in range(self.spec.connections)]
            await asyncio.gather(*loops)
        elapsed = time.perf_counter() - started
        ordered = sorted(self.latencies) or [0.0]

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 3)

        return {
            "requests": len(self.latencies),
            "seconds": elapsed,
            "errors": self.errors,
            "p50_ms": pct(50),
            "p90_ms": pct(90),
            "p99_ms": pct(99),
            "max_ms": pct(100),
            "late": self.late,
            "lag_max_ms": round(self.lag_max * 1000, 3),
        }


def main(argv: list[str]) -> int:
    spec = Spec(**json.loads(argv[0]))
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(Run(spec).run())
    else:
        result = uvloop.run(Run(spec).run())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
