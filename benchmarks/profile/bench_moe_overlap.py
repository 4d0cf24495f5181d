"""The MoE example's token all-to-all, seen by the profile and by the example's own flight
recorder in the same run: does ``anyware profile`` show the communication and its overlap?

    python benchmarks/profile/bench_moe_overlap.py [--steps 12] [--profile-steps 6:12]

Runs ``anyware run --nproc 2 --profile DIR --profile-steps A:B examples/moe/train.py --steps
N --measure-overlap N-A``, so the profiled steps are the steps the recorder times, then prints

* the profile's view (``anyware profile summary DIR --json``): communication time, the overall
  overlap (all communication, most of it synchronous), and per communication name;
* the recorder's (``moe_parallel.record_flights``, rank 0): the share of each dispatch's
  in-flight time (issue → completion callback) inside the shared-expert window;
* a reconciliation from the same traces: the dispatch spans (the asynchronous all-to-alls that
  meet a ``moe.overlapped_with_all_to_all`` window) against that window — the recorder's
  measure — and against the compute operators — the profile's.

The two measures differ by design: the recorder counts the whole window, Python included; a
CPU-only profile counts the operators' self time as compute (Python between them is idle).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _spans(trace: Path, name: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    events = json.loads(trace.read_text())["traceEvents"]
    sel = [e for e in events if e.get("ph") == "X" and e.get("name") == name]
    return (
        np.array([e["ts"] for e in sel], dtype=np.float64),
        np.array([e["ts"] + e["dur"] for e in sel], dtype=np.float64),
        [int(e["tid"]) for e in sel],
    )


def reconcile(trace: Path, rt_compute: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Dispatch spans' overlap with the shared-expert windows and with compute operators."""
    from anyware.profile import intervals as iv

    ws, we, _ = _spans(trace, "moe.overlapped_with_all_to_all")
    s, e, _ = _spans(trace, "anyware.comm:alltoall async")
    order = np.argsort(s)
    s, e = s[order], e[order]
    # Forward only runs asynchronous all-to-alls, per MoE layer a dispatch (with the shared
    # experts as its window) then a combine; the worker runs them in order.
    if s.size != 2 * ws.size:
        raise SystemExit(f"{trace}: {s.size} async all-to-alls for {ws.size} windows, not 2 each")
    hits = np.zeros(s.size, dtype=bool)
    hits[0::2] = True
    ds, de = s[hits], e[hits]
    total = iv.covered(ds, de)
    return {
        "dispatches": int(hits.sum()),
        "async_spans": int(s.size),
        "dispatch_ms": total / 1e3,
        "vs_window_ms": iv.overlap(ds, de, ws, we) / 1e3,
        "vs_window_pct": 100 * iv.overlap(ds, de, ws, we) / total if total else 0.0,
        "vs_compute_ops_pct": 100 * iv.overlap(ds, de, *rt_compute) / total if total else 0.0,
    }


def _compute_segments(trace: Path) -> tuple[np.ndarray, np.ndarray]:
    """The compute self intervals the analysis uses (after comm/wait inheritance)."""
    from anyware.profile.analyze import _inherit
    from anyware.profile.classify import Bucket, host_bucket
    from anyware.profile.collect import collect
    from anyware.profile.hostwalk import walk

    rt = collect(trace)
    hw = walk(rt)
    names = rt.host.np("name")
    nb = np.array([int(host_bucket(n)) for n in rt.names], dtype=np.int8)
    seg_b = _inherit(
        rt, nb[names], hw.seg_start, rt.host.np("tid")[hw.seg_op], nb[names[hw.seg_op]]
    )
    comp = seg_b == Bucket.COMPUTE
    return hw.seg_start[comp], hw.seg_end[comp]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--profile-steps", default="6:12")
    p.add_argument("--dir", type=Path, default=None, help="keep the traces here")
    p.add_argument(
        "--reanalyze", action="store_true", help="analyse the run already in --dir, run nothing"
    )
    args = p.parse_args()
    if args.reanalyze and args.dir is None:
        p.error("--reanalyze needs --dir")
    start = int(args.profile_steps.split(":")[0])
    work = Path(tempfile.mkdtemp(prefix="anyware-moe-overlap-")) if args.dir is None else args.dir
    prof, out = work / "prof", work / "train.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    cmd = [
        sys.executable, "-m", "anyware.cli.main", "run", "--nproc", "2",
        "--profile", str(prof), "--profile-steps", args.profile_steps,
        str(ROOT / "examples" / "moe" / "train.py"), "--steps", str(args.steps),
        "--measure-overlap", str(args.steps - start), "--out", str(out), "--log-every", "1000",
    ]  # fmt: skip
    if not args.reanalyze:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            sys.exit(f"the MoE run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    flights = json.loads(out.read_text())["overlap"]

    from anyware.profile.report import analyze_path

    report = analyze_path(prof)
    print(f"MoE example, 2 ranks, steps {args.profile_steps} profiled and timed (traces: {prof})")
    print(
        f"record_flights (rank 0): {flights['exchanges']} dispatches, "
        f"{flights['in_flight_ms']:.1f} ms in flight, {flights['overlapped_ms']:.1f} ms "
        f"({flights['overlap_fraction']:.1%}) overlapped with the shared experts"
    )
    for r in report.ranks:
        pct = r.whole.pct()
        print(
            f"profile rank {r.rank}: comm {r.whole.comm_us / 1e3:.1f} ms exposed "
            f"({pct['comm']:.1f}% of {r.whole.span_us / 1e3:.0f} ms), overlap of all comm "
            f"{r.overlap_pct or 0:.1f}%"
        )
        for c in r.comm_ops:
            print(
                f"    {c.name:32s} {c.count:4d}x {c.total_us / 1e3:8.1f} ms  "
                f"overlapped {c.overlap_pct or 0:5.1f}%"
            )
        trace = Path(r.path)
        rec = reconcile(trace, _compute_segments(trace))
        print(
            f"    dispatch spans: {rec['dispatches']} of {rec['async_spans']} async, "
            f"{rec['dispatch_ms']:.1f} ms; inside the shared-expert window "
            f"{rec['vs_window_ms']:.1f} ms = {rec['vs_window_pct']:.1f}% (the recorder's "
            "measure), beside compute ops "
            f"{rec['vs_compute_ops_pct']:.1f}% (the profile's)"
        )


if __name__ == "__main__":
    main()
