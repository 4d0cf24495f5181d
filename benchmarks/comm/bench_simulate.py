"""The simulator against (1) the closed forms, (2) runs measured here, (3) the clock.

(2) measures, on 2 ranks and both transports (shared memory, and point-to-point over gloo):
every algorithm of allreduce (ring, recursive doubling, halving-doubling) and all-to-all
(pairwise, Bruck) at ``--sizes``; ring reduce-scatter and allgather at those and the
``--extra-sizes``; ring allreduce and pairwise all-to-all at the extra sizes; and the copy
sweep (:mod:`anyware.comm.simulate.calibrate`). It then predicts every row twice:

* fitted: the simulator's machine (o per call, α per round, a cost per copy op, β and γ at
  three cache levels, both cache sizes) fitted by :func:`anyware.comm.simulate.fit.fit` to the
  CALIBRATION rows and the copy sweep only; the HELD-out algorithms' rows (recursive doubling,
  halving-doubling, Bruck) never enter the fit and judge the model — the 10% target;
* ping-pong: the first session's model, every parameter from a micro-benchmark (α, β from the
  transport's ping-pong, γ from a 4 MiB copy, o from an 8-byte broadcast, the large β, γ from
  a 16 MiB ping-pong and copy), for comparison.

Measured times are the *fastest* of 9 alternating samples. ``--raw F`` saves the run,
``--from F [F ...]`` re-analyses saved runs (each row its fastest over the runs; a file may
hold only a ``copy_sweep``), ``--repeat N`` measures N times and keeps each row's fastest,
``--fit-out F`` writes the fitted models as cost-model files ``F-<transport>.json``.

    python benchmarks/comm/bench_simulate.py [--sizes 8,1K,16K,64K,256K,1M,4M,16M]
        [--extra-sizes 128K,512K,2M,8M,32M] [--repeat N] [--raw F] [--from F ...]
        [--fit-out F] [--pin-large] [--cache-bytes 8M]

One measurement takes ~3.5 min on the 2-core host under load (fit and report ~30 s more).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from anyware._io import atomic_write_json
from anyware.comm.bench import BenchConfig, run
from anyware.comm.select import parse_size
from anyware.comm.simulate import REGISTRY, Topology, calibrate, closed_form, simulate
from anyware.comm.simulate.calibrate import copy_sweep
from anyware.comm.simulate.fit import CopySweep, Measured, fit

CACHE_BYTES = 4 << 20


def against_closed_forms() -> None:
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
        f"(3) 16,384 ranks, {len(REGISTRY)} algorithms × {sizes.size} sizes: "
        f"{time.perf_counter() - t0:.2f} s (target < 5 s)"
    )
    # A fitted CPU machine also prices copy ops and blends three cache levels: the op counts
    # and working sets come from each algorithm's schedule, built once per world size.
    cpu = replace(
        topo,
        copy_op_cost=0.35e-6,
        inner_cache_bytes=512 << 10,
        intra_bw_inner=10e9,
        cache_bytes=11 << 20,
        intra_bw_large=4e9,
        copy_bw=30e9,
    )
    spent = []
    for _ in range(2):
        t0 = time.perf_counter()
        for coll, algo in REGISTRY:
            simulate(cpu, coll, algo, sizes)
        spent.append(time.perf_counter() - t0)
    print(
        f"    with op costs and two cache levels: {spent[0]:.1f} s the first time (schedules "
        f"built for the op counts), {spent[1]:.2f} s after"
    )


def measure_short(sizes: tuple[int, ...], extra: tuple[int, ...]) -> dict[str, Any]:
    """The same rows as :func:`measure` and the copy sweep, each the fastest of 25 samples of
    ~1 ms (:func:`anyware.comm.simulate.calibrate.measure`), without gloo interleaved."""
    both = tuple(sorted({*sizes, *extra}))
    rows = [("broadcast", "binomial", min(sizes))]
    rows += [(op, algo, n) for op, algo in (h.split(":") for h in HELD) for n in sizes]
    rows += [("allreduce", "ring", n) for n in both] + [("alltoall", "pairwise", n) for n in both]
    rows += [(op, "ring", n) for op in ("reduce_scatter", "allgather") for n in both]
    with tempfile.TemporaryDirectory() as tmp:
        return calibrate.measure(Path(tmp) / "m.json", rows, large=True)


def measure(sizes: tuple[int, ...], extra: tuple[int, ...]) -> dict[str, Any]:
    """Three benches and a micro-benchmark, one after the other: (a) every algorithm at
    ``sizes`` — the rows the model is judged on; (b) ring reduce-scatter and allgather at ``sizes`` and ``extra``;
    (c) ring allreduce and pairwise all-to-all at the ``extra`` sizes only. (b) and (c) are
    calibration-only collectives and sizes: they give the fit more working-set factors (1×,
    2×, 3×, 5× the message) and sizes between 128 KiB and 32 MiB to place the cache edge,
    without one held-out algorithm entering the fit; (d) the copy sweep
    (:mod:`anyware.comm.simulate.calibrate`), which pins the per-copy-op cost."""
    common = {"transports": ("shm", "p2p")}
    plans = [
        BenchConfig(
            ops=("broadcast", "allreduce", "alltoall"),
            sizes=sizes,
            algos=(
                "binomial",
                "recursive_doubling",
                "ring",
                "halving_doubling",
                "pairwise",
                "bruck",
            ),
            calibrate_large=True,
            **common,  # type: ignore[arg-type]
        ),
        BenchConfig(
            ops=("reduce_scatter", "allgather"),
            sizes=tuple(sorted({*sizes, *extra})),
            algos=("ring",),
            **common,  # type: ignore[arg-type]
        ),
    ]
    if extra:
        plans.append(
            BenchConfig(
                ops=("allreduce", "alltoall"),
                sizes=extra,
                algos=("ring", "pairwise"),
                **common,  # type: ignore[arg-type]
            )
        )
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, cfg in enumerate(plans):
            part = run(cfg, Path(tmp) / f"b{i}.json")
            if not res:
                res = part
            else:
                res["results"] += part["results"]
        res["copy_sweep"] = copy_sweep(Path(tmp) / "sweep.json")
    return res


#: The calibration set: ring allreduce and pairwise all-to-all at every size, ring
#: reduce-scatter and allgather (runs from before the third session have only the first two).
#: The fit sees only these rows; the held-out algorithms' rows judge the model.
CALIBRATION = ("allreduce:ring", "alltoall:pairwise", "reduce_scatter:ring", "allgather:ring")
HELD = ("allreduce:recursive_doubling", "allreduce:halving_doubling", "alltoall:bruck")
#: Collectives whose call overhead is fitted on its own (their API wrappers differ from
#: allreduce's and all-to-all's, which the held-out algorithms share).
OWN_OVERHEAD = ("reduce_scatter", "allgather")


def _stats(errs: list[float]) -> str:
    if not errs:
        return "no rows"
    within = sum(e <= 0.10 for e in errs)
    return (
        f"{within}/{len(errs)} within 10%, median |error| {statistics.median(errs) * 100:.1f}%, "
        f"worst {max(errs) * 100:.0f}%"
    )


def _ping_pong_topology(res: dict[str, Any], transport: str, sizes: list[int]) -> Topology:
    """The first session's model: every parameter from a micro-benchmark, nothing fitted."""
    links = res["cost_models"][transport]["links"]
    alpha, beta, gamma = links["alpha_intra"], links["beta_intra"], links["gamma"]
    rows = [r for r in res["results"] if r["transport"] == transport]
    probe = [r for r in rows if r["op"] == "broadcast" and r["bytes"] == min(sizes)]
    overhead = max(0.0, probe[0]["time_min_s"] - alpha) if probe else 0.0
    big = res["calibration_large"][transport]
    return Topology(
        ranks=res["world_size"],
        intra_bw=1 / beta,
        intra_latency=alpha,
        copy_bw=1 / gamma if gamma else 0.0,
        call_overhead=overhead,
        cache_bytes=CACHE_BYTES,
        intra_bw_large=1 / big["beta"],
        copy_bw_large=1 / big["gamma"] if big["gamma"] else 0.0,
    )


