"""Import cost of anyware against its anchor, ``import torch``, measured in the same run.

Each figure is the median of fresh interpreters timing only the import (python's own start-up
is excluded). Run: ``python benchmarks/runtime/bench_import.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

TIMER = "import time; t=time.perf_counter(); import {mod}; print(time.perf_counter()-t)"


def measure(mod: str, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", TIMER.format(mod=mod)],
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(float(out.stdout))
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = {
        m: measure(m, args.repeats)
        for m in ("torch", "anyware", "anyware.runtime", "anyware.cli.main")
    }
    anchor = rows["torch"]
    if args.json:
        print(
            json.dumps({m: {"seconds": s, "ratio_to_torch": s / anchor} for m, s in rows.items()})
        )
        return
    print(f"{'import':<20}{'median ms':>12}{'÷ import torch':>18}")
    for mod, secs in rows.items():
        print(f"{mod:<20}{secs * 1e3:>12.1f}{secs / anchor:>18.4f}")


if __name__ == "__main__":
    main()
