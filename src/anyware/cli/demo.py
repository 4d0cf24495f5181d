"""``anyware demo``: the end-to-end showcase on the present device."""

from __future__ import annotations

from typing import Annotated

import typer

HELP = "Run the end-to-end showcase on the present device."


def command(
    device: Annotated[str | None, typer.Option(help="Backend to use (default: auto).")] = None,
    workdir: Annotated[str, typer.Option(help="Where the demo writes its files.")] = "runs/demo",
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these sections (repeatable).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    from pathlib import Path

    from anyware import demo, runtime
    from anyware.cli._common import console, emit_json, err_console

    runtime.select(device)  # fail early, with one line, on a bad --device
    results = demo.run(
        device=device,
        workdir=Path(workdir),
        console=err_console if json_out else console,
        only=only or None,
    )
    if json_out:
        emit_json(results)
