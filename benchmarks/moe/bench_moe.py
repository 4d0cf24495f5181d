"""Evidence for the reference MoE workload, measured with the CUDA-style example itself.

Every run is ``anyware run [--nproc N] examples/moe/train.py ... --out F`` on the present device:

1. expert parallelism: the 2-rank run's losses against a 1-process run on the same global batch
   (the bar: fp32 reduction-order noise, ~1e-5 relative over the first steps);
2. balance: max/mean tokens per expert over the last steps, with the bias update on;
3. FP8: each ``anyware.formats`` recipe's final loss (mean of the last 10 steps) against fp32's;
   the ratio column is |gap| / 0.25%, DeepSeek-V3's bar;
4. throughput in tokens/s per run.

    python benchmarks/moe/bench_moe.py [--steps 300] [--recipes rowwise,mxfp8] [--json F]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "moe" / "train.py"
RECIPES = ("tensorwise-delayed", "tensorwise-current", "rowwise", "deepseek-blockwise", "mxfp8")
FP8_BAR = 0.0025  # DeepSeek-V3: FP8 training loss within 0.25% of bf16


def run(nproc: int, steps: int, out: Path, *extra: str) -> tuple[dict[str, list[float]], float]:
    cmd = [sys.executable, "-m", "anyware.cli.main", "run"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    cmd += [
        str(SCRIPT),
        "--steps",
        str(steps),
        "--log-every",
        str(max(steps, 1)),
        "--out",
        str(out),
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text()), secs


def tail_mean(xs: list[float], n: int = 10) -> float:
    tail = xs[-n:]
    return sum(tail) / len(tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--agree-steps", type=int, default=10)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    recipes = [r for r in args.recipes.split(",") if r]
    results: dict[str, object] = {"steps": args.steps}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one, _ = run(1, args.agree_steps, tmp / "one.json")
        two, _ = run(2, args.agree_steps, tmp / "two.json")
        rel = [abs(a - b) / abs(a) for a, b in zip(one["loss"], two["loss"], strict=True)]
        results["ep_agreement_max_rel"] = max(rel)
        print(
            f"expert parallel (2 ranks) vs 1 process, {args.agree_steps} steps: max relative loss difference {max(rel):.2e}"
        )

        base, secs = run(2, args.steps, tmp / "fp32.json")
        tokens = args.steps * 16 * 64
        fp32 = tail_mean(base["loss"])
        imb = tail_mean(base["imbalance"])
        results["fp32"] = {"final_loss": fp32, "imbalance": imb, "tokens_per_s": tokens / secs}
        print(
            f"fp32, 2 ranks, {args.steps} steps: final loss {fp32:.4f}, expert load max/mean over the "
            f"last 10 steps {imb:.2f} (first step {base['imbalance'][0]:.2f}), {tokens / secs:,.0f} tokens/s"
        )
        print(f"{'recipe':<22}{'final loss':>12}{'gap':>10}{'÷ 0.25% bar':>14}{'tokens/s':>12}")
        rows = {}
        for recipe in recipes:
            res, secs = run(2, args.steps, tmp / f"{recipe}.json", "--fp8", recipe)
            loss = tail_mean(res["loss"])
            gap = (loss - fp32) / fp32
            rows[recipe] = {
                "final_loss": loss,
                "gap": gap,
                "ratio_to_bar": abs(gap) / FP8_BAR,
                "tokens_per_s": tokens / secs,
            }
            print(
                f"{recipe:<22}{loss:>12.4f}{gap:>+10.2%}{abs(gap) / FP8_BAR:>14.2f}{tokens / secs:>12,.0f}"
            )
        results["fp8"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
