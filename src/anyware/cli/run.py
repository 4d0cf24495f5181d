"""``anyware run [--device D] [--nproc N] [--monitor] [--trace DIR] [--profile DIR] [--report FILE]
[--strict] (SCRIPT | -m MODULE) [ARGS...]``: run CUDA-written code on the present device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = (
    "Run a CUDA-written PyTorch program unchanged on the present device (the migration shim is "
    "active in every process it starts); exit status is the program's."
)
CONTEXT = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
    "allow_interspersed_args": False,
}


def command(
    ctx: typer.Context,
    device: Annotated[
        str | None, typer.Option("--device", help="Backend to run on (cpu, fake, npu, ...).")
    ] = None,
    nproc: Annotated[int, typer.Option("--nproc", help="Ranks, launched through torchrun.")] = 1,
    module: Annotated[str | None, typer.Option("-m", help="Run a module, like python -m.")] = None,
    monitor: Annotated[bool, typer.Option("--monitor", help="Start the health monitor.")] = False,
    events: Annotated[
        Path | None, typer.Option("--events", help="Monitor JSONL directory.")
    ] = None,
    trace: Annotated[Path | None, typer.Option("--trace", help="Record a precision trace.")] = None,
    trace_level: Annotated[
        str, typer.Option("--trace-level", help="Trace level: module, op or mix.")
    ] = "module",
    profile: Annotated[
        Path | None, typer.Option("--profile", help="Write profiler traces here.")
    ] = None,
    profile_steps: Annotated[
        str | None, typer.Option("--profile-steps", help="Steps to profile, A:B.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the migration report JSON here.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="What cannot be honoured is an error.")
    ] = False,
) -> None:
    from anyware.cli._common import fail
    from anyware.migrate.launch import LaunchError, RunOptions, run

    target = ["-m", module, *ctx.args] if module else list(ctx.args)
    try:
        opts = RunOptions(
            target=target,
            device=device,
            nproc=nproc,
            monitor=monitor,
            events=events,
            trace=trace,
            trace_level=trace_level,
            profile=profile,
            profile_steps=profile_steps,
            report=report,
            strict=strict,
        )
        code = run(opts)
    except LaunchError as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot start the program: {e}")
    raise typer.Exit(code)
