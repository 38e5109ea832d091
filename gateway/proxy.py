"""Reverse proxy to the booking backend: the gateway's only outbound HTTP.

Bodies are streamed in both directions so that a large upload or download never sits in
the gateway's memory, and so that a slow backend only costs us a socket, not a buffer.
"""

from __future__ import annotations

import http.cookiejar
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from urllib.parse import quote_from_bytes

import anyio
import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

logger = logging.getLogger("waitroom.proxy")

# RFC 9110 section 7.6.1: these describe one connection, not the message, so a proxy
# must not forward them. "expect" is included because the 100-continue handshake has
# already happened between the client and our own server.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    }
)
# Identity headers only the gateway may set; anything a client sends under this
# prefix is a forgery attempt.
GATEWAY_PREFIX = b"x-waitroom-"
# Headers we compute ourselves (or httpx does, for host), so the client's copies go.
_REPLACED_ON_REQUEST = frozenset(
    {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
)
# Our own uvicorn always adds date and server; passing the backend's too would send
# each twice, and a duplicated Date is invalid HTTP.
_REPLACED_ON_RESPONSE = frozenset({b"date", b"server"})
# Printable ASCII other than space: raw_path bytes outside it are percent-encoded so
# httpx (which wants ASCII) receives exactly the bytes the client sent, escaped.
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))

_HTML_UNAVAILABLE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Please try again</title></head>
<body><p>The booking site is not answering right now. Your place is kept; please try
again in a moment.</p></body></html>
"""


def _drop_set(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Hop-by-hop names plus any header the Connection header declares hop-by-hop."""
    names = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == b"connection":
            names.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return names


def _prefers_json(accept: str) -> bool:
    """True when Accept ranks application/json above text/html (missing Accept: HTML)."""
    best = {"application/json": 0.0, "text/html": 0.0}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in best:
            best[media] = max(best[media], q)
    return best["application/json"] > best["text/html"]


# The page a person sees when the backend fails them: the gateway's own, in their language,
# when the caller has one (see BackendProxy.forward); this plain one otherwise.
UnavailablePage = Callable[[Request, int], Response]


def _unavailable(
    request: Request, status_code: int, detail: str, page: UnavailablePage | None = None
) -> Response:
    # Retry-After lets browsers and scripts back off; no-store keeps a CDN or the
    # browser from caching an outage as if it were the page.
    headers = {"Retry-After": "5", "Cache-Control": "no-store"}
    if _prefers_json(request.headers.get("accept", "")):
        body = {"error": "backend_unavailable", "detail": detail}
        return JSONResponse(body, status_code=status_code, headers=headers)
    if page is not None:
        response = page(request, status_code)
        response.headers.update(headers)
        return response
    return HTMLResponse(_HTML_UNAVAILABLE, status_code=status_code, headers=headers)


def _tell(
    observe: Callable[[int, float, bool], None] | None,
    status: int,
    started: float,
    *,
    backend_error: bool,
) -> None:
    if observe is not None:
        observe(status, time.perf_counter() - started, backend_error)


# Told of every reply the backend sent, with the request it answers (e.g. to read a signal
# the backend puts in a header). Called inline on each proxied request: it must be cheap.
ReplyWatcher = Callable[[Request, httpx.Headers], None]


