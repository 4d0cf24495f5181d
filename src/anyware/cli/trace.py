"""``anyware trace``: record a run's numerics and find where two runs first diverge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = "Precision tracer: record per-op numerics, diff two runs, find the first divergence."

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None)


@app.command(
    "record",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Record COMMAND's numerics into DIR (same as `anyware run --trace DIR`).",
)
def record(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Trace directory to write.")],
    level: Annotated[str, typer.Option("--level", help="module, op or mix.")] = "module",
    device: Annotated[str | None, typer.Option("--device", help="Backend to run on.")] = None,
    nproc: Annotated[int, typer.Option("--nproc", help="Processes (ranks) to start.")] = 1,
    tensors: Annotated[
        str | None,
        typer.Option("--tensors", help="Also save whole tensors of modules matching this glob."),
    ] = None,
) -> None:
    import os

    from anyware.cli._common import fail
    from anyware.trace.schema import Level

    command = list(ctx.args)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        fail(
            "give the command to record after '--', e.g. `anyware trace record --out runs/a -- python train.py`"
        )
    try:
        Level(level)
    except ValueError:
        fail(f"--level {level!r} is not a trace level; use module, op or mix")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a directory for the trace")
    if tensors:
        os.environ["ANYWARE_TRACE_TENSORS"] = tensors
    try:
        from anyware.migrate.launch import RunOptions, run
    except ImportError:
        fail("`anyware trace record` needs anyware.migrate.launch, which is not installed here")
    rc = run(RunOptions(target=command, device=device, nproc=nproc, trace=out, trace_level=level))
    raise typer.Exit(rc)


@app.command("diff", help="Compare two traces; report the first op where they diverge.")
def diff(
    run_a: Annotated[Path, typer.Argument(help="Reference trace directory.")],
    run_b: Annotated[Path, typer.Argument(help="Trace directory to check.")],
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the JSON report here ('-': stdout).")
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report.")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option("--map", help='JSON {"module in A": "module in B"} for renamed modules.'),
    ] = None,
    calibrate: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--calibrate",
            help="Reference pair (two fp32 runs, or fp32 and fp64) to scale tolerances.",
        ),
    ] = None,
    precision: Annotated[str, typer.Option("--precision", help="auto, higher or lower.")] = "auto",
) -> None:
    import json

    from anyware.cli._common import console, emit_json, err_console, fail
    from anyware.trace.compare import diff_runs
    from anyware.trace.report import print_summary, to_html
    from anyware.trace.schema import TraceError

    mp = None
    if mapping is not None:
        try:
            mp = json.loads(mapping.read_text())
        except (OSError, json.JSONDecodeError) as e:
            fail(f"--map {mapping} is not a readable JSON file ({e})")
        if not isinstance(mp, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mp.items()
        ):
            fail(f'--map {mapping} must be a JSON object {{"module in A": "module in B"}}')
    try:
        with err_console.status("comparing traces..."):
            res = diff_runs(
                run_a,
                run_b,
                mapping=mp,
                precision=precision,
                calibrate=(str(calibrate[0]), str(calibrate[1])) if calibrate else None,
            )
    except (TraceError, ValueError) as e:
        fail(str(e))
    if html_out is not None:
        from anyware._io import atomic_write_text

        atomic_write_text(html_out, to_html(res, str(run_a), str(run_b)))
    if json_out is not None:
        emit_json(res.to_json(), json_out)
    if json_out != "-":
        print_summary(res, console, str(run_a), str(run_b))
        if html_out is not None:
            console.print(f"HTML report: {html_out}")


@app.command("nonfinite", help="Which rank, step and op first produced a NaN or Inf.")
def nonfinite(
    run: Annotated[Path, typer.Argument(help="Trace directory.")],
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write JSON here ('-': stdout).")
    ] = None,
) -> None:
    from anyware.cli._common import console, emit_json, fail
    from anyware.trace.load import load_run
    from anyware.trace.schema import TraceError, module_label
    from anyware.trace.search import first_nonfinite

    try:
        nf = first_nonfinite(load_run(run))
    except TraceError as e:
        fail(str(e))
    if json_out is not None:
        emit_json({"first_nonfinite": nf}, json_out)
        if json_out == "-":
            return
    if nf is None:
        console.print(f"{run}: no NaN or Inf recorded")
    else:
        console.print(
            f"first NaN/Inf: rank {nf['rank']} step {nf['step']} {nf['phase']} {module_label(nf['module'])} "
            f"{nf['op']} (nan {nf['nan']}, inf {nf['inf']}) at {nf['location'] or '?'}"
        )
