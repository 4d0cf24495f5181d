"""Diff throughput: records/s and GB/s of ``anyware trace diff`` on two large traces.

Anchor (published, Huawei msprobe compare): 0.1–0.3 GB/s. Target here: ≥ 1 GB/s.

The two traces are built from a recorded op-level trace of the small GPT (one step of a
clean run and one of a run with a wrong softmax dimension), tiled over ``--steps`` steps and
``--ranks`` ranks with fresh keys, so the diff does the full work (load, alignment, errors,
tolerances, first-divergence search) on millions of real records. GB/s counts the records'
size in memory (every column as Arrow, both runs: what a reader of the whole trace holds),
the quantity msprobe's figure refers to (dump size), whatever subset of columns the diff
chooses to decode; the Parquet size on disk is printed as well. The figure is the median of
``--repeats`` timed diffs (the best is printed beside it). Usage::

    python benchmarks/trace/bench_diff.py [--steps 400] [--ranks 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "trace"))

import anyware.trace as tr


def tile(src: Path, dst: Path, steps: int, ranks: int) -> None:
    """Write ``ranks`` rank files of ``steps`` copies of ``src``'s one step."""
    one = pl.read_parquet(src / "rank0.parquet")
    per_step = int(one["seq"].max()) + 1
    dst.mkdir(parents=True)
    for rank in range(ranks):
        parts = []
        for s in range(steps):
            off = s * per_step
            parts.append(
                one.with_columns(
                    (pl.col("seq") + off).alias("seq"),
                    pl.lit(s, pl.Int64).alias("step"),
                    pl.lit(rank, pl.Int32).alias("rank"),
                    pl.col("inputs").list.eval(pl.element() + off),
                    pl.concat_str(
                        [pl.lit(f"{s}/"), pl.col("key").str.splitn("/", 2).struct.field("field_1")]
                    ).alias("key"),
                )
            )
        df = pl.concat(parts)
        df.write_parquet(dst / f"rank{rank}.parquet", compression="zstd")
        (dst / f"rank{rank}.meta.json").write_text('{"format": 1, "level": "op"}')


def main() -> None:
    from trace_workloads import train

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        train(root / "a1", "gpt", level="op")
        train(root / "b1", "gpt", "softmax_dim", level="op")
        tile(root / "a1", root / "a", args.steps, args.ranks)
        tile(root / "b1", root / "b", args.steps, args.ranks)
        files = sorted((root / "a").glob("rank*.parquet")) + sorted(
            (root / "b").glob("rank*.parquet")
        )
        tables = [pq.read_table(f) for f in files]
        records = sum(t.num_rows for t in tables)
        mem = sum(t.nbytes for t in tables)
        disk = sum(f.stat().st_size for f in files)
        del tables
        times, cpus = [], []
        res = None
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            res = tr.diff(root / "a", root / "b")  # from the files: load included
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        assert res is not None and res.first_divergence is not None
        fd = res.first_divergence
    best = statistics.median(times)
    gbs = mem / best / 1e9
    print(
        f"timed diffs: {', '.join(f'{t:.2f}' for t in times)} s wall "
        f"(best {min(times):.2f} s: {mem / min(times) / 1e9:.2f} GB/s), "
        f"{statistics.median(cpus):.2f} s CPU (median, both threads)"
    )
    print(
        f"diff of {records:,} records ({args.ranks} ranks × {args.steps} steps × 2 runs), "
        f"{mem / 1e9:.2f} GB in memory, {disk / 1e6:.0f} MB of Parquet"
    )
    print(f"first divergence found: {fd['module']} {fd['op']} step {fd['step']} rank {fd['rank']}")
    print(
        f"median {best:.2f} s: {records / best / 1e6:.2f} M records/s, {gbs:.2f} GB/s "
        f"({disk / best / 1e9:.3f} GB/s of Parquet on disk)"
    )
    print(
        f"msprobe compare 0.1–0.3 GB/s → {gbs / 0.3:.1f}–{gbs / 0.1:.1f}× faster "
        f"(target ≥ 1 GB/s: {'met' if gbs >= 1 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
