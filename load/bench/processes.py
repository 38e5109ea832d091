"""The processes a bench run starts (uvicorn apps), and the CPU time processes have used.

Every server is started with the same uvicorn flags, so the gateway and the hello app differ
only in the application. CPU time comes from /proc (Linux), which is how a run shows that the
load generator was not the bottleneck: the server's share of the machine is printed beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from queue_core.redis_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Gateway workers share their Prometheus metrics through files, as under `waitroom up`.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def uvicorn_command(app: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


class Uvicorn:
    """One uvicorn server (a supervisor and its workers, or a single process)."""

    def __init__(
        self, name: str, app: str, *, workers: int, env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.app = app
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = dict(env)
        self._log_path = log_dir / f"{name}.log"
        self._metrics_dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> None:
        env = {**os.environ, **self._env}
        if self.app.startswith("gateway."):
            self._metrics_dir = tempfile.TemporaryDirectory(prefix="waitroom-bench-metrics-")
            env[MULTIPROC_ENV] = self._metrics_dir.name
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                uvicorn_command(self.app, self.port, self.workers),
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every worker has answered /readyz (which names the worker that answered):
        a gateway worker is ready once its first tick has brought a snapshot."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while len(seen) < self.workers:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {timeout:.0f}s:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    seen.add(int(json.loads(resp.read())["worker"]))
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)

    def pids(self) -> list[int]:
        """The server's processes: the supervisor and its workers."""
        return [self.pid, *descendants(self.pid)] if self._proc is not None else []

    def worker_pids(self) -> list[int]:
        workers = [p for p in descendants(self.pid) if "spawn_main" in _cmdline(p)]
        return workers or [self.pid]

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self._log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            self._proc = None
        if self._metrics_dir is not None:
            self._metrics_dir.cleanup()
            self._metrics_dir = None


@contextlib.contextmanager
def running(servers: Iterable[Uvicorn]) -> Iterator[list[Uvicorn]]:
    """Start several servers at once (their imports overlap) and stop them all on exit."""
    started = list(servers)
    try:
        for server in started:
            server.start()
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its closing one.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time the live processes `pids` have used so far."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent not idle, summed over its cores."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle, iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


class CpuMeter:
    """Cores used by each group of processes between `start()` and `stop()`, and by the rest
    of the machine ("other": whatever else runs here, which the figures cannot control)."""

    def __init__(self, groups: Mapping[str, Callable[[], Iterable[int]]]) -> None:
        self.groups = groups
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self._machine = 0.0
        self._self = 0.0

    def start(self) -> None:
        self._start = {name: cpu_seconds(pids()) for name, pids in self.groups.items()}
        self._machine = machine_busy_seconds()
        self._self = time.process_time()
        self._wall = time.monotonic()

    def stop(self, driver_cpu_seconds: float) -> dict[str, float]:
        wall = time.monotonic() - self._wall
        used = {name: cpu_seconds(pids()) - self._start[name] for name, pids in self.groups.items()}
        used["driver"] = driver_cpu_seconds
        used["bench"] = time.process_time() - self._self
        machine = machine_busy_seconds() - self._machine
        used["other"] = max(0.0, machine - sum(used.values()))
        return {name: round(seconds / wall, 2) for name, seconds in used.items()}
