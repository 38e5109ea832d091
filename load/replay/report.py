"""report.html: one self-contained page (inline CSS and SVG, no scripts, no external assets).

The page answers, in order: did it pass; what did the line do (people waiting, admissions
set against the gateway's own count, order kept, places lost, the wait and its estimate);
did the driver really hold the crowd; and, with --compare, what the gateway changed, the two
runs side by side on the same scales.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from . import series as sr
from .record import OUTCOMES
from .run import GATEWAY, RunResult
from .summary import estimate_errors
from .svg import Series, bar_chart, labelled_bars, line_chart, scatter

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
h3{font-size:1em;margin:1.2em 0 .2em}
table{border-collapse:collapse;margin:.5em 0}
td,th{padding:.2em .7em;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0a6b2c;font-weight:600}.fail{color:#b00020;font-weight:600}.na{color:#666}
svg{width:100%;height:auto;margin:.3em 0 .8em}svg .title{font-weight:600;font-size:13px}
svg .tick,svg .label{font-size:11px;fill:#444}svg .grid{stroke:#e6e6e6}
.l0{stroke:#1f5fa8;stroke-width:1.8}.l1{stroke:#d2691e;stroke-width:1.8}
.l2{stroke:#2e8b57;stroke-width:1.8}
.s0{fill:#1f5fa8}.s1{fill:#d2691e}.s2{fill:#2e8b57}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:0 1.5em}
.grid2>div>h3{text-align:center}
@media (max-width:760px){.grid2{grid-template-columns:1fr}}
"""
X = "scenario minutes after the opening"
VERDICT = {True: ("pass", "pass"), False: ("fail", "FAIL"), None: ("na", "n/a")}


def _shown(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:g}"
    return str(value)


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = [
        f'<tr><th>{escape(name)}</th><td class="n">{escape(_shown(value))}</td></tr>'
        for name, value in rows
    ]
    return "<table>" + "".join(cells) + "</table>"


