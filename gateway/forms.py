"""Small urlencoded forms, read with a size bound (no multipart, no files)."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request


class FormTooLarge(ValueError):
    pass


async def read_form(
    request: Request, limit: int = 16_384, *, keep_blank: bool = False
) -> dict[str, str]:
    """The form's fields (the first value of each). Too large raises; undecodable is empty.

    `keep_blank` keeps fields left empty, for forms where empty means "clear this"."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise FormTooLarge(f"form larger than {limit} bytes")
    try:
        values = parse_qs(body.decode("utf-8"), keep_blank_values=keep_blank, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in values.items()}
