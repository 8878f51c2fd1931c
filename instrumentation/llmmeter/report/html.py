"""``llmmeter report top --by KEY --html FILE``: one self-contained page with charts, for people who look.

Three charts, drawn as inline SVG by this module (no CDN, no script library, opens offline):
cost per day stacked by the chosen key (its top values, the rest as "other"), the top-N bars, and input-token
p50 / p95 per route. The numbers come from the report queries (:mod:`llmmeter.report.queries`), the same rows
``--format json`` prints. A few lines of inline script only mark, once the page is laid out, how many chart
elements the browser drew (``data-drawn`` on each chart), which the headless-Chromium test reads back.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
OTHER = "other"
W, H = 760, 300
PAD_L, PAD_B, PAD_T = 70, 60, 20


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _money(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.0f}"


def bar_chart(rows: Sequence[dict[str, Any]], label: str, value: str, title: str) -> str:
    """Horizontal bars, one per row."""
    height = PAD_T + 26 * max(1, len(rows)) + 20
    top = max((r[value] or 0 for r in rows), default=0) or 1
    parts = [f'<svg class="chart" data-chart="top" width="{W}" height="{height}" role="img" '
             f'aria-label="{_esc(title)}">']
    for i, row in enumerate(rows):
        y = PAD_T + 26 * i
        width = max(1.0, (W - 260) * (row[value] or 0) / top)
        parts.append(f'<text x="150" y="{y + 16}" text-anchor="end">{_esc(row[label])}</text>')
        parts.append(f'<rect class="bar" x="160" y="{y}" width="{width:.1f}" height="20" '
                     f'fill="{PALETTE[0]}"><title>{_esc(row[label])}: {_money(row[value] or 0)}</title></rect>')
        parts.append(f'<text x="{165 + width:.1f}" y="{y + 16}">{_money(row[value] or 0)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_days(rows: Sequence[dict[str, Any]], keys: Sequence[str], title: str) -> str:
    """Vertical bars per day, stacked by key (rows: day, key, cost_usd)."""
    days = sorted({r["day"] for r in rows})
    colour = {key: PALETTE[i % len(PALETTE)] for i, key in enumerate([*keys, OTHER])}
    per_day: dict[str, dict[str, float]] = {day: {} for day in days}
    for r in rows:
        key = r["key"] if r["key"] in keys else OTHER
        per_day[r["day"]][key] = per_day[r["day"]].get(key, 0.0) + (r["cost_usd"] or 0.0)
    top = max((sum(v.values()) for v in per_day.values()), default=0) or 1
    slot = (W - PAD_L - 20) / max(1, len(days))
    plot_h = H - PAD_B - PAD_T
    parts = [f'<svg class="chart" data-chart="daily" width="{W}" height="{H + 20 * ((len(keys) + 4) // 5)}" '
             f'role="img" aria-label="{_esc(title)}">',
             f'<text x="{PAD_L - 6}" y="{PAD_T + 4}" text-anchor="end">{_money(top)}</text>',
             f'<text x="{PAD_L - 6}" y="{H - PAD_B}" text-anchor="end">$0</text>',
             f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - 10}" y2="{H - PAD_B}" stroke="#999"/>']
    for i, day in enumerate(days):
        x = PAD_L + i * slot + slot * 0.15
        y = H - PAD_B
        for key in [*keys, OTHER]:
            cost = per_day[day].get(key, 0.0)
            if cost <= 0:
                continue
            h = plot_h * cost / top
            y -= h
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                         f'fill="{colour[key]}"><title>{_esc(day)} {_esc(key)}: {_money(cost)}</title></rect>')
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{H - PAD_B + 16}" text-anchor="middle">'
                     f'{_esc(day[5:])}</text>')
    for i, key in enumerate([*keys, OTHER]):
        lx, ly = PAD_L + (i % 5) * 135, H - 20 + 20 * (i // 5)
        parts.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colour[key]}"/>'
                     f'<text x="{lx + 16}" y="{ly}">{_esc(key)[:16]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def token_bars(rows: Sequence[dict[str, Any]], title: str) -> str:
    """p50 and p95 input tokens per key (rows from the tokens report), as paired bars."""
    height = PAD_T + 34 * max(1, len(rows)) + 30
    top = max((r["input_p95"] or 0 for r in rows), default=0) or 1
    parts = [f'<svg class="chart" data-chart="tokens" width="{W}" height="{height}" role="img" '
             f'aria-label="{_esc(title)}">']
    for i, row in enumerate(rows):
        y = PAD_T + 34 * i
        parts.append(f'<text x="150" y="{y + 18}" text-anchor="end">{_esc(row["key"])}</text>')
        for j, (field, colour) in enumerate((("input_p50", PALETTE[0]), ("input_p95", PALETTE[1]))):
            width = max(1.0, (W - 280) * (row[field] or 0) / top)
            parts.append(f'<rect class="bar" x="160" y="{y + 14 * j}" width="{width:.1f}" height="12" '
                         f'fill="{colour}"><title>{field}: {row[field]:,}</title></rect>')
            parts.append(f'<text x="{165 + width:.1f}" y="{y + 11 + 14 * j}">{row[field]:,}</text>')
    y = PAD_T + 34 * len(rows) + 10
    parts.append(f'<rect x="160" y="{y}" width="12" height="12" fill="{PALETTE[0]}"/><text x="176" y="{y + 10}">p50'
                 f'</text><rect x="220" y="{y}" width="12" height="12" fill="{PALETTE[1]}"/>'
                 f'<text x="236" y="{y + 10}">p95</text>')
    parts.append("</svg>")
    return "".join(parts)


_SCRIPT = """
addEventListener('load', function () {
  var charts = document.querySelectorAll('svg.chart'), total = 0;
  charts.forEach(function (svg) {
    var drawn = 0;
    svg.querySelectorAll('rect.bar').forEach(function (r) {
      var box = r.getBoundingClientRect();
      if (box.width > 0 && box.height > 0) drawn++;
    });
    svg.setAttribute('data-drawn', drawn);
    total += drawn;
  });
  document.body.setAttribute('data-charts-drawn', charts.length + ':' + total);
});
"""


def page(title: str, sections: Sequence[tuple[str, str]], note: str) -> str:
    body = "".join(f"<section><h2>{_esc(h)}</h2>{svg}</section>" for h, svg in sections)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_esc(title)}</title><style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}"
        "svg text{font-size:12px;fill:#333}h2{font-size:16px;margin:24px 0 8px}section{max-width:800px}"
        f"</style></head><body><h1>{_esc(title)}</h1><p>{_esc(note)}</p>{body}"
        f"<script>{_SCRIPT}</script></body></html>"
    )
