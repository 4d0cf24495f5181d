"""The evidence workloads: train the project's tiny GPT in fp32 and under each FP8 recipe,
measure perplexity under each PTQ preset, and SQNR per format.

Shared by ``benchmarks/formats/bench_formats.py``, the ``slow`` test and the demo so all three
report the same numbers. Everything is seeded: the fp32 run and each FP8 run see the same
initial weights and the same batches, so the final-loss gap measures the format, not the seed.

Two protocols, because this tiny model's early training is *chaotic*: it sits on a unigram
plateau (loss ≈ 2.8) and the step at which it escapes moves by tens of steps under any
perturbation, even fp32 rounding in a different order (measured: swapping ``F.linear`` for
``x @ Wᵀ + b``, bit-different only in the last place, moved the 200-step loss by 1.4%; some FP8
runs came out *better* than fp32 by 10%). So:

* ``from scratch`` trains every run from the same seed and reports the gap next to that
  ``fp32-reordered`` control, the noise floor any format's gap must be read against;
* ``warm start`` trains once in fp32 to the loss floor, then continues from that checkpoint for
  a fixed number of steps in fp32 and under each recipe on identical batches: past the chaotic
  phase, the gap measures what the format does to the loss the model can reach.

The "final loss" is the mean cross-entropy over a fixed held-out set of windows (the same for
every run), evaluated with the model as trained (FP8 forward for an FP8 run). A single batch's
training loss would carry ±1% batch-to-batch noise, four times the 0.25% bar being checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
from anyware.models.gpt import GPT, GPTConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainSetup:
    """Model size, steps and data of one evidence run."""

    steps: int = 300
    """Optimiser steps."""
    batch_size: int = 16
    """Windows per step."""
    lr: float = 3e-3
    """AdamW learning rate (cosine-decayed to 10%)."""
    seed: int = 0
    """Seed for initial weights and batch order (the same for every run)."""
    eval_batches: int = 8
    """Held-out batches averaged for the final loss and the perplexity."""
    gpt: GPTConfig = field(
        default_factory=lambda: GPTConfig(
            vocab_size=VOCAB_SIZE, seq_len=64, d_model=64, n_heads=4, n_layers=2
        )
    )
    """The model."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_batches"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainSetup.{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainResult:
    recipe: str
    """``fp32`` or an FP8 recipe name."""
    losses: list[float]
    """Training loss per step."""
    eval_loss: float
    """Held-out mean cross-entropy after training."""


def _data(
    setup: TrainSetup,
) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    train = encode(make_text(4000, seed=setup.seed))
    held = encode(make_text(400, seed=setup.seed + 1000))
    it = batches(train, setup.batch_size, setup.gpt.seq_len, seed=setup.seed)
    ev = batches(held, setup.batch_size, setup.gpt.seq_len, seed=setup.seed + 1)
    return it, [next(ev) for _ in range(setup.eval_batches)]


@torch.no_grad()
def eval_loss(model: nn.Module, held: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean cross-entropy over the held-out windows."""
    was = model.training
    model.eval()
    total = 0.0
    for x, y in held:
        _, loss = model(x, y)
        total += float(loss)
    model.train(was)
    return total / len(held)


def train(
    setup: TrainSetup,
    recipe: str | None = None,
    *,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[TrainResult, GPT, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Train from the seed in fp32 (``recipe=None``), under an FP8 recipe, or as the
    ``fp32-reordered`` control."""
    torch.manual_seed(setup.seed)
    model = GPT(setup.gpt)
    convert(model, recipe)
    opt = torch.optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / setup.steps, 1.0)))
    )
    it, held = _data(setup)
    losses: list[float] = []
    for step in range(setup.steps):
        x, y = next(it)
        _, loss = model(x, y)
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    result = TrainResult(recipe=recipe or "fp32", losses=losses, eval_loss=eval_loss(model, held))
    return result, model, held


