"""Load generators behind one interface: wrk (C, preferred) or the project's Python driver.

Both run as a child process, so the CPU time they use is measured the same way (the rusage of
reaped children) and printed beside the server's: that is the evidence that the load generator
was not the bottleneck.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
WRK_MISSING = "wrk not found: apt-get install wrk (using the slower Python driver instead)"


@dataclass(frozen=True, slots=True)
class Load:
    url: str
    connections: int
    seconds: int
    threads: int = 1
    method: str = "GET"
    header: str = ""  # sent with the next value of `values` on every request
    values: Path | None = None  # one header value per line
    rate: float = 0.0  # requests per second, open loop; 0: as fast as the server answers


@dataclass(frozen=True, slots=True)
class LoadResult:
    driver: str
    requests: int
    seconds: float
    errors: int  # failed connections, reads, writes, timeouts, and answers >= 400
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    late: int  # open loop: requests sent more than 1 ms after their scheduled time
    lag_max_ms: float
    driver_cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rps": round(self.rps, 1)}


class Driver(Protocol):
    name: str

    def run(self, load: Load) -> LoadResult: ...


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_child(command: list[str], env: dict[str, str], timeout: float) -> tuple[str, float]:
    """Run the driver to its end; its output and the CPU time it used."""
    before = _children_cpu()
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout, _children_cpu() - before


class Wrk:
    def __init__(self, path: str) -> None:
        self.path = path
        self.name = "wrk"

    @classmethod
    def find(cls) -> Wrk | None:
        path = shutil.which("wrk")
        return cls(path) if path else None

    def version(self) -> str:
        done = subprocess.run([self.path, "-v"], capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).split("\n", 1)[0].strip()

    def run(self, load: Load) -> LoadResult:
        env = os.environ | {
            "BENCH_METHOD": load.method,
            "BENCH_HEADER": load.header,
            "BENCH_VALUES": str(load.values or ""),
            "BENCH_RATE": repr(float(load.rate)),
            "BENCH_THREADS": str(load.threads),
        }
        command = [self.path, f"-t{load.threads}", f"-c{load.connections}"]
        command += [f"-d{load.seconds}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), load.url]
        out, cpu = _run_child(command, env, load.seconds + 60)
        line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result:\n{out[-2000:]}")
        raw = json.loads(line.removeprefix("BENCH_JSON "))
        return LoadResult(
            driver=self.name,
            requests=raw["requests"],
            seconds=raw["duration_us"] / 1e6,
            errors=raw["socket_errors"] + raw["status_errors"],
            p50_ms=raw["p50_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            late=raw["late"],
            lag_max_ms=raw["lag_max_ms"],
            driver_cpu_seconds=cpu,
        )


class PythonDriver:
    """`load.bench.pydriver` in a child process (uvloop when installed)."""

    name = "python"

    def run(self, load: Load) -> LoadResult:
        spec = {
            "url": load.url,
            "connections": load.connections,
            "seconds": load.seconds,
            "method": load.method,
            "header": load.header,
            "values": str(load.values or ""),
            "rate": load.rate,
        }
        command = [sys.executable, "-m", "load.bench.pydriver", json.dumps(spec)]
        env = dict(os.environ)
        repo = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
        started = time.monotonic()
        out, cpu = _run_child(command, env, load.seconds + 120)
        raw = json.loads(out.strip().splitlines()[-1])
        return LoadResult(
            driver=self.name,
            requests=raw["requests"],
            seconds=raw["seconds"] or time.monotonic() - started,
            errors=raw["errors"],
            p50_ms=raw["p50_ms"],
            p90_ms=raw["p90_ms"],
            p99_ms=raw["p99_ms"],
            max_ms=raw["max_ms"],
            late=raw["late"],
            lag_max_ms=raw["lag_max_ms"],
            driver_cpu_seconds=cpu,
        )


def pick_driver(prefer: str = "auto") -> tuple[Driver, str]:
    """The driver to use, and a note for the report when it is not wrk."""
    if prefer != "python":
        wrk = Wrk.find()
        if wrk is not None:
            return wrk, wrk.version()
        if prefer == "wrk":
            raise SystemExit("waitroom bench: wrk not found: apt-get install wrk")
        return PythonDriver(), WRK_MISSING
    return PythonDriver(), "the Python driver, as asked (--driver python)"
