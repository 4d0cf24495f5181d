"""``anyware monitor serve|checks``: the training-health aggregator and its checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = "Training-health monitor: live dashboard, anomaly checks, Prometheus metrics."

app = typer.Typer(name="monitor", help=HELP, no_args_is_help=True, rich_markup_mode=None)


@app.command("serve")
def serve(
    events: Annotated[
        Path | None,
        typer.Option(help="Run directory: ranks' rank<N>.jsonl and where alerts are written."),
    ] = None,
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs a token.")
    ] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option(help="Bearer token (default: generated when --host is not loopback)."),
    ] = None,
    checks: Annotated[
        Path | None, typer.Option(help="JSON file of check thresholds (see 'monitor checks').")
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option(help="Directory of saved runs to compare (default: --events' parent)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the address as one JSON line.")
    ] = False,
) -> None:
    """Serve the dashboard, /metrics and the ingest endpoint until Ctrl-C."""
    import secrets

    from anyware.cli._common import console, emit_json, fail
    from anyware.monitor.config import CheckConfig

    if not 0 <= port < 65536:
        fail(f"--port {port} is not a port number; use 0-65535")
    if checks is not None and not checks.is_file():
        fail(f"--checks {checks} is not a file; give a JSON object of check thresholds")
    try:
        cfg = CheckConfig.from_file(checks) if checks else CheckConfig()
    except ValueError as e:
        fail(f"--checks {checks}: {e}")
    from anyware.monitor.aggregator import Aggregator
    from anyware.monitor.serve import ServerHandle, is_loopback, serve_forever

    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(16)
    agg = Aggregator(events_dir=events, checks=cfg, runs_dir=runs)

    def announce(h: ServerHandle) -> None:
        if json_out:
            emit_json({"addr": h.addr, "url": h.url, "events": str(events) if events else None})
        else:
            console.print(f"anyware monitor: dashboard at {h.url}")
            console.print(f"  ranks: export ANYWARE_MONITOR_ADDR={h.addr}")

    try:
        serve_forever(agg, host=host, port=port, token=token, announce=announce)
    except ValueError as e:
        fail(str(e))


def _summary(cls: type) -> str:
    import sys

    doc = (sys.modules[cls.__module__].__doc__ or "").strip()
    first = doc.splitlines()[0] if doc else ""
    return first.split(": ", 1)[-1]


@app.command("checks")
def list_checks(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the health checks with their codes and default thresholds."""
    from anyware.cli._common import console, emit_json
    from anyware.monitor.checks import CHECKS
    from anyware.monitor.config import CheckConfig

    rows = [
        {
            "code": c.code,
            "check": c.name,
            "severity": c.severity,
            "summary": _summary(c),
        }
        for c in CHECKS.values()
    ]
    if json_out:
        emit_json({"checks": rows, "defaults": CheckConfig().to_json()})
        return
    from rich.table import Table

    table = Table(title="health checks", title_justify="left")
    for col in ("code", "check", "severity", "summary"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["code"], r["check"], r["severity"], r["summary"])
    console.print(table)
