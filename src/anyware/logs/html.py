"""A self-contained HTML report: root cause, a timeline of findings across ranks, clusters.

No scripts, no CDN: one file with inline CSS and SVG, so it opens from a ticket attachment on an
air-gapped cluster. Each marker carries a ``<title>`` (hover shows the line).
"""

from __future__ import annotations

import html
import time
from typing import Any

_COLORS = {"origin": "#d62728", "victim": "#ff7f0e", "report": "#7f7f7f"}
_MAX_LANES = 64


def _fmt_t(t: float | None) -> str:
    if t is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def _timeline_svg(report: dict[str, Any]) -> str:
    events = report["timeline"]
    rc = report["root_cause"]
    if not events:
        return "<p>No timestamped findings to draw.</p>"
    lanes: list[int] = []
    if rc["rank"] is not None:
        lanes.append(rc["rank"])
    for e in events:
        if e["rank"] not in lanes and len(lanes) < _MAX_LANES:
            lanes.append(e["rank"])
    lanes.sort()
    t_lo = min(e["t"] for e in events)
    t_hi = max(e["t"] for e in events)
    span = max(t_hi - t_lo, 1e-3)
    width, left, lane_h = 1000, 90, 16
    height = lane_h * len(lanes) + 40
    y_of = {r: 20 + i * lane_h for i, r in enumerate(lanes)}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + left + 20}" '
        f'height="{height}" font-family="sans-serif" font-size="11">'
    ]
    for r, y in y_of.items():
        bold = ' font-weight="bold"' if r == rc["rank"] else ""
        parts.append(
            f'<text x="4" y="{y + 4}"{bold}>rank {r}</text>'
            f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" stroke="#eee"/>'
        )
    for e in events:
        lane = y_of.get(e["rank"])
        if lane is None:
            continue
        x = left + (e["t"] - t_lo) / span * width
        a = e["attrs"]
        warn = a.get("severity") == "warning"
        color = "#bcbd22" if warn else _COLORS.get(a.get("role", ""), "#1f77b4")
        tip = html.escape(
            f"{_fmt_t(e['t'])} rank {e['rank']} {e['name']} {a.get('category')}: "
            f"{a.get('message', '')}"
        )
        parts.append(
            f'<circle cx="{x:.1f}" cy="{lane}" r="4" fill="{color}"><title>{tip}</title></circle>'
        )
    if rc["time"] is not None and rc["rank"] in y_of:
        x = left + (rc["time"] - t_lo) / span * width
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y_of[rc["rank"]]}" r="8" fill="none" '
            'stroke="#000" stroke-width="2"><title>root cause</title></circle>'
        )
    parts.append(
        f'<text x="{left}" y="{height - 6}">{html.escape(_fmt_t(t_lo))}</text>'
        f'<text x="{left + width}" y="{height - 6}" text-anchor="end">'
        f"{html.escape(_fmt_t(t_hi))}</text></svg>"
    )
    return "".join(parts)


def render(report: dict[str, Any]) -> str:
    """The HTML page for an ``analyze`` JSON report."""
    rc = report["root_cause"]
    esc = html.escape
    evidence = "".join(
        f"<tr><td>{esc(str(f['rank']))}</td><td>{esc(_fmt_t(f['time']))}</td>"
        f"<td>{esc(f['code'])}</td><td>{esc(f['category'])}</td><td>{esc(f['role'])}</td>"
        f"<td><code>{esc(f['message'])}</code></td></tr>"
        for f in rc["evidence"]
    )
    cats = "".join(
        f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in report["categories"].items()
    )
    clusters = "".join(
        f"<tr><td>{c['score']}</td><td>{c['count']}</td><td>{c['ranks']}</td>"
        f"<td>{'yes' if c['new_after_failure'] else ''}</td><td><code>{esc(c['template'])}</code>"
        "</td></tr>"
        for c in report["clusters"][:30]
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>anyware logs: {esc(str(rc["category"]))}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse;
margin:8px 0 20px}} td,th{{border:1px solid #ddd;padding:3px 8px;font-size:13px;
text-align:left;vertical-align:top}} code{{white-space:pre-wrap;word-break:break-all}}
.rc{{background:#fff4f4;border:1px solid #d62728;padding:12px;border-radius:6px}}</style>
</head><body>
<h1>Log analysis</h1>
<div class="rc" id="root-cause"><b>Root cause:</b> {esc(str(rc["category"]))} on rank
{esc(str(rc["rank"]))} (host {esc(str(rc["host"]))}) at {esc(_fmt_t(rc["time"]))},
confidence {rc["confidence"]}<br><code>{esc(rc["message"])}</code><br>
<small>{esc(rc["reason"])} — {esc(str(rc["file"]))}:{esc(str(rc["line"]))}</small></div>
<p>{report["files"]} files, {report["lines"]:,} lines, {report["bytes"] / 1e6:,.1f} MB in
{report["seconds"]} s.</p>
<h2>Timeline</h2>
<p><span style="color:#d62728">●</span> origin <span style="color:#ff7f0e">●</span> victim
<span style="color:#7f7f7f">●</span> launcher report
<span style="color:#bcbd22">●</span> warning</p>
{_timeline_svg(report)}
<h2>Evidence</h2><table><tr><th>rank</th><th>time</th><th>code</th><th>category</th>
<th>role</th><th>line</th></tr>{evidence}</table>
<h2>Categories</h2><table><tr><th>category</th><th>findings</th></tr>{cats}</table>
<h2>Clusters (most anomalous first)</h2><table><tr><th>score</th><th>count</th><th>ranks</th>
<th>new after failure</th><th>template</th></tr>{clusters}</table>
</body></html>
"""
