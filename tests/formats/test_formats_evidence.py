"""The evidence, small: FP8 recipes track fp32 from a warm start; PTQ presets order as expected;
FP8 round trips clear the SQNR bar. The full-size figures come from
``benchmarks/formats/bench_formats.py``."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch

from anyware.formats import evidence as ev
from anyware.formats import quantize
from anyware.formats.training import Recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(
    single_thread: None,
) -> tuple[ev.TrainSetup, object, list[tuple[torch.Tensor, torch.Tensor]]]:
    setup = ev.TrainSetup(steps=300, eval_batches=4)
    _, model, held = ev.train(setup)
    return setup, model, held


def test_fp8_recipes_track_fp32_from_a_warm_start(trained: tuple) -> None:  # type: ignore[type-arg]
    setup, model, held = trained
    base = ev.continue_training(model, held, setup, None, steps=30)
    gaps = {}
    for recipe in [r.value for r in Recipe]:
        res = ev.continue_training(model, held, setup, recipe, steps=30)
        gaps[recipe] = ev.relative_gap(res, base)
    # Measured here (300-step model still descending, loss 0.465): tensorwise +1.8%/+1.7%,
    # rowwise +0.4%, deepseek +0.5%, mxfp8 +0.4%. The pretraining itself is chaotic (another
    # BLAS can land it elsewhere), so the bound is loose: 5% still catches a broken cast or a
    # wrong gradient layout, which move the loss by tens of percent. The full-size, converged
    # figures are the benchmark's.
    assert all(abs(g) < 0.05 for g in gaps.values()), gaps
    assert gaps["mxfp8"] < gaps["tensorwise-current"], gaps  # finer scales, smaller gap


def test_ptq_presets_order_by_bits_and_rotation_helps_w4a4(trained: tuple) -> None:  # type: ignore[type-arg]
    _, model, held = trained
    ppl = {"fp32": ev.perplexity(model, held)}  # type: ignore[arg-type]
    for preset in ("w8a8", "w4a4", "mxfp8"):
        for rotate in (False, True):
            m = copy.deepcopy(model)
            quantize(m, preset, rotate=rotate)  # type: ignore[call-overload]
            ppl[preset + ("+rot" if rotate else "")] = ev.perplexity(m, held)
    assert ppl["w8a8"] < ppl["fp32"] * 1.01 and ppl["mxfp8"] < ppl["fp32"] * 1.03, ppl
    assert ppl["w4a4"] > ppl["w8a8"], ppl
    assert ppl["w4a4+rot"] < ppl["w4a4"], ppl


def test_sqnr_table_clears_the_fp8_bar() -> None:
    rows = ev.sqnr_table(rows=64, cols=512)
    for row in rows:
        if str(row["format"]).startswith("fp8"):
            assert float(row["gaussian"]) >= 18 and float(row["heavy_tailed"]) >= 18, row  # type: ignore[arg-type]
    by = {r["format"]: r for r in rows}
    assert float(by["mxfp4_e2m1 rceil"]["gaussian"]) < float(by["mxfp8_e4m3 rceil"]["gaussian"])  # type: ignore[arg-type]
