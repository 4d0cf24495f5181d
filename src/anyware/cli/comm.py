"""``anyware comm``: collective-communication tools.

``bench``    nccl-tests-style table of every op × algorithm × transport beside gloo's own
             collective, measured interleaved in the same run, with the ratio.
``simulate`` predicted time, algbw and busbw of every algorithm at any scale (vectorised).
``list``     the registered algorithms and what each one does.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

HELP = "Collective communication: bench the algorithms, simulate them at scale, list them."
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None)


def _sizes(text: str) -> tuple[int, ...]:
    from anyware.cli._common import fail
    from anyware.comm.select import parse_size

    try:
        return tuple(parse_size(s) for s in text.split(",") if s.strip())
    except ValueError as e:
        fail(f"--sizes: {e}")


def _list(text: str) -> tuple[str, ...]:
    return tuple(s.strip().lower().replace("-", "_") for s in text.split(",") if s.strip())


def _human(n: float) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{int(n // scale)}{unit}"
    return f"{int(n)}"


@app.command("bench", help="Time every op × algorithm × transport beside gloo (nccl-tests style).")
def bench(
    nproc: Annotated[int, typer.Option(help="Ranks to start on this host.")] = 2,
    ops: Annotated[
        str, typer.Option(help="Comma-separated: allreduce, alltoall, allgather, reduce_scatter.")
    ] = "allreduce,alltoall",
    sizes: Annotated[
        str, typer.Option(help="Comma-separated byte sizes (K/M/G suffixes).")
    ] = "1K,64K,1M,16M",
    transports: Annotated[str, typer.Option(help="Comma-separated: shm, p2p.")] = "shm,p2p",
    algos: Annotated[
        str, typer.Option(help="Only these algorithms ('auto' = the cost model's pick).")
    ] = "",
    json_out: Annotated[
        str | None,
        typer.Option("--json", help="Write the results as JSON to this file ('-': stdout)."),
    ] = None,
    cost_out: Annotated[
        str | None,
        typer.Option(help="Save the calibrated cost model (for ANYWARE_COMM_COST_FILE)."),
    ] = None,
) -> None:
    import tempfile
    from pathlib import Path

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from anyware.cli._common import console, emit_json, err_console, fail
    from anyware.comm.bench import BenchConfig, run

    try:
        cfg = BenchConfig(
            nproc=nproc,
            ops=_list(ops),
            sizes=_sizes(sizes),
            transports=_list(transports),
            algos=_list(algos),
            cost_out=cost_out,
        )
    except ValueError as e:
        fail(str(e))
    with (
        tempfile.TemporaryDirectory() as tmp,
        Progress(
            TextColumn("comm bench"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as bar,
    ):
        task = bar.add_task("bench", total=None)
        try:
            result = run(
                cfg,
                Path(tmp) / "bench.json",
                progress=lambda i, n: bar.update(task, completed=i, total=n),
            )
        except (RuntimeError, TimeoutError) as e:
            fail(f"comm bench failed: {e}")
    if json_out == "-":
        emit_json(result)
        return
    render_bench(result, console)
    if json_out:
        emit_json(result, json_out)


def render_bench(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    rows = result["results"]
    for op in dict.fromkeys(r["op"] for r in rows):
        t = Table(
            title=f"{op}, {result['world_size']} ranks, float32 (time in µs, bandwidth in GB/s)",
            title_justify="left",
        )
        for col in ("size", "transport", "algo", "time", "algbw", "busbw", "gloo", "ratio"):
            t.add_column(col, justify="left" if col in ("transport", "algo") else "right")
        for r in (x for x in rows if x["op"] == op):
            good = r["ratio"] <= 1
            t.add_row(
                _human(r["bytes"]),
                r["transport"],
                r["algo"],
                f"{r['time_s'] * 1e6:,.1f}",
                f"{r['algbw_gbps']:.3f}",
                f"{r['busbw_gbps']:.3f}",
                f"{r['gloo_time_s'] * 1e6:,.1f}",
                f"[{'green' if good else 'red'}]{r['ratio']:.2f}×[/]",
            )
        console.print(t)


@app.command("simulate", help="Predict time, algbw and busbw of every algorithm at any scale.")
def simulate(
    ranks: Annotated[int, typer.Option(help="Total ranks.")] = 16384,
    ranks_per_host: Annotated[int, typer.Option(help="Ranks per host (0: one host).")] = 8,
    intra_bw: Annotated[float, typer.Option(help="Per-rank intra-host bandwidth, GB/s.")] = 150.0,
    inter_bw: Annotated[float, typer.Option(help="Per-rank inter-host bandwidth, GB/s.")] = 25.0,
    latency: Annotated[float, typer.Option(help="Intra-host latency per message, µs.")] = 2.0,
    inter_latency: Annotated[
        float | None, typer.Option(help="Inter-host latency, µs (default: 2.5 × --latency).")
    ] = None,
    copy_bw: Annotated[
        float, typer.Option(help="Local copy bandwidth, GB/s (0: ignore local copies).")
    ] = 0.0,
    overhead: Annotated[
        float, typer.Option(help="Software cost per collective call, µs (0: ignore it).")
    ] = 0.0,
    ops: Annotated[str, typer.Option(help="Comma-separated collectives.")] = "allreduce,alltoall",
    sizes: Annotated[
        str, typer.Option(help="Comma-separated byte sizes.")
    ] = "8,1K,64K,1M,16M,256M,1G",
    json_out: Annotated[
        str | None,
        typer.Option("--json", help="Write the predictions as JSON to this file ('-': stdout)."),
    ] = None,
) -> None:
    import time

    import numpy as np

    from anyware.cli._common import console, emit_json, fail
    from anyware.comm import simulate as sim

    try:
        topo = sim.Topology(
            ranks=ranks,
            ranks_per_host=ranks_per_host if ranks_per_host < ranks else 0,
            intra_bw=intra_bw * 1e9,
            inter_bw=inter_bw * 1e9,
            intra_latency=latency * 1e-6,
            inter_latency=(inter_latency if inter_latency is not None else 2.5 * latency) * 1e-6,
            copy_bw=copy_bw * 1e9,
            call_overhead=overhead * 1e-6,
        )
    except ValueError as e:
        fail(str(e))
    colls = _list(ops)
    known = sorted({c for c, _ in sim.REGISTRY})
    bad = [c for c in colls if c not in known]
    if bad:
        fail(f"--ops: unknown collective(s) {bad}; choose from {', '.join(known)}")
    n = np.array(_sizes(sizes), dtype=np.float64)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"ranks": ranks, "ranks_per_host": topo.local, "results": []}
    for c in colls:
        for a in sim.algorithms(c):
            if a == "hierarchical" and topo.ranks % topo.local:
                continue
            times = sim.simulate(topo, c, a, n)
            for size, t in zip(n, times, strict=True):
                algbw = size / t / 1e9 if t > 0 else 0.0
                out["results"].append(
                    {
                        "op": c,
                        "algo": a,
                        "bytes": int(size),
                        "time_s": float(t),
                        "algbw_gbps": algbw,
                        "busbw_gbps": algbw * float(sim.BUSBW[c](ranks)),
                    }
                )
    out["seconds"] = time.perf_counter() - t0
    if json_out == "-":
        emit_json(out)
        return
    from rich.table import Table

    for c in colls:
        rows = [r for r in out["results"] if r["op"] == c]
        best = {
            s: min((r for r in rows if r["bytes"] == s), key=lambda r: r["time_s"])["algo"]
            for s in {r["bytes"] for r in rows}
        }
        t = Table(
            title=f"{c}: {ranks} ranks, {topo.local} per host (predicted; ★ = fastest)",
            title_justify="left",
        )
        for col in ("size", "algo", "time (µs)", "algbw (GB/s)", "busbw (GB/s)"):
            t.add_column(col, justify="left" if col == "algo" else "right")
        for r in sorted(rows, key=lambda r: (r["bytes"], r["time_s"])):
            star = " ★" if best[r["bytes"]] == r["algo"] else ""
            t.add_row(
                _human(r["bytes"]),
                r["algo"] + star,
                f"{r['time_s'] * 1e6:,.1f}",
                f"{r['algbw_gbps']:.2f}",
                f"{r['busbw_gbps']:.2f}",
            )
        console.print(t)
    console.print(f"simulated {len(out['results'])} points in {out['seconds']:.2f} s")
    if json_out:
        emit_json(out, json_out)


@app.command("list", help="List the registered algorithms per collective.")
def list_algorithms(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    from anyware.cli._common import console, emit_json
    from anyware.comm.algorithms import REGISTRY

    data = {c.value: {n: a.doc for n, a in t.items()} for c, t in REGISTRY.items()}
    if json_out:
        emit_json(data)
        return
    from rich.table import Table

    t = Table(title="anyware.comm algorithms", title_justify="left")
    for col in ("collective", "algorithm", "what it does"):
        t.add_column(col)
    for c, algos in data.items():
        for n, doc in algos.items():
            t.add_row(c, n, doc)
    console.print(t)
