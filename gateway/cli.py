"""The `waitroom` command: `waitroom up` runs Redis, the booking backend and the gateway."""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from queue_core.connect import RedisUrlError, parse_redis_url
from queue_core.redis_cluster import LocalCluster
from queue_core.redis_sentinel import LocalSentinel
from queue_core.redis_server import RedisServer, RedisServerError
from queue_core.rooms import ConfigError, load_rooms

from .metrics import MULTIPROC_ENV
from .settings import REPO_ROOT


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def _secret(state_dir: Path, name: str = "secret", env: str = "WAITROOM_SECRET") -> str:
    """The variable `env`, or a value generated once and kept in `state_dir/name` (mode 600),
    so a restart keeps everyone's place."""
    from_env = os.environ.get(env)
    if from_env:
        return from_env
    path = state_dir / name
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _uvicorn(app: str, host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "5",
    ]


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def up(args: argparse.Namespace) -> int:
    # The gateway's workers each write their metrics to files here and /metrics merges them.
    # A fresh directory every run: files left by an earlier run would be counted again.
    with tempfile.TemporaryDirectory(prefix="waitroom-metrics-") as metrics_dir:
        return _up(args, metrics_dir)


def _up(args: argparse.Namespace, metrics_dir: str) -> int:
    config = Path(args.config).resolve()
    try:
        rooms = load_rooms(config)
    except ConfigError as exc:
        print(f"waitroom: {exc}", file=sys.stderr)
        return 2
    if args.gateways < 1:
        print("waitroom: --gateways must be 1 or more", file=sys.stderr)
        return 2
    if args.port <= args.backend_port < args.port + args.gateways:
        print(
            f"waitroom: --gateways {args.gateways} from port {args.port} collides with "
            f"--backend-port {args.backend_port}",
            file=sys.stderr,
        )
        return 2
    state_dir = Path(args.state_dir).resolve()
    redis_server: RedisServer | LocalCluster | LocalSentinel | None = None
    redis_url = os.environ.get("REDIS_URL", "")
    try:
        shown_url = parse_redis_url(redis_url).describe() if redis_url else ""
    except RedisUrlError as exc:
        print(f"waitroom: {exc}", file=sys.stderr)
        return 2
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if not redis_url:
            if args.redis == "cluster":
                redis_server = LocalCluster()
            elif args.redis == "sentinel":
                redis_server = LocalSentinel()
            else:
                redis_server = RedisServer(port=args.redis_port)
            redis_server.start()
            redis_url = shown_url = redis_server.url
        env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
        secret = _secret(state_dir)
        env.update(
            REDIS_URL=redis_url,
            WAITROOM_SECRET=secret,
            WAITROOM_CONFIG=str(config),
            WAITROOM_BACKEND_URL=f"http://{args.host}:{args.backend_port}",
        )
        # The demo booking site: its bookings kept beside the secret, the simulated SMS
        # inbox on (there is no phone to receive the PIN), and every request's pass checked,
        # so going round the waiting room does not work.
        env.setdefault("BACKEND_DB", str(state_dir / "booking.sqlite3"))
        env.setdefault("BACKEND_SIM_INBOX", "1")
        env.setdefault("BACKEND_WAITROOM_SECRET", secret)
        env["BACKEND_ADMIN_TOKEN"] = _secret(
            state_dir, "backend-admin-token", "BACKEND_ADMIN_TOKEN"
        )
        backend = subprocess.Popen(
            _uvicorn("booking_backend.app:create_app", args.host, args.backend_port, 1),
            env=env,
            cwd=REPO_ROOT,
        )
        procs.append(backend)
        # Several gateways are separate processes as on separate machines, each with its
        # own metrics; they share nothing but Redis and the secret.
        gateways = []
        for i in range(args.gateways):
            own_metrics = Path(metrics_dir) / f"gateway-{i}"
            own_metrics.mkdir()
            gateway = subprocess.Popen(
                _uvicorn("gateway.app:create_app", args.host, args.port + i, args.workers),
                env={**env, MULTIPROC_ENV: str(own_metrics)},
                cwd=REPO_ROOT,
            )
            procs.append(gateway)
            gateways.append(gateway)
        _wait_http(f"http://{args.host}:{args.backend_port}/healthz", backend)
        for i, gateway in enumerate(gateways):
            _wait_http(f"http://{args.host}:{args.port + i}/healthz", gateway)
    except (RedisServerError, RuntimeError, OSError) as exc:
        print(f"waitroom: could not start: {exc}", file=sys.stderr)
        _stop(procs)
        if redis_server:
            redis_server.stop()
        return 1

    gw = f"http://{args.host}:{args.port}"
    print("\nwaitroom is up:")
    if args.gateways > 1:
        last = args.port + args.gateways - 1
        print(f"  gateways      {gw} to :{last}   ({args.gateways} processes; any of them will do)")
    for room in rooms.values():
        print(
            f"  waiting room  {gw}{room.entry_path}   (room {room.name!r}, "
            f"{room.rate_per_minute:g} visitors/min)"
        )
    print(f"  gateway API   {gw}/_waitroom/openapi.json")
    print(f"  metrics       {gw}/metrics   (Prometheus; from this machine only)")
    site = f"http://{args.host}:{args.backend_port}"
    print(f"  booking site  {site}/   (direct: refuses anyone without a pass)")
    print(f"  SMS inbox     {site}/_sim/inbox/<phone>   (simulated: where PINs arrive)")
    print(
        f"  ops dashboard {gw}/_waitroom/ops/   (set WAITROOM_OPS_USERS; "
        "`waitroom hash-password` makes a hash)"
    )
    where = {
        RedisServer: "embedded Valkey",
        LocalCluster: "embedded Valkey cluster: 3 primaries, 3 replicas",
        LocalSentinel: "embedded Valkey: a primary, 2 replicas, 3 sentinels",
    }.get(type(redis_server), "from REDIS_URL")
    print(f"  redis         {shown_url}   ({where})")
    print(f"  rooms from    {config}")
    print("Press Ctrl-C to stop.\n", flush=True)

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    while not stopping:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            print(
                f"waitroom: a component exited (code {dead[0].returncode}); stopping",
                file=sys.stderr,
            )
            code = 1
            break
        time.sleep(0.3)
    print("waitroom: stopping...", flush=True)
    _stop(procs)
    if redis_server:
        redis_server.stop()
    return code