def against_runs(
    res: dict[str, Any],
    fit_out: Path | None,
    pin_large: bool = False,
    cache_bytes: float | None = None,
) -> None:
    sizes = sorted({int(r["bytes"]) for r in res["results"]})
    print(
        "(2) measured vs simulated, 2 ranks (ratio = predicted / measured); fit on "
        f"{', '.join(CALIBRATION)} (cal), the other algorithms held out (held)"
    )
    summary: list[str] = []
    for transport in res["cost_models"]:
        rows = [
            r
            for r in res["results"]
            if r["transport"] == transport and f"{r['op']}:{r['algo']}" in CALIBRATION + HELD
        ]
        rows.sort(key=lambda r: (r["op"], r["algo"], r["bytes"]))
        pp = _ping_pong_topology(res, transport, sizes)
        cal = [
            Measured(op=r["op"], algo=r["algo"], bytes=r["bytes"], seconds=r["time_min_s"])
            for r in rows
            if f"{r['op']}:{r['algo']}" in CALIBRATION
        ]
        big = res["calibration_large"][transport]
        pin = {"beta_large": big["beta"], "gamma_large": big["gamma"]} if pin_large else {}
        # At 2 ranks the allreduce and all-to-all rows that share one call overhead see the
        # reduce op only inside o + 2α + r (ring) beside o + α + c (pairwise): it is not
        # identified, so it is pinned to 0 and α carries it (recursive doubling and
        # halving-doubling reduce once, as the ring does). Reduce-scatter and allgather go
        # through other API wrappers: their own fixed cost (OWN_OVERHEAD).
        pin["reduce_op"] = 0.0
        sweeps = [
            CopySweep(copies=int(r["copies"]), bytes=int(r["bytes"]), seconds=r["time_min_s"])
            for r in res.get("copy_sweep", {}).get(transport, [])
        ]
        model = fit(
            cal,
            ranks=res["world_size"],
            sweeps=sweeps,
            cache_bytes=cache_bytes,
            fixed=pin,
            own_overhead=OWN_OVERHEAD,
        )
        if fit_out is not None:
            model.save(fit_out.with_name(f"{fit_out.stem}-{transport}{fit_out.suffix}"))
        print(
            f"  {transport} fitted: o = {model.call_overhead * 1e6:.1f} µs/call, "
            f"α = {model.alpha * 1e6:.1f} µs/round (ping-pong α {pp.intra_latency * 1e6:.1f}), "
            f"copy op {model.copy_op * 1e6:.2f} µs, reduce op {model.reduce_op * 1e6:.2f} µs, "
            f"inside a {model.inner_cache_bytes / 2**20:.2f} MiB inner cache β⁻¹ = "
            f"{_gbps(model.beta_inner)}, γ⁻¹ = {_gbps(model.gamma_inner)}; "
            f"β⁻¹ = {_gbps(model.beta)}, γ⁻¹ = {_gbps(model.gamma)}; past a "
            f"{model.cache_bytes / 2**20:.2f} MiB cache β⁻¹ = {_gbps(model.beta_large)}, "
            f"γ⁻¹ = {_gbps(model.gamma_large)}"
        )
        errs: dict[str, list[float]] = {"cal": [], "held": [], "ping-pong": []}
        for r in rows:
            n = np.array([r["bytes"]])
            measured = r["time_min_s"]
            p_fit = float(model.predict(r["op"], r["algo"], n)[0])
            p_pp = float(simulate(pp, r["op"], r["algo"], n)[0])
            role = "cal" if f"{r['op']}:{r['algo']}" in CALIBRATION else "held"
            errs[role].append(abs(p_fit / measured - 1))
            if role == "held":
                errs["ping-pong"].append(abs(p_pp / measured - 1))
            print(
                f"    {role:<4} {r['op']:<10} {r['algo']:<19} {r['bytes']:>9} B  measured "
                f"{measured * 1e6:10.1f} µs  fitted {p_fit * 1e6:10.1f} µs "
                f"({p_fit / measured:.2f})  ping-pong {p_pp * 1e6:10.1f} µs "
                f"({p_pp / measured:.2f})"
            )
        summary += [
            f"  {transport} held-out (fitted): {_stats(errs['held'])}",
            f"  {transport} calibration (fitted): {_stats(errs['cal'])}",
            f"  {transport} held-out, ping-pong model: {_stats(errs['ping-pong'])}",
        ]
    print("\n".join(summary))


