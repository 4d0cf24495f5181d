"""``anyware ops list [--json]`` and ``anyware ops bench``: the operator library's views."""

from __future__ import annotations

from typing import Annotated

import typer

HELP = "The operator library: list ops and their active implementation, or benchmark them."

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None)


@app.command("list", help="Every op, its implementations, and which one is active here and why.")
def list_command(
    json_out: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
    device: Annotated[str | None, typer.Option(help="Backend to select (default: auto).")] = None,
) -> None:
    from anyware import runtime
    from anyware.cli._common import console, emit_json, fail

    runtime.set_current(device) if device else runtime.current()
    from anyware import ops

    try:
        rows = ops.describe()
    except ValueError as e:  # a bad ANYWARE_OPS_IMPL
        fail(str(e))
    if json_out:
        emit_json([{k: r[k] for k in ("name", "impls", "active", "reason")} for r in rows])
        return
    from rich.table import Table

    t = Table(title=f"anyware ops on {runtime.current().name}", title_justify="left")
    for col in ("op", "impls", "active", "why", "backward"):
        t.add_column(col, no_wrap=col != "why")
    for r in rows:
        t.add_row(r["name"], ", ".join(r["impls"]), r["active"], r["reason"], r["backward"])
    console.print(t)


@app.command("bench", help="Time each op's Triton kernel against torch/aten on this device.")
def bench_command(
    op: Annotated[
        list[str] | None, typer.Option("--op", help="Only these ops (repeatable).")
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write results as JSON to FILE (- for stdout).")
    ] = None,
    small: Annotated[
        bool | None, typer.Option("--small/--large", help="Problem sizes (default: small on cpu).")
    ] = None,
    reps: Annotated[int, typer.Option(help="Timed runs per case (the median is reported).")] = 10,
    device: Annotated[str | None, typer.Option(help="Backend to select (default: auto).")] = None,
) -> None:
    from anyware import runtime
    from anyware.cli._common import console, emit_json, err_console, fail

    backend = runtime.set_current(device) if device else runtime.current()
    assert backend is not None
    from rich.progress import Progress

    from anyware.ops import bench, get_op

    names = op or bench.all_ops()
    for name in names:
        try:
            get_op(name)
        except KeyError as e:
            fail(str(e.args[0]))
    if reps < 1:
        fail(f"--reps must be ≥ 1, got {reps}")
    use_small = backend.device_type == "cpu" if small is None else small
    results = []
    with Progress(console=err_console if json_out == "-" else console, transient=True) as bar:
        task = bar.add_task("benchmarking", total=len(names))
        for name in names:
            for case in bench.cases(name, small=use_small):
                results.append(bench.measure(case, reps=reps))
            bar.update(task, advance=1)
    if json_out is not None:
        emit_json({"device": backend.name, "results": results}, json_out)
        if json_out == "-":
            return
    from rich.table import Table

    t = Table(title=f"anyware ops bench on {backend.name}", title_justify="left")
    for col in ("op", "case", "unit", "aten", "reference", "triton", "ratio", "note"):
        t.add_column(col)
    for r in results:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        t.add_row(
            r["op"],
            r["case"],
            r["unit"],
            bench.fmt_rate(r["aten"]),
            bench.fmt_rate(r["reference"]),
            bench.fmt_rate(r["triton"]),
            ratio,
            r["note"],
        )
    console.print(t)
