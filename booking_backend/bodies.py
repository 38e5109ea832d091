"""Reading request bodies defensively: small forms and small JSON objects only.

Every field of this site fits in a few hundred bytes, so anything large, undecodable or of
the wrong shape is refused with a clear 4xx before any rule looks at it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from booking_backend.errors import Refusal

MAX_BODY_BYTES = 16 * 1024
MAX_FORM_FIELDS = 20
FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"


async def _read_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Refusal("body_too_large")
    return bytes(body)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_form(request: Request) -> dict[str, str]:
    # A missing type is read as a form, so an empty POST lists what is missing.
    if _media_type(request) not in ("", FORM_TYPE):
        raise Refusal("unsupported_media_type")
    body = await _read_body(request)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:  # includes UnicodeDecodeError
        raise Refusal("invalid_form") from None
    return dict(pairs)


async def read_json(request: Request) -> dict[str, Any]:
    """A JSON object; an empty body counts as {} so bodiless POSTs work."""
    if _media_type(request) not in ("", JSON_TYPE):
        raise Refusal("unsupported_media_type")
    body = await _read_body(request)
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    # RecursionError: thousands of nested brackets fit under the size cap, and the parser
    # gives up on them with that rather than a ValueError.
    except (ValueError, RecursionError):  # ValueError includes UnicodeDecodeError
        raise Refusal("invalid_json") from None
    if not isinstance(data, dict):
        raise Refusal("invalid_json")
    return data


def text_field(data: dict[str, Any], name: str) -> str:
    """A string field of a JSON object; missing or null reads as empty."""
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refusal("invalid_json", f"The field {name!r} must be a string.")
    return value
