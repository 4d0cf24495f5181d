"""Analysis time, peak memory and breakdown figures: anyware.profile beside Holistic Trace
Analysis (HTA) on the same generated multi-rank Kineto trace, in the same run.

    python benchmarks/profile/bench_analysis.py [--size-mb 400] [--ranks 4] [--dir DIR]

Each analyser runs in its own child process so that its peak RSS (``ru_maxrss``, including
HTA's per-rank worker processes) is its own. HTA is run with ``HTA_DISABLE_NS_ROUNDING=1``:
by default it rounds every start up and every end down to whole microseconds, which changes
the breakdown of nanosecond-resolution traces by a few percent and would hide whether the two
tools compute the same thing. HTA's temporal breakdown needs device streams (it fails on
CPU-only traces), so the generated trace has kernels, memcpys and NCCL on two streams.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OURS = r"""
import json, resource, sys, time
def _cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
t0 = time.perf_counter()
c0 = _cpu()
from anyware.profile.report import analyze_path
workers = int(sys.argv[2]) if sys.argv[2] != "auto" else None
rep = analyze_path(__import__("pathlib").Path(sys.argv[1]), workers=workers)
secs = time.perf_counter() - t0
# Parallel workers are child processes: the peak is the larger of this process and any worker.
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
out = {"seconds": secs, "cpu_s": _cpu() - c0, "rss_mb": rss, "ranks": {}}
for r in rep.ranks:
    w = r.whole
    out["ranks"][r.rank] = {"idle": w.idle_us, "compute": w.compute_us, "non_compute": w.comm_us + w.memory_us + w.other_us,
                             "kernel_time": w.span_us, "overlap_pct": r.overlap_pct}
out["slowest"] = rep.slowest.rank if rep.slowest else None
print(json.dumps(out))
"""

HTA = r"""
import json, logging, resource, sys, time
logging.disable(logging.CRITICAL)
def _cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
t0 = time.perf_counter()
c0 = _cpu()
from hta.trace_analysis import TraceAnalysis
ta = TraceAnalysis(trace_dir=sys.argv[1], include_last_profiler_step=True)
tb = ta.get_temporal_breakdown(visualize=False)
ov = ta.get_comm_comp_overlap(visualize=False)
secs = time.perf_counter() - t0
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
out = {"seconds": secs, "cpu_s": _cpu() - c0, "rss_mb": rss, "ranks": {}}
ovm = dict(zip(ov["rank"], ov["comp_comm_overlap_pctg"]))
for _, row in tb.iterrows():
    out["ranks"][int(row["rank"])] = {"idle": float(row["idle_time(us)"]), "compute": float(row["compute_time(us)"]),
        "non_compute": float(row["non_compute_time(us)"]), "kernel_time": float(row["kernel_time(us)"]),
        "overlap_pct": float(ovm[row["rank"]])}
print(json.dumps(out))
"""

BASELINE = r"""
import json, resource
import numpy, anyware.profile.report
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=400.0, help="total trace size over all ranks")
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--dir", type=Path, default=None, help="keep the generated traces here")
    ap.add_argument("--skip-hta", action="store_true")
    ap.add_argument(
        "--workers", type=int, default=None, help="anyware's worker processes (default: auto)"
    )
    args = ap.parse_args()

    from anyware.profile.synth import write_large_run

    work = args.dir or Path(tempfile.mkdtemp(prefix="anyware-profile-bench-"))
    # ~700 B of JSON per kernel (op + launch + kernel records), measured on the generator.
    kernels = max(int(args.size_mb * 1e6 / args.ranks / args.steps / 700), 10)
    t0 = time.perf_counter()
    paths = write_large_run(
        work, ranks=args.ranks, steps=args.steps, kernels_per_step=kernels, slow_rank=args.ranks - 1
    )
    size = sum(p.stat().st_size for p in paths)
    print(
        f"trace: {args.ranks} ranks x {args.steps} steps x {kernels:,} kernels/step, {size / 1e6:,.0f} MB "
        f"(generated in {time.perf_counter() - t0:.1f} s) in {work}"
    )
    try:
        base = _child(BASELINE)
        ours = _child(OURS, str(work), "auto" if args.workers is None else str(args.workers))
        print(
            f"anyware.profile: {ours['seconds']:8.2f} s {ours['cpu_s']:8.1f} CPU-s   "
            f"peak RSS {ours['rss_mb']:6.0f} MB per process "
            f"(interpreter + imports {base['rss_mb']:.0f} MB)"
        )
        if args.skip_hta:
            return
        hta = _child(HTA, str(work), env={"HTA_DISABLE_NS_ROUNDING": "1"})
        print(
            f"HTA 0.5.0:       {hta['seconds']:8.2f} s {hta['cpu_s']:8.1f} CPU-s   "
            f"peak RSS {hta['rss_mb']:6.0f} MB per process"
        )
        # CPU seconds (the process and its workers) are the steadier figure on a shared
        # machine, where wall time depends on what else is running at the moment.
        print(
            f"speed-up: {hta['seconds'] / ours['seconds']:.1f}x wall, "
            f"{hta['cpu_s'] / ours['cpu_s']:.1f}x CPU   memory: {hta['rss_mb'] / ours['rss_mb']:.1f}x less "
            f"(analysis over baseline: {hta['rss_mb'] - base['rss_mb']:.0f} MB vs "
            f"{ours['rss_mb'] - base['rss_mb']:.0f} MB)"
        )
        print(
            f"slowest rank (anyware): {ours['slowest']} (the generator slows rank {args.ranks - 1})"
        )
        print()
        print(f"{'rank':>4} {'figure':<12} {'anyware (us)':>16} {'HTA (us)':>16} {'rel diff':>10}")
        worst = 0.0
        for rank in sorted(hta["ranks"], key=int):
            a, h = ours["ranks"][str(rank)], hta["ranks"][rank]
            for key in ("kernel_time", "compute", "non_compute", "idle", "overlap_pct"):
                diff = abs(a[key] - h[key]) / max(abs(h[key]), 1e-9)
                # HTA's overlap is rounded to 0.01 percentage points.
                if key == "overlap_pct":
                    diff = max(abs(a[key] - h[key]) - 0.005, 0.0) / max(abs(h[key]), 1e-9)
                worst = max(worst, diff)
                unit = "%" if key == "overlap_pct" else ""
                print(
                    f"{rank:>4} {key:<12} {a[key]:>15,.2f}{unit or ' '} {h[key]:>15,.2f}{unit or ' '} {100 * diff:>9.4f}%"
                )
        print(f"\nlargest relative difference: {100 * worst:.4f}% (target: within 1%)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
