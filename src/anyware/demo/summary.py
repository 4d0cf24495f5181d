"""Demo section: one screen with what every section showed, and how long it took."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anyware.demo import DemoContext

#: per section, the result fields worth a line (the rest stay in ``--json``)
HEADLINES: dict[str, tuple[str, ...]] = {
    "environment": ("backend", "device"),
    "train": ("first_loss", "last_loss", "tokens_per_s"),
    "migrate": ("exit_status", "redirects", "unsupported", "codemod_converted"),
    "trace": ("bug_located",),
    "ops": ("calls",),
    "comm": ("ok", "algo", "allreduce_ms", "gloo_ms"),
    "profile": ("mode", "breakdown_pct"),
    "moe": ("alerts", "first_divergence", "summary"),
}


def _fmt(value: Any, width: int = 70) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"  # the full value is in --json


def run(ctx: DemoContext) -> None:
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("section")
    table.add_column("seconds", justify="right")
    table.add_column("what it showed", overflow="fold")
    for section, result in ctx.results.items():
        if not isinstance(result, dict):
            continue
        keys = HEADLINES.get(section) or tuple(k for k in result if k != "seconds")[:4]
        shown = ", ".join(f"{k}={_fmt(result[k])}" for k in keys if k in result)
        table.add_row(section, _fmt(result.get("seconds", "")), shown)
    ctx.console.print(table)