class _UpstreamResponse(StreamingResponse):
    """Streams the backend's raw body and always releases its pooled connection."""

    def __init__(self, upstream: httpx.Response, raw_headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(upstream.aiter_raw(), status_code=upstream.status_code)
        # Set directly rather than via headers=, which takes a dict and would keep only
        # one of several Set-Cookie headers.
        self.raw_headers = raw_headers
        self._upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A BackgroundTask would be skipped when the client goes away or the backend
            # dies mid-body; an unclosed httpx response pins its pool slot forever.
            with anyio.CancelScope(shield=True):
                await self._upstream.aclose()


class BackendProxy:
    def __init__(
        self,
        backend_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_connections: int = 512,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = httpx.URL(backend_url)
        self._prefix = self._base.raw_path.partition(b"?")[0].rstrip(b"/")
        self._client = httpx.AsyncClient(
            transport=transport,
            # Waiting long for a free pool slot only piles requests up; fail like a
            # connect failure instead. Writes may be as slow as reads (big uploads).
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                # Below uvicorn's 5 s keep-alive, so we rarely reuse a socket the backend
                # is just closing.
                keepalive_expiry=4.0,
            ),
            http1=True,
            http2=False,
            trust_env=False,
            follow_redirects=False,
            # The client is shared by all visitors: a persistent cookie jar would hand one
            # visitor's backend session to the next, so refuse to store any cookie.
            cookies=http.cookiejar.CookieJar(
                http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            ),
        )
        # httpx adds Accept, Accept-Encoding and User-Agent defaults; the backend must see
        # only what the visitor sent (e.g. no gzip the visitor cannot decode).
        self._client.headers.clear()
        self._watchers: list[ReplyWatcher] = []

    def watch(self, watcher: ReplyWatcher) -> None:
        self._watchers.append(watcher)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def forward(
        self,
        request: Request,
        *,
        extra_headers: Mapping[str, str] = {},
        observe: Callable[[int, float, bool], None] | None = None,
        unavailable_page: UnavailablePage | None = None,
    ) -> Response:
        """Send `request` on to the backend. `observe`, if given, is told once: the status
        sent back, the seconds until the backend's response headers (or the failure), and
        whether the gateway answered itself because the backend failed. When it failed,
        a person gets `unavailable_page` (if given), a script JSON."""
        incoming = request.headers.raw
        drop = _drop_set(incoming) | _REPLACED_ON_REQUEST
        headers = [
            (name, value)
            for name, value in incoming
            if name.lower() not in drop and not name.lower().startswith(GATEWAY_PREFIX)
        ]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra_headers.items()]

        forwarded_for = ", ".join(request.headers.getlist("x-forwarded-for"))
        if request.client is not None:
            forwarded_for = ", ".join(filter(None, [forwarded_for, request.client.host]))
        if forwarded_for:
            headers.append((b"x-forwarded-for", forwarded_for.encode("latin-1")))
        headers.append((b"x-forwarded-proto", request.url.scheme.encode("latin-1")))
        if "host" in request.headers:
            headers.append((b"x-forwarded-host", request.headers["host"].encode("latin-1")))

        raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
        target = self._prefix + raw_path
        if query := request.scope.get("query_string", b""):
            target += b"?" + query
        url = self._base.copy_with(raw_path=quote_from_bytes(target, safe=_URL_SAFE).encode())

        # Only give httpx a body when the client declared one, so a plain GET is not
        # turned into a chunked request. The declared Content-Length is kept, and httpx
        # then sends the streamed body with it instead of chunking.
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        content: AsyncIterator[bytes] | None = request.stream() if has_body else None

        # Logged without the query string, which may carry tokens or personal data.
        where = f"{request.method} {request.url.path}"
        upstream_request = self._client.build_request(
            request.method, url, headers=headers, content=content
        )
        started = time.perf_counter()
        try:
            upstream = await self._client.send(upstream_request, stream=True)
        except httpx.TimeoutException as exc:
            logger.error("backend timeout: %s: %r", where, exc)
            _tell(observe, 504, started, backend_error=True)
            return _unavailable(
                request, 504, "The booking backend did not answer in time.", unavailable_page
            )
        except httpx.TransportError as exc:
            logger.error("backend unreachable: %s: %r", where, exc)
            _tell(observe, 502, started, backend_error=True)
            return _unavailable(
                request, 502, "The booking backend could not be reached.", unavailable_page
            )
        except ClientDisconnect:
            # The visitor hung up mid-upload; nobody is left to read a response.
            logger.info("client disconnected during upload: %s", where)
            _tell(observe, 400, started, backend_error=False)
            return Response(status_code=400)
        _tell(observe, upstream.status_code, started, backend_error=False)
        for watcher in self._watchers:
            watcher(request, upstream.headers)

        drop = _drop_set(upstream.headers.raw) | _REPLACED_ON_RESPONSE
        response_headers = [
            (name.lower(), value)
            for name, value in upstream.headers.raw
            if name.lower() not in drop
        ]
        return _UpstreamResponse(upstream, response_headers)
