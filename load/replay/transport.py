"""Outbound HTTP for the driver, behind one method, with cookies kept per visitor.

Each simulated visitor has its own cookies (its ticket, its pass, the site's session), so
the shared client must never keep cookies itself: `NoCookies` drops every Set-Cookie, and the
driver sends each visitor's own `Cookie` header. One client for everyone means one bounded
pool of keep-alive connections, whatever the number of visitors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import Cookie, CookieJar
from typing import Any, Protocol
from urllib.request import Request

import httpx


@dataclass(slots=True)
class Reply:
    status: int  # 0: no answer (connection refused, reset, timeout)
    seconds: float
    body: bytes = b""
    content_type: str = ""
    retry_after: float | None = None
    set_cookies: list[str] = field(default_factory=list)
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def is_json(self) -> bool:
        return self.content_type.startswith("application/json")


class Transport(Protocol):
    async def request(
        self, method: str, url: str, *, cookies: str = "", body: Any = None
    ) -> Reply: ...

    async def aclose(self) -> None: ...


class NoCookies(CookieJar):
    """A jar that keeps nothing: cookies belong to visitors, not to the shared client."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Request) -> None:
        return None


class HttpxTransport:
    def __init__(self, connections: int = 64, timeout_s: float = 30.0) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.client = httpx.AsyncClient(
            limits=limits, timeout=timeout_s, cookies=NoCookies(), follow_redirects=False
        )

    async def request(self, method: str, url: str, *, cookies: str = "", body: Any = None) -> Reply:
        headers = {"Cookie": cookies} if cookies else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        content = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, headers=headers, content=content)
        except httpx.HTTPError as exc:
            return Reply(0, time.perf_counter() - started, error=type(exc).__name__)
        return Reply(
            status=response.status_code,
            seconds=time.perf_counter() - started,
            body=response.content,
            content_type=response.headers.get("content-type", ""),
            retry_after=_seconds(response.headers.get("retry-after")),
            set_cookies=response.headers.get_list("set-cookie"),
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def _seconds(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def update_cookies(jar: dict[str, str], set_cookies: list[str]) -> None:
    """Apply Set-Cookie headers to one visitor's cookies (a deletion removes the cookie)."""
    for header in set_cookies:
        first, _, attributes = header.partition(";")
        name, _, value = first.strip().partition("=")
        if not name:
            continue
        attrs = attributes.lower().replace(" ", "")
        if "max-age=0" in attrs or "expires=thu,01jan1970" in attrs:
            jar.pop(name, None)
        else:
            jar[name] = value


def cookie_header(jar: Mapping[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in jar.items())
