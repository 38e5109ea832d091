"""gateway.proxy over real sockets: client -> uvicorn gateway -> BackendProxy -> uvicorn backend."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Scope

from gateway.proxy import BackendProxy

CHUNK = 64 * 1024
BIG = 5 * 1024 * 1024
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
GZIP_BODY = gzip.compress(b"hello booking " * 2000)

# Set by the backend (in its server thread) so the test thread can observe timing.
upload_seen = threading.Event()
drip_release = threading.Event()


def big_chunks() -> Iterator[bytes]:
    for i in range(BIG // CHUNK):
        yield bytes([i % 251]) * CHUNK


BIG_SHA = hashlib.sha256(b"".join(big_chunks())).hexdigest()


# --- the backend -------------------------------------------------------------------------


async def echo(request: Request) -> Response:
    digest, length, chunks = hashlib.sha256(), 0, 0
    async for chunk in request.stream():
        if chunk:
            upload_seen.set()
            digest.update(chunk)
            length += len(chunk)
            chunks += 1
    return JSONResponse(
        {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode("latin-1"),
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "sha256": digest.hexdigest(),
            "length": length,
        }
    )


async def cookies(request: Request) -> Response:
    response = Response("cookies")
    response.set_cookie("session", "s1", httponly=True)
    response.set_cookie("csrf", "c1")
    return response


async def redirect(request: Request) -> Response:
    return RedirectResponse("/elsewhere", status_code=302)


async def big(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        for chunk in big_chunks():
            yield chunk

    return StreamingResponse(body(), media_type="application/octet-stream")


async def drip(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        for _ in range(500):  # at most 5 s, so a failing test cannot hang the server
            if drip_release.is_set():
                break
            await asyncio.sleep(0.01)
        yield b"rest"

    return StreamingResponse(body(), media_type="text/plain")


async def endless(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        while True:  # ends when the client goes away and Starlette cancels us
            yield b"e" * CHUNK
            # uvicorn's send() does not yield once the peer is gone; without this the
            # loop would starve the event loop and the disconnect would never be seen.
            await asyncio.sleep(0)

    return StreamingResponse(body(), media_type="application/octet-stream")


async def hop(request: Request) -> Response:
    return Response(
        "hop",
        headers={
            "Connection": "X-Backend-Hop",
            "X-Backend-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic",
            "X-Kept": "yes",
        },
    )


async def gzipped(request: Request) -> Response:
    return Response(GZIP_BODY, media_type="text/plain", headers={"Content-Encoding": "gzip"})


async def slow(request: Request) -> Response:
    await asyncio.sleep(1.0)
    return Response("late")


backend_app = Starlette(
    routes=[
        Route("/cookies", cookies),
        Route("/redirect", redirect),
        Route("/big", big),
        Route("/drip", drip),
        Route("/endless", endless),
        Route("/hop", hop),
        Route("/gzip", gzipped),
        Route("/slow", slow),
        Route("/{path:path}", echo, methods=METHODS),
    ]
)


# --- the gateway and servers -------------------------------------------------------------


def gateway_app(backend_url: str, **kwargs: Any) -> Starlette:
    proxies: list[BackendProxy] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Created inside the server's event loop, which its pooled sockets belong to.
        proxies.append(BackendProxy(backend_url, **kwargs))
        try:
            yield
        finally:
            await proxies[0].aclose()

    async def catch_all(request: Request) -> Response:
        return await proxies[0].forward(request, extra_headers={"X-Waitroom-Visitor": "v1"})

    return Starlette(routes=[Route("/{path:path}", catch_all, methods=METHODS)], lifespan=lifespan)


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run app on a real uvicorn in a thread, on a socket we bound (no port race)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        # Keep uvicorn from rewriting the client address from X-Forwarded-For.
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive(), "server did not stop"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def backend_url() -> Iterator[str]:
    with serve(backend_app) as url:
        yield url


@contextmanager
def gateway_client(backend_url: str, **proxy_kwargs: Any) -> Iterator[httpx.Client]:
    """A client talking to a fresh gateway whose BackendProxy gets proxy_kwargs."""
    with (
        serve(gateway_app(backend_url, **proxy_kwargs)) as url,
        httpx.Client(base_url=url, timeout=5, trust_env=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def client(backend_url: str) -> Iterator[httpx.Client]:
    with gateway_client(backend_url) as c:
        yield c


def seen_headers(response: httpx.Response) -> dict[str, list[str]]:
    """Headers the backend echoed, name -> all values."""
    out: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        out.setdefault(name, []).append(value)
    return out


# --- tests -------------------------------------------------------------------------------


def test_upload_is_streamed_chunked(client: httpx.Client) -> None:
    upload_seen.clear()
    seen_before_end: list[bool] = []

    def body() -> Iterator[bytes]:
        chunks = big_chunks()
        yield next(chunks)
        # The backend must receive the first chunk while we still hold the rest; a
        # buffering proxy would make this wait time out.
        seen_before_end.append(upload_seen.wait(timeout=5))
        yield from chunks

    response = client.post("/upload", content=body())
    assert response.status_code == 200
    assert seen_before_end == [True]
    assert response.json()["sha256"] == BIG_SHA
    assert response.json()["length"] == BIG


def test_upload_with_content_length_keeps_it(client: httpx.Client) -> None:
    payload = b"".join(big_chunks())
    response = client.put("/upload", content=payload)
    assert response.json()["method"] == "PUT"
    assert response.json()["sha256"] == BIG_SHA
    headers = seen_headers(response)
    assert headers["content-length"] == [str(BIG)]
    assert "transfer-encoding" not in headers


def test_get_without_body_is_not_chunked(client: httpx.Client) -> None:
    headers = seen_headers(client.get("/plain"))
    assert "transfer-encoding" not in headers
    assert "content-length" not in headers


def test_download_is_streamed(client: httpx.Client) -> None:
    digest, length = hashlib.sha256(), 0
    with client.stream("GET", "/big") as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            digest.update(chunk)
            length += len(chunk)
    assert (digest.hexdigest(), length) == (BIG_SHA, BIG)

    drip_release.clear()
    with client.stream("GET", "/drip") as response:
        parts = response.iter_raw()
        # Arrives while the backend is still holding the rest of the body.
        assert next(parts) == b"first"
        drip_release.set()
        assert b"".join(parts) == b"rest"


def test_path_query_and_method_pass_through(client: httpx.Client) -> None:
    response = client.request("PATCH", "/a%2Fb/c%20d?x=1&y=%20&z=+&x=2")
    data = response.json()
    assert data["method"] == "PATCH"
    assert data["raw_path"] == "/a%2Fb/c%20d"
    assert data["query"] == "x=1&y=%20&z=+&x=2"


def test_hop_by_hop_headers_dropped_both_ways(client: httpx.Client) -> None:
    response = client.get(
        "/echo",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic c2VjcmV0",
            "TE": "trailers",
            "X-Normal": "kept",
        },
    )
    headers = seen_headers(response)
    for name in ("x-secret-hop", "keep-alive", "proxy-authorization", "te"):
        assert name not in headers
    assert "x-secret-hop" not in ",".join(headers.get("connection", [])).lower()
    assert headers["x-normal"] == ["kept"]

    response = client.get("/hop")
    assert response.text == "hop"
    for name in ("x-backend-hop", "keep-alive", "proxy-authenticate"):
        assert name not in response.headers
    assert "x-backend-hop" not in response.headers.get("connection", "").lower()
    assert response.headers["x-kept"] == "yes"


def test_identity_and_forwarding_headers(client: httpx.Client, backend_url: str) -> None:
    response = client.get(
        "/echo",
        headers={
            "X-Waitroom-Visitor": "evil",
            "X-WAITROOM-Room": "r9",
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
        },
    )
    headers = seen_headers(response)
    assert headers["x-waitroom-visitor"] == ["v1"]
    assert "x-waitroom-room" not in headers
    assert headers["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == [client.base_url.netloc.decode()]
    assert headers["host"] == [httpx.URL(backend_url).netloc.decode()]

    assert seen_headers(client.get("/echo"))["x-forwarded-for"] == ["127.0.0.1"]


def test_no_client_defaults_added(client: httpx.Client) -> None:
    request = client.build_request("GET", "/echo")
    for name in ("accept", "accept-encoding", "user-agent"):
        del request.headers[name]
    headers = seen_headers(client.send(request))
    # Otherwise httpx would ask for gzip the visitor never said it could decode.
    for name in ("accept", "accept-encoding", "user-agent"):
        assert name not in headers


def test_both_cookies_arrive_and_are_not_shared(client: httpx.Client) -> None:
    response = client.get("/cookies")
    set_cookies = response.headers.get_list("set-cookie")
    assert len(set_cookies) == 2
    assert any(c.startswith("session=s1") for c in set_cookies)
    assert any(c.startswith("csrf=c1") for c in set_cookies)

    # A fresh visitor (no cookies of its own) must not get the previous visitor's session
    # from a cookie jar inside the shared proxy client.
    with httpx.Client(base_url=client.base_url, trust_env=False) as other:
        assert "cookie" not in seen_headers(other.get("/echo"))


def test_redirect_is_passed_through(client: httpx.Client) -> None:
    response = client.get("/redirect", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere"


def test_raw_body_and_single_date(client: httpx.Client) -> None:
    with client.stream("GET", "/gzip") as response:
        raw = b"".join(response.iter_raw())
        assert raw == GZIP_BODY  # not decompressed on the way
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["content-length"] == str(len(GZIP_BODY))
        assert len(response.headers.get_list("date")) == 1
        assert len(response.headers.get_list("server")) == 1


def test_backend_down_is_502(backend_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="waitroom.proxy")
    with gateway_client(closed_port_url(), connect_timeout=1.0) as down:
        response = down.get("/book", headers={"Accept": "text/html,*/*;q=0.8"})
        assert response.status_code == 502
        assert response.headers["retry-after"] == "5"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"].startswith("text/html")
        assert "Your place is kept" in response.text

        response = down.post(
            "/api/book", content=b"x" * 1000, headers={"Accept": "application/json"}
        )
        assert response.status_code == 502
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"] == "backend_unavailable"
    assert any("unreachable" in r.getMessage() for r in caplog.records)


def test_slow_backend_is_504(backend_url: str) -> None:
    with gateway_client(backend_url, read_timeout=0.2) as tight:
        started = time.monotonic()
        response = tight.get("/slow", headers={"Accept": "application/json"})
        assert time.monotonic() - started < 0.9
        assert response.status_code == 504
        assert response.headers["retry-after"] == "5"
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["error"] == "backend_unavailable"


def test_abandoned_download_frees_pool_slot(backend_url: str) -> None:
    drip_release.clear()
    try:
        with gateway_client(backend_url, max_connections=1, connect_timeout=1.0) as single:
            # Hang up after the first chunk, once while the proxy waits on the backend
            # (/drip) and once while it is blocked sending to us (/endless, buffers full).
            for path in ("/drip", "/endless", "/drip", "/endless"):
                with single.stream("GET", path) as response:
                    next(response.iter_raw())
                    time.sleep(0.1)
            # With the only pool slot leaked this would wait for the pool, then 504.
            assert single.get("/echo").status_code == 200
    finally:
        drip_release.set()  # let the backend's abandoned /drip handlers finish


def test_failed_send_still_frees_pool_slot(backend_url: str) -> None:
    """ASGI 2.4 servers raise from send() when the client is gone; Starlette then skips
    background tasks, so the proxy must close the backend response itself."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client went away")

    def scope(path: str) -> Scope:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"gateway.test")],
            "client": ("127.0.0.1", 50000),
            "server": ("gateway.test", 80),
        }

    async def main() -> None:
        proxy = BackendProxy(backend_url, max_connections=1, connect_timeout=1.0)
        try:
            # Held in a variable, so garbage collection cannot close the stream for us.
            response = await proxy.forward(Request(scope("/drip"), receive))
            assert response.status_code == 200
            with pytest.raises(ClientDisconnect):
                await response(scope("/drip"), receive, send)
            # With the only pool slot leaked this would wait for the pool, then 504.
            again = await proxy.forward(Request(scope("/echo"), receive))
            assert again.status_code == 200
            await again(scope("/echo"), receive, _discard)
        finally:
            await proxy.aclose()

    drip_release.clear()
    try:
        asyncio.run(main())
    finally:
        drip_release.set()


async def _discard(message: Message) -> None:
    pass
