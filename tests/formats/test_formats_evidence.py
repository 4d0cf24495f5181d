"""The evidence, small: FP8 recipes track fp32 at a stable end, next to the fp32 noise floor;
QuaRot's rotation helps W4A4, and so does the learned one; GPTQ beats round-to-nearest; FP8 round trips clear the SQNR bar. The full-size figures come
from ``benchmarks/formats/bench_formats.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from anyware.formats import evidence as ev
from anyware.formats.training import Recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(single_thread: None) -> tuple[ev.GPT, list[ev.Batch]]:
    setup = ev.TrainSetup(steps=400, held_windows=128)
    result, model, held = ev.train(setup)
    assert result.eval_loss < 1.0, result.evals  # off the unigram plateau (≈ 2.8)
    return model, held


def test_fp8_recipes_track_fp32_at_a_stable_end(trained: tuple[ev.GPT, list[ev.Batch]]) -> None:
    model, _ = trained
    cont = ev.TrainSetup(steps=40, lr=1e-3, warmup=0.1, data_seed=7, held_windows=128)
    base, _, _ = ev.train(cont, start=model)
    noise = abs(ev.relative_gap(ev.train(cont, "fp32-data", start=model)[0], base))
    gaps = {}
    for recipe in [r.value for r in Recipe]:
        gaps[recipe] = ev.relative_gap(ev.train(cont, recipe, start=model)[0], base)
    # Measured here (400-step model at loss 0.39, still descending, so not yet the stable end
    # the benchmark uses): data-order noise 0.77%; gaps tensorwise +1.0/+1.1%, rowwise +0.2%,
    # deepseek +0.4%, mxfp8 +0.7%. A broken cast or a wrong gradient layout moves the loss by
    # tens of percent; 3% leaves room for another BLAS's chaotic pretraining.
    assert noise < 0.03, noise
    assert all(abs(g) < 0.03 for g in gaps.values()), gaps


def test_first_linear_carries_most_of_the_fp8_forward_gap(
    trained: tuple[ev.GPT, list[ev.Batch]],
) -> None:
    model, held = trained
    kept = ev.forward_only_gap(model, held, "tensorwise-current")
    full = ev.forward_only_gap(model, held, "tensorwise-current", keep_first=0)
    assert kept < full, (kept, full)  # measured: +0.70% kept, +1.91% with it in FP8


def test_quarot_rotation_helps_w4a4(trained: tuple[ev.GPT, list[ev.Batch]]) -> None:
    model, held = trained
    ppl0 = ev.perplexity(model, held)
    ppl = {rot: ev.ptq_perplexity(model, held, "w4a4", rot) for rot in ("none", "quarot")}
    w8 = ev.ptq_perplexity(model, held, "w8a8", "quarot")
    assert w8 < ppl0 * 1.01, (w8, ppl0)
    assert ppl0 < ppl["quarot"] < ppl["none"], (ppl0, ppl)  # measured 1.476 < 1.683 < 1.750
    opts = {"act_clip": 0.9, "calibration": ev.calibration_batches(ev.TrainSetup(), n=1)}
    clipped = {
        rot: ev.ptq_perplexity(model, held, "w4a4", rot, **opts) for rot in ("none", "quarot")
    }
    assert clipped["quarot"] < clipped["none"], clipped
    assert clipped["quarot"] < ppl["quarot"], (clipped, ppl)  # the clipping search helps
    stats = ev.activation_stats(model, held)
    assert set(stats) >= {"blocks.0.attn.qkv", "blocks.1.mlp.out"}
    assert all(s["kurtosis"] > 1 for s in stats.values()), stats


def test_learned_rotation_lowers_its_calibration_loss_and_helps_w4a4(
    trained: tuple[ev.GPT, list[ev.Batch]],
) -> None:
    model, held = trained
    calib = ev.calibration_batches(ev.TrainSetup(), n=1)  # training text, never the held-out
    opts = {"act_clip": 0.9, "calibration": calib, "weights": "gptq"}
    none = ev.ptq_perplexity(model, held, "w4a4", "none", **opts)
    ppl, report = ev.ptq_run(model, held, "w4a4", "learned", **opts)
    assert report.learned is not None
    assert report.learned.loss_after < report.learned.loss_before, report.learned
    assert ppl < none, (ppl, none)


def test_gptq_lowers_perplexity_on_both_arms(trained: tuple[ev.GPT, list[ev.Batch]]) -> None:
    model, held = trained
    opts = {"calibration": ev.calibration_batches(ev.TrainSetup(), n=1), "weights": "gptq"}
    for preset in ("w4a16", "w4a4"):
        for rot in ("none", "quarot"):
            rtn = ev.ptq_perplexity(model, held, preset, rot)
            gptq = ev.ptq_perplexity(model, held, preset, rot, **opts)
            # measured: w4a16 1.503 → 1.483 / 1.514 → 1.481, w4a4 1.750 → 1.711 / 1.683 → 1.642
            assert gptq < rtn, (preset, rot, gptq, rtn)


def test_sqnr_table_clears_the_fp8_bar() -> None:
    rows = ev.sqnr_table(rows=64, cols=512)
    for row in rows:
        if str(row["format"]).startswith("fp8"):
            assert float(row["gaussian"]) >= 18 and float(row["heavy_tailed"]) >= 18, row  # type: ignore[arg-type]
    by = {r["format"]: r for r in rows}
    assert float(by["mxfp4_e2m1 rceil"]["gaussian"]) < float(by["mxfp8_e4m3 rceil"]["gaussian"])  # type: ignore[arg-type]
