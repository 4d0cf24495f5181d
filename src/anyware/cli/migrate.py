"""``anyware migrate check PATH... [--json FILE]`` and ``anyware migrate fix PATH... [--diff]``:
a static report of CUDA-specific code and its rewrite into device-agnostic PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Find CUDA-specific code and rewrite it into device-agnostic PyTorch.",
    no_args_is_help=True,
    add_completion=False,
)


def _render(report: dict[str, Any], *, fixed: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from anyware.cli._common import console

    t = Table(title="anyware migrate " + ("fix" if fixed else "check"), title_justify="left")
    for col in ("file", "converted", "unconverted", "hazards"):
        t.add_column(col, justify="right" if col != "file" else "left")
    for f in report["files"]:
        hazards = sum(1 for x in f["findings"] if x["kind"] == "hazard")
        t.add_row(f["path"], str(f["converted"]), str(f["unconverted"]), str(hazards))
    tot = report["totals"]
    t.add_row("[bold]total", str(tot["converted"]), str(tot["unconverted"]), "", end_section=True)
    console.print(t)
    for f in report["files"]:
        for x in f["findings"]:
            if x["fixed"]:
                continue
            console.print(
                escape(f"{f['path']}:{x['line']}: {x['code']} [{x['kind']}] {x['message']}"),
                soft_wrap=True,
            )
    for e in report.get("errors", []):
        console.print(
            escape(f"{e['path']}: not changed: {e['error']}"), style="red", soft_wrap=True
        )


def _paths(paths: list[Path]) -> list[Path]:
    from anyware.cli._common import fail

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"path(s) not found: {', '.join(missing)}; give Python files or directories")
    return paths


@app.command("check")
def check(
    paths: Annotated[list[Path], typer.Argument(help="Python files or directories.")],
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the JSON report here ('-' = stdout).")
    ] = None,
) -> None:
    """Report CUDA-specific code (converted / not converted, by kind) and semantic hazards;
    changes nothing."""
    from anyware.cli._common import emit_json
    from anyware.migrate.codemod import run_codemod

    report = run_codemod(_paths(paths), write=False)
    if json_out is not None:
        emit_json(report, json_out)
        if json_out == "-":
            return
    _render(report, fixed=False)


@app.command("fix")
def fix(
    paths: Annotated[list[Path], typer.Argument(help="Python files or directories.")],
    diff: Annotated[
        bool, typer.Option("--diff", help="Print a unified diff of each change.")
    ] = False,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the JSON report here ('-' = stdout).")
    ] = None,
) -> None:
    """Rewrite files in place (atomic, idempotent); files without CUDA code stay byte-identical."""
    from anyware.cli._common import emit_json, fail
    from anyware.migrate.codemod import run_codemod

    report = run_codemod(_paths(paths), write=True, diff=diff)
    if diff:
        for d in report.pop("diffs", []):
            typer.echo(d, nl=False)
    if json_out is not None:
        emit_json(report, json_out)
    if json_out != "-":
        _render(report, fixed=True)
    if report.get("errors"):
        fail(f"{len(report['errors'])} file(s) could not be rewritten and were left unchanged")