def _gbps(sec_per_byte: float) -> str:
    return f"{1 / sec_per_byte / 1e9:.2f} GB/s" if sec_per_byte > 0 else "free"


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several saved runs as one: each row its fastest (the ping-pong figures stay the first
    run's), the same rule as within a run, so a burst that hit one run's row is outvoted."""
    out = runs[0]
    for other in runs[1:]:
        best = {(r["op"], r["algo"], r["transport"], r["bytes"]): r for r in out["results"]}
        for r in other.get("results", []):
            key = (r["op"], r["algo"], r["transport"], r["bytes"])
            if key not in best:
                out["results"].append(r)
            elif r["time_min_s"] < best[key]["time_min_s"]:
                best[key]["time_min_s"] = r["time_min_s"]
        sweep = {
            (t, r["copies"], r["bytes"]): r
            for t, rows in out.get("copy_sweep", {}).items()
            for r in rows
        }
        for t, rows in other.get("copy_sweep", {}).items():
            for r in rows:
                mine = sweep.get((t, r["copies"], r["bytes"]))
                if mine is None:
                    out.setdefault("copy_sweep", {}).setdefault(t, []).append(r)
                elif r["time_min_s"] < mine["time_min_s"]:
                    mine["time_min_s"] = r["time_min_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="8,1K,16K,64K,256K,1M,4M,16M")
    ap.add_argument(
        "--extra-sizes",
        default="128K,512K,2M,8M,32M",
        help="more sizes for the calibration collectives only (empty: none)",
    )
    ap.add_argument(
        "--protocol",
        choices=("short", "bench"),
        default="short",
        help="short: every row the fastest of 25 samples of ~1 ms; bench: `anyware comm "
        "bench`'s 9 samples of ~20 ms with gloo interleaved (the second session's runs)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure everything this many times and keep each row's fastest (a loaded host)",
    )
    ap.add_argument("--skip-runs", action="store_true", help="only (1) and (3)")
    ap.add_argument("--raw", type=Path, help="save the measured bench result here")
    ap.add_argument(
        "--from",
        dest="src",
        type=Path,
        nargs="+",
        help="analyse saved results (several: each row's fastest), measure nothing",
    )
    ap.add_argument(
        "--fit-out",
        type=Path,
        help="save each transport's fitted model as a cost-model file (NAME-<transport>.json)",
    )
    ap.add_argument(
        "--pin-large",
        action="store_true",
        help="take β, γ past 4 MiB from the 16 MiB ping-pong and copy instead of fitting them",
    )
    ap.add_argument(
        "--cache-bytes",
        help="fix the fitted cache size (e.g. 8M) instead of choosing it on the calibration rows",
    )
    a = ap.parse_args()
    against_closed_forms()
    if not a.skip_runs:
        if a.src is not None:
            res = combine([json.loads(p.read_text()) for p in a.src])
        else:
            extra = tuple(parse_size(s) for s in a.extra_sizes.split(",") if s)
            sizes = tuple(parse_size(s) for s in a.sizes.split(","))
            how = measure_short if a.protocol == "short" else measure
            runs = [how(sizes, extra) for _ in range(max(1, a.repeat))]
            res = combine(runs)
            if a.raw is not None:
                atomic_write_json(a.raw, res)
        cache = parse_size(a.cache_bytes) if a.cache_bytes else None
        against_runs(res, a.fit_out, a.pin_large, cache)


if __name__ == "__main__":
    main()
