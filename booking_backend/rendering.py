"""Turning outcomes into responses: Jinja2 pages, and errors as a page or as JSON.

Every error reply goes through ``error_response``, which also notes the error code in the
request state for the metrics middleware, so error counts come from one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import Scope

from booking_backend.errors import PROBLEMS, Refusal

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = TEMPLATES_DIR / "backend" / "static"
VISITOR_HEADER = "x-waitroom-visitor"
# Machine clients of these paths always get JSON, whatever they Accept.
JSON_PATH_PREFIXES = ("/book/api/", "/_backend/", "/_sim/", "/echo")
ERROR_CODE_STATE = "booking_error_code"

templates = Jinja2Templates(directory=TEMPLATES_DIR)


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def utc_datetime(timestamp: float) -> datetime:
    """Unix time as an aware UTC datetime, clamped to the years 1 to 9999.

    A time computed from a model (an SMS queued behind a very slow operator) can lie beyond
    what datetime holds; the reply then shows the last moment it can, rather than failing.
    """
    if math.isnan(timestamp):
        raise ValueError("timestamp is NaN")
    try:
        return datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return _LATEST if timestamp > 0 else _EARLIEST


def clock_time(timestamp: float) -> str:
    """Unix time as "08:05:00 UTC", for pages."""
    return utc_datetime(timestamp).strftime("%H:%M:%S UTC")


def iso_time(timestamp: float) -> str:
    """Unix time as ISO 8601 in UTC with milliseconds, for the API."""
    return utc_datetime(timestamp).isoformat(timespec="milliseconds")


def long_date(day: date) -> str:
    """ "Friday 15 January 2021", without the platform-specific strftime flags."""
    return f"{day:%A} {day.day} {day:%B %Y}"


templates.env.filters["clock_time"] = clock_time
templates.env.filters["long_date"] = long_date


def wants_json(scope: Scope, accept: str) -> bool:
    if str(scope.get("path", "")).startswith(JSON_PATH_PREFIXES):
        return True
    accept = accept.lower()
    return "application/json" in accept and "text/html" not in accept


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    full_context = {"visitor": request.headers.get(VISITOR_HEADER), **(context or {})}
    return templates.TemplateResponse(
        request, f"backend/{template}", full_context, status_code=status_code, headers=headers
    )


def error_response(
    request: Request,
    code: str,
    detail: str | None = None,
    *,
    status_code: int | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """The error ``code`` as ``{"error", "detail"}`` JSON or as the error page."""
    problem = PROBLEMS[code]
    status = status_code or problem.status
    detail = detail or problem.detail
    request.scope.setdefault("state", {})[ERROR_CODE_STATE] = code
    if wants_json(request.scope, request.headers.get("accept", "")):
        body = {"error": code, "detail": detail, **(extra or {})}
        return JSONResponse(body, status_code=status, headers=headers)
    context = {"title": _TITLES.get(status, "Something is not right"), "message": detail}
    return page(request, "error.html", context, status_code=status, headers=headers)


def refusal_response(request: Request, refusal: Refusal) -> Response:
    return error_response(request, refusal.code, refusal.detail, extra=refusal.extra)


_TITLES = {
    400: "Please check what you entered",
    401: "Please verify your phone number",
    403: "Please enter through the waiting room",
    404: "Not Found",
    405: "Not allowed",
    409: "Please choose again",
    410: "This PIN has expired",
    413: "Too large",
    415: "Unsupported form",
    429: "Too many attempts",
    500: "Something went wrong",
    503: "Service busy",
}
