"""Outbound HTTP for the driver, behind one method, with cookies kept per visitor.

Each simulated visitor has its own cookies (its ticket, its pass, the site's session), so
the shared client never keeps cookies itself: the driver sends each visitor's own `Cookie`
header and applies the reply's Set-Cookie headers to that visitor's jar. One client for
everyone means one bounded pool of keep-alive connections, whatever the number of visitors.
The client itself is `load.replay.wire`; tests swap in their own `Transport`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class Reply:
    status: int  # 0: no answer (connection refused, reset, timeout)
    seconds: float
    body: bytes = b""
    content_type: str = ""
    retry_after: float | None = None
    set_cookies: list[str] = field(default_factory=list)
    error: str = ""
    sent_at: float = 0.0  # time.monotonic() when the request was written to a connection

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
