"""The yardstick: the smallest Starlette JSON endpoint, served with the gateway's uvicorn flags.

A status check is compared with this, so the ratio says what the waiting room adds on top of
the framework and the server, whatever the machine. It answers every path, so it also stands
in for the booking site behind the gateway when the proxy is measured.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def hello(request: Request) -> Response:
    return JSONResponse({"hello": "world"})


async def readyz(request: Request) -> Response:
    return JSONResponse({"ready": True, "worker": os.getpid()})


def create_app() -> Starlette:
    return Starlette(routes=[Route("/readyz", readyz), Route("/{path:path}", hello)])
