"""Run the booking site: ``python -m booking_backend`` (port 8001, where the gateway's
default WAITROOM_BACKEND_URL and ``waitroom up`` expect it)."""

from __future__ import annotations

import argparse

import uvicorn

DEFAULT_PORT = 8001


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m booking_backend",
        description="The vaccination booking site; configured by BACKEND_* env vars.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="default %(default)s, as the gateway expects"
    )
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    uvicorn.run(
        "booking_backend.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
