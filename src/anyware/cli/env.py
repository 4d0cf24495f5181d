"""``anyware env [--json]``: what a bug report needs about this machine."""

from __future__ import annotations

from typing import Annotated, Any

import typer

HELP = "Show devices, backends, versions and ANYWARE_* settings (paste it into bug reports)."


def _gib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**30:.1f} GiB"


def render(report: dict[str, Any]) -> None:
    from rich.table import Table

    from anyware.cli._common import console

    t = Table(title=f"anyware backends (selected: {report['selected']})", title_justify="left")
    for col in ("backend", "available", "dist", "devices", "reason"):
        t.add_column(col)
    for b in report["backends"]:
        mark = "[green]yes[/]" if b["available"] else "[dim]no[/]"
        t.add_row(b["name"], mark, b.get("dist_backend") or "", str(len(b["devices"])), b["reason"])
    console.print(t)

    d = Table(title="devices", title_justify="left")
    for col in ("backend", "index", "name", "arch", "memory", "dtypes", "triton"):
        d.add_column(col)
    for b in report["backends"]:
        for dev in b["devices"]:
            cap = dev["capability"]
            d.add_row(
                b["name"],
                str(dev["index"]),
                dev["name"],
                cap["arch"],
                _gib(dev["memory_total"]),
                " ".join(cap["dtypes"]),
                "yes" if cap["triton"] else "no",
            )
    console.print(d)

    v = report["versions"]
    console.print(
        "versions: "
        + ", ".join(f"{k} {v[k] if v[k] is not None else '(not installed)'}" for k in v)
    )
    if report["env"]:
        console.print("environment: " + ", ".join(f"{k}={val}" for k, val in report["env"].items()))
    else:
        console.print("environment: no ANYWARE_* or visible-device variables set")


def command(
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    device: Annotated[str | None, typer.Option(help="Backend to select (default: auto).")] = None,
) -> None:
    from anyware.cli._common import emit_json, fail
    from anyware.runtime.report import collect

    try:
        report = collect(device)
    except ValueError as e:  # unknown/absent backend, malformed ANYWARE_VISIBLE_DEVICES
        fail(str(e))
    if json_out:
        emit_json(report)
    else:
        render(report)
