"""Shared driver for ``benchmarks/ops/bench_<op>.py``: time one op's cases on the present
device and print one line per case with the ratio against torch/aten from the same run."""

from __future__ import annotations

import argparse
import json
import sys


def main(*op_names: str) -> None:
    from anyware import runtime
    from anyware.ops import bench

    parser = argparse.ArgumentParser(
        description=f"benchmark {', '.join(op_names)} against torch/aten"
    )
    parser.add_argument(
        "--large", action="store_true", help="accelerator-sized problems (default on a GPU)"
    )
    parser.add_argument(
        "--reps", type=int, default=10, help="timed runs per case (median reported)"
    )
    parser.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    args = parser.parse_args()
    backend = runtime.current()
    small = backend.device_type == "cpu" and not args.large
    results = []
    for name in op_names:
        for case in bench.cases(name, small=small):
            r = bench.measure(case, reps=args.reps)
            results.append(r)
            ours = (
                f"triton {bench.fmt_rate(r['triton'])} {r['unit']} = {r['ratio']:.2f}× aten"
                if r["ratio"] is not None
                else f"triton n/a ({r['note']})"
            )
            print(
                f"{r['op']:<16} {r['case']:<36} aten {bench.fmt_rate(r['aten'])} {r['unit']}  "
                f"reference {bench.fmt_rate(r['reference'])} {r['unit']} = {r['reference_ratio']:.2f}× aten  {ours}",
                flush=True,
            )
    if args.json_out:
        from anyware._io import atomic_write_json

        atomic_write_json(args.json_out, {"device": backend.name, "results": results})
    sys.exit(0)


if __name__ == "__main__":
    print(json.dumps({"usage": "run one of benchmarks/ops/bench_<op>.py"}))
