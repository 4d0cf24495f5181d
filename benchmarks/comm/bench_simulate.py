"""The simulator against (1) the closed forms, (2) runs measured here, (3) the clock.

(2) runs a 2-rank shared-memory bench, builds a Topology from the cost model that run
calibrated (α from the ping-pong, bandwidth from β), and prints predicted / measured.

    python benchmarks/comm/bench_simulate.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from anyware.comm.bench import BenchConfig, run
from anyware.comm.simulate import REGISTRY, Topology, closed_form, simulate


def main() -> None:
    sizes = 2.0 ** np.arange(3, 31)
    worst = 0.0
    for p in (2, 8, 13, 1024):
        topo = Topology(ranks=p, intra_bw=20e9, intra_latency=3e-6)
        for coll, algo in REGISTRY:
            if algo == "double_binary_tree":
                continue
            r = simulate(topo, coll, algo, sizes) / closed_form(topo, coll, algo, sizes)
            worst = max(worst, float(np.abs(r - 1).max()))
    print(
        f"(1) simulator vs closed forms, flat network, p = 2/8/13/1024: worst deviation {worst:.2e}"
    )

    t0 = time.perf_counter()
    topo = Topology(ranks=16384, ranks_per_host=8)
    for coll, algo in REGISTRY:
        simulate(topo, coll, algo, sizes)
    print(
        f"(3) 16,384 ranks, {len(REGISTRY)} algorithms × {sizes.size} sizes: {time.perf_counter() - t0:.2f} s (target < 5 s)"
    )

    cfg = BenchConfig(
        ops=("allreduce", "alltoall"),
        sizes=(1024, 1 << 20, 16 << 20),
        transports=("shm",),
        algos=("ring", "halving_doubling", "pairwise"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = run(cfg, Path(tmp) / "b.json")
    links = res["cost_model"]["links"]
    # per message: α; per byte: β (copy in + copy out) + γ for each reduction the receiver does
    topo = Topology(
        ranks=2,
        intra_bw=1 / links["beta_intra"],
        intra_latency=links["alpha_intra"],
        copy_bw=1 / links["gamma"] if links.get("gamma") else 0.0,
    )
    print(
        f"(2) measured vs simulated, 2 ranks, shm (α = {links['alpha_intra'] * 1e6:.1f} µs, "
        f"β⁻¹ = {1 / links['beta_intra'] / 1e9:.2f} GB/s from this run's ping-pong):"
    )
    for r in res["results"]:
        pred = float(simulate(topo, r["op"], r["algo"], np.array([r["bytes"]]))[0])
        print(
            f"  {r['op']:<10} {r['algo']:<17} {r['bytes']:>9} B  measured {r['time_s'] * 1e6:9.1f} µs  "
            f"predicted {pred * 1e6:9.1f} µs  ratio {pred / r['time_s']:.2f}"
        )


if __name__ == "__main__":
    main()
