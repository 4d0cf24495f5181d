"""Evidence for the reference MoE workload, measured with the CUDA-style example itself.

Every run is ``anyware run [--nproc N] examples/moe/train.py ... --out F`` on the present device:

1. expert parallelism: the 2-rank run's losses against a 1-process run on the same global batch
   (the bar: fp32 reduction-order noise, ~1e-5 relative over the first steps);
2. balance: per-step max/mean tokens per expert (worst MoE layer) after warm-up step W, with
   the bias update and the sequence-wise loss on; the bound is ``BALANCE_BOUND``;
3. overlap: over the last steps, how much of the token all-to-all's time in flight the shared
   experts' compute covered (timed in the run, see ``moe_parallel.record_flights``);
4. FP8: each ``anyware.formats`` recipe (linear layers *and* the experts' grouped GEMMs) trained
   from the same seed and batches as fp32, with warm-up + cosine decay to a stable end; the gap
   is in the held-out loss at the end. Its noise floor is fp32 against fp32 with another batch
   order: a gap below that floor is not distinguishable from any other perturbation of this
   chaotic small model. The ratio column is |gap| / 0.25%, DeepSeek-V3's bar;
5. throughput in tokens/s per run.

    python benchmarks/moe/bench_moe.py [--steps 600] [--recipes rowwise,mxfp8]
        [--noise-runs 2] [--paired-orders 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "moe" / "train.py"
RECIPES = ("tensorwise-delayed", "tensorwise-current", "rowwise", "deepseek-blockwise", "mxfp8")
FP8_BAR = 0.0025  # DeepSeek-V3: FP8 training loss within 0.25% of bf16
BALANCE_BOUND = 1.5  # per-step max/mean expert load after the warm-up step
EVAL_BATCHES = "16"


def run(nproc: int, steps: int, out: Path, *extra: str) -> tuple[dict[str, object], float]:
    cmd = [sys.executable, "-m", "anyware.cli.main", "run"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    cmd += [str(SCRIPT), "--steps", str(steps), "--log-every", str(max(steps, 1))]
    cmd += ["--out", str(out), *extra]
    t0 = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS="1")  # tiny GEMMs: threads only contend
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(out.read_text())
    return result, secs


def floats(res: dict[str, object], key: str) -> list[float]:
    value = res[key]
    assert isinstance(value, list)
    return [float(v) for v in value]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--agree-steps", type=int, default=10)
    ap.add_argument("--warmup-step", type=int, default=None, help="balance bound from here on")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument(
        "--noise-runs", type=int, default=2, help="fp32 runs with other batch orders (floor: max)"
    )
    ap.add_argument(
        "--paired-orders",
        type=int,
        default=0,
        help="also train each recipe on the noise runs' batch orders; report the mean paired gap",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    recipes = [r for r in args.recipes.split(",") if r]
    warm = args.warmup_step if args.warmup_step is not None else args.steps // 6
    results: dict[str, object] = {"steps": args.steps}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one, _ = run(1, args.agree_steps, tmp / "one.json", "--eval-batches", "0")
        two, _ = run(2, args.agree_steps, tmp / "two.json", "--eval-batches", "0")
        pairs = zip(floats(one, "loss"), floats(two, "loss"), strict=True)
        rel = max(abs(a - b) / abs(a) for a, b in pairs)
        results["ep_agreement_max_rel"] = rel
        print(
            f"expert parallel (2 ranks) vs 1 process, {args.agree_steps} steps: "
            f"max relative loss difference {rel:.2e}",
            flush=True,
        )

        common = ("--eval-batches", EVAL_BATCHES)
        base, secs = run(2, args.steps, tmp / "fp32.json", *common, "--measure-overlap", "20")
        tokens = args.steps * 16 * 64
        fp32 = float(base["eval_loss"])  # type: ignore[arg-type]
        imb = floats(base, "imbalance")
        after = imb[warm:]
        results["balance"] = {
            "warmup_step": warm,
            "first_step": imb[0],
            "worst_before_warmup": max(imb[:warm]),
            "worst_after_warmup": max(after),
            "mean_after_warmup": sum(after) / len(after),
            "bound": BALANCE_BOUND,
        }
        print(
            f"balance: per-step max/mean expert load {imb[0]:.2f} at step 0, worst "
            f"{max(imb[:warm]):.2f} before step {warm}; after it worst {max(after):.2f}, mean "
            f"{sum(after) / len(after):.2f} (bound {BALANCE_BOUND}: "
            f"{'met' if max(after) <= BALANCE_BOUND else 'NOT met'}; ratio "
            f"{max(after) / BALANCE_BOUND:.2f})",
            flush=True,
        )
        ov = base["overlap"]
        assert isinstance(ov, dict)
        results["overlap"] = ov
        print(
            f"overlap, last 20 steps, rank 0: token all-to-all {ov['in_flight_ms']:.1f} ms in "
            f"flight, {ov['overlapped_ms']:.1f} ms ({ov['overlap_fraction']:.0%}) under the "
            f"shared experts' {ov['compute_ms']:.1f} ms of compute; {ov['exposed_wait_ms']:.1f} "
            "ms waited after it",
            flush=True,
        )
        others, fp32_by_order = [], {0: fp32}
        for k in range(1, max(args.noise_runs, args.paired_orders) + 1):
            noise, _ = run(2, args.steps, tmp / f"fp32_{k}.json", *common, "--data-seed", str(k))
            fp32_by_order[k] = float(noise["eval_loss"])  # type: ignore[arg-type]
            others.append((fp32_by_order[k] - fp32) / fp32)
        floor = max((abs(g) for g in others), default=0.0)
        results["fp32"] = {
            "eval_loss": fp32,
            "tokens_per_s": tokens / secs,
            "other_orders": others,
            "noise_floor": floor,
        }
        print(
            f"fp32, 2 ranks, {args.steps} steps: held-out loss {fp32:.4f}, "
            f"{tokens / secs:,.0f} tokens/s; other batch orders "
            f"{', '.join(f'{g:+.2%}' for g in others)}: noise floor {floor:.2%}",
            flush=True,
        )
        head = f"{'recipe':<22}{'held-out':>10}{'gap':>10}{'÷ 0.25% bar':>14}{'÷ floor':>10}"
        print(f"{head}{'tokens/s':>12}", flush=True)
        rows = {}
        for recipe in recipes:
            res, secs = run(2, args.steps, tmp / f"{recipe}.json", *common, "--fp8", recipe)
            loss = float(res["eval_loss"])  # type: ignore[arg-type]
            gap = (loss - fp32) / fp32
            paired = [gap]
            for k in range(1, args.paired_orders + 1):
                extra = ("--fp8", recipe, "--data-seed", str(k))
                other, _ = run(2, args.steps, tmp / f"{recipe}_{k}.json", *common, *extra)
                ref = fp32_by_order[k]
                paired.append((float(other["eval_loss"]) - ref) / ref)  # type: ignore[arg-type]
            mean_gap = sum(paired) / len(paired)
            rows[recipe] = {
                "eval_loss": loss,
                "gap": gap,
                "paired_gaps": paired,
                "mean_paired_gap": mean_gap,
                "ratio_to_bar": abs(gap) / FP8_BAR,
                "ratio_to_floor": abs(gap) / floor if floor else None,
                "tokens_per_s": tokens / secs,
            }
            by_floor = f"{abs(gap) / floor:>10.2f}" if floor else f"{'-':>10}"
            mean = (
                f"  mean over {len(paired)} batch orders {mean_gap:+.2%} "
                f"(÷ bar {abs(mean_gap) / FP8_BAR:.2f})"
                if len(paired) > 1
                else ""
            )
            print(
                f"{recipe:<22}{loss:>10.4f}{gap:>+10.2%}{abs(gap) / FP8_BAR:>14.2f}{by_floor}"
                f"{tokens / secs:>12,.0f}{mean}",
                flush=True,
            )
        results["fp8"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
