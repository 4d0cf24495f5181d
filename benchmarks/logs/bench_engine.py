"""Overhead of the cluster layer: ``analyze`` through Dask vs the local path, on the same logs.

    python benchmarks/logs/bench_engine.py [--gb 1.0] [--ranks 256] [--repeat 2]

The corpus (a device OOM on one of 256 ranks, with its cascade) is written under a temporary
directory and deleted at the end. The anchor is the local path (two threads); the Dask path runs
the same per-file map on a ``LocalCluster`` of two single-threaded worker processes on this
machine, so the ratio is the engine layer's cost (scheduling, pickling the per-file records,
processes instead of threads), not a cluster's speed-up. The cluster's start-up, which
``--engine dask`` pays on every call and a long-lived ``dask:ADDRESS`` scheduler does not, is
reported apart. Each path runs ``--repeat`` times, alternating, and the best time counts (the
shared machine is noisy). Both reports must be identical apart from ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus


def _report(d: dict[str, object]) -> str:
    return json.dumps({k: v for k, v in d.items() if k != "seconds"})


def main() -> None:
    from distributed import LocalCluster

    from anyware.logs.analyze import analyze
    from anyware.logs.engine import Engine, map_scans
    from anyware.logs.ingest import discover

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--ranks", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="anyware-logs-engine-"))
    try:
        t0 = time.perf_counter()
        truth = corpus.generate(
            tmp / "job", failure="device_oom", ranks=a.ranks, seed=7, target_bytes=int(a.gb * 1e9)
        )
        gb = truth.bytes / 1e9
        print(
            f"generated {gb:.2f} GB in {len(truth.files)} files ({a.ranks} ranks) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        paths = [str(tmp / "job")]
        analyze(paths)  # warm the page cache and polars, so neither path pays for it

        t0 = time.perf_counter()
        with LocalCluster(
            n_workers=a.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster:
            startup = time.perf_counter() - t0
            eng = Engine.parse(f"dask:{cluster.scheduler_address}", workers=a.workers)
            analyze(paths, engine=eng)  # workers import anyware and polars once
            local_s, dask_s = [], []
            reports = set()
            for _ in range(a.repeat):
                t = time.perf_counter()
                r = analyze(paths, workers=a.workers)
                local_s.append(time.perf_counter() - t)
                reports.add(_report(r.to_dict()))
                t = time.perf_counter()
                r = analyze(paths, engine=eng)
                dask_s.append(time.perf_counter() - t)
                reports.add(_report(r.to_dict()))
            shipped = len(pickle.dumps(map_scans(discover(paths), eng)))
        rc = r.root_cause
        ok = (rc.rank, str(rc.category)) == (truth.rank, truth.category)
        lo, da = min(local_s), min(dask_s)
        print(
            f"local ({a.workers} threads): {gb:.2f} GB in {lo:.2f} s = {truth.bytes / lo / 1e6:.0f} "
            f"MB/s (anchor)"
        )
        print(
            f"dask ({a.workers} local worker processes, scheduler up): {gb:.2f} GB in {da:.2f} s "
            f"= {truth.bytes / da / 1e6:.0f} MB/s, {da / lo:.2f}x the local time "
            f"(engine overhead {da - lo:+.2f} s)"
        )
        print(
            f"dask cluster start-up (paid by --engine dask, not by dask:ADDRESS): {startup:.2f} s; "
            f"--engine dask end to end ~{startup + da:.2f} s = {(startup + da) / lo:.2f}x local"
        )
        print(
            f"per-file records sent back: {shipped / 1e3:.0f} KB for {gb:.2f} GB "
            f"({shipped / truth.bytes * 1e6:.0f} bytes per MB of logs); reports "
            f"{'identical' if len(reports) == 1 else 'DIFFERENT'}, root cause "
            f"{'right' if ok else 'WRONG'} (rank {rc.rank} {rc.category})"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # the guard matters: Dask's worker processes re-import this module
    main()
