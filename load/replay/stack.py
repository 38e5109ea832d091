"""A private stack for one replay: its own Valkey, booking site and gateway, on free ports.

Configured as `waitroom up` configures them, with the scenario's settings squeezed
(`load.replay.scaling`): a fresh booking database, the simulated SMS inbox on, an admin
token for the SMS rate change, and, only behind the gateway, the site checking passes
itself. Straight at the site (no line) it runs without BACKEND_WAITROOM_SECRET, or it would
turn everyone away. Server logs go to files in the output directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from queue_core.redis_server import RedisServer, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
TICK_SECONDS = "0.05"  # a tick is 3 scenario seconds at speed 60; the default 0.25 is 15


@dataclass(frozen=True, slots=True)
class Running:
    gateway: str | None
    backend: str
    admin_token: str
    pids: dict[str, list[int]] = field(default_factory=dict)  # party -> supervisor pids


def _uvicorn(
    app: str, env: Mapping[str, str], log: Path, workers: int = 1
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    command += ["--timeout-graceful-shutdown", "3"]
    # The replay's keep-alive connections stay open between a visitor's checks (up to 45 s
    # apart): with uvicorn's default of 5 s the driver would reconnect thousands of times.
    command += ["--timeout-keep-alive", "120"]
    if workers > 1:
        command += ["--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    return proc, f"http://127.0.0.1:{port}"


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} not healthy after {timeout:.0f}s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def private_stack(
    out: Path,
    *,
    site_env: Mapping[str, str],
    rooms_toml: str | None,
    gateway_workers: int = 1,
    label: str = "gateway",
) -> Iterator[Running]:
    """The booking site, and unless `rooms_toml` is None, Valkey and a gateway before it."""
    out.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(40)
    admin = secrets.token_urlsafe(24)
    db = out / f"booking-{label}.sqlite3"
    for stale in out.glob(f"booking-{label}.sqlite3*"):
        stale.unlink()
    backend_env = {
        **site_env,
        "BACKEND_DB": str(db),
        "BACKEND_SIM_INBOX": "1",
        "BACKEND_ADMIN_TOKEN": admin,
        "BACKEND_WAITROOM_SECRET": secret if rooms_toml is not None else "",
    }
    procs: list[subprocess.Popen[bytes]] = []
    redis: RedisServer | None = None
    try:
        log = out / f"backend-{label}.log"
        proc, backend = _uvicorn("booking_backend.app:create_app", backend_env, log)
        procs.append(proc)
        _wait_healthy(proc, backend, log)
        if rooms_toml is None:
            yield Running(None, backend, admin, {"site": [proc.pid]})
            return
        redis = RedisServer()
        redis.start()
        rooms = out / "rooms.toml"
        rooms.write_text(rooms_toml)
        gateway_env = {
            "REDIS_URL": redis.url,
            "WAITROOM_SECRET": secret,
            "WAITROOM_CONFIG": str(rooms),
            "WAITROOM_BACKEND_URL": backend,
            "WAITROOM_TICK_SECONDS": TICK_SECONDS,
        }
        # Several workers merge their metrics through files in a directory that starts empty.
        metrics = out / f"metrics-{label}"
        if metrics.exists():
            for stale_file in metrics.iterdir():
                stale_file.unlink()
        metrics.mkdir(exist_ok=True)
        gateway_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        log = out / f"{label}.log"
        proc, gateway = _uvicorn("gateway.app:create_app", gateway_env, log, gateway_workers)
        procs.append(proc)
        _wait_healthy(proc, gateway, log)
        pids = {"gateway": [proc.pid], "site": [procs[0].pid], "redis": [redis.pid]}
        yield Running(gateway, backend, admin, pids)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        if redis is not None:
            redis.stop()
