"""`waitroom bench`: start private servers, measure the hot paths, print a table or JSON.

Runs nothing against anything it did not start: its own Valkey servers and uvicorn processes
on free loopback ports, stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from .drivers import pick_driver
from .plan import PLANS
from .profile import Profiler, find_py_spy
from .report import table, verdicts
from .run import Bench


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waitroom bench",
        description="Measure the waiting room's hot paths against a plain Starlette endpoint.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes and runs (seconds, for tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--driver",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk if installed (auto), or the project's Python driver",
    )
    p.add_argument("--workers", type=int, help="uvicorn workers for the gateway and hello app")
    p.add_argument("--seconds", type=int, help="length of each throughput run")
    p.add_argument(
        "--admission-seconds", type=float, help="length of the admission test (full: 150)"
    )
    p.add_argument("--keep", metavar="DIR", help="keep logs, rooms files and tickets in DIR")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="also profile each hot path with py-spy (pip install py-spy) into DIR",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    plan = PLANS["quick" if args.quick else "full"]
    if args.workers:
        plan = replace(plan, workers=args.workers)
    if args.seconds:
        plan = replace(plan, run_seconds=args.seconds)
    if args.admission_seconds:
        plan = replace(plan, admission_seconds=args.admission_seconds)
    driver, note = pick_driver(args.driver)
    profiler = None
    if args.profile:
        py_spy = find_py_spy()
        if py_spy is None:
            print("waitroom bench: py-spy not found: pip install py-spy", file=sys.stderr)
            return 2
        profiler = Profiler(py_spy, Path(args.profile))

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    say(f"waitroom bench ({plan.mode}); load generator: {note}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="waitroom-bench-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = Bench(plan, driver, note, workdir, say, profiler).run()
    result["targets"] = verdicts(result)
    result["setup"]["bench_seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print()
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
