"""Allreduce and all-to-all on 2 ranks: anyware.comm (shm, p2p) vs gloo's own collective,
measured in alternating blocks in the same run. Prints the table and the issue's targets:
shared memory ≤ 0.2× gloo up to 64 KiB and ≤ 0.8× from 16 MiB (using the cost model's pick).

    python benchmarks/comm/bench_collectives.py [--sizes 1K,64K,16M] [--transports shm,p2p]
        [--algos auto|all|ring,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console

from anyware.cli.comm import render_bench
from anyware.comm.bench import BenchConfig, run
from anyware.comm.select import parse_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1K,64K,16M")
    ap.add_argument("--ops", default="allreduce,alltoall")
    ap.add_argument("--transports", default="shm")
    ap.add_argument("--algos", default="auto", help="comma list; 'all' for every algorithm")
    ap.add_argument("--json")
    a = ap.parse_args()
    cfg = BenchConfig(
        sizes=tuple(parse_size(s) for s in a.sizes.split(",")),
        ops=tuple(a.ops.split(",")),
        transports=tuple(a.transports.split(",")),
        algos=() if a.algos == "all" else tuple(a.algos.split(",")),
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = run(
            cfg, Path(tmp) / "b.json", progress=lambda i, n: print(f"\r{i}/{n}", end="", flush=True)
        )
    print()
    console = Console(width=140)
    render_bench(res, console)
    if a.json:
        Path(a.json).write_text(__import__("json").dumps(res, indent=2))
    print("targets (shared memory, the cost model's pick):")
    for r in res["results"]:
        if r["transport"] != "shm" or not r["algo"].startswith("auto"):
            continue
        limit = 0.2 if r["bytes"] <= 64 * 1024 else 0.8 if r["bytes"] >= 16 << 20 else None
        if limit is None:
            continue
        verdict = "met" if r["ratio"] <= limit else "MISSED"
        print(
            f"  {r['op']:<10} {r['bytes']:>10} B  {r['algo']:<28} {r['ratio']:.3f}× gloo (target ≤ {limit}) {verdict}"
        )


if __name__ == "__main__":
    main()
