"""A booking site whose slowness a test can change while it runs: for the autopilot tests.

Run with `uvicorn slow_site:app --app-dir tests`. POST /_delay?ms=N sets the delay.
"""

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

delay = {"seconds": 0.0}


async def page(request: Request) -> PlainTextResponse:
    await asyncio.sleep(delay["seconds"])
    return PlainTextResponse("booking page")


async def set_delay(request: Request) -> PlainTextResponse:
    delay["seconds"] = float(request.query_params.get("ms", "0")) / 1000
    return PlainTextResponse("ok")


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/_delay", set_delay, methods=["POST"]),
        Route("/{path:path}", page),
    ]
)
