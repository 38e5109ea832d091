"""report.html: one self-contained page (inline CSS and SVG, no scripts, no external assets)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from .record import OUTCOMES, SITE, percentile
from .run import RunResult
from .summary import estimate_errors
from .svg import Series, bar_chart, line_chart, scatter

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}
td,th{padding:.2em .7em;border-bottom:1px solid #e4e4e4;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0a6b2c;font-weight:600}.fail{color:#b00020;font-weight:600}.na{color:#666}
svg{width:100%;height:auto;margin:.5em 0 1em}svg .title{font-weight:600;font-size:13px}
svg .tick,svg .label{font-size:11px;fill:#444}svg .grid{stroke:#e6e6e6}
.l0{stroke:#1f5fa8;stroke-width:1.8}.l1{stroke:#d2691e;stroke-width:1.8}.l2{stroke:#2e8b57;stroke-width:1.8}
.s0{fill:#1f5fa8}.s1{fill:#d2691e}.s2{fill:#2e8b57}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:1em}
@media (max-width:700px){.grid2{grid-template-columns:1fr}}
"""


def _width(result: RunResult) -> float:
    """Width of a time bin in real seconds: about 120 bins over the run."""
    return max(1.0, math.ceil(max(result.duration_s, 1.0) / 120))


def _minutes(result: RunResult, real_s: float) -> float:
    return round(real_s * result.squeeze.speed / 60, 3)