def hash_password_command(args: argparse.Namespace) -> int:
    from .ops.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("waitroom: the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("waitroom: use at least 12 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # The load tools live in load/ and parse their own options; imported only when asked for.
    if args_list[:1] == ["bench"]:
        from load.bench.cli import main as bench_main

        return bench_main(args_list[1:])
    if args_list[:1] == ["replay"]:
        from load.replay.cli import main as replay_main

        return replay_main(args_list[1:])
    parser = argparse.ArgumentParser(prog="waitroom", description=__doc__)
    parser.epilog = "Also: `waitroom bench` (benchmarks) and `waitroom replay SCENARIO`."
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start Redis, the booking backend and the gateway")
    p_up.add_argument("--host", default="127.0.0.1")
    p_up.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    p_up.add_argument("--backend-port", type=int, default=8001)
    p_up.add_argument(
        "--redis-port",
        type=int,
        default=None,
        help="port for the embedded Redis with --redis single (default: a free one)",
    )
    p_up.add_argument("--workers", type=int, default=2, help="worker processes per gateway")
    p_up.add_argument(
        "--gateways",
        type=int,
        default=1,
        help="gateway processes, on --port and the ports after it (default 1)",
    )
    p_up.add_argument(
        "--redis",
        choices=["single", "cluster", "sentinel"],
        default="single",
        help="without REDIS_URL: the embedded Redis to run, one server (default), a cluster "
        "of 3 primaries with a replica each, or a primary with 2 replicas and 3 sentinels",
    )
    p_up.add_argument(
        "--config", default=os.environ.get("WAITROOM_CONFIG", str(REPO_ROOT / "waitroom.toml"))
    )
    p_up.add_argument(
        "--state-dir",
        default=str(REPO_ROOT / ".waitroom"),
        help="where the generated secret is kept",
    )
    p_up.set_defaults(func=up)
    p_hash = sub.add_parser("hash-password", help="print a hash for WAITROOM_OPS_USERS")
    p_hash.set_defaults(func=hash_password_command)
    args = parser.parse_args(args_list)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
