"""How a diff is shown: a rich terminal summary and a self-contained HTML page with the module
tree coloured by error (relative to each record's tolerance)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from anyware.trace.schema import module_label

if TYPE_CHECKING:
    from rich.console import Console

    from anyware.trace.compare import DiffResult


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "inf" if x >= 1e300 else f"{x:.4g}"
    return str(x)


def print_summary(res: DiffResult, console: Console, a: str, b: str) -> None:
    from rich.table import Table

    console.print(f"[bold]trace diff[/] {a}  vs  {b}")
    mode = (
        "precision change (judged in the lower dtype)" if res.precision_change else "same precision"
    )
    console.print(
        f"{res.compared:,} records compared, {res.unmatched:,} unmatched, {res.divergent:,} beyond "
        f"tolerance; {mode}{', calibrated' if res.calibrated else ''}; ranks {res.ranks}"
    )
    if res.structure_differs_at is not None:
        console.print(f"[red]structure differs at {module_label(res.structure_differs_at)}[/]")
    for note in res.notes:
        console.print(f"[dim]{note}[/]")
    fd = res.first_divergence
    if fd is None:
        console.print("[green]no divergence beyond tolerance[/]")
    else:
        m = fd["metrics"]
        console.print(
            f"[bold red]first divergence[/]: rank {fd['rank']} step {fd['step']} {fd['phase']} "
            f"[bold]{module_label(fd['module'])}[/] {fd['op']} call {fd['call_index']} ({fd['slot']})"
        )
        console.print(f"  at {fd['location'] or '(no Python frame)'}")
        if m.get("note"):
            console.print(f"  {m['note']}")
        shown = (
            "rel_l2",
            "cosine",
            "tolerance",
            "max_abs_err",
            "max_abs_err_lb",
            "dtype_a",
            "dtype_b",
            "nan_a",
            "nan_b",
            "inf_a",
            "inf_b",
        )
        console.print("  " + ", ".join(f"{k} {_fmt(m[k])}" for k in shown if k in m))
    for side, nf in res.nonfinite.items():
        if nf is not None:
            console.print(
                f"[yellow]first NaN/Inf in run {side.upper()}[/]: rank {nf['rank']} step {nf['step']} "
                f"{nf['phase']} {module_label(nf['module'])} {nf['op']} (nan {nf['nan']}, inf {nf['inf']}) "
                f"at {nf['location'] or '?'}"
            )
    bad = sorted((x for x in res.modules if x["divergent"]), key=lambda x: -x["max_ratio"])[:10]
    if bad:
        t = Table(
            title="modules with records beyond tolerance (error ÷ tolerance; inherited unless named above)"
        )
        t.add_column("module")
        t.add_column("max ratio", justify="right")
        t.add_column("records beyond", justify="right")
        for x in bad:
            t.add_row(module_label(x["module"]), _fmt(float(x["max_ratio"])), str(x["divergent"]))
        console.print(t)


def _colour(ratio: float) -> str:
    if ratio <= 0:
        return "#e8f5e9"
    if ratio <= 1:
        return "#c8e6c9" if ratio < 0.5 else "#fff59d"
    if ratio <= 10:
        return "#ffcc80"
    return "#ef9a9a"


def to_html(res: DiffResult, a: str, b: str) -> str:
    """One HTML file, no scripts or external assets."""
    tree: dict[str, Any] = {}
    for rec in res.modules:
        node = tree
        parts = rec["module"].split(".") if rec["module"] else []
        for p in parts:
            node = node.setdefault(p, {})
        node["__rec__"] = rec

    def render(node: dict[str, Any], path: str) -> str:
        rec = node.get("__rec__", {"max_ratio": 0.0, "divergent": 0, "records": 0})
        ratio = float(rec["max_ratio"])
        label = html.escape(path.rsplit(".", 1)[-1] if path else "(root)")
        info = f"err/tol {_fmt(ratio)} · {rec['divergent']}/{rec['records']} beyond"
        kids = "".join(
            render(v, f"{path}.{k}" if path else k) for k, v in node.items() if k != "__rec__"
        )
        sub = f"<ul>{kids}</ul>" if kids else ""
        return (
            f'<li><span class="m" style="background:{_colour(ratio)}" title="{html.escape(path)}">'
            f"{label}</span> <small>{info}</small>{sub}</li>"
        )

    fd = res.first_divergence
    if fd is None:
        head = "<p class='ok'>No divergence beyond tolerance.</p>"
    else:
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
            for k, v in fd["metrics"].items()
        )
        head = (
            f"<h2>First divergence</h2><p><b>{html.escape(module_label(fd['module']))}</b> "
            f"<code>{html.escape(fd['op'])}</code> · {fd['phase']} · step {fd['step']} · rank "
            f"{fd['rank']} · call {fd['call_index']} · <code>{html.escape(fd['location'])}</code></p>"
            f"<table>{rows}</table>"
        )
    structure = (
        f"<p class='bad'>Structure differs at {html.escape(module_label(res.structure_differs_at))}</p>"
        if res.structure_differs_at is not None
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>anyware trace diff</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}ul{{list-style:none;padding-left:1.2em}}
.m{{padding:1px 6px;border-radius:4px;font-family:monospace}}small{{color:#555}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:2px 8px;text-align:left}}
.ok{{color:#2e7d32}}.bad{{color:#c62828}}</style></head><body>
<h1>anyware trace diff</h1><p><code>{html.escape(a)}</code> vs <code>{html.escape(b)}</code>:
{res.compared:,} records compared, {res.unmatched:,} unmatched, {res.divergent:,} beyond tolerance.</p>
{structure}{head}
<h2>Module tree</h2><p><small>colour: worst error ÷ tolerance in the module
(green ≤ 0.5, yellow ≤ 1, orange ≤ 10, red &gt; 10)</small></p><ul>{render(tree, "")}</ul>
</body></html>
"""
