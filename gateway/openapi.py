"""What the OpenAPI documents say beyond the route docstrings: the rooms this gateway serves.

A `{room}` path parameter takes one of the configured rooms and nothing else; saying so lets
a client (or a fuzzer) find out which without guessing, and costs nothing to keep true, since
the document is written from the same settings the gateway runs with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def name_the_rooms(document: dict[str, Any], rooms: Iterable[str]) -> dict[str, Any]:
    names = sorted(rooms)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "room" and parameter.get("in") == "path":
                    parameter["schema"] = {"type": "string", "enum": names}
    return document