def counts_per_bin(times: Iterable[float], width: float, end: float) -> list[int]:
    bins = [0] * (int(end // width) + 1)
    for t in times:
        if 0 <= t <= end:
            bins[int(t // width)] += 1
    return bins


def waiting_over_time(result: RunResult) -> list[tuple[float, float]]:
    """People in line (joined, not yet admitted or gone) at each bin's start."""
    width, end = _width(result), result.duration_s
    changes: list[tuple[float, int]] = []
    for v in result.visitors:
        if v.join_done is None:
            continue
        changes.append((v.join_done, 1))
        left = v.admitted_at if v.admitted_at is not None else v.done_at
        if left is not None:
            changes.append((left, -1))
    changes.sort()
    points, level, i = [], 0, 0
    t = 0.0
    while t <= end:
        while i < len(changes) and changes[i][0] <= t:
            level += changes[i][1]
            i += 1
        points.append((_minutes(result, t), float(level)))
        t += width
    return points


def _rate_series(result: RunResult, times: Iterable[float]) -> list[tuple[float, float]]:
    width = _width(result)
    bins = counts_per_bin(times, width, result.duration_s)
    return [(_minutes(result, i * width), n / width) for i, n in enumerate(bins)]


def site_series(result: RunResult) -> tuple[list[Series], list[Series]]:
    """(latency p50/p95 in ms, requests and errors per second) of the booking site."""
    width = _width(result)
    grouped: dict[int, tuple[int, int, list[float]]] = {}
    for second, b in result.recorder.buckets[SITE].items():
        key = int(second // width)
        count, errors, lat = grouped.get(key, (0, 0, []))
        grouped[key] = (count + b.count, errors + b.errors, lat + b.latencies)
    keys = sorted(grouped)
    p50 = [(_minutes(result, k * width), (percentile(grouped[k][2], 50) or 0) * 1000) for k in keys]
    p95 = [(_minutes(result, k * width), (percentile(grouped[k][2], 95) or 0) * 1000) for k in keys]
    req = [(_minutes(result, k * width), grouped[k][0] / width) for k in keys]
    err = [(_minutes(result, k * width), grouped[k][1] / width) for k in keys]
    return (
        [Series("p50", p50), Series("p95", p95)],
        [Series("requests/s", req), Series("errors/s (5xx, 429, none)", err)],
    )


def wait_histogram(result: RunResult, bins: int = 24) -> list[tuple[float, float, float]]:
    waits = [w * result.squeeze.speed / 60 for v in result.visitors if (w := v.wait_s) is not None]
    if not waits:
        return []
    top = max(waits) or 1.0
    width = top / bins
    counts = [0] * bins
    for w in waits:
        counts[min(bins - 1, int(w / width))] += 1
    return [(i * width, (i + 1) * width, float(n)) for i, n in enumerate(counts)]


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = []
    for name, value in rows:
        shown = "–" if value is None else (f"{value:,}" if isinstance(value, int) else value)
        cells.append(f'<tr><th>{escape(name)}</th><td class="n">{escape(str(shown))}</td></tr>')
    return "<table>" + "".join(cells) + "</table>"


def _checks(summary: dict[str, Any]) -> str:
    rows = []
    for c in summary["checks"]:
        verdict = {True: ("pass", "pass"), False: ("fail", "FAIL"), None: ("na", "no data")}
        cls, word = verdict[c["passed"]]
        rows.append(
            f'<tr><td class="{cls}">{word}</td><td>{escape(c["name"])}</td>'
            f'<td class="n">{escape(str(c["value"]))}</td><td>{escape(c["target"])}</td></tr>'
        )
    head = "<tr><th></th><th>check</th><th>value</th><th>target</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _section(result: RunResult, summary: dict[str, Any]) -> str:
    f = summary["figures"]
    speed = result.squeeze.speed
    out = []
    if result.mode == "gateway":
        waiting = waiting_over_time(result)
        out.append(
            line_chart(
                "People waiting in line",
                [Series("waiting", waiting)],
                "scenario minutes after the opening",
                "people",
            )
        )
        admitted = _rate_series(result, (v.admitted_at for v in result.visitors if v.admitted_at))
        set_rate = (result.room or {}).get("rate_per_minute", 0.0) / 60
        setline = [(x, set_rate) for x, _ in admitted]
        out.append(
            line_chart(
                "Admissions: set rate and actual",
                [Series("actual", admitted), Series("set", setline, dashed=True)],
                "scenario minutes",
                "admitted per real second",
            )
        )
    latency, load = site_series(result)
    out.append('<div class="grid2">')
    out.append(line_chart("Booking site latency", latency, "scenario minutes", "ms"))
    out.append(line_chart("Booking site requests and errors", load, "scenario minutes", "per s"))
    out.append("</div>")
    hist = wait_histogram(result)
    if hist:
        out.append(bar_chart("Wait in line (scenario minutes)", hist, "minutes waited", "visitors"))
    points = [
        (v.promised_s * speed / 60, w * speed / 60)
        for v in result.visitors
        if (w := v.wait_s) is not None and v.promised_s is not None
    ]
    if points:
        errors = estimate_errors(result.visitors)
        out.append(
            scatter(
                f"Estimate error: promised vs actual wait ({len(errors)} visitors)",
                points,
                "promised at joining (scenario min)",
                "actual (scenario min)",
            )
        )
    outcomes = [
        (float(i), float(i + 1), float(f["outcomes"][name])) for i, name in enumerate(OUTCOMES)
    ]
    out.append(bar_chart("Outcomes: " + ", ".join(OUTCOMES), outcomes, "outcome", "visitors"))
    rows: list[tuple[str, Any]] = [
        ("visitors (bots)", f"{f['visitors']:,} ({f['bots']:,})"),
        *((f"outcome: {k}", v) for k, v in f["outcomes"].items()),
        ("admitted by the line", f["admitted"]),
        ("verified a phone", f["verified_phone"]),
        ("slots at the start", f["slots"]),
        ("bookings (site's count)", f["slots_booked_per_site"]),
        ("PIN requests", f["pin_requests"]),
        ("retries after errors", f["retries"]),
        ("order inversions", f["order_inversions"]),
        ("positions that went up", f["position_rises"]),
        ("visitors lost (place lapsed while checking as told)", f["lost_visitors"]),
        (
            "wait p50 / p90 / max (scenario min)",
            " / ".join(str(f["wait_scenario_min"][k]) for k in ("p50", "p90", "max")),
        ),
        (
            "estimate error, median |%| (signed)",
            f"{f['estimate_error_pct']['median_abs']} ({f['estimate_error_pct']['median_signed']})",
        ),
        ("site requests / errors", f"{f['site']['requests']:,} / {f['site']['errors']:,}"),
        ("site p50 / p95 ms", f"{f['site']['p50_ms']} / {f['site']['p95_ms']}"),
        ("most visitors held at once", f["driver"]["max_concurrent_visitors"]),
        ("driver lag p95 / max (s)", f"{f['driver']['lag_p95_s']} / {f['driver']['lag_max_s']}"),
    ]
    if f["inversion_examples"]:
        rows.append(("inversion examples (earlier, later)", json.dumps(f["inversion_examples"])))
    return _checks(summary) + _table(rows) + "".join(out)


def render(
    result: RunResult,
    summary: dict[str, Any],
    direct: tuple[RunResult, dict[str, Any]] | None = None,
    comparison: dict[str, Any] | None = None,
) -> str:
    s = result.scenario
    verdict = "PASSED" if summary["passed"] else "FAILED"
    everyone = round(len(result.visitors) / result.squeeze.scale)
    where = "Through the waiting room" if result.mode == "gateway" else "Straight at the site"
    title = f"Replay of {s.title}"
    head = (
        f"<h1>{escape(title)}</h1><p>{escape(s.source)}. Opening {escape(s.opening)} = minute 0. "
        f"Speed {result.squeeze.speed:g} (scenario seconds per real second), scale "
        f"{result.squeeze.scale:g} ({len(result.visitors):,} of {everyone:,} "
        f"people), {summary['duration_real_s']} real seconds. Verdict: "
        f'<span class="{"pass" if summary["passed"] else "fail"}">{verdict}</span></p>'
    )
    parts = [
        head,
        f"<h2>{where}</h2>",
    ]
    parts.append(_section(result, summary))
    if comparison is not None:
        parts.append("<h2>With and without the waiting room</h2>")
        keys = list(comparison["with_gateway"])
        rows = "".join(
            f'<tr><th>{escape(k)}</th><td class="n">{comparison["with_gateway"][k]}</td>'
            f'<td class="n">{comparison["straight_at_site"][k]}</td></tr>'
            for k in keys
        )
        parts.append(
            "<table><tr><th></th><th>with the line</th><th>straight at the site</th></tr>"
            f"{rows}</table>"
        )
    if direct is not None:
        parts.append("<h2>Straight at the site (no line)</h2>")
        parts.append(_section(*direct))
    settings = {"room": summary["room"], "site": summary["site_env"], "sms": summary["sms_changes"]}
    parts.append(
        "<h2>Settings of this run</h2><pre>" + escape(json.dumps(settings, indent=1)) + "</pre>"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style>'
        f"</head><body>{''.join(parts)}</body></html>"
    )
