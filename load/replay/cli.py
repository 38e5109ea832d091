"""`waitroom replay SCENARIO --out DIR`: replay a launch day and write summary.json and
report.html (see docs/REPLAY.md). Exit status 0 when every check passed, 1 when one failed,
2 for bad arguments or a stack that would not start."""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import operator
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .model import total
from .record import VisitorRecord
from .report import render
from .run import RunResult, replay
from .scaling import Squeeze, room_settings, rooms_toml, site_env
from .scenario import Scenario, ScenarioError, available, load_scenario
from .stack import private_stack
from .summary import compare, summarize

_T = TypeVar("_T")


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` on uvloop (when installed) and return its result.

    The result travels outside the task: asyncio.Runner.run ends by comparing SIGINT
    handlers, and signal.getsignal then formats the handler, the main task with it, and the
    task's result: a RunResult of 300,000 visitor records took seconds to repr."""
    box: list[_T] = []

    async def main() -> None:
        box.append(await coro)

    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    except ImportError:
        asyncio.run(main())
    return box[0]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="waitroom replay", description=__doc__)
    p.add_argument("scenario", nargs="?", help=f"a name ({', '.join(available())}) or a path")
    p.add_argument("--out", type=Path, help="output directory (default: replay-out/SCENARIO)")
    p.add_argument("--speed", type=float, default=60.0, help="scenario seconds per real second")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, default=0.01, help="share of the people (0.01 = 1%%)")
    size.add_argument(
        "--visitors", type=int, help="this many people in all (sets the scale; e.g. 5000)"
    )
    p.add_argument("--max-seconds", type=float, default=600.0, help="real time limit per run")
    p.add_argument("--compare", action="store_true", help="also send the crowd straight at a site")
    p.add_argument("--gateway", help="use this running gateway instead of a private stack")
    p.add_argument("--backend", help="its booking site (needs BACKEND_SIM_INBOX=1)")
    p.add_argument(
        "--direct-backend", help="with --compare and --gateway: a site with no pass check"
    )
    p.add_argument("--admin-token", default="", help="the site's BACKEND_ADMIN_TOKEN (SMS rate)")
    p.add_argument(
        "--connections", type=int, default=1024, help="keep-alive connections per server"
    )
    p.add_argument(
        "--grace",
        type=float,
        help="the room's grace period in real seconds (default: see docs/REPLAY.md)",
    )
    p.add_argument("--gateway-workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p


def write_visitors(path: Path, visitors: Sequence[VisitorRecord]) -> None:
    names = [f.name for f in dataclasses.fields(VisitorRecord)]
    row = operator.attrgetter(*names)  # dataclasses.astuple deep-copies: 30x slower
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(names)
        for v in visitors:
            writer.writerow([round(x, 4) if isinstance(x, float) else x for x in row(v)])


def write_seconds(path: Path, result: RunResult) -> None:
    """The driver's state and the requests it sent, second by second."""
    sent: dict[int, list[int]] = {}
    for buckets in result.recorder.buckets.values():
        for second, b in buckets.items():
            counts = sent.setdefault(second, [0, 0, 0])
            counts[0] += b.count
            counts[1] += b.late
            counts[2] += b.errors
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            [
                "second",
                "started",
                "present",
                "held",
                "overdue",
                "in_flight",
                "queued",
                "connections",
                "requests",
                "late",
                "errors",
            ]
        )
        for s in result.stats.seconds:
            counts = sent.get(s.at - 1, [0, 0, 0])  # sample at the end of second s.at - 1
            state = (s.at, s.started, s.present, s.held, s.overdue, s.in_flight, s.queued)
            writer.writerow([*state, s.connections, *counts])


def _one(
    scenario: Scenario, squeeze: Squeeze, args: argparse.Namespace, out: Path, direct: bool
) -> RunResult:
    env = site_env(scenario.site, squeeze)
    room = None if direct else room_settings(scenario, squeeze, args.grace)
    common: dict[str, Any] = {
        "room": room,
        "connections": args.connections,
        "max_seconds": args.max_seconds,
        "seed": args.seed,
        "site_env": env,
    }
    if args.gateway:
        backend = args.direct_backend if direct else args.backend
        gateway = None if direct else args.gateway
        return _run(
            replay(
                scenario,
                squeeze,
                backend=backend,
                gateway=gateway,
                admin_token=args.admin_token,
                **common,
            )
        )
    label = "direct" if direct else "gateway"
    rooms = None if room is None else rooms_toml(room)
    with private_stack(
        out, site_env=env, rooms_toml=rooms, gateway_workers=args.gateway_workers, label=label
    ) as stack:
        return _run(
            replay(
                scenario,
                squeeze,
                backend=stack.backend,
                gateway=stack.gateway,
                admin_token=stack.admin_token,
                pids=stack.pids,
                **common,
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list or not args.scenario:
        for name in available():
            print(f"{name:16} {load_scenario(name).title}")
        return 0 if args.list else 2
    if args.gateway and not args.backend:
        print("waitroom replay: --gateway needs --backend (for the SMS inbox)", file=sys.stderr)
        return 2
    if args.compare and args.gateway and not args.direct_backend:
        print("waitroom replay: --compare with --gateway needs --direct-backend", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.scenario)
        scale = args.scale
        if args.visitors is not None:
            scale = min(1.0, args.visitors / total(scenario.arrivals))
        squeeze = Squeeze(speed=args.speed, scale=scale)
    except (ScenarioError, ValueError) as exc:
        print(f"waitroom replay: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out or Path("replay-out") / scenario.name
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = _one(scenario, squeeze, args, out, direct=False)
        direct = _one(scenario, squeeze, args, out, direct=True) if args.compare else None
    except RuntimeError as exc:
        print(f"waitroom replay: could not start the stack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the stack has been stopped on the way out
        print("waitroom replay: interrupted, nothing written", file=sys.stderr)
        return 130
    summary = summarize(result)
    write_visitors(out / "visitors.csv", result.visitors)
    write_seconds(out / "driver.csv", result)
    document: dict[str, Any] = dict(summary)
    direct_part = None
    comparison = None
    if direct is not None:
        direct_summary = summarize(direct)
        write_visitors(out / "visitors-direct.csv", direct.visitors)
        write_seconds(out / "driver-direct.csv", direct)
        comparison = compare(summary, direct_summary)
        document["direct"] = direct_summary
        document["comparison"] = comparison
        direct_part = (direct, direct_summary)
    if comparison is not None:
        document["passed"] = summary["passed"] and all(
            c["passed"] is not False for c in comparison["checks"]
        )
    (out / "summary.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "report.html").write_text(render(result, summary, direct_part, comparison))
    _print(summary, comparison, out)
    return 0 if document["passed"] else 1


def _print(summary: dict[str, Any], comparison: dict[str, Any] | None, out: Path) -> None:
    f = summary["figures"]
    print(
        f"{summary['scenario']}: {f['visitors']} visitors, {f['admitted']} admitted, "
        f"{f['booked']} booked, {f['registered_without_date']} registered without a date, "
        f"{f['outcomes']['gave_up']} gave up, {f['outcomes']['error']} errors; "
        f"{f['order_inversions']} order inversions, {f['lost_visitors']} lost"
    )
    marks = {True: "ok  ", False: "FAIL", None: "n/a "}
    for check in summary["checks"]:
        mark = marks[check["passed"]]
        print(f"  {mark} {check['name']}: {check['value']} (target {check['target']})")
    for fact in summary["launch_day"]:
        mark = marks[fact["passed"]]
        print(
            f"  {mark} {fact['what']}: {fact['replay']} (model {fact['model']}; {fact['target']})"
        )
    if comparison:
        for check in comparison["checks"]:
            mark = marks[check["passed"]]
            print(f"  {mark} {check['name']}: {check['value']} (target {check['target']})")
        for side in ("with_gateway", "straight_at_site"):
            figures = comparison[side]
            print(f"  {side}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    print(f"report: {out / 'report.html'}")


if __name__ == "__main__":
    sys.exit(main())
