"""Evidence for anyware.formats: FP8 training loss gap next to its noise floor, PTQ perplexity
with and without rotation, SQNR per format.

Run: ``python benchmarks/formats/bench_formats.py [--quick] [--scratch-recipes] [--json FILE]``.

Anchors (each printed line ends with its ratio to the anchor):
* DeepSeek-V3: FP8 training within 0.25% relative loss of the high-precision run
  (ratio = |gap| / 0.25%; ≤ 1 meets the bar). Every gap is printed next to the noise floor,
  the largest |gap| of the fp32 controls in the same protocol (``formats.evidence``).
* QuaRot: the Hadamard rotation recovers most of W4A4's perplexity loss (Llama-2-7B: 6.4 with
  rotation vs 5.5 fp16); the target here is closing ≥ 50% of the W4A4 gap
  (ratio = fraction closed / 0.5; ≥ 1 meets it).
* torchao: FP8 round trips keep SQNR ≥ 18 dB (ratio = SQNR / 18).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from anyware.formats import evidence as ev
from anyware.formats.training import Recipe

DEEPSEEK_GAP = 0.0025
SQNR_BAR_DB = 18.0
PRESETS = ("w8a8", "w4a16", "w4a4", "mxfp8", "mxfp4")


def _gap_line(name: str, res: ev.TrainResult, base: ev.TrainResult, floor: float | None) -> str:
    gap = ev.relative_gap(res, base)
    tail = "" if floor is None else f"  gap/noise floor {abs(gap) / max(floor, 1e-9):.1f}"
    return (
        f"{name:<30} loss {res.eval_loss:.5f}  gap {100 * gap:+.3f}%  "
        f"ratio to 0.25% bar {abs(gap) / DEEPSEEK_GAP:.2f}{tail}"
    )


def _protocol(
    title: str, setup: ev.TrainSetup, start: Any, names: list[tuple[str, str, dict[str, Any]]],
    extra_orders: int = 0,
) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """fp32, the controls, then each ``(label, recipe, fp8_options)``; prints them and returns
    the figures and the fp32 model."""
    print(f"\n== {title}", flush=True)
    base, model, _ = ev.train(setup, start=start)
    print(f"{'fp32':<30} loss {base.eval_loss:.5f}  (evals {[round(v, 5) for v in base.evals]})")
    out: dict[str, Any] = {"fp32_loss": base.eval_loss, "runs": {}}
    controls = [ev.train(setup, c, start=start)[0] for c in ev.CONTROLS]
    labels = [f"{c.recipe} (control)" for c in controls]
    for k in range(2, 2 + extra_orders):  # more batch orders: one sample is a weak floor
        order = replace(setup, data_seed=setup.data_seed + k)
        controls.append(ev.train(order, start=start)[0])
        labels.append(f"fp32-data+{k} (control)")
    floor = max(abs(ev.relative_gap(c, base)) for c in controls)
    for label, c in zip(labels, controls, strict=True):
        print(_gap_line(label, c, base, None), flush=True)
        out["runs"][label.split(" ")[0]] = {"loss": c.eval_loss, "gap": ev.relative_gap(c, base)}
    print(f"noise floor (largest control |gap|) {100 * floor:.3f}%", flush=True)
    out["noise_floor"] = floor
    for label, recipe, opts in names:
        res, _, _ = ev.train(setup, recipe, start=start, fp8_options=opts)
        print(_gap_line(label, res, base, floor), flush=True)
        out["runs"][label] = {"loss": res.eval_loss, "gap": ev.relative_gap(res, base)}
    return out, model


ROTATION_SEEDS = 4  # the closed fraction moves by ±15 points between random Hadamard signs


#: rows that also run the learned rotation (it needs calibration; ~25 s per seed on 2 cores)
LEARNED_ROWS = ("w4a4+clip", "w4a4+gptq", "w4a4+gptq+clip")


def _w4a4_closed(
    model: Any, held: Any, ppl0: float, label: str, opts: dict[str, Any], *, learned: bool = False
) -> dict[str, Any]:
    """Fraction of the W4A4 perplexity gap each rotation closes, per rotation seed and mean."""
    none = ev.ptq_perplexity(model, held, "w4a4", "none", **opts)
    print(f"{label:<21} ppl {none:.4f}  (+{100 * (none / ppl0 - 1):.2f}%)", flush=True)
    out: dict[str, Any] = {"none": none}
    # the learned rotation trains on the calibration inputs: only rows whose arms all have them
    rots = ("quarot", "online", "learned") if learned else ("quarot", "online")
    for rot in rots:
        runs = [
            ev.ptq_run(model, held, "w4a4", rot, seed=seed, **opts)
            for seed in range(ROTATION_SEEDS)
        ]
        ppl = [p for p, _ in runs]
        closed = [(none - p) / max(none - ppl0, 1e-12) for p in ppl]
        mean = sum(closed) / len(closed)
        print(
            f"{label + '+' + rot:<21} ppl {' '.join(f'{p:.4f}' for p in ppl)} (seeds 0-"
            f"{ROTATION_SEEDS - 1}); closes {' '.join(f'{100 * c:.1f}%' for c in closed)} of the "
            f"gap, mean {100 * mean:.1f}%; ratio to the 50% target {mean / 0.5:.2f}",
            flush=True,
        )
        out[rot] = {"perplexity": ppl, "closed": closed, "mean_closed": mean}
        infos = [r.learned for _, r in runs if r.learned is not None]
        if infos:
            print(
                f"{'':<21} learned rotation: {infos[0].iterations} iterations; calibration "
                "loss before -> after (seeds 0-"
                f"{ROTATION_SEEDS - 1}): "
                + "  ".join(f"{lr.loss_before:.4f}->{lr.loss_after:.4f}" for lr in infos),
                flush=True,
            )
            out[rot]["calibration_loss"] = [[lr.loss_before, lr.loss_after] for lr in infos]
            out[rot]["iterations"] = infos[0].iterations
    return out


def _w4a4_gptq(model: Any, held: Any, ppl0: float, calib: Any) -> dict[str, Any]:
    """The W4A4 rotation fractions with GPTQ weights, identical options on every arm."""
    print(
        "\nW4A4 with GPTQ weights on every arm (Hessians from the same 2 calibration batches, "
        "blocks of 128, 1% dampening, layer after layer; QuaRot and SpinQuant report W4A4 "
        "this way)",
        flush=True,
    )
    out: dict[str, Any] = {}
    for label, opts in (
        ("w4a4+gptq", {}),
        ("w4a4+gptq+clip", {"act_clip": 0.9}),
        ("w4a4+gptq-ao+clip", {"act_clip": 0.9, "act_order": True}),
        # every Hessian from the unquantised model instead of layer after layer
        ("w4a4+gptq-oneshot+clip", {"act_clip": 0.9, "sequential": False}),
    ):
        full = {"calibration": calib, "weights": "gptq", **opts}
        out[label.replace("+", "_").replace("-", "_")] = _w4a4_closed(
            model, held, ppl0, label, full, learned=label in LEARNED_ROWS
        )
    return out


def _ptq_only(pre_steps: int) -> None:
    """Train the fp32 model alone and print the PTQ section (minutes instead of ~20)."""
    pre = ev.TrainSetup(steps=pre_steps)
    res, model, held = ev.train(pre)
    ppl0 = ev.perplexity(model, held)
    print(f"fp32 {pre_steps} steps: loss {res.eval_loss:.5f}  ppl {ppl0:.4f}", flush=True)
    _w4a4_closed(model, held, ppl0, "w4a4", {})
    calib = ev.calibration_batches(pre)
    _w4a4_closed(
        model, held, ppl0, "w4a4+clip", {"act_clip": 0.9, "calibration": calib}, learned=True
    )
    _w4a4_gptq(model, held, ppl0, calib)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    ap.add_argument(
        "--scratch-recipes", action="store_true",
        help="also train every recipe from scratch (chaotic here: read it against the noise floor)",
    )  # fmt: skip
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument(
        "--ptq-only", action="store_true", help="only the W4A4 rotation tables (RTN, clip, GPTQ)"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)  # the tiny model is faster single-threaded on a shared cpu
    pre_steps, cont_steps = (300, 40) if args.quick else (1000, 200)
    if args.ptq_only:
        _ptq_only(pre_steps)
        return
    recipes = [r.value for r in Recipe]
    out: dict[str, Any] = {}
    t0 = time.perf_counter()

    pre = ev.TrainSetup(steps=pre_steps)
    scratch_names = [(r, r, {}) for r in recipes] if args.scratch_recipes else []
    res, model = _protocol(
        f"from scratch: {pre_steps} steps, warmup 5% + cosine to 0, peak lr {pre.lr}, "
        f"final loss = mean of held-out loss at steps {pre.eval_steps()}",
        pre, None, scratch_names,
    )  # fmt: skip
    out["from_scratch"] = {"steps": pre_steps, **res}
    held = ev.held_out(pre)

    cont = ev.TrainSetup(steps=cont_steps, lr=1e-3, warmup=0.1, data_seed=7)
    names = [(r, r, {}) for r in recipes]
    names += [(f"{r} keep_first=0", r, {"keep_first": 0}) for r in recipes]
    res, _ = _protocol(
        f"stable end: the {pre_steps}-step fp32 model + {cont_steps} steps per run "
        f"(warmup 10% + cosine to 0, peak lr {cont.lr}, one batch stream), final loss at "
        f"steps {cont.eval_steps()}",
        cont, model, names, extra_orders=3,
    )  # fmt: skip
    out["stable_end"] = {"pretrain_steps": pre_steps, "steps": cont_steps, **res}

    print(
        "\n== FP8 forward only, on the fp32 model (no FP8 training): relative loss gap", flush=True
    )
    fwd: dict[str, dict[str, float]] = {}
    for r in recipes:
        fwd[r] = {
            f"keep_first={k}": ev.forward_only_gap(model, held, r, keep_first=k) for k in (1, 0)
        }
        print(
            f"{r:<22} " + "  ".join(f"{k} {100 * v:+.3f}%" for k, v in fwd[r].items()), flush=True
        )
    out["forward_only_gap"] = fwd

    print(
        f"\n== activations of the {pre_steps}-step fp32 model (inputs of each linear)", flush=True
    )
    stats = ev.activation_stats(model, held)
    for name, st in stats.items():
        print(
            f"{name:<22} kurtosis {st['kurtosis']:6.2f}  token max/rms "
            f"{st['token_max_over_rms']:5.2f}  channel max/median {st['channel_max_over_median']:5.2f}",
            flush=True,
        )
    out["activation_stats"] = stats

    print(f"\n== PTQ perplexity of the {pre_steps}-step fp32 model (held-out)", flush=True)
    ppl0 = ev.perplexity(model, held)
    print(f"fp32                  ppl {ppl0:.4f}", flush=True)
    ptq: dict[str, float] = {"fp32": ppl0}
    for preset in PRESETS:
        for rot in ev.ROTATIONS:
            key = preset if rot == "none" else f"{preset}+{rot}"
            ptq[key] = ev.ptq_perplexity(model, held, preset, rot)
            print(
                f"{key:<21} ppl {ptq[key]:.4f}  (+{100 * (ptq[key] / ppl0 - 1):.2f}%)", flush=True
            )
    rtn = _w4a4_closed(model, held, ppl0, "w4a4", {})
    print(
        "\nW4A4 with clipping on every arm (QuaRot's 0.9 activation clip + the calibrated weight "
        "clip search on 2 batches of training text)",
        flush=True,
    )
    clip_opts = {"act_clip": 0.9, "calibration": ev.calibration_batches(pre)}
    clipped = _w4a4_closed(model, held, ppl0, "w4a4+clip", clip_opts, learned=True)
    out["ptq"] = {"perplexity": ptq, "w4a4_rotation": rtn, "w4a4_clipped_rotation": clipped}
    out["ptq"].update(_w4a4_gptq(model, held, ppl0, ev.calibration_batches(pre)))

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
