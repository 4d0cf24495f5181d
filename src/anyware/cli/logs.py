"""``anyware logs parse|analyze``: template mining and multi-rank root-cause analysis."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

HELP = "Analyse training logs: root cause across ranks, failure signatures, template mining."

app = typer.Typer(name="logs", help=HELP, no_args_is_help=True, rich_markup_mode=None)


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    from anyware.cli._common import err_console

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        # Only on a terminal: in a pipe or CI log a live bar is noise (and a stray newline).
        disable=not enabled or not err_console.is_terminal,
    )


def _fmt_t(t: float | None) -> str:
    if t is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def render(report: dict[str, Any]) -> None:
    from rich.panel import Panel
    from rich.table import Table

    from anyware.cli._common import console

    rc = report["root_cause"]
    body = (
        f"[bold]{rc['category']}[/] on rank [bold]{rc['rank']}[/] (host {rc['host']}) at "
        f"{_fmt_t(rc['time'])}, confidence {rc['confidence']:.2f}\n{rc['message']}\n"
        f"[dim]{rc['reason']}\n{rc['file']}:{rc['line']}[/]"
    )
    console.print(Panel(body, title="root cause", border_style="red", expand=False))
    cats = Table(title="findings per category", title_justify="left")
    cats.add_column("category")
    cats.add_column("count", justify="right")
    for k, v in report["categories"].items():
        cats.add_row(k, str(v))
    console.print(cats)
    cl = Table(title="most anomalous clusters", title_justify="left")
    for c in ("score", "count", "ranks", "new", "template"):
        cl.add_column(c)
    for c in report["clusters"][:10]:
        cl.add_row(
            f"{c['score']:.2f}",
            str(c["count"]),
            str(c["ranks"]),
            "yes" if c["new_after_failure"] else "",
            c["template"][:110],
        )
    console.print(cl)
    victims = sum(1 for r in report["ranks"] if r["role"] == "victim")
    console.print(
        f"{report['files']} files, {len(report['ranks'])} ranks ({victims} victims), "
        f"{report['lines']:,} lines, {report['bytes'] / 1e6:,.1f} MB in "
        f"{report['seconds']:.2f} s"
    )
    for e in report["errors"]:
        console.print(f"[yellow]warning:[/] {e}")


@app.command("analyze", help="Find the originating failure across ranks (vs its victims).")
def analyze_command(
    paths: Annotated[list[str], typer.Argument(help="Log files, directories or globs.")],
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the JSON report here ('-' = stdout).")
    ] = None,
    html_out: Annotated[
        str | None, typer.Option("--html", help="Write a self-contained HTML timeline here.")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Files scanned at once (threads, or local Dask workers).")
    ] = 2,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Where files are scanned: local (threads), dask (a Dask cluster on this "
            "machine) or dask:ADDRESS (a running scheduler, e.g. dask:tcp://head:8786; its "
            "workers must see the files at the same paths).",
        ),
    ] = "local",
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout", help="Seconds to wait for a Dask scheduler and its workers."
        ),
    ] = 10.0,
) -> None:
    from anyware._io import atomic_write_text
    from anyware.cli._common import emit_json, fail
    from anyware.logs.analyze import analyze
    from anyware.logs.engine import Engine, EngineError
    from anyware.logs.html import render as render_html
    from anyware.logs.ingest import IngestError

    if workers < 1:
        fail(f"--workers must be >= 1, got {workers}")
    try:
        eng = Engine.parse(engine, workers=workers, connect_timeout=connect_timeout)
    except EngineError as e:
        fail(str(e))
    problem = None
    with _progress(json_out != "-") as bar:
        task = bar.add_task("scanning", total=None)
        try:
            result = analyze(
                paths,
                engine=eng,
                on_total=lambda n: bar.update(task, total=n),
                on_bytes=lambda n: bar.advance(task, n),
            )
        except (IngestError, EngineError) as e:
            problem = str(e)
    if problem is not None:  # after the progress bar is gone, so the error is one clean line
        fail(problem)
    report = result.to_dict()
    if html_out:
        try:
            atomic_write_text(html_out, render_html(report))
        except OSError as e:
            fail(f"cannot write HTML to {html_out}: {e.strerror or e}")
    if json_out:
        emit_json(report, json_out)
        if json_out == "-":
            return
    render(report)


@app.command("parse", help="Mine templates; write a Loghub-style structured CSV.")
def parse_command(
    file: Annotated[str, typer.Argument(help="One log file (plain, .gz or .zst).")],
    out: Annotated[
        str,
        typer.Option(
            "--out", help="Structured CSV to write; templates go to <out stem>_templates.csv."
        ),
    ],
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="Loghub header format, e.g. '<Date> <Time> <Level> <Component>: <Content>', or 'auto'.",
        ),
    ] = "auto",
    mask: Annotated[
        list[str] | None,
        typer.Option(
            "--mask", help="Regex replaced by <*> before mining (repeatable), e.g. 'blk_-?\\d+'."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    from anyware.cli._common import emit_json, fail
    from anyware.logs.formats import FormatError
    from anyware.logs.ingest import IngestError
    from anyware.logs.parse import parse_file

    problem = None
    with _progress(not json_out) as bar:
        task = bar.add_task("parsing", total=None)
        try:
            summary = parse_file(
                file,
                out=out,
                log_format=log_format,
                masks=mask or (),
                on_total=lambda n: bar.update(task, total=n),
                on_bytes=lambda n: bar.advance(task, n),
            )
        except (FormatError, IngestError) as e:
            problem = str(e)
        except OSError as e:
            problem = f"cannot parse {file} into {out}: {e.strerror or e} ({e.filename or out})"
    if problem is not None:  # after the progress bar is gone, so the error is one clean line
        fail(problem)
    if json_out:
        emit_json(summary)
        return
    from anyware.cli._common import console

    console.print(
        f"{summary['lines']:,} lines, {summary['templates']:,} templates "
        f"(format {summary['log_format']!r}) in {summary['seconds']:.2f} s → "
        f"{summary['out']}, {summary['templates_out']}"
    )
