"""Helpers for tests that need real server processes rather than in-process test clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from queue_core.connect import connect

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it, so collisions are rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def run_server(
    app: str,
    *,
    env: Mapping[str, str] | None = None,
    factory: bool = True,
    health_path: str = "/healthz",
    startup_timeout_s: float = 10.0,
    args: Sequence[str] = (),
) -> Iterator[str]:
    """Run ``app`` in a uvicorn subprocess on a free port; yield its base URL.

    Waits until ``health_path`` answers 200 and always stops the process on exit, so a
    failing test cannot leave a server behind.
    """
    with run_servers(
        app,
        1,
        env=env,
        factory=factory,
        health_path=health_path,
        startup_timeout_s=startup_timeout_s,
        args=args,
    ) as urls:
        yield urls[0]


@contextlib.contextmanager
def run_servers(
    app: str,
    count: int,
    *,
    env: Mapping[str, str] | None = None,
    factory: bool = True,
    health_path: str = "/healthz",
    startup_timeout_s: float = 10.0,
    args: Sequence[str] = (),
) -> Iterator[list[str]]:
    """`count` separate uvicorn processes of ``app`` (as on separate machines), started at
    once and each on its own port; yield their base URLs once all are healthy."""
    with contextlib.ExitStack() as resources:
        processes: list[tuple[subprocess.Popen[bytes], str, IO[bytes]]] = []
        try:
            for _ in range(count):
                port = free_port()
                command = [sys.executable, "-m", "uvicorn", app]
                command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
                if factory:
                    command.append("--factory")
                command += list(args)
                process_env = {**os.environ, **(env or {})}
                # A file rather than a pipe: a chatty server must never block on a full pipe.
                log = resources.enter_context(tempfile.TemporaryFile())
                # Several workers merge their Prometheus metrics through files in one
                # directory, which must start empty (as `waitroom up` does it).
                if "--workers" in args:
                    metrics_dir = resources.enter_context(tempfile.TemporaryDirectory())
                    process_env.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
                process = subprocess.Popen(
                    command, cwd=REPO_ROOT, env=process_env, stdout=log, stderr=subprocess.STDOUT
                )
                processes.append((process, f"http://127.0.0.1:{port}", log))
            for process, base_url, log in processes:
                _wait_until_healthy(process, base_url + health_path, startup_timeout_s, log)
            yield [base_url for _, base_url, _ in processes]
        finally:
            for process, _, _ in processes:
                _stop(process)


def _wait_until_healthy(
    process: subprocess.Popen[bytes], url: str, timeout_s: float, log: IO[bytes]
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_read_log(log)}")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not healthy at {url} after {timeout_s}s:\n{_read_log(log)}")


def _read_log(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode("utf-8", errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Stack:
    """A running gateway with a site behind it, on the session's Redis."""

    url: str  # the gateway (the first, when there are several)
    backend: str  # the site behind it
    secret: str
    prefix: str  # every Redis key this stack writes starts with it
    redis_url: str
    urls: tuple[str, ...] = ()  # every gateway, when there are several


@contextlib.contextmanager
def gateway_stack(
    redis_url: str,
    tmp: Path,
    rooms: str,
    *,
    workers: int = 1,
    gateways: int = 1,
    gateway_env: Mapping[str, str] | None = None,
    site: str = "booking_backend.app:create_app",
    site_env: Mapping[str, str] | None = None,
    site_args: Sequence[str] = (),
    site_factory: bool = True,
) -> Iterator[Stack]:
    """Start the site, then the gateway in front of it with `rooms` (TOML) (`gateways` of
    them, as separate machines would run them); on the way out, delete exactly the Redis
    keys this stack wrote (never anyone else's)."""
    config = tmp / "rooms.toml"
    config.write_text(rooms)
    prefix = f"wrtest-{uuid.uuid4().hex[:12]}"
    secret = secrets.token_urlsafe(40)
    backend_env = {"BACKEND_DB": str(tmp / "booking.sqlite3"), **(site_env or {})}
    with run_server(site, env=backend_env, args=site_args, factory=site_factory) as backend:
        env = {
            "REDIS_URL": redis_url,
            "WAITROOM_SECRET": secret,
            "WAITROOM_CONFIG": str(config),
            "WAITROOM_BACKEND_URL": backend,
            "WAITROOM_KEY_PREFIX": prefix,
            "WAITROOM_TICK_SECONDS": "0.05",
            **(gateway_env or {}),
        }
        args = ["--workers", str(workers)] if workers > 1 else []
        with run_servers("gateway.app:create_app", gateways, env=env, args=args) as urls:
            try:
                yield Stack(urls[0], backend, secret, prefix, redis_url, tuple(urls))
            finally:
                delete_keys(redis_url, prefix)


def delete_keys(redis_url: str, prefix: str) -> None:
    """Delete the keys under `prefix` (on every shard of a cluster), and nobody else's."""

    async def run() -> None:
        client = connect(redis_url)
        try:
            async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                await client.delete(key)
        finally:
            await client.aclose()

    # On a thread of its own: Playwright's sync API keeps an event loop on this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def record_figures(test: str, **figures: object) -> None:
    """Append what a fault test measured to test-artifacts/reliability.jsonl, so every run
    of the suite leaves the figures docs/RELIABILITY.md quotes."""
    import json

    out = REPO_ROOT / "test-artifacts" / "reliability.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"test": test, "at": time.time(), **figures}) + "\n")