def _checks(summary: dict[str, Any]) -> str:
    rows = []
    for c in summary["checks"]:
        cls, word = VERDICT[c["passed"]]
        rows.append(
            f'<tr><td class="{cls}">{word}</td><td>{escape(c["name"])}</td>'
            f'<td class="n">{escape(_shown(c["value"]))}</td><td>{escape(c["target"])}</td></tr>'
        )
    head = "<tr><th></th><th>check of this run</th><th>value</th><th>target</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _launch_day(summary: dict[str, Any]) -> str:
    rows = []
    for fact in summary["launch_day"]:
        cls, word = VERDICT[fact["passed"]]
        rows.append(
            f'<tr><td class="{cls}">{word}</td><td>{escape(fact["what"])}</td>'
            f'<td class="n">{escape(_shown(fact["replay"]))}</td>'
            f'<td class="n">{escape(_shown(fact["model"]))}</td>'
            f"<td>{escape(fact['target'])}</td></tr>"
        )
    if not rows:
        return ""
    head = (
        "<tr><th></th><th>launch-day fact (full-scale figures)</th><th>this replay</th>"
        "<th>model</th><th>target</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _figures(summary: dict[str, Any]) -> str:
    f = summary["figures"]
    d = f["driver"]
    late = d["lateness_s"]
    rows: list[tuple[str, Any]] = [
        ("visitors (bots)", f"{f['visitors']:,} ({f['bots']:,})"),
        ("admitted by the line (noticed by visitors)", f["admitted"]),
        (
            "booked / registered without a date",
            f"{f['booked']:,} / {f['registered_without_date']:,}",
        ),
        (
            "gave up / turned away by errors",
            f"{f['outcomes']['gave_up']:,} / {f['outcomes']['error']:,}",
        ),
        (
            "order inversions / positions that went up",
            f"{f['order_inversions']} / {f['position_rises']}",
        ),
        ("visitors lost (place lapsed while checking as told)", f["lost_visitors"]),
        (
            "wait p50 / p90 / max (scenario min)",
            " / ".join(_shown(f["wait_scenario_min"][k]) for k in ("p50", "p90", "max")),
        ),
        ("estimate error, median |%|", f["estimate_error_pct"]["median_abs"]),
        ("site requests / errors", f"{f['site']['requests']:,} / {f['site']['errors']:,}"),
        ("site p50 / p95 ms", f"{_shown(f['site']['p50_ms'])} / {_shown(f['site']['p95_ms'])}"),
        ("most visitors present / held on schedule", f"{d['max_present']:,} / {d['max_held']:,}"),
        ("requests sent (per real second)", f"{d['requests']:,} ({_shown(d['requests_per_s'])})"),
        (
            "lateness p50 / p99 / max (s)",
            " / ".join(_shown(late[k]) for k in ("p50", "p99", "max")),
        ),
    ]
    counters = f.get("gateway_counters")
    if counters:
        rows.append(
            (
                "gateway: admitted / no-shows / swept out",
                f"{counters['admitted']:,} / {counters['no_shows']:,} / {counters['abandoned']:,}",
            )
        )
    cores = f["cpu"]["cores"]
    if cores:
        rows.append(("CPU cores used", ", ".join(f"{k} {v:g}" for k, v in cores.items())))
    return _table(rows)


def _chart(
    title: str, lines: Sequence[Series], y_label: str, x_end: float, y_max: float | None = None
) -> str:
    return line_chart(title, lines, X, y_label, y_max=y_max, x_max=x_end)


def _line_charts(result: RunResult, x_end: float) -> list[str]:
    out = ['<div class="grid2">']
    out.append(
        _chart(
            "People waiting in line",
            [
                Series("as the gateway counts them", sr.gateway_waiting(result)),
                Series("as the visitors saw it", sr.waiting_over_time(result), dashed=True),
            ],
            "people",
            x_end,
        )
    )
    out.append(
        _chart(
            "Admissions: set rate and actual (gateway's counter)",
            [
                Series("actual", sr.gateway_rate(result, lambda s: s.admitted)),
                Series("set", sr.set_rate(result), dashed=True),
                Series(
                    "noticed by visitors",
                    sr.rate(result, (v.admitted_at for v in result.visitors if v.admitted_at)),
                ),
            ],
            "admitted per real second",
            x_end,
        )
    )
    out.append(
        _chart(
            "Order inversions so far",
            [Series("admitted ahead of an earlier arrival", sr.inversions_over_time(result))],
            "visitors",
            x_end,
        )
    )
    out.append(
        _chart(
            "Visitors lost so far",
            [Series("place lapsed while checking as told", sr.lost_over_time(result))],
            "visitors",
            x_end,
        )
    )
    hist = sr.wait_histogram(result)
    points = sr.promised_vs_actual(result)
    if hist:
        out.append(bar_chart("Wait in line", hist, "minutes waited (scenario)", "visitors"))
    if points:
        out.append(
            scatter(
                f"Estimate error: promised vs actual wait ({len(estimate_errors(result.visitors))}"
                " visitors)",
                points,
                "promised at joining (scenario min)",
                "actual (scenario min)",
            )
        )
    out.append("</div>")
    return out


def _driver_charts(result: RunResult, x_end: float) -> list[str]:
    present, held = sr.driver_series(result)
    sent, late = sr.request_series(result)
    return [
        '<div class="grid2">',
        _chart(
            "Visitors the driver held",
            [Series("present", present), Series("held on schedule", held, dashed=True)],
            "visitors",
            x_end,
        ),
        _chart(
            "Requests the driver sent",
            [Series("sent", sent), Series("sent over 1 s late", late)],
            "per real second",
            x_end,
        ),
        "</div>",
    ]


def _outcome_bars(summary: dict[str, Any], title: str, y_max: float | None = None) -> str:
    outcomes = summary["figures"]["outcomes"]
    bars = [(name.replace("_", " "), float(outcomes[name])) for name in OUTCOMES]
    return labelled_bars(title, bars, "visitors", y_max)


def _site_pair(
    result: RunResult, x_end: float, y_max: tuple[float, float] | None = None
) -> list[str]:
    (p50, p95), (requests, errors) = sr.site_series(result)
    lat_max, load_max = y_max or (None, None)
    return [
        _chart(
            "Booking site latency", [Series("p50", p50), Series("p95", p95)], "ms", x_end, lat_max
        ),
        _chart(
            "Booking site requests and errors",
            [Series("requests", requests), Series("errors (5xx, 429, none)", errors)],
            "per real second",
            x_end,
            load_max,
        ),
    ]


def _side_by_side(
    result: RunResult,
    summary: dict[str, Any],
    direct: RunResult,
    direct_summary: dict[str, Any],
    comparison: dict[str, Any],
) -> str:
    keys = list(comparison["with_gateway"])
    verdicts = "".join(
        f'<tr><td class="{VERDICT[c["passed"]][0]}">{VERDICT[c["passed"]][1]}</td>'
        f'<td>{escape(c["name"])}</td><td class="n">{escape(_shown(c["value"]))}</td>'
        f"<td>{escape(c['target'])}</td></tr>"
        for c in comparison["checks"]
    )
    rows = "".join(
        f"<tr><th>{escape(k.replace('_', ' '))}</th>"
        f'<td class="n">{escape(_shown(comparison["with_gateway"][k]))}</td>'
        f'<td class="n">{escape(_shown(comparison["straight_at_site"][k]))}</td></tr>'
        for k in keys
    )
    parts = [
        "<h2>With and without the waiting room</h2>",
        f"<table>{verdicts}</table>",
        "<table><tr><th></th><th>with the line</th><th>straight at the site</th></tr>"
        f"{rows}</table>",
    ]
    # The same crowd twice: every pair of charts shares its scale.
    outcome_max = max(max(s["figures"]["outcomes"].values()) for s in (summary, direct_summary))
    both = [sr.site_series(r) for r in (result, direct)]
    lat_max = max(sr.peak(s[0][1]) for s in both)
    load_max = max(max(sr.peak(s[1][0]), sr.peak(s[1][1])) for s in both)
    x_end = max(_x_end(result), _x_end(direct))
    scales = (lat_max, load_max)
    left = [_outcome_bars(summary, "Outcomes", outcome_max), *_site_pair(result, x_end, scales)]
    right = [
        _outcome_bars(direct_summary, "Outcomes", outcome_max),
        *_site_pair(direct, x_end, scales),
    ]
    parts.append(
        '<div class="grid2"><div><h3>With the waiting room</h3>'
        + "".join(left)
        + "</div><div><h3>Straight at the site</h3>"
        + "".join(right)
        + "</div></div>"
    )
    return "".join(parts)


def _x_end(result: RunResult) -> float:
    return sr.minutes(result, result.duration_s)


def _run_section(result: RunResult, summary: dict[str, Any], compared: bool) -> str:
    x_end = _x_end(result)
    parts = [_checks(summary), _figures(summary)]
    if result.mode == GATEWAY:
        parts += _line_charts(result, x_end)
    if not compared:
        parts += ['<div class="grid2">', _outcome_bars(summary, "Outcomes")]
        parts += [*_site_pair(result, x_end), "</div>"]
    parts += _driver_charts(result, x_end)
    return "".join(parts)


def render(
    result: RunResult,
    summary: dict[str, Any],
    direct: tuple[RunResult, dict[str, Any]] | None = None,
    comparison: dict[str, Any] | None = None,
) -> str:
    s = result.scenario
    passed = summary["passed"] and all(
        c["passed"] is not False for c in (comparison or {}).get("checks", [])
    )
    verdict = "PASSED" if passed else "FAILED"
    everyone = round(len(result.visitors) / result.squeeze.scale)
    where = "Through the waiting room" if result.mode == GATEWAY else "Straight at the site"
    title = f"Replay of {s.title}"
    head = (
        f"<h1>{escape(title)}</h1><p>{escape(s.source)}. Opening {escape(s.opening)} = minute 0. "
        f"Speed {result.squeeze.speed:g} (scenario seconds per real second), scale "
        f"{result.squeeze.scale:g} ({len(result.visitors):,} of {everyone:,} "
        f"people), {summary['duration_real_s']} real seconds. Verdict: "
        f'<span class="{"pass" if passed else "fail"}">{verdict}</span></p>'
    )
    parts = [head, "<h2>Launch-day facts</h2>", _launch_day(summary)]
    compared = direct is not None and comparison is not None
    if direct is not None and comparison is not None:
        parts.append(_side_by_side(result, summary, direct[0], direct[1], comparison))
    parts += [f"<h2>{where}</h2>", _run_section(result, summary, compared)]
    if direct is not None:
        parts += ["<h2>Straight at the site (no line)</h2>", _run_section(*direct, compared)]
    settings = {
        "room": summary["room"],
        "site": summary["site_env"],
        "sms": summary["sms_changes"],
    }
    parts.append(
        "<h2>Settings of this run</h2><pre>" + escape(json.dumps(settings, indent=1)) + "</pre>"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style>'
        f"</head><body>{''.join(parts)}</body></html>"
    )