class ReorderedLinear(nn.Module):
    """fp32 ``x @ Wᵀ + b``: the same math as ``nn.Linear`` in another summation order (the
    noise-floor control; shares the parameters)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias


CONTROL = "fp32-reordered"


def convert(model: nn.Module, recipe: str | None) -> None:
    """Apply an FP8 recipe, the ``fp32-reordered`` control, or nothing (``None``)."""
    from anyware.formats.training import (
        Fp8TrainingConfig,
        convert_to_fp8_training,
        plan_linear_swaps,
        swap_modules,
    )

    if recipe == CONTROL:
        names, _ = plan_linear_swaps(model, Fp8TrainingConfig().skip)
        swap_modules(model, {n: ReorderedLinear(model.get_submodule(n)) for n in names})  # type: ignore[arg-type]
    elif recipe is not None:
        convert_to_fp8_training(model, recipe=recipe)


def continue_training(
    model: GPT,
    held: list[tuple[torch.Tensor, torch.Tensor]],
    setup: TrainSetup,
    recipe: str | None,
    *,
    steps: int,
    lr: float = 1e-3,
) -> TrainResult:
    """Copy ``model``, convert it, train ``steps`` more steps on a fixed batch stream (the same
    for every recipe) with a cosine-decayed ``lr``; the held-out loss after."""
    import copy

    m = copy.deepcopy(model)
    convert(m, recipe)
    it = batches(
        encode(make_text(4000, seed=setup.seed + 7)), setup.batch_size, setup.gpt.seq_len,
        seed=setup.seed + 7,
    )  # fmt: skip
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.0)
    losses: list[float] = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        x, y = next(it)
        _, loss = m(x, y)
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return TrainResult(recipe=recipe or "fp32", losses=losses, eval_loss=eval_loss(m, held))


def relative_gap(result: TrainResult, baseline: TrainResult) -> float:
    """``(loss - loss_fp32) / loss_fp32`` on the held-out set (positive: FP8 is worse)."""
    return (result.eval_loss - baseline.eval_loss) / baseline.eval_loss


def perplexity(model: nn.Module, held: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return math.exp(eval_loss(model, held))


def heavy_tailed(n: int, *, seed: int) -> torch.Tensor:
    """Student-t with 3 degrees of freedom: finite variance, outliers ~10× the bulk."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    chi2 = torch.randn(n, 3, generator=g, dtype=torch.float64).pow(2).sum(-1)
    return (z / torch.sqrt(chi2 / 3)).float()


#: (label, fmt, options) rows of the SQNR table.
SQNR_CASES: list[tuple[str, str, dict[str, object]]] = [
    ("fp8_e4m3 tensor", "fp8_e4m3", {"granularity": "tensor"}),
    ("fp8_e4m3 row", "fp8_e4m3", {"granularity": "row"}),
    ("fp8_e4m3 block1x128", "fp8_e4m3", {"granularity": "block1x128"}),
    ("fp8_e4m3 block128x128", "fp8_e4m3", {"granularity": "block128x128"}),
    ("fp8_e5m2 tensor", "fp8_e5m2", {"granularity": "tensor"}),
    ("fp8_e5m2 row", "fp8_e5m2", {"granularity": "row"}),
    ("mxfp8_e4m3 floor", "mxfp8_e4m3", {"scale_rounding": "floor"}),
    ("mxfp8_e4m3 rceil", "mxfp8_e4m3", {"scale_rounding": "rceil"}),
    ("mxfp8_e5m2 rceil", "mxfp8_e5m2", {"scale_rounding": "rceil"}),
    ("mxfp6_e3m2 rceil", "mxfp6_e3m2", {"scale_rounding": "rceil"}),
    ("mxfp6_e2m3 rceil", "mxfp6_e2m3", {"scale_rounding": "rceil"}),
    ("mxfp4_e2m1 floor", "mxfp4_e2m1", {"scale_rounding": "floor"}),
    ("mxfp4_e2m1 rceil", "mxfp4_e2m1", {"scale_rounding": "rceil"}),
    ("mxint8", "mxint8", {}),
    ("int8 row", "int8", {}),
    ("int4 g128", "int4", {"group_size": 128}),
    ("int4 g32", "int4", {"group_size": 32}),
]


def sqnr_table(rows: int = 256, cols: int = 1024, *, seed: int = 0) -> list[dict[str, object]]:
    """SQNR (dB) of every format's round trip on Gaussian and Student-t(3) matrices."""
    from anyware.formats.api import fake_quantize
    from anyware.testing.tolerances import sqnr_db

    g = torch.Generator().manual_seed(seed)
    inputs = {
        "gaussian": torch.randn(rows, cols, generator=g),
        "heavy_tailed": heavy_tailed(rows * cols, seed=seed).reshape(rows, cols),
    }
    out: list[dict[str, object]] = []
    for label, fmt, opts in SQNR_CASES:
        row: dict[str, object] = {"format": label}
        for dist, x in inputs.items():
            row[dist] = round(sqnr_db(x, fake_quantize(x, fmt, **opts)), 2)  # type: ignore[arg-type]
        out.append(row)
    return out
