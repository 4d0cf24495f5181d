"""``anyware profile record|summary|view|export``: capture torch.profiler traces of a program
and explain where its time went."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from anyware.profile.model import ProfileReport

app = typer.Typer(
    help="Capture profiles on any backend and see where the time went.",
    no_args_is_help=True,
    add_completion=False,
)

CONTEXT = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
    "allow_interspersed_args": False,
}


@app.command("record", context_settings=CONTEXT)
def record(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory for one trace per rank.")],
    steps: Annotated[
        str | None,
        typer.Option("--steps", help="Steps to profile, A:B (B exclusive); default 2:6."),
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="Backend to run on.")] = None,
    nproc: Annotated[int, typer.Option("--nproc", help="Ranks to launch.")] = 1,
) -> None:
    """Run COMMAND (after --) with the profiler on: same as `anyware run --profile DIR`."""
    from anyware.cli._common import err_console, fail
    from anyware.profile.capture import StepRange

    if steps is not None:
        try:
            StepRange.parse(steps)
        except ValueError as e:
            fail(f"--steps {e}")
    target = list(ctx.args)
    if not target:
        fail(
            "give the program to profile after --, e.g. anyware profile record --out prof -- train.py"
        )
    try:
        from anyware.migrate.launch import LaunchError, RunOptions, run
    except ImportError as e:
        fail(f"the launcher (anyware.migrate.launch) is not available: {e}")
    try:
        code = run(
            RunOptions(target=target, device=device, nproc=nproc, profile=out, profile_steps=steps)
        )
    except LaunchError as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot start the program: {e}")
    err_console.print(
        f"profile: traces in {out}; next: anyware profile summary {out}", soft_wrap=True
    )
    raise typer.Exit(code)


def _load(path: Path, *, quiet: bool) -> ProfileReport:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from anyware.cli._common import err_console, fail
    from anyware.profile.report import NoTracesError, analyze_path

    try:
        if quiet:
            return analyze_path(path)
        with Progress(
            TextColumn("analysing {task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task(str(path), total=None)
            return analyze_path(path, progress=lambda f: bar.update(task, description=f.name))
    except NoTracesError as e:
        fail(str(e))


@app.command("summary")
def summary(
    path: Annotated[Path, typer.Argument(help="Profile directory (or one trace file).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full analysis as JSON.")
    ] = False,
    top: Annotated[int, typer.Option("--top", help="Ops/kernels to list.")] = 8,
) -> None:
    """One screen: breakdown per rank, the slowest rank and the biggest cost, top ops."""
    from anyware.cli._common import console, emit_json

    report = _load(path, quiet=as_json)
    if as_json:
        emit_json(report.to_json())
        return
    render_summary(report, console, top=top)


def render_summary(report: ProfileReport, console: Any, *, top: int = 8) -> None:
    """The rich rendering shared by ``profile summary`` and the demo."""
    from rich.table import Table

    from anyware.profile.classify import short_name

    mode = report.ranks[0].mode
    what = "device streams" if mode == "device" else "host operators (no device events)"
    steps = max((len(r.steps) for r in report.ranks), default=0)
    console.print(
        f"[bold]Profile[/] {report.source}: {len(report.ranks)} rank(s), {steps} step(s), breakdown of {what}"
    )
    if report.slowest is not None:
        s = report.slowest
        parts = sorted(
            ((k, v) for k, v in s.extra_per_step_us.items() if k not in ("comm", "idle") and v > 0),
            key=lambda kv: -kv[1],
        )
        why = ", ".join(f"{k} +{v / 1e3:.2f} ms" for k, v in parts[:2]) or "no extra busy time"
        extra = ", ".join(f"{short_name(n)} +{v / 1e3:.2f} ms" for n, v in s.top_extra[:2])
        console.print(
            f"[bold red]Slowest rank: {s.rank}[/] — {s.busy_per_step_us / 1e3:.2f} ms busy/step vs median "
            f"{s.median_busy_per_step_us / 1e3:.2f} ms ({why})" + (f"; on {extra}" if extra else "")
        )
    console.print(f"[bold]Biggest cost:[/] {report.biggest_cost}")
    console.print()
    pcts = [r.whole.pct() for r in report.ranks]
    cols = [
        "compute",
        "comm",
        "memory",
        *(["other"] if any(p["other"] > 0.05 for p in pcts) else []),
        "idle",
    ]
    heads = {
        "compute": "compute",
        "comm": "comm",
        "memory": "memcpy",
        "other": "other",
        "idle": "idle",
    }
    # Right padding only, no wrapping: the table must fit 80 columns (one screen).
    t = Table(box=None, padding=(0, 1, 0, 0), show_edge=False, header_style="bold")
    for head in [
        "rank",
        "ms/step",
        *(heads[c] for c in cols),
        "overlap",
        *(["launch/s", "host-bound"] if mode == "device" else []),
        "peak",
    ]:
        t.add_column(head, justify="right", no_wrap=True)
    shown = _rows_to_show(report)
    for r, pct in zip(report.ranks, pcts, strict=True):
        if r.rank not in shown:
            continue
        peak = max(
            (m["peak_allocated"] for m in r.memory if m["device"] != "cpu" or mode == "host"),
            default=0,
        )
        row = [str(r.rank), f"{r.mean_step_us / 1e3:.2f}" if r.mean_step_us else "—"]
        row += [f"{pct[k]:.1f}%" for k in cols]
        row.append("—" if r.overlap_pct is None else f"{r.overlap_pct:.0f}%")
        if mode == "device":
            row.append("—" if r.launch is None else f"{r.launch.launches_per_s:,.0f}")
            row.append(
                "—" if r.launch is None else ("[red]yes[/]" if r.launch.host_bound else "no")
            )
        row.append(_bytes(peak) if peak else "—")
        t.add_row(*row)
    console.print(t)
    if len(shown) < len(report.ranks):
        console.print(
            f"… {len(report.ranks) - len(shown)} more ranks (shown: the busiest and the idlest; all in --json)"
        )
    title = "Top kernels" if mode == "device" else "Top ops by self time"
    ops = Table(
        box=None,
        padding=(0, 1, 0, 0),
        show_edge=False,
        header_style="bold",
        title=title,
        title_justify="left",
    )
    ops.add_column("name", overflow="ellipsis", no_wrap=True, max_width=28)
    ops.add_column("bucket", no_wrap=True)
    for head in ("calls", "ms", "%"):
        ops.add_column(head, justify="right", no_wrap=True)
    ops.add_column("where", overflow="ellipsis", no_wrap=True, max_width=18)
    merged: dict[str, list[Any]] = {}
    for r in report.ranks:
        for o in r.top_kernels or r.top_ops:
            m = merged.setdefault(o.name, [o, 0, 0.0])
            m[1] += o.count
            m[2] += o.total_us
    span = sum(r.whole.span_us for r in report.ranks) or 1.0
    short = {"communication": "comm", "memory copy": "memcpy", "other (sync)": "other"}
    for name, (o, count, total) in sorted(merged.items(), key=lambda kv: -kv[1][2])[:top]:
        where = " · ".join(x for x in (o.module, o.source or o.launched_by) if x)
        ops.add_row(
            short_name(name),
            short.get(o.bucket, o.bucket),
            str(count),
            f"{total / 1e3:.2f}",
            f"{100 * total / span:.1f}",
            where or "—",
        )
    console.print(ops)
    _print_comm(report, console)
    if report.problems:
        for p in report.problems[:4]:
            console.print(f"[yellow]! {p}")
        if len(report.problems) > 4:
            console.print(f"[yellow]! … and {len(report.problems) - 4} more (see --json)")


def _print_comm(report: ProfileReport, console: Any, top: int = 4) -> None:
    """Communication names over all ranks, longest first: time, and how much compute hid."""
    from anyware.profile.classify import short_name

    merged: dict[str, list[float]] = {}
    for r in report.ranks:
        for c in r.comm_ops:
            m = merged.setdefault(c.name, [0, 0.0, 0.0])
            m[0] += c.count
            m[1] += c.total_us
            m[2] += c.total_us * (c.overlap_pct or 0.0) / 100.0
    if not merged:
        return
    rows = sorted(merged.items(), key=lambda kv: -kv[1][1])[:top]
    text = "; ".join(
        f"{short_name(n, 32)} {int(k)}× {t / 1e3:.1f} ms, {100 * o / t if t else 0:.0f}% overlapped"
        for n, (k, t, o) in rows
    )
    console.print(f"[bold]Communication:[/] {text}")


#: Ranks listed in the summary table; more would not fit one screen.
MAX_RANK_ROWS = 8


def _rows_to_show(report: ProfileReport) -> set[int]:
    """All ranks when they fit; else the busiest five and the idlest two (with the slowest)."""
    if len(report.ranks) <= MAX_RANK_ROWS:
        return {r.rank for r in report.ranks}
    by_busy = sorted(report.ranks, key=lambda r: -r.per_step(r.busy_us))
    keep = {r.rank for r in by_busy[:5]} | {r.rank for r in by_busy[-2:]}
    if report.slowest is not None:
        keep.add(report.slowest.rank)
    return keep


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit[0]}" if unit == "B" else f"{n:.1f}{unit[0]}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@app.command("export")
def export(
    path: Annotated[Path, typer.Argument(help="Profile directory.")],
    out: Annotated[Path, typer.Option("--out", help="Merged trace to write.")] = Path(
        "merged.pt.trace.json"
    ),
) -> None:
    """Merge every rank's trace into one Perfetto trace (one lane group per rank)."""
    from anyware.cli._common import console, err_console, fail
    from anyware.profile.merge import write_merged
    from anyware.profile.report import NoTracesError

    try:
        problems = write_merged(path, out)
    except NoTracesError as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot write {out}: {e.strerror or e}")
    for p in problems:
        err_console.print(f"[yellow]! {p}")
    console.print(f"wrote {out} (open it at https://ui.perfetto.dev)")


