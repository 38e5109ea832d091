"""The replay's HTTP/1.1 client against a small server in the test: keep-alive, cookies,
bodies, a connection the server closed while idle, and a server that never answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from load.replay.wire import WireTransport, split_url


class Server:
    """Answers every request with what it saw; `close_after` closes a connection after that
    many replies, `silent` never answers."""

    def __init__(self, close_after: int = 0, silent: bool = False) -> None:
        self.close_after = close_after
        self.silent = silent
        self.connections = 0
        self.requests: list[tuple[str, str, str]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                body = await reader.readexactly(int(headers.get("Content-Length", "0")))
                self.requests.append((method, path, headers.get("Cookie", "")))
                if self.silent:
                    await asyncio.sleep(60)
                reply = json.dumps({"method": method, "path": path, "body": body.decode()}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; HttpOnly\r\n"
                    b"Retry-After: 3\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply)
                )
                await writer.drain()
                served += 1
                if self.close_after and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run(test: Callable[[str, Server], Awaitable[None]], server: Server, loop: str) -> None:
    async def main() -> None:
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        async with listening:
            await test(f"http://127.0.0.1:{port}", server)
            await asyncio.sleep(0.05)  # the server's handlers see the client go, and end

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())


LOOPS = ["asyncio", "uvloop"]


@pytest.mark.parametrize("loop", LOOPS)
def test_requests_share_a_kept_alive_connection(loop: str) -> None:
    async def test(origin: str, server: Server) -> None:
        wire = WireTransport(connections=4)
        first = await wire.request("GET", f"{origin}/status?x=1", cookies="t=abc")
        second = await wire.request("POST", f"{origin}/join", body={"phone": "+420"})
        for _ in range(10):
            await wire.request("GET", f"{origin}/again")
        await wire.aclose()
        assert first.status == 200 and first.is_json
        assert first.json() == {"method": "GET", "path": "/status?x=1", "body": ""}
        assert first.set_cookies == ["a=1; Path=/", "b=2; HttpOnly"]
        assert first.retry_after == 3.0 and first.sent_at > 0
        assert second.json()["body"] == '{"phone": "+420"}'
        assert server.requests[0][2] == "t=abc"
        assert len(server.requests) == 12
        assert server.connections <= 2  # one in use, and one kept spare for a burst

    run(test, Server(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_closed_while_idle_is_retried_once(loop: str) -> None:
    async def test(origin: str, server: Server) -> None:
        wire = WireTransport(connections=1)
        assert (await wire.request("GET", f"{origin}/one")).status == 200
        await asyncio.sleep(0.05)  # the server has closed the idle connection by now
        again = await wire.request("GET", f"{origin}/two")
        await wire.aclose()
        assert again.status == 200 and again.json()["path"] == "/two"
        assert server.connections == 2

    run(test, Server(close_after=1), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_many_requests_at_once_queue_for_the_connections(loop: str) -> None:
    async def test(origin: str, server: Server) -> None:
        wire = WireTransport(connections=3)
        replies = await asyncio.gather(*(wire.request("GET", f"{origin}/p{i}") for i in range(50)))
        await wire.aclose()
        assert [r.json()["path"] for r in replies] == [f"/p{i}" for i in range(50)]
        assert server.connections <= 3

    run(test, Server(), loop)


def test_a_server_that_never_answers_times_out() -> None:
    async def test(origin: str, server: Server) -> None:
        wire = WireTransport(connections=1, timeout_s=0.2)
        reply = await wire.request("GET", f"{origin}/slow")
        await wire.aclose()
        assert reply.status == 0 and reply.error == "timeout"

    run(test, Server(silent=True), "asyncio")


def test_nobody_listening_is_an_answer_too() -> None:
    async def test() -> None:
        wire = WireTransport(connections=1)
        reply = await wire.request("GET", "http://127.0.0.1:9/x")  # discard port: closed
        await wire.aclose()
        assert reply.status == 0 and reply.error.startswith("connect:")

    asyncio.run(test())


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://127.0.0.1:8000/book/api?x=1", ("127.0.0.1", 8000, "/book/api?x=1")),
        ("http://localhost", ("localhost", 80, "/")),
    ],
)
def test_split_url(url: str, parts: tuple[str, int, str]) -> None:
    assert split_url(url) == parts
    with pytest.raises(ValueError):
        split_url("https://example.org/")
