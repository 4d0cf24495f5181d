"""``anyware formats info [--json]``: every low-precision format's bits, range and precision."""

from __future__ import annotations

from typing import Annotated

import typer

HELP = "Low-precision formats (FP8, MX, INT4): bits, range, smallest values, precision."

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None)


def _num(v: float) -> str:
    return f"{v:.6g}" if 1e-3 <= abs(v) < 1e6 else f"{v:.3e}"


@app.command("info", help="Each format's bits, range, smallest normal and subnormal, precision.")
def info_command(
    json_out: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    from anyware.cli._common import console, emit_json
    from anyware.formats.spec import info

    rows = info()
    if json_out:
        emit_json(rows)
        return
    from rich.table import Table

    t = Table(title="anyware formats", title_justify="left")
    for col in ("format", "bits", "max", "min normal", "min subnormal", "precision", "Inf", "NaN"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        t.add_row(
            r["format"], str(r["bits"]), _num(r["max"]), _num(r["min_normal"]),
            _num(r["min_subnormal"]), _num(r["precision"]), "yes" if r["inf"] else "no", r["nan"],
        )  # fmt: skip
    console.print(t)
    seen: dict[str, list[str]] = {}
    for r in rows:
        seen.setdefault(r["scale"], []).append(r["format"])
    for scale, fmts in seen.items():
        console.print(f"scales of {', '.join(fmts)}: {scale}")
    console.print(
        "precision: relative spacing of neighbouring values at the top of a binade (2^-M)"
    )
