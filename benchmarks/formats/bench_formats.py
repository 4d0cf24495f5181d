"""Evidence for anyware.formats: FP8 training loss gap, PTQ perplexity, SQNR per format.

Run: ``python benchmarks/formats/bench_formats.py [--quick] [--json FILE]``.

Anchors (each printed line ends with its ratio to the anchor):
* DeepSeek-V3: FP8 training within 0.25% relative loss of the high-precision run
  (ratio = |gap| / 0.25%; ≤ 1 meets the bar).
* QuaRot: the Hadamard rotation recovers most of W4A4's perplexity loss (Llama-2-7B: 6.4 with
  rotation vs 5.5 fp16); the target here is closing ≥ 50% of the W4A4 gap
  (ratio = fraction closed / 0.5; ≥ 1 meets it).
* torchao: FP8 round trips keep SQNR ≥ 18 dB (ratio = SQNR / 18).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from anyware.formats import evidence as ev
from anyware.formats import quantize
from anyware.formats.training import Recipe

DEEPSEEK_GAP = 0.0025
SQNR_BAR_DB = 18.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the tiny model is faster single-threaded on a shared cpu
    scratch_steps, pre_steps, cont_steps = (60, 120, 20) if args.quick else (200, 500, 100)
    recipes = [r.value for r in Recipe]
    out: dict[str, object] = {}
    t0 = time.perf_counter()

    print(f"== FP8 training from scratch: {scratch_steps} steps, seed 0, held-out loss", flush=True)
    setup = ev.TrainSetup(steps=scratch_steps)
    base, _, _ = ev.train(setup)
    print(f"fp32                  loss {base.eval_loss:.4f}", flush=True)
    scratch = {}
    for r in [ev.CONTROL, *recipes]:
        res, _, _ = ev.train(setup, r)
        gap = ev.relative_gap(res, base)
        scratch[r] = {"loss": res.eval_loss, "gap": gap}
        print(
            f"{r:<21} loss {res.eval_loss:.4f}  gap {100 * gap:+.3f}%  ratio to 0.25% bar {abs(gap) / DEEPSEEK_GAP:.2f}",
            flush=True,
        )
    out["from_scratch"] = {"steps": scratch_steps, "fp32_loss": base.eval_loss, "runs": scratch}

    print(
        f"\n== FP8 training, warm start: fp32 for {pre_steps} steps, then {cont_steps} steps per run",
        flush=True,
    )
    pre = ev.TrainSetup(steps=pre_steps)
    _, model, held = ev.train(pre)
    fp32 = ev.continue_training(model, held, pre, None, steps=cont_steps)
    print(f"fp32                  loss {fp32.eval_loss:.4f}", flush=True)
    warm = {}
    for r in [ev.CONTROL, *recipes]:
        res = ev.continue_training(model, held, pre, r, steps=cont_steps)
        gap = ev.relative_gap(res, fp32)
        warm[r] = {"loss": res.eval_loss, "gap": gap}
        print(
            f"{r:<21} loss {res.eval_loss:.4f}  gap {100 * gap:+.3f}%  ratio to 0.25% bar {abs(gap) / DEEPSEEK_GAP:.2f}",
            flush=True,
        )
    out["warm_start"] = {
        "pretrain_steps": pre_steps,
        "steps": cont_steps,
        "fp32_loss": fp32.eval_loss,
        "runs": warm,
    }

    print(f"\n== PTQ perplexity of the {pre_steps}-step fp32 model (held-out)", flush=True)
    ppl0 = ev.perplexity(model, held)
    print(f"fp32                  ppl {ppl0:.4f}", flush=True)
    ptq: dict[str, float] = {"fp32": ppl0}
    for preset in ("w8a8", "w4a16", "w4a4", "mxfp8", "mxfp4"):
        for rotate in (False, True):
            m = copy.deepcopy(model)
            quantize(m, preset, rotate=rotate)
            key = preset + ("+rot" if rotate else "")
            ptq[key] = ev.perplexity(m, held)
            print(
                f"{key:<21} ppl {ptq[key]:.4f}  (+{100 * (ptq[key] / ppl0 - 1):.2f}%)", flush=True
            )
    closed = (ptq["w4a4"] - ptq["w4a4+rot"]) / max(ptq["w4a4"] - ppl0, 1e-12)
    print(
        f"W4A4 rotation closes {100 * closed:.1f}% of the gap; ratio to the 50% target {closed / 0.5:.2f}",
        flush=True,
    )
    out["ptq"] = {"perplexity": ptq, "w4a4_rotation_gap_closed": closed}

    print("\n== SQNR (dB) of each format's round trip, 256x1024", flush=True)
    rows = ev.sqnr_table()
    for row in rows:
        fp8_note = ""
        if str(row["format"]).startswith("fp8"):
            worst = min(float(row["gaussian"]), float(row["heavy_tailed"]))  # type: ignore[arg-type]
            fp8_note = f"  ratio to 18 dB {worst / SQNR_BAR_DB:.2f}"
        print(
            f"{row['format']:<22} gaussian {row['gaussian']:>6}  student-t(3) {row['heavy_tailed']:>6}{fp8_note}",
            flush=True,
        )
    out["sqnr_db"] = rows
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\ntotal {out['seconds']} s", flush=True)
    if args.json:
        from anyware._io import atomic_write_json

        atomic_write_json(Path(args.json), out)


if __name__ == "__main__":
    sys.exit(main())