@app.command("view")
def view(
    path: Annotated[Path, typer.Argument(help="Profile directory.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = 0,
) -> None:
    """Serve the Profile page and print its URL (Ctrl-C stops)."""
    import socket

    import uvicorn

    from anyware.cli._common import console, fail
    from anyware.profile.report import NoTracesError, find_traces
    from anyware.profile.web import configure, make_app

    try:
        find_traces(path)
    except NoTracesError as e:
        fail(str(e))
    configure(path)
    app = _dashboard_app(path) or make_app(path)
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as e:
            fail(f"cannot listen on {host}:{port}: {e.strerror or e}; pick another --port")
        port = s.getsockname()[1]
    console.print(f"Profile page: http://{host}:{port}/profile/  (Ctrl-C to stop)", soft_wrap=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _dashboard_app(path: Path) -> Any:
    """The monitor's dashboard app (which mounts the Profile page under ``/profile``), when the
    monitor is installed; ``None`` otherwise."""
    try:
        from anyware.monitor.aggregator import Aggregator
        from anyware.monitor.app import create_app, profile_router
    except ImportError:
        return None
    if profile_router() is None:  # the dashboard could not import this package's router
        return None
    try:
        app = create_app(Aggregator())
    except Exception:  # a broken dashboard must not stop the profile view
        return None
    app.state.profile_dir = str(path)
    return app
