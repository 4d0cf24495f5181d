"""FP8 training: swap ``nn.Linear`` for a linear whose three GEMMs run on FP8 operands.

A linear layer in training does three matrix products, each with its own reduction dim::

    forward   y  = x  · Wᵀ      x (M,K), W (N,K)   reduce over K
    dgrad     dx = dy · W       dy (M,N)           reduce over N
    wgrad     dW = dyᵀ · x                         reduce over M

Every operand is quantised with its scale blocks laid along *that GEMM's* reduction dim (a
row-scaled x in the forward is scaled per token; in the wgrad it must be scaled per channel),
the product is accumulated in fp32 and the scales are applied in the epilogue. Forward operands
(activations, weights) use E4M3 for precision; gradients use E5M2 for range, except in
DeepSeek-V3's recipe, which keeps E4M3 everywhere and relies on fine 1×128 tiles instead.

Recipes (``Recipe``), from coarse to fine:

* ``tensorwise-delayed`` (Transformer Engine's default): one scale per tensor from the max of
  an amax history of previous steps, so no extra pass over the data before the cast; a value
  that outgrows its history saturates for one step.
* ``tensorwise-current``: one scale per tensor from this step's amax (an extra reduction).
* ``rowwise``: one scale per row along the reduction dim (torchao's float8 rowwise).
* ``deepseek-blockwise``: 1×128 tiles for activations and gradients, 128×128 blocks for weights.
* ``mxfp8``: MX blocks of 32 with E8M0 scales (RCEIL, as NVIDIA's hardware rounds them).

Two GEMM implementations: ``emulate`` (default, exact on every device: the quantised operands
are dequantised and multiplied in fp32, which is the fp32 accumulation the recipes specify) and
``scaled_mm`` (``torch._scaled_mm`` on real FP8 tensors; tensorwise and rowwise only, the
scale layouts it accepts). Accelerator GEMM kernels come from ``anyware.ops``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import nn

from anyware.formats.api import fake_quantize, quantize_tensor
from anyware.formats.fp8 import BLOCKS, fp8_scales
from anyware.formats.spec import E4M3, E5M2, Granularity, parse_choice


class Recipe(StrEnum):
    TENSORWISE_DELAYED = "tensorwise-delayed"
    TENSORWISE_CURRENT = "tensorwise-current"
    ROWWISE = "rowwise"
    DEEPSEEK_BLOCKWISE = "deepseek-blockwise"
    MXFP8 = "mxfp8"


class Gemm(StrEnum):
    EMULATE = "emulate"
    SCALED_MM = "scaled_mm"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fp8TrainingConfig:
    """How ``convert_to_fp8_training`` converts a model."""

    recipe: Recipe = Recipe.TENSORWISE_CURRENT
    """Scaling recipe."""
    gemm: Gemm = Gemm.EMULATE
    """GEMM implementation (``scaled_mm`` supports the tensorwise and rowwise recipes)."""
    amax_history_len: int = 1024
    """``tensorwise-delayed``: steps of amax history (Transformer Engine's default)."""
    skip: tuple[str, ...] = ("head", "lm_head", "gate", "router")
    """Module names (last component or full dotted name) kept in high precision: the output
    head and the MoE router, as DeepSeek-V3 does (logits and routing scores are the most
    precision-sensitive GEMMs; a flipped top-k choice is not a small error)."""
    keep_first: int = 1
    """The first ``keep_first`` convertible linears in module order (the ones reading the
    embeddings) stay in high precision, the first-layer half of the "first and last layers in
    high precision" rule of quantisation practice (Megatron-LM's ``--first-last-layers-bf16``;
    the last layer is the head, in ``skip``). Measured on the tiny GPT: FP8 on the fp32-trained
    model's first ``qkv`` alone costs +0.20-0.24% held-out loss of a +0.27-0.41% total, all from
    its input activation (sharp positional attention reads it); one of 8 GEMMs here, 1 of ~250
    in a 61-layer model. 0 converts it too."""
    pow2_scales: bool = False
    """Round fp32 scales up to powers of two (FP8 recipes; MX scales always are)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipe", parse_choice(Recipe, self.recipe, "recipe"))
        object.__setattr__(self, "gemm", parse_choice(Gemm, self.gemm, "gemm"))
        if self.keep_first < 0:
            raise ValueError(f"keep_first must be ≥ 0, got {self.keep_first}")
        if self.amax_history_len < 1:
            raise ValueError(f"amax_history_len must be ≥ 1, got {self.amax_history_len}")
        if self.gemm is Gemm.SCALED_MM and self.recipe in (
            Recipe.DEEPSEEK_BLOCKWISE,
            Recipe.MXFP8,
        ):
            raise ValueError(
                f"gemm='scaled_mm' supports the tensorwise and rowwise recipes, not {self.recipe}; "
                "use gemm='emulate'"
            )

    @property
    def grad_fp8(self) -> str:
        return "fp8_e4m3" if self.recipe is Recipe.DEEPSEEK_BLOCKWISE else "fp8_e5m2"


# operand roles; the delayed recipe keeps one amax history per role
OPERAND_ROLES = ("act", "weight", "grad")


class OperandQuantizer:
    """How a recipe quantises each operand role (``act``, ``weight``, ``grad``): element format,
    scale granularity, delayed scales from an amax history, and the quantise-dequantise itself.
    One place for both FP8 GEMMs: :class:`Float8Linear` and the experts' grouped GEMM
    (``formats/grouped.py``), which must quantise exactly alike."""

    __slots__ = ("config",)

    def __init__(self, config: Fp8TrainingConfig) -> None:
        self.config = config

    def fmt(self, role: str) -> str:
        if self.config.recipe is Recipe.MXFP8:
            return "mxfp8_e5m2" if role == "grad" else "mxfp8_e4m3"
        return self.config.grad_fp8 if role == "grad" else "fp8_e4m3"

    def granularity(self, role: str) -> Granularity:
        r = self.config.recipe
        if r is Recipe.ROWWISE:
            return Granularity.ROW
        if r is Recipe.DEEPSEEK_BLOCKWISE:
            return Granularity.BLOCK128X128 if role == "weight" else Granularity.BLOCK1X128
        return Granularity.TENSOR

    def delayed_scale(self, hist: torch.Tensor, t: torch.Tensor, role: str) -> torch.Tensor:
        """Scale from the max of ``hist`` (one role's amax history, updated in place), then
        push this step's amax (TE's order)."""
        amax_now = t.detach().abs().nan_to_num(posinf=0.0, neginf=0.0).amax().float()
        past = hist.max()
        amax = torch.where(past > 0, past, amax_now)  # first step: no history yet
        hist.copy_(torch.roll(hist, 1))
        hist[0] = amax_now
        el = E5M2 if self.fmt(role) == "fp8_e5m2" else E4M3
        return fp8_scales(amax, el, pow2_scale=self.config.pow2_scales)

    def fake(self, t: torch.Tensor, role: str, scale: torch.Tensor | None = None) -> torch.Tensor:
        fmt = self.fmt(role)
        if self.config.recipe is Recipe.MXFP8:
            return fake_quantize(t, fmt, scale_rounding="rceil")
        return fake_quantize(
            t, fmt, granularity=self.granularity(role), pow2_scale=self.config.pow2_scales,
            scale=scale,
        )  # fmt: skip


class Float8Linear(nn.Module):
    """``nn.Linear`` with FP8 GEMMs; shares the original ``weight``/``bias`` parameters (weight
    tying and optimiser state survive the swap)."""

    def __init__(self, linear: nn.Linear, config: Fp8TrainingConfig) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.config = config
        self.quant = OperandQuantizer(config)
        self.weight = linear.weight
        self.bias = linear.bias
        self.amax_history: torch.Tensor
        hist = torch.zeros(len(OPERAND_ROLES), config.amax_history_len, device=linear.weight.device)
        self.register_buffer("amax_history", hist)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, recipe={self.config.recipe}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = _Fp8Matmul.apply(x.reshape(-1, self.in_features), self.weight, self)  # type: ignore[no-untyped-call]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features).to(x.dtype)

    # -- quantisation of one operand, laid out with the GEMM's reduction dim last --

    def _fmt(self, role: str) -> str:
        return self.quant.fmt(role)

    def _granularity(self, role: str) -> Granularity:
        return self.quant.granularity(role)

    def _delayed_scale(self, t: torch.Tensor, role: str) -> torch.Tensor:
        return self.quant.delayed_scale(self.amax_history[OPERAND_ROLES.index(role)], t, role)

    def fake(self, t: torch.Tensor, role: str, scale: torch.Tensor | None = None) -> torch.Tensor:
        return self.quant.fake(t, role, scale)

    def gemm(
        self, a: torch.Tensor, a_role: str, b: torch.Tensor, b_role: str,
        scales: dict[str, torch.Tensor],
    ) -> torch.Tensor:  # fmt: skip
        """``a @ bᵀ`` for fp32 ``a (M,R)``, ``b (P,R)`` quantised per the recipe."""
        sa, sb = scales.get(a_role), scales.get(b_role)
        if self.config.gemm is Gemm.SCALED_MM:
            return self._scaled_mm(a, a_role, sa, b, b_role, sb)
        return self.fake(a, a_role, sa) @ self.fake(b, b_role, sb).T

    def _scaled_mm(
        self, a: torch.Tensor, a_role: str, sa: torch.Tensor | None,
        b: torch.Tensor, b_role: str, sb: torch.Tensor | None,
    ) -> torch.Tensor:  # fmt: skip
        g = self._granularity(a_role)
        qa = quantize_tensor(
            a, self._fmt(a_role), granularity=g, scale=sa, pow2_scale=self.config.pow2_scales
        )
        qb = quantize_tensor(
            b, self._fmt(b_role), granularity=g, scale=sb, pow2_scale=self.config.pow2_scales
        )
        scale_b = qb.scales if g is Granularity.TENSOR else qb.scales.reshape(1, -1)
        return torch._scaled_mm(
            qa.fp8_view(), qb.fp8_view().T, scale_a=qa.scales, scale_b=scale_b,
            out_dtype=torch.float32,
        )  # fmt: skip


class _Fp8Matmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, layer: Float8Linear) -> torch.Tensor:
        xf, wf = x.float(), w.float()
        scales: dict[str, torch.Tensor] = {}
        if layer.config.recipe is Recipe.TENSORWISE_DELAYED:
            scales = {
                "act": layer._delayed_scale(xf, "act"),
                "weight": layer._delayed_scale(wf, "weight"),
            }
        ctx.save_for_backward(x, w)
        ctx.layer, ctx.scales = layer, scales
        return layer.gemm(xf, "act", wf, "weight", scales)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        layer: Float8Linear = ctx.layer
        g = grad.float()
        scales = dict(ctx.scales)
        if layer.config.recipe is Recipe.TENSORWISE_DELAYED:
            scales["grad"] = layer._delayed_scale(g, "grad")
        xf, wf = x.float(), w.float()
        dx = (
            layer.gemm(g, "grad", wf.T.contiguous(), "weight", scales)
            if ctx.needs_input_grad[0]
            else None
        )
        dw = (
            layer.gemm(g.T.contiguous(), "grad", xf.T.contiguous(), "act", scales)
            if ctx.needs_input_grad[1]
            else None
        )
        return (
            None if dx is None else dx.to(x.dtype),
            None if dw is None else dw.to(w.dtype),
            None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversionReport:
    """What a conversion changed: converted module names and every module left alone, why."""

    converted: list[str] = field(default_factory=list)
    """Dotted names of the swapped modules."""
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    """``(name, type, reason)`` for each parameter-holding leaf module that was not converted."""

    def summary(self) -> str:
        lines = [f"converted {len(self.converted)} linear layers"]
        lines += [f"  skipped {n} ({t}): {r}" for n, t, r in self.skipped]
        return "\n".join(lines)


def plan_linear_swaps(
    model: nn.Module, skip: tuple[str, ...], *, min_multiple: int = 1, keep_first: int = 0
) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Which modules to swap and which to report as skipped (nothing is modified here);
    ``keep_first``: the first convertible linears in module order stay as they are."""
    convert: list[str] = []
    skipped: list[tuple[str, str, str]] = []
    for name, m in model.named_modules():
        if name == "" and isinstance(m, nn.Linear):
            skipped.append((name, type(m).__name__, "the model itself is a Linear; wrap it"))
            continue
        has_params = any(True for _ in m.parameters(recurse=False))
        if isinstance(m, nn.Linear):
            short = name.rsplit(".", 1)[-1]
            if name in skip or short in skip:
                skipped.append((name, type(m).__name__, "kept in high precision by the skip list"))
            elif type(m) is not nn.Linear:
                skipped.append(
                    (name, type(m).__name__, "subclass of nn.Linear: its forward may differ")
                )
            elif m.in_features % min_multiple or m.out_features % min_multiple:
                skipped.append((name, type(m).__name__, f"dims not multiples of {min_multiple}"))
            elif keep_first > 0:
                keep_first -= 1
                skipped.append(
                    (name, type(m).__name__, "first linear layer: kept in high precision")
                )
            else:
                convert.append(name)
        elif has_params and not any(True for _ in m.children()):
            skipped.append((name, type(m).__name__, "not a linear layer: kept in high precision"))
    return convert, skipped


def swap_modules(model: nn.Module, new: Mapping[str, nn.Module]) -> None:
    """Replace each named submodule (all built beforehand, so a failure changes nothing)."""
    for name, mod in new.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, mod)


def convert_to_fp8_training(
    model: nn.Module, recipe: str | Recipe = Recipe.TENSORWISE_CURRENT, **options: Any
) -> ConversionReport:
    """Swap every ``nn.Linear`` of ``model`` (in place) for a ``Float8Linear``.

    ``options`` are ``Fp8TrainingConfig`` fields (``gemm``, ``amax_history_len``, ``skip``,
    ``keep_first``, ``pow2_scales``). Modules not converted are listed in the report with the reason.
    """
    config = Fp8TrainingConfig(recipe=recipe, **options)  # type: ignore[arg-type]
    multiple = 16 if config.gemm is Gemm.SCALED_MM else 1  # FP8 GEMMs want K, N % 16 == 0
    convert, skipped = plan_linear_swaps(
        model, config.skip, min_multiple=multiple, keep_first=config.keep_first
    )
    new = {n: Float8Linear(model.get_submodule(n), config) for n in convert}  # type: ignore[arg-type]
    swap_modules(model, new)
    return ConversionReport(converted=convert, skipped=skipped)


assert set(BLOCKS) == set(Granularity)
