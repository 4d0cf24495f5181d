"""Post-training quantisation: presets that swap ``nn.Linear`` for a quantised linear.

A preset names what is stored for weights and what activations are rounded to at run time:

==========  ==========================================  ==================================
preset      weights                                     activations
==========  ==========================================  ==================================
``w8a8``    INT8, one scale per output channel          INT8, one scale per token
``w4a16``   INT4, one scale per group of 128 along K    unchanged
``w4a4``    INT4, one scale per group of 128 along K    INT4, one scale per token
``mxfp8``   MXFP8 E4M3 (blocks of 32, E8M0 scales)      MXFP8 E4M3
``mxfp4``   MXFP4 E2M1 (blocks of 32, E8M0 scales)      MXFP4 E2M1
==========  ==========================================  ==================================

Rounding is round-to-nearest (no GPTQ/AWQ calibration), so the numbers isolate the format.

**Rotation** (``rotate=True``, QuaRot-style): 4-bit per-token activations fail on the few
channels that are 10-100× larger than the rest, because one scale per token must cover them.
An orthogonal ``R = H·diag(s)`` (randomised Walsh–Hadamard) spreads each outlier over all
channels; since ``W x = (W Rᵀ)(R x)`` the layer's output is unchanged in exact arithmetic. The
weight half ``W Rᵀ`` is **folded** into the stored weights once, here; the activation half
``R x`` runs online before the activation is quantised (an O(K log K) butterfly). QuaRot also
folds ``R`` into the *previous* layer so that no online transform is needed on the residual
stream; that requires turning LayerNorm into RMSNorm (mean subtraction and the affine ``γ,β``
do not commute with a rotation), which this module does not do to the user's model, so every
converted linear keeps its online transform. Widths that are not powers of two use a
block-diagonal Hadamard (see ``hadamard.py``).

Activation quantisation is emulated exactly (fake quantisation, fp32 GEMM); the weights are
kept both as ``QuantizedTensor`` (what a kernel would read) and dequantised for the emulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import nn

from anyware.formats.api import QuantizedTensor, dequantize, fake_quantize, quantize_tensor
from anyware.formats.hadamard import hadamard_transform, random_signs
from anyware.formats.spec import parse_choice
from anyware.formats.training import plan_linear_swaps, swap_modules


class Preset(StrEnum):
    W8A8 = "w8a8"
    W4A16 = "w4a16"
    W4A4 = "w4a4"
    MXFP8 = "mxfp8"
    MXFP4 = "mxfp4"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Scheme:
    weight_fmt: str
    weight_opts: dict[str, Any]
    act_fmt: str | None
    act_opts: dict[str, Any]


def _scheme(preset: Preset, group_size: int | None) -> _Scheme:
    g = group_size if group_size is not None else 128
    if preset is Preset.W8A8:
        return _Scheme(weight_fmt="int8", weight_opts={}, act_fmt="int8", act_opts={})
    if preset is Preset.W4A16:
        return _Scheme(weight_fmt="int4", weight_opts={"group_size": g}, act_fmt=None, act_opts={})
    if preset is Preset.W4A4:
        # per-token activations: QuaRot's setting, where outliers hurt most
        return _Scheme(
            weight_fmt="int4", weight_opts={"group_size": g}, act_fmt="int4",
            act_opts={"group_size": None},
        )  # fmt: skip
    fmt = "mxfp8_e4m3" if preset is Preset.MXFP8 else "mxfp4_e2m1"
    return _Scheme(weight_fmt=fmt, weight_opts={}, act_fmt=fmt, act_opts={})


@dataclass(frozen=True, slots=True, kw_only=True)
class PTQConfig:
    preset: Preset
    """Which formats (table above)."""
    rotate: bool = False
    """Randomised Hadamard rotation of each linear's input (weights folded, activations online)."""
    group_size: int | None = None
    """INT4 weight group along K (default 128)."""
    skip: tuple[str, ...] = ("head", "lm_head")
    """Module names kept in high precision (the output head by default)."""
    seed: int = 0
    """Seed of the rotation's random signs."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "preset", parse_choice(Preset, self.preset, "PTQ preset"))
        if self.group_size is not None and self.group_size <= 0:
            raise ValueError(f"group_size must be positive, got {self.group_size}")


class QuantLinear(nn.Module):
    """A linear layer with stored quantised weights and fake-quantised activations."""

    def __init__(self, linear: nn.Linear, config: PTQConfig, seed: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.scheme = _scheme(config.preset, config.group_size)
        self.preset = config.preset
        w = linear.weight.detach().float()
        self.signs: torch.Tensor | None = None
        if config.rotate:
            self.signs = random_signs(self.in_features, seed=seed).to(w.device)
            w = hadamard_transform(w, signs=self.signs)  # W·Rᵀ, row by row
        self.qweight: QuantizedTensor = quantize_tensor(
            w, self.scheme.weight_fmt, **self.scheme.weight_opts
        )
        self.weight: torch.Tensor
        self.register_buffer("weight", dequantize(self.qweight, dtype=torch.float32))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def extra_repr(self) -> str:
        rot = ", rotated" if self.signs is not None else ""
        return f"in={self.in_features}, out={self.out_features}, preset={self.preset}{rot}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        if self.signs is not None:
            h = hadamard_transform(h, signs=self.signs)
        if self.scheme.act_fmt is not None:
            h = fake_quantize(h, self.scheme.act_fmt, **self.scheme.act_opts)
        y = h @ self.weight.T
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype)


@dataclass(frozen=True, slots=True, kw_only=True)
class PTQReport:
    preset: Preset
    rotate: bool
    converted: list[str] = field(default_factory=list)
    """Dotted names of the swapped linears."""
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    """``(name, type, reason)`` for each parameter-holding leaf module left in high precision."""


@torch.no_grad()
def quantize_model(model: nn.Module, preset: str | Preset, **options: Any) -> PTQReport:
    """Apply ``preset`` to every ``nn.Linear`` of ``model`` in place (``PTQConfig`` options:
    ``rotate``, ``group_size``, ``skip``, ``seed``). All new modules are built before any is
    swapped in, so an error leaves the model untouched."""
    config = PTQConfig(preset=preset, **options)  # type: ignore[arg-type]
    convert, skipped = plan_linear_swaps(model, config.skip)
    new: dict[str, nn.Module] = {}
    for i, name in enumerate(convert):
        lin = model.get_submodule(name)
        assert isinstance(lin, nn.Linear)
        new[name] = QuantLinear(lin, config, seed=config.seed * 7919 + i)
    swap_modules(model, new)
    return PTQReport(preset=config.preset, rotate=config.rotate, converted=convert, skipped=skipped)
